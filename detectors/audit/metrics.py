"""Binary metrics of a judge for one concept, with percentile bootstrap confidence intervals.

Point estimates come from scikit-learn (accuracy, precision, recall, F1 on the present/absent decisions,
AUROC on the probabilities); ECE is the expected calibration error of the concept probability over
equal-width bins (``sum_b |sum of labels - sum of probabilities in bin b| / N``). The bootstrap resamples
images with replacement and recomputes every metric with vectorised numpy versions of the same formulas.
"""

from __future__ import annotations

import numpy as np

METRICS = ("accuracy", "precision", "recall", "f1", "auroc", "ece")
ECE_BINS = 15
_CHUNK = 2_000_000  # bootstrap cells (resamples x samples) computed at once


def _bins(probs: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((probs * n_bins).astype(np.int64), n_bins - 1).clip(0)


def expected_calibration_error(targets: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE of ``probs`` against 0/1 ``targets`` over ``n_bins`` equal-width bins of [0, 1]."""
    targets, probs = np.asarray(targets, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    if targets.size == 0:
        return float("nan")
    bins = _bins(probs, n_bins)
    sum_y = np.bincount(bins, weights=targets, minlength=n_bins)
    sum_p = np.bincount(bins, weights=probs, minlength=n_bins)
    return float(np.abs(sum_y - sum_p).sum() / targets.size)


def reliability_bins(targets: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, list]:
    """Per bin: count, mean probability and observed frequency (None for empty bins), for reliability plots."""
    targets, probs = np.asarray(targets, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    bins = _bins(probs, n_bins)
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


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def _resampled_metrics(y: np.ndarray, p: np.ndarray, d: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """Every metric for each row of the (resamples, N) arrays ``y`` (0/1), ``p`` and ``d`` (0/1)."""
    from scipy.stats import rankdata

    n_rows, n = y.shape
    tp = (y * d).sum(1)
    fp = ((1 - y) * d).sum(1)
    fn = (y * (1 - d)).sum(1)
    tn = n - tp - fp - fn
    n_pos = y.sum(1)
    n_neg = n - n_pos
    ranks = rankdata(p, axis=1)  # average ranks for ties, as the Mann-Whitney form of AUROC needs
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = ((ranks * y).sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auroc = np.where((n_pos > 0) & (n_neg > 0), auroc, np.nan)
    flat = _bins(p, n_bins) + n_bins * np.arange(n_rows)[:, None]
    sum_y = np.bincount(flat.ravel(), weights=y.ravel(), minlength=n_rows * n_bins).reshape(n_rows, n_bins)
    sum_p = np.bincount(flat.ravel(), weights=p.ravel(), minlength=n_rows * n_bins).reshape(n_rows, n_bins)
    return {
        "accuracy": (tp + tn) / n,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auroc": auroc,
        "ece": np.abs(sum_y - sum_p).sum(1) / n,
    }


def bootstrap_intervals(
    targets: np.ndarray,
    probs: np.ndarray,
    present: np.ndarray,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    n_bins: int = ECE_BINS,
) -> dict[str, tuple[float | None, float | None]]:
    """Percentile bootstrap intervals ``{metric: (low, high)}`` from ``n_boot`` resamples of the images."""
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci={ci!r} must be strictly between 0 and 1")
    y = np.asarray(targets).astype(np.float64)
    p = np.asarray(probs, dtype=np.float64)
    d = np.asarray(present).astype(np.float64)
    n = y.size
    if n == 0 or n_boot <= 0:
        return {m: (None, None) for m in METRICS}
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // n)
    values: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    for start in range(0, n_boot, rows):
        idx = rng.integers(0, n, size=(min(rows, n_boot - start), n))
        for name, value in _resampled_metrics(y[idx], p[idx], d[idx], n_bins).items():
            values[name].append(value)
    alpha = (1.0 - ci) / 2
    out = {}
    for name in METRICS:
        v = np.concatenate(values[name])
        v = v[np.isfinite(v)]
        out[name] = (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))) if v.size else (None, None)
    return out


def metric_report(
    targets: np.ndarray,
    probs: np.ndarray,
    present: np.ndarray,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    n_bins: int = ECE_BINS,
) -> dict:
    """``{"n", "n_target", "metrics": {name: {"value", "low", "high"}}}`` for one group of images."""
    point = binary_metrics(targets, probs, present, n_bins)
    intervals = bootstrap_intervals(targets, probs, present, n_boot, ci, seed, n_bins)
    return {
        "n": int(np.asarray(targets).size),
        "n_target": int(np.asarray(targets).astype(int).sum()),
        "metrics": {m: {"value": point[m], "low": intervals[m][0], "high": intervals[m][1]} for m in METRICS},
    }
