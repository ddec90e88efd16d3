"""The configuration of ``dataigm evaluate`` (YAML keys and CLI flags share these names)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .person import DEFAULT_DETECTOR
from .quality import DEFAULT_CLIP


@dataclass
class EvalConfig:
    """What to evaluate, on which images, with which judge and metric backbones.

    A metric backbone set to None (``clip_model``, ``lpips_net``, ``person_detector``) skips its metric.
    Images come from one of: ``images`` (a dataset root; missing images are generated there with
    ``models``, the original model first) or ``paper_layout`` (a folder in the IGMU benchmark layout,
    one task folder per concept in ``paper_tasks``).
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
    kinds: list[str] = field(default_factory=lambda: ["forget", "remove", "replace"])
    max_prompts: int | None = None
    images_per_prompt: int = 1
    steps: int = 50
    guidance: float = 7.5
    height: int | None = None
    width: int | None = None
    batch_size: int | str = 8
    device: str = "auto"
    base_seed: int = 0
    attacks: list[str] = field(default_factory=list)
    attack_files: list[str] = field(default_factory=list)
    attack_seed: int = 0
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
        if (self.images is None) == (self.paper_layout is None) and not self.models:
            raise ValueError("Give 'images' (a dataset root, generated with 'models' when missing) or 'paper_layout'")
        if self.paper_layout is not None:
            missing = [c for c in self.concepts if c not in self.paper_tasks]
            if missing:
                raise ValueError(
                    f"paper_tasks must name the task folder of concept(s) {missing}, e.g. {{church: Church}}"
                )
        if not self.concepts:
            raise ValueError("Name at least one concept to evaluate")

    def to_dict(self) -> dict:
        return asdict(self)
