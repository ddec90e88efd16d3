"""The configuration of a generation job (``dataigm generate``): light, so the CLI can build its options from it.

YAML keys and CLI flags have the same names as the fields. Importing this module loads no torch or diffusers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from dataigm.concepts import ConceptRegistry, load_registry, split_dirs
from dataigm.distribute import DISTRIBUTORS
from dataigm.sampling import SamplingConfig

from .spec import ModelSpec, load_model_spec


@dataclass(kw_only=True)
class JobConfig(SamplingConfig):
    """Everything ``dataigm generate`` needs: what to render and where, the sampling options of
    :class:`dataigm.sampling.SamplingConfig` (``images_per_prompt``, ``base_seed``, ``steps``, ``guidance``,
    ``height``, ``width``, ``negative_prompt``, ``scheduler``, ``batch_size``), and how to run.

    Attributes:
        out: dataset root to write to (created when missing)
        models: model specs: Hub ids, pipeline folders, spec YAML files or mappings (the original model first)
        concepts: concepts whose built-in prompt sets to render
        kinds: prompt kinds to render: forget, remove, replace, retain
        prompt_files: JSONL prompt files to render as well (from `dataigm prompts build|import`)
        max_prompts: at most this many prompts per concept and kind, spread over the set (quick runs; default: all)
        test_fraction: share of prompts (with their variants) in the test split
        samples_per_shard: images per tar shard (the unit of work, resume and retry); keep it when re-running a job
            into the same --out
        retries: extra attempts of a shard that failed out of memory or on transient I/O
        device: auto (CUDA when available, else CPU), cpu, cuda, cuda:N or mps
        compile: torch.compile the UNet
        channels_last: channels-last UNet memory format
        png_compress_level: zlib level of the stored PNGs, 0 (none) to 9 (smallest): the pixels are the same at every
            level, lower levels encode faster into bigger files (recorded with the job; not part of its identity)
        num_workers: partition shards over this many workers (default: torchrun / SLURM array / 1)
        worker_index: this worker's index in the partition
        distributor: local or ray
        ray_address: address of an existing Ray cluster (default: start a local one)
        num_gpus: GPUs per Ray task (default: 1 when CUDA is available, else 0)
        name: dataset name recorded in the manifest
        progress: show a progress bar
        replace_changed_models: when a model's weights changed since it wrote images into --out, render its
            images again with the new weights and retire the old shards as a new revision of the root (once every
            new shard is written); without it such a job is refused
        concepts_dir: folders of concept YAML files added to the built-in registry, joined with os.pathsep (also
            $DATAIGM_CONCEPTS_DIR)
    """

    out: str
    models: list = field(default_factory=list)
    concepts: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=lambda: ["forget", "remove"])
    prompt_files: list[str] = field(default_factory=list)
    max_prompts: int | None = None
    test_fraction: float = 0.2
    samples_per_shard: int = 256
    retries: int = 2
    device: str = "auto"
    compile: bool = False
    channels_last: bool = False
    png_compress_level: int = 6
    num_workers: int | None = None
    worker_index: int | None = None
    distributor: str = "local"
    ray_address: str | None = None
    num_gpus: float | None = None
    name: str = "dataigm"
    progress: bool = True
    concepts_dir: str | None = None
    replace_changed_models: bool = False

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("A generation job needs at least one model in 'models' (a Hub id, folder or spec)")
        if not self.concepts and not self.prompt_files:
            raise ValueError("A generation job needs 'concepts' (built-in prompt sets) or 'prompt_files'")
        self.check_sampling_options()
        if self.samples_per_shard < 1 or self.retries < 0:
            raise ValueError(
                f"samples_per_shard must be >= 1 and retries >= 0, got {self.samples_per_shard}, {self.retries}"
            )
        if isinstance(self.png_compress_level, bool) or self.png_compress_level not in range(10):
            raise ValueError(
                f"png_compress_level must be 0 (no compression) to 9 (smallest), got {self.png_compress_level!r}"
            )
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.distributor not in DISTRIBUTORS:
            raise ValueError(f"Unknown distributor {self.distributor!r}; valid: {', '.join(DISTRIBUTORS)}")
        if self.max_prompts is not None and self.max_prompts < 1:
            raise ValueError(f"max_prompts must be >= 1 (or unset for all prompts), got {self.max_prompts}")

    def registry(self) -> ConceptRegistry:
        """Built-in concepts plus those in ``concepts_dir`` (several folders joined with ``os.pathsep``)."""
        return load_registry(split_dirs(self.concepts_dir))

    def model_specs(self) -> list[ModelSpec]:
        """The models as rendered: a spec's own scheduler wins, else the job's ``scheduler`` applies."""
        specs = [load_model_spec(m) for m in self.models]
        if self.scheduler is not None:
            specs = [s if s.scheduler or s.is_toy else replace(s, scheduler=self.scheduler) for s in specs]
        labels = [s.label for s in specs]
        duplicates = sorted({x for x in labels if labels.count(x) > 1})
        if duplicates:
            raise ValueError(f"Two models share the name(s) {duplicates}; give each a distinct 'name'")
        return specs

    def to_dict(self) -> dict:
        """The configuration as plain data, each model as its resolved spec (recorded in the manifest)."""
        out = asdict(self)
        out["models"] = [s.to_dict() for s in self.model_specs()]
        return out
