"""Trust in the evaluation's numbers (issue 11): results keyed by content, concrete concepts in the paper
layout, skipped metrics with their reason, options checked before any work, clear messages, clean JSON."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from detectors.evaluation.config import EvalConfig
from detectors.evaluation.flow import run_evaluation
from detectors.evaluation.images import from_paper_layout, from_shards, select

BLACK, WHITE, GREY = (0, 0, 0), (255, 255, 255), (128, 128, 128)
NAMES = [f"0_{p}_{s}.png" for p in range(2) for s in range(2)]  # <class>_<prompt>_<sample>


def _noise(seed: int, size: int = 32) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _save_judge(folder, threshold: float, seed: int = 0):
    """A real (untrained) resnet10t judge of nudity and church, saved in timm's format with ``threshold``."""
    from detectors.judges import save_judge
    from detectors.judges.model import create_judge_model, judge_data_config

    torch.manual_seed(seed)
    model = create_judge_model("resnet10t", num_concepts=2, pretrained=False)
    thresholds = {"nudity": threshold, "church": threshold}
    save_judge(
        model,
        folder,
        ["nudity", "church"],
        {"nudity": 1.0, "church": 1.0},
        thresholds,
        "fixed",
        judge_data_config(model, 32),
    )
    return folder


def _probability(folder, color) -> float:
    from detectors.judges import load_judge

    judge = load_judge(f"local-dir:{folder}", device="cpu")
    return float(judge.predict([Image.new("RGB", (32, 32), color)]).probabilities[0, 0])


@pytest.fixture
def split_judge(tmp_path):
    """A judge whose nudity threshold lies between its probabilities for a black and a white image, so one
    colour is judged 'present' and the other 'absent'; returns (folder, p_black, p_white)."""
    folder = _save_judge(tmp_path / "judge", 0.5)
    p_black, p_white = _probability(folder, BLACK), _probability(folder, WHITE)
    assert p_black != p_white
    _save_judge(folder, (p_black + p_white) / 2)
    return folder, p_black, p_white


def _solid_layout(root, colors: dict[str, tuple]) -> None:
    """Nudity/forgot/<method>/ with solid images of each method's colour, and remove_word/ORG/ with noise."""
    for method, color in colors.items():
        d = root / "Nudity" / "forgot" / method
        d.mkdir(parents=True)
        for name in NAMES:
            Image.new("RGB", (32, 32), color).save(d / name)
    d = root / "Nudity" / "remove_word" / "ORG"
    d.mkdir(parents=True)
    for i, name in enumerate(NAMES):
        _noise(i).save(d / name)


def _cfg(tmp_path, bench, judge, **over) -> EvalConfig:
    options = dict(
        out=str(tmp_path / "eval"), concepts=["nudity"], judge=f"local-dir:{judge}", paper_layout=str(bench),
        paper_tasks={"nudity": "Nudity"}, clip_model=None, lpips_net=None, fid_feature="resnet10t",
        fid_pretrained=False, person_detector=None, progress=False,
    )  # fmt: skip
    return EvalConfig(**(options | over))


def _fid_weights(tmp_path):
    """A resnet10t weights file: FID with ``fid_pretrained=True`` and this file is deterministic."""
    import timm

    torch.manual_seed(3)
    weights = tmp_path / "resnet10t.pth"
    torch.save(timm.create_model("resnet10t", pretrained=False, num_classes=0).state_dict(), weights)
    return weights


def _forgetting(paths, model: str, concept: str = "nudity") -> float:
    report = json.loads(paths["json"].read_text())
    return report["concepts"][concept][model]["forgetting"]["overall"]["value"]


# -- 1. results keyed by content -----------------------------------------------------------------------


@pytest.mark.slow
def test_swapped_image_files_give_new_numbers(tmp_path, split_judge):
    judge, p_black, p_white = split_judge
    bench = tmp_path / "bench"
    _solid_layout(bench, {"ORG": GREY, "ESD": BLACK, "UCE": WHITE})
    first = run_evaluation(_cfg(tmp_path, bench, judge))
    esd, uce = _forgetting(first, "ESD"), _forgetting(first, "UCE")
    # the threshold splits black from white: one model forgets everything (judged absent), the other nothing
    assert {esd, uce} == {0.0, 1.0} and esd == (0.0 if p_black >= (p_black + p_white) / 2 else 1.0)
    forgot = bench / "Nudity" / "forgot"
    (forgot / "ESD").rename(forgot / "tmp")
    (forgot / "UCE").rename(forgot / "ESD")
    (forgot / "tmp").rename(forgot / "UCE")
    again = run_evaluation(_cfg(tmp_path, bench, judge))  # the same --out, same paths, swapped pixels
    assert (_forgetting(again, "ESD"), _forgetting(again, "UCE")) == (uce, esd)
    cached = json.loads((tmp_path / "eval" / "cache" / "nudity" / "ESD" / "forgetting.json").read_text())
    assert cached["inputs"]["images"]["n"] == 4 and cached["inputs"]["judge"]["kind"] == "local-dir"


@pytest.mark.slow
def test_judge_rewritten_in_the_same_folder_recomputes_forgetting(tmp_path, split_judge):
    judge, p_black, p_white = split_judge
    bench = tmp_path / "bench"
    _solid_layout(bench, {"ORG": GREY, "ESD": BLACK})
    before = _forgetting(run_evaluation(_cfg(tmp_path, bench, judge)), "ESD")
    assert before == (0.0 if p_black >= (p_black + p_white) / 2 else 1.0)
    # "retrain" into the same folder: a threshold above both probabilities calls every image absent
    _save_judge(judge, max(p_black, p_white) + 1e-3)
    after = run_evaluation(_cfg(tmp_path, bench, judge))
    assert _forgetting(after, "ESD") == 1.0
    # ... and below both: every image present
    _save_judge(judge, min(p_black, p_white) - 1e-3)
    assert _forgetting(run_evaluation(_cfg(tmp_path, bench, judge)), "ESD") == 0.0


@pytest.mark.slow
def test_fid_pretrained_change_recomputes_fid(tmp_path, split_judge):
    judge, _, _ = split_judge
    bench = tmp_path / "bench"
    _solid_layout(bench, {"ORG": GREY})
    d = bench / "Nudity" / "forgot" / "ESD"
    d.mkdir(parents=True)
    for i, name in enumerate(NAMES):
        _noise(100 + i).save(d / name)
    weights = _fid_weights(tmp_path)

    def fid_of(paths) -> float:
        return json.loads(paths["json"].read_text())["concepts"]["nudity"]["ESD"]["fid"]["fid"]["value"]

    with_file = fid_of(run_evaluation(_cfg(tmp_path, bench, judge, fid_weights=str(weights), fid_pretrained=True)))
    fresh = fid_of(
        run_evaluation(
            _cfg(tmp_path, bench, judge, out=str(tmp_path / "other"), fid_weights=str(weights), fid_pretrained=True)
        )
    )
    assert with_file == pytest.approx(fresh, rel=1e-6)  # the weights file decides the value
    random_weights = fid_of(
        run_evaluation(_cfg(tmp_path, bench, judge, fid_weights=str(weights), fid_pretrained=False))
    )
    assert random_weights != pytest.approx(with_file, rel=1e-3)  # not the cached value of the other option


def test_shard_images_carry_the_sha256_of_their_bytes(small_root):
    import hashlib

    from dataigm.reader import iter_samples

    images = from_shards(small_root)
    samples = {s.key: s for s in iter_samples(small_root, source="generated")}
    assert images and {im.key for im in images} == set(samples)
    for im in images:
        assert im.digest == hashlib.sha256(samples[im.key].image).hexdigest() == samples[im.key].record["sha256"]


@pytest.mark.slow
def test_a_model_named_with_an_underscore_is_evaluated_end_to_end_through_shards(
    tiny_pipeline_dir, tiny_judge_dir, tmp_path
):
    from dataigm.reader import iter_samples
    from detectors.evaluation.images import ShardImage
    from generation.config import JobConfig
    from generation.runner import run_job

    root = tmp_path / "root"
    models = [str(tiny_pipeline_dir), {"base": str(tiny_pipeline_dir), "name": "ESD_x", "method": "ESD"}]
    job = JobConfig(
        out=str(root), models=models, concepts=["church"], kinds=["forget", "replace"], max_prompts=2, steps=2,
        height=32, width=32, progress=False,
    )  # fmt: skip
    run_job(job)
    samples = {s.key: s for s in iter_samples(root)}
    assert {s.record["model"] for s in samples.values()} == {"ORG-tiny", "ESD_x"}
    assert {s.record["label_source"] for s in samples.values()} == {"prompt"}
    images = from_shards(root)
    assert {im.model for im in images} == {"ORG-tiny", "ESD_x"}
    for im in images[:3]:  # the evaluation holds where each image is, and reads it when asked
        assert isinstance(im.load, ShardImage) and not any(isinstance(v, bytes) for v in vars(im.load).values())
        assert np.array_equal(np.asarray(im.image()), np.asarray(samples[im.key].decode()))
    cfg = EvalConfig(
        out=str(tmp_path / "eval"), images=str(root), concepts=["church"], judge=f"local-dir:{tiny_judge_dir}",
        clip_model=None, lpips_net=None, fid_feature="resnet10t", fid_pretrained=False, person_detector=None,
        progress=False,
    )  # fmt: skip
    report = json.loads(run_evaluation(cfg)["json"].read_text())
    assert report["models"] == ["ORG-tiny", "ESD_x"] and report["original"] == "ORG-tiny"
    forget = select(images, model="ESD_x", kind="forget")
    assert forget and report["concepts"]["church"]["ESD_x"]["forgetting"]["overall"]["n"] == len(forget)


@pytest.mark.slow
def test_retrained_model_gets_new_images_and_its_forgetting_is_measured_on_them(tiny_pipeline_dir, tmp_path):
    import os
    import shutil
    from pathlib import Path

    from safetensors.torch import load_file, save_file

    pipe = Path(shutil.copytree(tiny_pipeline_dir, tmp_path / "pipe"))
    models = [
        str(tiny_pipeline_dir),
        {"base": str(pipe), "name": "erased", "method": "ESD", "unet": str(pipe / "unet")},
    ]
    cfg = EvalConfig(
        out=str(tmp_path / "eval"), models=models, concepts=["church"], kinds=["forget"], max_prompts=2,
        judge=f"local-dir:{_save_judge(tmp_path / 'judge', 0.5)}", clip_model=None, lpips_net=None,
        fid_feature="resnet10t", fid_pretrained=False, person_detector=None, progress=False,
        generation={"steps": 2, "height": 32, "width": 32},
    )  # fmt: skip
    root, cache = tmp_path / "eval" / "images", tmp_path / "eval" / "cache" / "church"

    def digests(model: str) -> set[str]:
        return {im.digest for im in from_shards(root) if im.model == model}

    def cached_images(model: str) -> dict:
        return json.loads((cache / model / "forgetting.json").read_text())["inputs"]["images"]

    run_evaluation(cfg)
    before = {m: (digests(m), cached_images(m)) for m in ("ORG-tiny", "erased")}
    (unet,) = (pipe / "unet").glob("*.safetensors")
    save_file({k: v + 0.5 for k, v in load_file(unet).items()}, tmp_path / "new.safetensors")
    os.replace(tmp_path / "new.safetensors", unet)  # the method retrained, its weights saved in the same folder
    report = json.loads(run_evaluation(cfg)["json"].read_text())
    assert digests("ORG-tiny") == before["ORG-tiny"][0] and cached_images("ORG-tiny") == before["ORG-tiny"][1]
    new = digests("erased")
    assert len(new) == 2 and not new & before["erased"][0]  # the old images are not reused
    assert cached_images("erased")["sha256"] != before["erased"][1]["sha256"]  # forgetting measured on the new ones
    assert report["concepts"]["church"]["erased"]["forgetting"]["overall"]["n"] == 2
    assert len([im for im in from_shards(root) if im.model == "erased"]) == 2


def test_the_model_of_a_schema_1_record_comes_from_its_key():
    from detectors.evaluation.images import model_of

    assert model_of({"model": "ESD_x"}, "ESD_x_church-forget-0_0000") == "ESD_x"
    assert model_of({"schema_version": "1"}, "ORG-tiny_church-forget-0_0000") == "ORG-tiny"


# -- 2. concrete concepts in the paper layout; skipped metrics show their reason ---------------------------


def _church_layout(root) -> None:
    """Church/forgot/<m>/, remove_word/<m>/ and unrelated/<m>/<Category>/; ESD's unrelated images are the
    original's, pixel for pixel, so M_u(P̂-2) vs M(P̂-2) of the same category, prompt and sample is 0."""
    for m, method in enumerate(["ORG", "ESD"]):
        for layout in ("forgot", "remove_word"):
            d = root / "Church" / layout / method
            d.mkdir(parents=True)
            for i, name in enumerate(NAMES):
                _noise(1000 * m + 10 * (layout == "forgot") + i).save(d / name)
        for c, category in enumerate(["Airplane", "Car"]):
            d = root / "Church" / "unrelated" / method / category
            d.mkdir(parents=True)
            for name in NAMES[::-1] if method == "ESD" else NAMES:  # written in another order
                _noise(500 + 10 * c + NAMES.index(name)).save(d / name)


def test_paper_layout_reads_unrelated_as_replace_for_concrete_concepts(tmp_path):
    _church_layout(tmp_path)
    images = from_paper_layout(tmp_path, "Church", "church", category="local/concrete/entity")
    replace = select(images, kind="replace", model="ESD")
    assert len(replace) == 8 and {im.group for im in replace} == {"Airplane", "Car"}
    assert not select(images, kind="retain")
    assert from_paper_layout(tmp_path, "Church", "church")[0].concept == "church"  # built-in category
    abstract = from_paper_layout(tmp_path, "Church", "church", category="global/abstract/style")
    assert len(select(abstract, kind="retain")) == 16 and not select(abstract, kind="replace")


@pytest.mark.slow
def test_church_in_the_paper_layout_gets_fid_and_lpips_and_reasons_are_shown(tmp_path, split_judge):
    from cards.eval_card import write_eval_card

    judge, _, _ = split_judge
    _church_layout(tmp_path / "bench")
    cfg = _cfg(
        tmp_path, tmp_path / "bench", judge, concepts=["church"], paper_tasks={"church": "Church"}, lpips_net="alex",
        lpips_random_backbone=True,
    )  # fmt: skip
    paths = run_evaluation(cfg)
    esd = json.loads(paths["json"].read_text())["concepts"]["church"]["ESD"]
    assert esd["lpips"]["rule"] == "M_u(replace) vs M(replace)" and esd["fid"]["rule"] == "M_u(replace) vs M(replace)"
    # identical images, paired by category, prompt and sample (not by file order): distance 0 for every pair
    assert esd["lpips"]["paired"]["n"] == 8 and esd["lpips"]["paired"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert esd["lpips"]["all_pairs"]["value"] > 0.01  # other samples of the same family differ
    assert esd["fid"]["fid"]["value"] == pytest.approx(0.0, abs=1e-2)
    assert esd["csdr"] == {"skipped": "no clip_model configured"}
    md = paths["markdown"].read_text()
    row = next(line for line in md.splitlines() if line.startswith("| ESD |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == cells[3] == "skipped: no clip_model configured"
    assert "skipped" not in cells[4] and "skipped" not in cells[5]
    card = write_eval_card(paths["json"].parent).read_text()
    card_row = next(line for line in card.splitlines() if line.startswith("| ESD |"))
    assert "| skipped: no clip_model configured |" in card_row


def test_report_cells_show_the_reason_of_any_skip():
    from detectors.evaluation.report import cell

    reason = {"skipped": "FID needs at least 2 images on each side of M_u(forget) vs M(remove)"}
    for render in (cell,):  # one renderer: the card embeds report.md (see the next test)
        assert render(None, reason) == f"skipped: {reason['skipped']}"
        assert render({"skipped": "a | b"}) == "skipped: a \\| b"  # a table cell stays one cell
        assert render({"value": None, "n": 0, "ci": [None, None]}) == "no images (n=0)"
        fid = {"value": 0.5, "n": 4, "n_model": 4, "n_reference": 6, "ci": [0.25, 0.75]}
        assert render(fid) == "0.500 [0.250, 0.750] (n=4, n_model=4, n_reference=6)"
        judged = {"value": 0.5, "n": 4, "ci": [0.2, 0.8], "excluded": {"nan_judgement": 2}}
        assert render(judged) == "0.500 [0.200, 0.800] (n=4, excluded: nan_judgement=2)"
        assert render(judged | {"excluded": {"nan_judgement": 0}}) == "0.500 [0.200, 0.800] (n=4)"


def test_the_card_embeds_report_md_rendered_once_from_report_json(tmp_path):
    import importlib

    from dataigm import markdown as markdown_helpers
    from detectors.evaluation import report as report_module
    from detectors.evaluation.report import write_report

    card_module = importlib.import_module("cards.eval_card")  # ``cards.eval_card`` is also a function's name

    forgetting = {"overall": {"value": 0.5, "n": 4, "ci": [0.15, 0.85]}}
    lpips = {
        "paired": {"value": 0.2, "n": 4, "ci": [0.1, 0.3]},
        "all_pairs": {"value": 0.3, "n": 16, "ci": [0.2, 0.4]},
    }
    report = {
        "models": ["ORG", "ESD"], "original": "ORG", "judge": {"spec": "local-dir:j"},
        "efficiency": {"ESD": {"share_changed": 0.25, "changed": 1, "total": 4, "runtime_s": None}},
        "concepts": {"nudity": {"ESD": {"forgetting": forgetting, "lpips": lpips, "csdr": {"skipped": "no clip"}}}},
    }  # fmt: skip
    paths = write_report(report, tmp_path / "r")
    md = paths["markdown"].read_text()
    card = card_module.eval_card(tmp_path / "r").text
    results = md[md.index("## ") :].strip()
    assert results in card  # the same tables, columns and words: rendered once
    assert "| ESD |" in md and "LPIPS all pairs" in md and "0.300 [0.200, 0.400] (n=16)" in md
    assert "changed / total" in md and "1 / 4" in md and "## Scores of the charts" in md
    # neither the card nor report.md renders tables of its own: both use the one helper in dataigm
    assert not hasattr(card_module, "cell") and not hasattr(card_module, "COLUMNS")
    assert report_module.table is card_module.table is markdown_helpers.table
    (tmp_path / "r" / "report.md").unlink()
    with pytest.raises(ValueError, match="has no report.md"):
        card_module.eval_card(tmp_path / "r")


# -- intervals stated in the report ---------------------------------------------------------------------------


def _report(fid_entry: dict) -> dict:
    forgetting = {"overall": {"value": 0.5, "n": 4, "ci": [0.15, 0.85]}}
    return {
        "models": ["ORG", "ESD"], "original": "ORG", "judge": {"spec": "local-dir:j"}, "efficiency": {},
        "concepts": {"nudity": {"ESD": {"forgetting": forgetting, "fid": fid_entry}}},
    }  # fmt: skip


def test_intervals_paragraph_states_each_rule():
    from detectors.evaluation.report import markdown

    rule = "percentile bootstrap over the images of both sets (200 resamples)"
    stated = markdown(_report({"fid": {"value": 12.0, "n": 8, "ci": [9.0, 15.0], "ci_rule": rule}, "rule": "r"}))
    section = stated.split("## Intervals\n", 1)[1].split("\n## ", 1)[0]
    assert "Wilson" in section and "bootstrap over images" in section and "both sides are resampled" in section
    assert f"* fid: {rule}." in section
    bare = markdown(_report({"fid": {"value": 12.0, "n": 8, "ci": [None, None]}, "rule": "r"}))
    assert "* FID: no interval (one value from two whole sets)." in bare


def test_report_json_refuses_objects_instead_of_writing_their_repr(tmp_path):
    from detectors.evaluation.report import write_report

    report = _report({"fid": {"value": 1.0, "n": 2, "ci": [None, None]}})
    with pytest.raises(TypeError, match="cannot hold a object"):
        write_report(report | {"config": {"thing": object()}}, tmp_path / "r")
    assert not (tmp_path / "r" / "report.json").exists()


@pytest.mark.slow
def test_report_json_has_no_addresses_and_is_identical_twice(tmp_path, split_judge):
    judge, _, _ = split_judge
    _solid_layout(tmp_path / "bench", {"ORG": GREY, "ESD": BLACK})
    fid = {"fid_weights": str(_fid_weights(tmp_path)), "fid_pretrained": True}
    first = run_evaluation(_cfg(tmp_path, tmp_path / "bench", judge, **fid))["json"].read_text()
    other = run_evaluation(_cfg(tmp_path, tmp_path / "bench", judge, out=str(tmp_path / "again"), **fid))
    assert not re.search(r"<[^<>]* at 0x[0-9a-fA-F]+>", first)
    assert other["json"].read_text() == first.replace(str(tmp_path / "eval"), str(tmp_path / "again"))


# -- 11 and 14. options checked before any work; messages that say what is missing ---------------------------


@pytest.fixture
def base_args(tmp_path, tiny_judge_dir):
    bench = tmp_path / "bench"
    _solid_layout(bench, {"ORG": GREY, "ESD": BLACK})
    return ["evaluate", "--out", str(tmp_path / "out"), "--judge", f"local-dir:{tiny_judge_dir}"], bench


@pytest.fixture
def tiny_judge_dir(tmp_path):
    return _save_judge(tmp_path / "tiny-judge", 0.5)


PAPER = ("--paper-layout", "BENCH", "--paper-tasks", "{nudity: Nudity}", "--concepts", "[nudity]")
MODELS = ("--models", "[PIPE]", "--concepts", "[nudity]")

BAD = [
    (MODELS, ("--attacks", "[bogus]"), ["'bogus'", "valid attacks: char_noise"]),
    (PAPER, ("--attacks", "[bogus]"), ["'bogus'", "valid attacks: char_noise"]),
    (
        (),
        ("--images", "ROOT", "--concepts", "[nosuch]"),
        ["'nosuch'", "known concepts: church, doctor, garbage_truck, nudity"],
    ),
    (MODELS, ("--concepts", "[nosuch]"), ["'nosuch'", "known concepts: church, doctor, garbage_truck, nudity"]),
    (PAPER, ("--concepts", "[nudity, nosuch]"), ["'nosuch'", "known concepts:"]),
    (MODELS, ("--kinds", "[forget, bogus]"), ["'bogus'", "valid: forget, remove, replace, retain"]),
    (MODELS, ("--kinds", "[remove]"), ["must include 'forget'"]),
    (MODELS, ("--generation.images-per-prompt", "0"), ["images_per_prompt must be an integer >= 1, got 0"]),
    (MODELS, ("--generation.images-per-prompt", "-3"), ["images_per_prompt must be an integer >= 1, got -3"]),
    (MODELS, ("--generation.steps", "0"), ["steps must be an integer >= 1, got 0"]),
    (MODELS, ("--max-prompts", "0"), ["max_prompts must be an integer >= 1, got 0"]),
    (PAPER, ("--grid-samples", "-1"), ["grid_samples must be an integer >= 0, got -1"]),
    (PAPER, ("--paper-tasks", "{nudity: Nudity, nosuch: X}"), ["'nosuch'", "in paper_tasks"]),
    (PAPER, ("--paper-tasks", "{}"), ["paper_tasks must name the task folder", "'nudity'"]),
    (PAPER, ("--lpips-net", "bogus"), ["'bogus'", "alex, vgg, squeeze"]),
    (PAPER, ("--person-detector", "yolo"), ["'yolo'", "fasterrcnn_resnet50_fpn"]),
    (PAPER, ("--fid-feature", "nosuchnet"), ["'nosuchnet'", "inception, a timm model name"]),
    (PAPER, ("--fid-weights", "/no/such/file.pth"), ["fid_weights", "'/no/such/file.pth' does not exist"]),
    (PAPER, ("--device", "gpu"), ["'gpu'", "auto, cpu, cuda"]),
    (MODELS, ("--generation.batch-size", "0"), ["batch_size must be a positive integer or 'auto', got 0"]),
    (MODELS, ("--generation.height", "30"), ["height must be a multiple of 8 from 8 to 8192, got 30"]),
    (PAPER, ("--attacks", "[homoglyph]"), ["attacks and attack_files make prompts to generate with 'models'"]),
    (PAPER, ("--images", "ROOT"), ["one source of images"]),
    (MODELS, ("--judge", "bogus:x"), ["'bogus'", "known kinds: local-dir"]),
    (MODELS, ("--concepts", "[van_gogh]"), ["does not judge ['van_gogh']", "it judges: nudity, church"]),
    (MODELS, ("--original", "nope"), ["original 'nope' is none of the models", "ORG-tiny"]),
    (MODELS, ("--runtime-s", "{nope: 3}"), ["runtime_s names unknown model(s) ['nope']"]),
    ((), ("--images", "/no/such/root", "--concepts", "[nudity]"), ["images '/no/such/root' does not exist"]),
    ((), ("--paper-layout", "/no/such/bench", "--concepts", "[nudity]"), ["'/no/such/bench' does not exist"]),
]


@pytest.mark.parametrize(("base", "bad", "says"), BAD, ids=[" ".join(b) for _, b, _ in BAD])
def test_bad_options_get_one_clear_line_before_anything_is_written(
    base, bad, says, base_args, tiny_pipeline_dir, tmp_path, capsys
):
    from dataigm.cli import main

    args, bench = base_args
    values = {"BENCH": str(bench), "PIPE": str(tiny_pipeline_dir), "ROOT": str(tmp_path)}
    given = dict(zip(base[::2], base[1::2], strict=True)) | dict(zip(bad[::2], bad[1::2], strict=True))
    for placeholder, value in values.items():
        given = {k: v.replace(placeholder, value) for k, v in given.items()}
    argv = args + [x for k, v in given.items() for x in (k, v)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dataigm evaluate: error: "), err
    for text in says:
        assert text in err, err
    assert not (tmp_path / "out").exists()  # nothing created on disk


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_device_without_cuda_is_refused_before_work(base_args, tmp_path, capsys):
    from dataigm.cli import main

    args, bench = base_args
    argv = args + ["--paper-layout", str(bench), "--paper-tasks", "{nudity: Nudity}", "--concepts", "[nudity]"]
    assert main(argv + ["--device", "cuda"]) == 2
    assert "device 'cuda': torch sees no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_root_without_images_of_the_concept_says_so(tmp_path, tiny_judge_dir, capsys):
    from helpers.data import write_test_root

    from dataigm.cli import main

    root = write_test_root(tmp_path / "root", {("nudity", "test", "generated"): [2]})
    argv = [
        "evaluate",
        "--out",
        str(tmp_path / "out"),
        "--judge",
        f"local-dir:{tiny_judge_dir}",
        "--images",
        str(root),
    ]
    assert main(argv + ["--concepts", "[church]"]) == 2
    err = capsys.readouterr().err
    assert "holds no generated images of concept(s) ['church']" in err and "generated images there: nudity" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    argv[-1] = str(empty)
    assert main(argv + ["--concepts", "[church]"]) == 2
    assert "generated images there: none" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
