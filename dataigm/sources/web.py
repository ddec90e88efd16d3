"""``dataigm ingest --urls FILE``: a LAION-style URL list, downloaded by img2dataset, into shards of a root.

The steps: read the list, filter it (``--where``), label each caption from the concept
(:mod:`dataigm.sources.captions`), cap each class (``--max-per-class``); then img2dataset downloads the selected
rows into ``<root>/.cache/dataigm/downloads/<job>/`` (download shard k holds rows ``k*N .. k*N+N-1``); then the one
shard job (:class:`dataigm.shardjob.ShardJob`) turns download shard k into our shard k of
``<concept>/<split>/laion``. Both halves resume: img2dataset skips download shards it finished, the shard job
skips our shards that are done, so a killed run started again ends with the same shards as an uninterrupted one.

A URL that fails (HTTP error, timeout, not an image) is left out, counted by reason and listed in its shard's
sidecar; it never stops the job. The counts (rows seen, after ``--where``, selected, downloaded, failed by reason)
are written to ``meta/<job>-counts.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..concepts import ConceptRegistry, load_registry
from ..distribute import make_distributor
from ..ingest import UNREADABLE_ERRORS, encode_image, unreadable_reason
from ..layout import MANIFEST_NAME, ShardId, check_split
from ..manifest import DEFAULT_NAME, check_root
from ..sample import Sample
from ..schema import LABELS, make_key
from ..shardjob import ShardJob, with_retries
from ..shardwork import ShardResult
from ..writer import write_shard
from . import img2dataset as i2d
from .captions import CaptionRules
from .config import UrlListSource
from .counts import job_shards, write_job_counts
from .url_list import PRIVATE_REASONS, UrlSelection, read_url_list, select_rows
from .where import check_where, parse_where

logger = logging.getLogger(__name__)

SOURCE = "laion"
DOWNLOADS_DIR = ".cache/dataigm/downloads"  # inside the root: `.cache` is ignored by pushes and root checks


@dataclass(frozen=True)
class WebRow:
    """One selected URL: its row in the list, label, caption, licence and the list's other columns (JSON)."""

    row: int
    url: str
    caption: str
    label: str
    license: str | None
    metadata: str


@dataclass(frozen=True)
class WebTask:
    """Our shard ``shard`` is made from img2dataset's download shard ``download`` (the same rows, in order)."""

    shard: ShardId
    download: int
    rows: tuple[WebRow, ...]

    @property
    def items(self) -> tuple[WebRow, ...]:  # the shard job's progress bar counts these
        return self.rows


@dataclass
class WebIngestReport:
    """What a URL ingest did: the selection's counts, the samples written, the failures by reason."""

    job_id: str
    counts: dict = field(default_factory=dict)
    shards_written: int = 0
    shards_skipped: int = 0

    def summary(self) -> str:
        """The lines printed at the end of ``dataigm ingest --urls``."""
        c = self.counts
        failed = c.get("failed_by_reason", {})
        refused = c.get("urls_refused", {})
        lines = [
            f"{c.get('rows_seen', 0)} rows seen, {c.get('rows_after_where', 0)} after --where, "
            + (f"{sum(refused.values())} URLs refused ({_by_reason(refused)}), " if refused else "")
            + "selected: "
            + _per_class(c.get("rows_selected", {})),
            f"downloaded: {_per_class(c.get('downloaded', {}))}; failed: {sum(failed.values())}"
            + (f" ({_by_reason(failed)})" if failed else ""),
            f"{self.shards_written} new shard(s), {self.shards_skipped} shard(s) already done; "
            f"counts in {c.get('counts_file', '')}",
        ]
        return "\n".join(lines)


def _by_reason(counts: dict) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in counts.items())


def _per_class(counts: dict) -> str:
    return ", ".join(f"{n} {label}" for label, n in sorted(counts.items())) or "none"


@dataclass
class WebShardWorker:
    """Turns one download shard into one of our shards: decode-checks each image, builds its record, writes."""

    root: str
    job: str
    downloads: str
    category: str
    concept: str
    split: str
    resize: int | None = None
    image_format: str | None = None
    license: str | None = None
    retries: int = 2
    max_pixels: int | None = None

    def run(self, task: WebTask) -> ShardResult:
        """Write ``task``'s shard; a failure is returned, not raised."""
        downloads = Path(self.downloads)
        if not i2d.shard_done(downloads, task.download):
            return ShardResult(
                task.shard.relpath,
                error=f"download shard {i2d.shard_name(task.download)} did not finish (see {downloads}/img2dataset.log); "
                "run the same command again",
            )
        try:
            fetched = i2d.read_shard(downloads, task.download)
        except FileNotFoundError as err:
            i2d.forget_shard(downloads, task.download)  # the next run downloads it again
            return ShardResult(task.shard.relpath, error=f"{err}; run the same command again")

        def attempt() -> ShardResult:
            samples, skipped = self._samples(task, fetched)
            write_shard(self.root, task.shard, samples, job_id=self.job, errors=skipped)
            return ShardResult(task.shard.relpath, images=len(samples), skipped=skipped)

        result = with_retries(task.shard, attempt, self.retries)
        if result.error is None:
            i2d.drop_images(downloads, task.download)  # in our shard now: the download copy is not needed
        return result

    def _samples(self, task: WebTask, fetched: dict[int, i2d.Fetched]) -> tuple[list[Sample], list[dict]]:
        samples, skipped = [], []
        for row in task.rows:
            result = fetched.get(row.row)
            if result is None or result.image is None:
                reason = i2d.failure_reason(result.error if result else "not in img2dataset's results")
                skipped.append({"file": row.url, "reason": reason})
                continue
            try:
                data, ext, height, width = encode_image(result.image, self.resize, self.image_format, self.max_pixels)
            except UNREADABLE_ERRORS as err:
                skipped.append({"file": row.url, "reason": unreadable_reason(err)})
                continue
            origin = {"url": row.url, "caption": row.caption, **json.loads(row.metadata)}
            record = {
                "concept": self.concept,
                "label": row.label,
                "category": self.category,
                "source": SOURCE,
                "split": self.split,
                "height": height,
                "width": width,
                "origin": json.dumps(origin, ensure_ascii=False, sort_keys=True),
                "license": row.license or self.license,
                "label_source": "caption",  # the concept's words in the caption chose the label
            }
            key = make_key(SOURCE, f"r{row.row:09d}", hashlib.sha1(row.url.encode()).hexdigest()[:10])
            samples.append(Sample(key, data, ext, LABELS.index(row.label), record))
        return samples, skipped


def _job_id(concept: str, split: str, selection: UrlSelection, options: dict) -> str:
    digest = hashlib.sha256(json.dumps({"concept": concept, "split": split, **options}, sort_keys=True).encode())
    for values in selection.rows.itertuples(index=False, name=None):
        digest.update(json.dumps([str(v) if v is not None else None for v in values]).encode() + b"\n")
    return "web-" + digest.hexdigest()[:16]


def ingest_urls(
    urls: str | Path,
    root: str | Path,
    concept: str,
    *,
    name: str = DEFAULT_NAME,
    registry: ConceptRegistry | None = None,
    progress: bool = True,
    **options,
) -> WebIngestReport:
    """:func:`ingest_url_source` of ``urls``: ``options`` are :class:`dataigm.sources.config.UrlListSource`'s fields
    (``where``, ``pair_words``, ``max_per_class``, ``processes``, ``samples_per_shard``, ...)."""
    source = UrlListSource(urls=str(urls), concept=concept, **options)
    return ingest_url_source(source, root, name=name, registry=registry, progress=progress)


def ingest_url_source(
    source: UrlListSource,
    root: str | Path,
    *,
    name: str = DEFAULT_NAME,
    registry: ConceptRegistry | None = None,
    progress: bool = True,
) -> WebIngestReport:
    """Download the images of a URL list that show the source's concept or its pair into ``root`` (source
    ``laion``).

    Every option and the root are checked, and the rows selected, before anything is written: a bad option, an
    unreadable list, a missing column or a ``where`` that does not parse raise a one-line ``ValueError`` and leave
    no trace. Run again with the same arguments after a kill to finish the job.

    Args:
        source: the URL list (LAION layout: ``url``/``URL``, ``caption``/``TEXT``, other columns kept in each
            sample's ``origin``, ``LICENSE`` in its ``license``) and how its rows are chosen, downloaded and
            written. Its ``samples_per_shard`` is the rows per download shard and per our shard (failed rows leave
            a shard smaller); without ``resize`` or ``image_format`` the downloaded bytes are kept.
        root: the dataset root, created when missing.
        name: dataset name recorded in the manifest.
        registry: the concept registry.
        progress: show a progress bar while shards are written.

    Returns:
        The report; ``report.counts`` is also written to ``meta/<job>-counts.json``.

    Raises:
        ValueError: bad input (nothing is written then), or shards that could not be made (run again).
    """
    source.check()
    urls, concept, split = source.urls, source.concept, source.split or "train"
    where, max_per_class = source.where, source.max_per_class
    resize, image_format, license = source.resize, source.image_format, source.license
    samples_per_shard, max_pixels = source.samples_per_shard, source.max_pixels
    registry = registry or load_registry()
    target = registry.get(concept)
    check_split(split, "--split")
    download_options = i2d.DownloadOptions(
        source.processes, source.threads, source.timeout, source.retries, samples_per_shard
    )
    download_options.check()
    check_where(where)  # before the list is read: a bad expression is refused first
    frame = read_url_list(urls)
    rules = CaptionRules.from_concept(target, source.words())
    row_filter = parse_where(where, frame.head(1000))
    selection = select_rows(
        frame,
        rules,
        row_filter,
        max_per_class,
        source.url_column,
        source.caption_column,
        source.allow_private_addresses,
    )
    if selection.rows.empty:
        refused = (
            f", {sum(selection.refused.values())} URLs refused: {_by_reason(selection.refused)}"
            if selection.refused
            else ""
        )
        hint = (
            " (--allow-private-addresses downloads from them)" if set(selection.refused) & set(PRIVATE_REASONS) else ""
        )
        raise ValueError(
            f"no row of --urls {str(urls)!r} is selected ({selection.seen} rows, {selection.passed_where} after "
            f"--where{refused}{hint}; {rules.describe()}); nothing was written"
        )
    command = i2d.find_img2dataset(source.img2dataset)
    options = {"resize": resize, "format": image_format, "license": license, "where": where}
    options |= {"max_pixels": max_pixels} if max_pixels is not None else {}  # the default keeps earlier job ids
    job_id = _job_id(target.id, split, selection, options)
    rows = [
        WebRow(int(r), u, c, lab, lic if isinstance(lic, str) else None, m)  # pandas makes a missing licence NaN
        for r, u, c, lab, lic, m in selection.rows.itertuples(index=False, name=None)
    ]
    tasks = [
        WebTask(
            ShardId(target.id, split, SOURCE, k), k, tuple(rows[k * samples_per_shard : (k + 1) * samples_per_shard])
        )
        for k in range(math.ceil(len(rows) / samples_per_shard))
    ]
    check_root(root, name, [target])
    downloads = Path(root) / DOWNLOADS_DIR / job_id
    worker = WebShardWorker(
        str(root), job_id, str(downloads), target.category, target.id, split, resize, image_format, license,
        max_pixels=max_pixels,
    )  # fmt: skip
    job = ShardJob(
        root=root,
        job_id=job_id,
        tasks=tasks,
        worker=worker,
        concepts=[target],
        plan={"samples_per_shard": samples_per_shard},
        description=f"web ingest of {len(rows)} URLs from {Path(str(urls)).name}",
        config=source.recorded(selection=rules.describe()),
        name=name,
    )
    job.check()

    url_list = downloads / "urls.parquet"
    if not url_list.exists():
        _write_url_list(url_list, rows)
    if not all(i2d.shard_done(downloads, t.download) for t in tasks) and not _job_complete(root, job_id):
        i2d.download(url_list, downloads, download_options, command)
    summary = job.run(make_distributor("local", 1, 0), progress=progress, unit="img")
    report = WebIngestReport(job_id, shards_written=summary.written, shards_skipped=summary.skipped)
    report.counts = write_job_counts(root, job_id, selection.counts(), written_key="downloaded")
    if summary.failed:
        failures = "; ".join(f"{r.shard}: {r.error}" for r in summary.failed[:3])
        raise ValueError(
            f"{len(summary.failed)} shard(s) could not be written ({failures}); run the same command again to retry"
        )
    return report


def _write_url_list(path: Path, rows: list[WebRow]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "url": [r.url for r in rows],
            "caption": [r.caption for r in rows],
            i2d.ROW_COLUMN: pa.array([r.row for r in rows], pa.int64()),
        }
    )
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def _job_complete(root: str | Path, job_id: str) -> bool:
    """Whether every shard of an earlier run of the job is done (then nothing needs downloading)."""
    from ..writer import shard_is_done

    if not (Path(root) / MANIFEST_NAME).exists():
        return False
    shards = job_shards(root, job_id)
    return bool(shards) and all(shard_is_done(root, s) for s in shards)
