"""``dataigm curate apply ROOT --decisions FILE``: write a person's label decisions as a new revision of the root."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from .actions import configure_actions, run_action
from .options import add_options

HELP = "apply labels a person checked (dataigm review) as a new revision of the affected shards"


@dataclass
class CurateApplyOptions:
    """The options of ``dataigm curate apply``.

    Attributes:
        root: dataset root
        decisions: decisions file written by dataigm review
    """

    root: str
    decisions: str


def _configure_apply(parser) -> None:
    add_options(parser, CurateApplyOptions, positional=("root",))


def _run_apply(cfg) -> int:
    from ..curate import apply_decisions
    from .card import refresh_card

    summary = apply_decisions(cfg.root, cfg.decisions)
    if summary.state in ("applied", "resumed"):
        refresh_card(cfg.root)  # the card's counts and its table of label changes
    print(summary.text())
    for row in summary.labels_changed:
        print(
            f"  {row['concept']} / {row['source']} / {row['method']}: {row['flipped']} flipped "
            f"({row['to_target']} to target, {row['to_pair']} to pair), {row['confirmed']} confirmed"
        )
    return 0


ACTIONS = {
    "apply": SimpleNamespace(HELP="write the decisions as a new revision", configure=_configure_apply, run=_run_apply),
}


def configure(parser) -> None:
    configure_actions(parser, ACTIONS)


def run(cfg) -> int:
    return run_action(cfg, ACTIONS)
