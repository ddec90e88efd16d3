"""One shard job for every writer of a dataset root (ingest, generate; later web and Hub ingest).

A job is a planned list of shard tasks, a worker that turns one task into one written shard, and the
bookkeeping around them, written once here:

check the root and the plan (before anything is created) -> open the root -> register the concepts ->
reserve each group's shard numbers -> record the job's configuration -> skip done shards -> hand the
rest to a distributor (:mod:`dataigm.distribute`) -> collect results -> roll back a new job that wrote
nothing -> refresh the dataset card.

The guarantees: a job's id names its work, not its cut into shards, and a second run of the same job
with another plan (``samples_per_shard``) is refused naming the option; a shard is done when its sidecar
matches its tar, so a killed job resumes to byte-identical shards; only transient errors are retried;
a new job that wrote nothing leaves no root, reservation or concept behind.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import shutil
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .concepts import Concept
from .dataset_readme import preload_card_libraries, write_dataset_readme
from .distribute import LocalDistributor
from .files import atomic_write_json, atomic_write_text
from .layout import MANIFEST_NAME, META_DIR, ShardId
from .manifest import (
    DEFAULT_NAME,
    check_reservations,
    check_root,
    locked,
    open_root,
    read_manifest,
    register_concepts,
    reserve_shards,
    update_manifest,
)
from .shardwork import ShardResult, ShardWorker
from .writer import done_shards

logger = logging.getLogger(__name__)

# OS errors worth another attempt (I/O hiccups, network file systems); a missing file is not one of them.
_TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE}
# What a worker's shard may fail with (bad input, unreadable weights, a full disk); anything else is a bug.
SHARD_ERRORS = (RuntimeError, ValueError, OSError)


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` may not happen again on a retry: out of memory, a transient I/O or network error."""
    torch = sys.modules.get("torch")  # only a job that imported torch can run out of GPU memory
    if torch is not None and isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    if isinstance(err, RuntimeError) and "out of memory" in str(err).lower():
        return True
    if isinstance(err, ConnectionError | TimeoutError):
        return True
    if isinstance(err, OSError) and err.errno in _TRANSIENT_ERRNOS:
        return True
    httpx = sys.modules.get("httpx")  # the Hub client's network errors (only if it was imported)
    return httpx is not None and isinstance(err, httpx.TransportError)


def one_line(err: BaseException, limit: int = 500) -> str:
    """``Type: message`` on one line (library messages can span many), cut at ``limit`` characters."""
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def with_retries(shard: ShardId, attempt: Callable[[], ShardResult], retries: int) -> ShardResult:
    """Run ``attempt`` until it succeeds; only transient errors (:func:`is_transient`) get another try.

    Args:
        shard: the shard being written, for the result and the log.
        attempt: writes the shard and returns its result, or raises one of :data:`SHARD_ERRORS`.
        retries: extra attempts after a transient failure.
    """
    result = ShardResult(shard.relpath)
    for number in range(1, retries + 2):
        try:
            result = attempt()
        except SHARD_ERRORS as err:
            result.error, result.retryable = one_line(err), is_transient(err)
            result.attempts = number
            if not result.retryable:
                logger.warning("shard %s failed: %s", shard.relpath, result.error)
                return result
            logger.warning("shard %s failed (attempt %d of %d): %s", shard.relpath, number, retries + 1, result.error)
        else:
            result.attempts = number
            return result
    return result


@dataclass
class JobSummary:
    """Counts of one run of a job; ``failed`` holds the results of the shards that failed."""

    job_id: str
    written: int = 0
    images: int = 0
    skipped: int = 0
    failed: list[ShardResult] = field(default_factory=list)
    flags: dict[str, int] = field(default_factory=dict)
    skipped_inputs: list[dict] = field(default_factory=list)
    rolled_back: bool = False  # nothing was written: the root is as it was before the run

    @property
    def complete(self) -> bool:
        return not self.failed

    def add(self, result: ShardResult) -> None:
        """Count one shard's result."""
        if result.error is not None:
            self.failed.append(result)
            return
        self.written += 1
        self.images += result.images
        self.skipped_inputs += result.skipped
        for name, n in result.flags.items():
            self.flags[name] = self.flags.get(name, 0) + n

    def text(self) -> str:
        """The summary printed at the end of a run, with what to do about failed shards."""
        lines = [
            f"job {self.job_id}: {self.images} images in {self.written} shard(s) written, "
            f"{self.skipped} shard(s) skipped as done, {len(self.failed)} shard(s) failed"
        ]
        if self.flags:
            lines.append("flagged images: " + ", ".join(f"{n} {name}" for name, n in sorted(self.flags.items())))
        for result in self.failed:
            lines.append(f"FAILED {result.shard} after {result.attempts} attempt(s): {result.error}")
        if any(not r.retryable for r in self.failed):
            lines.append(
                "the job is incomplete: the errors above repeat on every run; fix the input they name, "
                "then run the same command again to render the failed shards"
            )
        elif self.failed:
            lines.append("the job is incomplete: run the same command again to retry the failed shards")
        return "\n".join(lines)


@dataclass
class _Before:
    """What the root held before this run, so that a run that wrote nothing can leave it as it was."""

    root: Path
    created: bool  # the root did not exist, or was an empty folder
    existed: bool
    job_new: bool
    concepts: set[str]
    meta_new: bool
    dirs: set[Path]


def shards_per_group(tasks: Sequence[Any]) -> dict[str, int]:
    """``{concept/split/source: number of shards}`` of planned tasks."""
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.shard.group] = counts.get(task.shard.group, 0) + 1
    return counts


@dataclass
class ShardJob:
    """A planned job: its tasks (shards numbered from 0 in each group), its worker and its identity.

    Args:
        root: the dataset root.
        job_id: names the work (which samples), never how it is cut into shards.
        tasks: the planned tasks, in run order; each group's shards numbered 0, 1, ...
        worker: writes one task's shard (:class:`ShardWorker`).
        concepts: the concepts the job writes, registered in the manifest.
        plan: the options that cut the work into shards, e.g. ``{"samples_per_shard": 256}``; a later run of the
            same job with other values is refused, naming the option.
        description: one line kept with the job's reservation.
        config: the job's resolved configuration, recorded in the manifest and in ``meta/<job>.yaml``.
        name: the dataset name recorded in the manifest.
    """

    root: Path | str
    job_id: str
    tasks: list[Any]
    worker: ShardWorker
    concepts: list[Concept]
    plan: dict
    description: str = ""
    config: dict | None = None
    name: str = DEFAULT_NAME

    def check(self) -> None:
        """Everything the job would refuse about the root and its plan, checked without writing."""
        check_root(self.root, self.name, self.concepts)
        check_reservations(self.root, self.job_id, shards_per_group(self.tasks), self.plan)

    def run(self, distributor, progress: bool = False, unit: str = "img") -> JobSummary:
        """Run (or resume) the job with ``distributor``; failed shards do not stop the others.

        Args:
            distributor: from :func:`dataigm.distribute.make_distributor`.
            progress: show a progress bar (counts the samples of finished shards).
            unit: the progress bar's unit.

        Raises:
            ValueError: what :meth:`check` refuses (nothing is written then); or every shard of a new job
                failed, in which case the root is left as it was (removed if this run created it).
        """
        from tqdm.auto import tqdm

        self.check()
        before = self._snapshot()
        tasks = self._reserve()
        mine = distributor.select(tasks)
        done = done_shards(self.root, [t.shard for t in mine])
        todo = [t for t in mine if t.shard not in done]
        summary = JobSummary(self.job_id, skipped=len(mine) - len(todo))
        total = sum(_size(t) for t in todo)
        # the card's libraries load while the shards are written, so the card costs no waiting at the end
        card_libraries = threading.Thread(target=preload_card_libraries, daemon=True)
        card_libraries.start()
        with tqdm(total=total, unit=unit, desc=self.job_id.split("-")[0], disable=not progress) as bar:
            for result in self._results(distributor, todo):
                summary.add(result)
                bar.update(result.images + len(result.skipped))
        # A new job that wrote nothing leaves no trace (other workers of a partition may share its reservation).
        if summary.failed and not summary.written and not summary.skipped and before.job_new:
            if not distributor.shares_reservation and self._roll_back(before):
                summary.rolled_back = True
                first = summary.failed[0]
                others = f" (and {len(summary.failed) - 1} other shard(s))" if len(summary.failed) > 1 else ""
                kept = "removed" if not before.existed else "left as it was"
                raise ValueError(f"{first.error}{others}; nothing was written, {self.root} is {kept}")
        card_libraries.join()
        write_dataset_readme(self.root)  # once per job, after its last shard
        return summary

    def _results(self, distributor, tasks: list[Any]):
        """The tasks' results: a worker with ``run_many`` (a pipelined worker) runs a local distributor's
        whole list itself; anything else goes through the distributor one task at a time."""
        run_many = getattr(self.worker, "run_many", None)
        if run_many is not None and isinstance(distributor, LocalDistributor):
            return run_many(tasks)
        return distributor.run(self.worker, tasks)

    def _snapshot(self) -> _Before:
        root = Path(self.root)
        manifest = read_manifest(root) if (root / MANIFEST_NAME).exists() else None
        existed = root.exists()
        return _Before(
            root=root,
            created=not existed or not any(root.iterdir()),
            existed=existed,
            job_new=manifest is None or self.job_id not in manifest["jobs"],
            concepts=set(manifest["concepts"]) if manifest else set(),
            meta_new=not (root / META_DIR / f"{self.job_id}.yaml").exists(),
            dirs={p for p in root.rglob("*") if p.is_dir()} if existed else set(),
        )

    def _reserve(self) -> list[Any]:
        """Open the root, register the concepts, reserve each group's range; the tasks moved into their range."""
        open_root(self.root, name=self.name)
        register_concepts(self.root, self.concepts)
        starts = {
            group: reserve_shards(self.root, self.job_id, group, n, self.description, plan=self.plan)
            for group, n in shards_per_group(self.tasks).items()
        }
        if self.config is not None:
            config = self.config

            def record(manifest: dict) -> None:
                manifest["jobs"][self.job_id]["config"] = config

            update_manifest(self.root, record)
            import yaml

            atomic_write_text(
                Path(self.root) / META_DIR / f"{self.job_id}.yaml", yaml.safe_dump(config, sort_keys=False)
            )
        return [
            dataclasses.replace(t, shard=dataclasses.replace(t.shard, index=starts[t.shard.group] + t.shard.index))
            for t in self.tasks
        ]

    def _roll_back(self, before: _Before) -> bool:
        """Undo this run's traces in a root where it wrote no shard; False when another job shares them.

        A root the run created is removed (an empty folder that was there is emptied); in an existing
        root, the job's reservation, the concepts it added and its ``meta/<job>.yaml`` are removed.
        """
        root, job = before.root, self.job_id
        with locked(root):
            manifest = read_manifest(root)
            ranges = manifest["jobs"].get(job, {}).get("ranges", {})
            mine = {ShardId(*g.split("/"), i).relpath for g, (s, n) in ranges.items() for i in range(s, s + n)}
            if any(rel in manifest["shards"] or (root / rel).exists() for rel in mine):
                return False
            if before.created:
                if manifest["shards"] or set(manifest["jobs"]) - {job}:
                    return False  # another job started writing here meanwhile
            else:
                manifest["jobs"].pop(job, None)
                used = {g.split("/")[0] for j in manifest["jobs"].values() for g in j.get("ranges", {})}
                used |= {rel.split("/")[1] for rel in manifest["shards"]}
                for concept in set(manifest["concepts"]) - before.concepts - used:
                    del manifest["concepts"][concept]
                atomic_write_json(root / MANIFEST_NAME, manifest)
                if before.meta_new:
                    (root / META_DIR / f"{job}.yaml").unlink(missing_ok=True)
                for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
                    if folder not in before.dirs and not any(folder.iterdir()):
                        folder.rmdir()
                return True
        if before.existed:  # an empty folder given as --out stays, empty
            for child in root.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(root)
        return True


def _size(task: Any) -> int:
    items = getattr(task, "items", None)
    return len(items) if items is not None else 1
