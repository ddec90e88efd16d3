"""The review queue: JSON lines naming the images a person should check (written by ``dataigm judge agree``).

Each line is one image: ``key`` and ``shard`` (where it is in the dataset root), and what the judges said
(``judges``: ``{name: {"probability", "present"}}``) and why it is queued (``reason``). :func:`load_queue`
joins each line with the image's record in the root, so the page shows the root's current prompt, source
and label, and refuses a queue that names an image the root does not hold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write_text, sha256_file
from ..layout import ShardId
from ..reader import ShardError, index_shard

QUEUE_FORMAT = "dataigm-review-queue/1"


@dataclass(frozen=True)
class QueueItem:
    """One queued image: where its bytes are, its record in the root and the judges' verdicts."""

    index: int
    key: str
    shard: str
    ext: str
    offset: int
    size: int
    cls: int
    record: dict
    judges: dict
    reason: str | None

    @property
    def uid(self) -> str:
        return f"{self.shard}#{self.key}"


def write_queue(records: Sequence[dict], path: str | Path) -> Path:
    """Write queue records (each with at least ``key`` and ``shard``) as JSON lines, atomically."""
    lines = [json.dumps({"format": QUEUE_FORMAT, **record}, ensure_ascii=False) + "\n" for record in records]
    atomic_write_text(path, "".join(lines))
    return Path(path)


def read_queue(path: str | Path) -> list[dict]:
    """The records of a queue file.

    Raises:
        ValueError: the file is missing, a line is not JSON or not a queue record.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--queue {path}: no such file (write one with dataigm judge agree)")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not JSON ({err.msg})") from None
        if not isinstance(record, dict) or record.get("format") != QUEUE_FORMAT or "key" not in record:
            raise ValueError(f"{path}, line {number}: not a review queue record (format {QUEUE_FORMAT!r} with a key)")
        records.append(record)
    if not records:
        raise ValueError(f"--queue {path} is empty: there is nothing to review")
    return records


def load_queue(root: str | Path, path: str | Path) -> list[QueueItem]:
    """The queue's images joined with their records in ``root``, in queue order.

    Raises:
        ValueError: the queue is not a queue, names a shard or a key that ``root`` does not hold (one line,
            naming the first missing ones and how many there are), or repeats an image.
    """
    root = Path(root)
    records = read_queue(path)
    shards: dict[str, dict] = {}
    missing, seen, items = [], set(), []
    for record in records:
        relpath, key = record.get("shard", ""), record["key"]
        if relpath not in shards:
            try:
                ShardId.parse(relpath)
                shards[relpath] = {s.key: s for s in index_shard(root / relpath)} if (root / relpath).is_file() else {}
            except (ValueError, ShardError):
                shards[relpath] = {}
        sample = shards[relpath].get(key)
        if sample is None:
            missing.append(f"{relpath}#{key}")
            continue
        if (relpath, key) in seen:
            raise ValueError(f"--queue {path} names {relpath}#{key} twice; each image once")
        seen.add((relpath, key))
        items.append(
            QueueItem(
                len(items), key, relpath, sample.ext, sample.offset, sample.size, sample.cls, sample.record,
                record.get("judges") or {}, record.get("reason"),
            )
        )  # fmt: skip
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ValueError(
            f"--queue {path} names {len(missing)} image(s) that {root} does not hold: {', '.join(missing[:3])}{more} "
            "(a queue of another dataset, or of shards replaced by a later revision: run dataigm judge agree again)"
        )
    return items


def queue_sha256(path: str | Path) -> str:
    """The sha256 of a queue file (a decisions file records which queue it answers)."""
    return sha256_file(path)
