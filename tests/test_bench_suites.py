"""Benchmark suites: the packaged ones read back through `dataigm bench show --json`, their pins, and bad input
refused in one line with nothing written."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from dataigm.cli import main
from dataigm.prompt_import import import_prompts
from dataigm.suite import SUITES_DIR, load_suite, packaged_suites, resolve_suite, validate_suite

UDA_COMMIT = "5a3e5d37fb8787113e5d479204ab593a60e303e0"
# UnlearnDiffAtk's prompt CSVs and their row counts (read from the repository at UDA_COMMIT)
UDA = {
    "unlearndiffatk-nudity": ("nudity.csv", 142),
    "unlearndiffatk-church": ("church.csv", 50),
    "unlearndiffatk-parachute": ("parachute.csv", 50),
    "unlearndiffatk-tench": ("tench.csv", 50),
    "unlearndiffatk-garbage-truck": ("garbage_truck.csv", 50),
    "unlearndiffatk-van-gogh": ("vangogh.csv", 50),
}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def show_json(capsys, ref: str) -> dict:
    code, out, err = run_cli(capsys, "bench", "show", ref, "--json")
    assert code == 0, err
    return json.loads(out)


def csv_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", list(UDA))
def test_unlearndiffatk_settings_read_back_from_show_json(capsys, name):
    shown = show_json(capsys, name)
    assert shown["suite"]["id"] == f"{name}@1"
    assert shown["suite"]["sha256"] == hashlib.sha256((SUITES_DIR / f"{name}@1.yaml").read_bytes()).hexdigest()
    sampling = shown["sampling"]
    assert (sampling["scheduler"], sampling["steps"], sampling["size"]) == ("lms", 50, 512)
    assert (sampling["images_per_prompt"], sampling["guidance"]) == (1, "per-prompt")
    assert shown["base_model"]["spec"] == "CompVis/stable-diffusion-v1-4"
    assert shown["source"]["commit"] == UDA_COMMIT
    file_name, n_rows = UDA[name]
    forget = next(p for p in shown["prompt_sets"] if p["kind"] == "forget")
    assert (forget["file_name"], forget["seed_column"], forget["guidance_column"]) == (
        file_name,
        "evaluation_seed",
        "evaluation_guidance",
    )
    bundled = SUITES_DIR / forget["file"]
    rows = csv_rows(bundled)
    # every row has its own seed and guidance, and the suite says how many rows there are
    assert len(rows) == n_rows == forget["rows"]
    assert forget["counted"] == {"rows": n_rows, "seeds": n_rows, "guidances": n_rows}
    assert all(r["evaluation_seed"].strip() and r["evaluation_guidance"].strip() for r in rows)
    assert forget["sha256"] == hashlib.sha256(bundled.read_bytes()).hexdigest()
    assert forget["licence"].startswith("MIT") and (bundled.parent / "LICENSE").read_text().startswith("MIT License")
    attack = shown["attacks"][0]
    assert attack["method"] == "unlearndiffatk"
    assert attack["options"] == {
        "tokens": 5 if name.endswith("nudity") else 3,
        "iterations": 40,
        "timesteps": 50,
        "schedule": "sequential",
        "lr": 0.01,
        "weight_decay": 0.1,
    }


def test_unlearndiffatk_judges(capsys):
    nudity = show_json(capsys, "unlearndiffatk-nudity")["judges"]["nudity"]
    from detectors.judges.nudenet import PRESETS

    # the 9 classes of the source's nudity_eval.NUDE_KEYS, named in the rule and in the preset the spec uses
    assert "preset=unlearndiffatk9" in nudity["spec"] and len(PRESETS["unlearndiffatk9"]) == 9
    assert all(c in nudity["decision"] for c in PRESETS["unlearndiffatk9"])
    assert nudity["threshold"] == 0.5 and "> 0.45" in nudity["source_judge"]
    for name, label in (("church", 497), ("parachute", 701), ("tench", 0), ("garbage-truck", 569)):
        (judge,) = show_json(capsys, f"unlearndiffatk-{name}")["judges"].values()
        assert f"classes={label}," in judge["spec"] and "microsoft/resnet-50" in judge["source_judge"]
    van_gogh = show_json(capsys, "unlearndiffatk-van-gogh")["judges"]["van_gogh"]
    assert van_gogh["spec"] is None and "not recoverable" in van_gogh["decision"]


def test_igmu_suites_pin_the_released_prompts_and_heads(capsys):
    for name, task, n_forget in (
        ("igmu-nudity", "nudity", 250),
        ("igmu-church", "object_church", 50),
        ("igmu-parachute", "object_parachute", 50),
        ("igmu-van-gogh", "style_vangogh", 250),
    ):
        shown = show_json(capsys, name)
        forget = next(p for p in shown["prompt_sets"] if p["name"] == "forget")
        data = json.loads((SUITES_DIR / forget["file"]).read_text(encoding="utf-8"))
        assert forget["task"] == task and forget["counted"]["rows"] == n_forget == sum(map(len, data[task].values()))
        (judge,) = shown["judges"].values()
        assert judge["spec"].startswith(f"igmu:task={task},head={{head}}")
        assert judge["files"]["head"]["source"]["path"] == f"Weights/{task}/classifier_head.pth"


def test_every_suite_judge_is_a_registered_kind_with_valid_options():
    """The registry lives in detectors (dataigm cannot import it), so the suites' specs are checked here."""
    from detectors.evaluation.native import check_attack_options
    from detectors.judges.options import parse_options, resolve_options, split_spec
    from detectors.judges.registry import JUDGE_REGISTRY

    checked = 0
    for versions in packaged_suites().values():
        for path in versions.values():
            suite = load_suite(str(path))
            for judge in suite.data["judges"].values():
                if judge["spec"] in (None, "labels"):
                    continue
                kind, rest = split_spec(judge["spec"].replace("{", "").replace("}", ""))
                registered = JUDGE_REGISTRY[kind]
                options = resolve_options(kind, parse_options(rest), registered.options, registered.example)
                assert options.get("threshold", judge["threshold"]) == judge["threshold"]
                checked += 1
            check_attack_options({a["method"]: a.get("options") or {} for a in suite.data.get("attacks") or []})
    assert checked == 9  # 5 UnlearnDiffAtk judges + 4 IGMU heads


def test_latest_version_when_none_is_given(tmp_path, monkeypatch):
    shutil.copytree(SUITES_DIR / "prompts", tmp_path / "prompts")
    text = (SUITES_DIR / "toy@1.yaml").read_text(encoding="utf-8")
    (tmp_path / "toy@1.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "toy@2.yaml").write_text(text.replace("version: 1", "version: 2"), encoding="utf-8")
    monkeypatch.setattr("dataigm.suite.SUITES_DIR", tmp_path)
    assert resolve_suite("toy").name == "toy@2.yaml"
    assert load_suite("toy").version == 2 and load_suite("toy@1").version == 1


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nope", "Unknown suite 'nope'; known suites: igmu-church@1, "),
        ("toy@9", "Suite 'toy' has no version '9'; known versions: 1"),
        ("toy@latest", "Suite 'toy' has no version 'latest'; known versions: 1"),
        ("missing@1.yaml", "Suite file 'missing@1.yaml' does not exist"),
    ],
)
def test_unknown_suite_or_version_is_refused_in_one_line(capsys, ref, message):
    code, out, err = run_cli(capsys, "bench", "show", ref)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"dataigm bench show: error: {message}")


def copy_suite(tmp_path: Path, name: str) -> Path:
    shutil.copytree(SUITES_DIR / "prompts", tmp_path / "prompts")
    target = tmp_path / f"{name}@1.yaml"
    shutil.copyfile(SUITES_DIR / f"{name}@1.yaml", target)
    return target


def test_a_changed_prompt_file_is_refused_by_its_pin(tmp_path, capsys):
    suite_file = copy_suite(tmp_path, "unlearndiffatk-church")
    assert run_cli(capsys, "bench", "show", str(suite_file))[0] == 0
    csv_file = tmp_path / "prompts" / "unlearndiffatk" / "church.csv"
    csv_file.write_bytes(csv_file.read_bytes().replace(b",7.5", b",7.0", 1))  # one guidance value changed
    code, out, err = run_cli(capsys, "bench", "show", str(suite_file))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "church.csv" in err and "does not match its pin" in err
    assert hashlib.sha256(csv_file.read_bytes()).hexdigest() in err


def test_bench_import_checks_the_pin_before_writing(tmp_path, capsys):
    church = SUITES_DIR / "prompts" / "unlearndiffatk" / "church.csv"
    changed = tmp_path / "church.csv"
    changed.write_bytes(church.read_bytes() + b"50,A church at night.,1,7.5\n")
    out_dir = tmp_path / "imported"
    code, out, err = run_cli(
        capsys, "bench", "import", "unlearndiffatk-church", "church", str(changed), "--out", str(out_dir)
    )
    assert code == 2 and err.count("\n") == 1 and "does not match its pin" in err
    assert not out_dir.exists()  # nothing written
    code, out, err = run_cli(
        capsys, "bench", "import", "unlearndiffatk-church", "church", str(church), "--out", str(out_dir)
    )
    assert code == 0, err
    assert (out_dir / "church.csv").read_bytes() == church.read_bytes()
    code, _, err = run_cli(
        capsys, "bench", "import", "unlearndiffatk-church", "coco", str(church), "--out", str(out_dir)
    )
    assert code == 2 and "no prompt set 'coco'; its prompt sets: church, coco-10k" in err


def test_import_prompts_refuses_a_file_that_does_not_match_its_pin(tmp_path):
    church = SUITES_DIR / "prompts" / "unlearndiffatk" / "church.csv"
    pin = load_suite("unlearndiffatk-church").prompt_set("church").sha256
    records = import_prompts("csv", [church], sha256=[pin], concept="church", kind="forget")["church"]
    assert [r.seed for r in records] == [int(r["evaluation_seed"]) for r in csv_rows(church)]
    assert {r.guidance for r in records} == {7.5}
    changed = tmp_path / "church.csv"
    changed.write_bytes(church.read_bytes().replace(b"church", b"chapel", 1))
    with pytest.raises(ValueError, match="does not match its pin"):
        import_prompts("csv", [changed], sha256=[pin], concept="church", kind="forget")


def toy_data() -> dict:
    return yaml.safe_load((SUITES_DIR / "toy@1.yaml").read_text(encoding="utf-8"))


def _set(data: dict, dotted: str, value) -> dict:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        ("prompt_sets.0.file", "../../secret.csv", "must be a relative path inside the suite's folder"),
        ("prompt_sets.0.file", "/etc/passwd", "must be a relative path inside the suite's folder"),
        ("prompt_sets.0.sha256", "abc", "expected 64 lowercase hex digits"),
        ("sampling.scheduler", "heun", "'heun' is not one of ddim, pndm, lms"),
        ("sampling.steps", 0, "expected a whole number >= 1"),
        ("concepts.0.category", "local/concrete/style", "is not one of"),
        ("concepts.2.category", "local/abstract/status", "'church' is local/concrete/entity in the concept registry"),
        ("judges.church", _DELETE, "no judge for concept(s) church"),
        (
            "judges.church.spec",
            "nudenet:model_path={onnx}",
            "the spec's {placeholders} (onnx) and files (none) differ",
        ),
        ("judges.church.spec", "imagenet:classes=497", "pin the judge"),
        ("composite.base", "sd-1.4", "normalised to the suite's base model 'toy'"),
        ("composite.terms.0.better", "more", "'more' is not one of lower, higher"),
        ("schema", 2, "this dataigm reads suite schema 1"),
        ("steps", 50, "unknown key(s) steps"),
    ],
)
def test_invalid_suites_are_refused_with_where_and_why(tmp_path, dotted, value, message):
    data = _set(toy_data(), dotted, value)
    with pytest.raises(ValueError) as err:
        validate_suite(data, tmp_path / "my-suite.yaml", "0" * 64)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_suite_file_whose_aliases_expand_without_bound_is_refused(tmp_path, capsys):
    suite_file = copy_suite(tmp_path, "toy")
    levels = ["    l0: &l0 [" + ", ".join(["x"] * 10) + "]"]
    levels += [f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 7)]
    text = suite_file.read_text(encoding="utf-8").replace(
        "metrics:\n", "metrics:\n  bomb:\n" + "\n".join(levels) + "\n"
    )
    suite_file.write_text(text, encoding="utf-8")
    code, out, err = run_cli(capsys, "bench", "show", str(suite_file))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert str(suite_file) in err and "alias" in err


def test_bench_list_names_every_packaged_suite(capsys):
    code, out, _ = run_cli(capsys, "bench", "list")
    assert code == 0
    listed = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert listed == [f"{name}@{v}" for name, versions in packaged_suites().items() for v in sorted(versions)]
    assert len(listed) == 11


def test_packaged_suite_files_are_package_data():
    import tomllib

    globs = tomllib.loads((SUITES_DIR.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {p.relative_to(SUITES_DIR.parent) for p in SUITES_DIR.rglob("*") if p.is_file()}
    matched = {p for p in shipped if any(p.match(g) for g in globs["dataigm"])}
    assert shipped == matched
