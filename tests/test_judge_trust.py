"""Trust in the judges: NaN is not "absent", options checked first, damaged judge files named, content fingerprints,
seeded augmentation, resume without a checkpoint, and training that does not depend on the thread count."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.data import write_color_root
from helpers.models import TINY_PROBE
from PIL import Image

from dataigm.cli import main
from detectors import Judge, TrainConfig, load_judge, train_judge
from detectors.audit.judge_eval import evaluate_judge, write_report
from detectors.judges import JUDGE_REGISTRY

# the shared test probe, trained for fewer epochs
PROBE = {**TINY_PROBE, "epochs": 2}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_color_root(tmp_path_factory.mktemp("trust") / "colors")


@pytest.fixture(scope="module")
def trained(root, tmp_path_factory):
    return train_judge(TrainConfig(data=str(root), out=str(tmp_path_factory.mktemp("trust-run") / "run"), **PROBE))


def _images(n: int = 6) -> list[Image.Image]:
    rng = np.random.default_rng(5)
    colors = [(220, 40, 40), (40, 40, 220)] * (n // 2)
    return [
        Image.fromarray(np.clip(np.array(c) + rng.integers(-30, 31, (20, 24, 3)), 0, 255).astype(np.uint8))
        for c in colors
    ]


def _weights(result) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in result.judge.model.state_dict().items()}


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- 3. NaN is no judgement, never "absent"


def test_a_nan_probability_is_invalid_not_absent(trained):
    judge = load_judge(f"local-dir:{trained.judge_dir}", device="cpu")
    with torch.no_grad():
        judge.model.get_classifier().bias[0] = float("nan")  # the church logit is NaN for every image
    prediction = judge.predict(_images())
    assert prediction.valid.shape == prediction.probabilities.shape == (6, 2)
    assert np.isnan(prediction.probabilities[:, 0]).all()  # kept as the judge gave it, not clamped
    assert not prediction.valid[:, 0].any() and not prediction.present[:, 0].any()
    assert prediction.valid[:, 1].all()
    reference = trained.judge.predict(_images())
    assert np.array_equal(prediction.present[:, 1], reference.present[:, 1])  # the other concept is untouched
    assert np.array_equal(prediction.probabilities[:, 1], reference.probabilities[:, 1])
    records = prediction.to_records()
    assert records[0]["church"] == {"probability": None, "present": None}
    assert records[0]["nudity"]["present"] is bool(reference.present[0, 1])
    assert reference.valid.all() and prediction.probs is prediction.probabilities


class _RednessJudge(Judge):
    """A judge written against the public API: P(church) = redness, NaN for about a third of the images."""

    kind = "test-redness"

    def __init__(self):
        super().__init__(["church"], {"church": 0.5}, spec="test-redness")
        self.image_transform = _pixels

    def forward(self, batch):
        probs = []
        for pixels in batch:
            red, blue = pixels[..., 0].mean(), pixels[..., 2].mean()
            probs.append(np.nan if int(pixels[0, 0, 1]) % 3 == 0 else red / (red + blue))
        return np.array(probs)[:, None], None


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def test_judge_eval_leaves_nan_judgements_out_of_the_metrics_and_counts_them(root, tmp_path):
    from sklearn.metrics import accuracy_score, roc_auc_score

    evaluation = evaluate_judge(_RednessJudge(), root, split="test", concept="church", n_boot=50)
    prediction, entries = evaluation.prediction, evaluation.entries
    nan = np.isnan(prediction.probabilities[:, 0])
    assert 5 < nan.sum() < len(entries) - 5  # the test judge really returned NaN for some images
    assert not prediction.present[nan, 0].any() and not prediction.valid[nan, 0].any()
    report = evaluation.report
    assert report["excluded_nan"] == int(nan.sum()) and report["unreadable_images"] == 0
    assert report["excluded_nan_by_concept"] == {"church": int(nan.sum())}
    overall = next(r for r in report["rows"] if r["source"] == r["method"] == "all")
    y = np.array([e.cls for e in entries])[~nan]
    p = prediction.probabilities[~nan, 0]
    assert overall["n"] == int((~nan).sum())
    assert overall["metrics"]["accuracy"]["value"] == pytest.approx(accuracy_score(y, p >= 0.5))
    assert overall["metrics"]["auroc"]["value"] == pytest.approx(roc_auc_score(y, p))
    write_report(evaluation, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["excluded_nan"] == int(nan.sum())
    from cards.judge_card import _metric_tables  # the card's "how it was measured" paragraph

    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert f"{int(nan.sum())} left out because the judge returned NaN for them (church: {int(nan.sum())})" in (
        _metric_tables(metrics)
    )
    with open(tmp_path / "out" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["present"] == "" for r in rows] == nan.tolist()  # no judgement is written as none, not as 0


# ---------------------------------------------------------------- 11. every option checked before any work


@pytest.mark.parametrize(
    "option, message",
    [
        (["--ci", "2"], "ci=2.0 must be strictly between 0 and 1"),
        (["--ci", "0"], "ci=0.0 must be strictly between 0 and 1"),
        (["--bootstrap", "-1"], "bootstrap=-1 must be a number of resamples >= 0"),
        (["--batch-size", "0"], "batch_size=0 must be at least 1"),
        (["--num-workers", "-2"], r"num_workers=-2 must be None \(sized to the host\), 0 .* or more"),
        (["--split", "validation"], "Split 'validation' of .* has no images; its splits: test, train"),
        (["--concept", "ocean"], "Concept 'ocean' is not in the data; its concepts: church, nudity"),
    ],
)
def test_judge_eval_checks_every_option_before_loading_the_judge(
    trained, root, tmp_path, monkeypatch, capsys, option, message
):
    loaded, judged = [], []
    real_kind, real_predict = JUDGE_REGISTRY["local-dir"], Judge.predict_entries

    def loader(spec, device=None):
        loaded.append(spec)
        return real_kind.loader(spec, device)

    def predict_entries(self, *args, **kwargs):
        judged.append(len(args[0]))
        return real_predict(self, *args, **kwargs)

    monkeypatch.setitem(JUDGE_REGISTRY, "local-dir", dataclasses.replace(real_kind, loader=loader))
    monkeypatch.setattr(Judge, "predict_entries", predict_entries)
    out = tmp_path / "eval"
    code = main(
        ["judge", "eval", "--judge", f"local-dir:{trained.judge_dir}", "--data", str(root), "--out", str(out)]
        + ["--progress", "false", *option]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("dataigm judge eval: error: ")
    assert __import__("re").search(message, err[0]), err[0]
    assert loaded == [] and judged == [] and not out.exists()


def test_evaluate_judge_checks_its_options_before_judging(trained, root, monkeypatch):
    judged = []
    monkeypatch.setattr(Judge, "predict_entries", lambda self, *a, **k: judged.append(1))
    with pytest.raises(ValueError, match="ci=1.5 must be strictly between 0 and 1"):
        evaluate_judge(trained.judge, root, split="test", ci=1.5)
    assert judged == []


# ---------------------------------------------------------------- 14. damaged judge files: one line naming the file


def _copy_judge(trained, tmp_path) -> Path:
    folder = tmp_path / "judge"
    shutil.copytree(trained.judge_dir, folder)
    return folder


def _eval(folder: Path, root: Path, out: Path, capsys) -> tuple[int, list[str]]:
    code = main(
        ["judge", "eval", "--judge", f"local-dir:{folder}", "--data", str(root), "--out", str(out)]
        + ["--progress", "false"]
    )
    return code, capsys.readouterr().err.strip().splitlines()


def test_random_bytes_as_weights_give_one_line_naming_the_file(trained, root, tmp_path, capsys):
    folder = _copy_judge(trained, tmp_path)
    (folder / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    code, err = _eval(folder, root, tmp_path / "out", capsys)
    assert code == 2 and len(err) == 1
    assert str(folder / "model.safetensors") in err[0] and "cannot be read as judge weights" in err[0]
    with pytest.raises(ValueError, match="model.safetensors cannot be read"):
        load_judge(str(folder))


def test_a_truncated_config_gives_one_line_naming_the_file(trained, root, tmp_path, capsys):
    folder = _copy_judge(trained, tmp_path)
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text[: len(text) // 2])
    code, err = _eval(folder, root, tmp_path / "out", capsys)
    assert code == 2 and len(err) == 1
    assert f"{folder / 'config.json'} is not valid JSON" in err[0]


def test_weights_of_another_architecture_are_named(trained, root, tmp_path, capsys):
    from safetensors.torch import save_file

    folder = _copy_judge(trained, tmp_path)
    save_file({"fc.weight": torch.zeros(3, 8)}, str(folder / "model.safetensors"))
    code, err = _eval(folder, root, tmp_path / "out", capsys)
    assert code == 2 and len(err) == 1
    assert "model.safetensors does not fit the architecture 'resnet10t'" in err[0]
    (folder / "model.safetensors").unlink()
    code, err = _eval(folder, root, tmp_path / "out", capsys)
    assert code == 2 and f"{folder} has no weights file (model.safetensors or pytorch_model.bin)" in err[0]


# ---------------------------------------------------------------- content fingerprints for the evaluation's cache


def test_fingerprint_follows_the_content_not_the_path(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    fresh = trained.judge.fingerprint()
    loaded = load_judge(f"local-dir:{trained.judge_dir}", device="cpu")
    assert len(fresh) == 64 and loaded.fingerprint() == fresh  # the judge from training = the judge from its folder
    copy = _copy_judge(trained, tmp_path)
    assert load_judge(str(copy), device="cpu").fingerprint() == fresh

    config = json.loads((copy / "config.json").read_text())
    config["metrics"] = {"edited": True}  # a report field: outputs do not change
    (copy / "config.json").write_text(json.dumps(config))
    assert load_judge(str(copy), device="cpu").fingerprint() == fresh
    config["thresholds"]["church"] = 0.123  # decisions change
    (copy / "config.json").write_text(json.dumps(config))
    assert load_judge(str(copy), device="cpu").fingerprint() != fresh
    config["thresholds"] = json.loads((trained.judge_dir / "config.json").read_text())["thresholds"]
    config["temperatures"]["nudity"] = 3.0  # probabilities change
    (copy / "config.json").write_text(json.dumps(config))
    assert load_judge(str(copy), device="cpu").fingerprint() != fresh

    shutil.rmtree(copy)
    copy = _copy_judge(trained, tmp_path)
    weights = load_file(str(copy / "model.safetensors"))
    weights["fc.bias"] = weights["fc.bias"] + 1e-3  # retrained weights in the same folder
    save_file(weights, str(copy / "model.safetensors"))
    assert load_judge(str(copy), device="cpu").fingerprint() != fresh


def test_hub_fingerprint_adds_the_resolved_commit(trained):
    from huggingface_hub import constants

    repo = Path(constants.HF_HUB_CACHE) / "models--trust-org--judge"
    commits = ["0123456789abcdef0123456789abcdef01234567", "89abcdef0123456789abcdef0123456789abcdef"]
    for commit in commits:
        shutil.copytree(trained.judge_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    for ref, commit in (("main", commits[0]), ("v1", commits[0]), ("v2", commits[1])):
        (repo / "refs" / ref).write_text(commit)
    main_judge = load_judge("hf-hub:trust-org/judge", device="cpu")
    assert main_judge.revision == commits[0] and main_judge.describe()["revision"] == commits[0]
    assert load_judge("hf-hub:trust-org/judge@v1", device="cpu").fingerprint() == main_judge.fingerprint()
    assert load_judge("hf-hub:trust-org/judge@v2", device="cpu").fingerprint() != main_judge.fingerprint()
    assert main_judge.fingerprint() != trained.judge.fingerprint()
    with pytest.raises(ValueError, match="Cannot get config.json of judge 'hf-hub:trust-org/nothing'"):
        load_judge("hf-hub:trust-org/nothing", device="cpu")


def test_baseline_fingerprints_cover_spec_and_weights(tmp_path, tiny_clip):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    weights = tmp_path / "w.safetensors"
    save_file(timm.create_model("resnet10t", pretrained=False).state_dict(), str(weights))
    spec = f"imagenet:model=resnet10t,classes=497,pretrained_path={weights}"
    first = load_judge(spec, "cpu").fingerprint()
    assert load_judge(spec, "cpu").fingerprint() == first
    assert load_judge(spec.replace("497", "498"), "cpu").fingerprint() != first
    torch.manual_seed(1)
    save_file(timm.create_model("resnet10t", pretrained=False).state_dict(), str(weights))  # new weights, same spec
    assert load_judge(spec, "cpu").fingerprint() != first

    clip = f"clip-zeroshot:model={tiny_clip},target=nude,anchor=properly dressed"
    assert load_judge(clip, "cpu").fingerprint() == load_judge(clip, "cpu").fingerprint()
    assert load_judge(clip, "cpu").fingerprint() != load_judge(clip.replace("nude", "naked"), "cpu").fingerprint()

    pytest.importorskip("nudenet")
    nudenet = load_judge("nudenet", "cpu").fingerprint()
    assert load_judge("nudenet", "cpu").fingerprint() == nudenet
    assert load_judge("nudenet:threshold=0.5", "cpu").fingerprint() != nudenet


# ---------------------------------------------------------------- 16. a seed means a result; resume without a run


FINETUNE = dict(
    model="resnet10t",
    pretrained=False,
    img_size=32,
    mode="finetune",
    epochs=2,
    batch_size=16,
    lr=0.003,
    val_fraction=0.25,
    augment=True,
    threads=1,
    progress=False,
)


def test_finetune_augmentation_is_seeded(root, tmp_path):
    def run(name, **options):
        return _weights(train_judge(TrainConfig(data=str(root), out=str(tmp_path / name), **{**FINETUNE, **options})))

    first = run("a", seed=0)
    assert _same_weights(run("b", seed=0), first)
    assert _same_weights(run("workers", seed=0, num_workers=2), first)  # augmentations do not depend on workers
    assert not _same_weights(run("c", seed=1), first)
    torch.manual_seed(0)  # the seed that the model's initialisation also uses: only augmentation differs now
    assert not _same_weights(run("noaug", seed=0, augment=False), first)


def test_resume_with_nothing_to_resume_starts_fresh_and_says_so(root, tmp_path, caplog):
    reference = train_judge(TrainConfig(data=str(root), out=str(tmp_path / "plain"), **PROBE))
    with caplog.at_level(logging.INFO, logger="detectors.training.trainer"):
        resumed = train_judge(TrainConfig(data=str(root), out=str(tmp_path / "fresh"), resume=True, **PROBE))
    assert any(
        "nothing to resume" in r.getMessage() and "starting a fresh run" in r.getMessage() for r in caplog.records
    )
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert (tmp_path / "fresh" / "judge" / "model.safetensors").exists()
    assert _same_weights(_weights(resumed), _weights(reference))


def test_bad_training_options_are_refused_before_anything_is_written(root, tmp_path):
    for options, message in [
        ({"threads": 0}, "threads=0 must be at least 1"),
        ({"num_workers": -1}, "num_workers=-1 must be 0 or more"),
        ({"lr": -0.1}, "lr=-0.1 must be a learning rate >= 0"),
        ({"min_lr_ratio": 2.0}, r"min_lr_ratio=2.0 must be in \[0, 1\]"),
        ({"seed": -3}, "seed=-3 must be 0 or more"),
    ]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(data=str(root), out=str(tmp_path / "x"), **{**PROBE, **options})
    with pytest.raises(ValueError, match="Split 'validation' is not in"):
        train_judge(TrainConfig(data=str(root), out=str(tmp_path / "a"), val_split="validation", **PROBE))
    with pytest.raises(ValueError, match="Unknown timm model 'no_such_net'"):
        train_judge(TrainConfig(data=str(root), out=str(tmp_path / "b"), **{**PROBE, "model": "no_such_net"}))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ---------------------------------------------------------------- 9. the same weights whatever the thread count


def test_demo_sized_training_gives_the_same_weights_with_1_or_2_threads(root, tmp_path):
    """The demo's judge recipe (its timm model from scratch, finetune, 64 px, batch 32, lr 2e-3, fixed threads) on the
    colour root: the caller's thread count (1 or 2) changes nothing, neither the weights nor the metrics."""
    from dataigm.cli.demo import DemoConfig

    demo = DemoConfig()
    options = dict(
        model=demo.judge_model, pretrained=False, img_size=demo.img_size, mode="finetune", epochs=2, batch_size=32,
        lr=2e-3, augment=False, threshold_rule="fixed@0.5", threads=demo.threads, progress=False,
    )  # fmt: skip
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(train_judge(TrainConfig(data=str(root), out=str(tmp_path / f"t{threads}"), **options)))
            assert torch.get_num_threads() == threads  # the caller's setting comes back
    finally:
        torch.set_num_threads(before)
    one, two = results
    assert _same_weights(_weights(one), _weights(two))
    timing = ("seconds", "train_images_per_s")
    assert [{k: v for k, v in row.items() if k not in timing} for row in one.history] == [
        {k: v for k, v in row.items() if k not in timing} for row in two.history
    ]
    assert one.metrics == two.metrics
    assert json.loads((one.judge_dir / "config.json").read_text())["training"]["threads"] == demo.threads


def test_training_runs_with_deterministic_kernels_and_gives_the_process_its_settings_back(tmp_path):
    """Inside a run: deterministic algorithms (warn only), the run's threads; after it: the caller's settings."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from detectors.training.config import TrainConfig\n"
        "from detectors.training.trainer import _reproducible\n"
        "torch.set_num_threads(2)\n"
        f"cfg = TrainConfig(data={str(tmp_path)!r}, out={str(tmp_path / 'run')!r}, threads=1)\n"
        "with _reproducible(cfg):\n"
        "    inside = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(), torch.get_num_threads())\n"
        "after = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())\n"
        "print(inside, after)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(True, True, 1) (False, 2)"
