"""Benchmark suites: versioned, immutable definitions of an evaluation, read from YAML and checked.

A suite names everything that makes two results comparable: the concepts (CatIGMU paths), the prompt sets (each
pinned by the sha256 of the file's bytes, with its source, licence and per-prompt seed and guidance columns), the
sampling (scheduler, steps, size, images per prompt, dtype), the judge of each concept (a judge spec, its pinned
files or revision, threshold and decision rule), the metric settings, the attacks and the composite score. A suite
is never edited: a change is a new version, a new file ``NAME@VERSION.yaml``. Its identity is
``NAME@VERSION`` plus the sha256 of that file, which results carry.

This module has one job: parse a suite, validate it and check the pins of the prompt files it ships. The packaged
suites live in ``dataigm/suites/`` (their prompt files under ``dataigm/suites/prompts/``); a user's own suite file
is read the same way, and the prompt files it names must lie in its folder. Judge specs are checked here for their
form only (``KIND[:OPTIONS]``): the judge registry lives in ``detectors``, which this package does not import.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .files import sha256_file
from .safe_yaml import load_yaml
from .sampling import SCHEDULERS, check_sampling
from .schema import PROMPT_KINDS
from .taxonomy import LEAVES

SUITES_DIR = Path(__file__).parent / "suites"
SUITE_SCHEMA = 1
# NAME@VERSION.yaml: lowercase words joined by dashes, a whole version number from 1
SUITE_FILE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*)@(?P<version>[1-9][0-9]*)\.yaml$")
NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")
PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
JUDGE_SPEC = re.compile(r"^[a-z][a-z0-9-]+(:.*)?$")
PROMPT_FORMATS = ("csv", "igmu", "jsonl")
# prompt-set kinds: the prompt kinds, and `reference` for sets only the metrics use (FID/CLIP prompts)
SET_KINDS = (*PROMPT_KINDS, "reference")
DTYPES = ("fp32", "fp16", "bf16")
BETTER = ("lower", "higher")
# `labels`: the samples' own ground truth (the toy world records what it drew); no trained judge
LABELS_JUDGE = "labels"
TOP_KEYS = {
    "schema": True,
    "name": True,
    "version": True,
    "description": True,
    "source": False,
    "base_model": True,
    "concepts": True,
    "prompt_sets": True,
    "sampling": True,
    "judges": True,
    "metrics": False,
    "attacks": False,
    "composite": True,
    "notes": False,
}


@dataclass(frozen=True)
class PromptSet:
    """One pinned prompt file of a suite.

    Attributes:
        name: the set's name within the suite.
        concept: the suite concept its prompts are about (None for a reference set of the metrics).
        kind: a prompt kind, or ``reference``.
        format: ``csv``, ``igmu`` (forgot.json/retain.json) or ``jsonl`` (our prompt records).
        sha256: the sha256 of the file's bytes.
        rows: how many prompts the set holds (csv rows, igmu prompts of ``task``, jsonl lines).
        file: the bundled file, relative to the suite's folder; None when the user imports it (``bench import``).
        file_name: the source's file name (what ``bench import`` writes).
        source: ``address`` and ``commit`` of the file at its origin.
        licence: the file's licence as its source states it.
        column: csv: the prompt column.
        seed_column: csv: the per-prompt seed column (None: the source has none).
        guidance_column: csv: the per-prompt guidance column (None: the source has none).
        task: igmu: the task key in the JSON file.
    """

    name: str
    concept: str | None
    kind: str
    format: str
    sha256: str
    rows: int
    file: str | None
    file_name: str
    source: dict
    licence: str
    column: str = "prompt"
    seed_column: str | None = None
    guidance_column: str | None = None
    task: str | None = None


@dataclass(frozen=True)
class Suite:
    """A checked suite: its identity, its definition as written, and where its bundled files are."""

    name: str
    version: int
    sha256: str
    path: Path
    data: dict
    prompt_sets: tuple[PromptSet, ...] = field(default=())

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def prompt_set(self, name: str) -> PromptSet:
        for prompt_set in self.prompt_sets:
            if prompt_set.name == name:
                return prompt_set
        known = ", ".join(p.name for p in self.prompt_sets)
        raise ValueError(f"Suite {self.id} has no prompt set {name!r}; its prompt sets: {known}")

    def bundled_path(self, prompt_set: PromptSet) -> Path | None:
        """The bundled file of ``prompt_set`` (None when it must be imported)."""
        return None if prompt_set.file is None else self.path.parent / prompt_set.file

    def identity(self) -> dict:
        return {"id": self.id, "name": self.name, "version": self.version, "sha256": self.sha256}


# ---------------------------------------------------------------- finding suites


def packaged_suites() -> dict[str, dict[int, Path]]:
    """``{name: {version: path}}`` of the suites shipped in the package."""
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(SUITES_DIR.glob("*.yaml")):
        match = SUITE_FILE.match(path.name)
        if match:
            found.setdefault(match["name"], {})[int(match["version"])] = path
    return found


def _known(suites: dict[str, dict[int, Path]]) -> str:
    return ", ".join(f"{name}@{'|'.join(str(v) for v in sorted(versions))}" for name, versions in suites.items())


def resolve_suite(ref: str) -> Path:
    """The file of ``SUITE[@VERSION]`` (the latest version when none is given), or of a suite YAML file's path.

    Raises:
        ValueError: an unknown suite or version, in one line naming the known ones.
    """
    if ref.endswith((".yaml", ".yml")):
        if not Path(ref).is_file():
            raise ValueError(f"Suite file {ref!r} does not exist (a packaged suite is named SUITE[@VERSION])")
        return Path(ref)
    suites = packaged_suites()
    name, _, version = ref.partition("@")
    if name not in suites:
        raise ValueError(f"Unknown suite {name!r}; known suites: {_known(suites)} (or a suite YAML file)")
    versions = suites[name]
    if not version:
        return versions[max(versions)]
    if not version.isdigit() or int(version) not in versions:
        raise ValueError(
            f"Suite {name!r} has no version {version!r}; known versions: {', '.join(str(v) for v in sorted(versions))}"
        )
    return versions[int(version)]


def load_suite(ref: str, check_files: bool = True) -> Suite:
    """Read, validate and (``check_files``) pin-check the suite ``SUITE[@VERSION]`` or a suite YAML file.

    Raises:
        ValueError: an unknown suite, an invalid definition, or a bundled prompt file that does not match its pin;
            one line naming the file and what is wrong.
    """
    path = resolve_suite(ref)
    raw = path.read_bytes()
    try:
        data = load_yaml(raw.decode("utf-8"), str(path))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}: not valid YAML:{where} {getattr(err, 'problem', '') or ''}".rstrip()) from None
    suite = validate_suite(data, path, hashlib.sha256(raw).hexdigest())
    if check_files:
        for prompt_set in suite.prompt_sets:
            bundled = suite.bundled_path(prompt_set)
            if bundled is not None:
                check_pin(bundled, prompt_set.sha256, f"suite {suite.id}, prompt set {prompt_set.name!r}")
    return suite


def list_suites() -> list[Suite]:
    """Every packaged suite, every version, checked (a broken packaged suite is an error, not a skip)."""
    return [load_suite(str(path)) for versions in packaged_suites().values() for path in versions.values()]


# ---------------------------------------------------------------- pins


def check_pin(path: str | Path, expected: str, what: str = "") -> None:
    """Refuse ``path`` unless the sha256 of its bytes is ``expected``.

    Raises:
        ValueError: a missing file, or one whose bytes differ from the pinned ones (both digests named).
    """
    where = f" ({what})" if what else ""
    if not Path(path).is_file():
        raise ValueError(f"Prompt file {str(path)!r}{where} does not exist")
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(
            f"Prompt file {str(path)!r}{where} does not match its pin: sha256 {actual}, pinned {expected}; "
            "a changed prompt file is another benchmark"
        )


def count_prompts(path: str | Path, prompt_set: PromptSet) -> dict:
    """What a prompt file holds: ``rows``, and for csv the rows with a seed and with a guidance value."""
    if prompt_set.format == "csv":
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))

        def filled(column):
            return None if column is None else sum(1 for r in rows if (r.get(column) or "").strip())

        return {
            "rows": len(rows),
            "seeds": filled(prompt_set.seed_column),
            "guidances": filled(prompt_set.guidance_column),
        }
    if prompt_set.format == "igmu":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return {"rows": sum(len(v) for v in data.get(prompt_set.task, {}).values())}
    with open(path, encoding="utf-8") as f:
        return {"rows": sum(1 for line in f if line.strip())}


def prompt_records(suite: Suite, prompt_set: PromptSet, path: str | Path | None = None) -> list:
    """The prompts of ``prompt_set`` as :class:`dataigm.prompts.PromptRecord`, each with its own seed and guidance
    where the set has them, read from ``path`` (default: the bundled file) after checking it against the pin.

    A csv row becomes a record of the set's concept and kind with id ``CONCEPT-KIND-SET-ROW`` (``ROW`` from 000,
    the file's order), its seed from ``seed_column`` and guidance from ``guidance_column``; a jsonl file is read
    as our prompt records, as written. ``reference`` sets and igmu files are not read here (``prompt_import`` reads
    igmu files and imports this module).

    Raises:
        ValueError: no file (an unbundled set not imported), a file that does not match its pin, a bad row.
    """
    from .prompts import PromptRecord, prompt_id, read_prompts

    where = f"suite {suite.id}, prompt set {prompt_set.name!r}"
    path = path if path is not None else suite.bundled_path(prompt_set)
    if path is None:
        raise ValueError(
            f"{where} is not bundled: fetch {prompt_set.file_name} from its source and give it "
            "(`dataigm bench import` checks it)"
        )
    check_pin(path, prompt_set.sha256, where)
    if prompt_set.format == "jsonl":
        return read_prompts(path)
    if prompt_set.format != "csv" or prompt_set.concept is None:
        raise ValueError(f"{where}: only csv and jsonl prompt sets of a concept are read here")
    records = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for row_number, row in enumerate(csv.DictReader(f)):
            try:
                seed, guidance = (
                    row.get(c or "", "").strip() for c in (prompt_set.seed_column, prompt_set.guidance_column)
                )
                records.append(
                    PromptRecord(
                        prompt_id(prompt_set.concept, prompt_set.kind, prompt_set.name, row_number),
                        prompt_set.concept,
                        prompt_set.kind,
                        (row.get(prompt_set.column) or "").strip(),
                        seed=int(float(seed)) if seed else None,
                        guidance=float(guidance) if guidance else None,
                    )
                )
            except ValueError as err:
                raise ValueError(f"{path}, row {row_number + 2}: {err}") from None
    return records


# ---------------------------------------------------------------- validation


class _Checker:
    """Collects the path of the value being checked so each message says where it is."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, message: str):
        raise ValueError(f"{self.path}: {where}: {message}")

    def mapping(self, value, where: str) -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping, got {type(value).__name__}")
        return value

    def listing(self, value, where: str) -> list:
        if not isinstance(value, list) or not value:
            self.fail(where, "expected a non-empty list")
        return value

    def text(self, value, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, f"expected a non-empty string, got {value!r}")
        return value

    def integer(self, value, where: str, low: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            self.fail(where, f"expected a whole number >= {low}, got {value!r}")
        return value

    def number(self, value, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(where, f"expected a number, got {value!r}")
        return float(value)

    def choice(self, value, where: str, choices) -> str:
        if value not in choices:
            self.fail(where, f"{value!r} is not one of {', '.join(map(str, choices))}")
        return value

    def keys(self, value: dict, where: str, required: set[str], optional: set[str] = frozenset()) -> None:
        missing = sorted(required - set(value))
        if missing:
            self.fail(where, f"missing {', '.join(missing)}")
        unknown = sorted(set(value) - required - set(optional))
        if unknown:
            self.fail(
                where,
                f"unknown key(s) {', '.join(map(str, unknown))}; valid: {', '.join(sorted(required | set(optional)))}",
            )

    def source(self, value, where: str) -> dict:
        value = self.mapping(value, where)
        self.keys(value, where, {"address"}, {"commit", "path"})
        self.text(value["address"], f"{where}.address")
        if "commit" in value and not GIT_SHA1.match(str(value["commit"])):
            self.fail(f"{where}.commit", f"expected a 40-digit git commit, got {value['commit']!r}")
        return value


def validate_suite(data, path: Path, sha256: str) -> Suite:
    """Check a parsed suite; returns the :class:`Suite` (``path`` names it in messages, ``sha256`` is its file's)."""
    c = _Checker(path)
    data = c.mapping(data, "suite")
    c.keys(data, "suite", {k for k, r in TOP_KEYS.items() if r}, {k for k, r in TOP_KEYS.items() if not r})
    if data["schema"] != SUITE_SCHEMA:
        c.fail("schema", f"this dataigm reads suite schema {SUITE_SCHEMA}, got {data['schema']!r}")
    name = c.text(data["name"], "name")
    if not NAME.match(name):
        c.fail("name", f"{name!r} must be lowercase letters, digits and dashes")
    version = c.integer(data["version"], "version")
    match = SUITE_FILE.match(path.name)
    if path.parent.resolve() == SUITES_DIR.resolve() and (
        not match or (match["name"], int(match["version"])) != (name, version)
    ):
        c.fail("name", f"a packaged suite's file is NAME@VERSION.yaml; {path.name} says otherwise ({name}@{version})")
    c.text(data["description"], "description")
    if "source" in data:
        c.source(data["source"], "source")
    base = c.mapping(data["base_model"], "base_model")
    c.keys(base, "base_model", {"label", "spec"})
    c.text(base["label"], "base_model.label")
    c.text(base["spec"], "base_model.spec")
    concepts = _check_concepts(c, data["concepts"])
    sets = tuple(
        _check_prompt_set(c, entry, i, concepts, path)
        for i, entry in enumerate(c.listing(data["prompt_sets"], "prompt_sets"))
    )
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        c.fail("prompt_sets", f"prompt set names repeat: {names}")
    _check_sampling(c, data["sampling"])
    _check_judges(c, data["judges"], concepts)
    if "metrics" in data:
        for metric, settings in c.mapping(data["metrics"], "metrics").items():
            c.mapping(settings, f"metrics.{metric}")
    for i, attack in enumerate(data.get("attacks") or []):
        _check_attack(c, attack, f"attacks[{i}]", set(names))
    _check_composite(c, data["composite"], base["label"], concepts)
    if "notes" in data:
        for i, note in enumerate(c.listing(data["notes"], "notes")):
            c.text(note, f"notes[{i}]")
    return Suite(name, version, sha256, path, data, sets)


def _check_concepts(c: _Checker, value) -> dict[str, str]:
    from .concepts import load_registry

    registry = load_registry()
    concepts: dict[str, str] = {}
    for i, entry in enumerate(c.listing(value, "concepts")):
        where = f"concepts[{i}]"
        entry = c.mapping(entry, where)
        c.keys(entry, where, {"id", "category"}, {"name"})
        cid = c.text(entry["id"], f"{where}.id")
        category = c.choice(entry["category"], f"{where}.category", LEAVES)
        if cid in concepts:
            c.fail(where, f"concept {cid!r} is listed twice")
        # a concept the registry knows keeps its category: one taxonomy, not one per suite
        if cid in registry and registry.get(cid).category != category:
            c.fail(f"{where}.category", f"{cid!r} is {registry.get(cid).category} in the concept registry")
        concepts[cid] = category
    return concepts


def _check_prompt_set(c: _Checker, entry, i: int, concepts: dict, suite_path: Path) -> PromptSet:
    where = f"prompt_sets[{i}]"
    entry = c.mapping(entry, where)
    c.keys(
        entry,
        where,
        {"name", "kind", "format", "sha256", "rows", "source", "licence", "file_name"},
        {"concept", "file", "column", "seed_column", "guidance_column", "task"},
    )
    name = c.text(entry["name"], f"{where}.name")
    kind = c.choice(entry["kind"], f"{where}.kind", SET_KINDS)
    concept = entry.get("concept")
    # a jsonl file of our prompt records may hold several concepts: each record names its own
    if concept is None and entry["format"] == "jsonl":
        pass
    elif kind != "reference" and concept not in concepts:
        c.fail(f"{where}.concept", f"{concept!r} is not one of the suite's concepts ({', '.join(concepts)})")
    fmt = c.choice(entry["format"], f"{where}.format", PROMPT_FORMATS)
    sha = str(entry["sha256"])
    if not SHA256.match(sha):
        c.fail(f"{where}.sha256", f"expected 64 lowercase hex digits, got {entry['sha256']!r}")
    file = entry.get("file")
    if file is not None:
        file = c.text(file, f"{where}.file")
        # untrusted suite files name only files in their own folder
        if Path(file).is_absolute() or ".." in Path(file).parts:
            c.fail(f"{where}.file", f"{file!r} must be a relative path inside the suite's folder")
    if fmt != "csv" and any(entry.get(k) for k in ("seed_column", "guidance_column")):
        c.fail(where, "seed_column and guidance_column are csv columns")
    if fmt == "igmu" and not entry.get("task"):
        c.fail(f"{where}.task", "an igmu prompt set names its task (e.g. nudity, object_church)")
    if fmt != "igmu" and entry.get("task"):
        c.fail(f"{where}.task", "only an igmu prompt set has a task")
    file_name = c.text(entry["file_name"], f"{where}.file_name")
    if "/" in file_name or "\\" in file_name or file_name.startswith("."):
        c.fail(f"{where}.file_name", f"{file_name!r} must be a plain file name")
    return PromptSet(
        name=name,
        concept=concept,
        kind=kind,
        format=fmt,
        sha256=sha,
        rows=c.integer(entry["rows"], f"{where}.rows"),
        file=file,
        file_name=file_name,
        source=c.source(entry["source"], f"{where}.source"),
        licence=c.text(entry["licence"], f"{where}.licence"),
        column=entry.get("column") or "prompt",
        seed_column=entry.get("seed_column"),
        guidance_column=entry.get("guidance_column"),
        task=entry.get("task"),
    )


def _check_sampling(c: _Checker, value) -> None:
    value = c.mapping(value, "sampling")
    c.keys(
        value,
        "sampling",
        {"steps", "size", "images_per_prompt", "dtype", "guidance"},
        {"scheduler", "negative_prompt", "base_seed", "origin"},
    )
    if value.get("scheduler") is not None:
        c.choice(value["scheduler"], "sampling.scheduler", SCHEDULERS)
    size = value["size"]
    height, width = (size, size) if not isinstance(size, list) else (size + [None, None])[:2]
    guidance = value["guidance"]
    if guidance == "per-prompt":
        guidance = None
    try:
        check_sampling("sampling", c.integer(value["steps"], "sampling.steps"), guidance, height, width)
    except ValueError as err:
        c.fail("sampling", str(err).removeprefix("sampling: "))
    c.integer(value["images_per_prompt"], "sampling.images_per_prompt")
    c.choice(value["dtype"], "sampling.dtype", DTYPES)


def _check_judges(c: _Checker, value, concepts: dict) -> None:
    value = c.mapping(value, "judges")
    missing = sorted(set(concepts) - set(value))
    if missing:
        c.fail("judges", f"no judge for concept(s) {', '.join(missing)}")
    for cid, judge in value.items():
        where = f"judges.{cid}"
        if cid not in concepts:
            c.fail(where, f"{cid!r} is not one of the suite's concepts ({', '.join(concepts)})")
        judge = c.mapping(judge, where)
        c.keys(
            judge,
            where,
            {"spec", "threshold", "decision"},
            {"files", "revision", "unpinned", "unavailable", "source_judge", "exact"},
        )
        if judge["spec"] is None:  # the source's judge cannot be loaded or pinned: the suite says why
            c.text(judge.get("unavailable"), f"{where}.unavailable")
            c.text(judge["decision"], f"{where}.decision")
            continue
        spec = c.text(judge["spec"], f"{where}.spec")
        if not JUDGE_SPEC.match(spec):
            c.fail(f"{where}.spec", f"{spec!r} is not KIND[:OPTIONS] (see `dataigm judge --help`)")
        files = c.mapping(judge.get("files") or {}, f"{where}.files")
        named = set(PLACEHOLDER.findall(spec))
        if named != set(files):
            c.fail(
                where,
                f"the spec's {{placeholders}} ({', '.join(sorted(named)) or 'none'}) and files ({', '.join(sorted(files)) or 'none'}) differ",
            )
        for key, pin in files.items():
            pin = c.mapping(pin, f"{where}.files.{key}")
            c.keys(pin, f"{where}.files.{key}", {"source"}, {"sha256", "git_blob"})
            c.source(pin["source"], f"{where}.files.{key}.source")
            if not (SHA256.match(str(pin.get("sha256", ""))) or GIT_SHA1.match(str(pin.get("git_blob", "")))):
                c.fail(
                    f"{where}.files.{key}", "pin the file by sha256 (or by its git blob id when only that is known)"
                )
        # a judge is pinned by its files, a revision, or says why it cannot be
        pinned = bool(files) or judge.get("revision") or spec.split(":")[0] == LABELS_JUDGE
        if not pinned and not judge.get("unpinned"):
            c.fail(
                where, "pin the judge (files with sha256, or a revision) or say why it cannot be (unpinned: REASON)"
            )
        c.number(judge["threshold"], f"{where}.threshold")
        c.text(judge["decision"], f"{where}.decision")


def _check_attack(c: _Checker, value, where: str, sets: set[str]) -> None:
    value = c.mapping(value, where)
    c.keys(value, where, {"method", "prompt_set"}, {"options", "source"})
    c.text(value["method"], f"{where}.method")
    c.choice(value["prompt_set"], f"{where}.prompt_set", sorted(sets))
    c.mapping(value.get("options") or {}, f"{where}.options")


def _check_composite(c: _Checker, value, base_label: str, concepts: dict) -> None:
    value = c.mapping(value, "composite")
    c.keys(value, "composite", {"base", "terms", "rule"})
    if value["base"] != base_label:
        c.fail(
            "composite.base",
            f"the composite is normalised to the suite's base model {base_label!r}, got {value['base']!r}",
        )
    c.text(value["rule"], "composite.rule")
    for i, term in enumerate(c.listing(value["terms"], "composite.terms")):
        where = f"composite.terms[{i}]"
        term = c.mapping(term, where)
        c.keys(term, where, {"metric", "better", "weight"}, {"concept"})
        c.text(term["metric"], f"{where}.metric")
        c.choice(term["better"], f"{where}.better", BETTER)
        if c.number(term["weight"], f"{where}.weight") <= 0:
            c.fail(f"{where}.weight", "must be > 0")
        if term.get("concept") is not None and term["concept"] not in concepts:
            c.fail(f"{where}.concept", f"{term['concept']!r} is not one of the suite's concepts")


# ---------------------------------------------------------------- rendering


def suite_summary(suite: Suite) -> dict:
    """The suite as ``bench show --json`` prints it: identity, the definition, and what each bundled file holds."""
    sets = []
    for prompt_set, entry in zip(suite.prompt_sets, suite.data["prompt_sets"], strict=True):
        bundled = suite.bundled_path(prompt_set)
        counted = count_prompts(bundled, prompt_set) if bundled is not None else None
        sets.append({**entry, "bundled": bundled is not None, "counted": counted})
    return {
        "suite": suite.identity(),
        **{k: v for k, v in suite.data.items() if k != "prompt_sets"},
        "prompt_sets": sets,
    }
