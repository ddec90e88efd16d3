"""Run a generation job: plan, reserve shard numbers, skip done shards, render the rest, report.

Distributors: ``local`` runs this process's shards (all, or its partition with ``num_workers`` /
``worker_index``, torchrun's RANK/WORLD_SIZE or a SLURM array); ``ray`` sends one task per shard
to a Ray cluster. The shard is the unit of work and of retry.
"""

from __future__ import annotations

import errno
import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dataigm.dataset_readme import write_dataset_readme
from dataigm.files import atomic_write_json, atomic_write_text
from dataigm.layout import MANIFEST_NAME, META_DIR, ShardId
from dataigm.manifest import locked, open_root, read_manifest, register_concepts, reserve_shards, update_manifest
from dataigm.writer import done_shards, write_shard

from .job import (
    JobConfig,
    ShardTask,
    check_unique_keys,
    collect_prompts,
    job_id,
    legacy_job,
    plan_items,
    plan_shards,
    shards_per_group,
    worker_partition,
)
from .mapper import render_shard
from .pipeline import LoadedModel, checkpoint_of, load_pipeline
from .preflight import check_inputs

logger = logging.getLogger(__name__)

EXIT_INCOMPLETE = 3


@dataclass
class ShardResult:
    shard: str
    images: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 0
    retryable: bool = True  # False: the error is deterministic (bad input), a re-run repeats it


@dataclass
class JobSummary:
    job_id: str
    written: int = 0
    images: int = 0
    skipped: int = 0
    failed: list[ShardResult] = field(default_factory=list)
    flags: dict[str, int] = field(default_factory=dict)
    rolled_back: bool = False  # nothing was written: the root is as it was before the run

    @property
    def complete(self) -> bool:
        return not self.failed

    def add(self, result: ShardResult) -> None:
        if result.error is not None:
            self.failed.append(result)
            return
        self.written += 1
        self.images += result.images
        for name, n in result.flags.items():
            self.flags[name] = self.flags.get(name, 0) + n

    def text(self) -> str:
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


# ---------------------------------------------------------------- one shard, in any process

_loaded: dict[tuple, LoadedModel] = {}
# (job, model, its files' state) whose loading failed for good: the model's other shards fail at once
_load_errors: dict[tuple, str] = {}
# OS errors worth another attempt (I/O hiccups, network file systems); a missing file is not one of them.
_TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE}


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` may not happen again on a retry: out of memory, a transient I/O or network error."""
    import torch

    if isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
    ):
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


def _files_state(spec) -> tuple:
    """Size and modification time of the local files a spec names."""
    state = []
    for ref in (spec.base, spec.pipeline, spec.unet, spec.text_encoder, spec.lora):
        path = Path(ref) if ref else None
        if path is not None and path.exists():
            stat = path.stat()
            state.append((ref, stat.st_size, stat.st_mtime_ns))
    return tuple(state)


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def get_model(cfg: JobConfig, model_index: int, job: str = "") -> LoadedModel:
    """The pipeline of a model, kept loaded across the shards this process runs (one model at a time).

    A model that failed to load for good in ``job`` fails its other shards of that job without a new try.
    """
    spec = cfg.model_specs()[model_index]
    key = (spec, resolve_device(cfg.device), cfg.compile, cfg.channels_last)
    failed = (job, key, _files_state(spec))  # a file fixed since the failure gets a new try
    if failed in _load_errors:
        raise ValueError(f"model {spec.label!r} could not be loaded: {_load_errors[failed]}")
    if key not in _loaded:
        _loaded.clear()  # free the previous model's memory first
        try:
            _loaded[key] = load_pipeline(spec, key[1], compile=cfg.compile, channels_last=cfg.channels_last)
        except (RuntimeError, ValueError, OSError) as err:
            if not is_transient(err):
                _load_errors[failed] = one_line(err)
            raise
    return _loaded[key]


def choose_batch_size(cfg: JobConfig, model: LoadedModel) -> int:
    """The configured batch size, or for ``auto`` a probe of free GPU memory (4 on CPU)."""
    if cfg.batch_size != "auto":
        return int(cfg.batch_size)
    from .probe import probe_batch_size

    return probe_batch_size(model, cfg)


def run_shard(cfg: JobConfig, task: ShardTask, job: str, on_batch=lambda n: None) -> ShardResult:
    """Render and write one shard; a failure is returned, not raised.

    Only errors that may not happen again (out of memory, which also halves the batch; transient I/O)
    are retried, ``cfg.retries`` times. A deterministic error (a checkpoint that does not fit, a bad
    setting) fails the shard at the first attempt.
    """
    import torch

    registry = cfg.registry()
    result = ShardResult(task.shard.relpath)
    batch_size = None
    for attempt in range(1, cfg.retries + 2):
        result.attempts = attempt
        try:
            model = get_model(cfg, task.model_index, job)
            batch_size = batch_size or choose_batch_size(cfg, model)
            samples = render_shard(task, model, cfg, registry, batch_size, on_batch)
            write_shard(cfg.out, task.shard, samples, job_id=job)
        except torch.cuda.OutOfMemoryError as err:
            result.error = f"out of memory at batch size {batch_size}: {one_line(err)}"
            batch_size = max(1, (batch_size or 2) // 2)
            _loaded.clear()
            torch.cuda.empty_cache()
        except (RuntimeError, ValueError, OSError) as err:  # unreadable checkpoint, pipeline failure, disk
            result.error = one_line(err)
            result.retryable = is_transient(err)
            _loaded.clear()
            if not result.retryable:
                logger.warning("shard %s failed: %s", task.shard.relpath, result.error)
                return result
        else:
            result.error = None
            result.images = len(samples)
            for sample in samples:
                if sample.record["image_flag"]:
                    result.flags[sample.record["image_flag"]] = result.flags.get(sample.record["image_flag"], 0) + 1
            return result
        logger.warning(
            "shard %s failed (attempt %d of %d): %s", task.shard.relpath, attempt, cfg.retries + 1, result.error
        )
    return result


# ---------------------------------------------------------------- the job


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


def _refuse_changed_job(cfg: JobConfig, job: str, manifest: dict | None, models: list[dict], plan) -> None:
    """The same work already in the root with another shard size, or with other weights behind a model
    that already wrote shards, is refused before anything is written, naming the option.

    ``plan(starts)`` gives the job's shards from the first shard numbers of each group.
    """
    entry = (manifest or {}).get("jobs", {}).get(job) or {}
    recorded = entry.get("config")
    if not recorded:
        return
    before = recorded.get("samples_per_shard")
    if before is not None and before != cfg.samples_per_shard:
        raise ValueError(
            f"{cfg.out} already holds this job ({job}: the same models, prompts, seeds and sampling settings) "
            f"cut into shards of --samples-per-shard {before}; with {cfg.samples_per_shard} every image would be "
            f"rendered again. Re-run with --samples-per-shard {before} as before, or use a new --out"
        )
    changed = [
        i
        for i, (old, new) in enumerate(zip(recorded.get("models", []), models, strict=False))
        if old.get("checkpoint") != new["checkpoint"]
    ]
    if not changed:
        return
    starts = {group: start for group, (start, _) in entry.get("ranges", {}).items()}
    written = {t.model_index for t in plan(starts) if t.shard.relpath in manifest["shards"]}
    for i in changed:
        if i in written:  # a model that wrote nothing yet (its weights failed to load) may be fixed in place
            old = recorded["models"][i].get("checkpoint")
            raise ValueError(
                f"Model {models[i]['label']!r}: its weights changed since this job wrote its first images in "
                f"{cfg.out} ({old} -> {models[i]['checkpoint']}); those images come from the old weights. "
                "Use a new --out, or give the model a new 'name'"
            )


def prepare(cfg: JobConfig) -> tuple[str, list[ShardTask], _Before]:
    """Check the job, plan it, then reserve its shard numbers in the root and record its configuration there.

    Everything that can be checked without rendering (options, models, devices, the output folder, the
    uniqueness of every planned key, a conflict with the same job already in the root) is checked
    before the first file is created.
    """
    registry = cfg.registry()
    specs = cfg.model_specs()
    prompts = collect_prompts(cfg, registry)
    items = plan_items(cfg, prompts)
    check_unique_keys(specs, items)
    check_inputs(cfg, specs)
    root = Path(cfg.out)
    manifest = read_manifest(root) if (root / MANIFEST_NAME).exists() else None
    legacy = legacy_job(cfg, manifest)
    job = legacy or job_id(cfg, prompts)
    models = [s.to_dict() | {"label": s.label, "checkpoint": checkpoint_of(s)} for s in specs]
    _refuse_changed_job(cfg, job, manifest, models, lambda starts: plan_shards(cfg, prompts, starts, items))
    draft = plan_shards(cfg, prompts, items_by_group=items)
    existed = root.exists()
    before = _Before(
        root=root,
        created=not existed or not any(root.iterdir()),
        existed=existed,
        job_new=manifest is None or job not in manifest["jobs"],
        concepts=set(manifest["concepts"]) if manifest else set(),
        meta_new=not (root / META_DIR / f"{job}.yaml").exists(),
        dirs={p for p in root.rglob("*") if p.is_dir()} if existed else set(),
    )
    open_root(cfg.out, name=cfg.name)
    register_concepts(cfg.out, [registry.get(c) for c in sorted({p.concept for p in prompts})])
    starts = {g: reserve_shards(cfg.out, job, g, n, "generate") for g, n in shards_per_group(draft).items()}
    config = cfg.to_dict() | {"models": models, "safety_checker": False, "versions": _versions()}
    if not legacy:  # an earlier job keeps being found by its configuration
        config["job_identity"] = 2

    def record(manifest: dict) -> None:
        manifest["jobs"][job]["config"] = config

    update_manifest(cfg.out, record)
    import yaml

    atomic_write_text(root / META_DIR / f"{job}.yaml", yaml.safe_dump(config, sort_keys=False))
    return job, plan_shards(cfg, prompts, starts, items_by_group=items), before


def _roll_back(job: str, before: _Before) -> bool:
    """Undo this run's traces in a root where it wrote no shard; False when another job shares them.

    A root the run created is removed (an empty folder that was there is emptied); in an existing
    root, the job's reservation, the concepts it added and its ``meta/<job>.yaml`` are removed.
    """
    root = before.root
    with locked(root):
        manifest = read_manifest(root)
        ranges = manifest["jobs"].get(job, {}).get("ranges", {})
        mine = {ShardId(*g.split("/"), i).relpath for g, (start, n) in ranges.items() for i in range(start, start + n)}
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


def _versions() -> dict[str, str]:
    from dataigm.env import environment_report

    report = environment_report()
    return {k: report[k] for k in ("torch", "diffusers", "transformers", "dataigm")}


def run_job(cfg: JobConfig) -> JobSummary:
    """Run (or resume) the job; returns its summary. Failed shards do not stop the others.

    Raises:
        ValueError: bad input, found before anything is written; or every shard of a new job failed,
            in which case the root is left as it was (removed if this run created it).
    """
    from tqdm.auto import tqdm

    job, tasks, before = prepare(cfg)
    summary = JobSummary(job)
    num_workers, worker_index = 1, 0
    if cfg.distributor == "local":
        num_workers, worker_index = worker_partition(cfg.num_workers, cfg.worker_index)
        tasks = [t for i, t in enumerate(tasks) if i % num_workers == worker_index]
    done = done_shards(cfg.out, [t.shard for t in tasks])
    todo = [t for t in tasks if t.shard not in done]
    summary.skipped = len(tasks) - len(todo)
    total = sum(len(t.items) for t in todo)
    with tqdm(total=total, unit="img", desc="generate", disable=not cfg.progress, dynamic_ncols=True) as bar:
        if cfg.distributor == "ray":
            from .ray_distributor import run_with_ray

            for result in run_with_ray(cfg, todo, job):
                summary.add(result)
                bar.update(result.images)
        else:
            for task in todo:
                summary.add(run_shard(cfg, task, job, on_batch=bar.update))
    # A new job that wrote nothing leaves no trace (other workers of a partition may share its reservation).
    if summary.failed and not summary.written and not summary.skipped and before.job_new and num_workers == 1:
        if _roll_back(job, before):
            summary.rolled_back = True
            first = summary.failed[0]
            others = f" (and {len(summary.failed) - 1} other shard(s))" if len(summary.failed) > 1 else ""
            kept = "removed" if not before.existed else "left as it was"
            raise ValueError(f"{first.error}{others}; nothing was written, {cfg.out} is {kept}")
    write_dataset_readme(cfg.out)
    return summary
