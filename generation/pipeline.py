"""Build a diffusers pipeline from a :class:`ModelSpec`: base, unlearned parts, scheduler, dtype, speed-ups.

Any family of :mod:`generation.families` (SD, SDXL, SD3, Flux): the family decides which parts the spec may
replace (the UNet or the transformer, each text encoder by name) and the default dtype.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dataigm.identity import file_sha256

from .families import (
    DENOISERS,
    TEXT_ENCODERS,
    Family,
    absent_components,
    check_spec_for_family,
    model_index,
    resolve_family,
)
from .spec import ModelSpec
from .weights import load_into, load_state_dict, text_encoder_state_for, transformer_state_for, unet_state_for

logger = logging.getLogger(__name__)

# The parts a spec may replace, in the order they are recorded and loaded.
PARTS = (*DENOISERS, *TEXT_ENCODERS)
# Scheduler names -> (diffusers class name, extra config)
_SCHEDULERS = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
}


@dataclass
class LoadedModel:
    """A ready pipeline and the provenance its samples record."""

    pipe: object
    spec: ModelSpec
    device: str
    model_revision: str | None
    checkpoint: str | None
    scheduler: str
    family: Family | None = None  # None for the toy world

    @property
    def guidance_input(self) -> bool:
        """Whether a guidance-distilled transformer takes a guidance value (FLUX.1-dev does, -schnell does not)."""
        transformer = getattr(self.pipe, "transformer", None)
        return bool(getattr(getattr(transformer, "config", None), "guidance_embeds", False))


def torch_dtype(name: str, device: str):
    import torch

    if not device.startswith("cuda") and name != "fp32":
        logger.info("dtype %s requested on %s: running in fp32", name, device)
        return torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def dtype_name(spec: ModelSpec, family: Family | None) -> str:
    """The spec's dtype, else its family's (bf16 for SD3 and Flux, fp16 for SD and SDXL)."""
    return spec.dtype or (family.dtype if family is not None else "fp16")


def _revision_of(base: str, revision: str | None) -> str | None:
    """The commit a Hub pipeline resolved to, or the revision asked for (None for a local folder)."""
    from huggingface_hub import constants, model_info
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if Path(base).is_dir() or constants.HF_HUB_OFFLINE:
        return revision
    try:
        return model_info(base, revision=revision).sha
    except (HfHubHTTPError, OfflineModeIsEnabled, OSError):  # unreachable or private: keep what was asked for
        return revision


def _load_toy(spec: ModelSpec, device: str) -> LoadedModel:
    from .toy import ToyPipeline

    style = spec.base.partition(":")[2] or "render"
    return LoadedModel(ToyPipeline(style, _toy_unlearning(spec)), spec, device, None, checkpoint_of(spec), "toy")


def _toy_unlearning(spec: ModelSpec):
    from .toy import ToyUnlearning

    return ToyUnlearning(spec.toy_concept, spec.leak_rate, spec.collateral, spec.degradation)


def checkpoint_of(spec: ModelSpec) -> str | None:
    """The unlearned parts of ``spec`` with the sha256 of each file (16 hex digits), for provenance."""
    if spec.is_toy:
        return _toy_unlearning(spec).describe() if spec.toy_concept or spec.degradation else None
    parts = []
    for kind in (*PARTS, "lora"):
        path = getattr(spec, kind)
        if path is None:
            continue
        digest = file_sha256(path)[:16] if Path(path).is_file() else "folder-or-hub"
        parts.append(f"{kind}={Path(path).name}@{digest}")
    return ";".join(parts) or None


def _folder_or_hub(ref: str) -> tuple[str, dict]:
    """``from_pretrained`` arguments for a local folder, or ``org/repo[/subfolder]`` on the Hub.

    E.g. ``OPTML-Group/AdvUnlearn/nudity_unlearned`` (a text encoder published in a subfolder).
    """
    if Path(ref).is_dir():
        return ref, {}
    parts = ref.split("/")
    if len(parts) < 2:
        raise ValueError(f"{ref!r} is neither a weights file, a folder, nor a Hub reference org/repo[/subfolder]")
    return "/".join(parts[:2]), ({"subfolder": "/".join(parts[2:])} if len(parts) > 2 else {})


def _replace_part(pipe, part: str, ref: str, family: Family, dtype) -> None:
    """Load the spec's weights of ``part`` (a state-dict file, a folder or a Hub reference) into ``pipe``."""
    current = getattr(pipe, part)
    label = part.replace("_", "-").capitalize()
    if Path(ref).is_file():
        state = load_state_dict(ref)
        if part == "unet":
            state = unet_state_for(current, state)
        elif part == "transformer":
            state = transformer_state_for(current, state, family.name)
        else:
            state = text_encoder_state_for(current, state, part)
        load_into(current, state, label)
        return
    where, options = _folder_or_hub(ref)
    setattr(pipe, part, type(current).from_pretrained(where, dtype=dtype, **options))


def _check_guidance(model: LoadedModel) -> None:
    family, spec = model.family, model.spec
    if family.distilled_guidance and spec.guidance is not None and not model.guidance_input:
        raise ValueError(
            f"Model {spec.label!r} ({family.name}): its transformer takes no guidance (timestep-distilled, "
            f"like FLUX.1-schnell), but its spec gives guidance {spec.guidance}; remove 'guidance'"
        )


def set_scheduler(pipe, name: str) -> None:
    import diffusers

    class_name, extra = _SCHEDULERS[name]
    pipe.scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config, **extra)


def _tile_vae(vae, tiling: bool | int) -> None:
    """Decode in tiles. diffusers 0.42 tiles only latents larger than ``sample_size`` / scale (a native-size image
    is one tile, no memory saved); an integer is the tile side in pixels, which tiles native-size images too."""
    vae.enable_tiling()
    if tiling is not True:
        scale = 2 ** (len(vae.config.block_out_channels) - 1)
        vae.tile_sample_min_size, vae.tile_latent_min_size = tiling, tiling // scale


def load_pipeline(
    spec: ModelSpec, device: str = "cpu", compile: bool = False, channels_last: bool = False
) -> LoadedModel:
    """Load ``spec`` onto ``device`` with its overrides applied and the safety checker off.

    The safety checker is off because the dataset needs the concept images it would black out; the
    job records this in its configuration.
    """
    if spec.is_toy:  # before importing diffusers, which the toy world does not need (seconds of imports)
        return _load_toy(spec, device)
    import torch
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # the job's own bar is the one to watch
    transformers_logging.disable_progress_bar()
    base = spec.weights_base
    # The family from model_index.json decides the dtype; checked again against the class that loads.
    index = model_index(base, spec.revision)
    family = resolve_family(spec, index.get("_class_name"))
    dtype = torch_dtype(dtype_name(spec, family), device)
    # only SD pipelines have a safety checker (others would warn about an unexpected argument)
    extra = {"safety_checker": None, "requires_safety_checker": False} if family is None or family.name == "sd" else {}
    extra |= dict.fromkeys(absent_components(index))  # e.g. SD3 saved without T5: diffusers needs them named None
    pipe = DiffusionPipeline.from_pretrained(base, revision=spec.revision, dtype=dtype, **extra)
    family = resolve_family(spec, type(pipe).__name__)
    check_spec_for_family(spec, family)
    for part in PARTS:
        if getattr(spec, part) is not None:
            _replace_part(pipe, part, getattr(spec, part), family, dtype)
    if spec.lora is not None:
        pipe.load_lora_weights(spec.lora, adapter_name="unlearned")
        pipe.set_adapters(["unlearned"], adapter_weights=[spec.lora_scale])
    if spec.scheduler is not None:
        set_scheduler(pipe, spec.scheduler)
    if spec.vae_tiling:
        _tile_vae(pipe.vae, spec.vae_tiling)
    if spec.cpu_offload and device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=device)  # each part moves to the GPU while it runs
    else:
        if spec.cpu_offload:
            logger.warning("Model %r: cpu_offload applies on CUDA only; on %s it runs without", spec.label, device)
        pipe.to(device)
    if channels_last and family.denoiser == "unet":  # a memory format of convolutions: transformers have none
        pipe.unet.to(memory_format=torch.channels_last)
    if compile:
        denoiser = getattr(pipe, family.denoiser)
        setattr(pipe, family.denoiser, torch.compile(denoiser, mode="max-autotune", fullgraph=True))
    pipe.set_progress_bar_config(disable=True)
    model = LoadedModel(
        pipe=pipe,
        spec=spec,
        device=device,
        model_revision=_revision_of(base, spec.revision),
        checkpoint=checkpoint_of(spec),
        scheduler=type(pipe.scheduler).__name__,  # the class that really ran, whichever name chose it
        family=family,
    )
    _check_guidance(model)
    return model
