"""Stream samples from the shards of a dataset root, checking each shard against its sidecar."""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .files import sha256_file
from .layout import ShardId, shard_files
from .sample import Sample
from .schema import IMAGE_EXTENSIONS


class ShardError(ValueError):
    """A shard that cannot be read or does not match its sidecar; the message names the file."""


def read_sidecar(root: str | Path, shard: ShardId) -> dict:
    path = Path(root) / shard.sidecar_relpath
    if not path.exists():
        raise ShardError(f"{shard.relpath}: sidecar {shard.sidecar_relpath} is missing (the shard is unfinished)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ShardError(f"{shard.sidecar_relpath}: not valid JSON ({err.msg})") from None


def check_shard(root: str | Path, shard: ShardId, checksum: bool = True) -> dict:
    """Compare a shard's tar with its sidecar (size, and sha256 when ``checksum``); returns the sidecar."""
    sidecar = read_sidecar(root, shard)
    tar = Path(root) / shard.relpath
    size = tar.stat().st_size
    if sidecar.get("size") != size:
        raise ShardError(
            f"{shard.relpath}: {size} bytes but its sidecar says {sidecar.get('size')} (truncated or replaced)"
        )
    if checksum and sha256_file(tar) != sidecar.get("sha256"):
        raise ShardError(f"{shard.relpath}: sha256 does not match its sidecar (corrupted or replaced)")
    return sidecar


def iter_shard(path: str | Path) -> Iterator[Sample]:
    """Yield the samples of one tar in order; a truncated or corrupted tar raises :class:`ShardError`."""
    path = Path(path)
    current: dict[str, bytes] = {}
    key = None
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = Path(member.name).name
                member_key, _, ext = name.partition(".")
                if member_key != key and current:
                    yield _to_sample(path, key, current)
                    current = {}
                key = member_key
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    raise ShardError(f"{path}: member {member.name} is truncated")
                current[ext] = data
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ShardError(f"{path}: truncated or corrupted tar ({err})") from None
    if current:
        yield _to_sample(path, key, current)


def _labels(path: Path, key: str, members: dict) -> tuple[str, int, dict]:
    """The image extension, ``cls`` and record of one sample's members; a malformed sample names the file."""
    images = [ext for ext in IMAGE_EXTENSIONS if ext in members]
    missing = [m for m in ("cls", "json") if m not in members]
    if len(images) != 1 or missing:
        raise ShardError(f"{path}: sample {key!r} has members {sorted(members)}; expected one image, cls and json")
    try:
        return images[0], int(members["cls"]), json.loads(members["json"])
    except ValueError as err:
        raise ShardError(f"{path}: sample {key!r} has an unreadable cls or json ({err})") from None


def _to_sample(path: Path, key: str, members: dict[str, bytes]) -> Sample:
    ext, cls, record = _labels(path, key, members)
    return Sample(key, members[ext], ext, cls, record)


@dataclass(frozen=True)
class IndexedSample:
    """Where one sample's image lies in its tar (read it later with a seek), and its labels."""

    key: str
    ext: str
    offset: int
    size: int
    cls: int
    record: dict


def read_at(path: str | Path, offset: int, size: int, fd: int | None = None) -> bytes:
    """The ``size`` bytes at ``offset`` of a shard (an image indexed by :func:`index_shard`).

    Args:
        path: the shard.
        offset: byte offset of the member's data.
        size: its length.
        fd: an open descriptor of ``path`` to read from instead of opening it (a loader keeps its shards
            open); the read is positional (``os.pread``), so a descriptor shared by threads never moves.

    Raises:
        ShardError: the file ends before ``offset + size`` (the shard was truncated after indexing).
    """
    if fd is None:
        with open(path, "rb") as f:
            data = os.pread(f.fileno(), size, offset)
    else:
        data = os.pread(fd, size, offset)
    if len(data) != size:
        raise ShardError(f"{path}: member at byte {offset} is truncated ({len(data)} of {size} bytes)")
    return data


def index_shard(path: str | Path) -> list[IndexedSample]:
    """The samples of one tar with their image offsets, reading only the small members (random access)."""
    path = Path(path)
    members: dict[str, dict] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = Path(member.name).name.partition(".")
                parts = members.setdefault(key, {})
                if ext in IMAGE_EXTENSIONS:
                    parts[ext] = (member.offset_data, member.size)
                else:
                    parts[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ShardError(f"{path}: truncated or corrupted tar ({err})") from None
    out = []
    for key, parts in members.items():
        ext, cls, record = _labels(path, key, parts)
        out.append(IndexedSample(key, ext, *parts[ext], cls, record))
    return out


def _selected_shards(root: Path, concept: str | None, split: str | None, source: str | None) -> Iterator[ShardId]:
    wanted = {"concept": concept, "split": split, "source": source}
    for path in shard_files(root):
        shard = ShardId.parse(path.relative_to(root).as_posix())
        if all(value is None or getattr(shard, name) == value for name, value in wanted.items()):
            yield shard


def iter_index(
    root: str | Path,
    concept: str | None = None,
    split: str | None = None,
    source: str | None = None,
    checksum: bool = False,
) -> Iterator[tuple[Path, IndexedSample]]:
    """``(tar path, indexed sample)`` of every sample of a root (optionally filtered), shard by shard.

    Like :func:`iter_samples`, but only the small members are read: an image stays in its shard until
    :func:`read_at` reads it. Each shard is checked against its sidecar first.
    """
    root = Path(root)
    for shard in _selected_shards(root, concept, split, source):
        check_shard(root, shard, checksum=checksum)
        path = root / shard.relpath
        for sample in index_shard(path):
            yield path, sample


def iter_samples(
    root: str | Path,
    concept: str | None = None,
    split: str | None = None,
    source: str | None = None,
    checksum: bool = False,
) -> Iterator[Sample]:
    """Stream the samples of a dataset root, shard by shard, optionally filtered.

    Each shard is first checked against its sidecar (size always, sha256 when ``checksum``), so an
    unfinished, truncated or replaced shard raises :class:`ShardError` naming the file.
    """
    root = Path(root)
    for shard in _selected_shards(root, concept, split, source):
        check_shard(root, shard, checksum=checksum)
        yield from iter_shard(root / shard.relpath)
