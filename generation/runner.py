"""Run a generation job: plan, reserve shard numbers, skip done shards, render the rest, report.

Distributors: ``local`` runs this process's shards (all, or its partition with ``num_workers`` /
``worker_index``, torchrun's RANK/WORLD_SIZE or a SLURM array); ``ray`` sends one task per shard
to a Ray cluster. The shard is the unit of work and of retry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from dataigm.dataset_readme import write_dataset_readme
from dataigm.files import atomic_write_text
from dataigm.manifest import open_root, register_concepts, reserve_shards, update_manifest
from dataigm.writer import done_shards, write_shard

from .job import JobConfig, ShardTask, collect_prompts, job_id, plan_shards, shards_per_group, worker_partition
from .mapper import render_shard
from .pipeline import LoadedModel, checkpoint_of, load_pipeline

logger = logging.getLogger(__name__)

EXIT_INCOMPLETE = 3


@dataclass
class ShardResult:
    shard: str
    images: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 0


@dataclass
class JobSummary:
    job_id: str
    written: int = 0
    images: int = 0
    skipped: int = 0
    failed: list[ShardResult] = field(default_factory=list)
    flags: dict[str, int] = field(default_factory=dict)

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
        if self.failed:
            lines.append("the job is incomplete: run the same command again to retry the failed shards")
        return "\n".join(lines)


# ---------------------------------------------------------------- one shard, in any process

_loaded: dict[tuple, LoadedModel] = {}


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def get_model(cfg: JobConfig, model_index: int) -> LoadedModel:
    """The pipeline of a model, kept loaded across the shards this process runs (one model at a time)."""
    spec = cfg.model_specs()[model_index]
    key = (spec, resolve_device(cfg.device), cfg.compile, cfg.channels_last)
    if key not in _loaded:
        _loaded.clear()  # free the previous model's memory first
        _loaded[key] = load_pipeline(spec, key[1], compile=cfg.compile, channels_last=cfg.channels_last)
    return _loaded[key]


def choose_batch_size(cfg: JobConfig, model: LoadedModel) -> int:
    """The configured batch size, or for ``auto`` a probe of free GPU memory (4 on CPU)."""
    if cfg.batch_size != "auto":
        return int(cfg.batch_size)
    from .probe import probe_batch_size

    return probe_batch_size(model, cfg)


def run_shard(cfg: JobConfig, task: ShardTask, job: str, on_batch=lambda n: None) -> ShardResult:
    """Render and write one shard, retrying ``cfg.retries`` times; a last failure is returned, not raised."""
    import torch

    registry = cfg.registry()
    result = ShardResult(task.shard.relpath)
    batch_size = None
    for attempt in range(1, cfg.retries + 2):
        result.attempts = attempt
        try:
            model = get_model(cfg, task.model_index)
            batch_size = batch_size or choose_batch_size(cfg, model)
            samples = render_shard(task, model, cfg, registry, batch_size, on_batch)
            write_shard(cfg.out, task.shard, samples, job_id=job)
        except torch.cuda.OutOfMemoryError as err:
            result.error = f"out of memory at batch size {batch_size}: {err}"
            batch_size = max(1, (batch_size or 2) // 2)
            _loaded.clear()
            torch.cuda.empty_cache()
        except (RuntimeError, ValueError, OSError) as err:  # unreadable checkpoint, pipeline failure, disk
            result.error = f"{type(err).__name__}: {err}"
            _loaded.clear()
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


def prepare(cfg: JobConfig) -> tuple[str, list[ShardTask]]:
    """Plan the job, reserve its shard numbers in the root and record its configuration there."""
    registry = cfg.registry()
    specs = cfg.model_specs()
    prompts = collect_prompts(cfg, registry)
    draft = plan_shards(cfg, prompts)
    job = job_id(cfg, draft)
    open_root(cfg.out, name=cfg.name)
    register_concepts(cfg.out, [registry.get(c) for c in sorted({p.concept for p in prompts})])
    starts = {g: reserve_shards(cfg.out, job, g, n, "generate") for g, n in shards_per_group(draft).items()}
    models = [s.to_dict() | {"label": s.label, "checkpoint": checkpoint_of(s)} for s in specs]
    config = cfg.to_dict() | {"models": models, "safety_checker": False, "versions": _versions()}

    def record(manifest: dict) -> None:
        manifest["jobs"][job]["config"] = config

    update_manifest(cfg.out, record)
    import yaml

    atomic_write_text(Path(cfg.out) / "meta" / f"{job}.yaml", yaml.safe_dump(config, sort_keys=False))
    return job, plan_shards(cfg, prompts, starts)


def _versions() -> dict[str, str]:
    from dataigm.env import environment_report

    report = environment_report()
    return {k: report[k] for k in ("torch", "diffusers", "transformers", "dataigm")}


def run_job(cfg: JobConfig) -> JobSummary:
    """Run (or resume) the job; returns its summary. Failed shards do not stop the others."""
    from tqdm.auto import tqdm

    job, tasks = prepare(cfg)
    summary = JobSummary(job)
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
    write_dataset_readme(cfg.out)
    return summary
