"""Prompt records, JSONL prompt files, and the built-in prompt sets (docs/concepts.md, "Prompts").

The prompt text of the built-in concepts is written by this project and kept in
``dataigm/prompt_sets/*.yaml``: hand-written sets for the four benchmarked concepts, shared ``retain``
prompts, and per-task templates from which every other concept gets its prompts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path

from .concepts import Concept, ConceptRegistry, load_registry
from .files import atomic_write_text
from .safe_yaml import load_yaml
from .schema import PROMPT_KINDS

_SETS_DIR = Path(__file__).parent / "prompt_sets"
BUILDABLE_KINDS = ("forget", "remove", "replace", "retain")
# Provenance of prompts made by an attack; absent from other records (and from the job ids they feed).
ATTACK_FIELDS = ("source_text", "target_model", "target_checksum", "attack_options", "loss", "fitness")


@dataclass(frozen=True)
class PromptRecord:
    """One prompt. ``parent_id`` links a derived variant (remove/replace) to its forget prompt.

    Prompts made by an attack (``dataigm attack``) also carry their provenance: ``parent_id`` is the attacked
    prompt and ``source_text`` its text, ``target_model`` the attacked model's spec and ``target_checksum`` a
    sha256 of its weights, ``attack_options`` the attack's settings, ``seed`` the seed it attacked with, and
    ``loss`` (UnlearnDiffAtk's denoising loss) or ``fitness`` (Ring-A-Bell's distance) what it reached.
    """

    prompt_id: str
    concept: str
    kind: str
    text: str
    subtheme: str | None = None
    parent_id: str | None = None
    replacement: str | None = None
    attack: str | None = None
    lang: str | None = None
    seed: int | None = None
    guidance: float | None = None
    extra: dict = field(default_factory=dict)
    source_text: str | None = None
    target_model: dict | None = None
    target_checksum: str | None = None
    attack_options: dict | None = None
    loss: float | None = None
    fitness: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in PROMPT_KINDS:
            raise ValueError(f"Unknown prompt kind {self.kind!r}; valid kinds: {', '.join(PROMPT_KINDS)}")
        if not self.prompt_id or "." in self.prompt_id:
            raise ValueError(f"prompt_id {self.prompt_id!r} must be non-empty and contain no dots")
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError(f"Prompt {self.prompt_id!r} has empty text")

    def to_dict(self) -> dict:
        """The record as plain data; the attack provenance fields only when set (other files stay as they were)."""
        return {k: v for k, v in asdict(self).items() if k not in ATTACK_FIELDS or v is not None}


def slug(text: str) -> str:
    """A lower-case, dot-free id fragment: ``"Still life"`` -> ``"still_life"``."""
    out = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return out or "x"


def prompt_id(concept: str, kind: str, group: str | None, index: int) -> str:
    parts = [concept, kind, *([slug(group)] if group else []), f"{index:03d}"]
    return "-".join(parts)


def subsample(records: Sequence[PromptRecord], n: int | None) -> list[PromptRecord]:
    """At most ``n`` records spread evenly over the list (every sub-theme keeps its share), in order."""
    if n is None or n >= len(records):
        return list(records)
    step = len(records) / n
    return [records[int(i * step)] for i in range(n)]


# ---------------------------------------------------------------- JSONL files


def write_prompts(records: Iterable[PromptRecord], path: str | os.PathLike) -> int:
    """Write records as JSONL (atomically); returns the number written."""
    lines = [json.dumps(r.to_dict(), ensure_ascii=False) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_prompts(path: str | os.PathLike) -> list[PromptRecord]:
    """Read a JSONL prompt file; a malformed line raises ``ValueError`` naming the file and line."""
    valid = {f.name for f in fields(PromptRecord)}
    records: list[PromptRecord] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {lineno}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(data, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
            missing = [k for k in ("prompt_id", "concept", "kind", "text") if k not in data]
            if missing:
                raise ValueError(f"{where}: missing field(s) {missing}")
            unknown = sorted(set(data) - valid)
            if unknown:
                raise ValueError(f"{where}: unknown field(s) {unknown}; valid fields: {', '.join(sorted(valid))}")
            try:
                records.append(PromptRecord(**data))
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}: {err}") from None
    return records


# ---------------------------------------------------------------- built-in sets


@cache
def _load_set(name: str) -> dict | None:
    path = _SETS_DIR / f"{name}.yaml"
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as f:
        return load_yaml(f, str(path))


def available_kinds(concept: Concept) -> tuple[str, ...]:
    """The kinds :func:`build_prompts` can make for ``concept``."""
    kinds = ["forget", "remove"]
    if concept.replacements:
        kinds.append("replace")
    kinds.append("retain")
    return tuple(kinds)


def parse_kinds(kinds: str | Sequence[str], concept: Concept) -> list[str]:
    """Parse ``"forget,remove"`` and check each kind against what ``concept`` can build."""
    items = [k.strip() for k in kinds.split(",")] if isinstance(kinds, str) else list(kinds)
    valid = available_kinds(concept)
    for kind in items:
        if kind not in valid:
            raise ValueError(
                f"Prompt kind {kind!r} cannot be built for concept {concept.id!r}; valid: {', '.join(valid)}"
            )
    return items


def build_prompts(
    concept: str | Concept, kinds: str | Sequence[str] = BUILDABLE_KINDS[:2], registry: ConceptRegistry | None = None
) -> list[PromptRecord]:
    """Build the prompt set of ``concept`` for the given kinds, in a stable order.

    Concepts with a hand-written set (``prompt_sets/<id>.yaml``) use it; every other concept gets
    prompts from the templates of its taxonomy task.
    """
    if isinstance(concept, str):
        concept = (registry or load_registry()).get(concept)
    kinds = parse_kinds(kinds, concept)
    data = _load_set(concept.id)
    if data is None or data.get("concept") != concept.id:  # shared files (retain, templates) are no concept's set
        pairs = _template_items(concept)
    elif "subthemes" in data:
        pairs = _subtheme_items(concept, data["subthemes"])
    else:
        pairs = _scene_items(concept, data["scenes"])
    out: list[PromptRecord] = []
    for kind in kinds:
        if kind == "retain":
            out.extend(_retain(concept))
            continue
        for item in pairs:
            out.extend(_records_of_kind(concept, kind, item))
    return out


@dataclass(frozen=True)
class _Item:
    """A forget prompt with its aligned variants."""

    subtheme: str | None
    index: int
    forget: str
    remove: str
    replace: dict[str, str]  # replacement phrase -> text


def _records_of_kind(concept: Concept, kind: str, item: _Item) -> list[PromptRecord]:
    forget_id = prompt_id(concept.id, "forget", item.subtheme, item.index)
    if kind == "forget":
        return [PromptRecord(forget_id, concept.id, "forget", item.forget, item.subtheme)]
    if kind == "remove":
        return [
            PromptRecord(
                prompt_id(concept.id, "remove", item.subtheme, item.index),
                concept.id,
                "remove",
                item.remove,
                item.subtheme,
                parent_id=forget_id,
            )
        ]
    return [
        PromptRecord(
            prompt_id(concept.id, "replace", _join(item.subtheme, rep), item.index),
            concept.id,
            "replace",
            text,
            item.subtheme,
            parent_id=forget_id,
            replacement=rep,
        )
        for rep, text in item.replace.items()
    ]


def _join(subtheme: str | None, replacement: str) -> str:
    return f"{subtheme}_{slug(replacement)}" if subtheme else slug(replacement)


def _subtheme_items(concept: Concept, subthemes: dict) -> list[_Item]:
    items = []
    for sub, entries in subthemes.items():
        for i, entry in enumerate(entries):
            items.append(_Item(sub, i, entry["forget"], entry["remove"], {}))
    return items


def _scene_items(concept: Concept, scenes: list[dict]) -> list[_Item]:
    target = concept.targets[0]
    return [
        _Item(
            None,
            i,
            scene["scene"].format(object=target),
            scene["remove"],
            {rep: scene["scene"].format(object=rep) for rep in concept.replacements},
        )
        for i, scene in enumerate(scenes)
    ]


def _template_items(concept: Concept) -> list[_Item]:
    templates = _load_set("templates")[concept.task]
    target = concept.targets[0]
    items = []
    for i, t in enumerate(templates):
        replace = {}
        if "replace" in t:
            replace = {rep: t["replace"].format(object=rep) for rep in concept.replacements}
        items.append(_Item(None, i, t["forget"].format(target=target), t["remove"], replace))
    return items


def _mentions(text: str, words: Iterable[str]) -> bool:
    lowered = text.lower()
    return any(re.search(rf"\b{re.escape(w.lower())}\b", lowered) for w in words)


def _retain(concept: Concept) -> list[PromptRecord]:
    avoid = [*concept.targets, *concept.remove_words]
    out = []
    for category, texts in _load_set("retain")["categories"].items():
        for i, text in enumerate(texts):
            if not _mentions(text, avoid):
                out.append(
                    PromptRecord(prompt_id(concept.id, "retain", category, i), concept.id, "retain", text, category)
                )
    return out
