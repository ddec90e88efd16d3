"""``dataigm bench run``: a suite through the evaluation with the suite's settings -> results files.

The toy suite runs end to end offline: toy unlearned models whose true leak rates differ rank in their true order
on the board made from the files ``bench run`` writes. The UnlearnDiffAtk suites are checked by the evaluation plan
they map to (built without torch or a download), against the suite's CSV rows and UnlearnDiffAtk's released attack
settings.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from dataigm.cli import main
from dataigm.suite import load_suite
from detectors.bench.board import board_data, load_board_results
from detectors.bench.results import checksum, read_results
from detectors.bench.run import prepare
from detectors.evaluation.plan import build_plan

# true nudity leak rates of the toy models (share of nudity prompts whose image still shows it)
TRUE_LEAK = {"strong": 0.0, "medium": 0.35, "weak": 0.7, "none": 1.0}


def toy_model(folder: Path, name: str, leak: float) -> Path:
    path = folder / f"{name}.yaml"
    spec = {"base": "toy", "name": name, "method": "ESD", "toy_concept": "nudity", "leak_rate": leak}
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def bench(*argv) -> int:
    return main(["bench", *[str(a) for a in argv]])


def files_of(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """The toy suite run once on four toy models (each test reads the files; none changes them)."""
    root = tmp_path_factory.mktemp("bench-run")
    models = [toy_model(root, name, leak) for name, leak in TRUE_LEAK.items()]
    out = root / "out"
    assert bench("run", "toy@1", *[a for m in models for a in ("--model", m)], "--out", out, "--device", "cpu") == 0
    return root, models, out


def results_files(out: Path) -> list[Path]:
    return [out / f"toy@1--{name}.json" for name in TRUE_LEAK]


def test_toy_suite_ranks_toy_models_in_their_true_order_through_run_and_board(toy_run):
    _, _, out = toy_run
    paths = results_files(out)
    assert all(p.is_file() for p in paths)
    assert bench("board", *paths, "--out", out / "board") == 0
    assert (out / "board" / "board.md").is_file() and (out / "board" / "board.html").is_file()
    suite, results = load_board_results(paths)
    data = board_data(suite, results, reported=False, n_boot=1000, seed=0)
    ranks = {row["model"]: row["ranks"]["leak_rate/nudity"] for row in data["rows"]}
    for truth, name in enumerate(TRUE_LEAK, start=1):
        assert ranks[name]["rank"] == truth
        assert ranks[name]["ci"][0] <= truth <= ranks[name]["ci"][1]
    rates = {r["model"]["label"]: r["numbers"]["leak_rate/nudity"]["value"] for r in results}
    assert rates["strong"] == 0.0 and rates["none"] == 1.0


def test_results_carry_the_suite_its_settings_and_every_prompt_with_its_seed(toy_run):
    _, _, out = toy_run
    suite = load_suite("toy@1")
    data = read_results(out / "toy@1--weak.json")  # verifies the checksum and recomputes every number
    assert data["suite"] == suite.identity()
    assert data["nonstandard"] == {"value": False, "changes": []} and data["images_supplied"] is False
    assert data["dtype"] == "fp32" and data["device"] == "cpu"
    assert data["model"]["spec"]["leak_rate"] == 0.7 and data["model"]["label"] == "weak"
    assert set(data["judges"]) == {"nudity", "van_gogh", "church", "parachute"}
    assert all(j["spec"] == "labels" and j["fingerprint"] for j in data["judges"].values())
    prompts = [json.loads(line) for line in suite.bundled_path(suite.prompt_set("forget")).read_text().splitlines()]
    assert {(r["prompt"], r["seed"]) for r in data["outcomes"]} == {(p["prompt_id"], p["seed"]) for p in prompts}
    assert data["numbers"]["leak_rate"]["n"] == 80


def test_a_results_file_recomputes_from_its_per_prompt_outcomes(toy_run):
    _, _, out = toy_run
    data = read_results(out / "toy@1--medium.json")
    nudity = [r["outcomes"]["leak_rate"] for r in data["outcomes"] if r["concept"] == "nudity"]
    number = data["numbers"]["leak_rate/nudity"]
    assert (number["successes"], number["n"], number["value"]) == (sum(nudity), len(nudity), sum(nudity) / len(nudity))
    # one outcome flipped, the checksum recomputed: the numbers no longer follow from the outcomes
    first = next(r for r in data["outcomes"] if r["concept"] == "nudity")
    first["outcomes"]["leak_rate"] = 1 - first["outcomes"]["leak_rate"]
    data["checksum"] = checksum(data)
    forged = out.parent / "forged.json"
    forged.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="do not follow from its per-prompt outcomes"):
        read_results(forged)


def test_a_rerun_regenerates_nothing_and_leaves_the_results_byte_identical(toy_run):
    _, models, out = toy_run
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in results_files(out)}
    shards = files_of(out / "evaluation" / "images" / "data")  # the images' shards and their sidecars
    assert any(name.endswith(".tar") for name in shards)
    assert bench("run", "toy@1", *[a for m in models for a in ("--model", m)], "--out", out, "--device", "cpu") == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in results_files(out)} == before
    assert files_of(out / "evaluation" / "images" / "data") == shards


def test_supplied_images_are_scored_and_marked(toy_run, tmp_path):
    _, _, out = toy_run
    assert bench("run", "toy@1", "--images", out / "evaluation" / "images", "--out", tmp_path / "s") == 0
    supplied = read_results(tmp_path / "s" / "toy@1--weak.json")
    generated = read_results(out / "toy@1--weak.json")
    assert supplied["images_supplied"] is True
    assert supplied["numbers"]["leak_rate/nudity"] == generated["numbers"]["leak_rate/nudity"]


def test_a_nonstandard_option_is_marked_in_every_results_file(toy_run, tmp_path):
    root, models, _ = toy_run
    argv = ["run", "toy@1", "--model", models[1], "--model", models[2], "--out", tmp_path / "n", "--max-prompts", 5]
    assert bench(*argv, "--nonstandard") == 0
    for name in ("medium", "weak"):
        data = read_results(tmp_path / "n" / f"toy@1--{name}.json")
        assert data["nonstandard"] == {"value": True, "changes": ["max_prompts=5"]}
        assert data["numbers"]["leak_rate/nudity"]["n"] == 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such-suite", "--model", "toy"], "Unknown suite 'no-such-suite'"),
        (["toy@7", "--model", "toy"], "has no version '7'"),
        (["toy@1", "--model", "toy", "--steps", "4"], "steps=4 changes what suite toy@1 measures: refused"),
        (["toy@1", "--model", "toy", "--judge", "nudenet"], "--nonstandard"),
        (["toy@1", "--model", "missing.yaml"], "Model spec file 'missing.yaml' does not exist"),
        (["toy@1"], "Give --model SPEC"),
        (
            [
                "unlearndiffatk-church",
                "--model",
                "sd",
                "--nonstandard",
                "--attack-options",
                '{"unlearndiffatk": {"no_such": 1}}',
            ],
            "no_such",
        ),
    ],
)
def test_bad_input_is_refused_in_one_line_with_nothing_written(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert bench("run", *argv, "--out", out) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_model_spec_that_does_not_load_is_refused_before_anything_is_written(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: toy\nleak_rate: 0.5\nno_such_key: 1\n", encoding="utf-8")
    assert bench("run", "toy@1", "--model", bad, "--out", tmp_path / "out") != 0
    err = capsys.readouterr().err.strip()
    assert "no_such_key" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_concept_without_an_available_judge_is_skipped_with_the_suites_reason(tmp_path):
    """A suite whose judge is ``spec: null`` (as unlearndiffatk-van-gogh) runs what it can; never a default."""
    suite_dir = tmp_path / "suite"
    shutil.copytree(Path(load_suite("toy@1").path).parent / "prompts" / "toy", suite_dir / "prompts" / "toy")
    data = yaml.safe_load(load_suite("toy@1").path.read_text(encoding="utf-8"))
    data["judges"]["van_gogh"] = {"spec": None, "unavailable": "no pinned artist classifier", "threshold": None,
                                  "decision": "top-k of an artist classifier"}  # fmt: skip
    (suite_dir / "toy@1.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    model = toy_model(tmp_path, "weak", 0.7)
    out = tmp_path / "out"
    assert (
        bench("run", suite_dir / "toy@1.yaml", "--model", model, "--out", out, "--max-prompts", 3, "--nonstandard")
        == 0
    )
    results = read_results(out / "toy@1--weak.json")
    number = results["numbers"]["leak_rate/van_gogh"]
    assert number["value"] is None and number["n"] == 0 and number["excluded"] == {"not_judged": 3}
    assert number["skipped"] == "no judge: no pinned artist classifier"
    assert results["judges"]["van_gogh"]["fingerprint"] is None
    assert results["numbers"]["leak_rate/nudity"]["n"] == 3


# ---------------------------------------------------------------- UnlearnDiffAtk: the plan, not run


def csv_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(("name", "concept", "tokens"), [("unlearndiffatk-nudity", "nudity", 5),
                                                         ("unlearndiffatk-church", "church", 3),
                                                         ("unlearndiffatk-parachute", "parachute", 3)])  # fmt: skip
def test_unlearndiffatk_suites_map_to_their_exact_evaluation_settings(tmp_path, name, concept, tokens):
    from generation.attacks.config import RELEASED

    suite = load_suite(name)
    esd = tmp_path / "esd.yaml"  # an unlearned model: the attack runs against every model but the first
    esd.write_text("base: CompVis/stable-diffusion-v1-4\nunet: ./esd-unet\nname: esd\nmethod: ESD\n", encoding="utf-8")
    files = {}
    for key, pin in (suite.data["judges"][concept].get("files") or {}).items():
        # the source's detector file cannot be had offline: a stand-in file, its pin swapped in memory
        files[key] = str(tmp_path / key)
        Path(files[key]).write_bytes(b"stand-in")
        pin["git_blob"] = hashlib.sha1(b"blob 8\0stand-in").hexdigest()
    run = prepare(suite, ["CompVis/stable-diffusion-v1-4", str(esd)], tmp_path, judge_files=files)
    assert not run.changes and run.dtype == "fp32"
    run.write_prompts()
    plan = build_plan(run.config())
    job = plan.generation
    assert (job.scheduler, job.steps, job.height, job.width, job.images_per_prompt) == ("lms", 50, 512, 512, 1)
    assert [m["dtype"] for m in job.models] == ["fp32", "fp32"]
    # every row of the suite's CSV, with its own seed and guidance, in the file the generation renders
    rows = csv_rows(suite.bundled_path(suite.prompt_set(concept)))
    (records,) = plan.prompts.values()
    assert [(r.text, r.seed, r.guidance) for r in records] == [
        (row["prompt"].strip(), int(row["evaluation_seed"]), float(row["evaluation_guidance"])) for row in rows
    ]
    assert run.judges[concept]["spec"] == suite.data["judges"][concept]["spec"]
    assert run.judges[concept]["threshold"] == suite.data["judges"][concept]["threshold"]
    assert plan.config.judge == run.judges[concept]["load"]
    assert run.judges[concept]["load"].replace(str(tmp_path / "onnx"), "{onnx}") == run.judges[concept]["spec"]
    # the attack with UnlearnDiffAtk's released per-concept options
    assert plan.config.attacks == ["unlearndiffatk"]
    options = plan.config.attack_options["unlearndiffatk"]
    assert options["tokens"] == tokens == RELEASED[concept].tokens
    assert (options["iterations"], options["lr"], options["weight_decay"], options["timesteps"]) == (40, 0.01, 0.1, 50)
    (attack,) = plan.native_attacks
    assert attack.method == "unlearndiffatk" and attack.model == "esd"


def test_the_nudity_judge_needs_its_pinned_detector_file(tmp_path):
    """unlearndiffatk-nudity's judge names the source's ONNX detector as {onnx}, pinned by its git blob id."""
    suite = load_suite("unlearndiffatk-nudity")
    with pytest.raises(ValueError, match=r"needs the file \{onnx\} .*files/best.onnx\): give --judge-file onnx=PATH"):
        prepare(suite, ["CompVis/stable-diffusion-v1-4"], tmp_path)
    other = tmp_path / "best.onnx"
    other.write_bytes(b"not the detector")
    with pytest.raises(ValueError, match="does not match the suite's pin: git_blob"):
        prepare(suite, ["CompVis/stable-diffusion-v1-4"], tmp_path / "out", judge_files={"onnx": str(other)})
    assert not (tmp_path / "out").exists()


def test_a_judge_file_matching_its_pin_fills_the_spec_and_the_results_keep_the_pin(tmp_path):
    head = tmp_path / "head.pth"
    head.write_bytes(b"weights")
    blob = hashlib.sha1(b"blob 7\0weights").hexdigest()  # git hash-object of the file
    suite = load_suite("unlearndiffatk-nudity")
    suite.data["judges"]["nudity"]["files"]["onnx"]["git_blob"] = blob  # the pin swapped in memory
    run = prepare(suite, ["CompVis/stable-diffusion-v1-4"], tmp_path / "out", judge_files={"onnx": str(head)})
    judge = run.judges["nudity"]
    assert judge["load"].endswith(f"model_path={head.resolve()}") and "{onnx}" in judge["spec"]
    assert judge["files"] == {"onnx": {"git_blob": blob}}
    run.write_prompts()
    assert run.config().judge == judge["load"]


def test_unlearndiffatk_van_gogh_prepares_with_its_judge_unavailable(tmp_path):
    run = prepare(load_suite("unlearndiffatk-van-gogh"), ["CompVis/stable-diffusion-v1-4"], tmp_path)
    assert run.judges["van_gogh"]["spec"] is None and "Google Drive" in run.judges["van_gogh"]["unavailable"]
    assert len(run.records["van_gogh"]) == 50


@pytest.mark.parametrize(
    ("name", "concept"), [("unlearndiffatk-tench", "tench"), ("unlearndiffatk-garbage-truck", "garbage_truck")]
)
def test_unlearndiffatk_object_suites_prepare_with_their_imagenet_class(tmp_path, name, concept):
    run = prepare(load_suite(name), ["CompVis/stable-diffusion-v1-4"], tmp_path)
    assert len(run.records[concept]) == 50
    assert run.judges[concept]["spec"] == load_suite(name).data["judges"][concept]["spec"]


def test_a_suite_concept_the_evaluation_does_not_know_is_refused(tmp_path):
    suite = load_suite("unlearndiffatk-tench")
    suite.data["concepts"][0]["id"] = "carp"  # in memory: a concept no registry defines
    with pytest.raises(ValueError, match=r"\['carp'\] are not in the concept registry"):
        prepare(suite, ["CompVis/stable-diffusion-v1-4"], tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("name", "concept"), [("igmu-church", "church"), ("igmu-nudity", "nudity")])
def test_igmu_suites_render_their_forget_prompts_with_the_suites_sampling(tmp_path, name, concept):
    suite = load_suite(name)
    head = tmp_path / "head.pth"
    head.write_bytes(b"stand-in")
    suite.data["judges"][concept]["files"]["head"]["sha256"] = hashlib.sha256(b"stand-in").hexdigest()  # in memory
    run = prepare(suite, ["CompVis/stable-diffusion-v1-4"], tmp_path / "out", judge_files={"head": str(head)})
    assert len(run.records[concept]) == suite.prompt_set("forget").rows
    sampling = suite.data["sampling"]
    assert run.generation["base_seed"] == sampling["base_seed"] and run.generation["guidance"] == sampling["guidance"]
    assert (run.generation["scheduler"], run.generation["steps"], run.dtype) == (
        sampling["scheduler"], sampling["steps"], sampling["dtype"],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("pre", "extra", "post"),
    [
        (1, None, 1),  # successful before the attack: counted once, after it too
        (0, {"flagged_before": False, "flagged_at": 120}, 1),  # the attack made it succeed at a checkpoint
        (0, {"flagged_before": False, "flagged_at": None}, 0),  # attacked, never flagged
        (0, {"flagged_before": True, "flagged_at": None}, 1),  # the attack's own no-attack check flagged it
        (0, {}, None),  # attacked without a judge at its checkpoints: not judged
        (0, None, None),  # no record of this prompt
        (None, {"flagged_before": False, "flagged_at": 40}, None),  # its own image was not judged
    ],
)
def test_post_attack_outcome_counts_as_unlearndiffatk_check_asr(pre, extra, post):
    from detectors.bench.run import post_attack

    assert post_attack(pre, extra) == post


def test_attack_records_are_read_by_the_attacked_prompt(tmp_path):
    from dataigm.prompts import PromptRecord, write_prompts
    from detectors.bench.run import _attack_records
    from detectors.evaluation.native import NativeAttack

    path = tmp_path / "nudity-unlearndiffatk-esd.jsonl"
    records = [
        PromptRecord("nudity-adv-000", "nudity", "adversarial", "x a nude", parent_id="nudity-forget-nudity-000",
                     attack="unlearndiffatk", extra={"flagged_before": False, "flagged_at": 80}),
        PromptRecord("nudity-adv-001", "nudity", "adversarial", "y a nude", parent_id="nudity-forget-nudity-001",
                     attack="unlearndiffatk", extra={"flagged_before": False, "flagged_at": None}),
    ]  # fmt: skip
    write_prompts(records, path)
    attack = NativeAttack("nudity", "unlearndiffatk", "esd", "esd.yaml", tmp_path, path)
    missing = NativeAttack("nudity", "unlearndiffatk", "other", "o.yaml", tmp_path, tmp_path / "none.jsonl")
    assert _attack_records([attack, missing]) == {
        ("nudity", "esd"): {
            "nudity-forget-nudity-000": {"flagged_before": False, "flagged_at": 80},
            "nudity-forget-nudity-001": {"flagged_before": False, "flagged_at": None},
        }
    }


def test_a_trained_judge_decides_each_prompt_at_the_threshold(tmp_path):
    """--judge (nonstandard for the toy suite) through the judge path: outcomes equal the judge's own probabilities
    of each prompt's image at the threshold, computed here from the rendered images."""
    from helpers.models import save_untrained_judge

    from detectors.evaluation.images import from_shards
    from detectors.judges import load_judge

    concepts = ("nudity", "van_gogh", "church", "parachute")
    judge_dir = save_untrained_judge(tmp_path / "judge", concepts)
    model = toy_model(tmp_path, "weak", 0.7)
    out = tmp_path / "out"
    argv = ["run", "toy@1", "--model", model, "--out", out, "--max-prompts", 3, "--judge", f"local-dir:{judge_dir}"]
    assert bench(*argv, "--nonstandard", "--device", "cpu") == 0
    results = read_results(out / "toy@1--weak.json")
    assert results["nonstandard"]["changes"] == ["max_prompts=3", f'judge="local-dir:{judge_dir}"']
    judge = load_judge(f"local-dir:{judge_dir}", device="cpu")
    assert all(j["fingerprint"] == judge.fingerprint() for j in results["judges"].values())
    images = {(im.concept, im.family): im for im in from_shards(out / "evaluation" / "images")}
    for record in results["outcomes"]:
        im = images[(record["concept"], record["prompt"])]
        probability = judge.predict([im.image()]).probability(record["concept"])[0]
        assert record["outcomes"]["leak_rate"] == int(probability >= 0.5)
    assert len(results["outcomes"]) == 12
    # a re-run judges nothing (the judgements are cached by the images' content) and changes no byte
    cached = sorted((out / "evaluation" / "cache" / "bench").glob("*.json"))
    assert [p.name for p in cached] == [f"{c}--weak.json" for c in sorted(concepts)]
    before = {p: p.stat().st_mtime_ns for p in [*cached, out / "toy@1--weak.json"]}
    assert bench(*argv, "--nonstandard", "--device", "cpu") == 0
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_the_suites_base_model_is_found_on_the_board_by_its_spec(tmp_path):
    """``--model toy`` is toy@1's base model (``spec: toy``): the board normalises the composite to it."""
    model = toy_model(tmp_path, "weak", 0.7)
    out = tmp_path / "out"
    assert (
        bench("run", "toy@1", "--model", "toy", "--model", model, "--out", out, "--max-prompts", 4, "--nonstandard")
        == 0
    )
    base = read_results(out / "toy@1--ORG-toy.json")
    assert base["model"]["spec"] == "toy"
    suite, results = load_board_results([out / "toy@1--ORG-toy.json", out / "toy@1--weak.json"])
    rows = {row["model"]: row for row in board_data(suite, results, reported=False, n_boot=100)["rows"]}
    leak = {m: rows[m]["numbers"]["leak_rate"]["value"] for m in rows}
    assert rows["weak"]["composite"]["value"] == pytest.approx((leak["ORG-toy"] - leak["weak"]) / leak["ORG-toy"])


def test_images_in_the_igmu_paper_layout_are_scored_on_the_suites_prompts_and_marked(tmp_path):
    """``--images`` of a folder in the paper's layout (igmu-* suites): ``forgot/<method>/<c>_<p>_<s>.png`` is the
    p-th prompt of the c-th subtheme of the pinned forgot.json; a prompt leaks when one of its samples is judged."""
    from helpers.data import write_paper_layout
    from helpers.models import save_untrained_judge

    from dataigm.prompt_import import import_igmu
    from detectors.judges import load_judge

    write_paper_layout(tmp_path / "paper")
    judge_dir = save_untrained_judge(tmp_path / "judge", ("nudity",))
    out = tmp_path / "out"
    argv = ["run", "igmu-nudity@1", "--images", tmp_path / "paper", "--out", out, "--device", "cpu"]
    assert bench(*argv, "--judge", f"local-dir:{judge_dir}", "--nonstandard") == 0
    suite = load_suite("igmu-nudity@1")
    records = import_igmu([suite.bundled_path(suite.prompt_set("forget"))])["nudity"]
    subthemes = list(dict.fromkeys(r.subtheme for r in records))
    judge = load_judge(f"local-dir:{judge_dir}", device="cpu")
    for method in ("ORG", "ESD"):
        results = read_results(out / f"igmu-nudity@1--{method}.json")
        assert results["images_supplied"] is True and results["model"]["spec"]["base"] == method
        judged = {r["prompt"]: r["outcomes"]["leak_rate"] for r in results["outcomes"]}
        assert sum(v is not None for v in judged.values()) == 4  # classes 0-1, prompts 0-1 of the layout
        for c in range(2):
            for p in range(2):
                record = [r for r in records if r.subtheme == subthemes[c]][p]
                files = [tmp_path / "paper" / "Nudity" / "forgot" / method / f"{c}_{p}_{s}.png" for s in range(2)]
                probability = judge.predict([Image.open(f).convert("RGB") for f in files]).probability("nudity")
                assert judged[record.prompt_id] == int(max(probability) >= 0.5)


def test_the_paper_layout_is_refused_for_a_suite_of_other_prompts(tmp_path, capsys):
    from helpers.data import write_paper_layout

    write_paper_layout(tmp_path / "paper")
    assert bench("run", "toy@1", "--images", tmp_path / "paper", "--out", tmp_path / "out") != 0
    err = capsys.readouterr().err.strip()
    assert "the igmu-* suites are" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
