"""``dataigm demo``: the whole product on the built-in toy world (see :mod:`dataigm.demo`)."""

from __future__ import annotations

import dataclasses

HELP = "run the whole product on the toy world: dataset, judge, evaluation, cards (minutes on a CPU)"


def configure(parser) -> None:
    from ..demo import DemoConfig

    for f in dataclasses.fields(DemoConfig):
        if f.name == "models":
            continue
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(f.default), default=f.default)


def run(cfg) -> int:
    from ..demo import DemoConfig, format_summary, run_demo

    options = {f.name: cfg[f.name] for f in dataclasses.fields(DemoConfig) if f.name != "models"}
    summary = run_demo(DemoConfig(**options))
    print(format_summary(summary))
    print(f"\noutputs in {cfg.out}: dataigm/ (dataset + card), judge-run/judge/, judge-eval/, evaluation/report.md")
    return 0
