"""Numbers with their uncertainty: every value in a report carries its n and a 95% interval."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054


def proportion(successes: int, n: int) -> dict:
    """A share with its Wilson score interval (sound at 0 and 1, unlike the normal approximation)."""
    if n == 0:
        return {"value": None, "n": 0, "ci": [None, None]}
    p = successes / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends: float error must not exclude 0 or 1
    high = 1.0 if successes == n else min(1.0, centre + half)
    return {"value": p, "n": n, "ci": [low, high]}


def mean_with_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0) -> dict:
    """A mean with a percentile bootstrap interval (fixed seed: a re-run gives the same report)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return {"value": None, "n": 0, "ci": [None, None]}
    if x.size == 1:
        return {"value": float(x[0]), "n": 1, "ci": [float(x[0]), float(x[0])]}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"value": float(x.mean()), "n": int(x.size), "ci": [float(low), float(high)]}


def single(value: float, n: int) -> dict:
    """A value computed from a whole set (FID), reported with its n and no interval."""
    return {"value": float(value), "n": int(n), "ci": [None, None]}
