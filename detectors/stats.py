"""Numbers with their uncertainty, the one place for intervals: every value in a report carries its n,
a 95% interval and the rule that made the interval (``ci_rule``), so a reader of ``report.json`` needs no
other document.

* shares: the Wilson score interval (scipy's ``binomtest(k, n).proportion_ci(method="wilson")``);
* means of independent values and a judge's metrics: the percentile bootstrap (resamples drawn by
  :func:`bootstrap_indices`, interval by :func:`percentile_interval`, fixed seeds);
* means over all pairs of two image sets: the two-sample (pairs) bootstrap of :func:`pairs_mean_with_ci`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

Z95 = 1.959963984540054
N_BOOT = 1000

WILSON_RULE = "Wilson score interval, 95%"


def proportion(successes: int, n: int, excluded: dict[str, int] | None = None) -> dict:
    """A share with its Wilson score interval (sound at 0 and 1, unlike the normal approximation).

    Args:
        successes: how many of the ``n`` items count.
        n: the items the share is over (judged items only: excluded ones are not in it).
        excluded: items left out of ``n`` and why, e.g. ``{"nan_judgement": 2}``; reported as given.
    """
    extra = {"ci_rule": WILSON_RULE} | ({} if excluded is None else {"excluded": dict(excluded)})
    if n == 0:
        return {"value": None, "n": 0, "ci": [None, None]} | extra
    low, high = wilson_interval(successes, n)
    return {"value": successes / n, "n": n, "ci": [low, high]} | extra


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` out of ``n`` (scipy's), with exact ends at 0 and n.

    Raises:
        ValueError: ``n`` < 1 or ``successes`` outside 0..n (scipy's message).
    """
    from scipy.stats import binomtest

    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    low = 0.0 if successes == 0 else max(0.0, float(ci.low))  # exact ends: float error must not exclude 0 or 1
    high = 1.0 if successes == n else min(1.0, float(ci.high))
    return low, high


def bootstrap_indices(n: int, n_boot: int, seed: int = 0, max_cells: int | None = None) -> Iterator[np.ndarray]:
    """Resamples of ``n`` items with replacement: ``(rows, n)`` index blocks, ``n_boot`` rows in all.

    Args:
        n: items per resample.
        n_boot: resamples.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same resamples.
        max_cells: draw at most this many indices per block (memory bound); None: one block.
    """
    rng = np.random.default_rng(seed)
    rows = n_boot if max_cells is None else max(1, max_cells // max(n, 1))
    for start in range(0, n_boot, rows):
        yield rng.integers(0, n, size=(min(rows, n_boot - start), n))


def percentile_interval(replicates, ci: float = 0.95) -> tuple[float | None, float | None]:
    """The ``(1 - ci) / 2`` and ``(1 + ci) / 2`` quantiles of the finite ``replicates`` ((None, None) if none)."""
    v = np.asarray(replicates, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return None, None
    alpha = (1.0 - ci) / 2
    return float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))


def mean_with_ci(values: Sequence[float], n_boot: int = N_BOOT, seed: int = 0, unit: str = "values") -> dict:
    """A mean with a percentile bootstrap interval over independent ``values`` (fixed seed: a re-run gives
    the same report). ``unit`` names what one value is (e.g. ``"pairs"``) in the stated rule."""
    x = np.asarray(values, dtype=np.float64)
    rule = f"percentile bootstrap over the n {unit} ({n_boot} resamples, seed {seed}), 95%"
    if x.size == 0:
        return {"value": None, "n": 0, "ci": [None, None], "ci_rule": rule}
    if x.size == 1:
        return {"value": float(x[0]), "n": 1, "ci": [float(x[0]), float(x[0])], "ci_rule": rule}
    means = np.concatenate([x[idx].mean(axis=1) for idx in bootstrap_indices(x.size, n_boot, seed)])
    low, high = percentile_interval(means)
    return {"value": float(x.mean()), "n": int(x.size), "ci": [low, high], "ci_rule": rule}


def pairs_mean_with_ci(matrix, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """The mean over all (left, right) pairs of a pair matrix, with a two-sample bootstrap over images.

    The N x M pairs share their images, so they are not independent: resampling pairs gives intervals
    far too narrow. Each replicate resamples the N left images and the M right images independently
    (with replacement) and recomputes the mean over every pair among the resampled sets; a pair that
    does not exist (another prompt family) or has no value is NaN in ``matrix`` and is not counted.
    The interval is the 2.5 and 97.5 percentiles of the replicates (fixed seed).

    Args:
        matrix: (N, M) values of pair (left i, right j); NaN where the pair does not exist.
        n_boot: replicates.
        seed: seed of the resampling.

    Returns:
        ``value``, ``n`` (pairs with a value), ``n_left``/``n_right`` (images with at least one pair),
        ``ci``, ``ci_rule``, and ``undefined_replicates`` when some replicates drew no existing pair
        (they are left out of the percentiles).
    """
    m = np.asarray(matrix, dtype=np.float64)
    defined = ~np.isnan(m)
    m, defined = m[defined.any(axis=1)][:, defined.any(axis=0)], defined[defined.any(axis=1)][:, defined.any(axis=0)]
    n_left, n_right = m.shape
    rule = (
        f"two-sample percentile bootstrap: left and right images resampled independently ({n_boot} resamples, "
        f"seed {seed}), mean over all existing pairs among the resampled images, 95%"
    )
    out = {"value": None, "n": int(defined.sum()), "n_left": n_left, "n_right": n_right, "ci": [None, None]}
    if not defined.any():
        return out | {"ci_rule": rule}
    value = float(m[defined].mean())
    out["value"] = value
    if n_left == 1 and n_right == 1:
        return out | {"ci": [value, value], "ci_rule": rule}
    # A replicate's image multiplicities c (left) and d (right) weigh pair (i, j) by c_i * d_j, so the
    # replicate mean is c.T @ V @ d / c.T @ W @ d with V the values (0 where none) and W the defined mask.
    rng = np.random.default_rng(seed)
    left = rng.multinomial(n_left, np.full(n_left, 1 / n_left), size=n_boot).astype(np.float64)
    right = rng.multinomial(n_right, np.full(n_right, 1 / n_right), size=n_boot).astype(np.float64)
    values, weights = np.where(defined, m, 0.0), defined.astype(np.float64)
    total = ((left @ values) * right).sum(axis=1)
    count = ((left @ weights) * right).sum(axis=1)
    ok = count > 0
    low, high = percentile_interval(total[ok] / count[ok])
    out |= {"ci": [low, high], "ci_rule": rule}
    if not ok.all():
        out["undefined_replicates"] = int((~ok).sum())
    return out
