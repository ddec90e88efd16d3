"""Pick a batch size from free GPU memory with one small measured call."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

MAX_BATCH = 64
CPU_BATCH = 4
MEMORY_SHARE = 0.8  # leave room for fragmentation and the VAE's peak


def probe_batch_size(model, cfg) -> int:
    """Measure the peak memory of a 1-image, 1-step call and fill ``MEMORY_SHARE`` of free memory."""
    import torch

    if not model.device.startswith("cuda"):
        return CPU_BATCH
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    model.pipe(prompt=["probe"], num_inference_steps=1, height=cfg.height, width=cfg.width, output_type="np")
    per_image = max(torch.cuda.max_memory_allocated() - before, 1)
    free, _ = torch.cuda.mem_get_info()
    size = int(max(1, min(MAX_BATCH, MEMORY_SHARE * free // per_image)))
    logger.info("batch size %d (%.2f GiB per image, %.1f GiB free)", size, per_image / 2**30, free / 2**30)
    return size
