"""Build a diffusers pipeline from a :class:`ModelSpec`: base, unlearned parts, scheduler, dtype, speed-ups."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dataigm.files import sha256_file

from .spec import ModelSpec
from .weights import load_into, load_state_dict, text_encoder_state_for, unet_state_for

logger = logging.getLogger(__name__)

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


def torch_dtype(name: str, device: str):
    import torch

    if not device.startswith("cuda") and name != "fp32":
        logger.info("dtype %s requested on %s: running in fp32", name, device)
        return torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


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
    for kind in ("unet", "text_encoder", "lora"):
        path = getattr(spec, kind)
        if path is None:
            continue
        digest = sha256_file(path)[:16] if Path(path).is_file() else "folder-or-hub"
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


def set_scheduler(pipe, name: str) -> None:
    import diffusers

    class_name, extra = _SCHEDULERS[name]
    pipe.scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config, **extra)


def load_pipeline(
    spec: ModelSpec, device: str = "cpu", compile: bool = False, channels_last: bool = False
) -> LoadedModel:
    """Load ``spec`` onto ``device`` with its overrides applied and the safety checker off.

    The safety checker is off because the dataset needs the concept images it would black out; the
    job records this in its configuration.
    """
    import torch
    from diffusers import DiffusionPipeline

    if spec.is_toy:
        return _load_toy(spec, device)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # the job's own bar is the one to watch
    transformers_logging.disable_progress_bar()
    dtype = torch_dtype(spec.dtype, device)
    base = spec.weights_base
    pipe = DiffusionPipeline.from_pretrained(
        base, revision=spec.revision, dtype=dtype, safety_checker=None, requires_safety_checker=False
    )
    if spec.unet is not None:
        if Path(spec.unet).is_file():
            load_into(pipe.unet, unet_state_for(pipe.unet, load_state_dict(spec.unet)), "UNet")
        else:
            from diffusers import UNet2DConditionModel

            where, options = _folder_or_hub(spec.unet)
            pipe.unet = UNet2DConditionModel.from_pretrained(where, dtype=dtype, **options)
    if spec.text_encoder is not None:
        if Path(spec.text_encoder).is_file():
            state = text_encoder_state_for(pipe.text_encoder, load_state_dict(spec.text_encoder))
            load_into(pipe.text_encoder, state, "Text-encoder")
        else:
            from transformers import CLIPTextModel

            where, options = _folder_or_hub(spec.text_encoder)
            pipe.text_encoder = CLIPTextModel.from_pretrained(where, dtype=dtype, **options)
    if spec.lora is not None:
        pipe.load_lora_weights(spec.lora, adapter_name="unlearned")
        pipe.set_adapters(["unlearned"], adapter_weights=[spec.lora_scale])
    if spec.scheduler is not None:
        set_scheduler(pipe, spec.scheduler)
    pipe.to(device)
    if channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
    if compile:
        pipe.unet = torch.compile(pipe.unet, mode="max-autotune", fullgraph=True)
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel(
        pipe=pipe,
        spec=spec,
        device=device,
        model_revision=_revision_of(base, spec.revision),
        checkpoint=checkpoint_of(spec),
        scheduler=type(pipe.scheduler).__name__,  # the class that really ran, whichever name chose it
    )
