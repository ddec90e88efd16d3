"""ROC curves and reliability diagrams (:func:`detectors.figures.agg_figure`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from detectors.figures import agg_figure
from detectors.metrics import ECE_BINS, reliability_bins


def _figure(size: tuple[float, float] = (4.8, 4.4)):
    fig = agg_figure(size)
    fig.subplots_adjust(left=0.14, right=0.96, bottom=0.11, top=0.92)
    return fig


def roc_plot(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "") -> Path:
    """One ROC curve per named group ``{label: (targets, probabilities)}``; groups with one class are left out."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.75", linestyle="--", linewidth=1)
    for label, (targets, probs) in curves.items():
        targets = np.asarray(targets).astype(int)
        if not 0 < targets.sum() < targets.size:
            continue
        fpr, tpr, _ = roc_curve(targets, probs)
        ax.plot(
            fpr, tpr, linewidth=1.5, label=f"{label} (AUROC {roc_auc_score(targets, probs):.3f}, n={targets.size})"
        )
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.legend(loc="lower right", fontsize="small")
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def reliability_plot(
    targets: np.ndarray, probs: np.ndarray, path: str | Path, title: str = "", n_bins: int = ECE_BINS
) -> Path:
    """Observed frequency against mean probability per bin, with the bin counts below."""
    from detectors.metrics import expected_calibration_error

    bins = reliability_bins(targets, probs, n_bins)
    edges = np.asarray(bins["edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    filled = [i for i, c in enumerate(bins["count"]) if c]
    fig = _figure((4.8, 5.4))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], color="0.75", linestyle="--", linewidth=1)
    top.bar(
        centers[filled],
        [bins["frequency"][i] for i in filled],
        width=1 / n_bins,
        edgecolor="black",
        alpha=0.7,
        label="observed frequency",
    )
    top.plot(
        [bins["mean_probability"][i] for i in filled],
        [bins["frequency"][i] for i in filled],
        "o",
        color="C3",
        label="mean probability",
    )
    ece = expected_calibration_error(targets, probs, n_bins)
    top.set(ylabel="fraction with the concept", xlim=(0, 1), ylim=(0, 1.01), title=f"{title} (ECE {ece:.3f})")
    top.legend(loc="upper left", fontsize="small")
    bottom.bar(centers, bins["count"], width=1 / n_bins, color="0.5")
    bottom.set(xlabel="predicted probability", ylabel="images")
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
