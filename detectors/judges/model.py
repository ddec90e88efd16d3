"""The judge's network: any ``timm`` model with one logit per concept, and its data configuration."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and timm load inside the functions, so DEFAULT_MODEL and MODES stay light
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

# The paper's MultClf backbone: the OpenAI CLIP ViT-B/32 image tower, exact architecture (QuickGELU).
DEFAULT_MODEL = "vit_base_patch32_clip_quickgelu_224.openai"
MODES = ("probe", "finetune")


def create_judge_model(
    name: str = DEFAULT_MODEL,
    num_concepts: int = 1,
    pretrained: bool = True,
    pretrained_path: str | None = None,
    model_kwargs: dict | None = None,
) -> nn.Module:
    """``timm.create_model(name, num_classes=num_concepts)`` with weights from the Hub, a local file, or none.

    Args:
        name: any ``timm`` model name (with an optional pretrained tag), or ``local-dir:``/``hf-hub:``.
        num_concepts: one logit per concept.
        pretrained: load pretrained weights (from ``pretrained_path`` when given, else timm's source).
        pretrained_path: a local weights file (``.safetensors``, ``.pth``, ``.bin``), so training runs offline.
        model_kwargs: extra ``create_model`` arguments (e.g. ``img_size``, ``drop_path_rate``).
    """
    import timm

    kwargs = dict(model_kwargs or {})
    if pretrained_path is not None:
        if not pretrained:
            raise ValueError(f"pretrained_path={pretrained_path!r} was given with pretrained=false; drop one of them")
        if not Path(pretrained_path).is_file():
            raise ValueError(f"pretrained_path {pretrained_path!r} is not a file")
        from dataigm.weights_files import check_weights_readable

        # timm would load it with its own message (which suggests weights_only=False): one line of ours first
        check_weights_readable(pretrained_path, f"pretrained_path {str(pretrained_path)!r}")
        kwargs["pretrained_cfg_overlay"] = dict(file=str(pretrained_path))
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_concepts, **kwargs)
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise ValueError(f"Unknown timm model {name!r}; see timm.list_models() for the valid names") from None
        raise
    except OSError as err:  # weights not reachable (offline, no cache)
        raise ValueError(
            f"Cannot load the pretrained weights of {name!r} ({err}); pass --pretrained-path FILE for local weights "
            "or --pretrained false for random weights"
        ) from None


def model_input_size(model: nn.Module) -> tuple[int, int, int] | None:
    """The input size a fixed-size model (e.g. a ViT) was built for, or None when any size works."""
    from timm.models import get_model_input_config

    current = get_model_input_config(model)
    return tuple(current["input_size"]) if current["fixed_input_size"] else None


def judge_data_config(model: nn.Module, img_size: int | None = None) -> dict:
    """The data configuration (input size, mean/std, crop, interpolation) from the model's ``pretrained_cfg``.

    A fixed-size model keeps the size it was built with (``model_kwargs.img_size``); ``img_size`` sets the
    input side of the others.
    """
    import timm.data

    config = dict(timm.data.resolve_model_data_config(model))
    fixed = model_input_size(model)
    if fixed is not None:
        if img_size is not None and (img_size, img_size) != tuple(fixed[1:]):
            raise ValueError(
                f"img_size={img_size} but the model is built for {fixed[1]}x{fixed[2]} inputs; "
                "set model_kwargs.img_size instead"
            )
        config["input_size"] = fixed
    elif img_size is not None:
        config["input_size"] = (config["input_size"][0], img_size, img_size)
    return config


def create_transforms(data_config: dict, augment: bool = False):
    """``(train, eval)`` transforms; the train one is timm's augmentation when ``augment``, else the eval one."""
    import timm.data

    eval_transform = timm.data.create_transform(**data_config, is_training=False)
    train_transform = timm.data.create_transform(**data_config, is_training=True) if augment else eval_transform
    return train_transform, eval_transform


def classifier_name(model: nn.Module) -> str:
    """The module name of the model's classifier (``get_classifier()``), e.g. ``head`` or ``fc``."""
    head = model.get_classifier()
    for name, module in model.named_modules():
        if module is head:
            return name
    raise ValueError(f"{type(model).__name__}.get_classifier() is not one of its sub-modules")


def freeze_backbone(model: nn.Module) -> nn.Module:
    """Freeze everything but the classifier; returns the classifier."""
    head = model.get_classifier()
    for param in model.parameters():
        param.requires_grad_(False)
    for param in head.parameters():
        param.requires_grad_(True)
    return head


def pooled_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The classifier's input: ``forward_head(forward_features(x), pre_logits=True)``."""
    return model.forward_head(model.forward_features(images), pre_logits=True)


def backbone_fingerprint(model: nn.Module) -> str:
    """sha256 over the names, shapes and values of every non-classifier tensor: identifies frozen features."""
    import torch

    prefix = classifier_name(model) + "."
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith(prefix):
            continue
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def autocast(device: torch.device, enabled: bool):
    """bf16 (or fp16) autocast on CUDA when ``enabled``; a no-op elsewhere (judging and training share it)."""
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    import torch

    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)
