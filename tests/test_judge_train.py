"""``dataigm judge train`` and ``detectors.training.trainer``: learning, the masked loss, resume, feature caching, weights."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
import timm
import torch
import yaml
from helpers.data import write_color_root
from helpers.models import TINY_PROBE

import detectors.training.features
import detectors.training.trainer
from dataigm.cli import main
from detectors import TrainConfig, load_judge, masked_bce, train_judge
from detectors.audit.judge_eval import evaluate_judge

# the default judge's architecture family (CLIP ViT-B/32, QuickGELU) at a tiny size
TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
PROBE = TINY_PROBE


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_color_root(tmp_path_factory.mktemp("judge-train") / "colors")


def _summary(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_cli_train_learns_the_easy_set(root, tmp_path, capsys):
    config = tmp_path / "judge.yaml"
    out = tmp_path / "run"
    config.write_text(
        yaml.safe_dump(
            {
                "data": str(root),
                "out": str(out),
                "model": "vit_base_patch32_clip_quickgelu_224.openai",
                "pretrained": False,
                "model_kwargs": TINY_VIT,
                "mode": "finetune",
                "epochs": 2,
                "batch_size": 16,
                "lr": 0.003,
                "val_fraction": 0.25,
            }
        )
    )
    assert main(["judge", "train", "--config", str(config), "--epochs", "6", "--progress", "false"]) == 0
    assert "judge saved to" in capsys.readouterr().out

    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["epochs"] == 6 and resolved["model_kwargs"] == TINY_VIT and resolved["pretrained"] is False
    rows = _summary(out / "summary.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7))
    assert float(rows[-1]["train_loss"]) < 0.5 * float(rows[0]["train_loss"])
    split = json.loads((out / "split.json").read_text())
    assert split["validation_ids"] and "by prompt" not in split["rule"] and "prompt_id" in split["rule"]

    judge = load_judge(f"local-dir:{out / 'judge'}", device="cpu")
    assert judge.concepts == ["church", "nudity"]
    report = evaluate_judge(judge, root, split="test", n_boot=0).report
    overall = {r["concept"]: r["metrics"] for r in report["rows"] if r["source"] == r["method"] == "all"}
    assert set(overall) == {"church", "nudity"}
    for metrics in overall.values():
        assert metrics["accuracy"]["value"] >= 0.9 and metrics["auroc"]["value"] >= 0.95


def test_masked_loss_ignores_unlabelled_concepts():
    logits = torch.tensor([[2.0, -7.0], [0.5, 30.0], [-1.0, 0.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # rows 0-1 labelled for concept 0, row 2 for 1
    loss = masked_bce(logits, targets, mask)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor([2.0, 0.5, 0.0]), torch.tensor([1.0, 0.0, 1.0])
    )
    assert torch.allclose(loss, expected)
    loss.backward()
    assert logits.grad[0, 1] == 0 and logits.grad[1, 1] == 0 and logits.grad[2, 0] == 0
    assert (logits.grad[mask.bool()] != 0).all()
    changed = logits.detach().clone()
    changed[~mask.bool()] = torch.tensor([100.0, -100.0, 55.0])  # anything in the unlabelled cells
    assert torch.equal(masked_bce(changed, targets, mask), loss.detach())
    assert masked_bce(logits, targets, torch.zeros_like(mask)) == 0
    with pytest.raises(ValueError, match="must match"):
        masked_bce(logits, targets[:, :1], mask)


def _head(result) -> dict:
    return {k: v.clone() for k, v in result.judge.model.get_classifier().state_dict().items()}


def test_resume_continues_from_the_last_epoch(root, tmp_path, monkeypatch):
    options = {**PROBE, "cache_dir": str(tmp_path / "cache")}
    full = train_judge(TrainConfig(data=str(root), out=str(tmp_path / "full"), **options))

    calls: list[int] = []
    original = detectors.training.trainer._Trainer.train_epoch

    def killed_after_two(self, epoch, bar):
        if epoch == 2:
            raise KeyboardInterrupt  # the job is killed during the third epoch
        calls.append(epoch)
        return original(self, epoch, bar)

    monkeypatch.setattr(detectors.training.trainer._Trainer, "train_epoch", killed_after_two)
    config = TrainConfig(data=str(root), out=str(tmp_path / "part"), **options)
    with pytest.raises(KeyboardInterrupt):
        train_judge(config)
    assert calls == [0, 1] and len(_summary(tmp_path / "part" / "summary.csv")) == 2
    with pytest.raises(ValueError, match="already holds a training run; pass --resume true"):
        train_judge(config)

    def recorded(self, epoch, bar):
        calls.append(epoch)
        return original(self, epoch, bar)

    monkeypatch.setattr(detectors.training.trainer._Trainer, "train_epoch", recorded)
    calls.clear()
    resumed = train_judge(TrainConfig(data=str(root), out=str(tmp_path / "part"), resume=True, **options))
    assert calls == [2, 3]
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3, 4]
    for mine, reference in zip(resumed.history, full.history, strict=True):
        assert mine["train_loss"] == pytest.approx(reference["train_loss"], abs=1e-6)
        assert mine["val_loss"] == pytest.approx(reference["val_loss"], abs=1e-6)
    for name, tensor in _head(full).items():
        torch.testing.assert_close(_head(resumed)[name], tensor, rtol=0, atol=1e-6)
    assert [int(r["epoch"]) for r in _summary(tmp_path / "part" / "summary.csv")] == [1, 2, 3, 4]

    # nothing to resume: a fresh run (tests/test_judge_trust.py checks the log line and the weights)
    fresh = train_judge(TrainConfig(data=str(root), out=str(tmp_path / "none"), resume=True, **options))
    assert [row["epoch"] for row in fresh.history] == [1, 2, 3, 4]
    for name, tensor in _head(full).items():
        torch.testing.assert_close(_head(fresh)[name], tensor, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="Cannot resume .* the run differs"):
        train_judge(
            TrainConfig(data=str(root), out=str(tmp_path / "part"), resume=True, **{**options, "model": "resnet18"})
        )


def test_feature_caching_gives_the_same_head_as_no_caching(root, tmp_path, monkeypatch):
    extractions: list[int] = []
    original = detectors.training.features.extract_features

    def counted(*args, **kwargs):
        extractions.append(len(args[1]))
        return original(*args, **kwargs)

    monkeypatch.setattr(detectors.training.features, "extract_features", counted)
    cache = tmp_path / "cache"
    cached = train_judge(TrainConfig(data=str(root), out=str(tmp_path / "cached"), cache_dir=str(cache), **PROBE))
    assert len(extractions) == 2 and len(list(cache.glob("*.safetensors"))) == 2  # train and validation, once
    uncached = train_judge(TrainConfig(data=str(root), out=str(tmp_path / "uncached"), cache_features=False, **PROBE))
    assert len(extractions) == 2  # the uncached run runs the backbone in every step instead
    for name, tensor in _head(cached).items():
        torch.testing.assert_close(_head(uncached)[name], tensor, rtol=1e-4, atol=1e-5)
    for a, b in zip(cached.history, uncached.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
    again = train_judge(TrainConfig(data=str(root), out=str(tmp_path / "again"), cache_dir=str(cache), **PROBE))
    assert len(extractions) == 2  # a later run with the same backbone, transform and data reads the cache
    for name, tensor in _head(cached).items():
        torch.testing.assert_close(_head(again)[name], tensor, rtol=0, atol=0)


def test_pretrained_path_loads_local_weights_and_probe_keeps_them(root, tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(123)
    source = timm.create_model("resnet10t", pretrained=False)
    weights = tmp_path / "resnet10t.safetensors"
    save_file(source.state_dict(), str(weights))
    options = {**PROBE, "pretrained": True, "epochs": 1}
    result = train_judge(
        TrainConfig(data=str(root), out=str(tmp_path / "run"), pretrained_path=str(weights), **options)
    )
    saved = load_file(str(result.judge_dir / "model.safetensors"))
    reference = source.state_dict()
    backbone = [k for k in reference if not k.startswith("fc.")]
    assert backbone and all(torch.equal(saved[k], reference[k]) for k in backbone)
    assert saved["fc.weight"].shape == (2, source.num_features)
    config = json.loads((result.judge_dir / "config.json").read_text())
    assert config["training"]["pretrained"] == "file:resnet10t.safetensors"
    with pytest.raises(ValueError, match="is not a file"):
        train_judge(
            TrainConfig(data=str(root), out=str(tmp_path / "x"), pretrained_path=str(tmp_path / "nope"), **options)
        )


class _Touch:
    """A pickled object whose loading would create a file."""

    def __init__(self, path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_pretrained_path_that_is_no_checkpoint_or_needs_code_is_one_line(root, tmp_path, capsys):
    marker = tmp_path / "ran"
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(bytes(range(256)) * 20)
    needs_code = tmp_path / "hooked.pth"
    torch.save({"fc.weight": torch.ones(2, 2), "hook": _Touch(marker)}, needs_code)
    cases = {
        garbage: "cannot be read safely: it is not a checkpoint (neither a safetensors file nor a PyTorch state dict)",
        needs_code: "cannot be read safely: it is a pickle that needs code to load (builtins.getattr, pathlib.Path, "
        "pathlib.PosixPath), which is never run",
    }
    for path, message in cases.items():
        argv = ["judge", "train", "--data", str(root), "--out", str(tmp_path / "run"), "--model", "resnet10t"]
        assert main([*argv, "--pretrained", "true", "--pretrained-path", str(path), "--progress", "false"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"dataigm judge train: error: pretrained_path {str(path)!r} {message}"), err
        assert err.count("\n") == 1 and "weights_only=False" not in err  # one line, no advice to run the pickle
    assert not marker.exists()


def test_early_stopping_and_summary(root, tmp_path):
    result = train_judge(
        TrainConfig(data=str(root), out=str(tmp_path / "run"), early_stopping=1, **{**PROBE, "lr": 0.0, "epochs": 5})
    )
    assert [row["epoch"] for row in result.history] == [1, 2]  # lr 0: no better validation loss after epoch 1
    assert result.metrics["best_epoch"] == 1
    rows = _summary(tmp_path / "run" / "summary.csv")
    assert {"epoch", "lr", "train_loss", "val_loss", "val_acc/church", "val_auroc/nudity"} <= set(rows[0])


def test_bad_options_are_named(root, tmp_path):
    with pytest.raises(ValueError, match="Unknown mode 'linear'; valid modes: probe, finetune"):
        TrainConfig(data=str(root), out=str(tmp_path), mode="linear")
    with pytest.raises(ValueError, match="Unknown threshold rule 'best'; valid rules: max_f1, fpr@X"):
        TrainConfig(data=str(root), out=str(tmp_path), threshold_rule="best")
    with pytest.raises(ValueError, match="Split 'validation' is not in .*; its splits: test, train"):
        train_judge(TrainConfig(data=str(root), out=str(tmp_path / "a"), val_split="validation", **PROBE))
    with pytest.raises(ValueError, match="Unknown timm model 'no_such_net'"):
        train_judge(TrainConfig(data=str(root), out=str(tmp_path / "b"), **{**PROBE, "model": "no_such_net"}))
    assert TrainConfig(data="d", out="o", concepts="church, nudity").concepts == ["church", "nudity"]


def test_cli_prints_its_resolved_config(root, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["judge", "train", "--data", str(root), "--out", "x", "--model", "resnet10t", "--print_config"])
    assert stop.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"] == "resnet10t" and printed["mode"] == "probe" and printed["threshold_rule"] == "max_f1"


def test_cli_reports_a_bad_option_without_a_traceback(root, tmp_path, capsys):
    code = main(["judge", "train", "--data", str(root), "--out", str(tmp_path / "o"), "--threshold-rule", "fpr@2"])
    assert code == 2
    assert "dataigm judge train: error: Threshold rule 'fpr@2': X must be in (0, 1)" in capsys.readouterr().err


def test_dataset_revision_is_the_manifest_checksum(root, tmp_path):
    result = train_judge(TrainConfig(data=str(root), out=str(tmp_path / "run"), **{**PROBE, "epochs": 1}))
    config = json.loads((result.judge_dir / "config.json").read_text())
    assert config["dataset"]["manifest_sha256"] == hashlib.sha256((root / "dataigm.json").read_bytes()).hexdigest()
    assert config["dataset"]["counts"]["train"]["church"]["target"] > 0
