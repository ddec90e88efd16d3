"""Pick a batch size from free GPU memory with two small measured calls (any family: UNet or transformer)."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

MAX_BATCH = 64
CPU_BATCH = 4
MEMORY_SHARE = 0.8  # leave room for fragmentation and the VAE's peak


def batch_from_peaks(extra_1: int, extra_2: int, free: int) -> int:
    """The batch size whose peak fills :data:`MEMORY_SHARE` of ``free`` bytes.

    Args:
        extra_1, extra_2: peak memory above the resident weights of a 1-image and a 2-image call. Their
            difference is the memory of one more image; the rest of ``extra_1`` is what any call needs (text
            encoders' activations, the VAE, and with CPU offload the part moved to the GPU).
        free: free GPU memory before the calls.
    """
    per_image = max(extra_2 - extra_1, 1)
    fixed = max(extra_1 - per_image, 0)
    return int(max(1, min(MAX_BATCH, (MEMORY_SHARE * free - fixed) // per_image)))


def probe_batch_size(model, cfg) -> int:
    """Measure the peaks of a 1-image and a 2-image call of 1 step (the job's size and the family's options)."""
    import torch

    from .mapper import call_arguments

    if not model.device.startswith("cuda"):
        return CPU_BATCH
    spec = model.spec
    guidance = None
    if model.family is not None and model.family.distilled_guidance and model.guidance_input:
        guidance = spec.guidance if spec.guidance is not None else model.family.default_guidance
    elif model.family is None or not model.family.distilled_guidance:
        guidance = spec.guidance if spec.guidance is not None else cfg.guidance  # > 1: the CFG batch is doubled
    settings = (1, guidance, spec.height or cfg.height, spec.width or cfg.width, None)
    free, _ = torch.cuda.mem_get_info()
    extras = []
    for n in (1, 2):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        model.pipe(**call_arguments(model, ["probe"] * n, None, settings))
        torch.cuda.synchronize()
        extras.append(torch.cuda.max_memory_allocated() - before)
    size = batch_from_peaks(extras[0], extras[1], free)
    logger.info(
        "batch size %d (%.2f GiB per image, %.2f GiB per call, %.1f GiB free)",
        size, max(extras[1] - extras[0], 1) / 2**30, extras[0] / 2**30, free / 2**30,
    )  # fmt: skip
    return size
