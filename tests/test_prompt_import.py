"""Importing prompt sets of other formats: the IGMU forgot.json/retain.json layout and CSV files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from dataigm.prompt_import import IGMU_TASKS, IMPORTERS, import_csv, import_igmu, import_prompts
from dataigm.prompts import read_prompts, write_prompts

FORGOT = {
    "nudity": {
        "woman": ["a nude woman on a beach", "a naked woman in a forest", "a nude woman reading"],
        "man": ["a nude man by a lake", "a naked man on a hill"],
    },
    "object_church": {"church": ["a church on a hill", "a church by a river"]},
}
RETAIN = {
    "nudity": {
        "woman": ["a woman on a beach", "a woman in a forest", "a woman reading"],
        "man": ["a man by a lake"],
    },
    "object_church": {
        "airplane": ["an airplane on a hill", "an airplane by a river"],
        "bird": ["a bird on a hill", "a bird by a river"],
        "street": ["a quiet street at night"],
    },
}


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def igmu_files(tmp_path) -> tuple[Path, Path]:
    return write_json(tmp_path / "forgot.json", FORGOT), write_json(tmp_path / "retain.json", RETAIN)


def index(records):
    return {r.prompt_id: r for r in records}


# ---------------------------------------------------------------- igmu


def test_igmu_tasks_are_registry_concepts():
    from dataigm.concepts import load_registry

    registry = load_registry()
    assert IGMU_TASKS == {
        "nudity": "nudity",
        "style_vangogh": "van_gogh",
        "object_church": "church",
        "object_parachute": "parachute",
    }
    assert all(cid in registry for cid in IGMU_TASKS.values())


def test_igmu_tasks_map_to_concepts(igmu_files):
    grouped = import_igmu(igmu_files)
    assert sorted(grouped) == ["church", "nudity"]
    for concept_id, records in grouped.items():
        assert {r.concept for r in records} == {concept_id}
        ids = [r.prompt_id for r in records]
        assert len(ids) == len(set(ids)) and all("." not in i for i in ids)
    assert len(grouped["nudity"]) == 3 + 2 + 3 + 1
    assert len(grouped["church"]) == 2 + 2 + 2 + 1


def test_igmu_forget_prompts(igmu_files):
    grouped = import_igmu(igmu_files)
    forget = [r for r in grouped["nudity"] if r.kind == "forget"]
    assert [(r.prompt_id, r.subtheme, r.text) for r in forget] == [
        ("nudity-forget-woman-000", "woman", "a nude woman on a beach"),
        ("nudity-forget-woman-001", "woman", "a naked woman in a forest"),
        ("nudity-forget-woman-002", "woman", "a nude woman reading"),
        ("nudity-forget-man-000", "man", "a nude man by a lake"),
        ("nudity-forget-man-001", "man", "a naked man on a hill"),
    ]
    church_forget = [r for r in grouped["church"] if r.kind == "forget"]
    assert [r.text for r in church_forget] == FORGOT["object_church"]["church"]
    assert all(r.parent_id is None for r in forget + church_forget)


def test_igmu_aligned_retain_list_becomes_remove(igmu_files):
    records = import_igmu(igmu_files)["nudity"]
    by_id = index(records)
    remove = [r for r in records if r.kind == "remove"]
    assert [r.text for r in remove] == RETAIN["nudity"]["woman"]
    for i, record in enumerate(remove):
        assert record.prompt_id == f"nudity-remove-woman-{i:03d}"
        assert record.subtheme == "woman"
        parent = by_id[record.parent_id]
        assert parent.kind == "forget"
        assert parent.text == FORGOT["nudity"]["woman"][i]


def test_igmu_misaligned_retain_list_stays_retain(igmu_files):
    records = import_igmu(igmu_files)["nudity"]
    retain = [r for r in records if r.kind == "retain"]
    assert [(r.prompt_id, r.subtheme, r.text, r.parent_id) for r in retain] == [
        ("nudity-retain-man-000", "man", "a man by a lake", None)
    ]
    assert {r.kind for r in records} == {"forget", "remove", "retain"}


def test_igmu_object_lists_become_replace(igmu_files):
    records = import_igmu(igmu_files)["church"]
    by_id = index(records)
    replace = [r for r in records if r.kind == "replace"]
    assert [(r.replacement, r.text) for r in replace] == [
        ("airplane", "an airplane on a hill"),
        ("airplane", "an airplane by a river"),
        ("bird", "a bird on a hill"),
        ("bird", "a bird by a river"),
    ]
    for record in replace:
        i = int(record.prompt_id.rsplit("-", 1)[1])
        assert record.prompt_id == f"church-replace-{record.replacement}-{i:03d}"
        assert record.parent_id == f"church-forget-church-{i:03d}"
        assert by_id[record.parent_id].text == FORGOT["object_church"]["church"][i]
    retain = [r for r in records if r.kind == "retain"]
    assert [(r.prompt_id, r.text, r.replacement, r.parent_id) for r in retain] == [
        ("church-retain-street-000", "a quiet street at night", None, None)
    ]


def test_igmu_replace_without_a_single_aligned_forget_list_has_no_parent(tmp_path):
    forgot = write_json(tmp_path / "forgot.json", {"object_parachute": {"parachute": ["a parachute in the sky"]}})
    retain = write_json(
        tmp_path / "retain.json", {"object_parachute": {"church": ["a church in the sky", "a church at dusk"]}}
    )
    records = import_igmu([forgot, retain])["parachute"]
    replace = [r for r in records if r.kind == "replace"]
    assert [(r.replacement, r.parent_id, r.subtheme) for r in replace] == [("church", None, None)] * 2


def test_igmu_forgot_only(tmp_path):
    forgot = write_json(tmp_path / "forgot.json", {"style_vangogh": {"thematic": ["sunflowers by Van Gogh"]}})
    grouped = import_prompts("igmu", [forgot])
    assert list(grouped) == ["van_gogh"]
    assert [(r.prompt_id, r.kind) for r in grouped["van_gogh"]] == [("van_gogh-forget-thematic-000", "forget")]


@pytest.mark.parametrize("which", ["forgot", "retain"])
def test_igmu_unknown_task_names_the_known_tasks(tmp_path, which):
    data = {"forgot": dict(FORGOT), "retain": dict(RETAIN)}
    data[which]["object_banana"] = {"banana": ["a banana"]}
    forgot = write_json(tmp_path / "forgot.json", data["forgot"])
    retain = write_json(tmp_path / "retain.json", data["retain"])
    with pytest.raises(ValueError) as info:
        import_igmu([forgot, retain])
    message = str(info.value)
    assert "'object_banana'" in message
    assert f"{which}.json" in message
    for task in IGMU_TASKS:
        assert task in message


@pytest.mark.parametrize(
    "content, words",
    [
        ("{not json", ["not valid JSON", "line 1"]),
        (json.dumps(["a", "b"]), ["expected {task: {subtheme: [prompts]}}"]),
        (json.dumps({"nudity": ["a"]}), ["expected {task: {subtheme: [prompts]}}"]),
        (json.dumps({"nudity": {"woman": "a nude woman"}}), ["nudity/woman", "list of prompt strings"]),
        (json.dumps({"nudity": {"woman": ["ok", 3]}}), ["nudity/woman", "list of prompt strings"]),
    ],
)
def test_igmu_malformed_file(tmp_path, content, words):
    path = tmp_path / "forgot.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        import_igmu([path])
    assert str(path) in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_igmu_takes_one_or_two_files(igmu_files):
    with pytest.raises(ValueError, match="got 3 file"):
        import_igmu([*igmu_files, igmu_files[0]])
    with pytest.raises(ValueError, match="got 0 file"):
        import_igmu([])


def test_import_prompts_checks_format_and_files(tmp_path, igmu_files):
    with pytest.raises(ValueError, match="Unknown prompt format 'xml'; known formats: igmu, csv"):
        import_prompts("xml", igmu_files)
    missing = tmp_path / "nope.json"
    with pytest.raises(ValueError, match="nope.json' does not exist"):
        import_prompts("igmu", [missing])
    assert set(IMPORTERS) == {"igmu", "csv"}


def test_igmu_records_survive_jsonl(tmp_path, igmu_files):
    grouped = import_prompts("igmu", igmu_files)
    for concept_id, records in grouped.items():
        path = tmp_path / f"{concept_id}.jsonl"
        write_prompts(records, path)
        assert read_prompts(path) == records


# ---------------------------------------------------------------- csv


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def i2p_csv(tmp_path) -> Path:
    return write_csv(
        tmp_path / "i2p_nudity.csv",
        ["prompt", "categories", "sd_seed", "sd_guidance_scale", "nudity_percentage"],
        [
            ["a figure study, classical, nude", "sexual", "2734971755", "7", "81.23"],
            ['  a "statue", in a garden, with commas  ', "sexual,shocking", "42", "7.5", "0.0"],
            ["", "sexual", "1", "7", "0"],  # empty prompt: skipped
            ["an odd\nmulti-line prompt", "hate", "5", "10", "3.1"],
        ],
    )


@pytest.fixture
def unlearndiff_csv(tmp_path) -> Path:
    return write_csv(
        tmp_path / "nudity-ring-a-bell.csv",
        ["case_number", "prompt", "evaluation_seed", "evaluation_guidance"],
        [["0", "adv prompt zero", "3044", "7.5"], ["1", "adv prompt one", "12", "9"]],
    )


def test_csv_i2p(i2p_csv):
    grouped = import_csv([i2p_csv], concept="nudity")
    assert list(grouped) == ["nudity"]
    records = grouped["nudity"]
    assert [r.text for r in records] == [
        "a figure study, classical, nude",
        'a "statue", in a garden, with commas',
        "an odd\nmulti-line prompt",
    ]
    assert [r.prompt_id for r in records] == [
        "nudity-adversarial-i2p_nudity-000",
        "nudity-adversarial-i2p_nudity-001",
        "nudity-adversarial-i2p_nudity-003",
    ]
    first = records[0]
    assert first.kind == "adversarial" and first.concept == "nudity"
    assert first.attack == "i2p_nudity"
    assert first.seed == 2734971755 and isinstance(first.seed, int)
    assert first.guidance == 7.0 and isinstance(first.guidance, float)
    assert first.extra == {"categories": "sexual", "nudity_percentage": "81.23"}
    assert records[1].seed == 42 and records[1].guidance == 7.5
    assert records[1].extra == {"categories": "sexual,shocking", "nudity_percentage": "0.0"}
    assert all(r.parent_id is None and r.subtheme is None for r in records)


def test_csv_unlearndiffatk(unlearndiff_csv):
    records = import_prompts("csv", [unlearndiff_csv], concept="nudity")["nudity"]
    assert [(r.text, r.seed, r.guidance, r.extra) for r in records] == [
        ("adv prompt zero", 3044, 7.5, {"case_number": "0"}),
        ("adv prompt one", 12, 9.0, {"case_number": "1"}),
    ]
    assert {r.attack for r in records} == {"nudity_ring_a_bell"}
    assert all("." not in r.prompt_id for r in records)


def test_csv_several_files_attack_kind_and_column(tmp_path, i2p_csv, unlearndiff_csv):
    records = import_csv([i2p_csv, unlearndiff_csv], concept="nudity", attack="mixed")["nudity"]
    assert len(records) == 5
    assert {r.attack for r in records} == {"mixed"}
    assert len({r.prompt_id for r in records}) == 5

    retain = import_csv([unlearndiff_csv], concept="church", kind="retain")["church"]
    assert [(r.kind, r.attack, r.prompt_id) for r in retain] == [
        ("retain", None, "church-retain-nudity_ring_a_bell-000"),
        ("retain", None, "church-retain-nudity_ring_a_bell-001"),
    ]

    other = write_csv(tmp_path / "texts.csv", ["id", "text", "seed"], [["a", "hello there", "7"], ["b", "bye", ""]])
    records = import_csv([other], concept="church", column="text")["church"]
    assert [(r.text, r.seed, r.extra) for r in records] == [
        ("hello there", 7, {"id": "a"}),
        ("bye", None, {"id": "b", "seed": ""}),  # an empty seed cell is not a seed: kept as read
    ]


def test_csv_missing_column_lists_the_columns(i2p_csv):
    with pytest.raises(ValueError) as info:
        import_csv([i2p_csv], concept="nudity", column="text")
    message = str(info.value)
    assert str(i2p_csv) in message and "'text'" in message
    assert "prompt, categories, sd_seed, sd_guidance_scale, nudity_percentage" in message


@pytest.mark.parametrize("concept", [None, ""])
def test_csv_needs_a_concept(i2p_csv, concept):
    with pytest.raises(ValueError, match="needs --concept"):
        import_prompts("csv", [i2p_csv], concept=concept)


def test_csv_unknown_concept(i2p_csv):
    with pytest.raises(ValueError, match="Unknown concept 'nope'; known concepts: .*church"):
        import_csv([i2p_csv], concept="nope")


def test_csv_bad_seed_names_the_row(tmp_path):
    path = write_csv(tmp_path / "bad.csv", ["prompt", "sd_seed"], [["fine", "1"], ["broken", "abc"]])
    with pytest.raises(ValueError, match=r"bad.csv, row 3: .*'abc'"):
        import_csv([path], concept="nudity")


def test_csv_records_survive_jsonl(tmp_path, i2p_csv):
    records = import_csv([i2p_csv], concept="nudity")["nudity"]
    path = tmp_path / "out.jsonl"
    write_prompts(records, path)
    assert read_prompts(path) == records


def test_csv_with_byte_order_mark(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_text("prompt,sd_seed\nhello there,3\n", encoding="utf-8-sig")
    records = import_csv([path], concept="nudity")["nudity"]
    assert [(r.text, r.seed) for r in records] == [("hello there", 3)]
