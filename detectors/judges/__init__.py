"""The judge API: ``load_judge(spec)`` -> :class:`Judge`, trained timm judges and baseline judges behind it."""

from detectors.judges.api import JUDGE_KINDS, Judge, Prediction, TimmJudge, load_judge, save_judge

__all__ = ["JUDGE_KINDS", "Judge", "Prediction", "TimmJudge", "load_judge", "save_judge"]
