"""Calibration: temperature scaling lowers ECE on an over-confident model; each threshold rule."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.judges.calibrate import (
    NEVER,
    ThresholdRule,
    choose_threshold,
    fit_calibration,
    fit_temperature,
    parse_threshold_rule,
    sigmoid,
)
from detectors.metrics import expected_calibration_error


def _overconfident(n: int = 4000, scale: float = 4.0, seed: int = 0):
    """Labels drawn from sigmoid(z) but logits reported as scale * z: a model too sure of itself."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < sigmoid(z)).astype(float)
    return scale * z, y


def test_temperature_scaling_lowers_ece_of_an_overconfident_model():
    logits, targets = _overconfident()
    before = expected_calibration_error(targets, sigmoid(logits))
    temperature = fit_temperature(logits, targets)
    after = expected_calibration_error(targets, sigmoid(logits / temperature))
    assert temperature == pytest.approx(4.0, rel=0.15)
    assert before > 0.08 and after < 0.03 and after < before / 3


def test_fit_calibration_uses_only_labelled_cells():
    logits, targets = _overconfident(2000)
    two_logits = np.stack([logits, np.full_like(logits, 50.0)], axis=1)  # concept 1: garbage, unlabelled...
    two_targets = np.stack([targets, np.zeros_like(targets)], axis=1)
    mask = np.stack([np.ones_like(targets), np.zeros_like(targets)], axis=1)
    mask[:500, 1] = 1  # ...except 500 rows, labelled with well-calibrated logits
    two_logits[:500, 1], two_targets[:500, 1] = logits[:500] / 4, targets[:500]
    calibration = fit_calibration(two_logits, two_targets, mask, ["church", "nudity"], rule="fixed@0.5")
    assert calibration.temperatures["church"] == pytest.approx(fit_temperature(logits, targets))
    assert calibration.temperatures["nudity"] == pytest.approx(1.0, rel=0.3)
    assert calibration.thresholds == {"church": 0.5, "nudity": 0.5} and calibration.rule == "fixed@0.5"
    unscaled = fit_calibration(two_logits, two_targets, mask, ["church", "nudity"], fit_temperatures=False)
    assert unscaled.temperatures == {"church": 1.0, "nudity": 1.0}


PROBS = np.array([0.10, 0.30, 0.35, 0.60, 0.80, 0.90])
LABELS = np.array([0, 0, 1, 0, 1, 1])


@pytest.mark.parametrize(
    ("rule", "threshold", "decisions"),
    [
        # best F1 (6/7) accepts 0.35 and up; the threshold sits halfway to the next lower score
        ("max_f1", 0.325, [0, 0, 1, 1, 1, 1]),
        # 3 negatives: fpr <= 0.2 allows none of them (only 0.8 and 0.9 accepted)
        ("fpr@0.2", 0.70, [0, 0, 0, 0, 1, 1]),
        # fpr <= 0.34 allows one negative (0.6), so 0.35 is accepted too
        ("fpr@0.34", 0.325, [0, 0, 1, 1, 1, 1]),
        ("fpr@0.7", 0.20, [0, 1, 1, 1, 1, 1]),
        ("fixed@0.5", 0.50, [0, 0, 0, 1, 1, 1]),
        ("fixed@0", 0.0, [1, 1, 1, 1, 1, 1]),
    ],
)
def test_threshold_rules(rule, threshold, decisions):
    chosen = choose_threshold(PROBS, LABELS, rule)
    assert chosen == pytest.approx(threshold)
    assert (PROBS >= chosen).astype(int).tolist() == decisions


def test_threshold_rules_on_separable_and_one_class_data():
    probs = np.array([0.0, 0.0, 1.0, 1.0])  # saturated scores: the threshold keeps a margin
    assert choose_threshold(probs, np.array([0, 0, 1, 1]), "max_f1") == 0.5
    assert choose_threshold(probs, np.array([0, 0, 1, 1]), "fpr@0.01") == 0.5
    assert choose_threshold(np.array([0.2, 0.9]), np.array([0, 0]), "max_f1") == 0.5  # no positive: fall back
    assert choose_threshold(np.array([0.2, 0.9, 0.95]), np.array([1, 1, 1]), "fixed@0.3") == 0.3
    with pytest.raises(ValueError, match="no negative"):
        choose_threshold(np.array([0.2, 0.9]), np.array([1, 1]), "fpr@0.05")
    only_negatives = choose_threshold(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 0, 0, 0]), "fpr@0.3")
    assert 0.3 < only_negatives < 0.4  # one of four negatives (0.4) may pass... but no more
    assert NEVER > 1.0


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("max_f1", ThresholdRule("max_f1")),
        ("fpr@0.05", ThresholdRule("fpr", 0.05)),
        ("fixed@.5", ThresholdRule("fixed", 0.5)),
    ],
)
def test_parse_threshold_rule(text, parsed):
    assert parse_threshold_rule(text) == parsed and parse_threshold_rule(str(parsed)) == parsed


@pytest.mark.parametrize("bad", ["youden", "fpr", "fpr@", "fpr@1.5", "fixed@2", "max_f1@0.3", "FPR@0.1"])
def test_unknown_rule_lists_the_valid_ones(bad):
    with pytest.raises(ValueError, match=r"valid rules: max_f1, fpr@X with X in \(0, 1\) \(e.g. fpr@0.05\), fixed@T"):
        parse_threshold_rule(bad)
