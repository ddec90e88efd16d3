"""``dataigm evaluate``: the EvalIGMU aspects of unlearned models, judged by a DataIGM judge."""

from __future__ import annotations

from .options import add_options, options_of

HELP = "evaluate unlearned models: forgetting, preservation, image quality, robustness, efficiency"


def configure(parser) -> None:
    from detectors.evaluation.config import EvalConfig  # light: no torch or timm
    from detectors.judges.registry import judge_kinds_help

    add_options(
        parser, EvalConfig, types={"models": list[str | dict]}, more_help={"judge": "kinds: " + judge_kinds_help("; ")}
    )


def run(cfg) -> int:
    from detectors.evaluation.config import EvalConfig
    from detectors.evaluation.flow import WorkerDone, run_evaluation

    try:
        paths = run_evaluation(EvalConfig(**options_of(EvalConfig, cfg)))
    except WorkerDone as done:  # a worker of a partition: its share is done, the report comes later
        print(done)
        return 0
    print(f"report: {paths['markdown']} and {paths['json']}")
    print(paths["markdown"].read_text(encoding="utf-8"))
    return 0
