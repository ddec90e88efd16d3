"""Exact and near duplicates in a dataset root, within a split, across splits (leakage) and across sources.

* **Exact**: the same decoded pixels (sha256 of mode, size and raw pixel bytes), so a PNG and a lossless
  re-encoding of the same image match even though their file bytes (the record's ``sha256``) differ. Pixels are
  compared as they are shown: after the EXIF orientation (a JPEG rotated by its EXIF tag is the same picture as
  its pixel-rotated copy), and as RGB when there is no transparency (a fully opaque RGBA copy of an RGB image is
  the same picture; one transparent pixel makes it another).
* **Near**: perceptual hashes (``imagehash.phash``, 64 bits) at Hamming distance ``<= near_distance``, found
  with the pigeonhole split of the hash into ``near_distance + 1`` bands (two hashes within distance d agree
  exactly on at least one band; Manku, Jain and Das Sarma, "Detecting near-duplicates for web crawling",
  WWW 2007), so a root of hundreds of thousands of images is not compared pair by pair.
* Flat images (nearly one colour) all share one perceptual hash whatever their colour; they take part in
  exact matching only, and are counted.

Duplicates are looked for within each concept: a concept is its own labelled set, and one image may be a
``target`` of one concept and a ``pair`` of another. Hashes are cached per shard under
``<root>/.cache/dataigm/hashes/``, keyed by the shard's sha256 (a shard never changes once written).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .files import atomic_write_json, sha256_bytes
from .layout import ShardId
from .manifest import read_manifest
from .reader import ShardError, check_shard, iter_shard

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

# Of 64 phash bits. On toy photo renders a JPEG (quality 90) or a 75% resize moved the hash by about 1 bit on average
# (at most 6-8); two unrelated images are about 32 apart.
DEFAULT_NEAR_DISTANCE = 4
# The hashing rule's version, part of each cache file's name: bump it when the hashing changes, so caches written
# under another rule are not read. 2: EXIF orientation applied, opaque alpha dropped.
HASH_VERSION = 2
CACHE_DIR = ".cache/dataigm/hashes"
_FLAT_STD = 2.0  # grey-level standard deviation (0-255) of the 32 px thumbnail below which an image is flat


@dataclass(frozen=True)
class HashedSample:
    """One sample's place, labels and hashes."""

    shard: str
    key: str
    concept: str
    split: str
    source: str
    label: str
    pixels: str  # sha256 of the decoded pixels
    phash: int  # 64-bit perceptual hash
    flat: bool  # nearly one colour: not compared for near duplicates


@dataclass(frozen=True)
class DuplicateGroup:
    """Samples of one concept that show the same image (``exact``) or nearly the same (``near``)."""

    concept: str
    kind: str
    members: tuple[HashedSample, ...]

    @property
    def splits(self) -> list[str]:
        return sorted({m.split for m in self.members})

    @property
    def sources(self) -> list[str]:
        return sorted({m.source for m in self.members})

    @property
    def labels(self) -> list[str]:
        return sorted({m.label for m in self.members})

    @property
    def leakage(self) -> bool:
        """The image is in more than one split (e.g. train and test)."""
        return len(self.splits) > 1

    @property
    def cross_source(self) -> bool:
        return len(self.sources) > 1

    @property
    def conflict(self) -> bool:
        """The same image carries both labels of the concept."""
        return len(self.labels) > 1

    def describe(self) -> str:
        """One line: what kind of duplicate, where, and its members."""
        scope = []
        if self.leakage:
            scope.append(f"leakage across splits {'/'.join(self.splits)}")
        if self.cross_source:
            scope.append(f"across sources {'/'.join(self.sources)}")
        if not scope:
            scope.append(f"within {self.members[0].split}/{self.members[0].source}")
        if self.conflict:
            scope.append("conflicting labels " + "/".join(self.labels))
        members = ", ".join(f"{m.shard}:{m.key}" for m in self.members[:4])
        more = f" and {len(self.members) - 4} more" if len(self.members) > 4 else ""
        return f"{self.concept}: {len(self.members)} {self.kind} duplicates, {'; '.join(scope)}: {members}{more}"


@dataclass
class DuplicateReport:
    """The duplicate groups of a root, and what could not be compared."""

    near_distance: int
    hashed: int = 0
    flat: int = 0
    groups: list[DuplicateGroup] = field(default_factory=list)
    unreadable: list[dict] = field(default_factory=list)  # {"shard", "key", "reason"}: skipped, not hashed

    def count(self, what: str) -> int:
        """Groups that are ``exact``, ``near``, ``leakage``, ``cross_source``, ``within`` (one split and source),
        or ``conflict``."""
        if what in ("exact", "near"):
            return sum(g.kind == what for g in self.groups)
        if what == "within":
            return sum(not g.leakage and not g.cross_source for g in self.groups)
        return sum(getattr(g, what) for g in self.groups)

    def leakage_line(self, kind: str = "exact") -> str | None:
        """One line on the images of groups of ``kind`` (``exact`` or ``near``) found in more than one split: how
        many, and between which splits; None when there are none."""
        between: dict[str, int] = {}
        for group in self.groups:
            if group.leakage and group.kind == kind:
                pair = "/".join(group.splits)
                between[pair] = between.get(pair, 0) + 1
        if not between:
            return None
        where = ", ".join(f"{pair}: {n}" for pair, n in sorted(between.items()))
        return f"{sum(between.values())} image(s) leak across splits as {kind} copies ({where})"

    @property
    def extra_copies(self) -> int:
        """Samples beyond the first of each group."""
        return sum(len(g.members) - 1 for g in self.groups)

    def lines(self, limit: int = 20) -> list[str]:
        """The report as text: a summary line, then up to ``limit`` groups (leakage and conflicts first)."""
        near = f"near = phash distance <= {self.near_distance}" if self.near_distance > 0 else "near matching off"
        head = (
            f"duplicates: {len(self.groups)} group(s) among {self.hashed} images ({self.extra_copies} extra "
            f"copies): {self.count('exact')} exact, {self.count('near')} near ({near}); {self.count('leakage')} "
            f"leak across splits, {self.count('cross_source')} span sources, {self.count('within')} within one "
            f"split and source, {self.count('conflict')} with conflicting labels"
        )
        out = [head]
        if self.flat:
            out.append(f"  {self.flat} flat (nearly one-colour) image(s) compared for exact duplicates only")
        for item in self.unreadable[:limit]:
            out.append(f"  skipped {item['shard']}:{item['key']}: {item['reason']}")
        ranked = sorted(self.groups, key=lambda g: (not g.leakage, not g.conflict, not g.cross_source))
        out += [f"  {g.describe()}" for g in ranked[:limit]]
        if len(ranked) > limit:
            out.append(f"  ... and {len(ranked) - limit} more group(s)")
        return out

    def to_dict(self) -> dict:
        """Plain data (JSON): the counts and every group's members."""
        return {
            "near_distance": self.near_distance,
            "hashed": self.hashed,
            "flat": self.flat,
            "counts": {k: self.count(k) for k in ("exact", "near", "leakage", "cross_source", "within", "conflict")},
            "unreadable": self.unreadable,
            "groups": [
                {
                    "concept": g.concept,
                    "kind": g.kind,
                    "members": [
                        {"shard": m.shard, "key": m.key, "split": m.split, "source": m.source} for m in g.members
                    ],
                }
                for g in self.groups
            ],
        }


# ---------------------------------------------------------------- hashing


def pixel_hashes(data: bytes) -> tuple[str, int, bool]:
    """``(sha256 of the decoded pixels, 64-bit phash, flat)`` of one encoded image, as it is shown.

    The pixels are hashed after the EXIF orientation is applied, as RGBA when any pixel is not fully opaque and
    as RGB otherwise (an alpha channel of 255 everywhere, or none).

    Raises:
        OSError, ValueError: the image cannot be decoded.
    """
    import imagehash
    from PIL import Image, ImageStat

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        pixels = _shown_pixels(img)
    mode = pixels.mode
    header = f"{mode} {pixels.width}x{pixels.height}\n".encode()
    digest = sha256_bytes(header + pixels.tobytes())
    bits = imagehash.phash(pixels).hash.flatten()
    value = int("".join("1" if b else "0" for b in bits), 2)
    thumb = pixels.convert("L").resize((32, 32), Image.Resampling.BILINEAR)
    flat = ImageStat.Stat(thumb).stddev[0] < _FLAT_STD
    return digest, value, flat


def _shown_pixels(img: Image.Image) -> Image.Image:
    """``img`` as a viewer shows it: EXIF orientation applied, RGB unless some pixel is (partly) transparent."""
    from PIL import ImageOps

    img = ImageOps.exif_transpose(img)
    bands = img.getbands()
    # besides an alpha band, a P, L or RGB image may name one transparent colour
    if "A" in bands or "a" in bands or "transparency" in img.info:
        rgba = img.convert("RGBA")
        if rgba.getchannel("A").getextrema() != (255, 255):
            return rgba
    return img.convert("RGB")


def _hash_shard(root: str, relpath: str) -> tuple[dict[str, list], list[dict]]:
    """``({key: [pixels, phash hex, flat, label]}, unreadable)`` of one shard (runs in a worker process)."""
    from PIL import UnidentifiedImageError

    out: dict[str, list] = {}
    unreadable = []
    for sample in iter_shard(Path(root) / relpath):
        try:
            digest, value, flat = pixel_hashes(sample.image)
        except (OSError, ValueError, UnidentifiedImageError) as err:
            unreadable.append({"shard": relpath, "key": sample.key, "reason": f"{type(err).__name__}: {err}"})
            continue
        out[sample.key] = [digest, f"{value:016x}", flat, sample.record["label"]]
    return out, unreadable


def _cache_path(root: Path, sha256: str) -> Path:
    return root / CACHE_DIR / f"{sha256}-v{HASH_VERSION}.json"


def hash_root(root: str | Path, workers: int = 1) -> tuple[list[HashedSample], list[dict]]:
    """Every sample of the finished shards of ``root`` with its hashes, and the samples that could not be
    decoded (``{"shard", "key", "reason"}``). Cached per shard by its sha256.

    Args:
        root: the dataset root.
        workers: processes that decode images (1: in this process).

    Raises:
        ShardError: a shard does not match its sidecar (run ``dataigm validate``).
    """
    root = Path(root)
    shards = sorted(read_manifest(root)["shards"].items())
    results: dict[str, tuple[dict, list]] = {}
    todo = []
    for relpath, entry in shards:
        cache = _cache_path(root, entry["sha256"])
        if cache.exists():
            try:
                cached = json.loads(cache.read_text(encoding="utf-8"))
                results[relpath] = (cached["samples"], cached["unreadable"])
                continue
            except (json.JSONDecodeError, KeyError):
                logger.warning("ignoring an unreadable hash cache %s", cache)
        check_shard(root, ShardId.parse(relpath), checksum=False)
        todo.append(relpath)
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            computed = list(pool.map(_hash_shard, [str(root)] * len(todo), todo))
    else:
        computed = [_hash_shard(str(root), relpath) for relpath in todo]
    checksums = {relpath: entry["sha256"] for relpath, entry in shards}
    for relpath, (samples, unreadable) in zip(todo, computed, strict=True):
        results[relpath] = (samples, unreadable)
        try:
            atomic_write_json(_cache_path(root, checksums[relpath]), {"samples": samples, "unreadable": unreadable})
        except OSError as err:  # a read-only root is checked all the same, without a cache
            logger.debug("no hash cache for %s: %s", relpath, err)
    hashed, skipped = [], []
    for relpath, (samples, unreadable) in sorted(results.items()):
        shard = ShardId.parse(relpath)
        skipped += unreadable
        for key, (digest, value, flat, label) in samples.items():
            hashed.append(
                HashedSample(
                    relpath, key, shard.concept, shard.split, shard.source, label, digest, int(value, 16), flat
                )
            )
    return hashed, skipped


# ---------------------------------------------------------------- grouping


def _popcount(values: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(values)
    return np.unpackbits(values.view(np.uint8).reshape(*values.shape, 8), axis=-1).sum(axis=-1)


def near_pairs(hashes: Iterable[int], max_distance: int, block: int = 2048) -> set[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of 64-bit hashes at Hamming distance ``<= max_distance``.

    Candidates share one of ``max_distance + 1`` bands of bits exactly (pigeonhole); only they are compared.
    """
    values = np.fromiter(hashes, dtype=np.uint64)
    if max_distance < 0 or len(values) < 2:
        return set()
    bands = min(max_distance + 1, 64)
    edges = np.linspace(0, 64, bands + 1).astype(int)
    pairs: set[tuple[int, int]] = set()
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = np.uint64((1 << int(hi - lo)) - 1)
        part = (values >> np.uint64(lo)) & mask
        order = np.argsort(part, kind="stable")
        ordered = part[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        ends = np.r_[starts[1:], len(values)]
        for start, end in zip(starts, ends, strict=True):
            if end - start < 2:
                continue
            members = order[start:end]
            bucket = values[members]
            for row in range(0, len(members), block):  # bounded memory for a large bucket
                dist = _popcount(bucket[row : row + block, None] ^ bucket[None, :])
                i, j = np.nonzero(dist <= max_distance)
                i = i + row
                keep = i < j
                pairs.update(zip(members[i[keep]].tolist(), members[j[keep]].tolist(), strict=True))
    return {(min(a, b), max(a, b)) for a, b in pairs}


def group_duplicates(samples: list[HashedSample], near_distance: int = DEFAULT_NEAR_DISTANCE) -> list[DuplicateGroup]:
    """Group the samples of each concept that show the same or nearly the same image (single linkage)."""
    parent = list(range(len(samples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    by_concept: dict[str, list[int]] = {}
    for index, sample in enumerate(samples):
        by_concept.setdefault(sample.concept, []).append(index)
    for indices in by_concept.values():
        first: dict[str, int] = {}
        for i in indices:
            union(i, first.setdefault(samples[i].pixels, i))
        if near_distance <= 0:
            continue
        # Near matching over the distinct hashes of non-flat images; equal hashes are joined directly.
        distinct: dict[int, int] = {}
        for i in indices:
            if not samples[i].flat:
                union(i, distinct.setdefault(samples[i].phash, i))
        representatives = list(distinct.values())
        for a, b in near_pairs((samples[i].phash for i in representatives), near_distance):
            union(representatives[a], representatives[b])
    clusters: dict[int, list[int]] = {}
    for i in range(len(samples)):
        clusters.setdefault(find(i), []).append(i)
    groups = []
    for members in clusters.values():
        if len(members) < 2:
            continue
        chosen = tuple(sorted((samples[i] for i in members), key=lambda s: (s.shard, s.key)))
        kind = "exact" if len({s.pixels for s in chosen}) == 1 else "near"
        groups.append(DuplicateGroup(chosen[0].concept, kind, chosen))
    return sorted(groups, key=lambda g: (g.concept, g.members[0].shard, g.members[0].key))


def find_duplicates(root: str | Path, near_distance: int = DEFAULT_NEAR_DISTANCE, workers: int = 1) -> DuplicateReport:
    """Exact and near duplicates of every concept of ``root``: within a split, across splits, across sources.

    Args:
        root: the dataset root.
        near_distance: largest phash Hamming distance (of 64 bits) of near duplicates; 0 finds exact ones only.
        workers: processes that decode images.

    Raises:
        ValueError: a negative ``near_distance``; a shard that does not match its sidecar.
    """
    if not 0 <= near_distance <= 32:
        raise ValueError(f"--near-distance must be between 0 and 32 bits (of 64), got {near_distance}")
    try:
        samples, unreadable = hash_root(root, workers=workers)
    except ShardError as err:
        raise ValueError(f"{err}; run `dataigm validate {root}`") from None
    groups = group_duplicates(samples, near_distance)
    return DuplicateReport(
        near_distance=near_distance,
        hashed=len(samples),
        flat=sum(s.flat for s in samples),
        groups=groups,
        unreadable=unreadable,
    )
