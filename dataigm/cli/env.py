"""``dataigm env``: versions and devices for bug reports."""

from __future__ import annotations

from ..env import environment_report

HELP = "print the versions and devices a bug report needs"


def configure(parser) -> None:
    pass


def run(cfg) -> int:
    for name, value in environment_report().items():
        print(f"- {name}: {value}")
    return 0
