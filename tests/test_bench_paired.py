"""The board's paired statistics: the bootstrap against a direct loop, McNemar against scipy and by hand, ranks of
toy models whose true leak rates are known, and a composite normalised to the base model only."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from detectors.bench.paired import (
    composite_score,
    mcnemar_exact,
    paired_bootstrap,
    paired_difference,
    paired_outcomes,
    rank_intervals,
)
from detectors.stats import percentile_interval


def outcomes_with(n10: int, n01: int, n11: int = 3, n00: int = 4) -> tuple[np.ndarray, np.ndarray]:
    a = [1] * n10 + [0] * n01 + [1] * n11 + [0] * n00
    b = [0] * n10 + [1] * n01 + [1] * n11 + [0] * n00
    return np.array(a), np.array(b)


def test_mcnemar_by_hand():
    # 1 prompt where only a leaks, 6 where only b does: 2 * (C(7,0) + C(7,1)) / 2^7 = 16 / 128
    result = mcnemar_exact(*outcomes_with(1, 6))
    assert (result["n10"], result["n01"], result["discordant"], result["n"]) == (1, 6, 7, 14)
    assert result["p_value"] == 0.125


@pytest.mark.parametrize(("n10", "n01"), [(0, 5), (2, 9), (7, 7), (12, 3), (30, 41), (0, 1)])
def test_mcnemar_equals_scipy_binomtest_on_the_discordant_prompts(n10, n01):
    result = mcnemar_exact(*outcomes_with(n10, n01))
    expected = binomtest(n10, n10 + n01, 0.5, alternative="two-sided").pvalue
    assert result["p_value"] == pytest.approx(expected, rel=1e-12)


def test_mcnemar_without_discordant_prompts_is_one():
    assert mcnemar_exact(*outcomes_with(0, 0))["p_value"] == 1.0


def test_paired_bootstrap_equals_a_direct_loop_over_resamples():
    rng = np.random.default_rng(5)
    x = (rng.random((3, 37)) < [[0.2], [0.5], [0.7]]).astype(float)
    boot = paired_bootstrap(x, n_boot=200, seed=11)
    # the direct computation: one index draw per replicate, shared by every model, rates by a Python loop
    draws = np.random.default_rng(11).integers(0, 37, size=(200, 37))
    direct = np.array([[sum(x[m, i] for i in draw) / 37 for m in range(3)] for draw in draws])
    np.testing.assert_allclose(boot, direct, rtol=0, atol=1e-12)


def test_paired_difference_equals_the_direct_computation():
    rng = np.random.default_rng(2)
    a = (rng.random(60) < 0.4).astype(float)
    b = np.where(rng.random(60) < 0.8, a, 1 - a)  # b agrees with a on most prompts: a paired design
    result = paired_difference(a, b, n_boot=500, seed=3)
    draws = np.random.default_rng(3).integers(0, 60, size=(500, 60))
    diffs = [a[d].mean() - b[d].mean() for d in draws]
    assert result["value"] == pytest.approx(a.mean() - b.mean())
    assert result["ci"] == pytest.approx(list(percentile_interval(diffs)))
    assert result["n"] == 60 and result["dropped"] == 0


def test_paired_interval_is_narrower_than_unpaired_on_correlated_outcomes():
    rng = np.random.default_rng(0)
    a = (rng.random(100) < 0.5).astype(float)
    b = a.copy()
    b[:8] = 1 - b[:8]
    paired = paired_difference(a, b, n_boot=1000, seed=0)["ci"]
    # unpaired: resample each model's prompts independently
    ia = np.random.default_rng(1).integers(0, 100, size=(1000, 100))
    ib = np.random.default_rng(2).integers(0, 100, size=(1000, 100))
    unpaired = percentile_interval(a[ia].mean(axis=1) - b[ib].mean(axis=1))
    assert paired[1] - paired[0] < 0.5 * (unpaired[1] - unpaired[0])


def test_prompts_missing_for_one_model_are_dropped_for_all():
    x = np.array([[1, 0, np.nan, 1], [0, 0, 1, 1]])
    kept, dropped = paired_outcomes(x)
    assert dropped == 1 and kept.tolist() == [[1, 0, 1], [0, 0, 1]]


@pytest.mark.parametrize("bad", [[[0, 2, 1]], [0, 1, 1], [[np.nan, np.nan]]])
def test_bad_outcomes_are_refused(bad):
    with pytest.raises(ValueError):
        paired_outcomes(bad)


TRUE_LEAK = {"best": 0.05, "good": 0.3, "fair": 0.55, "poor": 0.85}
TRUE_RATES = tuple(TRUE_LEAK.values())


def simulate(seed: int, rates=TRUE_RATES, prompts: int = 80) -> np.ndarray:
    """Per-prompt leaks of models with true leak ``rates``: prompts differ in difficulty, so outcomes correlate."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 0.1, prompts)
    p = np.clip(np.array(rates)[:, None] + difficulty[None, :], 0, 1)
    return (rng.random((len(rates), prompts)) < p).astype(float)


def test_models_rank_in_their_true_order_with_intervals_containing_the_truth():
    ranks = rank_intervals(simulate(0), list(TRUE_LEAK), n_boot=1000, seed=0)
    assert [r.rank for r in ranks] == [1, 2, 3, 4]
    for truth, r in enumerate(ranks, start=1):
        assert r.ci[0] <= truth <= r.ci[1]


def test_rank_intervals_cover_the_true_rank_when_models_are_close():
    # 10 points apart on 80 prompts: the observed order is often wrong, the intervals must still hold the truth
    covered = total = wrong_order = 0
    for seed in range(100):
        ranks = rank_intervals(simulate(seed, (0.3, 0.4, 0.5, 0.6)), list("abcd"), n_boot=300, seed=seed)
        wrong_order += [r.rank for r in ranks] != [1, 2, 3, 4]
        for truth, r in enumerate(ranks, start=1):
            covered += r.ci[0] <= truth <= r.ci[1]
            total += 1
    assert wrong_order > 20  # the case is hard enough to need intervals
    assert covered / total >= 0.95


def test_close_models_get_overlapping_rank_intervals():
    rng = np.random.default_rng(4)
    x = (rng.random((2, 50)) < [[0.40], [0.42]]).astype(float)
    a, b = rank_intervals(x, ["a", "b"], n_boot=1000, seed=0)
    assert a.ci == (1, 2) and b.ci == (1, 2)


def test_toy_suite_ranks_toy_unlearned_models_in_their_true_leak_order():
    """The toy suite's nudity prompts rendered by toy models whose leak rates are known, judged by the toy truth."""
    from dataigm.prompts import read_prompts
    from dataigm.suite import load_suite
    from generation.toy import ToyPipeline, ToyUnlearning

    suite = load_suite("toy@1")
    records = [r for r in read_prompts(suite.bundled_path(suite.prompt_set("forget"))) if r.concept == "nudity"]
    leaks = {"strong": 0.0, "medium": 0.35, "weak": 0.7, "none": 1.0}
    outcomes = np.array(
        [
            [
                ToyPipeline(unlearning=ToyUnlearning("nudity", leak)).render(r.text, r.seed)[1]["nudity"]
                for r in records
            ]
            for leak in leaks.values()
        ],
        dtype=float,
    )
    ranks = rank_intervals(outcomes, list(leaks), n_boot=1000, seed=0)
    assert [r.rank for r in ranks] == [1, 2, 3, 4]
    assert all(r.ci[0] <= truth <= r.ci[1] for truth, r in enumerate(ranks, start=1))
    assert ranks[0].rate == 0.0 and ranks[-1].rate == 1.0


TERMS = [
    {"metric": "post_asr", "better": "lower", "weight": 0.5},
    {"metric": "clip_score", "better": "higher", "weight": 0.5},
]


def test_composite_is_normalised_to_the_base_model_only():
    base = {"post_asr": 0.8, "clip_score": 30.0}
    model = {"post_asr": 0.2, "clip_score": 27.0}
    result = composite_score(model, base, TERMS)
    assert result["value"] == pytest.approx(0.5 * (0.8 - 0.2) / 0.8 + 0.5 * (27.0 - 30.0) / 30.0)
    assert composite_score(base, base, TERMS)["value"] == 0.0
    assert [t["improvement"] for t in result["terms"]] == pytest.approx([0.75, -0.1])


def test_composite_is_skipped_with_its_reason():
    result = composite_score({"post_asr": 0.1}, {"post_asr": 0.0, "clip_score": 30.0}, TERMS)
    assert result["value"] is None
    assert "post_asr: the base model's value is 0" in result["skipped"] and "clip_score: no value" in result["skipped"]
