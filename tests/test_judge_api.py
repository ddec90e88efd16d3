"""The Judge API: save -> load, what ``predict`` accepts, specs, ``dataigm judge eval`` and ``push``."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.data import write_color_root
from helpers.models import TINY_PROBE
from PIL import Image

from dataigm.cli import main
from detectors import TrainConfig, build_index, load_judge, train_judge
from detectors.judges import Prediction, judge_kinds


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A two-concept judge (a tiny probe on a tagged timm model whose pretrained_cfg has test-time fields)."""
    base = tmp_path_factory.mktemp("judge-api")
    root = write_color_root(base / "colors")
    config = TrainConfig(
        data=str(root),
        out=str(base / "run"),
        **{**TINY_PROBE, "model": "resnet10t.c3_in1k", "epochs": 3, "threshold_rule": "fpr@0.1"},
    )
    return root, train_judge(config)


def _images(n: int = 6) -> list[Image.Image]:
    rng = np.random.default_rng(5)
    colors = [(220, 40, 40), (40, 40, 220)] * (n // 2)
    return [
        Image.fromarray(np.clip(np.array(c) + rng.integers(-30, 31, (20, 24, 3)), 0, 255).astype(np.uint8))
        for c in colors
    ]


def test_save_then_load_gives_identical_predictions(trained):
    _, result = trained
    images = _images()
    before = result.judge.predict(images)
    loaded = load_judge(f"local-dir:{result.judge_dir}", device="cpu")
    after = loaded.predict(images)
    assert loaded.concepts == before.concepts == ["church", "nudity"]
    assert np.array_equal(before.probabilities, after.probabilities)
    assert np.array_equal(before.present, after.present)
    assert loaded.temperatures == result.calibration.temperatures
    assert loaded.thresholds == result.calibration.thresholds
    # the judge learned the colours: reddish images are targets of both concepts
    assert after.present[::2].all() and not after.present[1::2].any()
    assert load_judge(str(result.judge_dir), device="cpu").concepts == loaded.concepts  # a bare folder works too


def test_config_json_has_our_keys_and_no_inherited_test_fields(trained):
    root, result = trained
    config = json.loads((result.judge_dir / "config.json").read_text())
    assert config["architecture"] == "resnet10t" and config["num_classes"] == 2
    assert config["label_names"] == config["concepts"] == ["church", "nudity"]
    assert config["class_names"] == {"church": ["other", "church"], "nudity": ["safe", "nude"]}
    assert set(config["temperatures"]) == set(config["thresholds"]) == {"church", "nudity"}
    assert config["threshold_rule"] == "fpr@0.1"
    assert config["dataset"]["name"] == "dataigm" and len(config["dataset"]["manifest_sha256"]) == 64
    assert set(config["metrics"]["validation"]) == {"church", "nudity"}
    assert {"accuracy", "f1", "auroc", "ece", "ece_uncalibrated"} <= set(config["metrics"]["validation"]["church"])
    cfg = config["pretrained_cfg"]
    assert cfg["input_size"] == [3, 32, 32] and cfg["num_classes"] == 2
    for inherited in (
        "test_input_size",
        "test_crop_pct",
        "tag",
        "paper_ids",
        "origin_url",
        "license",
        "hf_hub_id",
        "url",
    ):
        assert inherited not in cfg, inherited
    assert config["training"]["model"] == "resnet10t.c3_in1k" and config["training"]["mode"] == "probe"


def test_predict_accepts_pil_tensors_arrays_files_datasets_and_roots(trained, tmp_path):
    import datasets
    from torchvision.transforms.functional import pil_to_tensor

    root, result = trained
    judge = result.judge
    images = _images(4)
    reference = judge.predict(images, batch_size=3)
    assert isinstance(reference, Prediction) and reference.probabilities.shape == (4, 2)
    assert ((reference.probabilities >= 0) & (reference.probabilities <= 1)).all()
    single = judge.predict(images[0])
    assert np.allclose(single.probabilities, reference.probabilities[:1], atol=1e-6)
    uint8 = torch.stack([pil_to_tensor(im) for im in images])
    assert np.allclose(judge.predict(uint8).probabilities, reference.probabilities, atol=1e-6)
    floats = [pil_to_tensor(im).float() / 255 for im in images]
    assert np.allclose(judge.predict(floats).probabilities, reference.probabilities, atol=1e-6)
    arrays = [np.asarray(im) for im in images]
    assert np.allclose(judge.predict(arrays).probabilities, reference.probabilities, atol=1e-6)
    assert np.allclose(judge.predict(np.stack(arrays)).probabilities, reference.probabilities, atol=1e-6)
    paths = []
    for i, im in enumerate(images):
        im.save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    assert np.allclose(judge.predict(paths).probabilities, reference.probabilities, atol=1e-6)
    assert np.array_equal(judge.predict(images).present, judge.decide(reference.probabilities))
    records = reference.to_records()
    assert set(records[0]) == {"church", "nudity"} and set(records[0]["church"]) == {"probability", "present"}

    ds = datasets.load_dataset(str(root), "church", split="test")
    from_dataset = judge.predict(ds, batch_size=5)
    from_root = judge.predict_entries(build_index(root, split="test", concepts=["church"]))
    assert len(from_dataset) == ds.num_rows == len(from_root) == 36
    by_key = dict(zip(from_root.keys, from_root.probabilities.tolist(), strict=True))
    for key, probs in zip(from_dataset.keys, from_dataset.probabilities.tolist(), strict=True):
        match = [v for k, v in by_key.items() if k.endswith(f"#{key}")]
        assert len(match) == 1 and np.allclose(match[0], probs, atol=1e-6)
    assert len(judge.predict(root)) == 172  # a whole root, every split
    with pytest.raises(ValueError, match="float image tensor must hold values in \\[0, 1\\]"):
        judge.predict(torch.randn(3, 8, 8) * 5)
    with pytest.raises(ValueError, match="has no concept 'ocean'; its concepts: church, nudity"):
        reference.probability("ocean")


def test_load_from_the_hub_cache_offline(trained):
    """``hf-hub:ORG/NAME[@REV]`` resolves through huggingface_hub's cache (here filled by hand, offline)."""
    from huggingface_hub import constants

    _, result = trained
    repo = Path(constants.HF_HUB_CACHE) / "models--my-org--church-judge"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(result.judge_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    for ref in ("main", "v1"):
        (repo / "refs" / ref).write_text(commit)
    images = _images(4)
    local = result.judge.predict(images)
    for spec in ("hf-hub:my-org/church-judge", "hf-hub:my-org/church-judge@v1"):
        judge = load_judge(spec, device="cpu")
        assert judge.spec == spec and judge.config["threshold_rule"] == "fpr@0.1"
        assert np.array_equal(judge.predict(images).probabilities, local.probabilities)


def test_predict_on_another_device_string(trained):
    _, result = trained
    judge = load_judge(f"local-dir:{result.judge_dir}", device="cpu").to("cpu")
    assert judge.device.type == "cpu" and next(judge.model.parameters()).device.type == "cpu"


def test_unknown_judge_kind_lists_the_known_ones(tmp_path):
    with pytest.raises(
        ValueError, match="Unknown judge kind 'yolo' in 'yolo:x=1'; known kinds: local-dir, hf-hub, nudenet"
    ):
        load_judge("yolo:x=1")
    assert set(judge_kinds()) == {"local-dir", "hf-hub", "nudenet", "clip-zeroshot", "imagenet", "vlm", "q16", "igmu"}
    with pytest.raises(ValueError, match="not a judge folder"):
        load_judge(f"local-dir:{tmp_path}")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet10t", "num_classes": 2}))
    with pytest.raises(ValueError, match="not a dataigm judge"):
        load_judge(f"local-dir:{tmp_path}")


def test_cli_eval_writes_metrics_predictions_and_plots(trained, tmp_path, capsys):
    from sklearn.metrics import accuracy_score, roc_auc_score

    root, result = trained
    out = tmp_path / "eval"
    code = main(
        ["judge", "eval", "--judge", f"local-dir:{result.judge_dir}", "--data", str(root), "--out", str(out)]
        + ["--bootstrap", "200", "--progress", "false", "--device", "cpu"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "concept" in printed and "church" in printed and "report:" in printed
    report = json.loads((out / "metrics.json").read_text())
    assert report["data"]["split"] == "test" and report["images"] == 52 and report["unreadable_images"] == 0
    groups = {(r["concept"], r["source"], r["method"]) for r in report["rows"]}
    assert {
        ("church", "all", "all"),
        ("church", "real", "all"),
        ("church", "generated", "all"),
        ("church", "all", "ESD"),
        ("church", "generated", "FMN"),
        ("church", "all", "none"),
        ("nudity", "laion", "all"),
    } <= groups
    assert ("church", "real", "none") not in groups  # the same images as ("church", "real", "all")
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 52
    for concept, source, method in [
        ("church", "all", "all"),
        ("church", "generated", "ESD"),
        ("nudity", "laion", "all"),
    ]:
        mine = [
            r
            for r in rows
            if r["concept"] == concept and source in ("all", r["source"]) and method in ("all", r["method"])
        ]
        y = [int(r["label"]) for r in mine]
        row = next(r for r in report["rows"] if (r["concept"], r["source"], r["method"]) == (concept, source, method))
        assert row["n"] == len(mine)
        assert row["metrics"]["accuracy"]["value"] == pytest.approx(
            accuracy_score(y, [int(r["present"]) for r in mine])
        )
        if 0 < sum(y) < len(y):
            auroc = roc_auc_score(y, [float(r["probability"]) for r in mine])
            assert row["metrics"]["auroc"]["value"] == pytest.approx(auroc, abs=1e-6)
        low, high = row["metrics"]["f1"]["low"], row["metrics"]["f1"]["high"]
        assert low <= row["metrics"]["f1"]["value"] <= high
    for name in ("roc_church.png", "roc_nudity.png", "reliability_church.png", "reliability_nudity.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.size[0] > 300
    assert (out / "config.yaml").exists()


def test_eval_skips_and_counts_unreadable_images(trained, tmp_path):
    from detectors.audit.judge_eval import evaluate_judge, write_report

    _, result = trained
    root = write_color_root(tmp_path / "r", {("church", "test", "real"): [6]}, corrupt=(3,))
    evaluation = evaluate_judge(result.judge, root, split="test", n_boot=10)
    assert evaluation.report["images"] == 6 and evaluation.report["unreadable_images"] == 1
    assert {r["n"] for r in evaluation.report["rows"]} == {5}
    assert np.isnan(evaluation.prediction.probabilities[3]).all() and not evaluation.prediction.present[3].any()
    write_report(evaluation, tmp_path / "out")
    with open(tmp_path / "out" / "predictions.csv", newline="") as f:
        assert [r["probability"] for r in csv.DictReader(f)][3] == ""


def test_eval_needs_a_split_that_exists(trained, tmp_path, capsys):
    root, result = trained
    code = main(
        ["judge", "eval", "--judge", str(result.judge_dir), "--data", str(root), "--split", "validation"]
        + ["--out", str(tmp_path / "e"), "--progress", "false"]
    )
    assert code == 2 and "Split 'validation' of" in capsys.readouterr().err


def test_push_uploads_weights_config_and_card(trained, tmp_path, fake_hub, capsys):
    """`dataigm judge push` is `dataigm push judge`: our card, then timm's push_to_hf_hub (tests/helpers/hub.py)."""
    from safetensors.torch import load

    _, result = trained
    hub = fake_hub
    code = main(
        ["judge", "push", "--judge", str(result.judge_dir), "--repo", "my-org/church-judge", "--private", "true"]
    )
    assert code == 0 and "pushed" in capsys.readouterr().out
    assert hub.calls_of("create_repo")[0] == {
        "repo_id": "my-org/church-judge",
        "repo_type": "model",
        "private": True,
        "exist_ok": True,
    }
    pushed = hub.files("my-org/church-judge")
    assert sorted(pushed) == ["README.md", "config.json", "model.safetensors"]
    local = json.loads((result.judge_dir / "config.json").read_text())
    remote = json.loads(pushed["config.json"])
    for key in ("concepts", "temperatures", "thresholds", "threshold_rule", "dataset", "metrics", "class_names"):
        assert remote[key] == local[key], key
    assert remote["pretrained_cfg"]["input_size"] == [3, 32, 32] and "test_input_size" not in remote["pretrained_cfg"]
    weights, original = load(pushed["model.safetensors"]), load((result.judge_dir / "model.safetensors").read_bytes())
    assert weights.keys() == original.keys() and all(torch.equal(weights[k], original[k]) for k in weights)
    assert "timm" in pushed["README.md"].decode() and "## Limitations" in pushed["README.md"].decode()
    assert main(["judge", "push", "--judge", str(tmp_path), "--repo", "my-org/x"]) == 2
    assert main(["judge", "push", "--judge", str(result.judge_dir), "--repo", "no-org"]) == 2
