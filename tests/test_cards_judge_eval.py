"""Judge and evaluation cards, and pushing judges and reports to the fake Hub (tests/helpers/hub.py).

Everything is built from real outputs: a tiny judge trained by ``train_judge`` on a colour dataset whose
test split holds one hard source, measured by ``dataigm judge eval``, and a ``dataigm evaluate`` report
of images in the paper's layout.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.data import COLOR_LAYOUT, color_png, write_color_root, write_paper_layout
from helpers.hub import FakeHub
from helpers.models import TINY_PROBE
from huggingface_hub import ModelCard

from cards import eval_card, push_judge, push_report, report_files, write_eval_card, write_judge_card
from cards.limitations import concept_limitations, group_name
from dataigm import Sample, ShardId, load_registry, make_key, write_shard
from dataigm.cli import main

REPO = "my-org/church-judge"
SECRET = "hf_SECRET_token_value_123"
NUMBER = re.compile(r"-?\d+\.\d+")


def _add_hard_laion_shard(root: Path, n: int = 8) -> None:
    """Church test images from `laion` whose colours contradict their label every other image."""
    registry = load_registry()
    rng = np.random.default_rng(7)
    samples = []
    for i in range(n):
        target = i % 2 == 0
        record = {
            "concept": "church",
            "label": "target" if target else "pair",
            "category": registry.get("church").category,
            "source": "laion",
            "split": "test",
            "height": 16,
            "width": 16,
            "origin": f"hard/{i:05d}.png",
        }
        colour_lies = i % 4 < 2  # two of every four images look like the other class
        data = color_png(rng, not target if colour_lies else target)
        samples.append(Sample(make_key("laion", f"9{i:04d}"), data, "png", int(target), record))
    write_shard(root, ShardId("church", "test", "laion", 0), samples, job_id="test")


@pytest.fixture(scope="module")
def judge_run(tmp_path_factory):
    """(judge folder, `dataigm judge eval` folder) of a tiny trained judge; church is weak on `laion`."""
    from detectors import TrainConfig, train_judge

    base = tmp_path_factory.mktemp("judge-card")
    root = write_color_root(base / "colors", COLOR_LAYOUT)
    _add_hard_laion_shard(root)
    result = train_judge(
        TrainConfig(
            data=str(root),
            out=str(base / "run"),
            **{**TINY_PROBE, "model": "resnet10t.c3_in1k", "epochs": 3, "threshold_rule": "fpr@0.1"},
        )
    )
    eval_dir = base / "eval"
    code = main(
        ["judge", "eval", "--judge", f"local-dir:{result.judge_dir}", "--data", str(root), "--out", str(eval_dir)]
        + ["--bootstrap", "100", "--progress", "false"]
    )
    assert code == 0
    return Path(result.judge_dir), eval_dir


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, tiny_clip, judge_run):
    """A real `dataigm evaluate` output folder (images in the paper's layout, tiny metric backbones)."""
    from detectors.evaluation.config import EvalConfig
    from detectors.evaluation.flow import run_evaluation

    base = tmp_path_factory.mktemp("report")
    write_paper_layout(base / "bench")
    cfg = EvalConfig(
        out=str(base / "eval"), concepts=["nudity"], judge=f"local-dir:{judge_run[0]}",
        paper_layout=str(base / "bench"), paper_tasks={"nudity": "Nudity"}, clip_model=str(tiny_clip),
        fid_feature="resnet10t", fid_pretrained=False, lpips_random_backbone=True, person_detector=None,
        progress=False,
    )  # fmt: skip
    return run_evaluation(cfg)["json"].parent


@pytest.fixture
def hub(fake_hub, monkeypatch) -> FakeHub:
    """The fake Hub, with a token in the environment that must never show."""
    monkeypatch.setenv("HF_TOKEN", SECRET)
    return fake_hub


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _table_rows(text: str) -> list[list[str]]:
    """Cells of every table row in ``text`` (header and rule lines left out)."""
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("|")
    ]
    return [r for r in rows if not set("".join(r)) <= set("-")][1:] if rows else []


def _metrics(eval_dir: Path) -> dict:
    return json.loads((eval_dir / "metrics.json").read_text())


# -- the judge card ------------------------------------------------------------------------------------


def test_judge_card_yaml_and_tables_equal_metrics_json(judge_run, tmp_path):
    judge_dir, eval_dir = judge_run
    readme = write_judge_card(
        judge_dir, eval_dir, tmp_path / "card", repo_id=REPO, dataset_repo="my-org/dataigm", license="mit"
    )
    card = ModelCard.load(readme)
    assert card.data.library_name == "timm" and card.data.pipeline_tag == "image-classification"
    assert {"timm", "dataigm", "image-classification"} <= set(card.data.tags)
    assert card.data.license == "mit" and card.data.datasets == ["my-org/dataigm"]
    metrics, config = _metrics(eval_dir), json.loads((judge_dir / "config.json").read_text())

    overall = {r["concept"]: r["metrics"] for r in metrics["rows"] if r["source"] == r["method"] == "all"}
    index = {(r.dataset_config, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert index[("church", "accuracy")] == overall["church"]["accuracy"]["value"]
    assert index[("nudity", "roc_auc")] == overall["nudity"]["auroc"]["value"]

    evaluation = _section(card.text, "Evaluation")
    checked = 0
    for concept in config["concepts"]:
        rows = _table_rows(evaluation.split(f"### {concept}\n", 1)[1].split("###", 1)[0])
        expected = [r for r in metrics["rows"] if r["concept"] == concept]
        assert len(rows) == len(expected) >= 3
        for cells, row in zip(rows, expected, strict=True):
            assert cells[:4] == [row["source"], row["method"], str(row["n"]), str(row["n_target"])]
            for cell, key in zip(cells[4:], ("accuracy", "precision", "recall", "f1", "auroc", "ece"), strict=True):
                metric = row["metrics"][key]
                numbers = [float(x) for x in NUMBER.findall(cell)]
                wanted = [metric[k] for k in ("value", "low", "high") if metric[k] is not None]
                assert numbers == pytest.approx(wanted, abs=5e-4), (concept, row["source"], row["method"], key)
                checked += 1
    assert checked == 6 * len(metrics["rows"])

    training = _section(card.text, "Training data")
    assert config["dataset"]["manifest_sha256"] in training and "my-org/dataigm" in training
    calibration = _section(card.text, "Calibration and threshold")
    assert "fpr@0.1" in calibration and "false-positive rate is at most 0.1" in calibration
    for cells in _table_rows(calibration):
        assert float(cells[1]) == pytest.approx(config["temperatures"][cells[0]], rel=1e-3)
        assert float(cells[2]) == pytest.approx(config["thresholds"][cells[0]], rel=1e-3)
    for name in ("roc_church.png", "reliability_church.png", "roc_nudity.png", "reliability_nudity.png"):
        assert (tmp_path / "card" / name).read_bytes() == (eval_dir / name).read_bytes() and f"]({name})" in card.text
    assert f'load_judge("hf-hub:{REPO}")' in card.text
    assert f'timm.create_model("hf-hub:{REPO}", pretrained=True)' in card.text


def test_limitations_name_the_sources_and_methods_where_accuracy_drops(judge_run, tmp_path):
    judge_dir, eval_dir = judge_run
    text = ModelCard.load(write_judge_card(judge_dir, eval_dir, tmp_path)).text
    limits = _section(text, "Limitations")
    rows = [r for r in _metrics(eval_dir)["rows"] if r["concept"] == "church"]
    overall = next(r for r in rows if r["source"] == r["method"] == "all")["metrics"]["accuracy"]["value"]
    groups = [(r["source"], r["method"], r["metrics"]["accuracy"]["value"]) for r in rows if r is not rows[0]]
    lowest = min(groups, key=lambda g: g[2])
    assert lowest[:2] == ("laion", "all")  # the hard shard, found from the numbers
    assert f"**church**: accuracy is lowest on source `laion` ({lowest[2]:.3f}" in limits
    assert f"{(overall - lowest[2]) * 100:.1f} points below the overall {overall:.3f}" in limits
    below_line = next(line for line in limits.splitlines() if "more than 5 points below" in line)
    named = dict(
        re.findall(r"((?:source|method|no unlearning)[^(]*) \((\d\.\d+), [\d.]+ points below, n=\d+\)", below_line)
    )
    expected = {group_name(s, m): a for s, m, a in groups if (overall - a) * 100 > 5}
    assert set(named) == set(expected) and {"source `laion`", "no unlearning method"} <= set(named)
    assert all(float(named[name]) == pytest.approx(accuracy, abs=5e-4) for name, accuracy in expected.items())
    assert "**church**: not measured on" not in limits  # real, laion and generated are all in the test split
    assert "**nudity**: not measured on `real`, `generated` images" in limits


def test_limitations_when_every_group_is_equally_accurate(judge_run):
    row = next(r for r in _metrics(judge_run[1])["rows"] if r["source"] == r["method"] == "all")
    same = {**row, "metrics": {**row["metrics"], "accuracy": {"value": 0.9, "low": 0.8, "high": 0.95}}}
    rows = [same, {**same, "source": "real", "n": 40}, {**same, "method": "ESD", "source": "all", "n": 40}]
    lines = concept_limitations("church", rows)
    assert (
        lines[0]
        == "**church**: accuracy is 0.900 on every source and method measured (2 groups); the test split shows no weaker group."
    )
    assert not any("points below" in line for line in lines)


def test_judge_card_without_eval_uses_the_validation_metrics(judge_run, tmp_path):
    judge_dir, _ = judge_run
    folder = shutil.copytree(judge_dir, tmp_path / "judge")
    assert main(["card", "--judge", str(folder), "--repo", REPO]) == 0
    card = ModelCard.load(folder / "README.md")
    assert card.data.eval_results is None and "model-index" not in (folder / "README.md").read_text()
    validation = json.loads((folder / "config.json").read_text())["metrics"]["validation"]
    for cells in _table_rows(_section(card.text, "Evaluation")):
        v = validation[cells[0]]
        assert int(cells[1]) == v["n"]
        assert [float(c) for c in cells[2:]] == pytest.approx(
            [v[k] for k in ("accuracy", "precision", "recall", "f1", "auroc", "ece", "ece_uncalibrated")], abs=5e-4
        )
    assert "Measured only on the validation images" in _section(card.text, "Limitations")


def test_card_command_modes_and_bad_arguments(judge_run, report_dir, tmp_path, capsys):
    judge_dir, eval_dir = judge_run
    folder = shutil.copytree(judge_dir, tmp_path / "judge")
    assert main(["card", "--judge", str(folder), "--eval", str(eval_dir)]) == 0
    assert (folder / "README.md").exists() and (folder / "roc_church.png").exists()
    report = shutil.copytree(report_dir, tmp_path / "report", ignore=shutil.ignore_patterns("cache"))
    assert main(["card", "--report", str(report)]) == 0 and (report / "README.md").exists()
    assert main(["card"]) == 2 and "Give exactly one of" in capsys.readouterr().err
    assert main(["card", str(tmp_path), "--judge", str(folder)]) == 2
    assert main(["card", "--report", str(report), "--eval", str(eval_dir)]) == 2 and "--eval goes with --judge" in (
        capsys.readouterr().err
    )
    assert main(["card", "--judge", str(tmp_path)]) == 2 and "is not a judge folder" in capsys.readouterr().err
    assert main(["card", "--judge", str(folder), "--eval", str(tmp_path)]) == 2
    assert "metrics.json is missing" in capsys.readouterr().err


def test_metrics_of_another_judge_are_refused(judge_run, tmp_path):
    judge_dir, eval_dir = judge_run
    other = shutil.copytree(eval_dir, tmp_path / "other")
    metrics = _metrics(other)
    metrics["judge"]["thresholds"] = {c: 0.5 for c in metrics["judge"]["thresholds"]}
    (other / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match="measured another judge"):
        write_judge_card(judge_dir, other, tmp_path / "card")


def test_judge_card_includes_the_agreement_section_and_its_kappa_matrices(judge_run, tiny_clip, tmp_path, hub):
    from cards.agreement_card import agreement_section, read_agreement

    judge_dir, eval_dir = judge_run
    judge = f"local-dir:{judge_dir}"
    clip = f"clip-zeroshot:model={tiny_clip},target=church,anchor=a field,concept=church,threshold=0.5"
    agree = tmp_path / "agree"
    code = main(
        ["judge", "agree", "--judges", judge, clip, "--data", str(eval_dir.parent / "colors"), "--out", str(agree)]
        + ["--bootstrap", "100"]
    )
    assert code == 0
    report = read_agreement(agree)
    assert {judge, clip, "labels"} <= set(report["raters"]["church"])
    text = ModelCard.load(write_judge_card(judge_dir, eval_dir, tmp_path / "card", agreement_dir=agree)).text
    # the agreement card's own rendering (one renderer), placed before the limitations
    rendered = agreement_section(report, agree, level=2)
    assert rendered.startswith("## Agreement between judges\n")
    assert "## Agreement between judges\n" + _section(text, "Agreement between judges") == rendered + "\n"
    assert text.index("## Agreement between judges") < text.index("## Limitations")
    pair = next(r for r in report["rows"] if r["concept"] == "church" and {r["a"], r["b"]} == {judge, clip} and r["n"])
    assert f"{pair['agreement']['value']:.3f}" in rendered
    for concept in report["raters"]:
        name = f"agreement_{concept}.png"
        assert (tmp_path / "card" / name).read_bytes() == (agree / name).read_bytes() and f"]({name})" in text
    # without the folder the card has no such section; a folder without agreement.json is refused
    assert "Agreement between judges" not in ModelCard.load(write_judge_card(judge_dir, eval_dir, tmp_path)).text
    with pytest.raises(ValueError, match="holds no agreement.json"):
        write_judge_card(judge_dir, eval_dir, tmp_path / "x", agreement_dir=eval_dir)
    assert not (tmp_path / "x").exists()
    # the commands: `dataigm card --judge ... --agreement DIR` and `dataigm push judge ... --agreement DIR`
    copy = shutil.copytree(judge_dir, tmp_path / "judge-copy")
    assert main(["card", "--judge", str(copy), "--eval", str(eval_dir), "--agreement", str(agree)]) == 0
    assert _section(ModelCard.load(copy / "README.md").text, "Agreement between judges") == _section(
        text, "Agreement between judges"
    )
    assert (
        main(["push", "judge", str(judge_dir), "--repo", REPO, "--eval", str(eval_dir), "--agreement", str(agree)])
        == 0
    )
    pushed = hub.files(REPO)
    assert pushed["agreement_church.png"] == (agree / "agreement_church.png").read_bytes()
    assert "## Agreement between judges" in pushed["README.md"].decode()


# -- the evaluation card ---------------------------------------------------------------------------------


def test_eval_card_numbers_equal_report_json(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    card = ModelCard.load(write_eval_card(report_dir))
    assert {"dataigm", "machine-unlearning", "evaluation"} <= set(card.data.tags)
    rows = _table_rows(_section(card.text, "nudity").split("\n\n")[0])
    assert [r[0] for r in rows] == list(report["concepts"]["nudity"])
    paths = {
        1: ("forgetting", "overall"),
        4: ("lpips", "paired"),
        5: ("lpips", "all_pairs"),
        6: ("fid", "fid"),
    }
    for cells in rows:
        entry_of = report["concepts"]["nudity"][cells[0]]
        for col, (metric, part) in paths.items():
            entry = entry_of[metric][part]
            numbers = [float(x) for x in NUMBER.findall(cells[col].split(" (")[0])]  # the sizes follow in (...)
            wanted = [entry["value"], *(c for c in entry["ci"] if c is not None)]
            assert numbers == pytest.approx(wanted, abs=5e-4), (cells[0], metric, part)
            sizes = [f"n={entry['n']}", *(f"{k}={v}" for k, v in sorted(entry.items()) if k.startswith("n_"))]
            assert cells[col].endswith(f"({', '.join(sizes)})")  # FID: both set sizes too
        assert cells[2].startswith("skipped: needs forget images")  # CSDR needs prompt texts the paper layout lacks
    assert "needs forget images" in _section(card.text, "nudity")
    for name in ("radar-nudity.png", "grid-nudity.png", "bars-nudity.png"):  # bars: one panel per axis
        assert (report_dir / name).exists() and f"]({name})" in card.text
    assert eval_card(report_dir, title="ESD on nudity").text.lstrip().startswith("# ESD on nudity\n")


# -- pushing ------------------------------------------------------------------------------------------------


def test_push_judge_to_a_new_repo_uploads_the_judge_and_our_card(judge_run, hub, capsys, caplog):
    from safetensors.torch import load

    judge_dir, eval_dir = judge_run
    with caplog.at_level(logging.DEBUG):
        code = main(["push", "judge", str(judge_dir), "--repo", REPO, "--eval", str(eval_dir), "--private", "true"])
    out = capsys.readouterr()
    assert code == 0 and f"pushed {judge_dir} to {REPO} (card written)" in out.out
    files = hub.files(REPO)
    plots = {f"{kind}_{c}.png" for kind in ("roc", "reliability") for c in ("church", "nudity")}
    assert set(files) == {"README.md", "config.json", "model.safetensors"} | plots
    assert files["config.json"] == (judge_dir / "config.json").read_bytes()  # every key of ours, byte for byte
    pushed, local = load(files["model.safetensors"]), load((judge_dir / "model.safetensors").read_bytes())
    assert pushed.keys() == local.keys() and all((pushed[k] == local[k]).all() for k in local)
    readme = files["README.md"].decode()
    assert "# Model card for" not in readme and "## Limitations" in readme and f"hf-hub:{REPO}" in readme
    assert ModelCard(readme).data.library_name == "timm"
    uploads = hub.calls_of("upload_folder")
    assert [u["files"] for u in uploads] == [sorted({"README.md"} | plots), ["config.json", "model.safetensors"]]
    assert uploads[1]["library_name"] == "timm"  # the weights went through timm's push_to_hf_hub
    assert hub.calls_of("create_repo")[0] == {"repo_id": REPO, "repo_type": "model", "private": True, "exist_ok": True}
    assert hub.tokens and set(hub.tokens) == {None}  # huggingface_hub finds the token itself
    assert SECRET not in out.out + out.err + caplog.text
    assert not any(SECRET.encode() in data for data in files.values())


def test_a_curated_readme_is_kept_unless_overwrite_card(judge_run, hub, capsys):
    judge_dir, eval_dir = judge_run
    curated = b"---\nlicense: mit\n---\n# Our own judge card\n"
    hub.seed(REPO, {"README.md": curated})
    pushed = push_judge(judge_dir, REPO, eval_dir)
    assert pushed.card == "kept" and hub.files(REPO)["README.md"] == curated
    assert [u["files"] for u in hub.calls_of("upload_folder")] == [["config.json", "model.safetensors"]]
    assert "roc_church.png" not in hub.files(REPO)

    code = main(["judge", "push", "--judge", str(judge_dir), "--repo", REPO, "--overwrite-card", "true"])
    assert code == 0 and "(card written)" in capsys.readouterr().out
    readme = hub.files(REPO)["README.md"].decode()
    assert readme != curated.decode() and "## Calibration and threshold" in readme
    assert [u["files"] for u in hub.calls_of("upload_folder")][1:] == [
        ["README.md"],
        ["config.json", "model.safetensors"],
    ]


def test_push_judge_with_create_pr_puts_card_and_weights_in_one_pull_request(judge_run, hub):
    judge_dir, _ = judge_run
    hub.seed(REPO, {})
    push_judge(judge_dir, REPO, create_pr=True, revision=None)
    assert hub.files(REPO) == {} and set(hub.files(REPO, revision="refs/pr/1")) == {
        "README.md",
        "config.json",
        "model.safetensors",
    }
    assert [u["revision"] for u in hub.calls_of("upload_folder")] == [None, "refs/pr/1"]


def test_push_judge_refuses_bad_input_before_calling_the_hub(judge_run, hub, tmp_path):
    judge_dir, _ = judge_run
    with pytest.raises(ValueError, match="must be ORG/NAME"):
        push_judge(judge_dir, "no-org")
    with pytest.raises(ValueError, match="is not a judge folder"):
        push_judge(tmp_path, REPO)
    with pytest.raises(ValueError, match="metrics.json is missing"):
        push_judge(judge_dir, REPO, eval_dir=tmp_path)
    assert hub.calls == []


def test_report_files_are_the_figures_report_md_links(report_dir, tmp_path):
    import re
    import shutil

    folder = shutil.copytree(report_dir, tmp_path / "report")
    (folder / "radar-stale.png").write_bytes((folder / "radar-nudity.png").read_bytes())  # not the report's
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (folder / "report.md").read_text())
    assert "radar-nudity.png" in linked
    files = report_files(folder)
    assert [f for f in files if f.endswith(".png")] == linked and "radar-stale.png" not in files


def test_push_report_uploads_the_report_and_its_card(report_dir, hub, capsys):
    repo = "my-org/dataigm"
    code = main(["push", "report", str(report_dir), "--repo", repo, "--repo-type", "dataset"])
    assert code == 0 and f"to {repo}/evaluation" in capsys.readouterr().out
    files = hub.files(repo, repo_type="dataset")
    assert set(files) == {f"evaluation/{name}" for name in report_files(report_dir)}
    assert {"evaluation/README.md", "evaluation/report.json", "evaluation/radar-nudity.png"} <= set(files)
    assert not any(name.startswith(("evaluation/cache", "evaluation/images")) for name in files)
    assert files["evaluation/report.json"] == (report_dir / "report.json").read_bytes()
    assert ModelCard(files["evaluation/README.md"].decode()).data.tags[0] == "dataigm"
    assert hub.calls_of("create_repo") == [
        {"repo_id": repo, "repo_type": "dataset", "private": False, "exist_ok": True}
    ]
    assert hub.calls_of("upload_folder")[0]["repo_type"] == "dataset"

    push_report(report_dir, "my-org/esd-nudity", path_in_repo="reports/v1/", revision="eval")
    assert "reports/v1/report.json" in hub.files("my-org/esd-nudity", revision="eval")
    assert hub.calls_of("create_branch")[-1] == {
        "repo_id": "my-org/esd-nudity",
        "branch": "eval",
        "repo_type": "model",
    }
    assert set(hub.tokens) == {None} and SECRET not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repo_type": "space"}, "repo_type 'space' is not one of: model, dataset"),
        ({"path_in_repo": "/"}, "path_in_repo '/' must name a folder"),
        ({"path_in_repo": "../x"}, "must name a folder"),
    ],
)
def test_push_report_bad_values(report_dir, hub, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        push_report(report_dir, "my-org/x", **kwargs)
    assert hub.calls == []


def test_cards_read_files_without_importing_detectors_or_torch(judge_run, report_dir, tmp_path):
    import subprocess
    import sys

    judge_dir, eval_dir = judge_run
    code = (
        "import sys; from cards import write_judge_card, write_eval_card; "
        f"write_judge_card({str(judge_dir)!r}, {str(eval_dir)!r}, {str(tmp_path)!r}); write_eval_card({str(report_dir)!r}); "
        "print(sorted(m for m in ('detectors', 'generation', 'torch', 'timm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("what", ["judge", "report"])
def test_push_commands_print_their_resolved_config(what, capsys):
    import yaml

    with pytest.raises(SystemExit) as stop:
        main(["push", what, "some/dir", "--repo", "my-org/x", "--print_config"])
    assert stop.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed[what] == "some/dir" and printed["repo"] == "my-org/x"
    assert (
        printed.get("overwrite_card", False) is False and printed.get("path_in_repo", "evaluation/") == "evaluation/"
    )
