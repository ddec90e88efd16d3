"""Calibration on validation data: a temperature per concept, then a threshold chosen by a named rule.

Probabilities are ``sigmoid(logit / T)``; a concept is called present when its probability is ``>=``
its threshold. Rules: ``max_f1`` (the threshold with the best F1), ``fpr@X`` (the lowest threshold
whose false-positive rate is at most X, e.g. ``fpr@0.05``) and ``fixed@T`` (e.g. ``fixed@0.5``).
The data-driven rules put the threshold halfway between the chosen validation score and the next
lower one, so validation decisions are those of the rule and new images get a margin.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

_RULE_HELP = "max_f1, fpr@X with X in (0, 1) (e.g. fpr@0.05), fixed@T with T in [0, 1] (e.g. fixed@0.5)"
_RULE_RE = re.compile(r"^(?:(max_f1)|(fpr|fixed)@(\d+(?:\.\d*)?|\.\d+))$")
_T_BOUNDS = (0.02, 50.0)  # temperature search range
NEVER = math.nextafter(1.0, 2.0)  # a threshold no probability reaches


@dataclass(frozen=True)
class ThresholdRule:
    """A parsed threshold rule: ``name`` is ``max_f1``, ``fpr`` or ``fixed``; ``value`` its parameter."""

    name: str
    value: float | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}@{self.value:g}"


def parse_threshold_rule(rule: str) -> ThresholdRule:
    """Parse ``max_f1``, ``fpr@X`` or ``fixed@T``; anything else raises with the valid rules."""
    match = _RULE_RE.match(str(rule).strip())
    if not match:
        raise ValueError(f"Unknown threshold rule {rule!r}; valid rules: {_RULE_HELP}")
    if match.group(1):
        return ThresholdRule("max_f1")
    name, value = match.group(2), float(match.group(3))
    if name == "fpr" and not 0.0 < value < 1.0:
        raise ValueError(f"Threshold rule {rule!r}: X must be in (0, 1); valid rules: {_RULE_HELP}")
    if name == "fixed" and not 0.0 <= value <= 1.0:
        raise ValueError(f"Threshold rule {rule!r}: T must be in [0, 1]; valid rules: {_RULE_HELP}")
    return ThresholdRule(name, value)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def binary_nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of ``sigmoid(logits / temperature)`` against 0/1 ``targets``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(targets, dtype=np.float64)
    # log(1 + exp(-|z|)) + max(z, 0) - y z, stable for large |z|
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature T minimising the NLL of ``sigmoid(logits / T)`` (a bounded 1-D search on log T)."""
    from scipy.optimize import minimize_scalar

    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    if logits.size == 0:
        logger.warning("no validation samples to fit a temperature; using T = 1")
        return 1.0
    result = minimize_scalar(
        lambda log_t: binary_nll(logits, targets, math.exp(log_t)),
        bounds=tuple(math.log(b) for b in _T_BOUNDS),
        method="bounded",
        options={"xatol": 1e-5},
    )
    temperature = math.exp(result.x)
    # keep T = 1 when the search does not beat it (flat NLL, e.g. all logits zero)
    return temperature if binary_nll(logits, targets, temperature) < binary_nll(logits, targets) else 1.0


def choose_threshold(probs: np.ndarray, targets: np.ndarray, rule: str | ThresholdRule) -> float:
    """The decision threshold for one concept (present when ``prob >= threshold``) by ``rule``."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    rule = rule if isinstance(rule, ThresholdRule) else parse_threshold_rule(rule)
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets).astype(int)
    if rule.name == "fixed":
        return float(rule.value)
    n_pos, n_neg = int(targets.sum()), int((1 - targets).sum())
    if rule.name == "max_f1":
        if n_pos == 0:
            logger.warning("no positive validation sample: rule %s falls back to 0.5", rule)
            return 0.5
        precision, recall, thresholds = precision_recall_curve(targets, probs)
        precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        return _below_gap(probs, float(thresholds[int(np.argmax(f1))]))
    # fpr@X
    if n_neg == 0:
        raise ValueError(f"Threshold rule {rule}: the validation data has no negative (pair) sample")
    if n_pos == 0:
        negatives = np.sort(probs)[::-1]
        allowed = int(math.floor(rule.value * n_neg))
        return float(math.nextafter(negatives[allowed], 2.0)) if allowed < n_neg else float(negatives[-1])
    fpr, _, thresholds = roc_curve(targets, probs, drop_intermediate=False)
    index = int(np.nonzero(fpr <= rule.value + 1e-12)[0][-1])
    threshold = float(thresholds[index])
    return NEVER if not math.isfinite(threshold) or threshold > 1.0 else _below_gap(probs, threshold)


def _below_gap(probs: np.ndarray, threshold: float) -> float:
    """The midpoint between ``threshold`` (a validation score) and the next lower score.

    Every validation decision stays the same, but new images just below the lowest accepted score
    (e.g. a saturated 0.99999 when validation scores were exactly 1.0) are not rejected by a hair.
    """
    lower = probs[probs < threshold]
    return (float(lower.max()) + threshold) / 2 if lower.size else threshold


@dataclass
class Calibration:
    """Per-concept temperatures and thresholds, and the rule that chose the thresholds."""

    concepts: list[str]
    temperatures: dict[str, float]
    thresholds: dict[str, float]
    rule: str

    def to_dict(self) -> dict:
        return {"temperatures": self.temperatures, "thresholds": self.thresholds, "threshold_rule": self.rule}


def fit_calibration(
    logits: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray,
    concepts: Sequence[str],
    rule: str = "max_f1",
    fit_temperatures: bool = True,
) -> Calibration:
    """Fit each concept's temperature on its labelled validation samples, then its threshold by ``rule``.

    Args:
        logits, targets, mask: arrays of shape (N, C); ``mask`` is 1 where a sample is labelled for a concept.
        concepts: the C concept ids.
        rule: a threshold rule (see :func:`parse_threshold_rule`).
        fit_temperatures: with False every temperature is 1.
    """
    parsed = parse_threshold_rule(rule)
    logits, targets, mask = (np.asarray(a, dtype=np.float64) for a in (logits, targets, mask))
    temperatures, thresholds = {}, {}
    for col, concept in enumerate(concepts):
        rows = mask[:, col] > 0
        z, y = logits[rows, col], targets[rows, col]
        temperature = fit_temperature(z, y) if fit_temperatures else 1.0
        temperatures[concept] = temperature
        thresholds[concept] = choose_threshold(sigmoid(z / temperature), y, parsed) if rows.any() else 0.5
        logger.info(
            "calibrated %s: T = %.4g, threshold = %.4g (%s)", concept, temperature, thresholds[concept], parsed
        )
    return Calibration(list(concepts), temperatures, thresholds, str(parsed))
