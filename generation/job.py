"""A generation job: its configuration and its plan (work items grouped into shards).

Work item = (model, prompt, sample index). The plan depends only on the configuration, so every
worker of a partitioned job, and every re-run of a killed one, computes the same shards.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

from dataigm.concepts import ConceptRegistry, load_registry
from dataigm.layout import ShardId
from dataigm.prompts import PromptRecord, build_prompts, parse_kinds, read_prompts, subsample

from .seeds import item_seed, split_of
from .spec import ModelSpec, load_model_spec

# Prompt kinds whose images are meant to show the concept (cls = 1); the others are its pair.
TARGET_KINDS = ("forget", "adversarial", "multilingual")
DISTRIBUTORS = ("local", "ray")


@dataclass
class JobConfig:
    """Everything ``dataigm generate`` needs; YAML keys and CLI flags have the same names."""

    out: str
    models: list = field(default_factory=list)
    concepts: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=lambda: ["forget", "remove"])
    prompt_files: list[str] = field(default_factory=list)
    max_prompts: int | None = None
    images_per_prompt: int = 1
    base_seed: int = 0
    test_fraction: float = 0.2
    steps: int = 50
    guidance: float = 7.5
    height: int | None = None
    width: int | None = None
    negative_prompt: str | None = None
    scheduler: str | None = None
    batch_size: int | str = 8
    samples_per_shard: int = 256
    retries: int = 2
    device: str = "auto"
    compile: bool = False
    channels_last: bool = False
    num_workers: int | None = None
    worker_index: int | None = None
    distributor: str = "local"
    ray_address: str | None = None
    num_gpus: float | None = None
    name: str = "dataigm"
    progress: bool = True
    concepts_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("A generation job needs at least one model in 'models' (a Hub id, folder or spec)")
        if not self.concepts and not self.prompt_files:
            raise ValueError("A generation job needs 'concepts' (built-in prompt sets) or 'prompt_files'")
        if self.images_per_prompt < 1 or self.samples_per_shard < 1 or self.retries < 0:
            raise ValueError("images_per_prompt and samples_per_shard must be >= 1, retries >= 0")
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.distributor not in DISTRIBUTORS:
            raise ValueError(f"Unknown distributor {self.distributor!r}; valid: {', '.join(DISTRIBUTORS)}")
        if not (self.batch_size == "auto" or (isinstance(self.batch_size, int) and self.batch_size >= 1)):
            raise ValueError(f"batch_size must be a positive integer or 'auto', got {self.batch_size!r}")

    def registry(self) -> ConceptRegistry:
        """Built-in concepts plus those in ``concepts_dir`` (several folders joined with ``os.pathsep``)."""
        return load_registry([d for d in (self.concepts_dir or "").split(os.pathsep) if d])

    def model_specs(self) -> list[ModelSpec]:
        specs = [load_model_spec(m) for m in self.models]
        labels = [s.label for s in specs]
        duplicates = sorted({x for x in labels if labels.count(x) > 1})
        if duplicates:
            raise ValueError(f"Two models share the name(s) {duplicates}; give each a distinct 'name'")
        return specs

    def to_dict(self) -> dict:
        out = asdict(self)
        out["models"] = [s.to_dict() for s in self.model_specs()]
        return out


@dataclass(frozen=True)
class WorkItem:
    prompt: PromptRecord
    sample_index: int
    seed: int
    split: str

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
        for record in read_prompts(path):
            registry.get(record.concept)
            prompts.append(record)
    ids = [p.prompt_id for p in prompts]
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"Prompt ids appear twice in the job: {duplicates}")
    return prompts


def plan_shards(cfg: JobConfig, prompts: list[PromptRecord], starts: dict[str, int] | None = None) -> list[ShardTask]:
    """Group work items into shards: model-major (a worker keeps one pipeline loaded), then concept/split.

    ``starts`` maps each ``concept/split/generated`` group to the first shard number the job reserved.
    """
    items_by_group: dict[str, list[WorkItem]] = {}
    for prompt in prompts:
        # A variant shares its forget prompt's split and seeds, so M(P̂, s) pairs with M_u(P, s).
        family = prompt.parent_id or prompt.prompt_id
        split = split_of(family, cfg.test_fraction)
        for sample in range(cfg.images_per_prompt):
            seed = prompt.seed + sample if prompt.seed is not None else item_seed(cfg.base_seed, family, sample)
            group = f"{prompt.concept}/{split}/generated"
            items_by_group.setdefault(group, []).append(WorkItem(prompt, sample, seed, split))
    tasks: list[ShardTask] = []
    next_index = dict(starts or {})
    for model_index in range(len(cfg.models)):
        for group in sorted(items_by_group):
            concept, split, source = group.split("/")
            items = sorted(items_by_group[group], key=lambda i: (i.prompt.prompt_id, i.sample_index))
            for k in range(0, len(items), cfg.samples_per_shard):
                index = next_index.get(group, 0)
                next_index[group] = index + 1
                chunk = tuple(items[k : k + cfg.samples_per_shard])
                tasks.append(ShardTask(ShardId(concept, split, source, index), model_index, chunk))
    return tasks


def shards_per_group(tasks: list[ShardTask]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.shard.group] = counts.get(task.shard.group, 0) + 1
    return counts


def job_id(cfg: JobConfig, tasks: list[ShardTask]) -> str:
    """A digest of everything that decides the job's bytes (not of how it is distributed)."""
    decisive = {
        k: v
        for k, v in cfg.to_dict().items()
        if k not in ("out", "batch_size", "retries", "device", "compile", "num_workers", "worker_index")
        and k not in ("distributor", "ray_address", "num_gpus", "progress", "channels_last")
    }
    digest = hashlib.sha256(json.dumps(decisive, sort_keys=True, default=str).encode())
    for task in tasks:
        digest.update(f"{task.model_index}|{task.shard.group}|".encode())
        digest.update("|".join(f"{i.prompt.prompt_id}:{i.sample_index}:{i.seed}" for i in task.items).encode())
    return "generate-" + digest.hexdigest()[:16]


def worker_partition(num_workers: int | None, worker_index: int | None) -> tuple[int, int]:
    """``(num_workers, worker_index)`` from the arguments, else torchrun or a SLURM array, else ``(1, 0)``."""
    env = os.environ
    if num_workers is None and worker_index is None:
        if "WORLD_SIZE" in env and "RANK" in env:
            num_workers, worker_index = int(env["WORLD_SIZE"]), int(env["RANK"])
        elif "SLURM_ARRAY_TASK_COUNT" in env and "SLURM_ARRAY_TASK_ID" in env:
            first = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
            num_workers = int(env["SLURM_ARRAY_TASK_COUNT"])
            worker_index = int(env["SLURM_ARRAY_TASK_ID"]) - first
    num_workers, worker_index = num_workers or 1, worker_index or 0
    if not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index {worker_index} is outside 0..{num_workers - 1} (num_workers={num_workers})")
    return num_workers, worker_index
