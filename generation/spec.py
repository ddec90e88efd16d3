"""Model specs: which pipeline makes the images, and which unlearned weights replace parts of it.

A spec is a YAML mapping (or the same keys as flags). Only ``base`` is required::

    name: esd-nudity
    method: ESD
    base: CompVis/stable-diffusion-v1-4     # Hub id or local folder
    unet: checkpoints/esd-nudity.safetensors # diffusers or CompVis/LDM keys
    dtype: fp16

Any diffusers text-to-image pipeline of a known family works (SD-1.x/2.x, SDXL, SD3/3.5, Flux; see
:mod:`generation.families`): the family is read from the pipeline's class, and the spec replaces the parts
that family has (``unet`` or ``transformer``, ``text_encoder``, ``text_encoder_2``, ``text_encoder_3``)::

    name: eraseanything-nudity
    method: EraseAnything
    base: black-forest-labs/FLUX.1-dev
    lora: checkpoints/eraseanything-nudity.safetensors
    guidance: 3.5          # Flux: the distilled guidance, not a CFG scale
    cpu_offload: true
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import yaml

from dataigm.safe_yaml import load_yaml
from dataigm.sampling import SCHEDULERS, check_sampling

logger = logging.getLogger(__name__)

DTYPES = ("fp32", "fp16", "bf16")
# Names in the literature (the paper's Table 5 and the methods it audits, see docs/methods.md). Any other
# string is accepted and recorded as given, with a warning, so that a typo ("esd") is seen.
KNOWN_METHODS = (
    "ORG", "ESD", "FMN", "SPM", "AdvUnlearn", "MACE", "RECE", "DoCo", "Receler", "ConceptPrune", "UCE",
    "EraseAnything", "MCE", "EraseFlow",
)  # fmt: skip
# Keys added with other families: left out of a spec's recorded form while unset, so that jobs recorded before
# keep their identity (generation.job.job_id digests the recorded form).
_OMITTED_WHEN_UNSET = ("family", "transformer", "text_encoder_2", "text_encoder_3", "cpu_offload", "vae_tiling")
# "_" is allowed: samples record their model (schema 2) and plans check that keys are unique.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def warn_unknown_method(spec: ModelSpec) -> None:
    """Log a warning for a ``method`` outside :data:`KNOWN_METHODS` (it is still recorded as given)."""
    if spec.method in KNOWN_METHODS:
        return
    close = [m for m in KNOWN_METHODS if m.lower() == spec.method.lower()]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    logger.warning(
        "Model %r: method %r is not a known method%s; it is recorded as given. Known: %s",
        spec.label,
        spec.method,
        hint,
        ", ".join(KNOWN_METHODS),
    )


@dataclass(frozen=True)
class ModelSpec:
    """One text-to-image model: a base pipeline plus optional unlearned parts.

    Attributes:
        base: Hub id or local folder of a diffusers pipeline.
        name: short id used in sample keys (letters, digits, ``-``, ``_``); default: from method/base.
        method: unlearning method recorded in every sample (``ORG`` for the original model).
        revision: Hub revision (branch, tag or commit) of ``base``.
        pipeline: a whole pipeline folder or Hub id that replaces ``base`` (methods that publish one).
        family: ``sd``, ``sdxl``, ``sd3`` or ``flux``; default: from the pipeline class (``model_index.json``).
        unet: UNet weights file (``.safetensors``, ``.bin``, ``.pt``, ``.ckpt``) or diffusers folder
            (SD, SDXL).
        transformer: transformer weights file (diffusers keys, or the original SD3 / Flux layout) or folder
            (SD3, Flux).
        text_encoder: text-encoder weights file or folder (CLIP; the first encoder of every family).
        text_encoder_2: the second text encoder (SDXL, SD3: CLIP with projection; Flux: T5).
        text_encoder_3: the third text encoder (SD3: T5).
        lora: LoRA/adapter weights (file, folder or Hub id) loaded through diffusers' loaders, on the UNet
            or the transformer (and text encoders when the file holds them).
        lora_scale: strength of the LoRA.
        dtype: ``fp32``, ``fp16`` or ``bf16`` (half precision applies on GPU; CPU runs use fp32); default:
            the family's (bf16 for SD3 and Flux, fp16 otherwise).
        cpu_offload: keep the parts in CPU memory and move each to the GPU while it runs (diffusers'
            ``enable_model_cpu_offload``; large pipelines on small GPUs; CUDA only).
        vae_tiling: decode the image in tiles: ``true`` (diffusers' tiles, as large as the VAE's ``sample_size``:
            only images larger than the model's native size are tiled) or a tile side in pixels, a multiple of 8
            (e.g. 512: a native 1024 px image decodes in overlapping 512 px tiles, with less memory).
        scheduler, steps, guidance, height, width, negative_prompt: sampling settings; None keeps the
            job's defaults (and, for the scheduler, the pipeline's own).
        toy_concept, leak_rate, collateral, degradation: for the toy world (``base: toy`` or
            ``toy:photo``, see :mod:`generation.toy`), the unlearned concept and its ground truth.
    """

    base: str
    name: str | None = None
    method: str = "ORG"
    revision: str | None = None
    pipeline: str | None = None
    family: str | None = None
    unet: str | None = None
    transformer: str | None = None
    text_encoder: str | None = None
    text_encoder_2: str | None = None
    text_encoder_3: str | None = None
    lora: str | None = None
    lora_scale: float = 1.0
    dtype: str | None = None
    cpu_offload: bool = False
    vae_tiling: bool | int = False
    scheduler: str | None = None
    steps: int | None = None
    guidance: float | None = None
    height: int | None = None
    width: int | None = None
    negative_prompt: str | None = None
    toy_concept: str | None = None
    leak_rate: float = 0.0
    collateral: float = 0.0
    degradation: float = 0.0

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"Model {self.label!r}: unknown dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise ValueError(
                f"Model {self.label!r}: unknown scheduler {self.scheduler!r}; valid: {', '.join(SCHEDULERS)}"
            )
        if not _NAME_RE.match(self.label):
            raise ValueError(
                f"Model name {self.label!r} must use letters, digits, '_' and '-' (it starts every sample key)"
            )
        for name in ("leak_rate", "collateral", "degradation"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"Model {self.label!r}: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.toy_concept is not None and not self.is_toy:
            raise ValueError(
                f"Model {self.label!r}: toy_concept needs a toy base ('toy' or 'toy:photo'), not {self.base!r}"
            )
        check_sampling(f"Model {self.label!r}", self.steps, self.guidance, self.height, self.width)
        if self.family is not None:
            from .families import family_named

            family_named(self.family, f"Model {self.label!r}")
            if self.is_toy:
                raise ValueError(f"Model {self.label!r}: a toy model has no pipeline family, got {self.family!r}")
        if not isinstance(self.cpu_offload, bool):
            raise ValueError(f"Model {self.label!r}: cpu_offload must be true or false, got {self.cpu_offload!r}")
        tile = self.vae_tiling
        if not isinstance(tile, bool) and (not isinstance(tile, int) or tile <= 0 or tile % 8):
            raise ValueError(
                f"Model {self.label!r}: vae_tiling must be true, false or a tile side in pixels (a positive multiple"
                f" of 8), got {tile!r}"
            )
        if not isinstance(self.method, str) or not self.method.strip():
            raise ValueError(f"Model {self.label!r}: method must be a non-empty name, got {self.method!r}")

    @property
    def label(self) -> str:
        """The model's name in keys and reports."""
        if self.name:
            return self.name
        return re.sub(r"[^A-Za-z0-9-]+", "-", f"{self.method}-{Path(self.base).name}").strip("-")

    @property
    def is_toy(self) -> bool:
        return self.base == "toy" or self.base.startswith("toy:")

    @property
    def weights_base(self) -> str:
        """The pipeline the weights come from (``pipeline`` replaces ``base``)."""
        return self.pipeline or self.base

    def to_dict(self) -> dict:
        """The spec as plain data; keys of other families' parts are left out while unset."""
        defaults = {f.name: f.default for f in fields(self) if f.default is not MISSING}
        out = asdict(self)
        for name in _OMITTED_WHEN_UNSET:
            if out[name] == defaults[name]:
                del out[name]
        return out

    @classmethod
    def from_dict(cls, data: dict, source: str = "<model spec>") -> ModelSpec:
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"{source}: unknown model-spec key(s) {unknown}; valid keys: {', '.join(valid)}")
        if "base" not in data:
            raise ValueError(f"{source}: a model spec needs 'base' (a Hub id or a pipeline folder)")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None


def load_model_spec(entry: str | dict | ModelSpec) -> ModelSpec:
    """A spec from a mapping, a YAML file path, or a bare Hub id / folder (the original model, ORG)."""
    if isinstance(entry, ModelSpec):
        return entry
    if isinstance(entry, dict):
        return ModelSpec.from_dict(entry)
    if isinstance(entry, str | os.PathLike) and str(entry).endswith((".yaml", ".yml")):
        path = Path(entry)
        if not path.is_file():
            raise ValueError(f"Model spec file {str(path)!r} does not exist")
        try:
            data = load_yaml(path.read_text(encoding="utf-8"), f"Model spec file {str(path)!r}")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"Model spec file {str(path)!r} cannot be read: {err}") from None
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
            raise ValueError(f"Model spec file {str(path)!r} is not valid YAML{at}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a model spec file holds one mapping")
        return ModelSpec.from_dict(data, source=str(path))
    return ModelSpec(base=str(entry))
