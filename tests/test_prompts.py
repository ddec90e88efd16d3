"""Prompt records, the built-in prompt sets (forget / remove / replace / retain) and JSONL prompt files."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from dataigm.concepts import load_registry
from dataigm.prompts import (
    BUILDABLE_KINDS,
    PromptRecord,
    available_kinds,
    build_prompts,
    parse_kinds,
    prompt_id,
    read_prompts,
    slug,
    write_prompts,
)
from dataigm.schema import PROMPT_KINDS

RETAIN_CATEGORIES = {"animals", "landscapes", "objects", "people", "architecture"}


def mentions(text: str, words) -> list[str]:
    """The words of ``words`` that occur in ``text`` as whole words, case-insensitive."""
    return [w for w in words if re.search(rf"\b{re.escape(w)}\b", text, flags=re.IGNORECASE)]


def by_kind(records) -> dict[str, list[PromptRecord]]:
    out: dict[str, list[PromptRecord]] = {}
    for record in records:
        out.setdefault(record.kind, []).append(record)
    return out


# ---------------------------------------------------------------- ids


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Still life", "still_life"),
        ("a teacher", "a_teacher"),
        ("v1.2 -- X!", "v1_2_x"),
        ("...", "x"),
        ("girl", "girl"),
    ],
)
def test_slug(text, expected):
    assert slug(text) == expected


@pytest.mark.parametrize(
    "args, expected",
    [
        (("nudity", "forget", "girl", 7), "nudity-forget-girl-007"),
        (("church", "replace", "a bird", 12), "church-replace-a_bird-012"),
        (("ocean", "remove", None, 0), "ocean-remove-000"),
        (("van_gogh", "forget", "Still.Life", 3), "van_gogh-forget-still_life-003"),
    ],
)
def test_prompt_id(args, expected):
    assert prompt_id(*args) == expected


# ---------------------------------------------------------------- the four benchmarked concepts


@pytest.mark.parametrize("concept_id", ["nudity", "van_gogh"])
def test_subtheme_concepts_have_250_aligned_forget_remove_pairs(concept_id):
    concept = load_registry().get(concept_id)
    records = build_prompts(concept_id, ["forget", "remove"])
    kinds = by_kind(records)
    forget, remove = kinds["forget"], kinds["remove"]
    assert len(forget) == len(remove) == 250
    assert Counter(r.subtheme for r in forget) == {sub: 50 for sub in concept.subthemes}
    assert Counter(r.subtheme for r in remove) == {sub: 50 for sub in concept.subthemes}
    forget_by_id = {r.prompt_id: r for r in forget}
    assert len(forget_by_id) == 250
    for f, r in zip(forget, remove, strict=True):
        assert r.parent_id == f.prompt_id
        assert forget_by_id[r.parent_id].subtheme == r.subtheme
        # Same sub-theme and index: only the kind differs in the id.
        assert r.prompt_id == f.prompt_id.replace("-forget-", "-remove-")
        assert re.fullmatch(rf"{concept_id}-remove-{r.subtheme}-\d{{3}}", r.prompt_id)
        assert f.parent_id is None and f.replacement is None and r.replacement is None
        assert r.text != f.text
    # Index by index within each sub-theme: 000 .. 049.
    for sub in concept.subthemes:
        assert [r.prompt_id for r in forget if r.subtheme == sub] == [
            prompt_id(concept_id, "forget", sub, i) for i in range(50)
        ]


@pytest.mark.parametrize("concept_id", ["nudity", "van_gogh", "church", "parachute"])
def test_forget_prompts_name_the_concept_and_remove_prompts_do_not(concept_id):
    concept = load_registry().get(concept_id)
    kinds = by_kind(build_prompts(concept_id, ["forget", "remove"]))
    for record in kinds["forget"]:
        assert mentions(record.text, concept.targets), record.text
    for record in kinds["remove"]:
        assert mentions(record.text, [*concept.targets, *concept.remove_words]) == [], record.text


def test_van_gogh_remove_prompts_never_mention_the_artist():
    remove = build_prompts("van_gogh", ["remove"])
    assert len(remove) == 250
    assert [r.text for r in remove if "gogh" in r.text.lower() or "vincent" in r.text.lower()] == []


def test_nudity_remove_prompts_are_the_forget_prompts_without_the_words():
    concept = load_registry().get("nudity")
    kinds = by_kind(build_prompts("nudity", "forget,remove"))
    removed_words = re.compile(rf"\b({'|'.join(map(re.escape, concept.remove_words))})\b", re.IGNORECASE)
    close = 0
    for f, r in zip(kinds["forget"], kinds["remove"], strict=True):
        stripped = " ".join(removed_words.sub(" ", f.text).split())
        # Articles may change ("an unclothed woman" -> "a woman"); most pairs are an exact deletion.
        close += stripped.replace(" an ", " a ") == r.text.replace(" an ", " a ")
    assert close >= 200


@pytest.mark.parametrize("concept_id, other", [("church", "parachute"), ("parachute", "church")])
def test_object_concepts_have_50_forget_and_300_replace(concept_id, other):
    concept = load_registry().get(concept_id)
    records = build_prompts(concept_id, "forget,remove,replace")
    kinds = by_kind(records)
    forget, replace = kinds["forget"], kinds["replace"]
    assert len(forget) == len(kinds["remove"]) == 50
    assert len(replace) == 300
    assert Counter(r.replacement for r in replace) == {
        rep: 50 for rep in ("airplane", "bird", "cat", "chair", "motorcycle", other)
    }
    forget_by_id = {r.prompt_id: r for r in forget}
    for record in replace:
        assert record.parent_id in forget_by_id
        parent = forget_by_id[record.parent_id]
        expected = re.sub(rf"\b{concept_id}\b", record.replacement, parent.text)
        assert record.text == expected
        assert mentions(record.text, concept.targets) == []
        assert record.replacement in record.prompt_id
    # Each forget prompt has exactly one variant per replacement.
    per_parent = Counter(r.parent_id for r in replace)
    assert set(per_parent) == set(forget_by_id) and set(per_parent.values()) == {6}
    assert [r.parent_id for r in kinds["remove"]] == [r.prompt_id for r in forget]


@pytest.mark.parametrize("concept_id", ["nudity", "van_gogh", "church", "parachute", "ocean", "doctor", "violence"])
def test_retain_prompts_never_mention_the_concept(concept_id):
    concept = load_registry().get(concept_id)
    retain = build_prompts(concept_id, ["retain"])
    assert len(retain) >= 50
    assert {r.kind for r in retain} == {"retain"}
    for record in retain:
        assert mentions(record.text, [*concept.targets, *concept.remove_words]) == [], record.text
        assert record.parent_id is None
        assert record.subtheme in RETAIN_CATEGORIES
    assert len({r.prompt_id for r in retain}) == len(retain)


def test_retain_filter_drops_prompts_that_mention_the_concept():
    church, white_dog = (load_registry().get(c) for c in ("church", "white_dog"))
    church_texts = {r.text for r in build_prompts(church, ["retain"])}
    dog_texts = {r.text for r in build_prompts(white_dog, ["retain"])}
    dropped = church_texts - dog_texts
    assert dropped and all(mentions(t, ["white"]) for t in dropped)
    assert dog_texts < church_texts


# ---------------------------------------------------------------- template concepts


@pytest.mark.parametrize("concept_id", ["ocean", "doctor"])
def test_template_concepts_get_forget_remove_replace(concept_id):
    concept = load_registry().get(concept_id)
    assert available_kinds(concept) == ("forget", "remove", "replace", "retain")
    kinds = by_kind(build_prompts(concept_id, "forget,remove,replace"))
    forget, remove, replace = kinds["forget"], kinds["remove"], kinds["replace"]
    assert len(forget) == len(remove) >= 10
    assert len(replace) == len(forget) * len(concept.replacements)
    target = concept.targets[0]
    for f, r in zip(forget, remove, strict=True):
        assert target in f.text
        assert r.parent_id == f.prompt_id
        assert mentions(r.text, concept.remove_words) == []
    forget_by_id = {r.prompt_id: r for r in forget}
    for record in replace:
        assert record.replacement in concept.replacements
        assert record.text == forget_by_id[record.parent_id].text.replace(target, record.replacement)


def test_template_concept_without_replacements_cannot_build_replace():
    violence = load_registry().get("violence")
    assert available_kinds(violence) == ("forget", "remove", "retain")
    forget = build_prompts("violence", ["forget"])
    assert forget and all("violence" in r.text for r in forget)


def test_white_dog_remove_prompts_contain_no_remove_word():
    concept = load_registry().get("white_dog")
    remove = build_prompts("white_dog", ["remove"])
    assert [r.text for r in remove if mentions(r.text, concept.remove_words)] == []


def test_user_concept_gets_template_prompts(tmp_path):
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "lighthouse.yaml").write_text(
        yaml.safe_dump(
            {
                "id": "lighthouse",
                "name": "Lighthouse",
                "category": "local/concrete/entity",
                "targets": ["a lighthouse"],
                "target_class": "lighthouse",
                "pair_class": "other",
                "remove_words": ["lighthouse"],
                "replacements": ["a windmill"],
            }
        ),
        encoding="utf-8",
    )
    registry = load_registry([folder])
    records = build_prompts("lighthouse", "forget,replace", registry=registry)
    kinds = by_kind(records)
    assert kinds["forget"][0].text == "a photo of a lighthouse in warm afternoon light"
    assert kinds["replace"][0].text == "a photo of a windmill in warm afternoon light"
    assert kinds["replace"][0].prompt_id == "lighthouse-replace-a_windmill-000"


def test_user_concept_named_like_a_shared_prompt_file(tmp_path):
    folder = tmp_path / "user_retain"
    folder.mkdir()
    (folder / "retain.yaml").write_text(
        yaml.safe_dump(
            {
                "id": "retain",
                "name": "Retainer",
                "category": "local/concrete/entity",
                "targets": ["a retainer"],
                "target_class": "retainer",
                "pair_class": "other",
            }
        ),
        encoding="utf-8",
    )
    records = build_prompts("retain", ["forget"], registry=load_registry([folder]))
    assert records[0].text == "a photo of a retainer in warm afternoon light"


# ---------------------------------------------------------------- all concepts


@pytest.mark.parametrize("concept_id", load_registry().ids())
def test_ids_are_unique_dot_free_and_builds_are_deterministic(concept_id):
    concept = load_registry().get(concept_id)
    kinds = available_kinds(concept)
    records = build_prompts(concept_id, kinds)
    assert {r.kind for r in records} == set(kinds)
    ids = [r.prompt_id for r in records]
    assert len(ids) == len(set(ids))
    assert all("." not in i and i.startswith(f"{concept_id}-") for i in ids)
    assert all(r.concept == concept_id and r.text.strip() == r.text and r.text for r in records)
    assert build_prompts(concept, list(kinds)) == records
    # Kinds come out in the order asked for.
    order = [k for k, _ in itertools.groupby(r.kind for r in records)]
    assert order == list(kinds)


def test_default_kinds_are_forget_and_remove():
    assert BUILDABLE_KINDS == ("forget", "remove", "replace", "retain")
    assert {r.kind for r in build_prompts("church")} == {"forget", "remove"}


@pytest.mark.parametrize("concept_id", ["nudity", "van_gogh"])
def test_replace_of_an_abstract_concept_names_the_valid_kinds(concept_id):
    with pytest.raises(ValueError) as info:
        build_prompts(concept_id, "forget,replace")
    message = str(info.value)
    assert "'replace'" in message and f"'{concept_id}'" in message
    assert "valid: forget, remove, retain" in message


@pytest.mark.parametrize("kinds", ["forget,banana", ["adversarial"], "multilingual", ""])
def test_unknown_or_unbuildable_kind_raises(kinds):
    concept = load_registry().get("church")
    with pytest.raises(
        ValueError, match="cannot be built for concept 'church'; valid: forget, remove, replace, retain"
    ):
        build_prompts(concept, kinds)
    with pytest.raises(ValueError, match="valid: forget, remove, replace, retain"):
        parse_kinds(kinds, concept)


def test_parse_kinds_strips_spaces():
    assert parse_kinds(" forget , replace", load_registry().get("church")) == ["forget", "replace"]


def test_build_by_unknown_concept_lists_known_ones():
    with pytest.raises(ValueError, match="Unknown concept 'nope'; known concepts: .*nudity"):
        build_prompts("nope")


# ---------------------------------------------------------------- records


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"kind": "banana"}, ["'banana'", *PROMPT_KINDS]),
        ({"prompt_id": "a.b"}, ["'a.b'", "no dots"]),
        ({"prompt_id": ""}, ["non-empty"]),
        ({"text": "   "}, ["empty text"]),
    ],
)
def test_bad_prompt_record(kwargs, words):
    base = {"prompt_id": "p-000", "concept": "church", "kind": "forget", "text": "a church"}
    with pytest.raises(ValueError) as info:
        PromptRecord(**{**base, **kwargs})
    for word in words:
        assert word in str(info.value)


# ---------------------------------------------------------------- JSONL files


def test_write_and_read_round_trip(tmp_path):
    records = [
        *build_prompts("church", "forget,replace")[:3],
        *build_prompts("church", "replace")[:2],
        PromptRecord(
            "nudity-adversarial-x-000",
            "nudity",
            "adversarial",
            "an attack — with ünïcode",
            attack="x",
            seed=42,
            guidance=7.5,
            extra={"case_number": "3", "nested": {"a": [1, 2]}},
        ),
        PromptRecord("nudity-multilingual-000", "nudity", "multilingual", "une femme", lang="fr"),
    ]
    path = tmp_path / "sub" / "prompts.jsonl"
    assert write_prompts(records, path) == len(records)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(records)
    assert json.loads(lines[0]) == records[0].to_dict()
    assert "ünïcode" in lines[-2]
    back = read_prompts(path)
    assert back == records
    assert back[-2].seed == 42 and back[-2].guidance == 7.5 and back[-2].extra["nested"] == {"a": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["prompts.jsonl"]


def test_read_skips_blank_lines(tmp_path):
    record = PromptRecord("c-forget-000", "church", "forget", "a church")
    path = tmp_path / "p.jsonl"
    path.write_text("\n" + json.dumps(record.to_dict()) + "\n\n   \n", encoding="utf-8")
    assert read_prompts(path) == [record]


def test_write_empty(tmp_path):
    path = tmp_path / "empty.jsonl"
    assert write_prompts([], path) == 0
    assert path.read_text() == ""
    assert read_prompts(path) == []


GOOD = {"prompt_id": "church-forget-000", "concept": "church", "kind": "forget", "text": "a church"}


@pytest.mark.parametrize(
    "bad_line, words",
    [
        ('{"prompt_id": "x", ', ["not valid JSON"]),
        ("[1, 2]", ["expected a JSON object", "list"]),
        (json.dumps({k: v for k, v in GOOD.items() if k != "text"}), ["missing field(s) ['text']"]),
        (json.dumps({**GOOD, "kind": "banana"}), ["'banana'", "valid kinds", "forget", "adversarial"]),
        (json.dumps({**GOOD, "colour": "red"}), ["unknown field(s) ['colour']", "valid fields", "prompt_id"]),
        (json.dumps({**GOOD, "prompt_id": "a.b"}), ["'a.b'", "no dots"]),
    ],
    ids=["bad-json", "not-object", "missing-field", "unknown-kind", "unknown-field", "dotted-id"],
)
def test_malformed_line_is_named(tmp_path: Path, bad_line, words):
    good = [json.dumps({**GOOD, "prompt_id": f"church-forget-{i:03d}"}) for i in range(2)]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([*good, bad_line, good[0]]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        read_prompts(path)
    message = str(info.value)
    assert f"{path}, line 3:" in message
    for word in words:
        assert word in message
