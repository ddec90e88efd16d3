"""The configuration of ``dataigm evaluate`` (YAML keys and CLI flags share these names).

Light on purpose: the CLI builds its options from this class, so torch, timm and the metric modules are imported
inside the checks that need them, never here.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dataigm.concepts import split_dirs
from dataigm.prompts import BUILDABLE_KINDS
from dataigm.sampling import SamplingConfig
from detectors.evaluation.defaults import DEFAULT_CLIP, DEFAULT_DETECTOR

LPIPS_NETS = ("alex", "vgg", "squeeze")  # the backbones the lpips package ships calibrations for
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass
class EvalConfig:
    """What to evaluate, on which images, with which judge and metric backbones.

    A metric backbone set to None (``clip_model``, ``lpips_net``, ``person_detector``) skips its metric.
    Images come from one of: ``images`` (a dataset root; missing images are generated there with
    ``models``, the original model first) or ``paper_layout`` (a folder in the IGMU benchmark layout,
    one task folder per concept in ``paper_tasks``).

    Every option is checked when the config is made, before anything is read, generated or written:
    a bad value raises one ``ValueError`` naming it and the valid choices.

    Attributes:
        out: folder of the report (report.json, report.md, plots, cache; images/ when generated here)
        concepts: concepts to evaluate, e.g. [nudity, church]
        judge: the judge, KIND:OPTIONS (a trained judge: local-dir:PATH or hf-hub:ORG/NAME[@REV])
        models: model specs to generate images with, the original model first: Hub ids, pipeline folders, spec YAML
            files or mappings
        original: name of the original (not unlearned) model (default: the first model)
        images: dataset root holding the images (missing ones are generated there with models)
        paper_layout: folder of given images in the IGMU benchmark layout (instead of images/models)
        paper_tasks: with paper_layout: the task folder of each concept, e.g. {nudity: Nudity}
        paper_prompts: with paper_layout: prompt files of each concept (for CSDR), e.g. {nudity: [prompts.csv]}
        prompt_files: per concept, JSONL prompt files rendered instead of its built-in prompt sets (the records of
            that concept and of ``kinds``, each with its own seed and guidance where it has them), e.g.
            {church: [church.jsonl]}; a benchmark suite's pinned prompts
        kinds: prompt kinds to render: forget (required), remove, replace, retain
        max_prompts: at most this many prompts per concept and kind (default: all)
        generation: how the images of models are rendered (the sampling options of `dataigm generate`:
            images_per_prompt, base_seed, steps, guidance, height, width, negative_prompt, scheduler, batch_size),
            e.g. {steps: 50, images_per_prompt: 4}; flags --generation.steps ...
        device: auto (CUDA when available, else CPU), cpu, cuda, cuda:N or mps; for generation and every metric
        loader_workers: processes that read the images the judge and the FID features take (default: the host's
            cores less one, at most 8; none for fewer than 4 batches or images under 128x128 px; 0: in this
            process); no number depends on it
        distributor: local or ray: who runs the expensive parts (the native attacks' prompt batches, the generation's
            shards, the measurements: one task per aspect of a concept and model); no number depends on it
        num_workers: with worker_index: this process is one of num_workers (a SLURM array, torchrun): it runs its
            share of the first phase not done yet (attacks, generation, measurements) and writes no report; a run
            without them finishes and writes the report (default: torchrun / SLURM array / 1)
        worker_index: this worker's index in the partition
        ray_address: address of an existing Ray cluster (default: start a local one)
        num_gpus: GPUs per Ray task (default: 1 when CUDA is available, else 0)
        retries: extra attempts of a failed task (a measurement, a generation shard, an attack's batch) before it is
            named as failed
        attacks: attacks for robustness: built-in prompt perturbations, e.g. [homoglyph, synonym], and native
            attacks run against each unlearned model (`dataigm attack`): unlearndiffatk, ring_a_bell, p4d, mma_diffusion
        attack_files: JSONL files of attack prompts (from `dataigm prompts import` or `dataigm attack`)
        attack_seed: seed of the built-in perturbations
        attack_options: options of the native attacks by method (those of `dataigm attack`), e.g.
            {unlearndiffatk: {iterations: 10}, ring_a_bell: {eta: 3.0}}
        clip_model: CLIP model (Hub id or folder) for CSDR; null skips CSDR
        fid_feature: FID features: inception, a timm model name, local-dir:PATH or hf-hub:ORG/NAME
        fid_weights: local weights file for fid_feature (offline)
        fid_pretrained: load fid_feature's pretrained weights
        lpips_net: LPIPS backbone: alex, vgg or squeeze; null skips LPIPS
        lpips_random_backbone: LPIPS with a random backbone (tests and offline smoke runs only)
        person_detector: torchvision detection model for the person rate; null skips it
        person_weights: local weights file for person_detector (offline)
        person_pretrained: load person_detector's pretrained weights
        runtime_s: seconds each model's unlearning took, by model name (efficiency)
        grid_samples: images per model in the report's image grids (0: no grids)
        progress: show a progress bar
        concepts_dir: folders of concept YAML files added to the built-in registry, joined with os.pathsep (also
            $DATAIGM_CONCEPTS_DIR)
    """

    out: str
    concepts: list[str]
    judge: str
    models: list = field(default_factory=list)
    original: str | None = None
    images: str | None = None
    paper_layout: str | None = None
    paper_tasks: dict[str, str] = field(default_factory=dict)
    paper_prompts: dict[str, list[str]] = field(default_factory=dict)
    prompt_files: dict[str, list[str]] = field(default_factory=dict)
    kinds: list[str] = field(default_factory=lambda: ["forget", "remove", "replace"])
    max_prompts: int | None = None
    generation: SamplingConfig = field(default_factory=SamplingConfig)
    device: str = "auto"
    loader_workers: int | None = None
    distributor: str = "local"
    num_workers: int | None = None
    worker_index: int | None = None
    ray_address: str | None = None
    num_gpus: float | None = None
    retries: int = 2
    attacks: list[str] = field(default_factory=list)
    attack_files: list[str] = field(default_factory=list)
    attack_seed: int = 0
    attack_options: dict[str, dict] = field(default_factory=dict)
    clip_model: str | None = DEFAULT_CLIP
    fid_feature: str = "inception"
    fid_weights: str | None = None
    fid_pretrained: bool = True
    lpips_net: str | None = "alex"
    lpips_random_backbone: bool = False
    person_detector: str | None = DEFAULT_DETECTOR
    person_weights: str | None = None
    person_pretrained: bool = True
    runtime_s: dict[str, float] = field(default_factory=dict)
    grid_samples: int = 4
    progress: bool = True
    concepts_dir: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.generation, dict):  # a YAML mapping or keyword dict
            self.generation = _sampling_from_mapping(self.generation)
        if not isinstance(self.generation, SamplingConfig):
            raise ValueError(f"generation must be a mapping of sampling options, got {self.generation!r}")
        self._check_sources()
        self._check_concepts()
        self._check_generation()
        self._check_metrics()

    def registry(self):
        """The concept registry: the built-in concepts plus those of ``concepts_dir`` (``os.pathsep``-separated)."""
        from dataigm.concepts import load_registry

        return load_registry(split_dirs(self.concepts_dir))

    # -- checks ------------------------------------------------------------------------------------
    def _check_sources(self) -> None:
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ValueError(f"out {self.out!r} is a file; give a folder for the report")
        if self.images is not None and self.paper_layout is not None:
            raise ValueError(
                "Give one source of images: 'images' (a dataset root) or 'paper_layout' (the IGMU folders), not both"
            )
        if self.images is None and self.paper_layout is None and not self.models:
            raise ValueError("Give 'images' (a dataset root, generated with 'models' when missing) or 'paper_layout'")
        if self.paper_layout is not None:
            if self.models:
                raise ValueError(
                    "'models' generate images into a dataset root; 'paper_layout' reads given ones: give one of them"
                )
            if not Path(self.paper_layout).is_dir():
                raise ValueError(f"paper_layout {self.paper_layout!r} does not exist (or is not a folder)")
        if self.images is not None and not self.models and not Path(self.images).is_dir():
            raise ValueError(
                f"images {self.images!r} does not exist; give a dataset root with generated images, "
                "or 'models' to generate them there"
            )
        from detectors.evaluation.native import check_attack_options
        from detectors.evaluation.perturb import ATTACKS
        from generation.attacks.config import METHODS as NATIVE_ATTACKS

        unknown = [a for a in self.attacks if a not in ATTACKS and a not in NATIVE_ATTACKS]
        if unknown:
            raise ValueError(f"Unknown attack(s) {unknown}; valid attacks: {', '.join([*ATTACKS, *NATIVE_ATTACKS])}")
        check_attack_options(self.attack_options)
        if not self.models and (self.attacks or self.attack_files):
            raise ValueError(
                "attacks and attack_files make prompts to generate with 'models'; without models the attack "
                "images already in the root are judged: drop attacks/attack_files or give models"
            )
        for name in ("attack_files", "fid_weights", "person_weights"):
            value = getattr(self, name)
            for path in value if isinstance(value, list) else [value]:
                if path is not None and not Path(path).is_file():
                    raise ValueError(f"{name}: {path!r} does not exist (or is not a file)")

    def _check_concepts(self) -> None:
        if not self.concepts:
            raise ValueError("Name at least one concept to evaluate")
        registry = self.registry()
        for name in ("concepts", "paper_tasks", "paper_prompts", "prompt_files"):
            unknown = [c for c in getattr(self, name) if c not in registry]
            if unknown:
                raise ValueError(
                    f"Unknown concept(s) {unknown} in {name}; known concepts: {', '.join(registry.ids())}"
                )
        if len(set(self.concepts)) != len(self.concepts):
            raise ValueError(f"concepts {self.concepts} name a concept twice")
        if self.paper_layout is not None:
            missing = [c for c in self.concepts if c not in self.paper_tasks]
            if missing:
                raise ValueError(
                    f"paper_tasks must name the task folder of concept(s) {missing}, e.g. {{church: Church}}"
                )
        for name in ("paper_prompts", "prompt_files"):
            for concept, files in getattr(self, name).items():
                for path in files:
                    if not Path(path).is_file():
                        raise ValueError(f"{name} of {concept!r}: {path!r} does not exist (or is not a file)")

    def _check_generation(self) -> None:
        bad = [k for k in self.kinds if k not in BUILDABLE_KINDS]
        if bad:
            raise ValueError(
                f"Unknown prompt kind(s) {bad} in kinds; valid: {', '.join(BUILDABLE_KINDS)} "
                "(attack prompts come from 'attacks')"
            )
        if "forget" not in self.kinds:
            raise ValueError(f"kinds {self.kinds} must include 'forget': forgetting and every attack start from it")
        self.generation.check_sampling_options("generation")
        for name, low in (
            ("grid_samples", 0), ("max_prompts", 1), ("loader_workers", 0), ("num_workers", 1), ("worker_index", 0),
            ("retries", 0),
        ):  # fmt: skip
            value = getattr(self, name)
            if value is None and name in ("max_prompts", "loader_workers", "num_workers", "worker_index"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not _DEVICE.match(str(self.device)):
            raise ValueError(f"Unknown device {self.device!r}; valid: auto, cpu, cuda, cuda:N, mps")
        self._check_distribution()
        bad_runtime = [
            v for v in self.runtime_s.values() if isinstance(v, bool) or not isinstance(v, int | float) or v < 0
        ]
        if bad_runtime:
            raise ValueError(f"runtime_s must map model names to seconds >= 0, got {self.runtime_s}")

    def _check_distribution(self) -> None:
        from dataigm.distribute import DISTRIBUTORS

        if self.distributor not in DISTRIBUTORS:
            raise ValueError(f"Unknown distributor {self.distributor!r}; valid: {', '.join(DISTRIBUTORS)}")
        if (self.num_workers is None) != (self.worker_index is None):
            # num_workers once meant the processes that read images: a config that still says so must not partition
            raise ValueError(
                "num_workers partitions the evaluation and needs worker_index (give both, as a SLURM array or "
                "torchrun would); the processes that read the images are loader_workers"
            )
        if self.num_workers is not None and not self.worker_index < self.num_workers:
            raise ValueError(f"worker_index {self.worker_index} is outside 0..{self.num_workers - 1}")
        if self.num_workers is not None and self.distributor == "ray":
            raise ValueError("Give a partition (num_workers, worker_index) or distributor ray, not both")
        if self.num_gpus is not None and (isinstance(self.num_gpus, bool) or self.num_gpus < 0):
            raise ValueError(f"num_gpus must be >= 0, got {self.num_gpus!r}")
        on_ray = [m for m, o in self.attack_options.items() if isinstance(o, dict) and o.get("distributor") == "ray"]
        if on_ray and self.partitioned:  # every worker would run the whole attack on Ray, on the same files
            raise ValueError(
                f"attack_options gives {on_ray[0]} distributor ray while the evaluation is partitioned "
                "(num_workers, worker_index, torchrun or a SLURM array): use one of them"
            )

    @property
    def partitioned(self) -> bool:
        """Whether this process is one worker of several (given, or from torchrun / a SLURM array)."""
        from dataigm.distribute import worker_partition

        return self.distributor == "local" and worker_partition(self.num_workers, self.worker_index)[0] > 1

    def distribution(self) -> dict:
        """How the expensive parts run, as the options of `dataigm generate` and `dataigm attack` name it."""
        return {
            "distributor": self.distributor, "num_workers": self.num_workers, "worker_index": self.worker_index,
            "ray_address": self.ray_address, "num_gpus": self.num_gpus,
        }  # fmt: skip

    def _check_metrics(self) -> None:
        if self.lpips_net is not None and self.lpips_net not in LPIPS_NETS:
            raise ValueError(f"Unknown lpips_net {self.lpips_net!r}; valid: {', '.join(LPIPS_NETS)} (or null to skip)")
        if self.person_detector is not None:
            import torchvision

            known = torchvision.models.list_models(torchvision.models.detection)
            if self.person_detector not in known:
                raise ValueError(
                    f"Unknown person_detector {self.person_detector!r}; torchvision detection models: "
                    f"{', '.join(known)} (or null to skip)"
                )
        kind, _, location = self.fid_feature.partition(":")
        if kind == "local-dir" and not Path(location).is_dir():
            raise ValueError(f"fid_feature {self.fid_feature!r}: the folder {location!r} does not exist")
        if self.fid_feature != "inception" and kind not in ("local-dir", "hf-hub"):
            import timm

            if not timm.is_model(self.fid_feature):
                raise ValueError(
                    f"Unknown fid_feature {self.fid_feature!r}; valid: inception, a timm model name "
                    "(e.g. resnet50), local-dir:PATH or hf-hub:ORG/NAME"
                )

    def to_dict(self) -> dict:
        return asdict(self)


def _sampling_from_mapping(values: dict) -> SamplingConfig:
    import dataclasses

    valid = [f.name for f in dataclasses.fields(SamplingConfig)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ValueError(f"Unknown generation option(s) {unknown}; valid: {', '.join(valid)}")
    return SamplingConfig(**values)
