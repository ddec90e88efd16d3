"""``dataigm dedup``: a new revision of a dataset root without its duplicates, and class balancing.

Which copy of a duplicate group stays (one per group):

* the copy in the split that comes first in ``keep_splits`` (default: test, then validation, then train):
  a training image that leaks into the test split leaves the training split, so the test split, which
  results are reported on, stays as it was;
* then the copy of the source that comes first in ``keep_sources`` (real, laion, generated);
* then the first by shard and key.

A group whose copies carry both labels of the concept (``conflicts="drop"``) is dropped whole: which label
is right cannot be told from the data. The revision itself is :func:`dataigm.revision.drop_samples`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .duplicates import DEFAULT_NEAR_DISTANCE, DuplicateGroup, DuplicateReport, find_duplicates
from .manifest import read_manifest
from .reader import index_shard
from .revision import RevisionSummary, check_indexed_shards, drop_samples, finish_revisions
from .schema import SOURCES

DEFAULT_KEEP_SPLITS = ("test", "validation", "val", "train")
CONFLICT_RULES = ("drop", "keep-one")
BALANCE_LEVELS = ("split", "source")


@dataclass
class DedupResult:
    """The duplicates found, what was dropped, and the revisions written (an unfinished one first)."""

    report: DuplicateReport
    drop: dict[str, set[str]]
    revisions: list[RevisionSummary] = field(default_factory=list)

    def text(self, note_resumed: bool = True) -> str:
        """The revisions written, or that there was nothing to drop; a dedup revision an interrupted run left and
        this one finished is what the run dropped (``note_resumed``: say that it was finished now)."""
        dropped = sum(len(k) for k in self.drop.values())
        lines = [r.text(note_resumed) for r in self.revisions if r.revision]
        if not dropped and not any(r.revision and r.reason == "dedup" for r in self.revisions):
            lines.append(f"no duplicates to drop among {self.report.hashed} images")
        return "\n".join(lines)


def _rank(order: Sequence[str], value: str) -> tuple[int, str]:
    return (order.index(value), value) if value in order else (len(order), value)


def choose_drops(
    groups: Sequence[DuplicateGroup],
    keep_splits: Sequence[str] = DEFAULT_KEEP_SPLITS,
    keep_sources: Sequence[str] = SOURCES,
    conflicts: str = "drop",
) -> dict[str, set[str]]:
    """``{shard: {key, ...}}`` to drop so that one copy of each group stays (see the module's rules)."""
    if conflicts not in CONFLICT_RULES:
        raise ValueError(f"Unknown conflict rule {conflicts!r}; valid: {', '.join(CONFLICT_RULES)}")
    drop: dict[str, set[str]] = {}
    for group in groups:
        ranked = sorted(
            group.members,
            key=lambda m: (_rank(keep_splits, m.split), _rank(keep_sources, m.source), m.shard, m.key),
        )
        leaving = ranked if group.conflict and conflicts == "drop" else ranked[1:]
        for member in leaving:
            drop.setdefault(member.shard, set()).add(member.key)
    return drop


def dedup_root(
    root: str | Path,
    near_distance: int = DEFAULT_NEAR_DISTANCE,
    keep_splits: Sequence[str] = DEFAULT_KEEP_SPLITS,
    keep_sources: Sequence[str] = SOURCES,
    conflicts: str = "drop",
    workers: int = 1,
    dry_run: bool = False,
) -> DedupResult:
    """Find the duplicates of ``root`` and write a revision without them (an unfinished one is finished first).

    Args:
        root: the dataset root.
        near_distance: largest phash distance of near duplicates; 0 drops exact duplicates only.
        keep_splits: split order of the copy that stays.
        keep_sources: source order of the copy that stays.
        conflicts: ``drop`` every copy of an image labelled both ways, or ``keep-one`` like other groups.
        workers: processes that decode images.
        dry_run: find and choose, write nothing.

    Raises:
        ValueError: a shard of the index is missing or damaged (nothing is written: see
            :func:`dataigm.revision.check_indexed_shards`), or bad options.
    """
    check_indexed_shards(root)
    finished = [] if dry_run else finish_revisions(root)
    report = find_duplicates(root, near_distance=near_distance, workers=workers)
    drop = choose_drops(report.groups, keep_splits, keep_sources, conflicts)
    result = DedupResult(report, drop, finished)
    if not dry_run and drop:
        rules = {
            "near_distance": near_distance,
            "keep_splits": list(keep_splits),
            "keep_sources": list(keep_sources),
            "conflicts": conflicts,
        }
        result.revisions.append(drop_samples(root, drop, "dedup", rules))
    return result


def choose_balance(root: str | Path, by: str = "split", seed: int = 0) -> dict[str, set[str]]:
    """``{shard: {key, ...}}`` to drop so that each concept x split (x source with ``by="source"``) holds as many
    targets as pairs: the larger class keeps a stable pseudo-random subset (sha256 of seed and key)."""
    if by not in BALANCE_LEVELS:
        raise ValueError(f"Unknown balance level {by!r}; valid: {', '.join(BALANCE_LEVELS)}")
    root = Path(root)
    cells: dict[tuple, dict[str, list[tuple[str, str, str]]]] = {}
    for relpath in read_manifest(root)["shards"]:
        for sample in index_shard(root / relpath):
            record = sample.record
            cell = (record["concept"], record["split"]) + ((record["source"],) if by == "source" else ())
            order = hashlib.sha256(f"{seed}:{sample.key}".encode()).hexdigest()
            cells.setdefault(cell, {}).setdefault(record["label"], []).append((order, relpath, sample.key))
    drop: dict[str, set[str]] = {}
    for labels in cells.values():
        if len(labels) < 2:
            continue  # one class only: balancing would empty the cell; reported by `dataigm info`
        size = min(len(v) for v in labels.values())
        for members in labels.values():
            for _, relpath, key in sorted(members)[size:]:
                drop.setdefault(relpath, set()).add(key)
    return drop


def balance_root(root: str | Path, by: str = "split", seed: int = 0, dry_run: bool = False) -> RevisionSummary:
    """Write a revision of ``root`` with as many targets as pairs per cell (see :func:`choose_balance`); with
    ``dry_run`` nothing is written and ``dropped`` counts the samples that would leave. A missing or damaged shard
    is refused before anything is written (:func:`dataigm.revision.check_indexed_shards`)."""
    check_indexed_shards(root)
    finished = [] if dry_run else [r for r in finish_revisions(root) if r.reason == "balance"]
    drop = choose_balance(root, by, seed)
    if dry_run:
        return RevisionSummary("", "balance", dropped=sum(len(keys) for keys in drop.values()))
    if drop:
        return drop_samples(root, drop, "balance", {"by": by, "seed": seed})
    # a balance revision an interrupted run left, finished now: that is what this balancing dropped
    return finished[-1] if finished else RevisionSummary("", "balance")
