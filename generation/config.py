"""The configuration of a generation job (``dataigm generate``): light, so the CLI can build its options from it.

YAML keys and CLI flags have the same names as the fields. Importing this module loads no torch or diffusers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from dataigm.concepts import ConceptRegistry, load_registry, split_dirs

from .spec import SCHEDULERS, ModelSpec, check_sampling, load_model_spec

DISTRIBUTORS = ("local", "ray")


@dataclass
class JobConfig:
    """Everything ``dataigm generate`` needs.

    Attributes:
        out: dataset root to write to (created when missing)
        models: model specs: Hub ids, pipeline folders, spec YAML files or mappings (the original model first)
        concepts: concepts whose built-in prompt sets to render
        kinds: prompt kinds to render: forget, remove, replace, retain
        prompt_files: JSONL prompt files to render as well (from `dataigm prompts build|import`)
        max_prompts: at most this many prompts per concept and kind, spread over the set (quick runs; default: all)
        images_per_prompt: images per prompt and model
        base_seed: seed of the job; each image's seed derives from it, the prompt id and the sample index
        test_fraction: share of prompts (with their variants) in the test split
        steps: denoising steps (>= 1) of every model whose spec sets none
        guidance: classifier-free guidance scale (>= 0) of every model whose spec sets none
        height: image height, a multiple of 8 (default: the pipeline's own)
        width: image width, a multiple of 8 (default: the pipeline's own)
        negative_prompt: negative prompt of every model whose spec sets none
        scheduler: ddim, pndm, lms, euler, euler_a or dpm++ for every model whose spec names none (default: the
            pipeline's own); samples record the scheduler class that ran
        batch_size: images per pipeline call, or 'auto' (probe free GPU memory)
        samples_per_shard: images per tar shard (the unit of work, resume and retry); keep it when re-running a job
            into the same --out
        retries: extra attempts of a shard that failed out of memory or on transient I/O
        device: auto (CUDA when available, else CPU), cpu, cuda, cuda:N or mps
        compile: torch.compile the UNet
        channels_last: channels-last UNet memory format
        num_workers: partition shards over this many workers (default: torchrun / SLURM array / 1)
        worker_index: this worker's index in the partition
        distributor: local or ray
        ray_address: address of an existing Ray cluster (default: start a local one)
        num_gpus: GPUs per Ray task (default: 1 when CUDA is available, else 0)
        name: dataset name recorded in the manifest
        progress: show a progress bar
        concepts_dir: folders of concept YAML files added to the built-in registry, joined with os.pathsep (also
            $DATAIGM_CONCEPTS_DIR)
    """

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
        if self.max_prompts is not None and self.max_prompts < 1:
            raise ValueError(f"max_prompts must be >= 1 (or unset for all prompts), got {self.max_prompts}")
        check_sampling("The job", self.steps, self.guidance, self.height, self.width)
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise ValueError(f"Unknown scheduler {self.scheduler!r}; valid: {', '.join(SCHEDULERS)}")

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
