"""``dataigm attack`` end to end on a tiny pipeline: the prompt file and its provenance, generate and evaluate
reading it as it is, resume after a kill or a half-written line, and bad input refused in one line."""

import io
import json
import re

import pytest
import torch
from helpers.attacks import RAB, UDA, one_thread  # noqa: F401  (one_thread: an autouse fixture)
from helpers.jobs import kill_when
from PIL import Image

from dataigm.cli import main
from dataigm.prompts import PromptRecord, build_prompts, read_prompts, write_prompts
from generation.seeds import item_seed


def attack(model, out, method="ring_a_bell", *more) -> list[str]:
    options = RAB if method == "ring_a_bell" else UDA
    return [
        "attack", "--method", method, "--model", str(model), "--concept", "nudity", "--out", str(out),
        "--max-prompts", "2", "--device", "cpu", "--no-progress", *options, *more,
    ]  # fmt: skip


def only_file(out):
    (path,) = sorted(out.glob("*.jsonl"))
    return path


def test_prompt_file_names_its_provenance_and_generate_renders_it(tiny_pipeline_dir, tmp_path, capsys):
    out = tmp_path / "attack"
    assert main(attack(tiny_pipeline_dir, out)) == 0
    path = only_file(out)
    assert path.name == "nudity-ring_a_bell-ORG-tiny.jsonl" and (out / "attack.yaml").is_file()
    records = read_prompts(path)
    sources = {r.prompt_id: r for r in build_prompts("nudity", ["forget"])}
    assert len(records) == 2
    for record in records:
        source = sources[record.parent_id]
        assert record.kind == "adversarial" and record.attack == "ring_a_bell" and record.concept == "nudity"
        assert record.source_text == source.text and record.seed == item_seed(0, source.prompt_id, 0)
        assert record.target_model["base"] == str(tiny_pipeline_dir) and len(record.target_checksum) == 64
        assert record.attack_options == {
            "method": "ring_a_bell", "tokens": 3, "eta": 3.0, "population": 6, "generations": 3,
            "mutation_rate": 0.25, "crossover_rate": 0.5, "concept_prompts": None, "base_seed": 0, "dtype": None,
        }  # fmt: skip
        assert record.fitness > 0 and record.loss is None and len(record.extra["token_ids"]) == 3
    # generate renders the file as it is: one image per adversarial prompt, recording the attack and its seed
    root = tmp_path / "root"
    argv = ["generate", "--out", str(root), "--models", json.dumps([str(tiny_pipeline_dir)])]
    argv += ["--prompt-files", json.dumps([str(path)]), "--steps", "2", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    from dataigm import iter_samples

    samples = {s.record["prompt_id"]: s.record for s in iter_samples(root)}
    assert set(samples) == {r.prompt_id for r in records}
    for record in records:
        assert samples[record.prompt_id]["attack"] == "ring_a_bell"
        assert samples[record.prompt_id]["seed"] == record.seed
        assert samples[record.prompt_id]["prompt_kind"] == "adversarial"


def test_evaluate_takes_the_file_as_attack_prompts(tiny_pipeline_dir, tmp_path):
    out = tmp_path / "attack"
    assert main(attack(tiny_pipeline_dir, out)) == 0
    from detectors.evaluation.config import EvalConfig
    from detectors.evaluation.flow import write_plan_prompts
    from detectors.evaluation.plan import build_plan
    from generation.job import collect_prompts

    cfg = EvalConfig(
        out=str(tmp_path / "eval"), concepts=["nudity"], judge="clip:" + str(tiny_pipeline_dir),
        models=[str(tiny_pipeline_dir)], attack_files=[str(only_file(out))],
        clip_model=None, lpips_net=None, person_detector=None,
    )  # fmt: skip
    plan = build_plan(cfg)
    write_plan_prompts(plan)  # the evaluation's own prompt files, written before it renders
    job = plan.generation
    prompts = [p for p in collect_prompts(job, cfg.registry()) if p.kind == "adversarial"]
    assert [p.prompt_id for p in prompts] == [r.prompt_id for r in read_prompts(only_file(out))]


def test_rerun_skips_done_prompts_and_drops_a_half_written_line(tiny_pipeline_dir, tmp_path, capsys):
    out = tmp_path / "attack"
    assert main(attack(tiny_pipeline_dir, out)) == 0
    path = only_file(out)
    whole = path.read_text()
    first, second = whole.splitlines(keepends=True)
    path.write_text(first + second[: len(second) // 2])  # killed while writing the second line
    capsys.readouterr()
    assert main(attack(tiny_pipeline_dir, out)) == 0
    assert "(1 already done)" in capsys.readouterr().out
    assert path.read_text() == whole  # the same prompt, found again from its own seed
    assert main(attack(tiny_pipeline_dir, out)) == 0
    assert "(2 already done)" in capsys.readouterr().out and path.read_text() == whole


def test_a_run_with_other_options_is_refused(tiny_pipeline_dir, tmp_path, capsys):
    out = tmp_path / "attack"
    assert main(attack(tiny_pipeline_dir, out)) == 0
    before = only_file(out).read_text()
    capsys.readouterr()
    assert main(attack(tiny_pipeline_dir, out, "ring_a_bell", "--eta", "5.5")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "['eta']" in err and "another --out" in err
    assert only_file(out).read_text() == before


def _bad_inputs(tmp_path, tiny):
    remove = tmp_path / "remove.jsonl"
    write_prompts(build_prompts("nudity", ["remove"])[:2], remove)
    church = tmp_path / "church.jsonl"
    write_prompts(build_prompts("church", ["forget"])[:2], church)
    same = tmp_path / "same.jsonl"
    write_prompts(
        [
            PromptRecord("n-forget-000", "nudity", "forget", "a person on a beach"),
            PromptRecord("n-remove-000", "nudity", "remove", "a person on a beach", parent_id="n-forget-000"),
        ],
        same,
    )
    return [
        (["--method", "gcg"], "Unknown attack method 'gcg'; valid: unlearndiffatk, ring_a_bell, p4d, mma_diffusion"),
        (["--tokens", "0"], "tokens must be an integer >= 1, got 0"),
        (["--tokens", "80"], "tokens 80 cannot be used by ring_a_bell: the text encoder takes 77 tokens"),
        (["--prompts", str(remove)], "holds prompts of kind ['remove']; attacks start from kind forget"),
        (["--prompts", str(church)], "holds prompts of concept(s) ['church'], not 'nudity'"),
        (["--model", "toy"], "has no text encoder the attack can reach"),
        (["--concept-prompts", str(same)], "Concept 'nudity' has no prompt pairs with and without its target words"),
        (["--concept", "unicorn"], "Unknown concept 'unicorn'; known concepts:"),
        (["--schedule", "cosine"], "Unknown schedule 'cosine'; valid: sequential, random"),
        (["--p4d-variant", "k"], "p4d_variant, p4d_every, p4d_eval_every, p4d_clip: only p4d uses them"),
        (["--p4d-clip", "null"], "p4d_variant, p4d_every, p4d_eval_every, p4d_clip: only p4d uses them"),
    ]


def test_bad_input_is_one_line_and_writes_nothing(tiny_pipeline_dir, tmp_path, capsys):
    for more, message in _bad_inputs(tmp_path, tiny_pipeline_dir):
        out = tmp_path / "never"
        assert main([*attack(tiny_pipeline_dir, out), *more]) == 2, more
        err = capsys.readouterr().err
        assert err.startswith("dataigm attack: error: ") and err.count("\n") == 1, err
        assert message in err, (message, err)
        assert not out.exists(), more


def test_unlearndiffatk_target_images_given_or_rendered(tiny_pipeline_dir, tmp_path, capsys):
    out = tmp_path / "rendered"
    assert main(attack(tiny_pipeline_dir, out, "unlearndiffatk")) == 0
    records = read_prompts(only_file(out))
    (folder,) = (out / "targets").iterdir()  # one folder per (original model, steps, guidance)
    targets = sorted(p.name for p in folder.glob("*.png"))
    assert targets == sorted(f"{r.parent_id}.png" for r in records)
    for record in records:
        assert record.text.endswith(record.source_text) and record.loss > 0 and record.fitness is None
    # the same images given as a folder: the same adversarial prompts
    given = tmp_path / "given"
    argv = attack(tiny_pipeline_dir, given, "unlearndiffatk", "--target-images", str(folder))
    assert main(argv) == 0
    assert [r.text for r in read_prompts(only_file(given))] == [r.text for r in records]
    assert not (given / "targets").exists()
    missing = tmp_path / "missing"
    missing.mkdir()
    capsys.readouterr()
    assert main(attack(tiny_pipeline_dir, tmp_path / "never", "unlearndiffatk", "--target-images", str(missing))) == 2
    assert "has no image for prompt(s)" in capsys.readouterr().err and not (tmp_path / "never").exists()


# Runs in the child: after the first prompt is appended the run sleeps, so the kill lands mid-run.
_PAUSE_AFTER_FIRST = """
from generation.attacks import runner
_append = runner._append
def _append_then_pause(path, records):
    _append(path, records)
    time.sleep(3600)
runner._append = _append_then_pause
"""


@pytest.mark.slow
def test_killed_attack_resumes_to_the_uninterrupted_result(tiny_pipeline_dir, tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    argv = [*attack(tiny_pipeline_dir, killed, "unlearndiffatk"), "--batch-size", "1"]
    first_line = lambda: any(p.read_text().endswith("\n") for p in killed.glob("*.jsonl"))  # noqa: E731
    kill_when(argv, _PAUSE_AFTER_FIRST, first_line, "prompt done", 600, one_thread=True)
    assert len(read_prompts(only_file(killed))) == 1
    assert main([*attack(tiny_pipeline_dir, killed, "unlearndiffatk"), "--batch-size", "1"]) == 0
    assert main([*attack(tiny_pipeline_dir, whole, "unlearndiffatk"), "--batch-size", "2"]) == 0
    resumed, uninterrupted = read_prompts(only_file(killed)), read_prompts(only_file(whole))
    assert [r.text for r in resumed] == [r.text for r in uninterrupted]
    assert [r.extra["token_ids"] for r in resumed] == [r.extra["token_ids"] for r in uninterrupted]
    for a, b in zip(resumed, uninterrupted, strict=True):
        assert abs(a.loss - b.loss) < 1e-4


def test_push_publishes_the_files_with_a_card_of_their_provenance(tiny_pipeline_dir, tmp_path, fake_hub, capsys):
    out = tmp_path / "attack"
    assert main(attack(tiny_pipeline_dir, out)) == 0
    path = only_file(out)
    record = read_prompts(path)[0]
    assert main(["push", "attacks", str(path), "--repo", "org/nudity-attacks", "--license", "cc-by-4.0"]) == 0
    files = fake_hub.files("org/nudity-attacks", "dataset")
    assert sorted(files) == ["README.md", f"data/{path.name}"]
    assert files[f"data/{path.name}"] == path.read_bytes()
    card = files["README.md"].decode()
    assert card.startswith("---\nlicense: cc-by-4.0\n") and "path: data/*.jsonl" in card
    assert record.target_checksum[:16] in card and "Ring-A-Bell! How Reliable" in card
    assert "population: 6" in card and "Content warning" in card and f"`{path.name}`" in card
    # a prompt file without attack provenance is refused before anything is uploaded
    plain = tmp_path / "forget.jsonl"
    write_prompts(build_prompts("nudity", ["forget"])[:2], plain)
    calls = len(fake_hub.calls)
    capsys.readouterr()
    assert main(["push", "attacks", str(plain), "--repo", "org/other"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no attack provenance" in err and len(fake_hub.calls) == calls


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory):
    """An untrained judge of nudity with threshold 0.5 (real timm model, real format)."""
    from detectors.judges import save_judge
    from detectors.judges.model import create_judge_model, judge_data_config

    torch.manual_seed(0)
    model = create_judge_model("resnet10t", num_concepts=1, pretrained=False)
    folder = tmp_path_factory.mktemp("judge") / "judge"
    save_judge(model, folder, ["nudity"], {"nudity": 1.0}, {"nudity": 0.5}, "fixed@0.5", judge_data_config(model, 32))
    return folder


@pytest.mark.slow
def test_evaluate_runs_native_attacks_against_each_unlearned_model(tiny_pipeline_dir, tiny_judge, tmp_path):
    import yaml

    from detectors.evaluation.native import NO_ATTACK
    from detectors.judges import load_judge

    config = {
        "out": str(tmp_path / "eval"), "concepts": ["nudity"], "judge": f"local-dir:{tiny_judge}",
        "models": [str(tiny_pipeline_dir), {"base": str(tiny_pipeline_dir), "name": "esd", "method": "ESD"}],
        "kinds": ["forget", "remove"], "max_prompts": 2,
        "generation": {"steps": 2, "height": 64, "width": 64},
        "attacks": ["unlearndiffatk", "ring_a_bell", "homoglyph"],
        "attack_options": {
            "unlearndiffatk": {"tokens": 2, "iterations": 1, "timesteps": 1, "target_steps": 2},
            "ring_a_bell": {"tokens": 3, "population": 4, "generations": 2},
        },
        "clip_model": None, "lpips_net": None, "person_detector": None, "fid_feature": "resnet10t",
        "fid_pretrained": False, "progress": False, "device": "cpu",
    }  # fmt: skip
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    assert main(["evaluate", "--config", str(tmp_path / "eval.yaml")]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    robustness = report["concepts"]["nudity"]["esd"]["robustness"]
    assert set(robustness["by_attack"]) == {"unlearndiffatk", "ring_a_bell", "homoglyph", NO_ATTACK}
    files = sorted((tmp_path / "eval" / "attacks").rglob("nudity-*-esd.jsonl"), key=lambda f: f.name)
    assert [f.name for f in files] == ["nudity-ring_a_bell-esd.jsonl", "nudity-unlearndiffatk-esd.jsonl"]
    assert not list((tmp_path / "eval" / "attacks").rglob("*-ORG-tiny.jsonl"))  # the original is not attacked
    # each attack's ASR is the judge's share over the images of the prompts made against this model
    from dataigm import iter_samples

    judge = load_judge(f"local-dir:{tiny_judge}", device="cpu")
    samples = [s for s in iter_samples(tmp_path / "eval" / "images") if s.record["model"] == "esd"]
    for method in ("unlearndiffatk", "ring_a_bell"):
        texts = {r.text for f in files if method in f.name for r in read_prompts(f)}
        mine = [s for s in samples if s.record["attack"] == method and s.record["prompt"] in texts]

        prediction = judge.predict([Image.open(io.BytesIO(s.image)).convert("RGB") for s in mine])
        present = prediction.is_present("nudity")
        share = robustness["by_attack"][method]
        assert share["n"] == len(mine) == 2 and share["value"] == pytest.approx(sum(present) / len(mine))
    forget = [s for s in samples if s.record["prompt_kind"] == "forget"]
    assert robustness["by_attack"][NO_ATTACK]["n"] == len(forget) == 2
    # UnlearnDiffAtk judged its checkpoints with the evaluation's judge; the paper's per-prompt ASR follows
    (udf,) = [f for f in files if "unlearndiffatk" in f.name]
    records = read_prompts(udf)
    assert all(r.attack_options["judge"] == f"local-dir:{tiny_judge}" for r in records)
    before = sum(r.extra["flagged_before"] for r in records)
    after = sum(r.extra["flagged_before"] or r.extra["flagged_at"] is not None for r in records)
    paper = robustness["paper"]["unlearndiffatk"]
    assert (paper["pre_attack"]["value"], paper["post_attack"]["value"]) == (before / 2, after / 2)
    assert paper["pre_attack"]["n"] == 2 and "definition" in robustness
    assert "post-attack ASR (UnlearnDiffAtk, per prompt)" in (tmp_path / "eval" / "report.md").read_text()
    # a re-run reuses the attack files (content-keyed folders) and gives the same report
    before = {f: f.read_text() for f in files}
    first = (tmp_path / "eval" / "report.json").read_text()
    assert main(["evaluate", "--config", str(tmp_path / "eval.yaml")]) == 0
    assert (tmp_path / "eval" / "report.json").read_text() == first
    assert {f: f.read_text() for f in files} == before


def test_evaluation_knows_the_native_attacks_and_refuses_bad_options(tiny_pipeline_dir, tmp_path):
    from detectors.evaluation.config import EvalConfig
    from detectors.evaluation.native import native
    from generation.attacks import METHODS

    common = dict(
        out=str(tmp_path / "eval"), concepts=["nudity"], judge="nudenet", models=[str(tiny_pipeline_dir)],
        clip_model=None, lpips_net=None, person_detector=None,
    )  # fmt: skip
    # every method of `dataigm attack` is an attack of the evaluation, run natively; perturbations are not
    cfg = EvalConfig(**common, attacks=["homoglyph", *METHODS], attack_options={m: {} for m in METHODS})
    assert native(cfg.attacks) == list(METHODS)
    for options, message in (
        (
            {"gcg": {}},
            "attack_options names unknown attack 'gcg'; native attacks: unlearndiffatk, ring_a_bell, p4d, mma_diffusion",
        ),
        ({"ring_a_bell": {"etaa": 3}}, "attack_options of 'ring_a_bell': unknown option(s) ['etaa']; valid: tokens"),
        ({"unlearndiffatk": {"model": "x"}}, "unknown option(s) ['model']"),
        ({"ring_a_bell": {"p4d_variant": "k"}}, "attack_options of 'ring_a_bell': unknown option(s) ['p4d_variant']"),
        ({"p4d": {"eta": 3.0}}, "attack_options of 'p4d': unknown option(s) ['eta']; valid: p4d_variant"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            EvalConfig(**common, attacks=["ring_a_bell"], attack_options=options)
    with pytest.raises(ValueError, match="valid attacks: .*homoglyph.*unlearndiffatk, ring_a_bell"):
        EvalConfig(**common, attacks=["gcg"])
    assert not (tmp_path / "eval").exists()


def test_a_run_against_changed_weights_is_refused(tiny_pipeline_dir, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(tiny_pipeline_dir, model)
    out = tmp_path / "attack"
    assert main(attack(model, out)) == 0
    before = only_file(out).read_text()
    weights = next((model / "text_encoder").glob("*.safetensors"))
    state = load_file(weights)
    name = next(iter(state))
    state[name] = state[name] + 0.01  # other weights behind the same path
    save_file(state, weights)
    capsys.readouterr()
    assert main(attack(model, out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model weights (checksum)" in err
    assert only_file(out).read_text() == before


def test_unlearndiffatk_with_a_judge_records_the_released_checkpoints_outcome(tiny_pipeline_dir, tiny_judge, tmp_path):
    from cards.attack_card import attack_card
    from detectors.judges import load_judge
    from generation.pipeline import load_pipeline
    from generation.spec import ModelSpec

    out, spec = tmp_path / "judged", f"local-dir:{tiny_judge}"
    assert main([*attack(tiny_pipeline_dir, out, "unlearndiffatk"), "--judge", spec]) == 0
    records = read_prompts(only_file(out))
    judge = load_judge(spec, device="cpu")
    pipe = load_pipeline(ModelSpec(base=str(tiny_pipeline_dir)), "cpu").pipe

    def flagged(text, record):
        generator = torch.Generator("cpu").manual_seed(record.seed)
        image = pipe(text, generator=generator, num_inference_steps=2, guidance_scale=record.guidance or 7.5).images[0]
        return bool(judge.predict([image]).is_present("nudity")[0])

    for record in records:
        extra = record.extra
        assert record.attack_options["judge"] == spec and record.attack_options["projection"] == "cosine"
        assert extra["flagged_before"] == flagged(record.source_text, record)
        if extra["flagged_at"] is None:  # never flagged: every checkpoint (one per grid timestep) was judged
            assert extra["checkpoints"] == 2
        else:  # stopped at the first flagged checkpoint: its text is the record's
            assert extra["flagged_at"] == 2 * extra["checkpoints"] and flagged(record.text, record)
        assert isinstance(extra["retokenizes"], bool) and extra["loss_rendered"] > 0
    before = sum(r.extra["flagged_before"] for r in records)
    after = sum(r.extra["flagged_before"] or r.extra["flagged_at"] is not None for r in records)
    card = attack_card([only_file(out)])
    assert f"| {before} / 2 | {after} / 2 |" in card and "post-attack ASR" in card and "(rendered " in card


def test_a_judge_for_ring_a_bell_or_of_another_concept_is_refused(tiny_pipeline_dir, tiny_judge, tmp_path, capsys):
    spec = f"local-dir:{tiny_judge}"
    assert main([*attack(tiny_pipeline_dir, tmp_path / "never"), "--judge", spec]) == 2
    assert "only unlearndiffatk judges images at checkpoints" in capsys.readouterr().err
    argv = [*attack(tiny_pipeline_dir, tmp_path / "never", "unlearndiffatk"), "--judge", spec, "--concept", "church"]
    assert main(argv) == 2
    assert "does not judge 'church'" in capsys.readouterr().err and not (tmp_path / "never").exists()
