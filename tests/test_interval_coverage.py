"""Intervals that cover what they claim, measured by simulation: each test draws many datasets from a known
population (fixed seeds, vectorised numpy), computes the interval of each with the library's own code, and
asserts the share that contains the true value. Nominal 95%; accepted at >= 0.93 in the stated regime (with
1,500 datasets a coverage estimate near 0.95 has a standard error of about 0.6 points)."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.stats import KAPPA_MIN_CLASS, KAPPA_MIN_N, kappa_intervals, kappa_of_tables, kappa_with_ci

NOMINAL_FLOOR = 0.93


# ---------------------------------------------------------------- Cohen's kappa


def kappa_cells(prevalence: float, kappa: float) -> np.ndarray:
    """Cell probabilities ``[both 1, a only, b only, both 0]`` of two raters who each say 1 with ``prevalence``
    and agree with Cohen's kappa ``kappa`` (a 2 x 2 table with equal margins)."""
    p, q = prevalence, 1 - prevalence
    off = p * q * (1 - kappa)
    return np.array([p * p + kappa * p * q, off, off, q * q + kappa * p * q])


def percentile_kappa(tables: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The previous interval: 2.5 and 97.5 percentiles of the defined bootstrap kappas (undefined dropped)."""
    rng = np.random.default_rng(seed)
    n = tables.sum(1)
    boot = kappa_of_tables(rng.multinomial(n, tables / n[:, None], size=(n_boot, len(tables))))
    with np.errstate(all="ignore"):
        return np.nanquantile(boot, 0.025, axis=0), np.nanquantile(boot, 0.975, axis=0)


def kappa_coverage(n: int, prevalence: float, kappa: float, datasets: int, seed: int, n_boot: int = 1000):
    """(coverage of ours among the datasets given an interval, share given one, coverage of the percentile
    bootstrap among datasets where kappa is defined)."""
    rng = np.random.default_rng(seed)
    tables = rng.multinomial(n, kappa_cells(prevalence, kappa), size=datasets)
    low, high, _, refused = kappa_intervals(tables, n_boot=n_boot, seed=seed + 1)
    given = refused == ""
    ours = float(((low <= kappa) & (kappa <= high))[given].mean()) if given.any() else float("nan")
    plow, phigh = percentile_kappa(tables, n_boot, seed + 2)
    defined = np.isfinite(kappa_of_tables(tables))
    old = float(((plow <= kappa) & (kappa <= phigh))[defined].mean())
    return ours, float(given.mean()), old


@pytest.mark.parametrize(
    ("n", "prevalence", "kappa"),
    [(50, 0.5, 0.2), (50, 0.5, 0.9), (100, 0.2, 0.95), (200, 0.1, 0.2), (200, 0.1, 0.9)],
)
def test_kappa_interval_covers_where_it_is_given(n, prevalence, kappa):
    """1,500 simulated tables per regime, 1,000 resamples each; the regime's datasets mostly get an interval."""
    ours, given, _ = kappa_coverage(n, prevalence, kappa, datasets=1500, seed=n + int(100 * kappa))
    assert given > 0.8
    assert ours >= NOMINAL_FLOOR


def test_the_percentile_bootstrap_under_covers_where_ours_covers():
    """The previous interval at high kappa and rare positives (n = 200, prevalence 0.1, kappa 0.95)."""
    ours, given, old = kappa_coverage(200, 0.1, 0.95, datasets=1500, seed=7)
    assert old < 0.88 and ours >= NOMINAL_FLOOR and given > 0.8


@pytest.mark.parametrize(("n", "prevalence"), [(20, 0.5), (49, 0.5), (200, 0.04)])
def test_kappa_interval_is_refused_below_the_stated_limits(n, prevalence):
    rng = np.random.default_rng(n)
    tables = rng.multinomial(n, kappa_cells(prevalence, 0.6), size=300)
    low, high, _, refused = kappa_intervals(tables, n_boot=100)
    pos = np.minimum(tables[:, 0] + tables[:, 1], tables[:, 0] + tables[:, 2])
    neg = n - np.maximum(tables[:, 0] + tables[:, 1], tables[:, 0] + tables[:, 2])
    too_few = (n < KAPPA_MIN_N) | (np.minimum(pos, neg) < KAPPA_MIN_CLASS)
    assert too_few.mean() > 0.5
    assert np.array_equal(refused != "", too_few)
    assert np.isnan(low[too_few]).all() and np.isnan(high[too_few]).all()
    assert all(r.startswith("skipped: too few") for r in refused[too_few])


def test_a_single_positive_gives_no_interval_and_says_why():
    a = np.zeros(60, dtype=int)
    a[0] = 1
    result = kappa_with_ci(a, a.copy())
    assert result["value"] == pytest.approx(1.0)
    assert result["ci"] == [None, None] and result["ci_skipped"].startswith("skipped: too few images of a class")


def test_no_disagreement_still_gives_a_lower_bound_below_one():
    a = np.r_[np.ones(30, dtype=int), np.zeros(70, dtype=int)]
    result = kappa_with_ci(a, a.copy())
    assert result["value"] == pytest.approx(1.0)
    low, high = result["ci"]
    assert 0.8 < low < 1.0 and high == 1.0 and result["undefined_resamples"] == 0


# ---------------------------------------------------------------- shares over prompts with several images each


def clustered_datasets(prompts: int, images: int, rate: float, icc: float, datasets: int, seed: int):
    """Hits per prompt (datasets, prompts): each prompt's own rate drawn from a beta with mean ``rate`` and
    intra-prompt correlation ``icc`` (a + b = 1 / icc - 1), then ``images`` images per prompt."""
    rng = np.random.default_rng(seed)
    total = 1 / icc - 1
    per_prompt = rng.beta(rate * total, (1 - rate) * total, size=(datasets, prompts))
    return rng.binomial(images, per_prompt)


def clustered_coverage(prompts: int, images: int, rate: float, icc: float, datasets: int, seed: int):
    """(coverage of :func:`clustered_proportion`, coverage of Wilson over images) of the population rate."""
    from detectors.stats import _wilson_vector, clustered_proportion

    y = clustered_datasets(prompts, images, rate, icc, datasets, seed)
    cluster = np.repeat(np.arange(prompts), images)
    hits = (np.arange(images)[None, None, :] < y[..., None]).reshape(datasets, -1)  # y_i hits among m_i images
    ours = np.array([clustered_proportion(h, cluster)["ci"] for h in hits])
    low, high = _wilson_vector(y.sum(1), np.full(datasets, prompts * images))
    covered = (ours[:, 0] <= rate) & (rate <= ours[:, 1])
    return float(covered.mean()), float(((low <= rate) & (rate <= high)).mean())


@pytest.mark.parametrize(
    ("prompts", "images", "rate", "icc"),
    [(20, 10, 0.5, 0.3), (20, 3, 0.2, 0.6), (50, 10, 0.2, 0.6), (50, 3, 0.8, 0.3), (20, 10, 0.3, 0.1)],
)
def test_share_over_prompts_covers_the_population_rate(prompts, images, rate, icc):
    """1,500 simulated prompt sets per regime; Wilson over images under-covers in each."""
    ours, images_only = clustered_coverage(prompts, images, rate, icc, datasets=1500, seed=prompts + images)
    assert ours >= NOMINAL_FLOOR
    assert images_only < 0.93


# ---------------------------------------------------------------- FID at a set size


def fid_populations(d: int):
    """Two Gaussian feature populations: N(0, I) and N(m, diag(s)) with spread means and scales."""
    return np.linspace(-0.5, 0.5, d), np.sqrt(np.linspace(0.5, 2.0, d))


def fid_draws(d: int, n: int, sets: int, seed: int):
    rng = np.random.default_rng(seed)
    shift, scale = fid_populations(d)
    return rng.normal(size=(sets, n, d)), rng.normal(size=(sets, n, d)) * scale + shift


def fid_coverage(d: int, n: int, truth_sets: int, datasets: int, seed: int, boot_sets: int = 100):
    """(coverage of the FID interval of the mean FID at size n, its mean standard error over the true sd, the
    mean bootstrap standard error over the true sd, the coverage of the previous interval, value ± 1.96 bootstrap
    standard errors clipped at 0, over ``boot_sets`` datasets). The truth: FIDs of ``truth_sets`` independent set
    pairs."""
    import torch

    from detectors.evaluation.quality import fid_from_features, fid_replicates, frechet_distance

    truth = np.array([frechet_distance(a, b) for a, b in zip(*fid_draws(d, n, truth_sets, seed), strict=True)])
    mean, sd = truth.mean(), truth.std(ddof=1)
    rows = [fid_from_features(a, b) for a, b in zip(*fid_draws(d, n, datasets, seed + 1), strict=True)]
    low, high = np.array([r["ci"] for r in rows]).T
    se = np.array([r["se"] for r in rows])
    rng = np.random.default_rng(seed + 2)
    boot_se, boot_covered = [], []
    for a, b in zip(*fid_draws(d, n, boot_sets, seed + 3), strict=True):
        w = rng.multinomial(n, np.full(n, 1 / n), size=(2, 200))
        boot_se.append(fid_replicates(torch.as_tensor(a), torch.as_tensor(b), w[0], w[1]).numpy().std(ddof=1))
        value = frechet_distance(a, b)
        boot_covered.append(
            max(0.0, value - 1.959963984540054 * boot_se[-1]) <= mean <= value + 1.959963984540054 * boot_se[-1]
        )
    coverage = float(((low <= mean) & (mean <= high)).mean())
    return coverage, float(se.mean() / sd), float(np.mean(boot_se) / sd), float(np.mean(boot_covered))


@pytest.fixture
def one_thread():
    """Thousands of tiny linear-algebra calls: threads cost more than they give."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("d", "n", "widest"), [(8, 100, None), pytest.param(64, 40, 1.35, marks=pytest.mark.slow)]
)  # the second takes over 10 s
def test_fid_interval_covers_the_mean_fid_at_the_set_size(one_thread, d, n, widest):
    """2,000 independent set pairs give the truth, 600 simulated datasets the coverage (standard error about
    0.7 points); the bootstrap's standard error (100 datasets, 200 resamples) is wider than the jackknife's."""
    coverage, jackknife, bootstrap, _ = fid_coverage(d, n, truth_sets=2000, datasets=600, seed=d)
    print(f"FID d={d} n={n}: coverage {coverage:.3f}, jackknife se/sd {jackknife:.2f}, bootstrap {bootstrap:.2f}")
    assert coverage >= NOMINAL_FLOOR
    assert jackknife < bootstrap
    if widest is not None:  # fewer images than dimensions: the bootstrap's repeats inflate FID's spread most
        assert jackknife < widest < bootstrap
