"""A generation job's plan: work items grouped into shards (its configuration is :mod:`generation.config`).

Work item = (model, prompt, sample index). The plan depends only on the configuration, so every
worker of a partitioned job, and every re-run of a killed one, computes the same shards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dataigm.concepts import ConceptRegistry
from dataigm.identity import json_sha256
from dataigm.layout import ShardId
from dataigm.prompts import PromptRecord, build_prompts, parse_kinds, read_prompts, subsample
from dataigm.schema import make_key

from .config import JobConfig
from .seeds import item_seed, split_of
from .spec import ModelSpec

# Prompt kinds whose images are meant to show the concept (cls = 1); the others are its pair.
TARGET_KINDS = ("forget", "adversarial", "multilingual")
# The plan is held in memory (about 0.1 KB per image and prompt) and must be whole before anything renders: shard
# ranges are reserved and every key is checked up front. Bigger sets are several jobs into one root.
MAX_PLANNED_IMAGES = 2_000_000
# Options that decide how the work is cut up and run, never what an image looks like: not part of a job's identity.
_NOT_WORK = (
    "out", "batch_size", "samples_per_shard", "retries", "device", "compile", "channels_last", "num_workers",
    "worker_index", "distributor", "ray_address", "num_gpus", "progress", "name", "png_compress_level",
    "replace_changed_models",
)  # fmt: skip


@dataclass(frozen=True)
class WorkItem:
    prompt: PromptRecord
    sample_index: int
    seed: int
    split: str
    base_seed: int = 0  # the job's: in the sample key when it is not 0 (see sample_key)

    @property
    def label(self) -> str:
        return "target" if self.prompt.kind in TARGET_KINDS else "pair"


@dataclass(frozen=True)
class ShardTask:
    """One shard of the plan: a model and the items it renders into ``shard``."""

    shard: ShardId
    model_index: int
    items: tuple[WorkItem, ...]


def collect_prompts(cfg: JobConfig, registry: ConceptRegistry) -> list[PromptRecord]:
    """The job's prompts: built-in sets for ``concepts`` x ``kinds``, then the records of ``prompt_files``."""
    prompts: list[PromptRecord] = []
    for concept_id in cfg.concepts:
        concept = registry.get(concept_id)
        for kind in parse_kinds(cfg.kinds, concept):
            records = build_prompts(concept, [kind], registry=registry)
            prompts += subsample(records, cfg.max_prompts)
    for path in cfg.prompt_files:
        if not Path(path).is_file():
            raise ValueError(f"Prompt file {str(path)!r} does not exist")
        for record in read_prompts(path):
            registry.get(record.concept)
            prompts.append(record)
    ids = [p.prompt_id for p in prompts]
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"Prompt ids appear twice in the job: {duplicates}")
    return prompts


def sample_key(model_label: str, item: WorkItem) -> str:
    """The sample key of ``item`` rendered by the model named ``model_label``.

    A base seed other than 0 is in the key (``..._0000-seed1``): jobs that differ only in ``base_seed`` are other
    jobs (:func:`job_id`), whose images must not share keys in one root (even a prompt with a seed of its own, whose
    image the base seed does not change: a copy is a duplicate to report, a shared key a broken root). Base seed 0
    keeps the keys roots were written with before.
    """
    index = f"{item.sample_index:04d}"
    if item.base_seed != 0:
        index += f"-seed{item.base_seed}"
    return make_key(model_label, item.prompt.prompt_id, index)


def check_plan_size(cfg: JobConfig, n_prompts: int) -> None:
    """Refuse a job whose plan would exceed :data:`MAX_PLANNED_IMAGES` (before anything is built)."""
    count = len(cfg.models) * n_prompts * cfg.images_per_prompt
    if count > MAX_PLANNED_IMAGES:
        raise ValueError(
            f"The job plans {count:,} images ({len(cfg.models)} model(s) x {n_prompts} prompt(s) x "
            f"{cfg.images_per_prompt} image(s) per prompt), more than the {MAX_PLANNED_IMAGES:,} one job may hold; "
            "split it into several jobs (fewer models, concepts or images per prompt) writing to the same --out"
        )


def plan_items(cfg: JobConfig, prompts: list[PromptRecord]) -> dict[str, list[WorkItem]]:
    """The work items of one model, by ``concept/split/generated`` group, in key order."""
    check_plan_size(cfg, len(prompts))
    items_by_group: dict[str, list[WorkItem]] = {}
    for prompt in prompts:
        # A variant shares its forget prompt's split and seeds, so M(P̂, s) pairs with M_u(P, s).
        family = prompt.parent_id or prompt.prompt_id
        split = split_of(family, cfg.test_fraction)
        for sample in range(cfg.images_per_prompt):
            seed = prompt.seed + sample if prompt.seed is not None else item_seed(cfg.base_seed, family, sample)
            group = f"{prompt.concept}/{split}/generated"
            items_by_group.setdefault(group, []).append(WorkItem(prompt, sample, seed, split, cfg.base_seed))
    return {g: sorted(items_by_group[g], key=lambda i: (i.prompt.prompt_id, i.sample_index)) for g in items_by_group}


def check_unique_keys(specs: list[ModelSpec], items_by_group: dict[str, list[WorkItem]]) -> None:
    """Refuse a plan in which two images would get one sample key (e.g. prompt ids ``x/1`` and ``x:1``)."""
    for spec in specs:
        label = spec.label
        owner: dict[str, str] = {}
        clashes: dict[str, set[str]] = {}
        for items in items_by_group.values():
            for item in items:
                key = sample_key(label, item)
                if key in owner:  # every (prompt, sample index) of a plan is one image: a key seen twice is a clash
                    clashes.setdefault(key, {owner[key]}).add(item.prompt.prompt_id)
                else:
                    owner[key] = item.prompt.prompt_id
        if clashes:
            groups = "; ".join(" / ".join(repr(p) for p in sorted(ids)) for ids in list(clashes.values())[:5])
            raise ValueError(
                f"{len(clashes)} sample key(s) of model {label!r} would be shared by several images, "
                f"of the prompt ids {groups}: give these prompts ids that differ in letters, digits, '-' or '_'"
            )


def plan_shards(
    cfg: JobConfig,
    prompts: list[PromptRecord],
    starts: dict[str, int] | None = None,
    items_by_group: dict[str, list[WorkItem]] | None = None,
) -> list[ShardTask]:
    """Group work items into shards: model-major (a worker keeps one pipeline loaded), then concept/split.

    ``starts`` maps each ``concept/split/generated`` group to the first shard number the job reserved.
    """
    items_by_group = items_by_group if items_by_group is not None else plan_items(cfg, prompts)
    tasks: list[ShardTask] = []
    next_index = dict(starts or {})
    for model_index in range(len(cfg.models)):
        for group in sorted(items_by_group):
            concept, split, source = group.split("/")
            items = items_by_group[group]
            for k in range(0, len(items), cfg.samples_per_shard):
                index = next_index.get(group, 0)
                next_index[group] = index + 1
                chunk = tuple(items[k : k + cfg.samples_per_shard])
                tasks.append(ShardTask(ShardId(concept, split, source, index), model_index, chunk))
    return tasks


def job_id(cfg: JobConfig, prompts: list[PromptRecord]) -> str:
    """The job's identity: a digest of the work (models in order, prompts, seeds, sampling settings).

    The content of each model's weights is the other half of the job's identity: it is recorded with the job
    (``weights``, :func:`dataigm.identity.weights_identity`) and checked before a shard counts as done (see
    :func:`generation.runner.prepare`), so that fixing a model that wrote nothing yet stays the same job.

    How the work is cut up and run (shard size, batch size, device, workers) is left out, so the same
    work planned again with another shard size is recognised as the same job (and refused, see
    :meth:`dataigm.shardjob.ShardJob.check`) instead of rendering every image a second time.
    """
    work = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_WORK}
    work["models"] = [
        spec | {"dtype": _work_dtype(m)} for spec, m in zip(work["models"], cfg.model_specs(), strict=True)
    ]
    # the prompts themselves stand for concepts, kinds, max_prompts, prompt_files and concepts_dir
    for k in ("concepts", "kinds", "max_prompts", "prompt_files", "concepts_dir"):
        work.pop(k)
    work["prompts"] = sorted((p.to_dict() for p in prompts), key=lambda d: d["prompt_id"])
    return "generate-" + json_sha256(work)[:16]


def _work_dtype(spec: ModelSpec) -> str:
    """The dtype a model runs in: its own, else its family's (what the spec recorded before families existed).

    An unset dtype and the family's default are the same work, and jobs recorded with ``dtype: fp16`` for an SD
    pipeline keep their identity.
    """
    if spec.dtype is not None:
        return spec.dtype
    from .families import pipeline_class, resolve_family
    from .pipeline import dtype_name

    family = None if spec.is_toy else resolve_family(spec, pipeline_class(spec.weights_base, spec.revision))
    return dtype_name(spec, family)


def legacy_job(cfg: JobConfig, manifest: dict | None) -> str | None:
    """The id of a job recorded before job ids left the shard size out, if it is this same work.

    Such a job's id cannot be recomputed; its recorded configuration can be compared. Jobs recorded
    since carry ``job_identity`` and are found by :func:`job_id` alone.
    """
    mine = json.loads(json.dumps({k: v for k, v in cfg.to_dict().items() if k not in _NOT_WORK}, default=str))
    for other, entry in (manifest or {}).get("jobs", {}).items():
        recorded = entry.get("config") or {}
        if not other.startswith("generate-") or not recorded or "job_identity" in recorded:
            continue
        theirs = {k: recorded.get(k) for k in mine}
        theirs["models"] = [
            {k: v for k, v in m.items() if k not in ("label", "checkpoint", "weights")}
            for m in recorded.get("models", [])
        ]
        if theirs == mine:
            return other
    return None
