"""``dataigm generate``: concepts x prompt kinds x model specs x N images -> shards of a dataset root."""

from __future__ import annotations

import sys

from .card import refresh_card
from .options import add_options, options_of

HELP = "generate DataIGM images with diffusers pipelines (original and unlearned models)"


def configure(parser) -> None:
    from generation.config import JobConfig  # light: no torch or diffusers

    add_options(parser, JobConfig, types={"models": list[str | dict]})


def run(cfg) -> int:
    from generation.config import JobConfig
    from generation.runner import EXIT_INCOMPLETE, run_job

    job = JobConfig(**options_of(JobConfig, cfg))
    summary = run_job(job)
    refresh_card(job.out)
    print(summary.text(), file=sys.stdout if summary.complete else sys.stderr)
    return 0 if summary.complete else EXIT_INCOMPLETE
