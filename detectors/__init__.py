"""Detectors: judges (``detectors.judges``), their training (``detectors.training``), their measurement
(``detectors.audit``) and the EvalIGMU evaluation that uses them as oracles (``detectors.evaluation``).

Imports go one way: training, audit and evaluation use judges, data and stats; judges use none of them.
Publishing a judge with its card is ``cards.push_judge`` (``dataigm push judge`` / ``dataigm judge push``).
The names below are loaded on first use (PEP 562), so ``import detectors`` imports neither torch nor timm.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Calibration": "detectors.judges.calibrate",
    "choose_threshold": "detectors.judges.calibrate",
    "fit_calibration": "detectors.judges.calibrate",
    "fit_temperature": "detectors.judges.calibrate",
    "parse_threshold_rule": "detectors.judges.calibrate",
    "Entry": "detectors.data",
    "ShardImageDataset": "detectors.data",
    "build_index": "detectors.data",
    "carve_validation": "detectors.data",
    "Evaluation": "detectors.audit.judge_eval",
    "evaluate_judge": "detectors.audit.judge_eval",
    "write_report": "detectors.audit.judge_eval",
    "JUDGE_REGISTRY": "detectors.judges",
    "Judge": "detectors.judges",
    "Prediction": "detectors.judges",
    "TimmJudge": "detectors.judges",
    "judge_kinds": "detectors.judges",
    "judge_kinds_help": "detectors.judges",
    "load_judge": "detectors.judges",
    "register_judge": "detectors.judges",
    "save_judge": "detectors.judges",
    "masked_bce": "detectors.training.losses",
    "binary_metrics": "detectors.metrics",
    "bootstrap_intervals": "detectors.audit.intervals",
    "expected_calibration_error": "detectors.metrics",
    "metric_report": "detectors.audit.intervals",
    "DEFAULT_MODEL": "detectors.judges.model",
    "create_judge_model": "detectors.judges.model",
    "TrainConfig": "detectors.training.config",
    "TrainResult": "detectors.training.trainer",
    "train_judge": "detectors.training.trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'detectors' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
