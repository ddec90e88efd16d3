"""Run a generation job: plan it, check it, and give :class:`dataigm.shardjob.ShardJob` its per-shard worker.

The bookkeeping (root, concepts, shard reservations, done shards, retries, roll-back, card) is the
shared shard job's; this module supplies what is generation's own: the plan, the checks that need
the models, and :class:`GenerateWorker` (load the model, render, encode, write one shard).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from dataigm.devices import resolve_device
from dataigm.distribute import make_distributor
from dataigm.identity import DigestCache, changed_parts, describe, json_sha256, weights_identity
from dataigm.layout import MANIFEST_NAME, ShardId
from dataigm.manifest import read_manifest
from dataigm.sample import Sample
from dataigm.shardjob import JobSummary, ShardJob, is_transient, one_line, with_retries
from dataigm.shardwork import ShardResult
from dataigm.writer import done_shards, shard_is_done, write_shard

from .config import JobConfig
from .job import (
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
# The digests of the weights files a job loads, remembered in the root (pushes and root checks ignore .cache).
DIGESTS_MEMO = ".cache/dataigm/digests.json"

__all__ = ["EXIT_INCOMPLETE", "GenerateWorker", "JobSummary", "ShardResult", "is_transient", "prepare", "run_job"]

# ---------------------------------------------------------------- one shard, in any process

_loaded: dict[tuple, LoadedModel] = {}
# (job, model and its weights' content) whose loading failed for good: the model's other shards fail at once
_load_errors: dict[tuple, str] = {}


_digest_caches: dict[str, DigestCache] = {}


def root_digests(root: str | Path) -> DigestCache:
    """The digest cache of a root's weights files, one per process: a job's plan and its workers read each file
    once (a worker process starts from the memo the job saved, ``DIGESTS_MEMO``)."""
    memo = (Path(root) / DIGESTS_MEMO).resolve()
    if str(memo) not in _digest_caches:
        _digest_caches[str(memo)] = DigestCache(memo)
    return _digest_caches[str(memo)]


def _weights_state(spec, root: str) -> str:
    """The content of the local weights a spec loads (by stat until a file changes: cheap on every shard). A Hub
    model's commit is left out: it is known only once downloaded, which must not load the model a second time."""
    local = {k: v for k, v in weights_identity(spec.to_dict(), root_digests(root)).items() if "sha256" in v}
    return json_sha256(local)


def get_model(cfg: JobConfig, model_index: int, job: str = "") -> LoadedModel:
    """The pipeline of a model, kept loaded across the shards this process runs (one model at a time).

    A model that failed to load for good in ``job`` fails its other shards of that job without a new try.
    """
    spec = cfg.model_specs()[model_index]
    # weights changed in place since they were loaded are loaded again
    key = (spec, _weights_state(spec, cfg.out), resolve_device(cfg.device), cfg.compile, cfg.channels_last)
    failed = (job, key)  # a file fixed since the failure gets a new try
    if failed in _load_errors:
        raise ValueError(f"model {spec.label!r} could not be loaded: {_load_errors[failed]}")
    if key not in _loaded:
        _loaded.clear()  # free the previous model's memory first
        try:
            _loaded[key] = load_pipeline(spec, key[2], compile=cfg.compile, channels_last=cfg.channels_last)
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

REPLACE_OPTION = "--replace-changed-models"


@dataclass
class ChangedModel:
    """A model of the job whose weights are not those its images in the root were rendered with.

    Attributes:
        index: the model's index in the job.
        label: its name.
        parts: the weights keys that changed (``unet``, ``base``...; ``weights`` for a job recorded with only the
            file checksums).
        before, now: the recorded and the current identity of each changed part, in words.
        written: the shards in the root's index that hold its images (the job's own and earlier replacements').
    """

    index: int
    label: str
    parts: list[str]
    before: list[str]
    now: list[str]
    written: list[str]

    def message(self, out: str) -> str:
        """The one line that refuses the job."""
        change = "; ".join(f"{p}: {a} -> {b}" for p, a, b in zip(self.parts, self.before, self.now, strict=True))
        what = "its weights changed" if self.parts == ["weights"] else f"{', '.join(self.parts)} weights changed"
        return (
            f"model {self.label!r}: {what} since its images were generated in {out} ({change}); "
            f"{len(self.written)} shard(s) hold images of the old weights. Give the model a new 'name', or re-run "
            f"with {REPLACE_OPTION} to render them again and retire the old ones as a new revision of the root"
        )


def _refuse_other_shard_size(cfg: JobConfig, job: str, recorded: dict) -> None:
    """The same work already in the root cut into shards of another size is refused, naming the option."""
    before = recorded.get("samples_per_shard")
    if before is not None and before != cfg.samples_per_shard:
        raise ValueError(
            f"{cfg.out} already holds this job ({job}: the same models, prompts, seeds and sampling settings) "
            f"cut into shards of --samples-per-shard {before}; with {cfg.samples_per_shard} every image would be "
            f"rendered again. Re-run with --samples-per-shard {before} as before, or use a new --out"
        )


def _replaces(entry: dict) -> dict | None:
    """``{"job", "model"}`` of a job that rendered a model's images again (see :func:`_replacement`), else None."""
    return (entry.get("config") or {}).get("replaces")


def job_complete(cfg: JobConfig) -> bool:
    """Whether every shard of ``cfg``'s job is written, by any worker: what the next phase of a partitioned
    evaluation waits for (a model whose weights changed under its images is not done)."""
    if not (Path(cfg.out) / MANIFEST_NAME).exists():
        return False
    shard_job, changed, _ = _plan(cfg)
    entry = read_manifest(cfg.out)["jobs"].get(shard_job.job_id)
    if changed or entry is None:
        return False
    everything = [ShardId.parse(rel) for rel in _job_shards(entry)]
    return len(done_shards(cfg.out, everything)) == len(everything)


def _job_shards(entry: dict) -> list[str]:
    """Every shard number a job reserved, as relpaths."""
    return [
        ShardId(*g.split("/"), i).relpath for g, (s, n) in entry.get("ranges", {}).items() for i in range(s, s + n)
    ]


def changed_models(
    cfg: JobConfig, job: str, manifest: dict | None, models: list[dict], tasks: list[ShardTask]
) -> list[ChangedModel]:
    """The models whose weights differ from those recorded with ``job`` and that have images in the root.

    A model that wrote nothing yet (its weights failed to load) may be fixed in place: the same job goes on.
    Jobs recorded before weights identities compare the file checksums they recorded (``checkpoint``).

    Args:
        tasks: the job's shards at the numbers it reserved.
    """
    entry = (manifest or {}).get("jobs", {}).get(job) or {}
    recorded = entry.get("config")
    if not recorded:
        return []
    _refuse_other_shard_size(cfg, job, recorded)
    indexed = manifest["shards"]
    out = []
    for i, (old, new) in enumerate(zip(recorded.get("models", []), models, strict=False)):
        if "weights" in old:
            parts = changed_parts(old["weights"], new["weights"])
            before = [describe(old["weights"][p]) for p in parts]
            now = [describe(new["weights"][p]) for p in parts]
        elif old.get("checkpoint") != new["checkpoint"]:
            parts, before, now = ["weights"], [str(old.get("checkpoint"))], [str(new["checkpoint"])]
        else:
            continue
        if not parts:
            continue
        written = [t.shard.relpath for t in tasks if t.model_index == i and t.shard.relpath in indexed]
        for other_entry in manifest["jobs"].values():
            if _replaces(other_entry) == {"job": job, "model": new["label"]}:
                written += [rel for rel in _job_shards(other_entry) if rel in indexed]
        if written:
            out.append(ChangedModel(i, new["label"], parts, before, now, written))
    return out


def _plan(cfg: JobConfig) -> tuple[ShardJob, list[ChangedModel], DigestCache]:
    """The job, checked and planned (nothing is written), and the models whose weights changed under it."""
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
    digests = root_digests(root)  # saved once the job ran: a refused job leaves the root as it was
    models = []
    for s in specs:
        record = s.to_dict()
        models.append(
            record | {"label": s.label, "checkpoint": checkpoint_of(s), "weights": weights_identity(record, digests)}
        )
    entry = (manifest or {}).get("jobs", {}).get(job) or {}
    starts = {group: start for group, (start, _) in entry.get("ranges", {}).items()}
    changed = changed_models(cfg, job, manifest, models, plan_shards(cfg, prompts, starts, items))
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
    return shard_job, changed, digests


def prepare(cfg: JobConfig) -> ShardJob:
    """Check the job and plan it as a :class:`~dataigm.shardjob.ShardJob` (nothing is written yet).

    Everything that can be checked without rendering (options, models, devices, the output folder, the
    uniqueness of every planned key, a conflict with the same job already in the root, a model whose weights
    changed since it wrote images there) is checked here.

    Raises:
        ValueError: bad input; or a model's weights changed under its images (one line naming the part and the
            way out), unless ``cfg.replace_changed_models``.
    """
    shard_job, changed, _ = _plan(cfg)
    if changed and not cfg.replace_changed_models:
        raise ValueError(changed[0].message(cfg.out))
    return shard_job


def _replacement(cfg: JobConfig, shard_job: ShardJob, change: ChangedModel) -> ShardJob:
    """The job that renders ``change``'s model again, with its new weights, for every shard of the job that holds
    (or held, before an earlier replacement) its images; numbered from 0 in each group, reserved anew."""
    root, job = Path(cfg.out), shard_job.job_id
    entry = read_manifest(root)["jobs"][job]
    starts = {group: start for group, (start, _) in entry["ranges"].items()}
    counters: dict[str, int] = {}
    tasks = []
    for task in shard_job.tasks:
        at = replace(task.shard, index=starts[task.shard.group] + task.shard.index)
        if task.model_index == change.index and shard_is_done(root, at):
            index = counters.get(at.group, 0)
            counters[at.group] = index + 1
            tasks.append(replace(task, shard=replace(at, index=index)))
    model = shard_job.config["models"][change.index]
    replacement = f"{job}-replace-{change.label}-{json_sha256(model['weights'])[:12]}"
    config = shard_job.config | {"models": [model], "replaces": {"job": job, "model": change.label}}
    return ShardJob(
        root=cfg.out,
        job_id=replacement,
        tasks=tasks,
        worker=GenerateWorker(cfg, replacement),
        concepts=shard_job.concepts,
        plan=shard_job.plan,
        description=f"generate: model {change.label!r} with changed weights",
        config=config,
        name=cfg.name,
    )


def _retire(root: Path, change: ChangedModel, keep: str) -> None:
    """A new revision of the root without the old images of ``change``'s model (after its new shards are done)."""
    from dataigm.reader import iter_shard
    from dataigm.revision import drop_samples

    indexed = read_manifest(root)["shards"]
    mine = set(_job_shards(read_manifest(root)["jobs"][keep]))
    old = [rel for rel in change.written if rel in indexed and rel not in mine]
    if old:
        drop = {rel: {s.key for s in iter_shard(root / rel)} for rel in old}
        logger.info("%s", drop_samples(root, drop, f"replace-{change.label}").text())


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

    With ``cfg.replace_changed_models``, a model whose weights changed under its images renders them again first
    (a job of its own); once all of its new shards are written, the old ones are retired as a revision of the
    root (:func:`dataigm.revision.drop_samples`); then the job goes on. A run stopped at any point is finished by
    running the same command again.

    Raises:
        ValueError: bad input, found before anything is written; or every shard of a new job failed,
            in which case the root is left as it was (removed if this run created it).
    """
    if cfg.replace_changed_models and (Path(cfg.out) / MANIFEST_NAME).exists():
        from dataigm.revision import finish_revisions

        finish_revisions(cfg.out)  # a replacement stopped while it retired the old shards
    shard_job, changed, digests = _plan(cfg)
    if changed and not cfg.replace_changed_models:
        raise ValueError(changed[0].message(cfg.out))
    distributor = make_distributor(
        cfg.distributor,
        cfg.num_workers,
        cfg.worker_index,
        ray_address=cfg.ray_address,
        num_gpus=_gpus_per_task(cfg) if cfg.distributor == "ray" else 0,
    )
    replaced = []
    for change in changed:
        replacement = _replacement(cfg, shard_job, change)
        summary = replacement.run(distributor, progress=cfg.progress, unit="img")
        logger.info("%s", summary.text())
        replaced.append(summary)
        everything = [ShardId.parse(rel) for rel in _job_shards(read_manifest(cfg.out)["jobs"][replacement.job_id])]
        if not summary.complete or len(done_shards(cfg.out, everything)) < len(everything):
            # nothing retired: the old images stay until every new shard is written (by this or other workers)
            logger.warning(
                "model %r: the old images stay until every new shard is written; run the same command again "
                "(after the other workers finish, if any)",
                change.label,
            )
            return summary
        _retire(Path(cfg.out), change, replacement.job_id)
    summary = shard_job.run(distributor, progress=cfg.progress, unit="img")
    digests.save()
    for other in replaced:
        summary.written += other.written
        summary.images += other.images
    return summary
