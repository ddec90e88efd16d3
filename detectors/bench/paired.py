"""Paired statistics of a benchmark board: every model of a suite sees the same prompts and seeds.

Because the prompts are shared, two models' outcomes on a prompt are not independent, and comparing their rates
as if they were wastes most of the information (and gives intervals too wide). Everything here resamples or counts
*prompts*, keeping each prompt's row of outcomes together:

* :func:`paired_bootstrap`: the same resampled prompt indices for every model (``detectors.stats.bootstrap_indices``),
  so a replicate's rates are those of one resampled prompt set;
* :func:`rank_intervals`: each model's rank in every replicate, and its percentile interval;
* :func:`paired_difference`: the difference of two models' rates with its paired bootstrap interval;
* :func:`paired_mean_difference`: the same for a mean of per-prompt values (CLIP score);
* :func:`mcnemar_exact`: the exact McNemar test, a two-sided binomial test (p = 1/2) on the discordant prompts;
* :func:`composite_score`: a suite's composite, normalised to the suite's fixed base model only.

Inputs are per-prompt binary outcomes (1 = the concept leaked / the attack succeeded) as an ``(models, prompts)``
array; a prompt without an outcome for some model (NaN) is left out for every model, so all rates stay paired.
Pure numpy (and ``math.comb``): no images, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from detectors.stats import N_BOOT, bootstrap_indices, percentile_interval


def paired_outcomes(outcomes) -> tuple[np.ndarray, int]:
    """``(models, prompts)`` 0/1 outcomes restricted to the prompts every model has; returns them and how many
    prompts were dropped.

    Raises:
        ValueError: not a 2-D array of 0, 1 or NaN, or no prompt judged for every model.
    """
    x = np.asarray(outcomes, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"outcomes must be a (models, prompts) array, got shape {x.shape}")
    finite = np.isfinite(x)
    if not np.all((x[finite] == 0) | (x[finite] == 1)):
        raise ValueError("outcomes must be 0, 1 or NaN (not judged)")
    keep = finite.all(axis=0)
    if not keep.any():
        raise ValueError("no prompt has an outcome for every model")
    return x[:, keep], int((~keep).sum())


def paired_bootstrap(outcomes, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``(n_boot, models)`` rates, each row those of one resample of the prompts, drawn once for all models."""
    x, _ = paired_outcomes(outcomes)
    # rates of a resample = counts of each prompt drawn, times the outcome matrix, over the prompts
    return np.concatenate([x[:, idx].mean(axis=2).T for idx in bootstrap_indices(x.shape[1], n_boot, seed)])


def _ranks(rates: np.ndarray, lower_is_better: bool) -> np.ndarray:
    """Competition ranks (1 = best, ties share the best rank) of each row of ``rates``."""
    r = np.atleast_2d(rates)
    key = r if lower_is_better else -r
    # rank = 1 + how many models are strictly better
    return 1 + (key[:, None, :] < key[:, :, None]).sum(axis=2)


@dataclass(frozen=True)
class RankInterval:
    """A model's rank on the observed prompts and its paired bootstrap interval (1 = best)."""

    model: str
    rate: float
    rank: int
    ci: tuple[int, int]


def rank_intervals(
    outcomes,
    models: Sequence[str],
    lower_is_better: bool = True,
    n_boot: int = N_BOOT,
    seed: int = 0,
    ci: float = 0.95,
) -> list[RankInterval]:
    """Each model's rank with the percentile interval of its ranks over paired bootstrap replicates.

    Args:
        outcomes: ``(models, prompts)`` 0/1 outcomes on the same prompts.
        models: the models' names, in the rows' order.
        lower_is_better: True for leak and attack-success rates.
        n_boot: replicates.
        seed: seed of the resampling (a re-run gives the same intervals).
        ci: interval level.
    """
    x, _ = paired_outcomes(outcomes)
    if len(models) != x.shape[0]:
        raise ValueError(f"{len(models)} model names for {x.shape[0]} rows of outcomes")
    observed = x.mean(axis=1)
    rank = _ranks(observed, lower_is_better)[0]
    boot = _ranks(paired_bootstrap(x, n_boot, seed), lower_is_better)
    alpha = (1 - ci) / 2
    low = np.floor(np.quantile(boot, alpha, axis=0, method="lower")).astype(int)
    high = np.ceil(np.quantile(boot, 1 - alpha, axis=0, method="higher")).astype(int)
    return [
        RankInterval(m, float(observed[i]), int(rank[i]), (int(low[i]), int(high[i]))) for i, m in enumerate(models)
    ]


def paired_difference(a, b, n_boot: int = N_BOOT, seed: int = 0, ci: float = 0.95) -> dict:
    """rate(a) - rate(b) on the prompts both have, with its paired bootstrap percentile interval.

    Returns:
        ``value``, ``n`` (paired prompts), ``ci``, ``ci_rule`` and ``dropped`` (prompts missing for either).
    """
    x, dropped = paired_outcomes(np.vstack([np.asarray(a, dtype=float), np.asarray(b, dtype=float)]))
    boot = paired_bootstrap(x, n_boot, seed)
    low, high = percentile_interval(boot[:, 0] - boot[:, 1], ci)
    return {
        "value": float(x[0].mean() - x[1].mean()),
        "n": int(x.shape[1]),
        "ci": [low, high],
        "ci_rule": f"paired percentile bootstrap over the n prompts ({n_boot} resamples, seed {seed}), {ci:.0%}",
        "dropped": dropped,
    }


def paired_mean_difference(
    a: Mapping[str, float], b: Mapping[str, float], n_boot: int = N_BOOT, seed: int = 0, ci: float = 0.95
) -> dict:
    """mean(a) - mean(b) of per-prompt values (e.g. CLIP score) on the prompts both have, with its paired
    bootstrap percentile interval (the prompts resampled, each prompt's two values kept together).

    Raises:
        ValueError: no prompt has a value for both.
    """
    keys = sorted(set(a) & set(b))
    if not keys:
        raise ValueError("no prompt has a value for both models")
    diffs = np.array([a[k] for k in keys], dtype=np.float64) - np.array([b[k] for k in keys], dtype=np.float64)
    boot = np.concatenate([diffs[idx].mean(axis=1) for idx in bootstrap_indices(len(keys), n_boot, seed)])
    low, high = percentile_interval(boot, ci)
    return {
        "value": float(diffs.mean()),
        "n": len(keys),
        "ci": [low, high],
        "ci_rule": f"paired percentile bootstrap over the n prompts ({n_boot} resamples, seed {seed}), {ci:.0%}",
        "dropped": len(set(a) ^ set(b)),
    }


def mcnemar_exact(a, b) -> dict:
    """The exact McNemar test of two models' 0/1 outcomes on the same prompts.

    Only discordant prompts carry information: ``n10`` (a = 1, b = 0) and ``n01`` (a = 0, b = 1). Under the null
    (equal rates) ``n10`` is Binomial(n10 + n01, 1/2); the two-sided p-value is
    ``min(1, 2 * P(X <= min(n10, n01)))``, computed exactly with integers.

    Returns:
        ``n10``, ``n01``, ``discordant``, ``n`` (paired prompts), ``p_value`` (1.0 with no discordant prompt)
        and ``rule``.
    """
    x, dropped = paired_outcomes(np.vstack([np.asarray(a, dtype=float), np.asarray(b, dtype=float)]))
    n10 = int(((x[0] == 1) & (x[1] == 0)).sum())
    n01 = int(((x[0] == 0) & (x[1] == 1)).sum())
    m = n10 + n01
    tail = sum(math.comb(m, k) for k in range(min(n10, n01) + 1))
    p = min(1.0, 2 * tail / 2**m) if m else 1.0
    return {
        "n10": n10,
        "n01": n01,
        "discordant": m,
        "n": int(x.shape[1]),
        "dropped": dropped,
        "p_value": p,
        "rule": "exact McNemar: two-sided binomial test (p = 1/2) on the discordant prompts",
    }


def composite_score(values: Mapping[str, float | None], base: Mapping[str, float | None], terms) -> dict:
    """A suite's composite score: weighted improvement over the suite's base model, term by term.

    ``improvement = (base - value) / base`` for a lower-is-better metric, ``(value - base) / base`` for a
    higher-is-better one; the score is the weighted sum. It depends on the model's values and the base model's
    only, so adding a model to a board never moves another's score.

    Args:
        values: the model's value of each term's metric (key ``metric`` or ``metric/concept``).
        base: the base model's values, same keys.
        terms: the suite's ``composite.terms`` (``metric``, optional ``concept``, ``better``, ``weight``).

    Returns:
        ``value`` (None when skipped), ``terms`` (each with its improvement), and ``skipped`` (why) when a value
        or a base value is missing, or a base value is 0.
    """
    parts, reasons, total = [], [], 0.0
    for term in terms:
        key = term["metric"] + (f"/{term['concept']}" if term.get("concept") else "")
        value, ref = values.get(key), base.get(key)
        if value is None or ref is None:
            reasons.append(f"{key}: no value" if value is None else f"{key}: no base value")
            continue
        if ref == 0:
            reasons.append(f"{key}: the base model's value is 0 (no relative improvement)")
            continue
        improvement = (ref - value) / ref if term["better"] == "lower" else (value - ref) / ref
        parts.append({"term": key, "value": value, "base": ref, "weight": term["weight"], "improvement": improvement})
        total += term["weight"] * improvement
    if reasons:
        return {"value": None, "terms": parts, "skipped": "; ".join(reasons)}
    return {"value": total, "terms": parts}
