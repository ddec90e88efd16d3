"""``dataigm info``: sample counts per concept x split x source x label, read from the sidecars."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .layout import ShardId
from .manifest import read_manifest
from .reader import read_sidecar


def count_samples(root: str | Path) -> Counter:
    """``Counter`` keyed by ``(concept, split, source, label)`` over the finished shards of ``root``."""
    counts: Counter = Counter()
    for relpath in read_manifest(root)["shards"]:
        shard = ShardId.parse(relpath)
        for label, n in read_sidecar(root, shard)["labels"].items():
            counts[(shard.concept, shard.split, shard.source, label)] += n
    return counts


def format_counts(counts: Counter) -> str:
    """A plain-text table, one row per concept/split/source/label, with a total."""
    header = ("concept", "split", "source", "label", "count")
    rows = [(*key, str(n)) for key, n in sorted(counts.items())]
    rows.append(("total", "", "", "", str(sum(counts.values()))))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) for row in (header, *rows))
