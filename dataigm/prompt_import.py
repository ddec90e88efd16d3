"""Import prompt sets written in other formats into prompt records.

Formats are looked up by name in ``IMPORTERS``:

* ``igmu``: the IGMU benchmark layout, ``forgot.json`` (and optionally ``retain.json``) holding
  ``{task: {subtheme: [prompt, ...]}}``. A retain list that aligns index by index with a forget list
  of the same sub-theme becomes its ``remove`` (P̂-1) variant; a retain list named after one of the
  concept's replacement objects becomes ``replace`` (P̂-2); any other retain list stays ``retain``.
* ``csv``: one prompt per row (I2P, UnlearnDiffAtk...). Seed and guidance columns are recognised;
  every other column is kept in the record's ``extra``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .concepts import ConceptRegistry, load_registry
from .prompts import PromptRecord, prompt_id, slug
from .suite import check_pin

# The IGMU task names and the registry concepts they stand for.
IGMU_TASKS = {
    "nudity": "nudity",
    "style_vangogh": "van_gogh",
    "object_church": "church",
    "object_parachute": "parachute",
}
SEED_COLUMNS = ("seed", "sd_seed", "evaluation_seed")
GUIDANCE_COLUMNS = ("guidance", "sd_guidance_scale", "evaluation_guidance", "guidance_scale")


def _load_json(path: str | os.PathLike) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected {{task: {{subtheme: [prompts]}}}}")
    for task, subs in data.items():
        for sub, prompts in subs.items():
            if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
                raise ValueError(f"{path}: {task}/{sub} should be a list of prompt strings")
    return data


def _concept_of_task(task: str, path: str | os.PathLike) -> str:
    if task not in IGMU_TASKS:
        raise ValueError(f"{path}: unknown IGMU task {task!r}; known tasks: {', '.join(IGMU_TASKS)}")
    return IGMU_TASKS[task]


def import_igmu(
    paths: Sequence[str | os.PathLike], registry: ConceptRegistry | None = None, **_: object
) -> dict[str, list[PromptRecord]]:
    """Read ``forgot.json`` [and ``retain.json``]; returns records grouped by concept id."""
    if not 1 <= len(paths) <= 2:
        raise ValueError(f"The igmu format takes forgot.json and optionally retain.json, got {len(paths)} file(s)")
    registry = registry or load_registry()
    forgot = _load_json(paths[0])
    retain = _load_json(paths[1]) if len(paths) == 2 else {}
    out: dict[str, list[PromptRecord]] = {}
    for task, subs in forgot.items():
        cid = _concept_of_task(task, paths[0])
        records = out.setdefault(cid, [])
        for sub, prompts in subs.items():
            records += [
                PromptRecord(prompt_id(cid, "forget", sub, i), cid, "forget", p, slug(sub))
                for i, p in enumerate(prompts)
            ]
    for task, subs in retain.items():
        cid = _concept_of_task(task, paths[1])
        concept = registry.get(cid)
        replacements = {slug(r): r for r in concept.replacements}
        forget_subs = forgot.get(task, {})
        records = out.setdefault(cid, [])
        for sub, prompts in subs.items():
            records += _classify_retain_list(cid, sub, prompts, forget_subs, replacements)
    return out


def _classify_retain_list(
    cid: str, sub: str, prompts: list[str], forget_subs: dict, replacements: dict[str, str]
) -> list[PromptRecord]:
    if sub in forget_subs and len(forget_subs[sub]) == len(prompts):
        return [
            PromptRecord(
                prompt_id(cid, "remove", sub, i),
                cid,
                "remove",
                p,
                slug(sub),
                parent_id=prompt_id(cid, "forget", sub, i),
            )
            for i, p in enumerate(prompts)
        ]
    if slug(sub) in replacements:
        # Per-object lists align with the forget list when the task has a single one of the same length.
        parent_sub = next(iter(forget_subs)) if len(forget_subs) == 1 else None
        aligned = parent_sub is not None and len(forget_subs[parent_sub]) == len(prompts)
        return [
            PromptRecord(
                prompt_id(cid, "replace", sub, i),
                cid,
                "replace",
                p,
                slug(parent_sub) if aligned else None,
                parent_id=prompt_id(cid, "forget", parent_sub, i) if aligned else None,
                replacement=replacements[slug(sub)],
            )
            for i, p in enumerate(prompts)
        ]
    return [PromptRecord(prompt_id(cid, "retain", sub, i), cid, "retain", p, slug(sub)) for i, p in enumerate(prompts)]


def _first_present(row: dict, names: Sequence[str]) -> tuple[str | None, str | None]:
    for name in names:
        if row.get(name) not in (None, ""):
            return name, row[name]
    return None, None


def import_csv(
    paths: Sequence[str | os.PathLike],
    concept: str | None = None,
    column: str = "prompt",
    kind: str = "adversarial",
    attack: str | None = None,
    registry: ConceptRegistry | None = None,
    **_: object,
) -> dict[str, list[PromptRecord]]:
    """Read CSV prompt files (one prompt per row in ``column``) for ``concept``."""
    if not concept:
        raise ValueError("The csv format needs --concept: the concept these prompts attack or describe")
    cid = (registry or load_registry()).get(concept).id
    records: list[PromptRecord] = []
    for path in paths:
        stem = slug(Path(path).stem)
        with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: spreadsheets write a byte-order mark
            reader = csv.DictReader(f)
            if column not in (reader.fieldnames or []):
                raise ValueError(f"{path}: no column {column!r}; columns: {', '.join(reader.fieldnames or [])}")
            for row_number, row in enumerate(reader):
                text = row.pop(column)
                if not text or not text.strip():
                    continue
                seed_col, seed = _first_present(row, SEED_COLUMNS)
                guid_col, guidance = _first_present(row, GUIDANCE_COLUMNS)
                extra = {k: v for k, v in row.items() if k not in (seed_col, guid_col) and k is not None}
                try:
                    records.append(
                        PromptRecord(
                            prompt_id(cid, kind, stem, row_number),
                            cid,
                            kind,
                            text.strip(),
                            attack=(attack or stem) if kind == "adversarial" else None,
                            seed=int(float(seed)) if seed is not None else None,
                            guidance=float(guidance) if guidance is not None else None,
                            extra=extra,
                        )
                    )
                except ValueError as err:
                    raise ValueError(f"{path}, row {row_number + 2}: {err}") from None
    return {cid: records}


IMPORTERS: dict[str, Callable[..., dict[str, list[PromptRecord]]]] = {"igmu": import_igmu, "csv": import_csv}


def import_prompts(
    fmt: str, paths: Sequence[str | os.PathLike], sha256: Sequence[str] | None = None, **options: object
) -> dict[str, list[PromptRecord]]:
    """Import ``paths`` written in format ``fmt``; returns ``{concept_id: records}``.

    Args:
        sha256: the pinned sha256 of each file (a benchmark suite's pins): a file whose bytes differ is refused
            before anything is read from it.
    """
    if fmt not in IMPORTERS:
        raise ValueError(f"Unknown prompt format {fmt!r}; known formats: {', '.join(IMPORTERS)}")
    for path in paths:
        if not Path(path).is_file():
            raise ValueError(f"Prompt file {str(path)!r} does not exist")
    if sha256 is not None:
        if len(sha256) != len(paths):
            raise ValueError(f"{len(sha256)} sha256 pin(s) for {len(paths)} prompt file(s)")
        for path, pin in zip(paths, sha256, strict=True):
            check_pin(path, pin)
    return IMPORTERS[fmt](paths, **options)
