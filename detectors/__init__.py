"""Detectors: timm content judges trained on DataIGM shards, calibrated, measured, saved in timm's Hub format.

Publishing a judge with its card is ``cards.push_judge`` (``dataigm push judge`` / ``dataigm judge push``).

``import detectors`` loads torch and timm; ``import dataigm`` never imports this package.
"""

from .calibrate import Calibration, choose_threshold, fit_calibration, fit_temperature, parse_threshold_rule
from .data import Entry, ShardImageDataset, build_index, carve_validation
from .evaluate import Evaluation, evaluate_judge, write_report
from .judge import JUDGE_KINDS, Judge, Prediction, TimmJudge, load_judge, save_judge
from .losses import masked_bce
from .metrics import binary_metrics, bootstrap_intervals, expected_calibration_error, metric_report
from .model import DEFAULT_MODEL, create_judge_model
from .train import TrainConfig, TrainResult, train_judge

__all__ = [
    "DEFAULT_MODEL",
    "JUDGE_KINDS",
    "Calibration",
    "Entry",
    "Evaluation",
    "Judge",
    "Prediction",
    "ShardImageDataset",
    "TimmJudge",
    "TrainConfig",
    "TrainResult",
    "binary_metrics",
    "bootstrap_intervals",
    "build_index",
    "carve_validation",
    "choose_threshold",
    "create_judge_model",
    "evaluate_judge",
    "expected_calibration_error",
    "fit_calibration",
    "fit_temperature",
    "load_judge",
    "masked_bce",
    "metric_report",
    "parse_threshold_rule",
    "save_judge",
    "train_judge",
    "write_report",
]
