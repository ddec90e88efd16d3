"""``dataigm bench run`` computes FID and CLIP score on a suite's reference prompt set (a tiny COCO-10k-like set on
the toy world), equal to an independent computation; what they need is checked before anything is written."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dataigm.cli import main
from dataigm.suite import load_suite
from detectors.bench.results import read_results

# captions whose cosine with the tiny CLIP model is positive for some images, negative (clipped to 0) for others
CAPTIONS = ["a photo", "the the the", "a photo of a street", "red"]


def bench(*argv) -> int:
    return main(["bench", *[str(a) for a in argv]])


def coco_suite(folder: Path) -> tuple[Path, Path]:
    """The toy suite with a COCO-like reference prompt set (not bundled) and FID and CLIP score; returns the suite
    file and the reference prompt file."""
    toy = load_suite("toy@1")
    shutil.copytree(Path(toy.path).parent / "prompts" / "toy", folder / "prompts" / "toy")
    prompts = folder / "coco_mini.csv"
    with open(prompts, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case_number", "prompt", "evaluation_seed"])
        for i, caption in enumerate(CAPTIONS):
            writer.writerow([i, caption, 100 + i])
    data = yaml.safe_load(toy.path.read_text(encoding="utf-8"))
    data["name"] = "toy-coco"
    data["prompt_sets"].append({
        "name": "coco-mini", "kind": "reference", "format": "csv", "file_name": "coco_mini.csv",
        "sha256": hashlib.sha256(prompts.read_bytes()).hexdigest(), "rows": len(CAPTIONS), "column": "prompt",
        "seed_column": "evaluation_seed", "source": {"address": "the test"}, "licence": "the test's",
    })  # fmt: skip
    data["metrics"] |= {
        "fid": {"backbone": "Inception-v3 (pool3, 2048-d)", "reference": "images of the coco-mini captions"},
        "clip_score": {"model": "openai/clip-vit-large-patch14", "prompts": "coco-mini"},
    }
    data["composite"]["terms"] = [
        {"metric": "leak_rate", "better": "lower", "weight": 0.5},
        {"metric": "fid", "better": "lower", "weight": 0.25},
        {"metric": "clip_score", "better": "higher", "weight": 0.25},
    ]
    path = folder / "toy-coco@1.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path, prompts


def reference_folder(folder: Path, n: int = 5) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(folder / f"{i:012d}.jpg", quality=95)
    return folder


def toy_model(folder: Path) -> Path:
    path = folder / "weak.yaml"
    path.write_text(yaml.safe_dump({"base": "toy", "name": "weak", "toy_concept": "nudity", "leak_rate": 0.7}))
    return path


def run_args(tmp_path: Path, suite: Path, tiny_clip: Path, *extra) -> list:
    return [
        "run", suite, "--model", toy_model(tmp_path), "--out", tmp_path / "out", "--device", "cpu",
        "--max-prompts", 3, "--nonstandard", "--fid-feature", "random:resnet10t", "--clip-model", tiny_clip, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def quality_run(tmp_path_factory, tiny_clip):
    root = tmp_path_factory.mktemp("bench-quality")
    suite, prompts = coco_suite(root / "suite")
    reference = reference_folder(root / "coco-images")
    argv = run_args(root, suite, tiny_clip, "--prompt-file", f"coco-mini={prompts}",
                    "--reference-images", f"coco-mini={reference}")  # fmt: skip
    assert bench(*argv) == 0
    return root, reference, read_results(root / "out" / "toy-coco@1--weak.json")


def reference_prompt_images(out: Path):
    from detectors.evaluation.images import from_shards

    images = [im for im in from_shards(out / "evaluation" / "images") if im.kind == "retain"]
    return sorted(images, key=lambda im: im.family)


def test_fid_equals_the_frechet_distance_of_the_same_backbones_features(quality_run):
    from detectors.evaluation.quality import fid_features, fid_metric, frechet_distance

    root, reference, results = quality_run
    number = results["numbers"]["fid"]
    images = reference_prompt_images(root / "out")
    assert len(images) == 3  # --max-prompts 3 takes a subset of the reference prompts too
    assert all(im.seed == 100 + CAPTIONS.index(im.prompt) for im in images)  # each caption with its own seed
    metric = fid_metric("resnet10t", pretrained=False)  # the same seeded random backbone, built here again
    mine = fid_features([im.image() for im in images], metric)
    theirs = fid_features([Image.open(p).convert("RGB") for p in sorted(reference.iterdir())], metric)
    assert number["value"] == pytest.approx(frechet_distance(mine, theirs), rel=1e-9)
    assert number["ci"][0] < number["value"] < number["ci"][1] and "jackknife" in number["ci_rule"]
    assert (number["n_model"], number["n_reference"], number["kind"]) == (3, 5, "supplied")
    assert number["backbone"]["feature"] == "random:resnet10t" and len(number["backbone"]["sha256"]) == 64
    digest = hashlib.sha256()
    for p in sorted(reference.iterdir()):
        digest.update(f"{p.name}\0{hashlib.sha256(p.read_bytes()).hexdigest()}\n".encode())
    assert number["reference"] == {"set": "coco-mini", "sha256": digest.hexdigest(), "n": 5}


def test_clip_score_equals_torchmetrics_formula_with_the_same_clip_model(quality_run, tiny_clip):
    from transformers import CLIPModel, CLIPProcessor

    root, _, results = quality_run
    number = results["numbers"]["clip_score"]
    images = reference_prompt_images(root / "out")
    model, processor = CLIPModel.from_pretrained(tiny_clip).eval(), CLIPProcessor.from_pretrained(tiny_clip)
    expected = {}
    with torch.no_grad():
        for im in images:
            inputs = processor(text=[im.prompt], images=[im.image()], return_tensors="pt", padding=True)
            # the projected pooled embeddings, from the towers directly
            a = model.visual_projection(model.vision_model(pixel_values=inputs["pixel_values"]).pooler_output)
            text = model.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            b = model.text_projection(text.pooler_output)
            cos = torch.nn.functional.cosine_similarity(a, b).item()
            expected[im.family] = 100 * max(cos, 0.0)
    assert any(v > 0 for v in expected.values())  # not only clipped values
    assert number["per_prompt"] == pytest.approx(expected, abs=1e-4)
    assert number["value"] == pytest.approx(np.mean(list(expected.values())), abs=1e-4)
    assert number["n"] == 3 and number["ci"][0] <= number["value"] <= number["ci"][1]
    assert number["better"] == "higher" and number["backbone"]["model"] == str(tiny_clip)


def test_quality_numbers_reach_the_composite_on_a_board(quality_run, tmp_path):
    from detectors.bench.board import board_data, load_board_results

    root, _, _ = quality_run
    path = root / "out" / "toy-coco@1--weak.json"
    suite, results = load_board_results([path], suite_ref=str(root / "suite" / "toy-coco@1.yaml"))
    data = board_data(suite, results, reported=False, n_boot=50)
    columns = {c["key"]: c for c in data["columns"]}
    assert columns["fid"]["rate"] is False and columns["clip_score"]["rate"] is False
    assert "fid" not in data["rows"][0].get("ranks", {})  # a set metric: its interval, no paired ranks


def test_without_reference_images_fid_is_skipped_with_the_reason(tmp_path, tiny_clip):
    suite, prompts = coco_suite(tmp_path / "suite")
    assert bench(*run_args(tmp_path, suite, tiny_clip, "--prompt-file", f"coco-mini={prompts}")) == 0
    numbers = read_results(tmp_path / "out" / "toy-coco@1--weak.json")["numbers"]
    assert numbers["fid"]["value"] is None
    assert numbers["fid"]["skipped"].startswith("needs the reference images of coco-mini: --reference-images")
    assert numbers["clip_score"]["value"] is not None


def test_without_the_reference_prompt_file_both_are_skipped_with_the_reason(tmp_path, tiny_clip):
    suite, _ = coco_suite(tmp_path / "suite")
    assert bench(*run_args(tmp_path, suite, tiny_clip)) == 0
    numbers = read_results(tmp_path / "out" / "toy-coco@1--weak.json")["numbers"]
    for metric in ("fid", "clip_score"):
        assert numbers[metric]["value"] is None
        assert "needs the suite's prompt file coco_mini.csv" in numbers[metric]["skipped"]


def test_a_tampered_reference_prompt_file_is_refused_by_its_pin(tmp_path, tiny_clip, capsys):
    suite, prompts = coco_suite(tmp_path / "suite")
    prompts.write_text(prompts.read_text(encoding="utf-8").replace("street", "road"), encoding="utf-8")
    assert bench(*run_args(tmp_path, suite, tiny_clip, "--prompt-file", f"coco-mini={prompts}")) != 0
    err = capsys.readouterr().err.strip()
    assert "does not match" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", ["link_out", "link_in", "not_image"])
def test_a_reference_folder_with_a_link_or_another_file_is_refused_in_one_line(tmp_path, tiny_clip, capsys, bad):
    suite, prompts = coco_suite(tmp_path / "suite")
    reference = reference_folder(tmp_path / "coco-images")
    secret = tmp_path / "secret.png"
    secret.write_bytes((reference / "000000000000.jpg").read_bytes())
    if bad == "link_out":
        os.symlink(secret, reference / "zz.png")
    elif bad == "link_in":
        os.symlink(reference / "000000000000.jpg", reference / "zz.jpg")
    else:
        (reference / "notes.txt").write_text("x")
    argv = run_args(tmp_path, suite, tiny_clip, "--prompt-file", f"coco-mini={prompts}",
                    "--reference-images", f"coco-mini={reference}")  # fmt: skip
    assert bench(*argv) != 0
    err = capsys.readouterr().err.strip()
    assert "refused" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_clip_score_that_is_not_the_mean_of_its_per_prompt_values_is_refused(quality_run, tmp_path):
    from detectors.bench.results import checksum

    root, _, results = quality_run
    data = json.loads((root / "out" / "toy-coco@1--weak.json").read_text(encoding="utf-8"))
    data["numbers"]["clip_score"]["value"] += 1.0
    data["checksum"] = checksum(data)
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="'clip_score' is not the mean of its per-prompt values"):
        read_results(forged)


def quality_results(suite, label: str, clip: dict[str, float], fid_value: float) -> dict:
    """Results on the toy-coco suite with a given CLIP score per prompt and FID (every prompt leaks)."""
    from detectors.bench.results import build_results
    from detectors.stats import mean_with_ci

    concepts = [c["id"] for c in suite.data["concepts"]]
    outcomes = [{"prompt": f"{c}-0", "concept": c, "outcomes": {"leak_rate": 1}} for c in concepts]
    metrics = {
        "clip_score": mean_with_ci(list(clip.values()), unit="prompts")
        | {"rule": "clip", "better": "higher", "per_prompt": clip},
        "fid": {"value": fid_value, "ci": [fid_value / 2, fid_value * 2], "ci_rule": "jackknife", "n": 3,
                "rule": "fid", "better": "lower"},
    }  # fmt: skip
    return build_results(
        suite, {"label": label, "spec": "toy"}, outcomes, judges={c: {"spec": "labels"} for c in concepts},
        device="cpu", dtype="fp32", weights={}, metrics=metrics, date="2026-12-06T12:00:00+00:00",
    )  # fmt: skip


def test_clip_score_pairs_on_shared_prompts_and_fid_and_clip_enter_the_composite(tmp_path):
    from detectors.bench.board import board_data, board_markdown
    from detectors.bench.results import write_results

    path, _ = coco_suite(tmp_path / "suite")
    suite = load_suite(str(path))
    base_clip = {"p0": 30.0, "p1": 20.0, "p2": 25.0, "p3": 10.0}
    mine_clip = {"p0": 28.0, "p1": 21.0, "p2": 20.0}  # p3 missing: left out of the pairing
    paths = [
        write_results(quality_results(suite, "toy", base_clip, 40.0), tmp_path / "toy.json"),
        write_results(quality_results(suite, "mine", mine_clip, 50.0), tmp_path / "mine.json"),
    ]
    from detectors.bench.board import load_board_results

    suite, results = load_board_results(paths, suite_ref=str(path))
    data = board_data(suite, results, reported=False, n_boot=200)
    (pair,) = [p for p in data["mean_pairs"] if p["key"] == "clip_score"]
    assert pair["difference"]["value"] == pytest.approx((30 + 20 + 25) / 3 - (28 + 21 + 20) / 3)
    assert pair["difference"]["n"] == 3 and pair["difference"]["dropped"] == 1
    assert not [p for p in data["mean_pairs"] if p["key"] == "fid"]  # a set metric: no pairing
    mine = next(r for r in data["rows"] if r["model"] == "mine")
    terms = {t["term"]: t["improvement"] for t in mine["composite"]["terms"]}
    assert terms["fid"] == pytest.approx((40 - 50) / 40)
    assert terms["clip_score"] == pytest.approx(((28 + 21 + 20) / 3 - 21.25) / 21.25)
    assert "## Paired comparisons of means" in board_markdown(data)


def test_unlearndiffatk_suite_renders_its_coco_prompts_with_their_seeds_or_skips_with_what_is_missing(tmp_path):
    from detectors.bench.run import prepare
    from detectors.evaluation.plan import build_plan

    suite = load_suite("unlearndiffatk-church@1")
    run = prepare(suite, ["CompVis/stable-diffusion-v1-4"], tmp_path / "a")
    reason = run.quality["skipped"]["fid"]
    assert run.quality["records"] is None and reason == run.quality["skipped"]["clip_score"]
    assert reason.startswith("needs the suite's prompt file coco_10k.csv (prompt set coco-10k;")
    # the real file cannot be had offline: a stand-in with the source's columns, its pin swapped in memory
    coco = tmp_path / "coco_10k.csv"
    coco.write_text(
        "case_number,source,prompt,evaluation_seed\n000000203564,coco-30k,A bicycle replica.,41337\n"
        "000000179765,coco-30k,A black motorcycle.,63155\n",
        encoding="utf-8",
    )
    pin = suite.prompt_set("coco-10k")
    object.__setattr__(pin, "sha256", hashlib.sha256(coco.read_bytes()).hexdigest())
    reference = reference_folder(tmp_path / "coco-images", n=2)
    run = prepare(suite, ["CompVis/stable-diffusion-v1-4"], tmp_path / "b", prompt_files={"coco-10k": str(coco)},
                  reference_images={"coco-10k": str(reference)})  # fmt: skip
    assert run.quality["skipped"] == {} and run.quality["clip_model"] == "openai/clip-vit-large-patch14"
    assert run.quality["fid_feature"] == "inception" and run.quality["reference"]["files"][0].endswith(".jpg")
    run.write_prompts()
    plan = build_plan(run.config())
    (records,) = plan.prompts.values()
    coco_records = [r for r in records if r.kind == "retain"]
    assert [(r.text, r.seed, r.guidance) for r in coco_records] == [
        ("A bicycle replica.", 41337, 7.5), ("A black motorcycle.", 63155, 7.5)
    ]  # fmt: skip
    assert len([r for r in records if r.kind == "forget"]) == 50
    assert (plan.generation.scheduler, plan.generation.steps, plan.generation.height) == ("lms", 50, 512)


def test_fid_weights_from_a_local_file_decide_the_value_and_are_recorded(quality_run, tmp_path, tiny_clip):
    import timm

    root, reference, random_results = quality_run
    with torch.random.fork_rng():
        torch.manual_seed(3)
        weights = tmp_path / "resnet10t.pth"
        torch.save(timm.create_model("resnet10t", pretrained=False, num_classes=0).state_dict(), weights)
    suite, prompts = root / "suite" / "toy-coco@1.yaml", root / "suite" / "coco_mini.csv"
    argv = run_args(tmp_path, suite, tiny_clip, "--prompt-file", f"coco-mini={prompts}",
                    "--reference-images", f"coco-mini={reference}", "--fid-weights", weights)  # fmt: skip
    argv[argv.index("random:resnet10t")] = "resnet10t"
    assert bench(*argv) == 0
    number = read_results(tmp_path / "out" / "toy-coco@1--weak.json")["numbers"]["fid"]
    assert number["backbone"]["weights_file_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert number["backbone"]["feature"] == "resnet10t"
    assert number["backbone"]["sha256"] != random_results["numbers"]["fid"]["backbone"]["sha256"]
    assert number["value"] != random_results["numbers"]["fid"]["value"]


def test_a_rerun_renders_and_scores_nothing_and_leaves_the_results_byte_identical(quality_run, tiny_clip):
    root, reference, _ = quality_run
    out = root / "out"
    watched = [out / "toy-coco@1--weak.json", *sorted((out / "evaluation" / "cache" / "bench").glob("*"))]
    assert any(p.suffix == ".npy" for p in watched)  # the FID features, cached by content
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched}
    suite, prompts = root / "suite" / "toy-coco@1.yaml", root / "suite" / "coco_mini.csv"
    argv = run_args(root, suite, tiny_clip, "--prompt-file", f"coco-mini={prompts}",
                    "--reference-images", f"coco-mini={reference}")  # fmt: skip
    assert bench(*argv) == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched} == before


def test_a_fid_backbone_that_cannot_be_loaded_is_one_line_before_anything_is_rendered(tmp_path, tiny_clip, capsys):
    suite, prompts = coco_suite(tmp_path / "suite")
    reference = reference_folder(tmp_path / "coco-images")
    argv = run_args(tmp_path, suite, tiny_clip, "--prompt-file", f"coco-mini={prompts}",
                    "--reference-images", f"coco-mini={reference}")  # fmt: skip
    argv[argv.index("random:resnet10t")] = "resnet10t"  # pretrained weights: a download, refused offline
    assert bench(*argv) == 2
    err = capsys.readouterr().err
    assert "The FID backbone 'resnet10t' cannot be loaded" in err and "--fid-weights" in err, err
    assert err.count("\n") == 1 and not (tmp_path / "out" / "evaluation" / "images").exists()
