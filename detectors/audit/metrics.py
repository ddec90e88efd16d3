"""Confidence intervals of a judge's binary metrics: a percentile bootstrap over the images.

Point estimates are :func:`detectors.metrics.binary_metrics`. The bootstrap resamples images with
replacement (:func:`detectors.stats.bootstrap_indices`, fixed seed) and recomputes every metric with
vectorised numpy versions of the same formulas; the interval is :func:`detectors.stats.percentile_interval`
of the finite replicates.
"""

from __future__ import annotations

import numpy as np

from detectors.metrics import ECE_BINS, METRICS, bin_index, binary_metrics
from detectors.stats import bootstrap_indices, percentile_interval

_CHUNK = 2_000_000  # bootstrap cells (resamples x samples) computed at once


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
    flat = bin_index(p, n_bins) + n_bins * np.arange(n_rows)[:, None]
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
    values: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    for idx in bootstrap_indices(n, n_boot, seed, max_cells=_CHUNK):
        for name, value in _resampled_metrics(y[idx], p[idx], d[idx], n_bins).items():
            values[name].append(value)
    return {name: percentile_interval(np.concatenate(values[name]), ci) for name in METRICS}


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
