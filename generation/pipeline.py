"""Build a diffusers pipeline from a :class:`ModelSpec`: base, unlearned parts, scheduler, dtype, speed-ups."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .spec import ModelSpec
from .weights import file_sha256, load_into, load_state_dict, text_encoder_state_for, unet_state_for

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


def _checkpoint_of(spec: ModelSpec) -> str | None:
    parts = []
    for kind in ("unet", "text_encoder", "lora"):
        path = getattr(spec, kind)
        if path is None:
            continue
        digest = file_sha256(path)[:16] if Path(path).is_file() else "folder-or-hub"
        parts.append(f"{kind}={Path(path).name}@{digest}")
    return ";".join(parts) or None


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
        if Path(spec.unet).is_dir():
            from diffusers import UNet2DConditionModel

            pipe.unet = UNet2DConditionModel.from_pretrained(spec.unet, dtype=dtype)
        else:
            load_into(pipe.unet, unet_state_for(pipe.unet, load_state_dict(spec.unet)), "UNet")
    if spec.text_encoder is not None:
        if Path(spec.text_encoder).is_dir():
            from transformers import CLIPTextModel

            pipe.text_encoder = CLIPTextModel.from_pretrained(spec.text_encoder, dtype=dtype)
        else:
            state = text_encoder_state_for(pipe.text_encoder, load_state_dict(spec.text_encoder))
            load_into(pipe.text_encoder, state, "Text-encoder")
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
        checkpoint=_checkpoint_of(spec),
        scheduler=spec.scheduler or type(pipe.scheduler).__name__,
    )
