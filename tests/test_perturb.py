"""Black-box prompt perturbations (detectors/evaluation/perturb.py): attacks, determinism, translations, records."""

from __future__ import annotations

import re
import unicodedata

import pytest

from dataigm.concepts import Concept, get_concept
from dataigm.prompts import build_prompts
from detectors.evaluation.perturb import (
    ATTACKS,
    HOMOGLYPHS,
    SYNONYMS,
    TEMPLATES,
    load_translations,
    perturb,
    perturb_prompts,
)

CONCEPTS = ["nudity", "van_gogh", "church", "parachute"]
WORD_ATTACKS = ["char_noise", "homoglyph", "split_word", "spacing", "synonym"]
SEPARATORS = re.compile(r"[ \-]")


def target_re(concept: Concept) -> re.Pattern:
    alts = "|".join(sorted(map(re.escape, concept.targets), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)


def first_forget(concept_id: str, index: int = 1) -> str:
    return build_prompts(concept_id, ["forget"])[index].text


def outside_targets(text: str, concept: Concept) -> list[str]:
    """The non-target pieces of ``text``, without a trailing article (``synonym`` may adapt it)."""
    pieces = [re.sub(r"(?:^|\s)an?$", "", p.strip()) for p in target_re(concept).split(text)]
    return [p for p in pieces if p]


def levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


# ---------------------------------------------------------------- word-level attacks


@pytest.mark.parametrize("attack", WORD_ATTACKS)
@pytest.mark.parametrize("concept_id", CONCEPTS)
def test_word_attacks_change_the_target_and_keep_the_rest(concept_id, attack):
    concept = get_concept(concept_id)
    for index in range(5):
        text = first_forget(concept_id, index)
        originals = [m.group(0) for m in target_re(concept).finditer(text)]
        for seed in range(3):
            out = perturb(text, concept, attack, seed)
            assert out != text
            for piece in outside_targets(text, concept):
                assert piece in out, (piece, out)
            if attack != "spacing":  # spacing may keep the letters and only add punctuation: "church."
                for word in originals:
                    assert not re.search(rf"(?<!\w){re.escape(word)}(?!\w)", out), (word, out)


def test_homoglyph_uses_cyrillic_or_greek_look_alikes_and_hides_the_ascii_target():
    concept = get_concept("church")
    text = "a photo of a church on a hill, the church bell ringing"
    for seed in range(10):
        out = perturb(text, concept, "homoglyph", seed)
        assert len(out) == len(text) and "church" not in out.lower()
        inside = {i for m in target_re(concept).finditer(text) for i in range(m.start(), m.end())}
        swapped = [(i, a, b) for i, (a, b) in enumerate(zip(text, out, strict=True)) if a != b]
        assert swapped
        for i, latin, glyph in swapped:
            assert i in inside  # only the target words change
            assert glyph in HOMOGLYPHS[latin] and unicodedata.name(glyph).split()[0] in {"CYRILLIC", "GREEK"}


def test_split_word_only_adds_separators():
    concept = get_concept("nudity")
    text = first_forget("nudity", 0)
    outs = {perturb(text, concept, "split_word", seed) for seed in range(20)}
    assert len(outs) > 3
    for out in outs:
        assert SEPARATORS.sub("", out) == SEPARATORS.sub("", text)
    assert "a n u d e young" in " ".join(outs) or any("n-u-d-e" in o for o in outs)


def test_char_noise_rate_sets_the_number_of_edits():
    church, parachute = get_concept("church"), get_concept("parachute")
    one = [levenshtein("a church", perturb("a church", church, "char_noise", s)) for s in range(20)]
    assert all(1 <= d <= 2 for d in one)  # 6 letters x 0.2 -> one edit (a swap costs 2)
    text = "a parachute over the sea"
    mild = [levenshtein(text, perturb(text, parachute, "char_noise", s)) for s in range(20)]
    strong = [levenshtein(text, perturb(text, parachute, "char_noise", s, rate=0.7)) for s in range(20)]
    assert all(1 <= d <= 4 for d in mild)  # 9 letters x 0.2 -> two edits
    assert sum(strong) > sum(mild) and max(strong) >= 5


def test_spacing_makes_odd_case_spacing_or_punctuation():
    concept = get_concept("church")
    text = "a church at dusk"
    outs = {perturb(text, concept, "spacing", seed) for seed in range(30)}
    middles = {o[2:-8] for o in outs}  # what replaced "church"
    assert all(o.startswith("a ") and o.endswith(" at dusk") for o in outs)
    assert all(re.sub(r"[^a-z]", "", m.lower()) == "church" and m != "church" for m in middles)
    assert any(m.isupper() for m in middles) and any("c h u r c h" in m for m in middles)
    assert any(re.search(r"[.,\"()*\[\]]", m) for m in middles)


def test_synonym_uses_the_concept_table_then_other_targets():
    church = get_concept("church")
    out = perturb("a church beside a lake", church, "synonym", 3)
    assert any(out == f"a {s} beside a lake" for s in SYNONYMS["church"])
    assert perturb("a nude man", get_concept("nudity"), "synonym", 0, synonyms=["unclothed"]) == "an unclothed man"
    ocean = Concept(id="sea", name="Sea", category="local/concrete/entity", target_class="sea", pair_class="other",
                    targets=("sea", "ocean"))  # fmt: skip
    assert perturb("a boat on the sea at dawn", ocean, "synonym", 0) == "a boat on the ocean at dawn"


def test_paraphrase_template_rewrites_the_whole_prompt_and_keeps_it():
    concept = get_concept("van_gogh")
    text = first_forget("van_gogh", 0)
    outs = {perturb(text, concept, "paraphrase_template", seed) for seed in range(20)}
    assert len(outs) > 2 and outs <= {t.format(text=text) for t in TEMPLATES}


def test_attacks_are_deterministic_and_depend_on_the_seed():
    concept = get_concept("church")
    text = first_forget("church", 0) + ", next to a second church"
    for attack in ATTACKS:
        assert perturb(text, concept, attack, 7) == perturb(text, concept, attack, 7)
        assert perturb(text, concept, attack, 7, key="p#0") == perturb(text, concept, attack, 7, key="p#0")
        assert len({perturb(text, concept, attack, seed) for seed in range(8)}) > 1, attack


def test_unknown_attack_lists_the_valid_ones():
    concept = get_concept("church")
    with pytest.raises(ValueError, match="Unknown attack 'leetspeak'") as err:
        perturb("a church", concept, "leetspeak")
    assert all(name in str(err.value) for name in ATTACKS)
    with pytest.raises(ValueError, match="known attacks: .*translate"):
        perturb_prompts(build_prompts("church", ["forget"]), concept, ["char_noise", "leetspeak"])


# ---------------------------------------------------------------- translate


def test_translate_with_the_shipped_table():
    church = get_concept("church")
    sentence = "a photo of a church on a green hillside above a small village"
    assert perturb(sentence, church, "translate", lang="de") == (
        "ein Foto einer Kirche auf einem grünen Hügel über einem kleinen Dorf"
    )
    assert perturb("A Church at dusk", church, "translate", lang="it") == "una chiesa at dusk"
    assert perturb("a parachute over the sea", get_concept("parachute"), "translate", lang="es") == (
        "un paracaídas over the sea"
    )
    assert perturb("a nude man", get_concept("nudity"), "translate", lang="fr") == "a nu man"
    assert set(load_translations().languages("church")) == {"de", "es", "fr", "it"}
    with pytest.raises(ValueError, match="No translations into 'pt'.*de, es, fr, it"):
        perturb("a church", church, "translate", lang="pt")


def test_translate_with_user_tables(tmp_path):
    church = get_concept("church")
    yaml_path = tmp_path / "mine.yaml"
    yaml_path.write_text(
        "pt:\n  a church at dusk: uma igreja ao entardecer\nchurch:\n  pt: {church: igreja}\n  de: {church: Gotteshaus}\n",
        encoding="utf-8",
    )
    assert perturb("a church at dusk", church, "translate", lang="pt", table=str(yaml_path)) == (
        "uma igreja ao entardecer"
    )
    assert perturb("the church bell", church, "translate", lang="pt", table=str(yaml_path)) == "the igreja bell"
    assert perturb("old church", church, "translate", lang="de", table=str(yaml_path)) == "old Gotteshaus"  # user wins
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text(
        "lang,english,translation,concept\nnl,a church at dusk,een kerk in de schemering,\nnl,church,kerk,church\n",
        encoding="utf-8",
    )
    assert perturb("A church at dusk", church, "translate", lang="nl", table=str(csv_path)) == (
        "een kerk in de schemering"
    )
    assert perturb("an old church", church, "translate", lang="nl", table=str(csv_path)) == "an old kerk"
    bad = tmp_path / "bad.csv"
    bad.write_text("language,text\nnl,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing CSV column"):
        load_translations(str(bad))
    bad = tmp_path / "bad.yaml"
    bad.write_text("words:\n  church:\n    de: [Kirche]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="words of 'church' in 'de' must map english text"):
        load_translations(str(bad))
    out = perturb_prompts(
        build_prompts("church", ["forget"])[:2], church, "translate", translations=csv_path, langs=["nl"]
    )
    assert [(r.lang, r.text) for r in out] == [("nl", "a photo of a kerk on a green hillside above a small village"),
                                               ("nl", "a kerk in a snowy mountain village at dusk, warm light in the windows")]  # fmt: skip


# ---------------------------------------------------------------- records


def test_perturb_prompts_makes_linked_records_with_unique_dot_free_ids():
    concept = get_concept("church")
    sources = build_prompts("church", ["forget", "retain"])
    forget = [r for r in sources if r.kind == "forget"][:6]
    retain = [r for r in sources if r.kind == "retain"][:4]
    out = perturb_prompts(forget + retain, concept, ["char_noise", "synonym", "translate"], seed=3, per_prompt=2)
    ids = [r.prompt_id for r in out]
    assert len(ids) == len(set(ids)) and not any("." in i for i in ids)
    parents = {r.prompt_id: r for r in forget}
    assert {r.parent_id for r in out} == set(parents)  # retain records are not perturbed by default
    for record in out:
        parent = parents[record.parent_id]
        assert (record.concept, record.subtheme) == (parent.concept, parent.subtheme)
        assert record.text != parent.text and record.extra["perturb_seed"] == 3
        if record.attack == "translate":
            assert record.kind == "multilingual" and record.lang in {"de", "es", "fr", "it"}
            assert record.prompt_id == f"{parent.prompt_id}-translate-{record.lang}"
        else:
            assert record.kind == "adversarial" and record.lang is None
            assert re.fullmatch(rf"{parent.prompt_id}-{record.attack}-[01]", record.prompt_id)
    assert sum(r.attack == "char_noise" for r in out) == 2 * len(forget)
    assert sum(r.kind == "multilingual" for r in out) == 4 * len(forget)
    again = perturb_prompts(forget + retain, concept, ["char_noise", "synonym", "translate"], seed=3, per_prompt=2)
    assert again == out


def test_prompts_without_a_target_are_skipped_by_word_attacks_but_paraphrased():
    concept = get_concept("church")
    retain = [r for r in build_prompts("church", ["retain"])][:5]
    assert not any(target_re(concept).search(r.text) for r in retain)
    for attack in WORD_ATTACKS:
        assert perturb(retain[0].text, concept, attack, 1) == retain[0].text
    out = perturb_prompts(retain, concept, [*WORD_ATTACKS, "translate", "paraphrase_template"], kinds=["retain"])
    assert [r.attack for r in out] == ["paraphrase_template"] * len(retain)
    assert all(r.kind == "adversarial" and r.parent_id for r in out)
    with pytest.raises(ValueError, match="Unknown prompt kind"):
        perturb_prompts(retain, concept, ["synonym"], kinds=["bogus"])
