"""What a judge accepts: PIL images, image files, image tensors or arrays, lists of those, ``datasets`` datasets.

Everything becomes a stream of RGB PIL images, so every judge applies its own preprocessing. torch and
datasets are only consulted when the caller already imported them: an object cannot be a tensor (or a
dataset) of a library that was never loaded, so ``import detectors.judges`` stays light.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

IMAGE_COLUMNS = ("png", "jpg", "jpeg", "webp", "image", "img")


def is_tensor(obj: Any) -> bool:
    """True for a ``torch.Tensor`` (without importing torch when nothing imported it)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def is_hf_dataset(obj: Any) -> bool:
    """True for a ``datasets.Dataset`` or ``datasets.IterableDataset``."""
    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(obj, (datasets.Dataset, datasets.IterableDataset))


def to_pil(item: Any) -> Image.Image:
    """A PIL image, image file, (C,H,W) tensor in [0, 1] or uint8, or (H,W,C) uint8 array -> RGB PIL image.

    Raises:
        ValueError: a tensor or array of the wrong shape, dtype or range, or an object of another type.
    """
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, (str, Path)):
        with Image.open(item) as img:
            return img.convert("RGB")
    if is_tensor(item):
        from torchvision.transforms.functional import to_pil_image

        if item.ndim != 3:
            raise ValueError(f"An image tensor must be (C, H, W); got shape {tuple(item.shape)}")
        if item.is_floating_point() and (item.min() < 0 or item.max() > 1):
            raise ValueError("A float image tensor must hold values in [0, 1] (un-normalised RGB)")
        return to_pil_image(item.detach().cpu()).convert("RGB")
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.dtype != np.uint8:
            raise ValueError(f"An image array must be (H, W, C) uint8; got {item.dtype} {item.shape}")
        return Image.fromarray(item).convert("RGB")
    raise ValueError(
        f"Cannot judge an object of type {type(item).__name__}; give PIL images, image tensors, image files, "
        "a datasets.Dataset or a DataIGM root"
    )


def image_column(dataset) -> str:
    """The image column of a ``datasets`` dataset (a known name first, then any ``datasets.Image`` feature)."""
    import datasets

    features = dataset.features or {}
    for name in IMAGE_COLUMNS:
        if name in features and isinstance(features[name], datasets.Image):
            return name
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            return name
    raise ValueError(f"The dataset has no image column; its columns: {', '.join(features) or 'unknown'}")


def image_stream(images: Any) -> tuple[Iterator, list[str] | None]:
    """``(items, keys)``: the images one by one, and the dataset's ``__key__`` values when it has them.

    ``keys`` is filled as ``items`` is consumed. A 4-d tensor or array is a batch of images.

    Raises:
        ValueError: an object that is not an image, a batch, a dataset or an iterable of images.
    """
    if is_hf_dataset(images):
        column = image_column(images)
        has_keys = "__key__" in (images.column_names or [])
        rows = images.select_columns([column, "__key__"] if has_keys else [column])
        keys: list[str] | None = [] if has_keys else None
        return (_remember_key(keys, row, column) for row in rows), keys
    if (is_tensor(images) or isinstance(images, np.ndarray)) and images.ndim == 4:
        return iter(images), None  # a batch: (N, C, H, W) tensor or (N, H, W, C) array
    if isinstance(images, (Image.Image, str, Path, np.ndarray)) or is_tensor(images):
        return iter([images]), None
    if isinstance(images, Iterable):
        return iter(images), None
    raise ValueError(f"Cannot judge an object of type {type(images).__name__}")


def _remember_key(keys: list[str] | None, row: dict, column: str):
    if keys is not None:
        keys.append(row["__key__"])
    return row[column]


def chunked(items: Iterable, size: int) -> Iterator[list]:
    """Lists of ``size`` items (the last one shorter)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
