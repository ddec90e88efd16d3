"""Commands made of actions (``dataigm judge train|eval|…``, ``dataigm curate apply``): one sub-parser per action."""

from __future__ import annotations

from collections.abc import Mapping

from .common import command_parser


def configure_actions(parser, actions: Mapping, dest: str = "action") -> None:
    """Add one sub-command per action; an action has ``HELP``, ``configure(parser)`` and ``run(cfg)``."""
    sub = parser.add_subcommands(dest=dest)
    for name, action in actions.items():
        command = command_parser(action.HELP)
        sub.add_subcommand(name, command, help=action.HELP)  # attach first, then configure (jsonargparse)
        action.configure(command)


def run_action(cfg, actions: Mapping, dest: str = "action") -> int:
    """Run the action the command line chose, with its own options."""
    return actions[cfg[dest]].run(cfg[cfg[dest]])
