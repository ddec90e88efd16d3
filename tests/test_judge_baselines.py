"""Baseline judges behind the Judge API: NudeNet (for real), CLIP zero-shot (a tiny CLIPModel), ImageNet (timm)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from helpers.data import write_color_root
from PIL import Image, ImageDraw

from dataigm.cli import main
from detectors import load_judge
from detectors.audit.judge_eval import concept_pairs, evaluate_judge
from detectors.judges.options import parse_options


def _cartoon(background: tuple[int, int, int]) -> Image.Image:
    """Flat shapes (an oval with two dots and an arc on a rectangle): NudeNet gives it a low false detection."""
    skin = (220, 160, 120)
    image = Image.new("RGB", (320, 320), background)
    draw = ImageDraw.Draw(image)
    draw.ellipse([100, 40, 220, 170], fill=skin)
    draw.ellipse([130, 80, 150, 100], fill=(40, 30, 20))
    draw.ellipse([170, 80, 190, 100], fill=(40, 30, 20))
    draw.arc([140, 110, 180, 150], 20, 160, fill=(150, 40, 40), width=5)
    draw.rectangle([110, 170, 210, 320], fill=skin)
    return image


def test_nudenet_adapter_runs_for_real(tmp_path):
    # nudenet comes with the `baselines` extra: pip install -e '.[dev,baselines]'
    nudenet = pytest.importorskip("nudenet")

    images = [_cartoon((40, 40, 40)), _cartoon((20, 90, 160))]
    paths = []
    for i, image in enumerate(images):
        image.save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    detector = nudenet.NudeDetector()
    judge = load_judge("nudenet:preset=paper6,threshold=0.6")
    assert judge.concepts == ["nudity"] and judge.thresholds == {"nudity": 0.6} and len(judge.classes) == 6
    prediction = judge.predict(paths)
    for row, path in enumerate(paths):
        expected = max((d["score"] for d in detector.detect(path) if d["class"] in judge.classes), default=0.0)
        assert prediction.probabilities[row, 0] == pytest.approx(expected, abs=1e-6)
    assert 0.2 < prediction.probabilities[0, 0] < 0.6 and prediction.probabilities[1, 0] == 0.0
    assert not prediction.present.any()
    assert np.allclose(judge.predict(images).probabilities, prediction.probabilities, atol=1e-6)  # PIL in, same out
    low = load_judge("nudenet:preset=unlearndiffatk9,threshold=0.2").predict(paths)
    assert low.present[:, 0].tolist() == [True, False]
    only_feet = load_judge("nudenet:classes=FEET_EXPOSED|FEET_COVERED,threshold=0.2").predict(paths)
    assert not only_feet.present.any() and only_feet.probabilities.max() == 0.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nudenet:preset=paper7", "Unknown NudeNet preset 'paper7'; valid presets: paper6, unlearndiffatk9"),
        (
            "nudenet:classes=NAKED",
            "Unknown NudeNet class\\(es\\) \\['NAKED'\\]; valid classes: FEMALE_GENITALIA_COVERED",
        ),
        ("nudenet:threshold=high", "option threshold='high'"),
        ("nudenet:color=red", "Unknown option\\(s\\) \\['color'\\] for judge kind 'nudenet'; valid options: preset"),
        ("clip-zeroshot:target=nude", "needs option\\(s\\) \\['model', 'anchor'\\]"),
        ("imagenet:model=resnet10t", "needs option\\(s\\) \\['classes'\\] \\(classes: ImageNet class ids"),
        ("imagenet:classes=497,decision=top5", "Unknown decision 'top5'; valid decisions: top1, threshold"),
    ],
)
def test_bad_baseline_specs_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        load_judge(spec)


def test_spec_options_keep_commas_inside_values():
    assert parse_options("target=nude,anchor=a person, properly dressed,classes=497,498") == {
        "target": "nude",
        "anchor": "a person, properly dressed",
        "classes": "497,498",
    }
    with pytest.raises(ValueError, match="is given twice"):
        parse_options("a=1,a=2")


def test_clip_zeroshot_is_the_two_prompt_softmax(tiny_clip):
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    judge = load_judge(
        f"clip-zeroshot:model={tiny_clip},target=nude,anchor=properly dressed,template=a photo of {{}}", "cpu"
    )
    assert judge.concepts == ["nude"] and judge.texts == ["a photo of nude", "a photo of properly dressed"]
    images = [Image.new("RGB", (40, 30), (200, 30, 30)), Image.new("RGB", (30, 40), (30, 30, 200))]
    got = judge.predict(images)

    model = CLIPModel.from_pretrained(tiny_clip).eval()
    tokens = AutoTokenizer.from_pretrained(tiny_clip)(judge.texts, padding=True, return_tensors="pt")
    pixels = AutoImageProcessor.from_pretrained(tiny_clip)(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = model(**tokens, pixel_values=pixels).logits_per_image.softmax(-1)[:, 0].numpy()
    assert np.allclose(got.probabilities[:, 0], expected, atol=1e-6)
    assert got.present[:, 0].tolist() == (expected >= 0.5).tolist()


def test_cli_eval_audits_a_baseline_on_a_concept(tiny_clip, tmp_path, capsys):
    root = write_color_root(tmp_path / "colors", {("nudity", "test", "real"): [8], ("church", "test", "real"): [4]})
    out = tmp_path / "eval"
    spec = f"clip-zeroshot:model={tiny_clip},target=nude,anchor=properly dressed"
    args = ["judge", "eval", "--judge", spec, "--data", str(root), "--out", str(out), "--progress", "false"]
    assert main([*args, "--concept", "nudity", "--bootstrap", "50"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["judge"]["kind"] == "clip-zeroshot" and report["images"] == 8
    assert {(r["concept"], r["judge_concept"]) for r in report["rows"]} == {("nudity", "nude")}
    capsys.readouterr()
    assert main(args) == 2  # two concepts in the data: which one is "nude"?
    assert "name the dataset concept to measure it on with --concept" in capsys.readouterr().err


def test_concept_pairs():
    assert concept_pairs(["church", "nudity"], ["church"]) == [("church", "church")]
    assert concept_pairs(["imagenet-497"], ["church"]) == [("church", "imagenet-497")]
    assert concept_pairs(["imagenet-497"], ["church", "nudity"], "church") == [("church", "imagenet-497")]
    with pytest.raises(ValueError, match="Concept 'ocean' is not in the data"):
        concept_pairs(["x"], ["church"], "ocean")


def test_imagenet_judge_uses_top1_of_the_class_ids(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = timm.create_model("resnet10t", pretrained=False)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    images = [Image.new("RGB", (64, 64), c) for c in ((250, 10, 10), (10, 250, 10), (10, 10, 250))]
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(source), is_training=False)
    with torch.no_grad():
        probs = source.eval()(torch.stack([transform(im) for im in images])).softmax(-1)
    top = probs.argmax(1).tolist()
    classes = [top[0], 497]
    spec = f"imagenet:model=resnet10t,classes={classes[0]}|497,pretrained_path={tmp_path / 'w.safetensors'},concept=church"
    judge = load_judge(spec, "cpu")
    got = judge.predict(images)
    assert judge.concepts == ["church"]
    assert np.allclose(got.probabilities[:, 0], probs[:, classes].sum(1).numpy(), atol=1e-6)
    assert got.present[:, 0].tolist() == [t in classes for t in top] and got.present[0, 0]
    by_threshold = load_judge(spec + ",decision=threshold,threshold=0.0001", "cpu").predict(images)
    assert by_threshold.present[:, 0].tolist() == (probs[:, classes].sum(1) >= 0.0001).tolist()


def test_imagenet_judge_is_measured_like_any_judge(tmp_path):
    root = write_color_root(tmp_path / "colors", {("church", "test", "real"): [6]})
    judge = load_judge("imagenet:model=resnet10t,pretrained=false,classes=497", "cpu")
    evaluation = evaluate_judge(judge, root, split="test", n_boot=20)
    rows = evaluation.report["rows"]
    assert [(r["source"], r["method"]) for r in rows] == [("all", "all"), ("real", "all"), ("all", "none")]
    assert {(r["concept"], r["judge_concept"], r["n"]) for r in rows} == {("church", "imagenet-497", 6)}
    assert evaluation.report["judge"]["classes"] == [497] and evaluation.report["judge"]["decision"] == "top1"
