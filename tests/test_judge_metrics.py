"""Judge metrics equal scikit-learn's on hand-made inputs; ECE by hand; bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from detectors.audit.intervals import _resampled_metrics, bootstrap_intervals, metric_report
from detectors.metrics import ECE_BINS, binary_metrics, expected_calibration_error, reliability_bins

Y = np.array([1, 0, 1, 1, 0, 0, 1, 0])
P = np.array([0.9, 0.2, 0.55, 0.4, 0.4, 0.7, 0.8, 0.1])  # a tie at 0.4 across the classes
D = P >= 0.5


def test_metrics_equal_scikit_learn():
    got = binary_metrics(Y, P, D)
    assert got["accuracy"] == accuracy_score(Y, D) == 0.75  # 6 of 8
    assert got["precision"] == precision_score(Y, D) == 0.75  # 3 of 4 called present
    assert got["recall"] == recall_score(Y, D) == 0.75
    assert got["f1"] == f1_score(Y, D) == 0.75
    assert got["auroc"] == roc_auc_score(Y, P) == pytest.approx(13.5 / 16)  # 13 wins and a tie of 16 pairs


def test_degenerate_groups():
    got = binary_metrics(np.array([1, 1]), np.array([0.2, 0.3]), np.array([False, False]))
    assert got["auroc"] is None and got["precision"] == 0.0 and got["recall"] == 0.0 and got["accuracy"] == 0.0


def test_ece_by_hand():
    # 15 bins: 0.1 and 0.12 share bin 1, 0.9 and 0.95 share bin 13, 0.5 is alone in bin 7
    y = np.array([0, 1, 1, 1, 0])
    p = np.array([0.1, 0.12, 0.9, 0.95, 0.5])
    expected = (abs(1 - 0.22) + abs(2 - 1.85) + abs(0 - 0.5)) / 5
    assert expected_calibration_error(y, p) == pytest.approx(expected)
    bins = reliability_bins(y, p)
    assert bins["count"][1] == 2 and bins["frequency"][1] == 0.5 and bins["mean_probability"][7] == 0.5
    assert bins["frequency"][0] is None and len(bins["edges"]) == 16


def test_vectorised_resample_metrics_equal_scikit_learn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 40)
    p = np.round(rng.random(40), 1)  # many ties
    d = p >= 0.5
    idx = rng.integers(0, 40, size=(6, 40))
    batch = _resampled_metrics(y[idx].astype(float), p[idx], d[idx].astype(float), 15)
    for row in range(6):
        ys, ps, ds = y[idx[row]], p[idx[row]], d[idx[row]]
        reference = binary_metrics(ys, ps, ds)
        for name, value in reference.items():
            assert batch[name][row] == pytest.approx(value), name


def test_bootstrap_intervals():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1)
    d = p >= 0.5
    report = metric_report(y, p, d, n_boot=500, seed=1)
    assert report["n"] == 300 and report["n_target"] == int(y.sum())
    for name, value in report["metrics"].items():
        assert value["low"] <= value["value"] <= value["high"], name
        assert value["high"] - value["low"] < 0.2
    assert bootstrap_intervals(y, p, d, n_boot=500, seed=1) == bootstrap_intervals(y, p, d, n_boot=500, seed=1)
    wider = bootstrap_intervals(y, p, d, n_boot=500, ci=0.99, seed=1)["accuracy"]
    narrow = bootstrap_intervals(y, p, d, n_boot=500, ci=0.5, seed=1)["accuracy"]
    assert wider[0] < narrow[0] and wider[1] > narrow[1]
    assert bootstrap_intervals(y, p, d, n_boot=0)["f1"] == (None, None)
    with pytest.raises(ValueError, match="ci=1.5 must be strictly between 0 and 1"):
        bootstrap_intervals(y, p, d, ci=1.5)


def test_ece_equals_torchmetrics_binary_calibration_error():
    import torch
    from torchmetrics.classification import BinaryCalibrationError

    rng = np.random.default_rng(7)
    for n in (7, 50, 400):
        probs = rng.random(n)
        # away from the k/15 bin edges: torchmetrics bins with float32 edges, which differ there
        near_edge = np.abs(probs * ECE_BINS - np.round(probs * ECE_BINS)) < 1e-4
        probs[near_edge] += 2e-4
        targets = (rng.random(n) < probs).astype(int)
        metric = BinaryCalibrationError(n_bins=ECE_BINS, norm="l1")
        reference = float(metric(torch.tensor(probs, dtype=torch.float64), torch.tensor(targets)))
        assert expected_calibration_error(targets, probs) == pytest.approx(reference, abs=1e-6)
    assert expected_calibration_error(Y, P) == pytest.approx(
        float(BinaryCalibrationError(n_bins=ECE_BINS)(torch.tensor(P), torch.tensor(Y))), abs=1e-6
    )


def test_training_and_audit_share_one_metrics_module_without_importing_each_other():
    import ast
    from pathlib import Path

    import detectors

    package = Path(detectors.__file__).parent
    for folder, forbidden in (
        ("training", "detectors.audit"),
        ("audit", "detectors.training"),
        ("judges", "detectors.training"),
    ):
        for path in sorted((package / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
                assert not any(n.startswith(forbidden) for n in names), f"{path.name} imports {forbidden}"


def test_one_statistics_module_wilson_is_scipys_with_exact_ends():
    from scipy.stats import binomtest

    from detectors.stats import proportion, wilson_interval

    for n in (1, 7, 40):
        for k in range(n + 1):
            ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
            low, high = wilson_interval(k, n)
            assert (low, high) == pytest.approx((ref.low, ref.high), abs=1e-12)
            assert proportion(k, n)["ci"] == [low, high]
    assert wilson_interval(0, 9)[0] == 0.0 and wilson_interval(9, 9)[1] == 1.0


def test_percentile_interval_drops_undefined_replicates():
    from detectors.stats import bootstrap_indices, percentile_interval

    assert percentile_interval([np.nan, np.inf]) == (None, None)
    values = np.arange(101, dtype=float)
    assert percentile_interval(np.append(values, np.nan), ci=0.9) == pytest.approx((5.0, 95.0))
    blocks = list(bootstrap_indices(10, 25, seed=1, max_cells=40))
    assert [b.shape for b in blocks] == [(4, 10)] * 6 + [(1, 10)]
    assert np.array_equal(next(bootstrap_indices(10, 25, seed=1)), next(bootstrap_indices(10, 25, seed=1)))
