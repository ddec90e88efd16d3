"""The judge API: ``load_judge(spec)`` -> :class:`Judge`, trained timm judges and baseline judges behind it.

Importing this package imports the judge kind modules so they register themselves (see
:mod:`detectors.judges.registry`); each imports torch, timm, onnxruntime or transformers only when a judge
of its kind is built, so the import stays light.
"""

import importlib

from detectors.judges.base import Judge, Prediction
from detectors.judges.registry import (
    JUDGE_REGISTRY,
    JudgeKind,
    judge_kinds,
    judge_kinds_help,
    load_judge,
    parse_judge_spec,
    register_judge,
)
from detectors.judges.timm_judge import TimmJudge, save_judge

# The built-in kinds register on import, in this order (the order error messages and --help list them).
for _module in ("timm_judge", "nudenet", "clip_zeroshot", "imagenet", "vlm", "q16", "igmu"):
    importlib.import_module(f"detectors.judges.{_module}")

__all__ = [
    "JUDGE_REGISTRY",
    "Judge",
    "JudgeKind",
    "Prediction",
    "TimmJudge",
    "judge_kinds",
    "judge_kinds_help",
    "load_judge",
    "parse_judge_spec",
    "register_judge",
    "save_judge",
]
