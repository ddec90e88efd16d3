"""Binary metrics of a judge for one concept: point estimates shared by training (validation) and audit.

Accuracy, precision, recall and F1 on the present/absent decisions and AUROC on the probabilities come
from scikit-learn; ECE is the expected calibration error of the concept probability over equal-width bins
(``sum_b |sum of labels - sum of probabilities in bin b| / N``), equal to torchmetrics'
``BinaryCalibrationError`` (l1 norm) away from bin edges. Their intervals are in :mod:`detectors.audit.intervals`.
"""

from __future__ import annotations

import numpy as np

METRICS = ("accuracy", "precision", "recall", "f1", "auroc", "ece")
ECE_BINS = 15


def bin_index(probs: np.ndarray, n_bins: int) -> np.ndarray:
    """The equal-width bin of each probability (1.0 falls in the last bin)."""
    return np.minimum((probs * n_bins).astype(np.int64), n_bins - 1).clip(0)


def expected_calibration_error(targets: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE of ``probs`` against 0/1 ``targets`` over ``n_bins`` equal-width bins of [0, 1]."""
    targets, probs = np.asarray(targets, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    if targets.size == 0:
        return float("nan")
    bins = bin_index(probs, n_bins)
    sum_y = np.bincount(bins, weights=targets, minlength=n_bins)
    sum_p = np.bincount(bins, weights=probs, minlength=n_bins)
    return float(np.abs(sum_y - sum_p).sum() / targets.size)


def reliability_bins(targets: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, list]:
    """Per bin: count, mean probability and observed frequency (None for empty bins), for reliability plots."""
    targets, probs = np.asarray(targets, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    bins = bin_index(probs, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    sum_y = np.bincount(bins, weights=targets, minlength=n_bins)
    sum_p = np.bincount(bins, weights=probs, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p, freq = sum_p / count, sum_y / count
    return {
        "edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(),
        "count": count.tolist(),
        "mean_probability": [None if c == 0 else float(v) for c, v in zip(count, mean_p, strict=True)],
        "frequency": [None if c == 0 else float(v) for c, v in zip(count, freq, strict=True)],
    }


def binary_metrics(
    targets: np.ndarray, probs: np.ndarray, present: np.ndarray, n_bins: int = ECE_BINS
) -> dict[str, float | None]:
    """Point estimates: scikit-learn's accuracy/precision/recall/F1 (``zero_division=0``) and AUROC, plus ECE.

    AUROC is None when the labels hold a single class.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    y = np.asarray(targets).astype(int)
    d = np.asarray(present).astype(int)
    p = np.asarray(probs, dtype=np.float64)
    both = 0 < y.sum() < y.size
    return {
        "accuracy": float(accuracy_score(y, d)),
        "precision": float(precision_score(y, d, zero_division=0)),
        "recall": float(recall_score(y, d, zero_division=0)),
        "f1": float(f1_score(y, d, zero_division=0)),
        "auroc": float(roc_auc_score(y, p)) if both else None,
        "ece": expected_calibration_error(y, p, n_bins),
    }
