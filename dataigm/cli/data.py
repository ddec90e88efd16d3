"""``dataigm validate`` and ``dataigm info``: check and count a dataset root."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Literal

from ..info import count_samples, format_counts
from ..validate import validate_root
from .options import add_options


@dataclass
class RootOptions:
    """The options of ``dataigm validate``.

    Attributes:
        root: dataset root
    """

    root: str


@dataclass
class ValidateOptions(RootOptions):
    """The options of ``dataigm validate``.

    Attributes:
        duplicates: report exact and near duplicate images (within a split, across splits, across sources), fail
            (exit 1 when there are any) or off (skip decoding the images, and so the leakage check). An exact
            copy of an image in another split (leakage) fails in report mode too; a near copy across splits is
            listed (perceptual hashes also match different pictures of one simple layout) and fails with fail
        near_distance: largest perceptual-hash distance (of 64 bits) of near duplicates; 0: exact ones only
        workers: processes that decode images for the duplicate check
        allow_split_leakage: accept a known leak: exact copies across splits are listed but do not fail
    """

    duplicates: Literal["report", "fail", "off"] = "report"
    near_distance: int = 4
    workers: int = 1
    allow_split_leakage: bool = False


@dataclass
class InfoOptions(RootOptions):
    """The options of ``dataigm info``.

    Attributes:
        json: print JSON instead of a table
    """

    json: bool = False


def _configure_validate(parser) -> None:
    add_options(parser, ValidateOptions, positional=("root",))


def _run_validate(cfg) -> int:
    problems = validate_root(cfg.root)
    if problems:
        print(f"{cfg.root}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"{cfg.root}: valid")
    if cfg.duplicates == "off":
        return 0
    from ..duplicates import find_duplicates

    report = find_duplicates(cfg.root, near_distance=cfg.near_distance, workers=cfg.workers)
    print("\n".join(report.lines()))
    dedup = f"`dataigm dedup {cfg.root}` writes a revision without them"
    leakage = report.leakage_line("exact")
    if leakage and not cfg.allow_split_leakage:  # a test image seen in training inflates every score measured on it
        print(f"{cfg.root}: {leakage}; {dedup} (keeping the test copies), or --allow-split-leakage", file=sys.stderr)
        return 1
    if report.groups and cfg.duplicates == "fail":
        print(f"{cfg.root}: duplicates found; {dedup}", file=sys.stderr)
        return 1
    return 0


def _configure_info(parser) -> None:
    add_options(parser, InfoOptions, positional=("root",))


def _run_info(cfg) -> int:
    counts = count_samples(cfg.root)
    if cfg.json:
        rows = [
            dict(zip(("concept", "split", "source", "label"), k, strict=False), count=n)
            for k, n in sorted(counts.items())
        ]
        print(json.dumps(rows, indent=2))
    else:
        print(format_counts(counts))
    return 0


validate = SimpleNamespace(
    HELP="check a dataset root, list its problems and its duplicate images (exit 1 on problems or split leakage)",
    configure=_configure_validate,
    run=_run_validate,
)
info = SimpleNamespace(
    HELP="count samples per concept x split x source x label", configure=_configure_info, run=_run_info
)
