"""The evaluation's numbers: judgements that fail, intervals of all-pairs means and of FID, per-image
resizing for FID and LPIPS, and results that do not depend on the input order. Each formula is checked
against an independent computation (scipy, numpy, torchmetrics, the lpips package) on the same numbers."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from scipy import linalg, stats

from detectors.evaluation import aspects
from detectors.evaluation.images import EvalImage
from detectors.evaluation.quality import (
    LpipsScorer,
    fid,
    fid_from_features,
    fid_metric,
    fid_with_ci,
    frechet_distance,
)
from detectors.judges import Judge
from detectors.stats import mean_with_ci, pairs_mean_with_ci, proportion

BLUE = (0, 0, 255)


def _noise(seed: int, size: tuple[int, int] = (32, 32)) -> Image.Image:
    w, h = size
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _eval_image(model, kind, family, sample, image, prompt=None, group=None, subtheme=None) -> EvalImage:
    key = f"{model}-{kind}-{family}-{group}-{sample}"
    return EvalImage(model, "nudity", kind, family, sample, key, prompt, subtheme, group, sample, lambda: image)


class RedJudge(Judge):
    """A real judge of our own API: P(nudity) = mean red level; a pure blue image gets NaN (a failed judgement)."""

    def __init__(self):
        super().__init__(["nudity"], {"nudity": 0.5}, spec="test:red")

    def forward(self, batch):
        probs = []
        for img in batch:
            x = np.asarray(img, dtype=np.float64)
            probs.append(
                [np.nan] if (x[..., 2] == 255).all() and (x[..., :2] == 0).all() else [x[..., 0].mean() / 255]
            )
        return np.array(probs), None


def _coloured(i: int, blue: bool) -> Image.Image:
    if blue:
        return Image.new("RGB", (16, 16), BLUE)
    return Image.new("RGB", (16, 16), (int(20 + 23 * i) % 256, 80, 10))


def _judged_set(blue_at: set[int], n: int = 10, kind: str = "forget") -> list[EvalImage]:
    group = "homoglyph" if kind == "adversarial" else None
    return [
        _eval_image(
            "ESD", kind, f"f{i}", 0, _coloured(i, i in blue_at), group=group, subtheme="woman" if i % 2 else "man"
        )
        for i in range(n)
    ]


def _wilson(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return ci.low, ci.high


# ------------------------------------------------------------------ 3. NaN judgements


def test_nan_judgements_are_excluded_and_counted_never_absent():
    images = _judged_set({1, 4, 7})
    judge = RedJudge()
    probs = judge.predict([im.image() for im in images]).probability("nudity")
    valid = ~np.isnan(probs)
    absent = int((probs[valid] < 0.5).sum())
    result = aspects.forgetting(images, judge, "nudity")
    overall = result["overall"]
    assert overall["n"] == 7 == valid.sum() and overall["excluded"] == {"nan_judgement": 3}
    assert overall["value"] == pytest.approx(absent / 7)
    assert overall["ci"] == pytest.approx(list(_wilson(absent, 7)), abs=1e-9)
    assert "Wilson" in overall["ci_rule"]
    # per sub-theme: judged images only (blue images at 1 and 7 are "woman", 4 is "man")
    assert result["by_subtheme"]["woman"]["n"] == 3 and result["by_subtheme"]["woman"]["excluded"] == {
        "nan_judgement": 2
    }
    assert result["by_subtheme"]["man"]["n"] == 4 and result["by_subtheme"]["man"]["excluded"] == {"nan_judgement": 1}


def test_nan_judgements_do_not_lower_the_attack_success_rate():
    images = _judged_set({0, 2}, n=8, kind="adversarial")
    judge = RedJudge()
    probs = judge.predict([im.image() for im in images]).probability("nudity")
    shown = int((probs[~np.isnan(probs)] >= 0.5).sum())
    rob = aspects.robustness(images, judge, "nudity")
    assert rob["overall"]["n"] == 6 and rob["overall"]["value"] == pytest.approx(shown / 6)
    assert rob["overall"]["excluded"] == {"nan_judgement": 2}
    assert rob["by_attack"]["homoglyph"]["n"] == 6


def test_every_judgement_nan_skips_the_metric_with_the_reason():
    images = _judged_set(set(range(4)), n=4)
    result = aspects.forgetting(images, RedJudge(), "nudity")
    assert "overall" not in result and result["excluded"] == {"nan_judgement": 4}
    assert "NaN" in result["skipped"] and "4" in result["skipped"]
    assert "no forget" in aspects.forgetting([], RedJudge(), "nudity")["skipped"]


def test_forgetting_interval_is_over_prompts_when_a_prompt_has_several_images():
    """8 prompts x 3 seeds; a prompt's images share their red level, so they share the judge's verdict."""
    reds = [40, 200, 60, 220, 30, 180, 90, 240]  # P(nudity) = red / 255: prompts 1, 3, 5, 7 show the concept
    images = [
        _eval_image("ESD", "forget", f"f{p}", s, Image.new("RGB", (16, 16), (r, 0, 0)), prompt=f"prompt {p}")
        for p, r in enumerate(reds)
        for s in range(3)
    ]
    overall = aspects.forgetting(images, RedJudge(), "nudity")["overall"]
    absent = np.repeat([r / 255 < 0.5 for r in reds], 3)
    p, k, total = absent.mean(), 8, 24
    y = absent.reshape(8, 3).sum(1)
    deff = k / (k - 1) * ((y - 3 * p) ** 2).sum() / total**2 / (p * (1 - p) / total)
    assert overall["value"] == pytest.approx(0.5) and overall["n"] == 24 and overall["prompts"] == 8
    assert overall["design_effect"] == pytest.approx(min(deff, 3.0)) and overall["n_effective"] == pytest.approx(8)
    # Wilson at n = 8 with the t quantile of 7 degrees of freedom: wider than Wilson over the 24 images
    z = stats.t.ppf(0.975, 7)
    half = z * np.sqrt(0.25 / 8 + z * z / (4 * 64)) / (1 + z * z / 8)
    centre = (0.5 + z * z / 16) / (1 + z * z / 8)
    assert overall["ci"] == pytest.approx([centre - half, centre + half], abs=1e-9)
    assert overall["ci"][1] - overall["ci"][0] > np.diff(_wilson(12, 24))[0]
    assert "over prompts" in overall["ci_rule"] and "population of prompts" in overall["estimand"]


# ------------------------------------------------------------------ 4. all-pairs intervals


def test_all_pairs_interval_resamples_images_and_covers():
    """P[a, b] = u_a + v_b + e_ab: per-image effects make the N x M pairs dependent. The old interval
    (pairs as if independent) covers the true mean 0 far less often than 95%; resampling images does."""
    rng = np.random.default_rng(0)
    n, reps = 20, 200
    old_cover = new_cover = 0
    wider = 0
    for rep in range(reps):
        matrix = rng.normal(size=(n, 1)) + rng.normal(size=(1, n)) + 0.5 * rng.normal(size=(n, n))
        old = mean_with_ci(matrix.ravel(), seed=rep)
        new = pairs_mean_with_ci(matrix, seed=rep)
        assert new["value"] == pytest.approx(matrix.mean()) and new["n"] == n * n
        old_cover += old["ci"][0] <= 0 <= old["ci"][1]
        new_cover += new["ci"][0] <= 0 <= new["ci"][1]
        wider += (new["ci"][1] - new["ci"][0]) > (old["ci"][1] - old["ci"][0])
    print(f"coverage over {reps} reps: old {old_cover / reps:.3f}, new {new_cover / reps:.3f}")
    assert wider == reps
    assert old_cover / reps < 0.5
    assert 0.88 <= new_cover / reps <= 0.99


def test_all_pairs_interval_agrees_with_scipy_two_sample_bootstrap():
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(15, 1)) + 2 * rng.normal(size=(1, 12)) + 0.3 * rng.normal(size=(15, 12))
    ours = pairs_mean_with_ci(matrix, n_boot=4000)
    ref = stats.bootstrap(
        (np.arange(15), np.arange(12)),
        lambda i, j: matrix[np.ix_(i, j)].mean(),
        paired=False,
        vectorized=False,
        method="percentile",
        n_resamples=4000,
        rng=np.random.default_rng(2),
    ).confidence_interval
    width = ref.high - ref.low
    assert ours["ci"][0] == pytest.approx(ref.low, abs=0.1 * width)
    assert ours["ci"][1] == pytest.approx(ref.high, abs=0.1 * width)
    assert ours["n_left"] == 15 and ours["n_right"] == 12 and "left" in ours["ci_rule"]


def test_all_pairs_within_families_is_a_ratio_over_defined_pairs():
    """Pairs exist only within a prompt family (NaN elsewhere): the mean over the resampled sets counts
    only the pairs that exist, as scipy's bootstrap with a nanmean statistic does."""
    rng = np.random.default_rng(3)
    fam_left, fam_right = np.repeat([0, 1, 2], 6), np.repeat([0, 1, 2], 5)
    matrix = rng.normal(size=(18, 1)) + rng.normal(size=(1, 15)) + fam_left[:, None]
    matrix[fam_left[:, None] != fam_right[None, :]] = np.nan
    ours = pairs_mean_with_ci(matrix, n_boot=4000)
    ref = stats.bootstrap(
        (np.arange(18), np.arange(15)),
        lambda i, j: np.nanmean(matrix[np.ix_(i, j)]),
        paired=False,
        vectorized=False,
        method="percentile",
        n_resamples=4000,
        rng=np.random.default_rng(4),
    ).confidence_interval
    assert ours["value"] == pytest.approx(np.nanmean(matrix)) and ours["n"] == 3 * 6 * 5
    width = ref.high - ref.low
    assert ours["ci"][0] == pytest.approx(ref.low, abs=0.1 * width)
    assert ours["ci"][1] == pytest.approx(ref.high, abs=0.1 * width)


def test_lpips_all_pairs_interval_is_the_image_bootstrap_of_the_pair_matrix():
    scorer = LpipsScorer(random_backbone=True)
    model = [_eval_image("ESD", "forget", f"f{s % 2}", s, _noise(10 + s, (64, 64))) for s in range(6)]
    original = [_eval_image("ORG", "remove", f"f{s % 2}", s, _noise(20 + s, (64, 64))) for s in range(6)]
    result = aspects.lpips(model, original, scorer, abstract=True)
    left, right = sorted(model, key=lambda im: im.key), sorted(original, key=lambda im: im.key)
    matrix = np.full((6, 6), np.nan)
    for i, a in enumerate(left):
        for j, b in enumerate(right):
            if a.family == b.family:
                matrix[i, j] = scorer.distances([(a.image(), b.image())])[0]
    expected = pairs_mean_with_ci(matrix)
    every = result["all_pairs"]
    assert every["n"] == 18 and every["n_left"] == 6 and every["n_right"] == 6
    assert every["value"] == pytest.approx(np.nanmean(matrix), rel=1e-6)
    assert every["ci"] == pytest.approx(expected["ci"], rel=1e-6) and every["ci_rule"] == expected["ci_rule"]
    assert "pairs" in result["paired"]["ci_rule"]


# ------------------------------------------------------------------ 5. one resize rule per image


def _timm_fid_metric():
    import timm

    torch.manual_seed(0)
    return fid_metric(timm.create_model("resnet10t", pretrained=False, num_classes=0))


def _resize_by_rule(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The documented FID rule, written independently: bilinear with antialias (torch), rounded to uint8."""
    x = torch.from_numpy(np.asarray(img)).permute(2, 0, 1)[None].float()
    y = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return Image.fromarray(y.round().clamp(0, 255).byte()[0].permute(1, 2, 0).numpy())


def test_fid_on_images_of_different_sizes_equals_fid_on_images_resized_by_the_rule():
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = _timm_fid_metric()
    size = tuple(metric.inception.size)
    a = [_noise(i, (64, 64)) for i in range(3)] + [_noise(10 + i, (48, 80)) for i in range(3)]
    b = [_noise(20 + i, (48, 80)) for i in range(2)] + [_noise(30 + i, (64, 64)) for i in range(4)]
    value = fid(a, b, metric)
    a_r, b_r = [_resize_by_rule(im, size) for im in a], [_resize_by_rule(im, size) for im in b]
    assert value == pytest.approx(fid(a_r, b_r, metric), abs=1e-9)
    # and it is torchmetrics' FID of those images
    reference = FrechetInceptionDistance(feature=metric.inception)
    to_tensor = lambda ims: torch.stack([torch.from_numpy(np.asarray(im)).permute(2, 0, 1) for im in ims])  # noqa: E731
    reference.update(to_tensor(a_r), real=True)
    reference.update(to_tensor(b_r), real=False)
    assert value == pytest.approx(float(reference.compute()), rel=1e-4)


def test_lpips_of_a_pair_does_not_depend_on_its_batch():
    scorer = LpipsScorer(random_backbone=True)
    pair = (_noise(1, (48, 80)), _noise(2, (64, 64)))
    alone = scorer.distances([pair])[0]
    others = [(_noise(3, (100, 100)), _noise(4, (100, 100))), (_noise(5, (80, 48)), _noise(6, (32, 32)))]
    batched = scorer.distances([*others, pair, *others], batch_size=8)
    assert batched[2] == pytest.approx(alone, abs=1e-6)
    # the rule: both images fitted to the reference's size (shorter side scaled, centre crop; no squashing)
    a = ImageOps.fit(pair[0], (64, 64), method=Image.Resampling.BICUBIC)
    to_t = lambda im: torch.from_numpy(np.asarray(im)).permute(2, 0, 1)[None].float() / 127.5 - 1  # noqa: E731
    with torch.no_grad():
        expected = float(scorer.model(to_t(a), to_t(pair[1])))
    assert alone == pytest.approx(expected, abs=1e-6)
    # a small reference is scaled up (aspect kept) to LPIPS' minimum size
    small = (_noise(7, (40, 20)), _noise(8, (32, 16)))
    target = (128, 64)
    with torch.no_grad():
        expected_small = float(
            scorer.model(
                to_t(ImageOps.fit(small[0], target, method=Image.Resampling.BICUBIC)),
                to_t(ImageOps.fit(small[1], target, method=Image.Resampling.BICUBIC)),
            )
        )
    assert scorer.distances([small])[0] == pytest.approx(expected_small, abs=1e-6)


# ------------------------------------------------------------------ 6. FID: both n, an interval, a warning


def _scipy_fid(fa: np.ndarray, fb: np.ndarray) -> float:
    mu1, mu2 = fa.mean(0), fb.mean(0)
    s1, s2 = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))


@pytest.mark.parametrize("n_a,n_b,d", [(300, 250, 6), (12, 9, 40), (50, 80, 40)])
def test_frechet_distance_matches_scipy_sqrtm(n_a, n_b, d):
    rng = np.random.default_rng(n_a)
    fa = rng.normal(size=(n_a, d)) @ rng.normal(size=(d, d))
    fb = rng.normal(size=(n_b, d)) + 0.5
    expected = _scipy_fid(fa, fb)
    assert frechet_distance(fa, fb) == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_fid_interval_spread_matches_independent_draws():
    """The jackknife standard error from one pair of sets ~ the spread of FID over independent draws."""
    rng = np.random.default_rng(0)
    d, n = 4, 300
    cov_b = np.diag([1.0, 2.0, 0.5, 1.5])

    def draw():
        return rng.normal(size=(n, d)), rng.multivariate_normal([0.5, -0.5, 0, 0.3], cov_b, size=n)

    spread = np.std([frechet_distance(*draw()) for _ in range(200)], ddof=1)
    result = fid_from_features(*draw(), groups=100, seed=0)
    assert result["ci"][0] <= result["value"] <= result["ci"][1]
    assert 0.6 * spread < result["se"] < 1.6 * spread
    assert result["n_model"] == result["n_reference"] == n and "warning" not in result
    assert "100 random groups" in result["ci_rule"] and "set sizes" in result["estimand"]


def test_fid_jackknife_is_scipys_fid_with_each_image_left_out():
    """Sets no larger than the group count: the standard error is the two-sample delete-one jackknife."""
    rng = np.random.default_rng(5)
    fa, fb = rng.normal(size=(9, 3)), rng.normal(size=(7, 3)) + 0.4
    value = _scipy_fid(fa, fb)
    left_a = [_scipy_fid(np.delete(fa, i, 0), fb) for i in range(9)]
    left_b = [_scipy_fid(fa, np.delete(fb, i, 0)) for i in range(7)]
    variance = sum((len(v) - 1) / len(v) * ((np.array(v) - np.mean(v)) ** 2).sum() for v in (left_a, left_b))
    result = fid_from_features(fa, fb)
    se = np.sqrt(variance)
    assert result["se"] == pytest.approx(se)
    spread = np.exp(1.959963984540054 * se / value)  # the interval is symmetric on the log scale
    assert result["ci"] == pytest.approx([value / spread, value * spread])
    assert fid_from_features(fa[:2], fb)["ci_skipped"].startswith("skipped")


def test_fid_reports_both_sizes_an_interval_and_warns_on_small_sets(caplog):
    metric = _timm_fid_metric()
    a = [_noise(i, (64, 64)) for i in range(12)]
    b = [_noise(100 + i, (48, 80)) for i in range(9)]
    with caplog.at_level(logging.WARNING):
        result = fid_with_ci(a, b, metric)
    assert result["n_model"] == 12 and result["n_reference"] == 9 and result["n"] == 9
    assert result["feature_dim"] == 512
    assert result["value"] == pytest.approx(fid(a, b, metric), rel=1e-9)
    assert result["ci"][0] <= result["value"] <= result["ci"][1] and result["ci"][0] < result["ci"][1]
    assert "512" in result["warning"] and "Chong" in result["warning"]
    assert any("512" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    # the features' Fréchet distance is scipy's on the same features
    model_images = [_eval_image("ESD", "forget", "f", i, im) for i, im in enumerate(a)]
    ref_images = [_eval_image("ORG", "remove", "f", i, im) for i, im in enumerate(b)]
    quality = aspects.image_quality(model_images, ref_images, metric, abstract=True)
    assert quality["fid"]["n_model"] == 12 and quality["fid"]["n_reference"] == 9
    assert quality["fid"]["value"] == pytest.approx(result["value"], rel=1e-9)


def test_fid_value_is_scipy_on_the_extracted_features():
    from detectors.evaluation.quality import fid_features

    metric = _timm_fid_metric()
    a = [_noise(i, (64, 64)) for i in range(6)]
    b = [_noise(50 + i, (64, 64)) for i in range(7)]
    fa, fb = fid_features(a, metric), fid_features(b, metric)
    assert fa.shape == (6, 512)
    assert fid(a, b, metric) == pytest.approx(_scipy_fid(fa, fb), rel=1e-5)


# ------------------------------------------------------------------ 7. order of the input


def test_shuffled_input_gives_identical_results(tiny_clip):
    from detectors.evaluation.quality import ClipScorer

    model, original = [], []
    for s in range(8):
        fam = f"f{s % 3}"
        model.append(_eval_image("ESD", "forget", fam, s, _noise(10 + s, (64, 64)), "a nude photo", subtheme=fam))
        model.append(_eval_image("ESD", "replace", fam, s, _noise(30 + s, (64, 64)), "a church", group="dog"))
        model.append(_eval_image("ESD", "adversarial", fam, s, _coloured(s, s == 3), group="homoglyph"))
        original.append(_eval_image("ORG", "remove", fam, s, _noise(50 + s, (64, 64)), "a photo"))
        original.append(_eval_image("ORG", "replace", fam, s, _noise(70 + s, (64, 64)), "a church", group="dog"))
    lp, clip, metric, judge = (
        LpipsScorer(random_backbone=True),
        ClipScorer(str(tiny_clip)),
        _timm_fid_metric(),
        RedJudge(),
    )

    def run(m, o):
        return {
            "forgetting": aspects.forgetting(m, judge, "nudity"),
            "robustness": aspects.robustness(m, judge, "nudity"),
            "csdr": aspects.csdr(m, o, clip),
            "lpips": aspects.lpips(m, o, lp, abstract=True),
            "lpips_concrete": aspects.lpips(m, o, lp, abstract=False),
            "fid": aspects.image_quality(m, o, metric, abstract=True),
        }

    first = run(model, original)
    shuffled_model, shuffled_original = model[:], original[:]
    random.Random(1).shuffle(shuffled_model)
    random.Random(2).shuffle(shuffled_original)
    assert run(shuffled_model, shuffled_original) == first
    assert first["lpips"]["paired"]["n"] == 8 and first["csdr"]["all_pairs"]["n_left"] == 8


def test_proportion_and_mean_state_their_rule():
    p = proportion(3, 10)
    assert p["ci"] == pytest.approx(list(_wilson(3, 10)), abs=1e-9) and "Wilson" in p["ci_rule"]
    m = mean_with_ci([1.0, 2.0, 4.0])
    assert "bootstrap" in m["ci_rule"] and m["value"] == pytest.approx(7 / 3)


@pytest.mark.parametrize("n_a,n_b,d", [(30, 24, 96), (120, 90, 8)])
def test_each_fid_bootstrap_replicate_is_scipys_fid_of_the_resampled_sets(n_a, n_b, d):
    """Replicates are computed batched from multiplicities; each equals the FID of the sets drawn with repeats."""
    import torch

    from detectors.evaluation.quality import fid_replicates

    rng = np.random.default_rng(d)
    fa, fb = rng.normal(size=(n_a, d)), rng.normal(size=(n_b, d)) + 0.3
    wa = rng.multinomial(n_a, np.full(n_a, 1 / n_a), size=7)
    wb = rng.multinomial(n_b, np.full(n_b, 1 / n_b), size=7)
    got = fid_replicates(torch.as_tensor(fa), torch.as_tensor(fb), wa, wb).numpy()
    expected = [
        _scipy_fid(np.repeat(fa, ka, axis=0), np.repeat(fb, kb, axis=0)) for ka, kb in zip(wa, wb, strict=True)
    ]
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_a_small_set_warning_is_logged_once_and_kept_in_every_result(caplog):
    rng = np.random.default_rng(3)
    with caplog.at_level(logging.WARNING):
        results = [fid_from_features(rng.normal(size=(7, 33)), rng.normal(size=(5, 33))) for _ in range(3)]
    assert all("rank-deficient" in r["warning"] and "7 model and 5 reference" in r["warning"] for r in results)
    assert sum("7 model and 5 reference" in r.getMessage() for r in caplog.records) == 1


def test_a_timm_fid_extractor_needs_no_torchmetrics_and_gives_its_features():
    """A timm FID extractor is built without importing torchmetrics (seconds of imports); its features are
    the ones torchmetrics' metric around the same extractor computes."""
    import subprocess
    import sys

    code = (
        "import sys, timm\n"
        "from detectors.evaluation.quality import fid_metric\n"
        "metric = fid_metric('resnet10t', pretrained=False)\n"
        "assert 'torchmetrics' not in sys.modules, 'torchmetrics imported'\n"
        "print(tuple(metric.inception.size), metric.device)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["(176,", "176)", "cpu"]  # resnet10t's data config
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = _timm_fid_metric()
    images = torch.stack([torch.from_numpy(np.asarray(_noise(i, (64, 64)))).permute(2, 0, 1) for i in range(3)])
    reference = FrechetInceptionDistance(feature=metric.inception)
    assert torch.equal(metric.inception(images), reference.inception(images))


def test_the_reference_features_are_extracted_once_for_every_model():
    metric = _timm_fid_metric()
    seen = []
    metric.inception.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    reference = [_eval_image("ORG", "remove", "f", i, _noise(200 + i, (64, 64))) for i in range(6)]
    models = {
        name: [_eval_image(name, "forget", "f", i, _noise(seed + i, (64, 64))) for i in range(5)]
        for name, seed in (("ESD", 300), ("UCE", 400))
    }
    alone = {m: aspects.image_quality(ims, reference, metric, abstract=True)["fid"] for m, ims in models.items()}
    seen.clear()
    shared = aspects.FidFeatures(metric)
    together = {m: aspects.image_quality(ims, reference, shared, abstract=True)["fid"] for m, ims in models.items()}
    assert sum(seen) == 6 + 5 + 5  # each image once: the reference is not extracted again for UCE
    for model in models:
        assert together[model]["value"] == pytest.approx(alone[model]["value"], rel=1e-9)
        assert together[model]["ci"] == pytest.approx(alone[model]["ci"], rel=1e-9)
