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


# ---------------------------------------------------------------- Cohen's kappa of two 0/1 raters

KAPPA_MIN_N = 50  # below these an interval is refused: no method we simulated covers there (docs/intervals.md)
KAPPA_MIN_CLASS = 10
KAPPA_RULE = (
    "BCa bootstrap over images ({n_boot} resamples, seed {seed}) joined with the Wilson interval of the "
    "disagreement rate mapped to kappa = 1 - disagreement / (1 - expected agreement), {ci:.0%}; given when "
    f"n >= {KAPPA_MIN_N} and each rater gives each class to at least {KAPPA_MIN_CLASS} images"
)


def kappa_tables(a, b) -> np.ndarray:
    """The 2 x 2 table of two 0/1 raters as counts ``[both 1, a only, b only, both 0]``."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    return np.array([(a & b).sum(), (a & ~b).sum(), (~a & b).sum(), (~a & ~b).sum()], dtype=np.int64)


def _kappa_parts(tables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kappa, disagreement rate, expected agreement) of count tables (..., 4); kappa NaN where undefined."""
    t = np.asarray(tables, dtype=np.float64)
    n = t.sum(-1)
    both, a_only, b_only = t[..., 0], t[..., 1], t[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        pa, pb = (both + a_only) / n, (both + b_only) / n
        expected = pa * pb + (1 - pa) * (1 - pb)
        disagree = (a_only + b_only) / n
        kappa = np.where(np.isclose(expected, 1.0), np.nan, 1 - disagree / (1 - expected))
    return kappa, disagree, expected


def kappa_of_tables(tables) -> np.ndarray:
    """Cohen's kappa of each count table (..., 4) ``[both 1, a only, b only, both 0]``; NaN where undefined
    (expected agreement 1: both raters gave one and the same class to every image)."""
    return _kappa_parts(tables)[0]


def kappa_refusal(tables) -> np.ndarray:
    """Why no interval is given for each table (..., 4) (empty string: one is given)."""
    t = np.asarray(tables, dtype=np.int64)
    n = t.sum(-1)
    pos_a, pos_b = t[..., 0] + t[..., 1], t[..., 0] + t[..., 2]
    fewest = np.minimum(np.minimum(pos_a, n - pos_a), np.minimum(pos_b, n - pos_b))
    out = np.full(n.shape, "", dtype=object)
    out[fewest < KAPPA_MIN_CLASS] = (
        f"skipped: too few images of a class (a rater gives one class to fewer than {KAPPA_MIN_CLASS} images)"
    )
    out[n < KAPPA_MIN_N] = f"skipped: too few images (n < {KAPPA_MIN_N})"
    return out


def kappa_intervals(
    tables, n_boot: int = N_BOOT, ci: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Intervals of Cohen's kappa for count tables (S, 4), vectorised (the coverage simulation calls it with
    thousands of tables at once).

    The interval is the union of two:

    * the BCa bootstrap (Efron 1987): a resample of the images is a multinomial draw of the table's four
      cells; bias correction from the share of resamples below the estimate (ties count half), acceleration
      from the jackknife (deleting one image of each cell). Resamples where kappa is undefined are left out
      and counted. It covers at moderate kappa; at high kappa the few disagreements make the bootstrap
      distribution discrete and it under-covers;
    * the Wilson interval of the disagreement rate d mapped through kappa = 1 - d / (1 - p_e) with the
      expected agreement p_e at its estimate: it covers at high kappa (and gives a lower bound below 1 when
      the raters never disagree), not always at low kappa, where p_e's own variance matters.

    Coverage of the union, and refusal rules (:func:`kappa_refusal`), are measured in docs/intervals.md.

    Returns:
        ``(low, high, undefined, refused)``: bounds (NaN where refused), undefined resamples per table, and
        the refusal reason per table (empty where an interval is given).
    """
    t = np.asarray(tables, dtype=np.int64).reshape(-1, 4)
    s = len(t)
    n = t.sum(-1)
    kappa, disagree, expected = _kappa_parts(t)
    refused = kappa_refusal(t)
    low, high = np.full(s, np.nan), np.full(s, np.nan)
    undefined = np.zeros(s, dtype=np.int64)
    go = np.flatnonzero(refused == "")
    if not go.size or n_boot <= 0:
        return low, high, undefined, refused
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    tg, kg, ng = t[go], kappa[go], n[go]
    boot = kappa_of_tables(rng.multinomial(ng, tg / ng[:, None], size=(n_boot, go.size)))  # (B, S)
    finite = np.isfinite(boot)
    undefined[go] = (~finite).sum(0)
    defined = np.maximum(finite.sum(0), 1)
    below = ((boot < kg) & finite).sum(0) + 0.5 * ((boot == kg) & finite).sum(0)
    z0 = norm.ppf(np.clip(below / defined, 1 / (2 * defined), 1 - 1 / (2 * defined)))
    # jackknife: deleting one image of cell j gives the same kappa for every image of that cell
    deleted = kappa_of_tables(tg[:, None, :] - np.eye(4, dtype=np.int64)[None])  # (S, 4)
    w = tg.astype(np.float64)
    deleted = np.where(w > 0, deleted, 0.0)
    mean = (w * deleted).sum(1) / w.sum(1)
    dev = np.where(w > 0, mean[:, None] - deleted, 0.0)
    spread = (w * dev**2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accel = np.nan_to_num(np.where(spread > 0, (w * dev**3).sum(1) / (6 * spread**1.5), 0.0))
    z = norm.ppf([(1 - ci) / 2, (1 + ci) / 2])[:, None]
    levels = norm.cdf(z0 + (z0 + z) / (1 - accel * (z0 + z)))  # (2, S)
    ordered = np.sort(np.where(finite, boot, np.inf), axis=0)  # undefined resamples sort last, never reached
    rank = np.clip(np.round(levels * defined - 0.5).astype(np.int64), 0, defined - 1)
    boot_low, boot_high = ordered[rank[0], np.arange(go.size)], ordered[rank[1], np.arange(go.size)]
    d_low, d_high = _wilson_vector(disagree[go] * ng, ng, ci)
    with np.errstate(invalid="ignore", divide="ignore"):
        low[go] = np.maximum(-1.0, np.minimum(boot_low, 1 - d_high / (1 - expected[go])))
        high[go] = np.minimum(1.0, np.maximum(boot_high, 1 - d_low / (1 - expected[go])))
    return low, high, undefined, refused


def _wilson_vector(successes, n, ci: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score bounds of arrays of counts (exact ends at 0 and n), the closed form of :func:`wilson_interval`."""
    from scipy.stats import norm

    return _wilson_z(successes, n, float(norm.ppf((1 + ci) / 2)))


def _wilson_z(successes, n, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score bounds with quantile ``z`` (counts may be fractional: an effective number of items)."""
    k, n = np.asarray(successes, dtype=np.float64), np.asarray(n, dtype=np.float64)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.where(k <= 0, 0.0, np.maximum(0.0, centre - half)), np.where(k >= n, 1.0, np.minimum(1.0, centre + half))


def kappa_with_ci(a, b, n_boot: int = N_BOOT, ci: float = 0.95, seed: int = 0) -> dict:
    """Cohen's kappa of two 0/1 raters over the same items with its interval (:func:`kappa_intervals`).

    Returns:
        ``value`` (None where undefined), ``ci`` ([None, None] where refused, with ``ci_skipped`` saying why),
        ``ci_rule`` and ``undefined_resamples`` (resamples where kappa was undefined, left out of the bootstrap).
    """
    table = kappa_tables(a, b)
    value = float(kappa_of_tables(table))
    rule = KAPPA_RULE.format(n_boot=n_boot, seed=seed, ci=ci)
    out = {"value": None if np.isnan(value) else value, "ci": [None, None], "ci_rule": rule}
    if out["value"] is None:
        return out
    if n_boot <= 0:
        return out | {"ci_skipped": "skipped: no bootstrap resamples asked for"}
    low, high, undefined, refused = kappa_intervals(table[None], n_boot, ci, seed)
    if refused[0]:
        return out | {"ci_skipped": str(refused[0])}
    return out | {"ci": [float(low[0]), float(high[0])], "undefined_resamples": int(undefined[0])}


# ---------------------------------------------------------------- shares over prompts with several images each

CLUSTERED_RULE = (
    "Wilson score interval over prompts, {ci:.0%}: images of one prompt are not independent, so the Wilson "
    "interval takes the effective n = images / design effect (the ratio estimator's variance over the k prompts "
    "divided by the binomial variance, kept within [1, images / k]; images / k when every image agrees) and the "
    "t quantile with k - 1 degrees of freedom; plain Wilson over images when every prompt has one image"
)
CLUSTERED_ESTIMAND = (
    "the share over the population of prompts this prompt set is a sample of: the chance that an image of a "
    "prompt drawn from it, rendered with a random seed, is counted (the mean of the per-prompt rates when every "
    "prompt has the same number of images)"
)


def clustered_proportion(hits, clusters, excluded: dict[str, int] | None = None, ci: float = 0.95) -> dict:
    """A share of items that come in clusters (images of one prompt), with an interval over clusters.

    The estimate is hits / items (the ratio estimator). Its variance over the k clusters is
    ``k / (k - 1) * sum_i (y_i - p m_i)^2 / M^2`` (y_i hits and m_i items of cluster i, M items in all); the
    design effect is that variance over the binomial one ``p (1 - p) / M``, kept within [1, M / k], and the
    Wilson interval is taken at the effective n = M / design effect with the t quantile of k - 1 degrees of
    freedom (the variance is estimated from k clusters). When every cluster has one item this is the Wilson
    interval over items (:func:`wilson_interval`). Coverage is measured in docs/intervals.md.

    Args:
        hits: 0/1 per judged item.
        clusters: the cluster (prompt) of each item; any hashable values.
        excluded: items left out of n and why, reported as given.
        ci: confidence level.

    Returns:
        ``value``, ``n`` (items), ``prompts`` (clusters), ``design_effect``, ``n_effective``, ``ci``,
        ``ci_rule``, ``estimand`` (and ``excluded`` when given).
    """
    hits = np.asarray(hits, dtype=np.float64)
    _, cluster = np.unique(np.asarray([str(c) for c in clusters], dtype=object), return_inverse=True)
    extra = {"ci_rule": CLUSTERED_RULE.format(ci=ci), "estimand": CLUSTERED_ESTIMAND}
    extra |= {} if excluded is None else {"excluded": dict(excluded)}
    total = int(hits.size)
    if total == 0:
        return {"value": None, "n": 0, "prompts": 0, "ci": [None, None]} | extra
    k = int(cluster.max()) + 1
    y, m = np.bincount(cluster, hits, k), np.bincount(cluster, minlength=k).astype(np.float64)
    p = float(hits.sum() / total)
    out = {"value": p, "n": total, "prompts": k}
    if k == total:  # one item per cluster: independent items
        low, high = wilson_interval(int(hits.sum()), total, ci)
        return out | {"design_effect": 1.0, "n_effective": float(total), "ci": [low, high]} | extra
    if k < 2:
        return out | {"ci": [None, None], "ci_skipped": "skipped: one prompt gives no variance over prompts"} | extra
    from scipy.stats import t

    most = total / k
    if 0.0 < p < 1.0:
        variance = k / (k - 1) * float(((y - p * m) ** 2).sum()) / total**2
        deff = float(np.clip(variance / (p * (1 - p) / total), 1.0, most))
    else:  # no variance to estimate: assume the worst, every image of a prompt says the same
        deff = most
    n_eff = total / deff
    low, high = _wilson_z(p * n_eff, n_eff, float(t.ppf((1 + ci) / 2, k - 1)))  # t quantile instead of z
    ci_out = [float(low), float(high)]
    return out | {"design_effect": deff, "n_effective": n_eff, "ci": ci_out} | extra
