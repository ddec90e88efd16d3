"""Frozen-backbone features, computed once and cached on disk (probe mode).

A cache file is keyed by what decides the features: the backbone's weights (a sha256 over every
non-classifier tensor), the eval transform, the numeric precision (float32 or CUDA autocast), and the
images (each shard's sha256 plus the sample keys).
Any change to one of them is a new key, so a stale cache is never read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from dataigm.identity import json_sha256
from detectors.data import (
    Entry,
    ShardImageDataset,
    collate_skip_none,
    entries_content,
    entry_pixels,
    one_pass_workers,
)
from detectors.judges.model import autocast, backbone_fingerprint, pooled_features

logger = logging.getLogger(__name__)

CACHE_VERSION = "1"


def feature_cache_key(model: torch.nn.Module, transform, entries: Sequence[Entry], precision: str = "float32") -> str:
    """sha256 of (backbone weights, transform, numeric precision, shard checksums and keys of ``entries``)."""
    payload = {
        "version": CACHE_VERSION,
        "backbone": backbone_fingerprint(model),
        "transform": repr(transform),
        "precision": precision,
        **entries_content(entries),
    }
    return json_sha256(payload)


@torch.no_grad()
def extract_features(
    model: torch.nn.Module,
    entries: Sequence[Entry],
    transform,
    batch_size: int = 64,
    num_workers: int | None = None,
    device: torch.device | str = "cpu",
    amp: bool = True,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, valid)``: the classifier inputs of every entry (float32, CPU) and which images were readable.

    Args:
        model: the timm model whose pooled features are wanted.
        entries: the images, in the order of the rows.
        transform: the model's eval transform.
        batch_size: images per forward.
        num_workers: DataLoader worker processes that read and transform the images (0: this process; None: sized
            to the host, none for a small pass or small images: :func:`detectors.data.one_pass_workers`). The features
            do not depend on it.
        device: where the model runs.
        amp: autocast on CUDA.
        progress: show a progress bar.
    """
    device = torch.device(device)
    dataset = ShardImageDataset(entries, sorted({e.concept for e in entries}), transform)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=one_pass_workers(num_workers, len(entries), batch_size, lambda: entry_pixels(entries)),
        collate_fn=collate_skip_none,
    )
    was_training = model.training
    model.eval()
    features: torch.Tensor | None = None
    valid = torch.zeros(len(entries), dtype=torch.bool)
    batches = loader
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(loader, desc="features", unit="batch")
    for batch in batches:
        if batch is None:
            continue
        images, _, _, index = batch
        with autocast(device, amp):
            out = pooled_features(model, images.to(device, non_blocking=True)).float().cpu()
        if features is None:
            features = torch.zeros(len(entries), out.shape[1])
        features[index] = out
        valid[index] = True
    dataset.close()
    model.train(was_training)
    if features is None:
        raise ValueError("No readable image to extract features from")
    return features, valid


def cached_features(
    model: torch.nn.Module,
    entries: Sequence[Entry],
    transform,
    cache_dir: str | Path,
    batch_size: int = 64,
    num_workers: int | None = None,
    device: torch.device | str = "cpu",
    amp: bool = True,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`extract_features`, read from ``cache_dir`` when this backbone/transform/data was seen before."""
    from safetensors.torch import load_file, save_file

    device = torch.device(device)
    precision = "autocast" if amp and device.type == "cuda" else "float32"
    key = feature_cache_key(model, transform, entries, precision)
    path = Path(cache_dir) / f"{key}.safetensors"
    if path.exists():
        tensors = load_file(str(path))
        if tensors["features"].shape[0] == len(entries):
            logger.info("features read from cache %s", path)
            return tensors["features"], tensors["valid"].bool()
        logger.warning(
            "ignoring feature cache %s: it holds %d rows, expected %d",
            path,
            tensors["features"].shape[0],
            len(entries),
        )
    features, valid = extract_features(model, entries, transform, batch_size, num_workers, device, amp, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(
        {"features": features.contiguous(), "valid": valid.to(torch.uint8)},
        str(tmp),
        metadata={"rows": str(len(entries))},
    )
    os.replace(tmp, path)
    logger.info("features cached in %s", path)
    return features, valid
