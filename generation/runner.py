"""Run a generation job: plan it, check it, and give :class:`dataigm.shardjob.ShardJob` its per-shard worker.

The bookkeeping (root, concepts, shard reservations, done shards, retries, roll-back, card) is the
shared shard job's; this module supplies what is generation's own: the plan, the checks that need
the models, and :class:`GenerateWorker` (load the model, render, encode, write one shard).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from dataigm.devices import resolve_device
from dataigm.distribute import make_distributor
from dataigm.layout import MANIFEST_NAME
from dataigm.manifest import read_manifest
from dataigm.sample import Sample
from dataigm.shardjob import JobSummary, ShardJob, ShardResult, is_transient, one_line, with_retries
from dataigm.writer import write_shard

from .job import (
    JobConfig,
    ShardTask,
    check_unique_keys,
    collect_prompts,
    job_id,
    legacy_job,
    plan_items,
    plan_shards,
)
from .mapper import encoder_threads
from .pipeline import LoadedModel, checkpoint_of, load_pipeline
from .preflight import check_inputs

logger = logging.getLogger(__name__)

EXIT_INCOMPLETE = 3

__all__ = ["EXIT_INCOMPLETE", "GenerateWorker", "JobSummary", "ShardResult", "is_transient", "prepare", "run_job"]

# ---------------------------------------------------------------- one shard, in any process

_loaded: dict[tuple, LoadedModel] = {}
# (job, model, its files' state) whose loading failed for good: the model's other shards fail at once
_load_errors: dict[tuple, str] = {}


def _files_state(spec) -> tuple:
    """Size and modification time of the local files a spec names."""
    state = []
    parts = (spec.unet, spec.transformer, spec.text_encoder, spec.text_encoder_2, spec.text_encoder_3)
    for ref in (spec.base, spec.pipeline, *parts, spec.lora):
        path = Path(ref) if ref else None
        if path is not None and path.exists():
            stat = path.stat()
            state.append((ref, stat.st_size, stat.st_mtime_ns))
    return tuple(state)


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


@dataclass
class GenerateWorker:
    """Renders one :class:`~generation.job.ShardTask` with its model and writes it (a :class:`ShardWorker`).

    Only errors that may not happen again are retried, ``cfg.retries`` times: out of memory (which also
    halves the batch) and transient I/O. A deterministic error (a checkpoint that does not fit, a bad
    setting) fails the shard at the first attempt.
    """

    cfg: JobConfig
    job: str

    def _renderer(self, task: ShardTask, encoder: Executor) -> Callable[[], list[Future[Sample]]]:
        """One attempt at rendering ``task``: its samples as futures of ``encoder`` (see
        :func:`~generation.mapper.render_shard`); out of memory halves the batch of the next attempt."""
        from .mapper import render_shard

        cfg, registry = self.cfg, self.cfg.registry()
        batch_size: list[int | None] = [None]  # halved in place after running out of memory

        def render() -> list[Future[Sample]]:
            import torch

            try:
                model = get_model(cfg, task.model_index, self.job)
                batch_size[0] = batch_size[0] or choose_batch_size(cfg, model)
                return render_shard(task, model, cfg, registry, batch_size[0], encoder)
            except torch.cuda.OutOfMemoryError as err:
                tried, batch_size[0] = batch_size[0], max(1, (batch_size[0] or 2) // 2)
                _loaded.clear()
                torch.cuda.empty_cache()
                raise RuntimeError(f"out of memory at batch size {tried}: {one_line(err)}") from err
            except (RuntimeError, ValueError, OSError):  # unreadable checkpoint, pipeline failure
                _loaded.clear()
                raise

        return render

    def _write(self, task: ShardTask, pending: list[Future[Sample]]) -> ShardResult:
        from .mapper import shard_samples

        samples = shard_samples(pending)
        write_shard(self.cfg.out, task.shard, samples, job_id=self.job)
        result = ShardResult(task.shard.relpath, images=len(samples))
        for sample in samples:
            flag = sample.record["image_flag"]
            if flag:
                result.flags[flag] = result.flags.get(flag, 0) + 1
        return result

    def run(self, task: ShardTask) -> ShardResult:
        """Render and write ``task``'s shard; a failure is returned, not raised."""
        with ThreadPoolExecutor(max_workers=encoder_threads(), thread_name_prefix="dataigm-encoder") as encoder:
            render = self._renderer(task, encoder)
            return with_retries(task.shard, lambda: self._write(task, render()), self.cfg.retries)

    def run_many(self, tasks: Sequence[ShardTask]) -> Iterator[ShardResult]:
        """Each task's result, in order, as :meth:`run` gives it, with the model kept busy: shard k's last
        encodes finish and shard k is written (by a writer thread) while shard k + 1 renders.

        The shards are the same bytes as :meth:`run`'s. Rendering keeps its retries; a failed write is
        retried (transient errors only) from the samples held in memory. A shard is done only once its
        sidecar is written, so a kill at any moment loses at most the shards in flight.
        """
        with (
            ThreadPoolExecutor(max_workers=encoder_threads(), thread_name_prefix="dataigm-encoder") as encoder,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataigm-shard-writer") as writer,
        ):
            previous: Future | ShardResult | None = None
            for task in tasks:
                current = self._render_and_submit(task, encoder, writer)
                if previous is not None:
                    yield previous.result() if isinstance(previous, Future) else previous
                previous = current
            if previous is not None:
                yield previous.result() if isinstance(previous, Future) else previous

    def _render_and_submit(self, task: ShardTask, encoder: Executor, writer: Executor) -> Future | ShardResult:
        """The future of ``task``'s write, or its failed result when it could not be rendered."""
        render, pending = self._renderer(task, encoder), []

        def attempt() -> ShardResult:
            pending[:] = render()
            return ShardResult(task.shard.relpath, images=len(pending))

        rendered = with_retries(task.shard, attempt, self.cfg.retries)
        if rendered.error is not None:
            return rendered
        return writer.submit(with_retries, task.shard, partial(self._write, task, pending), self.cfg.retries)


# ---------------------------------------------------------------- the job


def _refuse_changed_weights(cfg: JobConfig, job: str, manifest: dict | None, models: list[dict], plan) -> None:
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


def prepare(cfg: JobConfig) -> ShardJob:
    """Check the job and plan it as a :class:`~dataigm.shardjob.ShardJob` (nothing is written yet).

    Everything that can be checked without rendering (options, models, devices, the output folder, the
    uniqueness of every planned key, a conflict with the same job already in the root) is checked here.
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
    _refuse_changed_weights(cfg, job, manifest, models, lambda starts: plan_shards(cfg, prompts, starts, items))
    config = cfg.to_dict() | {"models": models, "safety_checker": False, "versions": _versions()}
    if not legacy:  # an earlier job keeps being found by its configuration
        config["job_identity"] = 2
    shard_job = ShardJob(
        root=cfg.out,
        job_id=job,
        tasks=plan_shards(cfg, prompts, items_by_group=items),
        worker=GenerateWorker(cfg, job),
        concepts=[registry.get(c) for c in sorted({p.concept for p in prompts})],
        plan={"samples_per_shard": cfg.samples_per_shard},
        description="generate",
        config=config,
        name=cfg.name,
    )
    shard_job.check()
    return shard_job


def _versions() -> dict[str, str]:
    from dataigm.env import environment_report

    report = environment_report()
    return {k: report[k] for k in ("torch", "diffusers", "transformers", "dataigm")}


def _gpus_per_task(cfg: JobConfig) -> float:
    if cfg.num_gpus is not None:
        return cfg.num_gpus
    import torch

    return 1 if torch.cuda.is_available() else 0


def run_job(cfg: JobConfig) -> JobSummary:
    """Run (or resume) the job; returns its summary. Failed shards do not stop the others.

    Raises:
        ValueError: bad input, found before anything is written; or every shard of a new job failed,
            in which case the root is left as it was (removed if this run created it).
    """
    shard_job = prepare(cfg)
    distributor = make_distributor(
        cfg.distributor,
        cfg.num_workers,
        cfg.worker_index,
        ray_address=cfg.ray_address,
        num_gpus=_gpus_per_task(cfg) if cfg.distributor == "ray" else 0,
    )
    return shard_job.run(distributor, progress=cfg.progress, unit="img")
