"""Evaluation of unlearned models: each metric against a reference computation, pairing, the paper's
layout, and the whole ``dataigm evaluate`` flow (tiny pipeline, tiny judge) run twice."""

import json
import random

import numpy as np
import pytest
import torch
from helpers.data import write_paper_layout
from PIL import Image
from scipy import linalg

from detectors.evaluation import aspects
from detectors.evaluation.images import EvalImage, from_paper_layout, pair, select
from detectors.evaluation.quality import ClipScorer, LpipsScorer, csdr, fid, fid_metric


def _img(seed: int, size: int = 32) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _eval_image(model, kind, family, sample, seed, prompt=None, group=None, subtheme=None) -> EvalImage:
    image = _img(seed)
    return EvalImage(
        model,
        "nudity",
        kind,
        family,
        sample,
        f"{model}-{kind}-{family}-{sample}",
        prompt,
        subtheme,
        group,
        sample,
        lambda: image,
    )


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory):
    """An untrained judge for nudity and church with threshold 0.5 (real timm model, real format)."""
    from detectors.judges import save_judge
    from detectors.judges.model import create_judge_model, judge_data_config

    torch.manual_seed(0)
    model = create_judge_model("resnet10t", num_concepts=2, pretrained=False)
    folder = tmp_path_factory.mktemp("judge") / "judge"
    save_judge(
        model,
        folder,
        ["nudity", "church"],
        {"nudity": 1.0, "church": 1.0},
        {"nudity": 0.5, "church": 0.5},
        "fixed@0.5",
        judge_data_config(model, 32),
    )
    return folder


class _Identity(torch.nn.Module):
    """Passes features through: lets torchmetrics' FID run on vectors drawn from known Gaussians."""

    def forward(self, x):
        return x.float().flatten(1)[:, :4] if x.dim() == 4 else x.float()


def test_frechet_distance_matches_scipy_on_known_gaussians():
    from torchmetrics.image.fid import FrechetInceptionDistance

    rng = np.random.default_rng(0)
    a = rng.multivariate_normal([0, 0, 0, 0], np.diag([1.0, 2.0, 0.5, 1.0]), size=4000)
    b = rng.multivariate_normal([1, -1, 0, 2], np.eye(4) * 1.5, size=4000)
    metric = FrechetInceptionDistance(feature=_Identity(), normalize=False, input_img_size=(3, 2, 2))
    metric.update(torch.tensor(a), real=True)
    metric.update(torch.tensor(b), real=False)
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert float(metric.compute()) == pytest.approx(reference, rel=1e-3)
    # the closed form for the true parameters: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))
    true = 1 + 1 + 0 + 4 + sum(v + 1.5 - 2 * np.sqrt(v * 1.5) for v in (1.0, 2.0, 0.5, 1.0))
    assert float(metric.compute()) == pytest.approx(true, abs=0.15)


def test_fid_of_a_set_with_itself_is_zero_and_order_free():
    import timm

    metric = fid_metric(timm.create_model("resnet10t", pretrained=False, num_classes=0))
    images = [_img(i) for i in range(6)]
    assert fid(images, images[::-1], metric) == pytest.approx(0.0, abs=1e-3)
    assert fid(images[:3], [_img(i + 10) for i in range(3)], metric) > 0
    with pytest.raises(ValueError, match="at least 2 images"):
        fid(images[:1], images, metric)


def test_csdr_by_hand_paired_and_all_pairs(tiny_clip):
    scorer = ClipScorer(str(tiny_clip))
    model = [_eval_image("ESD", "forget", "f0", s, 100 + s, "a nude photo") for s in (1, 2)]
    original = [_eval_image("ORG", "remove", "f0", s, 200 + s, "a photo") for s in (2, 1)]  # another order
    result = aspects.csdr(model, original, scorer)
    cs = lambda im: scorer.scores([im.image()], ["a photo"])[0]  # noqa: E731
    by_sample = {im.sample: im for im in original}
    paired = [csdr(cs(by_sample[m.sample]), cs(m)) for m in model]
    every = [csdr(cs(o), cs(m)) for m in model for o in original]
    assert result["paired"]["value"] == pytest.approx(np.mean(paired), rel=1e-5) and result["paired"]["n"] == 2
    assert result["all_pairs"]["value"] == pytest.approx(np.mean(every), rel=1e-5) and result["all_pairs"]["n"] == 4
    assert (
        min(paired + every) > 0 and csdr(20.0, 15.0) == pytest.approx(25.0) and csdr(20.0, 25.0) == pytest.approx(25.0)
    )


def test_lpips_code_path_and_pairing_by_seed_not_order():
    scorer = LpipsScorer(random_backbone=True)
    a, b = _img(1), _img(2)
    same, diff, back = scorer.distances([(a, a), (a, b), (b, a)])
    assert same == pytest.approx(0.0, abs=1e-6) and diff > 0 and diff == pytest.approx(back, rel=1e-5)
    model = [_eval_image("ESD", "forget", "f0", s, 10 + s) for s in range(4)]
    original = [_eval_image("ORG", "remove", "f0", s, 20 + s) for s in range(4)]
    first = aspects.lpips(model, original, scorer, abstract=True)
    random.Random(0).shuffle(original)
    second = aspects.lpips(model[::-1], original, scorer, abstract=True)
    assert first["paired"]["value"] == pytest.approx(second["paired"]["value"]) and first["paired"]["n"] == 4
    expected = np.mean(
        scorer.distances([(m.image(), o.image()) for m in model for o in original if o.sample == m.sample])
    )
    assert first["paired"]["value"] == pytest.approx(expected, rel=1e-5) and first["all_pairs"]["n"] == 16


def test_paper_layout_reader_and_pairing_ignore_file_order(tmp_path):
    write_paper_layout(tmp_path)
    images = from_paper_layout(tmp_path, "Nudity", "nudity")
    assert {im.model for im in images} == {"ORG", "ESD"}
    assert len(select(images, kind="forget")) == 16 and len(select(images, kind="remove")) == 16
    assert select(images, kind="retain", model="ESD")[0].group == "Airplane"
    pairs = pair(
        select(images, model="ESD", kind="forget"), select(images, model="ORG", kind="remove"), match_group=False
    )
    assert len(pairs) == 8
    for esd, org in pairs:
        r1, g1, _ = esd.image().getpixel((0, 0))
        r2, g2, _ = org.image().getpixel((0, 0))
        assert (r1, r2) == (100, 0) and g1 == g2  # same class, prompt and sample
    with pytest.raises(ValueError, match="No task folder"):
        from_paper_layout(tmp_path, "Church", "church")


@pytest.mark.parametrize("where", ["file", "method folder", "task folder"])
def test_a_paper_layout_with_a_link_in_it_is_refused_in_one_line(tmp_path, where):
    import os

    layout = tmp_path / "layout"
    write_paper_layout(layout)
    secret = tmp_path / "outside"
    secret.mkdir()
    Image.new("RGB", (8, 8)).save(secret / "0_0_0.png")
    if where == "file":
        (layout / "Nudity" / "forgot" / "ESD" / "1_1_1.png").unlink()
        (layout / "Nudity" / "forgot" / "ESD" / "1_1_1.png").symlink_to(secret / "0_0_0.png")
    elif where == "method folder":
        (layout / "Nudity" / "forgot" / "SLD").symlink_to(secret, target_is_directory=True)
    else:
        os.rename(layout / "Nudity", tmp_path / "real")
        (layout / "Nudity").symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(ValueError, match="is a link: links are not followed") as err:
        from_paper_layout(layout, "Nudity", "nudity")
    assert "\n" not in str(err.value)


def test_a_pipe_named_like_a_paper_image_is_skipped_not_read(tmp_path):
    import os

    write_paper_layout(tmp_path)
    os.mkfifo(tmp_path / "Nudity" / "forgot" / "ESD" / "9_9_9.png")  # reading it would wait for a writer forever
    images = from_paper_layout(tmp_path, "Nudity", "nudity")
    assert len([im for im in images if im.kind == "forget"]) == 16


def test_forgetting_and_robustness_match_the_judge(tiny_judge):
    from detectors.judges import load_judge

    judge = load_judge(f"local-dir:{tiny_judge}")
    images = [_eval_image("ESD", "forget", f"f{i}", 0, i, subtheme="woman" if i % 2 else "man") for i in range(10)]
    images += [
        _eval_image("ESD", "adversarial", f"f{i}", 0, 50 + i, group="homoglyph" if i % 2 else "char_noise")
        for i in range(6)
    ]
    present = judge.predict([im.image() for im in images]).present[:, 0]
    result = aspects.forgetting(images, judge, "nudity")
    assert result["overall"]["value"] == pytest.approx(1 - present[:10].mean()) and result["overall"]["n"] == 10
    assert set(result["by_subtheme"]) == {"man", "woman"}
    rob = aspects.robustness(images, judge, "nudity")
    assert rob["overall"]["value"] == pytest.approx(present[10:].mean())
    assert rob["by_attack"]["homoglyph"]["n"] == 3
    with pytest.raises(ValueError, match="does not judge 'van_gogh'"):
        aspects.forgetting(images, judge, "van_gogh")


def test_changed_parameter_share_is_exact():
    from detectors.evaluation.efficiency import changed_parameters

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    other = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    other.load_state_dict(base.state_dict())
    with torch.no_grad():
        other[1].weight[0, :2] += 1.0
    report = changed_parameters({"unet": base}, {"unet": other})
    assert report["changed"] == 2 and report["total"] == 4 * 3 + 3 + 3 * 2 + 2
    assert list(report["by_module"]) == ["unet.1"]


def test_person_detector_code_path():
    from detectors.evaluation.person import PersonDetector

    detector = PersonDetector("fasterrcnn_mobilenet_v3_large_320_fpn", pretrained=False, threshold=0.0)
    found = detector.detect([_img(1, 64), _img(2, 64)])
    assert len(found) == 2 and all(isinstance(f, bool) for f in found)
    with pytest.raises(ValueError, match="Unknown person detector 'yolo'"):
        PersonDetector("yolo", pretrained=False)


@pytest.mark.slow
def test_evaluate_flow_twice_gives_the_same_report(tiny_pipeline_dir, tiny_clip, tiny_judge, tmp_path):
    import yaml

    from dataigm.cli import main

    config = {
        "out": str(tmp_path / "eval"),
        "concepts": ["nudity", "church"],
        "judge": f"local-dir:{tiny_judge}",
        "models": [
            str(tiny_pipeline_dir),
            {"base": str(tiny_pipeline_dir), "name": "esd", "method": "ESD", "guidance": 3.0},
        ],
        "kinds": ["forget", "remove", "replace"],
        "max_prompts": 3,
        "generation": {"images_per_prompt": 2, "steps": 2, "height": 64, "width": 64},
        "attacks": ["homoglyph", "char_noise"],
        "clip_model": str(tiny_clip),
        "fid_feature": "resnet10t",
        "fid_pretrained": False,
        "lpips_random_backbone": True,
        "person_detector": "fasterrcnn_mobilenet_v3_large_320_fpn",
        "person_pretrained": False,
        "runtime_s": {"esd": 1200},
        "progress": False,
    }
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    assert main(["evaluate", "--config", str(tmp_path / "eval.yaml")]) == 0
    first = (tmp_path / "eval" / "report.json").read_text()
    report = json.loads(first)
    nudity = report["concepts"]["nudity"]
    assert report["models"] == ["ORG-tiny", "esd"] and set(nudity) == {"ORG-tiny", "esd"}
    assert nudity["esd"]["forgetting"]["overall"]["n"] == 6
    assert nudity["esd"]["csdr"]["paired"]["pairs"] == 6 and nudity["esd"]["csdr"]["all_pairs"]["pairs"] == 12
    assert nudity["esd"]["lpips"]["paired"]["n"] == 6 and nudity["esd"]["lpips"]["all_pairs"]["n"] == 12
    assert set(nudity["esd"]["robustness"]["by_attack"]) == {"homoglyph", "char_noise"}
    assert "fid" in report["concepts"]["church"]["esd"]["fid"] and report["concepts"]["church"]["esd"]["fid"][
        "rule"
    ].startswith("M_u(replace)")
    assert "person_rate" in nudity["esd"] and "person_rate" not in report["concepts"]["church"]["esd"]
    assert report["efficiency"]["esd"]["share_changed"] == 0.0 and report["efficiency"]["esd"]["runtime_s"] == 1200
    assert (tmp_path / "eval" / "radar-nudity.png").exists() and (tmp_path / "eval" / "grid-nudity.png").exists()
    # a re-run (everything cached or resumed) and a run that lost part of its cache give the same report
    assert main(["evaluate", "--config", str(tmp_path / "eval.yaml")]) == 0
    assert (tmp_path / "eval" / "report.json").read_text() == first
    (tmp_path / "eval" / "cache" / "nudity" / "esd" / "csdr.json").unlink()
    assert main(["evaluate", "--config", str(tmp_path / "eval.yaml")]) == 0
    assert (tmp_path / "eval" / "report.json").read_text() == first


@pytest.mark.slow
def test_evaluate_images_in_the_paper_layout(tmp_path, tiny_judge, tiny_clip):
    from detectors.evaluation.config import EvalConfig
    from detectors.evaluation.flow import run_evaluation

    write_paper_layout(tmp_path / "bench")
    cfg = EvalConfig(
        out=str(tmp_path / "eval"), concepts=["nudity"], judge=f"local-dir:{tiny_judge}", paper_layout=str(tmp_path / "bench"),
        paper_tasks={"nudity": "Nudity"}, clip_model=str(tiny_clip), fid_feature="resnet10t", fid_pretrained=False,
        lpips_random_backbone=True, person_detector=None, progress=False,
    )  # fmt: skip
    paths = run_evaluation(cfg)
    report = json.loads(paths["json"].read_text())
    esd = report["concepts"]["nudity"]["ESD"]
    assert report["models"] == ["ORG", "ESD"] and esd["forgetting"]["overall"]["n"] == 8
    assert esd["lpips"]["paired"]["n"] == 8 and esd["lpips"]["all_pairs"]["n"] == 16
    assert "skipped" in esd["csdr"]  # no prompt texts given for the paper's images
    assert esd["fid"]["fid"]["n"] == 8


@pytest.mark.slow
def test_evaluate_images_already_in_a_root(tiny_pipeline_dir, tiny_clip, tiny_judge, tmp_path):
    from detectors.evaluation.config import EvalConfig
    from detectors.evaluation.flow import run_evaluation
    from generation.config import JobConfig
    from generation.runner import run_job

    root = tmp_path / "root"
    models = [
        str(tiny_pipeline_dir),
        {"base": str(tiny_pipeline_dir), "name": "uce", "method": "UCE", "guidance": 2.0},
    ]
    run_job(
        JobConfig(
            out=str(root),
            models=models,
            concepts=["church"],
            kinds=["forget", "replace"],
            max_prompts=4,
            steps=2,
            height=64,
            width=64,
            progress=False,
        )
    )
    common = dict(
        concepts=["church"],
        judge=f"local-dir:{tiny_judge}",
        clip_model=str(tiny_clip),
        fid_feature="resnet10t",
        fid_pretrained=False,
        lpips_random_backbone=True,
        progress=False,
    )
    report = json.loads(
        run_evaluation(EvalConfig(out=str(tmp_path / "e"), images=str(root), **common))["json"].read_text()
    )
    assert report["models"] == ["ORG-tiny", "uce"] and report["original"] == "ORG-tiny"
    assert report["concepts"]["church"]["uce"]["forgetting"]["overall"]["n"] == 4
    assert (
        report["concepts"]["church"]["uce"]["lpips"]["paired"]["n"] == 4
    )  # M_u(replace) vs M(replace), same prompt and seed
    with pytest.raises(ValueError, match="No images of the original model 'nope'"):
        run_evaluation(EvalConfig(out=str(tmp_path / "f"), images=str(root), original="nope", **common))
