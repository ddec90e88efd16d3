"""The IGMU paper's MultClf heads: a ``classifier_head.pth`` with the released tensor names and shapes, written
here, loads strictly and scores images as an independent computation from the same tensors does, read the right
way up (the sigmoid is P(class 1) of ImageFolder's sorted class folders)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.data import write_color_root
from PIL import Image

from dataigm.cli import main
from detectors.data import build_index, decode_image
from detectors.judges import load_judge
from detectors.judges.igmu import CLASS_FOLDERS, concept_class_index, load_igmu_head

# the released checkpoints' tensors (Weights/<task>/classifier_head.pth of the IGMU repository)
HEAD_SHAPES = {
    "attention.0.weight": (256, 512),
    "attention.0.bias": (256,),
    "attention.2.weight": (512, 256),
    "attention.2.bias": (512,),
    "classifier.0.weight": (512,),
    "classifier.0.bias": (512,),
    "classifier.1.weight": (256, 512),
    "classifier.1.bias": (256,),
    "classifier.4.weight": (128, 256),
    "classifier.4.bias": (128,),
    "classifier.7.weight": (1, 128),
    "classifier.7.bias": (1,),
}


def head_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the released names and shapes (LayerNorm weights around 1)."""
    generator = torch.Generator().manual_seed(seed)
    state = {name: torch.randn(shape, generator=generator) * 0.2 for name, shape in HEAD_SHAPES.items()}
    state["classifier.0.weight"] += 1.0
    return state


def head_by_hand(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The paper's head written out: a sigmoid channel gate, then LayerNorm and a 512-256-128-1 MLP (eval mode)."""
    gate = torch.sigmoid(
        F.linear(
            F.relu(F.linear(x, state["attention.0.weight"], state["attention.0.bias"])), *_wb(state, "attention.2")
        )
    )
    h = F.layer_norm(x * gate, (512,), state["classifier.0.weight"], state["classifier.0.bias"])
    h = F.relu(F.linear(h, *_wb(state, "classifier.1")))
    h = F.relu(F.linear(h, *_wb(state, "classifier.4")))
    return torch.sigmoid(F.linear(h, *_wb(state, "classifier.7")))[:, 0]


def _wb(state: dict, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    return state[f"{name}.weight"], state[f"{name}.bias"]


@pytest.fixture(scope="module")
def clip512(tmp_path_factory, tiny_clip) -> Path:
    """The tiny CLIP's processor with a model that projects to 512 dimensions, as ViT-B/32 does."""
    from transformers import CLIPConfig, CLIPModel

    folder = tmp_path_factory.mktemp("clip512") / "clip"
    shutil.copytree(tiny_clip, folder)
    config = CLIPConfig.from_pretrained(tiny_clip)
    config.projection_dim = 512
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    layout = {("church", "test", "real"): [6], ("church", "test", "generated"): [6], ("nudity", "test", "laion"): [4]}
    return write_color_root(tmp_path_factory.mktemp("igmu-data") / "colors", layout)


def test_igmu_church_head_through_judge_eval_is_one_minus_the_paper_head_by_hand(clip512, root, tmp_path):
    # church is ImageFolder class 0 of {church, other}: P(church) is one minus the head's sigmoid
    from transformers import CLIPModel, CLIPProcessor

    state = head_state()
    torch.save(state, tmp_path / "classifier_head.pth")
    out = tmp_path / "eval"
    spec = f"igmu:task=object_church,head={tmp_path / 'classifier_head.pth'},clip={clip512}"
    code = main(
        ["judge", "eval", "--judge", spec, "--data", str(root), "--out", str(out), "--bootstrap", "0",
         "--device", "cpu", "--progress", "false"]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["judge"]["concepts"] == ["church"] and report["judge"]["task"] == "object_church"
    with open(out / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = {row["id"]: row for row in csv.DictReader(f)}
    entries = [e for e in build_index(root, split="test") if e.concept == "church"]
    assert {row["concept"] for row in rows.values()} == {"church"}  # the nudity images are not its concept

    model, processor = CLIPModel.from_pretrained(clip512).eval(), CLIPProcessor.from_pretrained(clip512)
    pixels = processor(images=[decode_image(e.read_bytes()) for e in entries], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        features = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)  # not normalised
        expected = 1.0 - head_by_hand(state, features).double().numpy()
    got = np.array([float(rows[e.uid]["probability"]) for e in entries])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert np.ptp(expected) > 1e-3
    assert [int(rows[e.uid]["present"]) for e in entries] == [int(p >= 0.5) for p in expected]


def test_igmu_head_loads_strictly(tmp_path):
    state = head_state()
    torch.save(state, tmp_path / "ok.pth")
    head = load_igmu_head(tmp_path / "ok.pth")
    assert not head.training
    x = torch.randn(3, 512)
    torch.testing.assert_close(torch.sigmoid(head(x))[:, 0], head_by_hand(state, x))

    missing = {k: v for k, v in state.items() if k != "classifier.7.bias"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="missing \\['classifier.7.bias'\\], unexpected \\[\\]"):
        load_igmu_head(tmp_path / "missing.pth")
    torch.save({**state, "classifier.9.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="unexpected \\['classifier.9.weight'\\]"):
        load_igmu_head(tmp_path / "extra.pth")
    torch.save({**state, "classifier.4.weight": torch.zeros(64, 256)}, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match="classifier.4.weight \\(64, 256\\) \\(expected \\(128, 256\\)\\)"):
        load_igmu_head(tmp_path / "shape.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read safely: it is not a checkpoint"):
        load_igmu_head(tmp_path / "junk.pth")


def test_igmu_options_and_fingerprint(clip512, tiny_clip, tmp_path):
    torch.save(head_state(0), tmp_path / "a.pth")
    torch.save(head_state(1), tmp_path / "b.pth")
    judge = load_judge(f"igmu:task=nudity,head={tmp_path / 'a.pth'},clip={clip512}", "cpu")
    assert judge.concepts == ["nudity"] and judge.thresholds == {"nudity": 0.5}
    again = load_judge(f"igmu:task=nudity,head={tmp_path / 'a.pth'},clip={clip512}", "cpu")
    other = load_judge(f"igmu:task=nudity,head={tmp_path / 'b.pth'},clip={clip512}", "cpu")
    assert judge.fingerprint() == again.fingerprint() != other.fingerprint()
    assert load_judge(f"igmu:task=van_gogh,head={tmp_path / 'a.pth'},clip={clip512}", "cpu").task == "style_vangogh"
    with pytest.raises(ValueError, match="Unknown IGMU task 'dogs'; valid tasks: nudity, object_church"):
        load_judge(f"igmu:task=dogs,head={tmp_path / 'a.pth'},clip={clip512}", "cpu")
    with pytest.raises(ValueError, match="needs option\\(s\\) \\['head'\\]"):
        load_judge("igmu:task=nudity", "cpu")
    with pytest.raises(ValueError, match="expects 512-dimensional CLIP features, but .* projects to 8"):
        load_judge(f"igmu:task=nudity,head={tmp_path / 'a.pth'},clip={tiny_clip}", "cpu")
    with pytest.raises(ValueError, match="does not exist"):
        load_judge(f"igmu:task=nudity,head={tmp_path / 'none.pth'},clip={clip512}", "cpu")


# the concept's class index, the specification: the IGMU repository's benchmark.py scores each task's forget images
# against these labels
EXPECTED_CONCEPT_INDEX = {"nudity": 0, "object_church": 0, "object_parachute": 1, "style_vangogh": 1}


@pytest.mark.parametrize("task", sorted(EXPECTED_CONCEPT_INDEX))
def test_igmu_concept_class_is_imagefolders_index_of_the_published_folders(task, tmp_path):
    from torchvision.datasets import ImageFolder

    concept_folder, other_folder = CLASS_FOLDERS[task]
    for name in (other_folder, concept_folder):  # created in the other order: only the names decide
        (tmp_path / name).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / name / "x.png")
    assert ImageFolder(str(tmp_path)).class_to_idx[concept_folder] == EXPECTED_CONCEPT_INDEX[task]
    assert concept_class_index(task) == EXPECTED_CONCEPT_INDEX[task]


@pytest.mark.parametrize(("task", "concept_is_class_1"), [("nudity", False), ("object_parachute", True)])
def test_igmu_reads_the_sigmoid_as_the_concept_class(task, concept_is_class_1, clip512, tmp_path):
    state = head_state()
    state["classifier.7.weight"].zero_()  # the logit is the bias, whatever the image
    state["classifier.7.bias"].fill_(1.25)
    torch.save(state, tmp_path / "head.pth")
    judge = load_judge(f"igmu:task={task},head={tmp_path / 'head.pth'},clip={clip512}", "cpu")
    prediction = judge.predict([Image.new("RGB", (32, 32), colour) for colour in ("red", "blue")])
    sigmoid = 1.0 / (1.0 + math.exp(-1.25))
    expected = sigmoid if concept_is_class_1 else 1.0 - sigmoid
    np.testing.assert_allclose(prediction.probabilities[:, 0], [expected, expected], rtol=1e-6)
    assert prediction.present[:, 0].tolist() == [expected >= 0.5] * 2
    assert judge.describe()["polarity"]["probability"] == (
        "sigmoid(logit)" if concept_is_class_1 else "1 - sigmoid(logit)"
    )


def test_igmu_card_states_the_polarity_and_the_dropout(clip512, root, tmp_path):
    torch.save(head_state(), tmp_path / "classifier_head.pth")
    out = tmp_path / "eval"
    spec = f"igmu:task=nudity,head={tmp_path / 'classifier_head.pth'},clip={clip512}"
    code = main(
        ["judge", "eval", "--judge", spec, "--data", str(root), "--out", str(out), "--bootstrap", "0",
         "--device", "cpu", "--progress", "false"]
    )  # fmt: skip
    assert code == 0
    assert main(["card", "--judge", str(out)]) == 0
    text = (out / "README.md").read_text(encoding="utf-8")
    assert "## How it reads an image" in text
    assert (
        "sorted order ['nude', 'safe']; the concept's folder `nude` is class 0, so P(nudity) = 1 - sigmoid(logit)"
        in text
    )
    assert "github.com/ryliu68/IGMU" in text and "benchmark.py never calls .eval()" in text
    assert "### nudity" in text  # the measured metrics follow
