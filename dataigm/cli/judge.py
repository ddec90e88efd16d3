"""``dataigm judge train|eval|push``: train a judge, measure any judge, publish a judge (= ``dataigm push judge``).

The ``detectors`` package (torch, timm) is imported inside each command, so ``import dataigm`` stays light.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

from .common import command_parser, save_config

HELP = "train, measure and publish judges (timm content classifiers)"

_DEFAULT_MODEL = (
    "vit_base_patch32_clip_quickgelu_224.openai"  # = detectors.judges.model.DEFAULT_MODEL (kept light here)
)


def _configure_train(parser) -> None:
    parser.add_argument("--data", required=True, help="dataset root to train on")
    parser.add_argument("--out", required=True, help="output folder: checkpoints, summary.csv, judge/")
    parser.add_argument(
        "--concepts",
        type=list[str] | str | None,
        default=None,
        help="concepts to judge, one logit each, e.g. nudity,church (default: all in the training split)",
    )
    parser.add_argument("--model", default=_DEFAULT_MODEL, help="any timm model name (default: CLIP ViT-B/32, OpenAI)")
    parser.add_argument("--pretrained", type=bool, default=True, help="start from pretrained weights")
    parser.add_argument(
        "--pretrained-path", type=str | None, default=None, help="local weights file for --model (offline)"
    )
    parser.add_argument("--model-kwargs", type=dict, default={}, help="extra create_model arguments (JSON/YAML)")
    parser.add_argument("--img-size", type=int | None, default=None, help="input side for size-flexible models")
    parser.add_argument("--mode", default="probe", choices=["probe", "finetune"], help="train the head or all")
    parser.add_argument("--train-split", default="train", help="split to train on")
    parser.add_argument("--val-split", type=str | None, default=None, help="split to validate on (default: carve)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share carved out for validation")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float | None, default=None, help="AdamW lr (default: 1e-3 probe, 3e-5 finetune)")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up before the cosine")
    parser.add_argument("--min-lr-ratio", type=float, default=0.0, help="final lr as a fraction of --lr")
    parser.add_argument("--accum-steps", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--max-grad-norm", type=float | None, default=1.0, help="gradient clipping (null: off)")
    parser.add_argument("--augment", type=bool, default=True, help="timm train augmentation (finetune only)")
    parser.add_argument("--cache-features", type=bool, default=True, help="probe: cache frozen features on disk")
    parser.add_argument("--cache-dir", type=str | None, default=None, help="feature cache (default: OUT/features)")
    parser.add_argument("--early-stopping", type=int, default=0, help="patience in epochs (0: off)")
    parser.add_argument("--threshold-rule", default="max_f1", help="max_f1, fpr@X (e.g. fpr@0.05) or fixed@T")
    parser.add_argument("--calibrate", type=bool, default=True, help="fit a temperature per concept")
    parser.add_argument("--amp", type=bool, default=True, help="mixed precision on CUDA")
    parser.add_argument("--device", type=str | None, default=None, help="cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--seed", type=int, default=0, help="seeds initialisation, sample order and augmentation")
    parser.add_argument(
        "--threads",
        type=int | None,
        default=None,
        help="CPU threads during training; a fixed number gives the same weights on any core count (default: all)",
    )
    parser.add_argument(
        "--deterministic", type=bool, default=True, help="torch.use_deterministic_algorithms during training"
    )
    parser.add_argument(
        "--resume", type=bool, default=False, help="continue the run in --out (a fresh run when there is none)"
    )
    parser.add_argument("--progress", type=bool, default=True, help="show a progress bar")


def _run_train(cfg) -> int:
    from detectors.training.trainer import TrainConfig, train_judge

    result = train_judge(TrainConfig.from_mapping(cfg.as_dict()))
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


def _configure_eval(parser) -> None:
    parser.add_argument(
        "--judge",
        required=True,
        help="local-dir:PATH, hf-hub:ORG/NAME[@REV], nudenet[:preset=paper6,threshold=0.6], "
        "clip-zeroshot:model=PATH_OR_ID,target=nude,anchor=properly dressed, imagenet:model=NAME,classes=497",
    )
    parser.add_argument("--data", required=True, help="dataset root")
    parser.add_argument("--split", default="test", help="split to measure on")
    parser.add_argument("--out", required=True, help="folder for metrics.json, predictions.csv and plots")
    parser.add_argument(
        "--concept", type=str | None, default=None, help="dataset concept for a one-concept baseline judge"
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: no intervals)")
    parser.add_argument("--ci", type=float, default=0.95, help="confidence level of the intervals")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--device", type=str | None, default=None, help="cpu, cuda... (default: auto)")
    parser.add_argument("--progress", type=bool, default=True, help="show a progress bar")


def _run_eval(cfg) -> int:
    from detectors.audit.evaluate import check_eval_options, evaluate_judge, format_rows, write_report
    from detectors.judges.api import load_judge

    # every option first: a bad one is refused before the judge or any image is loaded
    check_eval_options(cfg.data, cfg.split, cfg.concept, cfg.bootstrap, cfg.ci, cfg.batch_size, cfg.num_workers)
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise ValueError(f"--out {cfg.out} is a file; give a folder for metrics.json and the plots")
    try:
        judge = load_judge(cfg.judge, device=cfg.device)
    except ImportError as err:  # an optional dependency of a baseline judge
        raise ValueError(str(err)) from None
    evaluation = evaluate_judge(
        judge,
        cfg.data,
        split=cfg.split,
        concept=cfg.concept,
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


def _configure_push(parser) -> None:
    from .push import add_judge_push_options

    parser.add_argument("--judge", required=True, help="folder of a saved judge (OUT/judge of judge train)")
    parser.add_argument("--repo", required=True, help="Hub model repository ORG/NAME")
    parser.add_argument("--private", type=bool, default=False, help="create the repository as private")
    parser.add_argument("--revision", type=str | None, default=None, help="branch to push to (created if missing)")
    add_judge_push_options(parser)


def _run_push(cfg) -> int:
    from .push import run_judge_push  # the same path as `dataigm push judge`: our card, timm's push_to_hf_hub

    return run_judge_push(cfg.judge, cfg)


ACTIONS = {
    "train": SimpleNamespace(HELP="train a judge on a dataset root", configure=_configure_train, run=_run_train),
    "eval": SimpleNamespace(
        HELP="measure a judge (trained or baseline) per concept x source x method",
        configure=_configure_eval,
        run=_run_eval,
    ),
    "push": SimpleNamespace(
        HELP="publish a saved judge to the Hugging Face Hub", configure=_configure_push, run=_run_push
    ),
}


def configure(parser) -> None:
    sub = parser.add_subcommands(dest="action")
    for name, action in ACTIONS.items():
        command = command_parser(action.HELP)
        sub.add_subcommand(name, command, help=action.HELP)  # attach first, then configure (jsonargparse)
        action.configure(command)


def run(cfg) -> int:
    return ACTIONS[cfg.action].run(cfg[cfg.action])
