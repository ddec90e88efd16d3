"""The evaluation's charts: a skipped number is never drawn as a score of 0."""

import math

from detectors.evaluation.report import NORMALISATION, bars_figure, normalised_scores, plots, radar_figure


def _report(models: dict) -> dict:
    """A report.json with forgetting and FID for each model, no LPIPS and no efficiency (both skipped)."""
    rows = {
        model: {"forgetting": {"overall": {"value": forgetting}}, "fid": {"fid": {"value": fid}}}
        for model, (forgetting, fid) in models.items()
    }
    return {"concepts": {"nudity": rows}, "efficiency": {}}


def test_bars_are_drawn_for_measured_numbers_only_and_the_rest_say_skipped(tmp_path):
    report = _report({"org": (0.0, 10.0), "esd": (0.9, 30.0)})
    report["concepts"]["nudity"]["org"]["robustness"] = {"overall": {"value": 0.2}}
    scores = normalised_scores(report)["nudity"]
    (ax,) = bars_figure("nudity", scores).axes
    heights = [patch.get_height() for patch in ax.patches]  # org's five bars, then esd's
    expected = [scores[m][a] for m in ("org", "esd") for a in NORMALISATION]
    assert len(heights) == len(expected) == 10
    for height, value in zip(heights, expected, strict=True):
        assert math.isnan(height) if value is None else height == value  # None is no bar, never a bar of 0
    assert [t.get_text() for t in ax.texts].count("skipped") == sum(v is None for v in expected) == 5
    assert [p.name for p in plots(report, tmp_path)] == ["radar-nudity.png", "bars-nudity.png"]


def test_the_radar_leaves_out_the_axes_no_model_has_and_needs_three(tmp_path):
    report = _report({"org": (0.0, 10.0), "esd": (0.9, 30.0)})
    assert radar_figure("nudity", normalised_scores(report)["nudity"]) is None  # two measured axes only
    assert [p.name for p in plots(report, tmp_path)] == ["bars-nudity.png"]
    report["concepts"]["nudity"]["esd"]["robustness"] = {"overall": {"value": 0.2}}
    (ax,) = radar_figure("nudity", normalised_scores(report)["nudity"]).axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["forgetting", "quality", "robustness"]
    assert ax.get_title().endswith("skipped: preservation, efficiency")
