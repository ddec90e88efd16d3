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
from .common import command_parser, save_config
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


@dataclass
class JudgeEvalOptions:
    """The options of ``dataigm judge eval``.

    Attributes:
        judge: the judge to measure, KIND:OPTIONS; kinds:
        data: dataset root
        out: folder for metrics.json, predictions.csv and plots
        split: split to measure on
        concept: dataset concept for a one-concept baseline judge
        holdout_methods: unlearning methods to report as held out (e.g. ESD,UCE), next to the methods the judge
            saw in training (default: the methods its training excluded, from its config.json; none for baselines)
        bootstrap: bootstrap resamples (0: no intervals)
        ci: confidence level of the intervals
        seed: bootstrap seed
        batch_size: images per judge call
        num_workers: DataLoader workers
        device: auto (CUDA when available, else CPU), cpu, cuda, cuda:N or mps
        progress: show a progress bar
    """

    judge: str
    data: str
    out: str
    split: str = "test"
    concept: str | None = None
    holdout_methods: list[str] | None = None
    bootstrap: int = 1000
    ci: float = 0.95
    seed: int = 0
    batch_size: int = 32
    num_workers: int = 0
    device: str = "auto"
    progress: bool = True


def _configure_eval(parser) -> None:
    from detectors.judges.registry import judge_kinds_help  # light: the kinds' help lives there once

    add_options(
        parser,
        JudgeEvalOptions,
        types={"holdout_methods": list[str] | str | None},  # "ESD,UCE" as well as a list
        more_help={"judge": judge_kinds_help("; ")},
    )


def _run_eval(cfg) -> int:
    from detectors.audit.evaluate import check_eval_options, evaluate_judge, format_holdout, format_rows, write_report
    from detectors.judges import load_judge

    # every option first: a bad one is refused before the judge or any image is loaded
    check_eval_options(cfg.data, cfg.split, cfg.concept, cfg.bootstrap, cfg.ci, cfg.batch_size, cfg.num_workers)
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise ValueError(f"--out {cfg.out} is a file; give a folder for metrics.json and the plots")
    try:
        judge = load_judge(cfg.judge, device=cfg.device)  # each judge kind resolves auto
    except ImportError as err:  # an optional dependency of a baseline judge
        raise ValueError(str(err)) from None
    evaluation = evaluate_judge(
        judge,
        cfg.data,
        split=cfg.split,
        concept=cfg.concept,
        holdout_methods=cfg.holdout_methods,
        n_boot=cfg.bootstrap,
        ci=cfg.ci,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        progress=cfg.progress,
    )
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
    sub = parser.add_subcommands(dest="action")
    for name, action in ACTIONS.items():
        command = command_parser(action.HELP)
        sub.add_subcommand(name, command, help=action.HELP)  # attach first, then configure (jsonargparse)
        action.configure(command)


def run(cfg) -> int:
    return ACTIONS[cfg.action].run(cfg[cfg.action])
