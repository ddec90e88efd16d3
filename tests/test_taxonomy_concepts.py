"""The CatIGMU taxonomy and the concept registry: built-in concepts, user YAML, and the errors that teach."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from dataigm.concepts import CONCEPTS_DIR_ENV, Concept, ConceptRegistry, get_concept, load_registry
from dataigm.taxonomy import BINDINGS, LEAVES, Category, parse_category, tree

# A valid user concept, as a user would write it.
LIGHTHOUSE = {
    "id": "lighthouse",
    "name": "Lighthouse",
    "category": "local/concrete/entity",
    "description": "A lighthouse on a coast.",
    "targets": ["a lighthouse", "lighthouse"],
    "target_class": "lighthouse",
    "pair_class": "other",
    "remove_words": ["lighthouse"],
    "replacements": ["a windmill", "a water tower"],
    "expected_output": "replace",
}


def write_concept(folder: Path, data: dict | list, name: str | None = None) -> Path:
    """Write ``data`` as one YAML file in ``folder`` (created) and return the file."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = name or (data["id"] if isinstance(data, dict) else "concepts")
    path = folder / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------- taxonomy


def test_parse_category_gives_the_three_tiers():
    category = parse_category("local/concrete/entity")
    assert category == Category("local", "concrete", "entity")
    assert (category.scope, category.nature, category.task) == ("local", "concrete", "entity")
    assert category.path == "local/concrete/entity"
    assert str(category) == "local/concrete/entity"


@pytest.mark.parametrize(
    "path", ["local/concrete/style", "global/abstract", "local/concrete/entity/extra", "", "style"]
)
def test_parse_category_rejects_non_leaves_and_lists_the_leaves(path):
    with pytest.raises(ValueError) as info:
        parse_category(path)
    message = str(info.value)
    assert repr(path) in message
    for leaf in LEAVES:
        assert leaf in message


def test_every_leaf_parses_and_the_tree_holds_exactly_the_leaves():
    for leaf in LEAVES:
        assert parse_category(leaf).path == leaf
    nested = tree()
    assert [f"{s}/{n}/{t}" for s, natures in nested.items() for n, tasks in natures.items() for t in tasks] == list(
        LEAVES
    )
    assert nested["global"]["abstract"] == ["style"]
    assert nested["local"]["abstract"] == ["property", "status", "collective"]


# ---------------------------------------------------------------- built-in concepts


@pytest.mark.parametrize(
    "concept_id, category, binding, target_class, pair_class, subthemes",
    [
        ("nudity", "local/abstract/status", "strong", "nude", "safe", ("girl", "boy", "woman", "man", "person")),
        (
            "van_gogh",
            "global/abstract/style",
            None,
            "vangogh",
            "non_vangogh",
            ("thematic", "landscape", "still_life", "cityscape", "dreamscape"),
        ),
        ("church", "local/concrete/entity", None, "church", "other", ()),
        ("parachute", "local/concrete/entity", None, "parachute", "other", ()),
    ],
)
def test_benchmarked_concepts(concept_id, category, binding, target_class, pair_class, subthemes):
    concept = load_registry().get(concept_id)
    assert concept.id == concept_id
    assert concept.category == category
    assert concept.task == category.rsplit("/", 1)[1]
    assert concept.binding == binding
    assert (concept.target_class, concept.pair_class) == (target_class, pair_class)
    assert concept.class_names == (pair_class, target_class)
    assert concept.subthemes == subthemes


def test_van_gogh_is_global_and_abstract():
    category = parse_category(load_registry().get("van_gogh").category)
    assert (category.scope, category.nature, category.task) == ("global", "abstract", "style")


@pytest.mark.parametrize("concept_id, other", [("church", "parachute"), ("parachute", "church")])
def test_object_concepts_replace_with_the_five_objects_and_each_other(concept_id, other):
    concept = load_registry().get(concept_id)
    assert set(concept.replacements) == {"airplane", "bird", "cat", "chair", "motorcycle", other}
    assert len(concept.replacements) == 6
    assert concept.expected_output == "replace"
    assert concept_id in concept.targets
    assert concept_id in concept.remove_words


def test_abstract_benchmark_concepts_have_no_replacements_and_edit():
    registry = load_registry()
    for concept_id in ("nudity", "van_gogh"):
        concept = registry.get(concept_id)
        assert concept.replacements == ()
        assert concept.expected_output == "edit"
    assert registry.get("nudity").human is True


def test_every_leaf_has_a_builtin_concept():
    by_category = load_registry().by_category()
    missing = [leaf for leaf in LEAVES if not by_category.get(leaf)]
    assert missing == []
    assert set(by_category) <= set(LEAVES)


def test_builtin_concepts_are_well_formed():
    registry = load_registry()
    assert {"nudity", "van_gogh", "church", "parachute"} <= set(registry.ids())
    assert len(registry) == len(registry.ids()) == len(set(registry.ids()))
    for concept in registry:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", concept.id)
        assert "." not in concept.id
        assert concept.targets and all(isinstance(t, str) and t for t in concept.targets)
        assert concept.target_class != concept.pair_class
        assert concept.binding in (None, *BINDINGS)
        assert concept.description
        assert concept.id in registry


def test_to_dict_round_trips_through_from_dict():
    for concept in load_registry():
        data = concept.to_dict()
        assert all(not isinstance(v, tuple) for v in data.values())
        assert Concept.from_dict(data) == concept
        assert yaml.safe_load(yaml.safe_dump(data)) == data


def test_concepts_are_frozen():
    concept = load_registry().get("church")
    with pytest.raises(AttributeError):
        concept.id = "chapel"


def test_get_unknown_concept_lists_known_ids():
    registry = load_registry()
    with pytest.raises(ValueError) as info:
        registry.get("nope")
    message = str(info.value)
    assert "'nope'" in message
    for concept_id in registry.ids():
        assert concept_id in message
    with pytest.raises(ValueError, match="known concepts: .*church"):
        get_concept("nope")


def test_registry_refuses_a_duplicate_id():
    church = load_registry().get("church")
    with pytest.raises(ValueError, match="'church' is defined twice"):
        ConceptRegistry([church, church])


# ---------------------------------------------------------------- user concepts


def test_user_concept_from_a_folder(tmp_path):
    folder = tmp_path / "user_concepts"
    write_concept(folder, LIGHTHOUSE)
    registry = load_registry([folder])
    concept = registry.get("lighthouse")
    assert concept == Concept.from_dict(LIGHTHOUSE)
    assert concept.to_dict()["description"] == "A lighthouse on a coast."
    assert concept.targets == ("a lighthouse", "lighthouse")
    assert concept.replacements == ("a windmill", "a water tower")
    assert concept in registry.by_category()["local/concrete/entity"]
    # Built-ins are still there, and first.
    assert registry.ids()[: len(load_registry())] == load_registry().ids()
    assert "lighthouse" not in load_registry()
    assert get_concept("lighthouse", [folder]) == concept


def test_user_concepts_as_a_list_file_and_yml(tmp_path):
    folder = tmp_path / "many"
    second = {**LIGHTHOUSE, "id": "windmill", "name": "Windmill", "targets": ["a windmill"], "target_class": "mill"}
    write_concept(folder, {"concepts": [LIGHTHOUSE, second]}, name="several")
    third = {**LIGHTHOUSE, "id": "fog", "category": "global/concrete/entity", "targets": ["fog"]}
    (folder / "fog.yml").write_text(yaml.safe_dump(third), encoding="utf-8")
    registry = load_registry([folder])
    assert {"lighthouse", "windmill", "fog"} <= set(registry.ids())
    assert registry.get("windmill").target_class == "mill"
    assert registry.get("fog").category == "global/concrete/entity"


def test_user_concept_from_the_environment(tmp_path, monkeypatch):
    folder = tmp_path / "env_concepts"
    write_concept(folder, {**LIGHTHOUSE, "id": "env_lighthouse"})
    monkeypatch.setenv(CONCEPTS_DIR_ENV, str(folder))
    assert load_registry().get("env_lighthouse").name == "Lighthouse"
    assert get_concept("env_lighthouse").category == "local/concrete/entity"


def test_several_folders_in_the_environment(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    write_concept(first, {**LIGHTHOUSE, "id": "from_a"})
    write_concept(second, {**LIGHTHOUSE, "id": "from_b"})
    monkeypatch.setenv(CONCEPTS_DIR_ENV, f"{first}{os.pathsep}{second}")
    registry = load_registry()
    assert {"from_a", "from_b"} <= set(registry.ids())


def test_missing_concepts_folder_is_named(tmp_path):
    missing = tmp_path / "not_there"
    with pytest.raises(ValueError, match="not_there.*does not exist"):
        load_registry([missing])


BAD_CONCEPTS = [
    # (change to LIGHTHOUSE, words the message must contain)
    ({"category": "local/concrete/thing"}, ["'local/concrete/thing'", *LEAVES]),
    ({"colour": "white"}, ["colour", "valid keys", "id", "targets", "replacements", "binding"]),
    ({"binding": "medium"}, ["'medium'", "strong", "weak"]),
    ({"expected_output": "blur"}, ["'blur'", "edit", "remove", "replace", "placeholder"]),
    ({"id": "Light.House"}, ["'Light.House'", "snake_case"]),
    ({"pair_class": "lighthouse"}, ["target_class", "pair_class", "'lighthouse'"]),
    ({"targets": []}, ["targets"]),
    ({"subthemes": ["Rocky Coast"]}, ["'Rocky Coast'", "snake_case"]),
]


@pytest.mark.parametrize("change, words", BAD_CONCEPTS, ids=[next(iter(c)) for c, _ in BAD_CONCEPTS])
def test_bad_concept_yaml_names_the_value_and_the_choices(tmp_path, change, words):
    folder = tmp_path / "bad"
    path = write_concept(folder, {**LIGHTHOUSE, **change}, name="bad")
    with pytest.raises(ValueError) as info:
        load_registry([folder])
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("key", ["id", "name", "category", "target_class", "pair_class", "targets"])
def test_missing_required_key_is_named(tmp_path, key):
    folder = tmp_path / "bad"
    write_concept(folder, {k: v for k, v in LIGHTHOUSE.items() if k != key}, name="bad")
    with pytest.raises(ValueError, match=rf"missing required key\(s\) \['{key}'\]"):
        load_registry([folder])


@pytest.mark.parametrize("text", ["just a string\n", "- 1\n- 2\n", ""])
def test_concept_file_that_is_not_a_mapping(tmp_path, text):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "bad.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="bad.yaml: expected one concept mapping"):
        load_registry([folder])


def test_duplicate_id_across_user_files_names_both_files(tmp_path):
    folder = tmp_path / "dupes"
    first = write_concept(folder, LIGHTHOUSE, name="one")
    second = write_concept(folder, {**LIGHTHOUSE, "name": "Another lighthouse"}, name="two")
    with pytest.raises(ValueError) as info:
        load_registry([folder])
    message = str(info.value)
    assert "'lighthouse'" in message
    assert str(first) in message and str(second) in message


def test_duplicate_id_across_folders_names_both_files(tmp_path):
    first = write_concept(tmp_path / "a", LIGHTHOUSE)
    second = write_concept(tmp_path / "b", LIGHTHOUSE)
    with pytest.raises(ValueError) as info:
        load_registry([tmp_path / "a", tmp_path / "b"])
    assert str(first) in str(info.value) and str(second) in str(info.value)


def test_user_concept_cannot_shadow_a_builtin(tmp_path):
    user = write_concept(tmp_path / "shadow", {**LIGHTHOUSE, "id": "church"})
    with pytest.raises(ValueError) as info:
        load_registry([tmp_path / "shadow"])
    message = str(info.value)
    assert "'church'" in message
    assert str(user) in message
    assert "builtin_concepts" in message and "church.yaml" in message


def test_same_folder_from_flag_and_environment_is_read_once(tmp_path, monkeypatch):
    folder = tmp_path / "both"
    write_concept(folder, LIGHTHOUSE)
    monkeypatch.setenv(CONCEPTS_DIR_ENV, str(folder))
    assert load_registry([folder]).get("lighthouse").name == "Lighthouse"


def test_scalar_targets_are_a_one_item_tuple_or_an_error():
    data = {**LIGHTHOUSE, "targets": "a lighthouse"}
    try:
        concept = Concept.from_dict(data, source="user.yaml")
    except ValueError as err:
        assert "targets" in str(err)
    else:
        assert concept.targets == ("a lighthouse",)
