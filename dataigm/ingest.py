"""Writing planned images into shards: the one writer of every ingest source (a folder, a Hub dataset, a URL list's
downloads; :mod:`dataigm.sources`).

Inputs are planned into shards before anything is written (sorted, so the plan depends only on the
inputs), the job reserves its shard numbers in the manifest, and done shards are skipped: a killed
ingest run again finishes the job without duplicates. Unreadable images are skipped, counted and
recorded in their shard's sidecar.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .concepts import ConceptRegistry, load_registry
from .distribute import make_distributor
from .files import sha256_bytes
from .layout import MANIFEST_NAME, ShardId
from .manifest import DEFAULT_NAME, check_root, read_manifest
from .prompts import slug
from .sample import PIL_FORMATS, Sample
from .schema import LABELS, make_key
from .shardjob import ShardJob, with_retries
from .shardwork import ShardResult
from .sources.config import SAMPLES_PER_SHARD, check_write_options
from .sources.items import TOO_MANY_PIXELS, IngestItem, SkippedInput
from .writer import write_shard

logger = logging.getLogger(__name__)


@dataclass
class IngestReport:
    samples: int = 0
    job_id: str = ""
    shards_written: int = 0
    shards_skipped: int = 0
    skipped_files: list[dict] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.samples} samples in {self.shards_written} new shard(s), {self.shards_skipped} shard(s) already done, "
            f"{len(self.skipped_files)} file(s) skipped, {len(self.ignored_files)} non-image file(s) ignored"
        )


def default_max_pixels() -> int:
    """Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), our default ``max_pixels``."""
    from PIL import Image

    return _PILLOW_MAX_PIXELS or Image.MAX_IMAGE_PIXELS


_PILLOW_MAX_PIXELS: int | None = None  # Pillow's own value, read once before any change


@contextlib.contextmanager
def open_image(data: bytes, max_pixels: int | None = None):
    """``PIL.Image.open`` on ``data`` that refuses more than ``max_pixels`` pixels (default Pillow's limit) from
    the header alone, before anything is decoded.

    Pillow warns above its ``MAX_IMAGE_PIXELS`` and raises above twice that; here the limit is ours: the image is
    refused with :class:`SkippedInput` ("too many pixels") above it, whatever Pillow's setting.

    Raises:
        SkippedInput: too many pixels.
    """
    from PIL import Image

    global _PILLOW_MAX_PIXELS
    if _PILLOW_MAX_PIXELS is None:
        _PILLOW_MAX_PIXELS = Image.MAX_IMAGE_PIXELS
    limit = max_pixels or default_max_pixels()
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit  # Pillow's own check then raises only far above ours, which comes first
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, not warned about
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise SkippedInput(TOO_MANY_PIXELS) from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    with img:
        if img.width * img.height > limit:
            raise SkippedInput(TOO_MANY_PIXELS)
        yield img


def encode_image(
    data: bytes, resize: int | None, image_format: str | None, max_pixels: int | None = None
) -> tuple[bytes, str, int, int]:
    """Check that ``data`` decodes (and has at most ``max_pixels`` pixels, default Pillow's limit); re-encode only
    when asked (or for formats shards do not keep)."""
    from PIL import Image

    with open_image(data, max_pixels) as img:
        img.load()  # decodes the whole image: truncated files fail here, not in a training run
        ext = PIL_FORMATS.get(img.format)
        target_ext = image_format or ext or "png"
        if resize is None and target_ext == ext:
            return data, ext, img.height, img.width
        out = img.convert("RGBA" if target_ext != "jpg" and "A" in img.getbands() else "RGB")
        if resize is not None:
            scale = resize / min(out.size)
            out = out.resize((max(1, round(out.width * scale)), max(1, round(out.height * scale))), Image.LANCZOS)
        buffer = io.BytesIO()
        pil_format = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[target_ext]
        out.save(buffer, format=pil_format, **({"quality": 95} if target_ext != "png" else {}))
        return buffer.getvalue(), target_ext, out.height, out.width


def _job_id(items: Sequence[IngestItem], options: dict) -> str:
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for item in items:
        digest.update(f"{item.group}|{item.label}|{item.origin}\n".encode())
    return "ingest-" + digest.hexdigest()[:16]


def _choose_job_id(root: str | Path, items: Sequence[IngestItem], options: dict, samples_per_shard: int) -> str:
    """The job's id names the work (inputs, labels, encoding), not its cut into shards.

    Earlier versions hashed ``samples_per_shard`` into the id; a job found in the root under such an id keeps
    it, so running its command again finishes it instead of writing every sample a second time.
    """
    job_id = _job_id(items, options)
    legacy = _job_id(items, {"spp": samples_per_shard, **options})
    path = Path(root) / MANIFEST_NAME
    if path.exists() and legacy in read_manifest(root)["jobs"] and job_id not in read_manifest(root)["jobs"]:
        return legacy
    return job_id


def unreadable_reason(err: BaseException) -> str:
    """A short, stable reason for an image that cannot be read (no object reprs, no memory addresses)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(err, SkippedInput):
        return str(err)
    if isinstance(err, UnidentifiedImageError):
        return "not a recognised image format"
    if isinstance(err, Image.DecompressionBombError):
        return TOO_MANY_PIXELS
    if isinstance(err, FileNotFoundError):
        return "file not found"
    if isinstance(err, PermissionError):
        return "permission denied"
    text = str(err)
    if "truncated" in text.lower():
        return "truncated image data"
    text = re.sub(r"<[^<>]*? at 0x[0-9a-fA-F]+>", "<object>", text)  # reprs of readers carry memory addresses
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# PIL raises these for unreadable images (OSError also covers files that cannot be read)
UNREADABLE_ERRORS = (OSError, ValueError, SyntaxError)


def _check_something_readable(items: Sequence[IngestItem], where: str | None, max_pixels: int | None) -> None:
    """Refuse, before anything is written, inputs of which not one image can be read."""
    reasons: Counter = Counter()
    for item in items:
        try:
            with open_image(item.read(), max_pixels) as img:
                img.load()
            return
        except UNREADABLE_ERRORS as err:
            reasons[unreadable_reason(err)] += 1
    counted = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    raise ValueError(
        f"none of the {len(items)} images{f' in {where}' if where else ''} can be read ({counted}); nothing was written"
    )


@dataclass(frozen=True)
class IngestTask:
    """One shard of an ingest plan: the images that go into ``shard``."""

    shard: ShardId
    items: tuple[IngestItem, ...]


@dataclass
class IngestWorker:
    """Reads, checks and (if asked) re-encodes one task's images and writes its shard (a ``ShardWorker``).

    Unreadable images are skipped and recorded in the shard's sidecar; only transient errors of the write
    are retried.
    """

    root: str
    job: str
    categories: dict[str, str]  # concept id -> category path
    resize: int | None = None
    image_format: str | None = None
    license: str | None = None
    retries: int = 2
    max_pixels: int | None = None

    def run(self, task: IngestTask) -> ShardResult:
        """Write ``task``'s shard; a failure is returned, not raised."""

        def attempt() -> ShardResult:
            samples, skipped = _build_samples(
                task.items, self.categories, self.resize, self.image_format, self.license, self.max_pixels
            )
            write_shard(self.root, task.shard, samples, job_id=self.job, errors=skipped)
            return ShardResult(task.shard.relpath, images=len(samples), skipped=skipped)

        return with_retries(task.shard, attempt, self.retries)


def ingest(
    items: Sequence[IngestItem],
    root: str | Path,
    samples_per_shard: int = SAMPLES_PER_SHARD,
    resize: int | None = None,
    image_format: str | None = None,
    license: str | None = None,
    name: str = DEFAULT_NAME,
    registry: ConceptRegistry | None = None,
    progress: bool = True,
    where: str | None = None,
    config: dict | None = None,
    max_pixels: int | None = None,
) -> IngestReport:
    """Write ``items`` into shards of ``root``, skipping shards an earlier run of the same job finished.

    Every input and the root are checked before anything is written, so a refused run leaves no root, no
    reservation and no card behind. The bookkeeping is :class:`dataigm.shardjob.ShardJob`'s; the shards are
    written by :class:`IngestWorker`.

    Args:
        items: the planned images (:func:`dataigm.sources.folder.plan_folder`,
            :func:`dataigm.sources.hub.plan_hf_stream`).
        root: the dataset root, created when missing.
        samples_per_shard: images per shard. The job's id does not depend on it, and a second run of the same
            job with another value is refused (it would write every sample twice).
        resize: re-encode with the shorter side at this size.
        image_format: re-encode every image to this format.
        license: license recorded in every sample.
        name: dataset name recorded in the manifest.
        registry: the concept registry.
        progress: show a progress bar.
        where: what the items come from (a folder, a dataset), named in messages.
        config: the job's resolved options (:meth:`dataigm.sources.config.SourceConfig.recorded`: the source, how
            its images were chosen and how they are written), recorded in the manifest and in ``meta/<job>.yaml``;
            the dataset card lists them.
        max_pixels: images with more pixels are skipped as "too many pixels" before they are decoded (default:
            Pillow's decompression-bomb limit, :func:`default_max_pixels`).

    Raises:
        ValueError: a bad option, no items, a bad split or source, a root that cannot take them, a second plan of
            the same job, inputs of which no image can be read, or shards that failed to be written.
    """
    check_write_options(samples_per_shard, resize, image_format, max_pixels)
    if not items:
        raise ValueError(f"No images to ingest{f' in {where}' if where else ''}")
    registry = registry or load_registry()
    concepts = [registry.get(cid) for cid in sorted({i.concept for i in items})]
    groups: dict[str, list[IngestItem]] = {}
    for item in sorted(items, key=lambda i: (i.group, i.order, i.origin)):
        groups.setdefault(item.group, []).append(item)
    tasks = []
    for group, group_items in groups.items():
        for k in range(math.ceil(len(group_items) / samples_per_shard)):
            chunk = tuple(group_items[k * samples_per_shard : (k + 1) * samples_per_shard])
            tasks.append(IngestTask(ShardId(*group.split("/"), k), chunk))  # split and source names checked here
    options = {"resize": resize, "format": image_format, "license": license}
    options |= {"max_pixels": max_pixels} if max_pixels is not None else {}  # the default keeps earlier job ids
    check_root(root, name, concepts)
    job_id = _choose_job_id(root, items, options, samples_per_shard)
    worker = IngestWorker(
        str(root), job_id, {c.id: c.category for c in concepts}, resize, image_format, license, max_pixels=max_pixels
    )
    job = ShardJob(
        root=root,
        job_id=job_id,
        tasks=tasks,
        worker=worker,
        concepts=concepts,
        plan={"samples_per_shard": samples_per_shard},
        description=f"ingest of {len(items)} images",
        config=config,
        name=name,
    )
    job.check()
    _check_something_readable([i for g in groups.values() for i in g], where, max_pixels)
    summary = job.run(make_distributor("local", 1, 0), progress=progress, unit="img")
    if summary.failed:
        failures = "; ".join(f"{r.shard}: {r.error}" for r in summary.failed[:3])
        raise ValueError(
            f"{len(summary.failed)} shard(s) could not be written ({failures}); run the same command again to retry"
        )
    return IngestReport(
        samples=summary.images,
        job_id=job_id,
        shards_written=summary.written,
        shards_skipped=summary.skipped,
        skipped_files=summary.skipped_inputs,
    )


def _build_samples(
    chunk, categories, resize, image_format, license, max_pixels=None
) -> tuple[list[Sample], list[dict]]:
    """The samples of one shard, and the inputs skipped as ``{"file": origin, "reason": ...}``."""
    samples, skipped = [], []
    for item in chunk:
        try:
            original = item.read()
            data, ext, height, width = encode_image(original, resize, image_format, max_pixels)
        except UNREADABLE_ERRORS as err:
            reason = unreadable_reason(err)
            logger.warning("skipping unreadable image %s: %s", item.origin, reason)
            skipped.append({"file": item.origin, "reason": reason})
            continue
        content = sha256_bytes(original)
        key = make_key(
            item.source,
            slug(Path(item.origin).stem)[:40],
            hashlib.sha1(f"{item.origin}:{content}".encode()).hexdigest()[:10],
        )
        record = {
            "concept": item.concept,
            "label": item.label,
            "category": categories[item.concept],
            "source": item.source,
            "split": item.split,
            "height": height,
            "width": width,
            "origin": item.origin,
            "license": license,
            "label_source": item.label_source,
        }
        samples.append(Sample(key, data, ext, LABELS.index(item.label), record))
    return samples, skipped
