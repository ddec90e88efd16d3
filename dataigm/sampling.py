"""How each image is rendered: the sampling options shared by a generation job and an evaluation.

``generation.config.JobConfig`` extends :class:`SamplingConfig`; ``detectors.evaluation.config.EvalConfig`` nests
one (its ``generation`` key) for the images it renders. Both record these values in every sample, so they live
with the data model and import nothing heavy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Scheduler names a spec or job may give (generation.pipeline maps each to a diffusers class).
SCHEDULERS = ("ddim", "pndm", "lms", "euler", "euler_a", "dpm++")
MAX_SIDE = 8192  # pixels: far above what any supported pipeline renders, low enough to catch a typo


def check_sampling(who: str, steps, guidance, height, width) -> None:
    """Refuse sampling settings no pipeline can use; ``None`` means "not set here"."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"{who}: steps must be an integer >= 1, got {steps!r}")
    if guidance is not None and (
        isinstance(guidance, bool)
        or not isinstance(guidance, int | float)
        or not math.isfinite(guidance)
        or guidance < 0
    ):
        raise ValueError(f"{who}: guidance must be a number >= 0, got {guidance!r}")
    for name, size in (("height", height), ("width", width)):
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_SIDE or size % 8:
            raise ValueError(f"{who}: {name} must be a multiple of 8 from 8 to {MAX_SIDE}, got {size!r}")


@dataclass(kw_only=True)
class SamplingConfig:
    """The sampling options of every model whose spec sets none (a spec's own values win).

    Attributes:
        images_per_prompt: images per prompt and model
        base_seed: seed of the job; each image's seed derives from it, the prompt id and the sample index
        steps: denoising steps (>= 1) of every model whose spec sets none
        guidance: classifier-free guidance scale (>= 0) of every model whose spec sets none
        height: image height, a multiple of 8 (default: the pipeline's own)
        width: image width, a multiple of 8 (default: the pipeline's own)
        negative_prompt: negative prompt of every model whose spec sets none
        scheduler: ddim, pndm, lms, euler, euler_a or dpm++ for every model whose spec names none (default: the
            pipeline's own); samples record the scheduler class that ran
        batch_size: images per pipeline call, or 'auto' (probe free GPU memory)
    """

    images_per_prompt: int = 1
    base_seed: int = 0
    steps: int = 50
    guidance: float = 7.5
    height: int | None = None
    width: int | None = None
    negative_prompt: str | None = None
    scheduler: str | None = None
    batch_size: int | str = 8

    def __post_init__(self) -> None:
        self.check_sampling_options()

    def check_sampling_options(self, who: str = "The job") -> None:
        """One ``ValueError`` naming the first bad option and its valid values."""
        count = self.images_per_prompt
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{who}: images_per_prompt must be an integer >= 1, got {count!r}")
        if isinstance(self.base_seed, bool) or not isinstance(self.base_seed, int):
            raise ValueError(f"{who}: base_seed must be an integer, got {self.base_seed!r}")
        if not (self.batch_size == "auto" or (type(self.batch_size) is int and self.batch_size >= 1)):
            raise ValueError(f"{who}: batch_size must be a positive integer or 'auto', got {self.batch_size!r}")
        check_sampling(who, self.steps, self.guidance, self.height, self.width)
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise ValueError(f"{who}: Unknown scheduler {self.scheduler!r}; valid: {', '.join(SCHEDULERS)}")

    def sampling_options(self) -> dict:
        """The fields of :class:`SamplingConfig` as keyword arguments (for a ``JobConfig``)."""
        from dataclasses import fields

        return {f.name: getattr(self, f.name) for f in fields(SamplingConfig)}
