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
    if np.asarray(targets).size == 0 or n_boot <= 0:
        return {m: (None, None) for m in METRICS}
    replicates = bootstrap_replicates(targets, probs, present, n_boot, seed, n_bins)
    return {name: percentile_interval(replicates[name], ci) for name in METRICS}


def bootstrap_replicates(
    targets: np.ndarray, probs: np.ndarray, present: np.ndarray, n_boot: int, seed: int = 0, n_bins: int = ECE_BINS
) -> dict[str, np.ndarray]:
    """Every metric on each of ``n_boot`` resamples of the images: ``{metric: (n_boot,) array}`` (NaN: undefined)."""
    y = np.asarray(targets).astype(np.float64)
    p = np.asarray(probs, dtype=np.float64)
    d = np.asarray(present).astype(np.float64)
    values: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    for idx in bootstrap_indices(y.size, n_boot, seed, max_cells=_CHUNK):
        for name, value in _resampled_metrics(y[idx], p[idx], d[idx], n_bins).items():
            values[name].append(value)
    return {name: np.concatenate(values[name]) if values[name] else np.zeros(0) for name in METRICS}


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


def holdout_comparison(
    targets: np.ndarray,
    probs: np.ndarray,
    present: np.ndarray,
    held_out: np.ndarray,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    n_bins: int = ECE_BINS,
) -> dict:
    """A judge on images of held-out methods next to images of methods it saw, and the gap between them.

    Args:
        targets, probs, present: the images' labels, probabilities and decisions.
        held_out: True for an image of a held-out method, False for one of a seen method.

    Returns:
        ``{"held_out": metric_report, "seen": metric_report, "gap": {metric: {"value", "low", "high"}}}``; the
        gap is seen minus held-out (positive: the judge does worse on methods it never saw), its interval a
        percentile bootstrap that resamples each group on its own (independent samples). Without images on
        one side, that side's metrics and the gap are None.
    """
    targets, probs, present = np.asarray(targets), np.asarray(probs, dtype=np.float64), np.asarray(present)
    held_out = np.asarray(held_out, dtype=bool)
    groups = {"held_out": held_out, "seen": ~held_out}
    out: dict = {}
    for name, rows in groups.items():
        if rows.any():
            out[name] = metric_report(targets[rows], probs[rows], present[rows], n_boot, ci, seed, n_bins)
        else:
            none = {"value": None, "low": None, "high": None}
            out[name] = {"n": 0, "n_target": 0, "metrics": {m: dict(none) for m in METRICS}}
    out["gap"] = {m: {"value": None, "low": None, "high": None} for m in METRICS}
    if not (held_out.any() and (~held_out).any()):
        return out
    replicates = {
        name: bootstrap_replicates(targets[rows], probs[rows], present[rows], n_boot, seed + offset, n_bins)
        for offset, (name, rows) in enumerate(groups.items())
    }
    for m in METRICS:
        seen, held = out["seen"]["metrics"][m]["value"], out["held_out"]["metrics"][m]["value"]
        value = None if seen is None or held is None else seen - held
        low, high = (None, None)
        if n_boot > 0 and value is not None:
            low, high = percentile_interval(replicates["seen"][m] - replicates["held_out"][m], ci)
        out["gap"][m] = {"value": value, "low": low, "high": high}
    return out
