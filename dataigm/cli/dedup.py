"""``dataigm dedup ROOT``: a new revision of a dataset root without its exact and near duplicates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .options import add_options

HELP = "write a new revision of a dataset root without duplicate images (and without train/test leakage)"


@dataclass
class DedupOptions:
    """The options of ``dataigm dedup``.

    Attributes:
        root: dataset root
        near_distance: largest perceptual-hash distance (of 64 bits) of near duplicates; 0: exact ones only
        keep_splits: the copy that stays is the one in the first of these splits (a training copy of a test image
            leaves, so the test split stays as it was)
        keep_sources: then the one from the first of these sources
        conflicts: drop every copy of an image labelled both target and pair, or keep-one like other duplicates
        balance: then keep as many targets as pairs per concept x split (split) or x split x source (source)
        workers: processes that decode images
        dry_run: show what would be dropped, write nothing
    """

    root: str
    near_distance: int = 4
    keep_splits: list[str] = field(default_factory=lambda: ["test", "validation", "val", "train"])
    keep_sources: list[str] = field(default_factory=lambda: ["real", "laion", "generated"])
    conflicts: Literal["drop", "keep-one"] = "drop"
    balance: Literal["split", "source"] | None = None
    workers: int = 1
    dry_run: bool = False


def configure(parser) -> None:
    add_options(parser, DedupOptions, positional=("root",))


def run(cfg) -> int:
    from ..dedup import balance_root, dedup_root
    from .card import refresh_card

    result = dedup_root(
        cfg.root,
        near_distance=cfg.near_distance,
        keep_splits=cfg.keep_splits,
        keep_sources=cfg.keep_sources,
        conflicts=cfg.conflicts,
        workers=cfg.workers,
        dry_run=cfg.dry_run,
    )
    print("\n".join(result.report.lines()))
    if cfg.dry_run:
        dropped = sum(len(keys) for keys in result.drop.values())
        print(f"dry run: {dropped} sample(s) in {len(result.drop)} shard(s) would be dropped; nothing written")
    else:
        print(result.text())
    if cfg.balance is not None:
        print(balance_root(cfg.root, by=cfg.balance, dry_run=cfg.dry_run).text())
    if not cfg.dry_run:
        refresh_card(cfg.root)
    return 0
