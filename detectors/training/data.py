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
    ShardImageDataset,
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


def make_loader(
    dataset,
    batch_size: int,
    seed: int,
    epoch: int | None,
    dist: DistInfo,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader whose order and worker seeds depend only on (seed, epoch).

    Args:
        dataset: a ``ShardImageDataset`` or a tensor dataset of cached features.
        batch_size: images per batch.
        seed: the run's seed.
        epoch: the training epoch (shuffled: a seeded permutation, or a ``DistributedSampler`` under
            torchrun); None for validation (in order).
        dist: the process group of the run.
        num_workers: worker processes (they change nothing in the result).
        pin_memory: pin host memory (CUDA runs).
    """
    sampler = None
    if epoch is not None:
        if dist.enabled:
            sampler = torch.utils.data.DistributedSampler(dataset, dist.world_size, dist.rank, shuffle=True, seed=seed)
            sampler.set_epoch(epoch)
        else:
            generator = torch.Generator().manual_seed(seed + epoch)
            sampler = torch.randperm(len(dataset), generator=generator).tolist()
        if isinstance(dataset, ShardImageDataset):
            dataset.set_epoch(epoch)
    # the workers' base seed comes from this generator, not from the global RNG
    loader_seed = int(np.random.SeedSequence([seed, 0 if epoch is None else epoch + 1]).generate_state(1)[0])
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_skip_none,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(loader_seed),
        worker_init_fn=_seed_worker,
    )


def _seed_worker(worker_id: int) -> None:
    """Seed python's and numpy's RNGs in a DataLoader worker from the seed torch gave it."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
