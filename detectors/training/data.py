"""The data of a judge training run: index the training split, carve (or read) validation, and build
the seeded DataLoaders the trainer iterates."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
import torch

from dataigm.manifest import read_manifest
from detectors.data import (
    VAL_RULE,
    Entry,
    available_splits,
    build_index,
    carve_validation,
    collate_skip_none,
    dataset_revision,
    label_counts,
)
from detectors.training.config import TrainConfig
from detectors.training.distributed import DistInfo

logger = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """The images of a run: concepts, training and validation entries, class names, dataset revision, split."""

    concepts: list[str]
    train: list[Entry]
    val: list[Entry]
    class_names: dict[str, list[str]]
    revision: dict
    split_info: dict


def prepare_data(cfg: TrainConfig) -> TrainingData:
    """Index the training split, carve (or read) validation, and check every concept has both classes."""
    splits = available_splits(cfg.data)
    for name in (cfg.train_split, cfg.val_split):
        if name is not None and name not in splits:
            raise ValueError(f"Split {name!r} is not in {cfg.data}; its splits: {', '.join(splits) or 'none'}")
    entries = exclude_methods(build_index(cfg.data, split=cfg.train_split, concepts=cfg.concepts), cfg.exclude_methods)
    concepts = cfg.concepts or sorted(
        {e.concept for e in entries}, key=list(read_manifest(cfg.data)["concepts"]).index
    )
    if cfg.val_split is not None:
        val = build_index(cfg.data, split=cfg.val_split, concepts=concepts)
        train, val = entries, [e for e in val if e.method not in set(cfg.exclude_methods or ())]
        rule = f"split {cfg.val_split!r}"
    else:
        train, val = carve_validation(entries, cfg.val_fraction)
        rule = f"{cfg.val_fraction:g} of split {cfg.train_split!r}: {VAL_RULE}"
    train_counts, val_counts = label_counts(train), label_counts(val)
    for concept in concepts:
        counts = train_counts.get(concept, {"pair": 0, "target": 0})
        if not counts["pair"] or not counts["target"]:
            raise ValueError(
                f"Concept {concept!r} needs training images of both classes; the training data has {counts}"
            )
        if concept not in val_counts:
            logger.warning("concept %s has no validation image: its temperature is 1 and its threshold 0.5", concept)
    manifest_concepts = read_manifest(cfg.data)["concepts"]
    class_names = {c: [manifest_concepts[c]["pair_class"], manifest_concepts[c]["target_class"]] for c in concepts}
    split_info = {
        "rule": rule,
        "train_split": cfg.train_split,
        "counts": {"train": train_counts, "validation": val_counts},
        "validation_ids": [e.uid for e in val],
        "exclude_methods": list(cfg.exclude_methods or []),
    }
    logger.info("data: %d training and %d validation images, concepts %s", len(train), len(val), ", ".join(concepts))
    return TrainingData(list(concepts), train, val, class_names, dataset_revision(cfg.data), split_info)


def exclude_methods(entries: list[Entry], methods: list[str] | None) -> list[Entry]:
    """``entries`` without the images of the unlearning ``methods`` (held out from training).

    Raises:
        ValueError: a method that no image of ``entries`` has; the message lists the methods there.
    """
    if not methods:
        return entries
    present = sorted({e.method for e in entries if e.method})
    unknown = [m for m in methods if m not in present]
    if unknown:
        raise ValueError(
            f"exclude_methods: no training image has method(s) {unknown}; the methods of the training split: "
            f"{', '.join(present) or 'none (no generated images with a method)'}"
        )
    kept = [e for e in entries if e.method not in set(methods)]
    logger.info("left out %d training images of method(s) %s", len(entries) - len(kept), ", ".join(methods))
    return kept


class EpochSampler(torch.utils.data.Sampler):
    """The sample order of one epoch, a function of (seed, epoch) only; it lives as long as its DataLoader.

    Training shuffles (a seeded permutation, or a ``DistributedSampler`` under torchrun); validation
    (``shuffle=False``) reads in order. Each index is yielded as ``(epoch, index)``, so a dataset copied
    into persistent workers still draws each epoch's augmentation (:class:`~detectors.data.ShardImageDataset`).
    """

    def __init__(self, dataset, seed: int, dist: DistInfo, shuffle: bool = True):
        self.size, self.seed, self.shuffle, self.epoch = len(dataset), seed, shuffle, 0
        self.distributed = None
        if shuffle and dist.enabled:
            self.distributed = torch.utils.data.DistributedSampler(
                dataset, dist.world_size, dist.rank, shuffle=True, seed=seed
            )

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next pass over the loader draws."""
        self.epoch = int(epoch)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        if self.distributed is not None:
            self.distributed.set_epoch(self.epoch)
            return list(self.distributed)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self):
        return ((self.epoch, index) for index in self._order())

    def __len__(self) -> int:
        return len(self.distributed) if self.distributed is not None else self.size


def make_loader(
    dataset,
    batch_size: int,
    seed: int,
    shuffle: bool,
    dist: DistInfo,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> tuple[torch.utils.data.DataLoader, EpochSampler]:
    """A DataLoader whose order depends only on (seed, epoch), built once per run, and its sampler.

    Call ``sampler.set_epoch(epoch)`` before each pass. The workers persist across epochs (no re-fork, no
    re-opened shards); each sample's augmentation is seeded by (seed, epoch, index), so they change nothing.

    Args:
        dataset: a ``ShardImageDataset``, a ``PixelDataset`` or a tensor dataset of cached features.
        batch_size: images per batch.
        seed: the run's seed.
        shuffle: training order (a seeded permutation per epoch); False for validation (in order).
        dist: the process group of the run.
        num_workers: worker processes (they change nothing in the result).
        pin_memory: pin host memory (CUDA runs).
    """
    sampler = EpochSampler(dataset, seed, dist, shuffle=shuffle)
    if isinstance(dataset, torch.utils.data.TensorDataset):  # indexed by plain integers
        sampler_for_loader = _PlainIndices(sampler)
    else:
        sampler_for_loader = sampler
    # the workers' base seed comes from this generator, not from the global RNG
    loader_seed = int(np.random.SeedSequence([seed, 0 if not shuffle else 1]).generate_state(1)[0])
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler_for_loader,
        num_workers=num_workers,
        collate_fn=collate_skip_none,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(loader_seed),
        worker_init_fn=_seed_worker,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    return loader, sampler


class _PlainIndices(torch.utils.data.Sampler):
    """An :class:`EpochSampler`'s order as plain indices (for datasets that take integers only)."""

    def __init__(self, sampler: EpochSampler):
        self.sampler = sampler

    def __iter__(self):
        return (index for _, index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def _seed_worker(worker_id: int) -> None:
    """Seed python's and numpy's RNGs in a DataLoader worker from the seed torch gave it."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
