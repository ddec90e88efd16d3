"""The multi-concept loss: binary cross-entropy counted only where a sample is labelled."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the (sample, concept) cells where ``mask`` is 1.

    A sample of a two-concept judge that is labelled only for ``church`` contributes nothing, and no
    gradient, through its ``nudity`` logit. With no labelled cell at all the loss is 0.
    """
    if logits.shape != targets.shape or logits.shape != mask.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)}, targets {tuple(targets.shape)} and mask {tuple(mask.shape)} must match"
        )
    per_cell = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    mask = mask.to(logits.dtype)
    return (per_cell * mask).sum() / mask.sum().clamp_min(1.0)
