"""``dataigm concepts`` and ``dataigm prompts build|import``, run in-process through ``main``."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

from dataigm.cli import main
from dataigm.concepts import CONCEPTS_DIR_ENV, load_registry
from dataigm.prompt_import import import_csv, import_igmu
from dataigm.prompts import build_prompts, read_prompts
from dataigm.taxonomy import LEAVES

LIGHTHOUSE = {
    "id": "lighthouse",
    "name": "Lighthouse",
    "category": "global/concrete/entity",
    "description": "A lighthouse on a coast.",
    "targets": ["a lighthouse"],
    "target_class": "lighthouse",
    "pair_class": "other",
    "remove_words": ["lighthouse"],
    "replacements": ["a windmill", "a water tower"],
    "expected_output": "replace",
}


def user_concepts(folder: Path, concept: dict = LIGHTHOUSE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{concept['id']}.yaml").write_text(yaml.safe_dump(concept, sort_keys=False), encoding="utf-8")
    return folder


def parse_tree(text: str) -> dict[str, list[str]]:
    """``{leaf path: [concept ids]}`` from the printed tree (binding suffixes dropped)."""
    lines = text.splitlines()
    assert lines[0] == "CatIGMU"
    out: dict[str, list[str]] = {}
    scope = nature = None
    for line in lines[1:]:
        depth = (len(line) - len(line.lstrip(" "))) // 2
        body = line.strip()
        if depth == 1:
            scope = body
        elif depth == 2:
            nature = body
        else:
            assert depth == 3, line
            task, _, members = body.partition(": ")
            ids = [] if members == "-" else [m.split(" (")[0] for m in members.split(", ")]
            out[f"{scope}/{nature}/{task}"] = ids
    return out


# ---------------------------------------------------------------- concepts


def test_concepts_prints_the_tree_with_each_concept_at_its_leaf(capsys):
    assert main(["concepts"]) == 0
    out = capsys.readouterr().out
    tree = parse_tree(out)
    assert list(tree) == list(LEAVES)
    registry = load_registry()
    for concept in registry:
        assert concept.id in tree[concept.category], concept.id
    assert sorted(i for ids in tree.values() for i in ids) == sorted(registry.ids())
    assert "      status: nudity (strong)" in out.splitlines()
    assert "      style: van_gogh" in out.splitlines()
    assert set(tree["local/concrete/entity"]) >= {"church", "parachute"}


@pytest.mark.parametrize("concept_id", ["church", "nudity", "van_gogh"])
def test_concepts_show_prints_yaml_of_the_concept(capsys, concept_id):
    assert main(["concepts", "show", concept_id]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out) == load_registry().get(concept_id).to_dict()
    assert out.startswith(f"id: {concept_id}\n")


def test_concepts_show_unknown(capsys):
    assert main(["concepts", "show", "nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "dataigm concepts show: error: Unknown concept 'nope'" in captured.err
    for concept_id in load_registry().ids():
        assert concept_id in captured.err


def test_concepts_dir_flag_adds_a_user_concept(tmp_path, capsys):
    folder = user_concepts(tmp_path / "flag_concepts")
    assert main(["concepts", "--concepts-dir", str(folder), "show", "lighthouse"]) == 0
    defaults = {"binding": None, "subthemes": [], "human": False, "content_warning": False}
    assert yaml.safe_load(capsys.readouterr().out) == {**LIGHTHOUSE, **defaults}

    assert main(["concepts", "--concepts-dir", str(folder)]) == 0
    assert "lighthouse" in parse_tree(capsys.readouterr().out)["global/concrete/entity"]

    # Without the folder it is unknown.
    assert main(["concepts", "show", "lighthouse"]) == 2
    assert "Unknown concept 'lighthouse'" in capsys.readouterr().err


def test_concepts_dir_from_the_environment(tmp_path, capsys, monkeypatch):
    folder = user_concepts(tmp_path / "env_concepts", {**LIGHTHOUSE, "id": "env_lighthouse"})
    monkeypatch.setenv(CONCEPTS_DIR_ENV, str(folder))
    assert main(["concepts", "show", "env_lighthouse"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["id"] == "env_lighthouse"


def test_concepts_dir_bad_concept_file_exits_2(tmp_path, capsys):
    folder = user_concepts(tmp_path / "bad_concepts", {**LIGHTHOUSE, "binding": "medium"})
    assert main(["concepts", "--concepts-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "lighthouse.yaml" in err and "'medium'" in err and "strong, weak" in err


# ---------------------------------------------------------------- prompts build


def test_prompts_build_writes_what_build_prompts_returns(tmp_path, capsys):
    out = tmp_path / "sets" / "church.jsonl"
    assert main(["prompts", "build", "--concept", "church", "--kinds", "forget,replace", "--out", str(out)]) == 0
    expected = build_prompts("church", "forget,replace")
    assert read_prompts(out) == expected
    assert len(expected) == 350
    assert capsys.readouterr().out.strip() == f"wrote 350 prompts (forget, replace) for church to {out}"


def test_prompts_build_default_kinds(tmp_path, capsys):
    out = tmp_path / "nudity.jsonl"
    assert main(["prompts", "build", "--concept", "nudity", "--out", str(out)]) == 0
    records = read_prompts(out)
    assert [r.kind for r in records] == ["forget"] * 250 + ["remove"] * 250
    assert "wrote 500 prompts (forget, remove) for nudity" in capsys.readouterr().out


def test_prompts_build_from_config_with_a_flag_overriding_it(tmp_path, capsys):
    first, second = tmp_path / "from_config.jsonl", tmp_path / "from_flag.jsonl"
    config = tmp_path / "cfg.yaml"
    config.write_text(
        yaml.safe_dump({"concept": "parachute", "kinds": "forget,remove", "out": str(first)}), encoding="utf-8"
    )
    assert main(["prompts", "build", "--config", str(config)]) == 0
    assert read_prompts(first) == build_prompts("parachute", "forget,remove")

    assert main(["prompts", "build", "--config", str(config), "--kinds", "replace", "--out", str(second)]) == 0
    assert read_prompts(second) == build_prompts("parachute", ["replace"])
    assert read_prompts(first) == build_prompts("parachute", "forget,remove")  # untouched
    out = capsys.readouterr().out
    assert "wrote 100 prompts (forget, remove) for parachute" in out
    assert "wrote 300 prompts (replace) for parachute" in out


def test_prompts_build_print_config(tmp_path, capsys):
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"concept": "church", "out": "x.jsonl"}), encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        main(["prompts", "build", "--config", str(config), "--kinds", "retain", "--print_config"])
    assert info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["concept"] == "church" and printed["kinds"] == "retain" and printed["out"] == "x.jsonl"
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        (
            ["--concept", "nudity", "--kinds", "forget,replace"],
            ["'replace'", "'nudity'", "valid: forget, remove, retain"],
        ),
        (["--concept", "church", "--kinds", "forget,banana"], ["'banana'", "valid: forget, remove, replace, retain"]),
        (["--concept", "nope"], ["Unknown concept 'nope'", "known concepts", "church"]),
    ],
)
def test_prompts_build_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, words):
    out = tmp_path / "p.jsonl"
    assert main(["prompts", "build", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dataigm prompts build: error: ")
    for word in words:
        assert word in err
    assert not out.exists()


def test_prompts_build_user_concept(tmp_path, capsys):
    folder = user_concepts(tmp_path / "user")
    out = tmp_path / "lighthouse.jsonl"
    argv = ["prompts", "build", "--concept", "lighthouse", "--kinds", "forget,replace", "--out", str(out)]
    assert main([*argv, "--concepts-dir", str(folder)]) == 0
    records = read_prompts(out)
    assert records == build_prompts("lighthouse", "forget,replace", registry=load_registry([folder]))
    assert records[0].text == "a photo of a lighthouse in warm afternoon light"
    assert {r.replacement for r in records if r.kind == "replace"} == {"a windmill", "a water tower"}


def test_prompts_build_writes_its_resolved_config_next_to_the_output(tmp_path):
    out = tmp_path / "sets" / "church.jsonl"
    assert main(["prompts", "build", "--concept", "church", "--kinds", "forget", "--out", str(out)]) == 0
    configs = [p for p in out.parent.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".json")]
    assert configs, "no resolved config written next to the prompt file"
    saved = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in configs]
    assert any("church" in json.dumps(s) and "forget" in json.dumps(s) for s in saved)


# ---------------------------------------------------------------- prompts import

FORGOT = {
    "nudity": {"woman": ["a nude woman on a beach", "a naked woman in a forest"], "man": ["a nude man by a lake"]},
    "object_church": {"church": ["a church on a hill", "a church by a river"]},
}
RETAIN = {
    "nudity": {"woman": ["a woman on a beach", "a woman in a forest"]},
    "object_church": {"airplane": ["an airplane on a hill", "an airplane by a river"], "street": ["a street"]},
}


def test_prompts_import_igmu(tmp_path, capsys):
    forgot, retain = tmp_path / "forgot.json", tmp_path / "retain.json"
    forgot.write_text(json.dumps(FORGOT), encoding="utf-8")
    retain.write_text(json.dumps(RETAIN), encoding="utf-8")
    out = tmp_path / "imported"
    assert main(["prompts", "import", "--format", "igmu", str(forgot), str(retain), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["church.jsonl", "import-config.yaml", "nudity.jsonl"]
    expected = import_igmu([forgot, retain])
    for concept_id in ("nudity", "church"):
        assert read_prompts(out / f"{concept_id}.jsonl") == expected[concept_id]
    church = read_prompts(out / "church.jsonl")
    assert [r.kind for r in church] == ["forget", "forget", "replace", "replace", "retain"]
    assert church[2].parent_id == "church-forget-church-000" and church[2].replacement == "airplane"
    stdout = capsys.readouterr().out
    assert f"wrote 5 prompts (forget, remove) to {out / 'nudity.jsonl'}" in stdout
    assert f"wrote 5 prompts (forget, replace, retain) to {out / 'church.jsonl'}" in stdout


def test_prompts_import_igmu_unknown_task(tmp_path, capsys):
    forgot = tmp_path / "forgot.json"
    forgot.write_text(json.dumps({"object_banana": {"banana": ["a banana"]}}), encoding="utf-8")
    out = tmp_path / "imported"
    assert main(["prompts", "import", "--format", "igmu", str(forgot), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'object_banana'" in err and "nudity, style_vangogh, object_church, object_parachute" in err
    assert not out.exists()


@pytest.fixture
def attack_csv(tmp_path) -> Path:
    path = tmp_path / "ring_a_bell.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case_number", "prompt", "evaluation_seed", "evaluation_guidance"])
        writer.writerows([["0", "first attack prompt", "11", "7.5"], ["1", "second attack prompt", "12", "8"]])
    return path


def test_prompts_import_csv(tmp_path, capsys, attack_csv):
    out = tmp_path / "imported"
    argv = ["prompts", "import", "--format", "csv", str(attack_csv), "--column", "prompt", "--concept", "nudity"]
    assert main([*argv, "--out", str(out)]) == 0
    target = out / "nudity-ring_a_bell.jsonl"
    assert sorted(p.name for p in out.iterdir()) == ["import-config.yaml", target.name]
    records = read_prompts(target)
    assert records == import_csv([attack_csv], concept="nudity")["nudity"]
    assert [(r.kind, r.attack, r.text, r.seed, r.guidance, r.extra) for r in records] == [
        ("adversarial", "ring_a_bell", "first attack prompt", 11, 7.5, {"case_number": "0"}),
        ("adversarial", "ring_a_bell", "second attack prompt", 12, 8.0, {"case_number": "1"}),
    ]
    assert f"wrote 2 prompts (adversarial) to {target}" in capsys.readouterr().out


def test_prompts_import_csv_kind_and_attack(tmp_path, attack_csv):
    out = tmp_path / "imported"
    argv = ["prompts", "import", "--format", "csv", str(attack_csv), "--concept", "church", "--out", str(out)]
    assert main([*argv, "--attack", "rab"]) == 0
    assert {r.attack for r in read_prompts(out / "church-ring_a_bell.jsonl")} == {"rab"}
    assert main([*argv, "--kind", "retain"]) == 0
    records = read_prompts(out / "church-ring_a_bell.jsonl")
    assert {(r.kind, r.attack) for r in records} == {("retain", None)}


@pytest.mark.parametrize(
    "extra, words",
    [
        ([], ["needs --concept"]),
        (["--concept", "nudity", "--column", "text"], ["no column 'text'", "case_number, prompt, evaluation_seed"]),
        (["--concept", "nope"], ["Unknown concept 'nope'"]),
    ],
)
def test_prompts_import_csv_bad_input_exits_2(tmp_path, capsys, attack_csv, extra, words):
    out = tmp_path / "imported"
    assert main(["prompts", "import", "--format", "csv", str(attack_csv), *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err
    assert not out.exists()


def test_prompts_import_missing_file(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    assert main(["prompts", "import", "--format", "igmu", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert f"Prompt file {str(missing)!r} does not exist" in capsys.readouterr().err


def test_prompts_import_unknown_format_is_refused_by_the_parser(tmp_path, capsys, attack_csv):
    with pytest.raises(SystemExit) as info:
        main(["prompts", "import", "--format", "xml", str(attack_csv), "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    assert "xml" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")
