"""Judge inputs decoded once: every image resized and cropped to the judge's input size, kept as uint8 pixels.

Decoding a 512 px PNG and resizing it costs ~15 ms of one core; a training run pays that for every image in
every epoch. The pixel cache runs the eval transform's PIL stages (resize, centre crop) once per image, in
DataLoader workers, and stores the result in one ``.npy`` array of shape (N, H, W, 3). Training and validation
then read rows of a memory map and scale them to float on the whole batch (:func:`normalize_batch`): the same
arithmetic as torchvision's ``ToTensor`` + ``Normalize``, so the inputs equal the uncached path bit for bit.

A cache file is keyed by what decides its pixels: the images (each shard's sha256 and the sample keys), the PIL
stages of the transform and the Pillow version. Any change is a new key, so a stale cache is never read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dataigm.identity import json_sha256
from detectors.data import (
    Entry,
    ShardImageDataset,
    collate_skip_none,
    entries_content,
    entry_pixels,
    one_pass_workers,
    targets_and_mask,
)

logger = logging.getLogger(__name__)

PIXEL_CACHE_VERSION = "1"
_TO_TENSOR = ("ToTensor", "MaybeToTensor")


def split_transform(transform) -> tuple[list, tuple[tuple[float, ...], tuple[float, ...]]] | None:
    """``(PIL stages, (mean, std))`` of a ``Compose`` that ends in to-tensor + ``Normalize``; None for any other.

    Only such a transform can be cached as pixels: what follows the PIL stages is then a fixed scaling that
    :func:`normalize_batch` applies to a whole batch.
    """
    from torchvision.transforms import Compose, Normalize

    if not isinstance(transform, Compose):
        return None
    steps = list(transform.transforms)
    if len(steps) < 2 or type(steps[-2]).__name__ not in _TO_TENSOR or not isinstance(steps[-1], Normalize):
        return None
    norm = steps[-1]
    mean = tuple(float(v) for v in torch.as_tensor(norm.mean).flatten())
    std = tuple(float(v) for v in torch.as_tensor(norm.std).flatten())
    return steps[:-2], (mean, std)


def normalize_batch(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images (N, C, H, W) to normalised float32, with ``ToTensor`` + ``Normalize``'s exact operations."""
    x = pixels.to(torch.float32).div(255)
    shape = (1, -1, 1, 1)
    return x.sub_(torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)).div_(
        torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    )


def pixel_cache_key(stages: Sequence, entries: Sequence[Entry]) -> str:
    """sha256 of (PIL stages, Pillow version, shard checksums and keys of ``entries``)."""
    import PIL

    payload = {
        "version": PIXEL_CACHE_VERSION,
        "stages": [repr(stage) for stage in stages],
        "pillow": PIL.__version__,
        **entries_content(entries),
    }
    return json_sha256(payload)


class _ToArray:
    """The PIL stages, then the image as an (H, W, 3) uint8 array (picklable for DataLoader workers)."""

    def __init__(self, stages: Sequence):
        self.stages = list(stages)

    def __call__(self, image) -> np.ndarray:
        for stage in self.stages:
            image = stage(image)
        return np.array(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)


def build_pixels(
    entries: Sequence[Entry],
    stages: Sequence,
    path: str | Path,
    num_workers: int | None = None,
    batch_size: int = 64,
) -> None:
    """Decode every entry once through ``stages`` into ``path`` (pixels) and ``path``'s ``.valid.npy`` twin.

    Both files are written under temporary names and renamed, the pixels last: a cache is complete when its
    pixel file exists. An unreadable image leaves a zero row, marked invalid. ``num_workers`` decoding processes
    (0: this process; None: sized to the host, none for a small pass or small images:
    :func:`detectors.data.one_pass_workers`) change nothing in the pixels.
    """
    path = Path(path)
    dataset = ShardImageDataset(entries, sorted({e.concept for e in entries}), _ToArray(stages))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=one_pass_workers(num_workers, len(entries), batch_size, lambda: entry_pixels(entries)),
        collate_fn=collate_skip_none,
    )
    valid = np.zeros(len(entries), dtype=bool)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pixels = None
    try:
        for batch in loader:
            if batch is None:
                continue
            images, _, _, index = batch
            if pixels is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                shape = (len(entries), *images.shape[1:])
                pixels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            if tuple(images.shape[1:]) != pixels.shape[1:]:
                raise ValueError(
                    f"the transform gives images of shape {tuple(images.shape[1:])} and {pixels.shape[1:]}"
                )
            pixels[index.numpy()] = images.numpy()
            valid[index.numpy()] = True
    finally:
        dataset.close()
    if pixels is None:
        raise ValueError("No readable image to cache")
    pixels.flush()
    del pixels
    valid_path = _valid_path(path)
    valid_tmp = valid_path.with_name(f".{valid_path.name}.{os.getpid()}.tmp")
    with open(valid_tmp, "wb") as f:
        np.save(f, valid)
    os.replace(valid_tmp, valid_path)
    os.replace(tmp, path)


def _valid_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".npy") + ".valid.npy")


def cached_pixels(
    entries: Sequence[Entry],
    stages: Sequence,
    cache_dir: str | Path,
    num_workers: int | None = None,
    batch_size: int = 64,
) -> tuple[Path, np.ndarray]:
    """``(pixel file, valid)``: the cache of ``entries`` through ``stages``, built on the first call.

    Args:
        entries: the images, in the order of the cache's rows.
        stages: the transform's PIL stages (:func:`split_transform`).
        cache_dir: where cache files live (shared with the feature cache).
        num_workers: DataLoader worker processes that decode while the cache is built (None: sized to the host,
            :func:`detectors.data.one_pass_workers`).
        batch_size: images per decoded batch.
    """
    path = Path(cache_dir) / f"pixels-{pixel_cache_key(stages, entries)}.npy"
    valid_path = _valid_path(path)
    if path.exists() and valid_path.exists():
        valid = np.load(valid_path)
        if np.load(path, mmap_mode="r").shape[0] == len(entries) == valid.shape[0]:
            logger.info("images read from cache %s", path)
            return path, valid
        logger.warning("ignoring image cache %s: its row count is not %d", path, len(entries))
    build_pixels(entries, stages, path, num_workers, batch_size)
    logger.info("images decoded once into %s", path)
    return path, np.load(valid_path)


class PixelDataset(torch.utils.data.Dataset):
    """``(uint8 image (3, H, W), targets, mask, index)`` from a pixel cache, or ``None`` for an unreadable image.

    The memory map is opened in each process that reads it (DataLoader workers open their own). An index may be
    an ``(epoch, index)`` pair (see :class:`detectors.training.data.EpochSampler`); the epoch changes nothing here.
    """

    def __init__(self, path: str | Path, valid: np.ndarray, entries: Sequence[Entry], concepts: Sequence[str]):
        self.path = str(path)
        self.valid = np.asarray(valid, dtype=bool)
        self.targets, self.mask = targets_and_mask(entries, concepts)
        self._pixels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.valid)

    def __getstate__(self) -> dict:  # the memory map stays in the process that opened it
        return {**self.__dict__, "_pixels": None}

    def __getitem__(self, index):
        if isinstance(index, tuple):
            index = index[1]
        if not self.valid[index]:
            return None
        if self._pixels is None:
            self._pixels = np.load(self.path, mmap_mode="r")
        image = torch.from_numpy(np.array(self._pixels[index])).permute(2, 0, 1)
        return image, self.targets[index], self.mask[index], index
