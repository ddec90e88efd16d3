"""Held-out methods: ``judge train --exclude-methods`` leaves methods out, ``judge eval --holdout-methods`` measures
the judge on them next to the methods it saw, and the judge card shows both."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers.data import write_color_root
from sklearn.metrics import accuracy_score, f1_score

from dataigm.cli import main
from detectors.audit.intervals import holdout_comparison
from detectors.data import build_index

TRAIN_FLAGS = [
    "--model", "resnet10t", "--pretrained", "false", "--img-size", "32", "--epochs", "3", "--batch-size", "16",
    "--lr", "0.01", "--val-fraction", "0.25", "--progress", "false",
]  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_color_root(tmp_path_factory.mktemp("holdout") / "colors")


@pytest.fixture(scope="module")
def judge_run(root, tmp_path_factory) -> Path:
    """A judge trained without the ESD images (through the CLI)."""
    out = tmp_path_factory.mktemp("holdout-run") / "run"
    assert (
        main(["judge", "train", "--data", str(root), "--out", str(out), "--exclude-methods", "ESD", *TRAIN_FLAGS]) == 0
    )
    return out


def _predictions(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_training_leaves_the_excluded_method_out_and_records_it(root, judge_run):
    config = json.loads((judge_run / "judge" / "config.json").read_text())
    assert config["dataset"]["exclude_methods"] == ["ESD"]
    train = build_index(root, split="train")
    esd = {e.uid for e in train if e.method == "ESD"}
    assert esd  # the colour root has ESD images in its training split
    split = json.loads((judge_run / "split.json").read_text())
    assert not esd & set(split["validation_ids"])
    counts = config["dataset"]["counts"]
    used = sum(n for part in counts.values() for by_label in part.values() for n in by_label.values())
    assert used == len(train) - len(esd)  # every other training image was used, for training or validation


def test_eval_reports_held_out_methods_from_the_judge_config(root, judge_run, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(
        ["judge", "eval", "--judge", f"local-dir:{judge_run / 'judge'}", "--data", str(root), "--out", str(out),
         "--bootstrap", "200", "--device", "cpu", "--progress", "false"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "held-out methods (the judge's config.json" in printed and "gap (seen - held out)" in printed
    holdout = json.loads((out / "metrics.json").read_text())["holdout"]
    assert holdout["methods"] == ["ESD"] and holdout["judge_excluded_methods"] == ["ESD"]
    assert holdout["seen_in_training"] == []
    (row,) = [r for r in holdout["rows"] if r["concept"] == "church"]
    assert row["seen_methods"] == ["FMN", "ORG"]

    # an independent count from the per-image predictions
    rows = [r for r in _predictions(out / "predictions.csv") if r["concept"] == "church" and r["method"] != "none"]
    for group, keep in (("held_out", lambda m: m == "ESD"), ("seen", lambda m: m != "ESD")):
        mine = [r for r in rows if keep(r["method"])]
        y = [int(r["label"]) for r in mine]
        d = [int(r["present"]) for r in mine]
        assert row[group]["n"] == len(mine) > 0
        assert row[group]["metrics"]["accuracy"]["value"] == pytest.approx(accuracy_score(y, d))
        assert row[group]["metrics"]["f1"]["value"] == pytest.approx(f1_score(y, d, zero_division=0))
    gap = row["gap"]["accuracy"]
    assert gap["value"] == pytest.approx(
        row["seen"]["metrics"]["accuracy"]["value"] - row["held_out"]["metrics"]["accuracy"]["value"]
    )
    assert gap["low"] <= gap["value"] <= gap["high"]
    # nudity's web images have no method: no held-out row for it
    assert all(r["concept"] == "church" for r in holdout["rows"])

    from cards.judge_card import judge_card

    card = str(judge_card(judge_run / "judge", out))
    assert "## Held-out methods" in card and "held out: ESD" in card and "seen: FMN, ORG" in card
    assert "were left out of training and validation" in card


def test_holdout_option_overrides_and_flags_methods_the_judge_saw(root, judge_run, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(
        ["judge", "eval", "--judge", f"local-dir:{judge_run / 'judge'}", "--data", str(root), "--out", str(out),
         "--holdout-methods", "ESD,FMN", "--bootstrap", "0", "--device", "cpu", "--progress", "false"]
    )  # fmt: skip
    assert code == 0
    assert "the judge's training did include FMN" in capsys.readouterr().out
    holdout = json.loads((out / "metrics.json").read_text())["holdout"]
    assert holdout["methods"] == ["ESD", "FMN"] and holdout["seen_in_training"] == ["FMN"]
    assert holdout["chosen_by"] == "option --holdout-methods"
    (row,) = holdout["rows"]
    assert row["seen_methods"] == ["ORG"] and row["gap"]["accuracy"]["low"] is None  # no resamples, no interval


def test_unknown_methods_are_refused_naming_those_in_the_data(root, judge_run, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(
        ["judge", "eval", "--judge", f"local-dir:{judge_run / 'judge'}", "--data", str(root), "--out", str(out),
         "--holdout-methods", "UCE", "--device", "cpu", "--progress", "false"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "Held-out method(s) ['UCE'] have no image in split 'test'; its methods: ESD, FMN, ORG" in err

    run = tmp_path / "run"
    code = main(["judge", "train", "--data", str(root), "--out", str(run), "--exclude-methods", "UCE", *TRAIN_FLAGS])
    err = capsys.readouterr().err
    assert code == 2 and "exclude_methods: no training image has method(s) ['UCE']" in err and "ESD, FMN, ORG" in err
    assert not (run / "judge").exists()


def test_holdout_comparison_against_a_direct_computation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.6 + rng.normal(0.2, 0.25, 200), 0, 1)
    d = p >= 0.5
    held = np.arange(200) < 60
    d[held] = ~d[held]  # the judge fails on the held-out images
    out = holdout_comparison(y, p, d, held, n_boot=300, ci=0.9, seed=1)
    assert out["held_out"]["n"] == 60 and out["seen"]["n"] == 140
    acc_held, acc_seen = accuracy_score(y[held], d[held]), accuracy_score(y[~held], d[~held])
    assert out["held_out"]["metrics"]["accuracy"]["value"] == pytest.approx(acc_held)
    gap = out["gap"]["accuracy"]
    assert gap["value"] == pytest.approx(acc_seen - acc_held) and gap["value"] > 0.3
    assert 0 < gap["low"] <= gap["value"] <= gap["high"]
    assert holdout_comparison(y, p, d, held, n_boot=300, ci=0.9, seed=1) == out  # seeded
    nothing_seen = holdout_comparison(y, p, d, np.ones(200, dtype=bool), n_boot=50)
    assert nothing_seen["seen"]["n"] == 0 and nothing_seen["gap"]["accuracy"]["value"] is None


def test_method_lists_are_read_from_text_or_lists():
    from detectors.audit.judge_eval import parse_methods
    from detectors.training.config import TrainConfig

    assert TrainConfig(data="d", out="o", exclude_methods="ESD, UCE").exclude_methods == ["ESD", "UCE"]
    assert TrainConfig(data="d", out="o", exclude_methods=["ESD,UCE", "ESD"]).exclude_methods == ["ESD", "UCE"]
    assert TrainConfig(data="d", out="o", exclude_methods="").exclude_methods is None
    assert parse_methods("ESD,UCE") == parse_methods(["ESD", " UCE"]) == ["ESD", "UCE"]
    assert parse_methods(None) == []
