"""``dataigm judge train|eval|push|agree``: train a judge, measure any judge, publish a judge (= ``dataigm push
judge``), measure how far judges agree (:mod:`dataigm.cli.judge_agree`).

The ``detectors`` package (torch, timm) is imported inside each command, so ``import dataigm`` stays light.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from . import judge_agree, push
from .actions import configure_actions, run_action
from .common import save_config
from .judge_run import JudgeRunOptions, check_run_options, load_judges, run_arguments
from .options import add_options, options_of

HELP = "train, measure and publish judges (timm content classifiers)"


def _configure_train(parser) -> None:
    from detectors.training.config import TrainConfig  # light: no torch or timm

    # "nudity,church" (and "ESD,UCE") as well as a list; one --device auto everywhere
    lists = {"concepts": list[str] | str | None, "exclude_methods": list[str] | str | None}
    add_options(parser, TrainConfig, types={**lists, "device": str}, defaults={"device": "auto"})


def _run_train(cfg) -> int:
    from dataigm.devices import resolve_device
    from detectors.training.config import TrainConfig
    from detectors.training.trainer import train_judge

    options = options_of(TrainConfig, cfg)
    # auto: the trainer's own choice (CUDA when available, LOCAL_RANK under torchrun); a named device is checked
    options["device"] = None if options["device"] == "auto" else resolve_device(options["device"])
    result = train_judge(TrainConfig(**options))
    if result.judge_dir is None:  # a non-zero rank under torchrun
        return 0
    print(f"judge saved to {result.judge_dir} (load it with load_judge('local-dir:{result.judge_dir}'))")
    for concept, values in result.metrics["validation"].items():
        print(
            f"  {concept}: validation accuracy {values['accuracy']:.3f}, F1 {values['f1']:.3f}, "
            f"AUROC {values['auroc'] if values['auroc'] is None else format(values['auroc'], '.3f')}, "
            f"ECE {values['ece_uncalibrated']:.3f} -> {values['ece']:.3f}; "
            f"T = {result.calibration.temperatures[concept]:.3g}, "
            f"threshold = {result.calibration.thresholds[concept]:.3g} ({result.calibration.rule})"
        )
    return 0


@dataclass(kw_only=True)
class JudgeEvalOptions(JudgeRunOptions):
    """The options of ``dataigm judge eval`` (with those of every judge run).

    Attributes:
        judge: the judge to measure, KIND:OPTIONS; kinds:
        data: dataset root
        out: folder for metrics.json, predictions.csv and plots
        holdout_methods: unlearning methods to report as held out (e.g. ESD,UCE), next to the methods the judge
            saw in training (default: the methods its training excluded, from its config.json; none for baselines)
    """

    judge: str
    data: str
    out: str
    holdout_methods: list[str] | None = None


def _configure_eval(parser) -> None:
    from detectors.judges.registry import judge_kinds_help  # light: the kinds' help lives there once

    add_options(
        parser,
        JudgeEvalOptions,
        types={"holdout_methods": list[str] | str | None},  # "ESD,UCE" as well as a list
        more_help={"judge": judge_kinds_help("; ")},
    )


def _run_eval(cfg) -> int:
    from detectors.audit.judge_eval import evaluate_judge, format_holdout, format_rows, write_report

    # every option first: a bad one is refused before the judge or any image is loaded
    check_run_options(cfg)
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise ValueError(f"--out {cfg.out} is a file; give a folder for metrics.json and the plots")
    judge = load_judges([cfg.judge], cfg.device)[cfg.judge]
    evaluation = evaluate_judge(judge, cfg.data, holdout_methods=cfg.holdout_methods, **run_arguments(cfg))
    paths = write_report(evaluation, cfg.out)
    save_config(cfg, Path(cfg.out) / "config.yaml")
    print(format_rows(evaluation.report))
    if evaluation.report.get("holdout"):
        print(format_holdout(evaluation.report["holdout"]))
    if evaluation.report["unreadable_images"]:
        print(f"{evaluation.report['unreadable_images']} unreadable image(s) skipped", file=sys.stderr)
    if evaluation.report["excluded_nan"]:
        print(
            f"{evaluation.report['excluded_nan']} judgement(s) were NaN or outside [0, 1] and are left out of "
            "the metrics (excluded_nan in metrics.json)",
            file=sys.stderr,
        )
    print(f"report: {paths['metrics']}")
    return 0


ACTIONS = {
    "train": SimpleNamespace(HELP="train a judge on a dataset root", configure=_configure_train, run=_run_train),
    "eval": SimpleNamespace(
        HELP="measure a judge (trained or baseline) per concept x source x method",
        configure=_configure_eval,
        run=_run_eval,
    ),
    "push": push.ACTIONS["judge"],  # an alias of `dataigm push judge`: one parser, one implementation
    "agree": judge_agree.ACTION,
}


def configure(parser) -> None:
    configure_actions(parser, ACTIONS)


def run(cfg) -> int:
    return run_action(cfg, ACTIONS)
