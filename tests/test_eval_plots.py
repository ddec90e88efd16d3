"""The evaluation's charts: a skipped number is never drawn as a score of 0."""

import numpy as np
from PIL import Image

from detectors.evaluation.report import plots

BLUE = np.array([0x1F, 0x77, 0xB4])  # matplotlib's first colour, the bars'


def _report(models: dict) -> dict:
    """A report.json with forgetting and FID for each model, no LPIPS and no efficiency (both skipped)."""
    rows = {
        model: {"forgetting": {"overall": {"value": forgetting}}, "fid": {"fid": {"value": fid}}}
        for model, (forgetting, fid) in models.items()
    }
    return {"concepts": {"nudity": rows}, "efficiency": {}}


def _bars_per_panel(path) -> list[bool]:
    """Whether each panel of a figure (found by its black left and right spines) holds a bar's colour."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    spine = (pixels.sum(axis=2) < 100).sum(axis=0) > pixels.shape[0] // 2
    columns = np.flatnonzero(spine)
    edges = [run[0] for run in np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)]
    blue = (np.abs(pixels - BLUE).sum(axis=2) < 30).any(axis=0)
    return [bool(blue[left:right].any()) for left, right in zip(edges[::2], edges[1::2], strict=True)]


def test_bars_are_drawn_for_measured_axes_only_and_the_radar_names_the_skipped_ones(tmp_path):
    report = _report({"org": (0.0, 10.0), "esd": (0.9, 30.0)})
    report["concepts"]["nudity"]["org"]["robustness"] = {"overall": {"value": 0.2}}
    paths = plots(report, tmp_path)
    assert [p.name for p in paths] == ["radar-nudity.png", "bars-nudity.png"]
    # panels: forgetting, preservation (skipped), quality, robustness (org only), efficiency (skipped)
    assert _bars_per_panel(tmp_path / "bars-nudity.png") == [True, False, True, True, False]


def test_no_radar_with_fewer_than_three_measured_axes(tmp_path):
    paths = plots(_report({"org": (0.1, 10.0), "esd": (0.9, 30.0)}), tmp_path)
    assert [p.name for p in paths] == ["bars-nudity.png"]
