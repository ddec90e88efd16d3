"""``dataigm judge agree``: how far several judges agree with each other and with the labels, and what to review.

Writes ``agreement.json``, ``queue.jsonl`` (read by ``dataigm review``), one kappa-matrix plot per concept and
``agreement.md`` (the agreement card) into ``--out``. ``detectors`` and ``cards`` are imported inside ``run``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from .common import save_config
from .judge_run import JudgeRunOptions, check_run_options, load_judges, run_arguments
from .options import add_options, attribute_help, options_of

HELP = "measure how far judges agree (Cohen's kappa, raw agreement) and write the images to review"


@dataclass(kw_only=True)
class JudgeAgreeOptions(JudgeRunOptions):
    """The options of ``dataigm judge agree`` (with those of every judge run).

    Attributes:
        judges: two or more judges to compare, KIND:OPTIONS each (separated by spaces); kinds:
        data: dataset root
        out: folder for agreement.json, queue.jsonl, agreement.md and the plots
        queue: where to write the review queue (default: OUT/queue.jsonl)
    """

    data: str
    out: str
    judges: list[str] = field(default_factory=list)
    queue: str | None = None


def configure(parser) -> None:
    from detectors.judges.registry import judge_kinds_help  # light: the kinds' help lives there once

    # SPEC SPEC ...: argparse collects the items (add_options makes list options JSON lists)
    parser.add_argument(
        "--judges",
        nargs="+",
        type=str,
        required=True,
        help=f"{attribute_help(JudgeAgreeOptions)['judges']} {judge_kinds_help('; ')}",
    )
    add_options(parser, JudgeAgreeOptions, skip=("judges",))


def run(cfg) -> int:
    from cards.agreement_card import write_agreement_card
    from detectors.audit.agree import check_judge_names, format_rows, judge_agreement, write_agreement
    from detectors.judges import parse_judge_spec

    options = JudgeAgreeOptions(**options_of(JudgeAgreeOptions, cfg))
    # every option and judge spec first: a bad one is refused before any judge or image is loaded
    check_judge_names(options.judges)
    for spec in options.judges:
        parse_judge_spec(spec)
    check_run_options(options)
    if Path(options.out).exists() and not Path(options.out).is_dir():
        raise ValueError(f"--out {options.out} is a file; give a folder for agreement.json and the plots")
    if options.queue is not None and Path(options.queue).is_dir():
        raise ValueError(f"--queue {options.queue} is a folder; give a file path for the review queue (JSON lines)")
    judges = load_judges(options.judges, options.device)
    agreement = judge_agreement(judges, options.data, **run_arguments(options))
    paths = write_agreement(agreement, options.out, options.queue)
    card = write_agreement_card(options.out)
    save_config(cfg, Path(options.out) / "config.yaml")
    print(format_rows(agreement.report))
    report = agreement.report
    if report["unreadable_images"]:
        print(f"{report['unreadable_images']} unreadable image(s) left out", file=sys.stderr)
    nan = {name: sum(counts.values()) for name, counts in report["excluded_nan"].items() if sum(counts.values())}
    if nan:
        print(
            "judgements that were NaN or outside [0, 1], left out of every pair they are in: "
            + ", ".join(f"{name}: {n}" for name, n in nan.items()),
            file=sys.stderr,
        )
    print(f"review queue: {paths['queue']} ({report['queue']['images']} image(s)); review it with dataigm review")
    print(f"report: {paths['agreement']}, card: {card}")
    return 0


ACTION = SimpleNamespace(HELP=HELP, configure=configure, run=run)
