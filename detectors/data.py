"""Judge data: an index of labelled images in a dataset root's shards, and a map-style dataset over it.

The index is built from one pass over the tar headers and the small ``.cls``/``.json`` members; an
image is later read straight from its shard at the recorded byte offset, so training shuffles freely
(and works with ``DistributedSampler``) without extracting or loading the shards into memory.

Each image is labelled for one concept; with several concepts a sample yields a target vector and a
mask that is 1 only for the concept it is labelled for (the loss ignores the others).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dataigm.files import sha256_file
from dataigm.layout import MANIFEST_NAME, ShardId, shard_files
from dataigm.manifest import read_manifest
from dataigm.reader import ShardError, check_shard, index_shard, read_at, read_sidecar

logger = logging.getLogger(__name__)

VAL_RULE = "sha256(salt:concept:group) < fraction; group = prompt_id (or prompt) for generated images, origin (or key) otherwise"


@dataclass(frozen=True)
class Entry:
    """One labelled image: where its bytes are and what the judge needs to know about it."""

    root: str
    shard: str  # shard path relative to the root
    key: str
    ext: str
    offset: int  # byte offset of the image member's data inside the tar
    size: int
    concept: str
    cls: int
    source: str
    split: str
    method: str | None
    prompt_kind: str | None
    group: str  # unit of the validation carve-out

    @property
    def uid(self) -> str:
        """Unique id inside the root: ``<shard>#<key>``."""
        return f"{self.shard}#{self.key}"

    def read_bytes(self) -> bytes:
        """The image's bytes (:func:`dataigm.reader.read_at`)."""
        return read_at(Path(self.root) / self.shard, self.offset, self.size)


def split_group(record: dict, key: str) -> str:
    """The unit kept on one side of the validation split: the prompt for generated images, the file otherwise.

    All images of one prompt (every seed, every model) land on the same side, so validation measures
    prompts the judge has not seen; other images are grouped by their origin (file path or dataset row).
    """
    if record.get("source") == "generated":
        for name in ("prompt_id", "prompt", "origin"):
            if record.get(name):
                return f"prompt:{record[name]}" if name != "origin" else f"file:{record[name]}"
    return f"file:{record['origin']}" if record.get("origin") else f"key:{key}"


def _shard_entries(root: Path, shard: ShardId) -> list[Entry]:
    return [
        Entry(
            root=str(root),
            shard=shard.relpath,
            key=s.key,
            ext=s.ext,
            offset=s.offset,
            size=s.size,
            concept=s.record["concept"],
            cls=s.cls,
            source=s.record["source"],
            split=s.record["split"],
            method=s.record.get("method"),
            prompt_kind=s.record.get("prompt_kind"),
            group=split_group(s.record, s.key),
        )
        for s in index_shard(root / shard.relpath)
    ]


def build_index(
    root: str | Path,
    split: str | None = None,
    concepts: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    checksum: bool = False,
) -> list[Entry]:
    """Every labelled image of ``root`` (optionally one split, some concepts, some sources), in shard order.

    Raises:
        ValueError: ``root`` is not a dataset root, or a requested concept is not in it.
        dataigm.ShardError: a shard is unfinished, truncated or does not match its sidecar.
    """
    root = Path(root)
    manifest = read_manifest(root)
    known = list(manifest["concepts"])
    for concept in concepts or ():
        if concept not in known:
            raise ValueError(f"Concept {concept!r} is not in the dataset {root}; its concepts: {', '.join(known)}")
    entries: list[Entry] = []
    for path in shard_files(root):
        shard = ShardId.parse(path.relative_to(root).as_posix())
        if split is not None and shard.split != split:
            continue
        if concepts is not None and shard.concept not in concepts:
            continue
        if sources is not None and shard.source not in sources:
            continue
        check_shard(root, shard, checksum=checksum)
        entries.extend(_shard_entries(root, shard))
    return entries


def entries_content(entries: Sequence[Entry]) -> dict:
    """What ``entries`` hold, by content, for a cache key: each shard's sha256 (from its sidecar) and the sample
    keys in order (the feature and pixel caches of training)."""
    shards: dict[str, str] = {}
    for entry in entries:
        if entry.shard not in shards:
            shards[entry.shard] = read_sidecar(entry.root, ShardId.parse(entry.shard))["sha256"]
    return {"shards": shards, "keys": [entry.uid for entry in entries]}


def available_splits(root: str | Path) -> list[str]:
    """The splits with at least one finished shard."""
    return sorted({ShardId.parse(relpath).split for relpath in read_manifest(root)["shards"]})


def dataset_revision(root: str | Path) -> dict:
    """What identifies the data a judge saw: the dataset name and the sha256 of its manifest."""
    path = Path(root) / MANIFEST_NAME
    manifest = read_manifest(root)
    return {
        "name": manifest["name"],
        "manifest_sha256": sha256_file(path),
        "schema_version": manifest["schema_version"],
    }


def carve_validation(
    entries: Iterable[Entry], fraction: float, salt: str = "dataigm-val"
) -> tuple[list[Entry], list[Entry]]:
    """Split ``entries`` into (train, validation) by a hash of each entry's group (see :data:`VAL_RULE`).

    The choice depends only on the group and ``salt``, never on order, batch or the other samples:
    adding data later never moves an image from one side to the other.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction={fraction!r} must be strictly between 0 and 1")
    train, val = [], []
    for entry in entries:
        digest = hashlib.sha256(f"{salt}:{entry.concept}:{entry.group}".encode()).digest()
        (val if int.from_bytes(digest[:8], "big") / 2**64 < fraction else train).append(entry)
    return train, val


def label_counts(entries: Iterable[Entry]) -> dict[str, dict[str, int]]:
    """``{concept: {"target": n, "pair": n}}``."""
    counts: dict[str, Counter] = {}
    for entry in entries:
        counts.setdefault(entry.concept, Counter())["target" if entry.cls else "pair"] += 1
    return {c: {"pair": n["pair"], "target": n["target"]} for c, n in sorted(counts.items())}


def targets_and_mask(entries: Sequence[Entry], concepts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(targets, mask)`` of shape (N, C): the label of each entry's own concept, and where it is set."""
    index = {c: i for i, c in enumerate(concepts)}
    targets = torch.zeros(len(entries), len(concepts))
    mask = torch.zeros(len(entries), len(concepts))
    for row, entry in enumerate(entries):
        col = index[entry.concept]
        targets[row, col] = float(entry.cls)
        mask[row, col] = 1.0
    return targets, mask


def decode_image(data: bytes) -> Image.Image:
    """Image bytes to an RGB ``PIL.Image`` (an RGB file is decoded in place, without a converted copy)."""
    img = Image.open(io.BytesIO(data))
    if img.mode == "RGB":
        img.load()
        return img
    with img:
        return img.convert("RGB")


MAX_DEFAULT_WORKERS = 8
# A pass over fewer images than this many batches reads them in this process: starting worker processes (a fork of
# a process holding torch and a model, then the first batch's latency) costs more than decoding so few images.
MIN_BATCHES_FOR_WORKERS = 4
# Nor does a pass over images smaller than this (pixels): such an image decodes and resizes in well under a
# millisecond, so a worker saves almost nothing and competes with the model for the cores (measured on 2 cores:
# benchmarks/judge_loader.py).
MIN_PIXELS_FOR_WORKERS = 128 * 128


def default_num_workers(world_size: int = 1) -> int:
    """DataLoader workers for this host: its usable cores shared by the ``world_size`` processes of a run, one left
    to the loop that consumes the batches, between 1 and :data:`MAX_DEFAULT_WORKERS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cores // max(1, world_size) - 1))


def one_pass_workers(
    num_workers: int | None, n_images: int, batch_size: int, image_pixels: Callable[[], int | None] | None = None
) -> int:
    """The worker processes of one pass over ``n_images`` (prediction, feature extraction, the pixel cache).

    Args:
        num_workers: what the caller asked for: a count (0: read in this process), or None for the default:
            :func:`default_num_workers`, but none when the images fit in fewer than
            :data:`MIN_BATCHES_FOR_WORKERS` batches or the first image has fewer than
            :data:`MIN_PIXELS_FOR_WORKERS` pixels (starting processes would cost more than they save).
        n_images: images the pass reads.
        batch_size: images per batch.
        image_pixels: returns the pixel count of a typical (the first) image, or None when unknown; called only
            when the default needs it.

    Raises:
        ValueError: a negative or non-integer ``num_workers``.
    """
    if num_workers is None:
        if n_images < MIN_BATCHES_FOR_WORKERS * batch_size:
            return 0
        pixels = image_pixels() if image_pixels is not None else None
        if pixels is not None and pixels < MIN_PIXELS_FOR_WORKERS:
            return 0
        return default_num_workers()
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers={num_workers!r} must be None (sized to the host), 0 (this process) or more")
    return num_workers


def entry_pixels(entries: Sequence[Entry]) -> int | None:
    """Width x height of the first entry's image, read from its header (no decoding); None when it is unreadable."""
    if not entries:
        return None
    try:
        with Image.open(io.BytesIO(entries[0].read_bytes())) as img:
            return img.width * img.height
    except (UnidentifiedImageError, OSError, ShardError):
        return None


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's random augmentation: a pure function of (run seed, epoch, sample index)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed python's ``random``, numpy's global RNG and torch's CPU generator, restoring all three after.

    timm's training transforms draw from all three, inside whichever process runs them.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    torch_state = torch.random.default_generator.get_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.random.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.random.default_generator.set_state(torch_state)


class ShardImageDataset(torch.utils.data.Dataset):
    """Map-style dataset over index entries: ``(transform(image), targets, mask)`` or ``None`` for a bad image.

    An image that cannot be decoded is logged and yields ``None``; :func:`collate_skip_none` drops it from
    the batch (a bad sample is skipped, a bug is raised).

    With ``seed`` the transform runs under RNGs seeded by (seed, epoch, index) (:func:`sample_seed`), so a
    random augmentation depends only on them: not on the worker count, the batch or the process.
    """

    def __init__(
        self,
        entries: Sequence[Entry],
        concepts: Sequence[str],
        transform: Callable | None = None,
        seed: int | None = None,
    ):
        self.entries = list(entries)
        self.concepts = list(concepts)
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.targets, self.mask = targets_and_mask(self.entries, self.concepts)
        self._files: dict[str, tuple[int, int]] = {}  # shard path -> (pid, file descriptor)

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentation the next ``DataLoader`` over this dataset draws."""
        self.epoch = int(epoch)

    def __getstate__(self) -> dict:  # open file handles stay in the process that opened them
        state = dict(self.__dict__)
        state["_files"] = {}
        return state

    def read(self, index: int) -> bytes:
        """The image bytes of entry ``index``: one positional read from its shard.

        Shards stay open per process (a forked worker opens its own), and ``os.pread`` never moves a
        shared file offset.
        """
        entry = self.entries[index]
        path = str(Path(entry.root) / entry.shard)
        handle = self._files.get(path)
        if handle is None or handle[0] != os.getpid():
            handle = self._files[path] = (os.getpid(), os.open(path, os.O_RDONLY))
        return read_at(path, entry.offset, entry.size, fd=handle[1])

    def __getitem__(self, index: int | tuple[int, int]):
        epoch = self.epoch
        if isinstance(index, tuple):  # (epoch, index) from a sampler that outlives the epoch (persistent workers)
            epoch, index = index
        try:
            image = decode_image(self.read(index))
        except (UnidentifiedImageError, OSError, ShardError) as err:
            logger.warning("skipping unreadable image %s (%s)", self.entries[index].uid, err)
            return None
        if self.transform is not None:
            if self.seed is None:
                image = self.transform(image)
            else:
                with seeded_rngs(sample_seed(self.seed, epoch, index)):
                    image = self.transform(image)
        return image, self.targets[index], self.mask[index], index

    def close(self) -> None:
        for pid, fd in getattr(self, "_files", {}).values():
            if pid == os.getpid():
                os.close(fd)
        self._files = {}

    def __del__(self) -> None:
        self.close()


def collate_skip_none(batch: list):
    """Default collation without the ``None`` items of unreadable images; an all-bad batch gives ``None``."""
    batch = [item for item in batch if item is not None]
    if not batch:
        return None
    return torch.utils.data.default_collate(batch)
