"""``dataigm build recipe.yaml``: one file that builds a whole dataset, step by step, resumable.

A recipe names the dataset and lists, per concept, its sources; then the rules applied to the whole root::

    name: dataigm-toy
    out: toy-dataset                  # relative to the recipe file; `--out` overrides
    concepts:
      church:
        - kind: generate              # a generation job: the YAML keys of `dataigm generate`
          models: [toy]
          images_per_prompt: 2
        - kind: folder                # a folder of images, as `dataigm ingest FOLDER`
          folder: inputs/church
          source: real
          counts: {train: {target: 4, pair: 4}, test: {target: 1, pair: 1}}
        - kind: hf_dataset            # a Hugging Face dataset (Hub name or local folder), streamed
          hf_dataset: inputs/hub-church
          source: laion
        - kind: urls                  # a LAION-style URL list, as `dataigm ingest --urls` (img2dataset)
          urls: inputs/laion.parquet
          where: punsafe < 0.1
    rules:
      dedup: {near_distance: 4}       # `dataigm dedup` (false: no dedup)
      balance: {by: split}            # as many targets as pairs per concept x split (false: no balancing)

A source step's keys are the fields of its options class in :mod:`dataigm.sources.config` (the flags of
``dataigm ingest`` with that input), without ``concept`` (the key it is listed under), plus ``counts``.

The steps run in that order (every source of every concept, then dedup, balance), and end with ``validate``,
``info`` and ``card``. ``counts`` takes, per split and class, that many images of the source (a stable
pseudo-random choice: the images ordered by the sha256 of their origin), and says so when there are fewer.

Every step is a job that resumes (a shard job, a revision), and a finished step is recorded in
``<root>/meta/build.json`` under an id made of its options, so a killed build run again goes on where it
stopped, and a changed step runs again. Steps that need the other packages (``generate``: generation,
``card``: cards) get their handler from the command line (:mod:`dataigm.cli.build`): this module imports
neither.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import yaml

from .concepts import ConceptRegistry, load_registry, split_dirs
from .files import atomic_write_json
from .layout import MANIFEST_NAME, META_DIR, check_split
from .manifest import DEFAULT_NAME, check_root, open_root, read_manifest
from .safe_yaml import load_yaml
from .schema import LABELS, SOURCES

logger = logging.getLogger(__name__)

SOURCE_KINDS = ("generate", "folder", "hf_dataset", "urls")
RULE_KINDS = ("dedup", "balance")
FINAL_KINDS = ("validate", "info", "card")
STATE_NAME = f"{META_DIR}/build.json"
_TOP_KEYS = ("name", "out", "concepts_dir", "description", "concepts", "rules")
# A source step's keys are its config class's fields (dataigm.sources.config), less what the recipe supplies (the
# concept: the key the step is listed under), plus what only a recipe does (``counts``: so many images per split and
# class). ``dataset`` is the earlier name of an hf_dataset step's ``hf_dataset``; recipes written with it still run.
_SUPPLIED = ("concept",)
_RECIPE_ONLY = {"folder": ("counts",), "hf_dataset": ("counts",), "urls": ()}
_ALIASES = {"hf_dataset": {"dataset": "hf_dataset"}}


def source_keys(kind: str) -> tuple[str, ...]:
    """The keys a ``kind`` source step accepts (besides ``kind``), in the order messages list them."""
    from .sources.config import SOURCE_CONFIGS

    fields = [k for k in SOURCE_CONFIGS[kind].keys() if k not in _SUPPLIED]
    return (*fields, *_RECIPE_ONLY[kind], *_ALIASES.get(kind, {}))


_RULE_KEYS = {"dedup": ("near_distance", "keep_splits", "keep_sources", "conflicts"), "balance": ("by", "seed")}


@dataclass(frozen=True)
class Step:
    """One step of a build: its kind, the concept it writes (sources only), and its options as written."""

    number: int
    kind: str
    concept: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""  # its place in the recipe, for messages: concepts.church[1]
    after: tuple[str, ...] = ()  # a rule's inputs: the ids of the steps before it

    @property
    def id(self) -> str:
        """Names the step by what it does (and a rule by what it is applied to), so a step whose options changed
        is not taken as done, and dedup runs again after a source was added or changed."""
        text = json.dumps([self.kind, self.concept, dict(self.options), self.after], sort_keys=True, default=str)
        return f"{self.kind}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    def title(self) -> str:
        return f"{self.number}. {self.kind}" + (f" {self.concept}" if self.concept else "")


@dataclass
class Recipe:
    """A parsed, checked recipe."""

    path: Path
    name: str
    out: Path
    steps: list[Step]
    concepts_dir: str | None = None
    description: str = ""

    def registry(self) -> ConceptRegistry:
        return load_registry(split_dirs(self.concepts_dir))


class StepHandler(Protocol):
    """What a step kind does: check it (nothing written), say what it will write, and run it."""

    def check(self, step: Step, recipe: Recipe) -> None: ...

    def expected(self, step: Step, recipe: Recipe) -> str: ...

    def run(self, step: Step, recipe: Recipe) -> str: ...


# ---------------------------------------------------------------- reading a recipe


def _error(recipe: Path, where: str, message: str) -> ValueError:
    return ValueError(f"{recipe.name}: {where}: {message}" if where else f"{recipe.name}: {message}")


def _resolve(base: Path, value: Any) -> str:
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else (base / path))


def _check_keys(path: Path, where: str, given: Mapping, valid: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise _error(path, where, f"unknown key {unknown[0]!r} for {what}; valid keys: {', '.join(valid)}")


def _check_counts(path: Path, where: str, counts: Any) -> dict[str, dict[str, int]]:
    if not isinstance(counts, Mapping) or not counts:
        raise _error(path, where, f"counts must map split -> {{target: N, pair: N}}, got {counts!r}")
    out = {}
    for split, per_class in counts.items():
        try:
            check_split(str(split), "counts split")
        except ValueError as err:
            raise _error(path, where, str(err)) from None
        if not isinstance(per_class, Mapping) or set(per_class) - set(LABELS):
            raise _error(path, where, f"counts.{split} must map {' and '.join(LABELS)} to a number, got {per_class!r}")
        for label, n in per_class.items():
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise _error(path, where, f"counts.{split}.{label} must be a whole number >= 0, got {n!r}")
        out[str(split)] = {label: int(n) for label, n in per_class.items()}
    return out


def _source_step(path: Path, number: int, concept: str, index: int, entry: Any) -> Step:
    where = f"concepts.{concept}[{index}]"
    if not isinstance(entry, Mapping) or "kind" not in entry:
        raise _error(path, where, f"a source is a mapping with a 'kind' ({', '.join(SOURCE_KINDS)}), got {entry!r}")
    kind = entry["kind"]
    options = {k: v for k, v in entry.items() if k != "kind"}
    if kind not in SOURCE_KINDS:
        raise _error(path, where, f"unknown step kind {kind!r}; valid kinds: {', '.join(SOURCE_KINDS)}")
    base = path.parent
    if kind != "generate":
        for key in _SUPPLIED:
            if key in options:
                raise _error(path, where, f"a {kind} source takes its {key!r} from the recipe; remove it")
        _check_keys(path, where, options, source_keys(kind), f"a {kind} source")
        aliases = [k for k in _ALIASES.get(kind, {}) if k in options]
        if aliases and _ALIASES[kind][aliases[0]] in options:
            raise _error(
                path, where, f"give {_ALIASES[kind][aliases[0]]!r} or its earlier name {aliases[0]!r}, not both"
            )
        if kind == "folder":
            if "folder" not in options:
                raise _error(path, where, "a folder source needs 'folder'")
            options["folder"] = _resolve(base, options["folder"])
            if not Path(options["folder"]).is_dir():
                raise _error(path, where, f"folder {options['folder']!r} does not exist")
        if kind == "urls":
            if "urls" not in options:
                raise _error(path, where, "a urls source needs 'urls' (a parquet, CSV or JSONL URL list)")
            options["urls"] = _resolve(base, options["urls"])
            if not Path(options["urls"]).exists():
                raise _error(path, where, f"URL list {options['urls']!r} does not exist")
            if isinstance(options.get("pair_words"), str):
                options["pair_words"] = [w.strip() for w in options["pair_words"].split(",") if w.strip()]
        if kind == "hf_dataset":
            key = "dataset" if "dataset" in options else "hf_dataset"  # as written: the step's id stays
            if key not in options:
                raise _error(
                    path, where, "an hf_dataset source needs 'hf_dataset' (a Hub name ORG/NAME or a local folder)"
                )
            local = base / str(options[key])
            if local.exists() or str(options[key]).startswith((".", "/", "~")):
                options[key] = _resolve(base, options[key])
                if not Path(options[key]).exists():
                    raise _error(path, where, f"dataset folder {options[key]!r} does not exist")
        if "counts" in options:
            options["counts"] = _check_counts(path, where, options["counts"])
            if "split" in options:
                raise _error(path, where, "give either 'split' or 'counts' (which lists the splits), not both")
        if options.get("source") is not None and options["source"] not in SOURCES:
            raise _error(path, where, f"unknown source {options['source']!r}; valid sources: {', '.join(SOURCES)}")
        if isinstance(options.get("class_map"), Mapping):
            options["class_map"] = {str(k): str(v) for k, v in options["class_map"].items()}
    elif kind == "generate":
        for key in ("prompt_files",):
            if key in options:
                options[key] = [_resolve(base, p) for p in options[key]]
        for key in ("out", "name", "concepts"):
            if key in options:
                raise _error(path, where, f"a generate step takes its {key!r} from the recipe; remove it")
        options["concepts"] = [concept]
    return Step(number, kind, concept, options, where)


def load_recipe(path: str | Path, out: str | Path | None = None) -> Recipe:
    """Read and check a recipe file (every source's files, concepts and options); nothing is written.

    Args:
        path: the recipe YAML.
        out: the dataset root, instead of the recipe's ``out``.

    Raises:
        ValueError: one line naming the file, the place in it, the bad value and the valid choices.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Recipe {str(path)!r} does not exist")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"), path.name)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValueError(f"{path.name}: not valid YAML{at}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, Mapping):
        raise _error(path, "", "a recipe is a mapping with 'concepts' (and name, out, rules)")
    _check_keys(path, "", data, _TOP_KEYS, "a recipe")
    concepts = data.get("concepts")
    if not isinstance(concepts, Mapping) or not concepts:
        raise _error(path, "concepts", "list at least one concept with its sources (concept id -> list of sources)")
    target = out if out is not None else data.get("out")
    if target is None:
        raise _error(path, "out", "no dataset root: set 'out' in the recipe or pass --out")
    concepts_dir = data.get("concepts_dir")
    if concepts_dir is not None:
        concepts_dir = _resolve(path.parent, concepts_dir)
    registry = load_registry(split_dirs(concepts_dir))
    steps: list[Step] = []
    for concept, sources in concepts.items():
        try:
            registry.get(str(concept))
        except (KeyError, ValueError) as err:
            raise _error(path, f"concepts.{concept}", str(err).strip("'\"")) from None
        if not isinstance(sources, list) or not sources:
            raise _error(path, f"concepts.{concept}", "give a list of sources (each with a 'kind')")
        for index, entry in enumerate(sources):
            steps.append(_source_step(path, len(steps) + 1, str(concept), index, entry))
    rules = data.get("rules") or {}
    if not isinstance(rules, Mapping):
        raise _error(path, "rules", f"rules map {' and '.join(RULE_KINDS)} to their options, got {rules!r}")
    _check_keys(path, "rules", rules, RULE_KINDS, "rules")
    for kind in RULE_KINDS:  # in this order: balancing counts what dedup left
        options = rules.get(kind)
        if options is False or options is None:
            continue
        options = {} if options is True else options
        if not isinstance(options, Mapping):
            raise _error(path, f"rules.{kind}", f"give its options as a mapping, true or false; got {options!r}")
        _check_keys(path, f"rules.{kind}", options, _RULE_KEYS[kind], f"the {kind} rule")
        after = tuple(s.id for s in steps)
        steps.append(Step(len(steps) + 1, kind, None, dict(options), f"rules.{kind}", after))
    for kind in FINAL_KINDS:
        steps.append(Step(len(steps) + 1, kind, None, {}, kind))
    out_path = Path(_resolve(path.parent, target)) if out is None else Path(out)
    return Recipe(
        path, str(data.get("name") or DEFAULT_NAME), out_path, steps, concepts_dir, data.get("description") or ""
    )


# ---------------------------------------------------------------- the build state


def read_state(root: str | Path) -> dict:
    """``{"steps": {step id: {"title", "summary"}}, "recipe": {...}}``: the finished steps of builds into ``root``
    and the resolved steps of the last one."""
    path = Path(root) / STATE_NAME
    if not path.exists():
        return {"steps": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def _mark_done(root: Path, step: Step, summary: str) -> None:
    state = read_state(root)
    state["steps"][step.id] = {"title": step.title(), "summary": summary}
    atomic_write_json(root / STATE_NAME, state)


# ---------------------------------------------------------------- the data layer's steps


def _select(items: list, counts: dict[str, dict[str, int]] | None, split: str | None) -> tuple[list, list[str]]:
    """The items a source contributes: ``counts`` per split and class (stable pseudo-random order), or all of
    them in ``split``. Returns them and the shortfalls (``"train/pair: 4 asked, 3 available"``)."""
    if counts is None:
        return ([replace(i, split=split) for i in items] if split else list(items)), []
    by_label: dict[str, list] = {}
    for item in sorted(items, key=lambda i: hashlib.sha256(i.origin.encode()).hexdigest()):
        by_label.setdefault(item.label, []).append(item)
    chosen, short = [], []
    taken = dict.fromkeys(LABELS, 0)
    for name, per_class in counts.items():
        for label, n in per_class.items():
            available = by_label.get(label, [])[taken[label] : taken[label] + n]
            taken[label] += len(available)
            chosen += [replace(i, split=name) for i in available]
            if len(available) < n:
                short.append(f"{name}/{label}: {n} asked, {len(available)} available")
    return chosen, short


def source_config(step: Step):
    """The step's source as its config class (:mod:`dataigm.sources.config`): the options as written, the concept
    from the recipe; with ``counts`` the split is left to them."""
    from .sources.config import SOURCE_CONFIGS

    aliases = _ALIASES.get(step.kind, {})
    options = {aliases.get(k, k): v for k, v in step.options.items() if k not in _RECIPE_ONLY[step.kind]}
    return SOURCE_CONFIGS[step.kind](concept=step.concept, **options)


@dataclass
class _Planned:
    """A ``folder`` or ``hf_dataset`` step's images: those chosen, the shortfalls, and what its job records."""

    items: list
    short: list[str]
    selection: dict | None  # a Hub source's selection counts
    config: dict


class IngestStep:
    """``folder`` and ``hf_dataset`` sources: plan with :mod:`dataigm.sources`, choose by ``counts``, ingest."""

    def _plan(self, step: Step, recipe: Recipe) -> _Planned:
        from .sources.folder import plan_folder_source, planned_per_class
        from .sources.hub import plan_hub_source

        source, registry = source_config(step), recipe.registry()
        source.check()
        selection, ignored = None, []
        if step.kind == "folder":
            items, ignored = plan_folder_source(source, registry)
        else:
            plan = plan_hub_source(source, registry)
            items, selection = plan.items, plan.counts
        wrong = sorted({i.concept for i in items} - {step.concept})
        if wrong:
            raise ValueError(
                f"{recipe.path.name}: {step.where}: images of concept {wrong[0]!r} in a {step.concept} source"
            )
        chosen, short = _select(items, step.options.get("counts"), None)
        results = {"recipe_step": step.id}
        if step.kind == "folder":
            results |= {"planned": planned_per_class(chosen), "ignored_files": len(ignored)}
        split = ", ".join(sorted({i.split for i in chosen})) or source.split  # counts may name several
        return _Planned(chosen, short, selection, source.recorded(split=split, **results))

    def check(self, step: Step, recipe: Recipe) -> None:
        try:
            self._plan(step, recipe)
        except ValueError as err:
            raise ValueError(f"{recipe.path.name}: {step.where}: {err}") from None

    def expected(self, step: Step, recipe: Recipe) -> str:
        planned = self._plan(step, recipe)
        cells: dict[str, int] = {}
        for item in planned.items:
            cells[f"{item.split}/{item.source}/{item.label}"] = (
                cells.get(f"{item.split}/{item.source}/{item.label}", 0) + 1
            )
        text = ", ".join(f"{n} {cell}" for cell, n in sorted(cells.items())) or "no images"
        return text + (f" (fewer than asked: {'; '.join(planned.short)})" if planned.short else "")

    def run(self, step: Step, recipe: Recipe) -> str:
        from .ingest import ingest

        planned = self._plan(step, recipe)
        for line in planned.short:
            logger.warning("%s: fewer images than asked: %s", step.where, line)
        report = ingest(
            planned.items,
            recipe.out,
            **source_config(step).write_options(),
            name=recipe.name,
            registry=recipe.registry(),
            progress=False,
            where=step.where,
            config=planned.config,
        )
        if planned.selection is not None:  # written per label next to the shards, as a command-line Hub ingest does
            from .sources.counts import write_job_counts

            write_job_counts(recipe.out, report.job_id, planned.selection)
        return report.summary()


class UrlsStep:
    """A ``urls`` source: a LAION-style URL list, selected by caption and ``where``, downloaded by img2dataset
    (:func:`dataigm.sources.web.ingest_url_source`); the images go to one split, source ``laion``."""

    def _selection(self, step: Step, recipe: Recipe):
        from .sources.captions import CaptionRules
        from .sources.url_list import read_url_list, select_rows
        from .sources.where import parse_where

        source = source_config(step)
        source.check()
        frame = read_url_list(source.urls)
        rules = CaptionRules.from_concept(recipe.registry().get(step.concept), source.words())
        row_filter = parse_where(source.where, frame.head(1000))
        return select_rows(
            frame, rules, row_filter, source.max_per_class, source.url_column, source.caption_column,
            source.allow_private_addresses,
        )  # fmt: skip

    def check(self, step: Step, recipe: Recipe) -> None:
        try:
            check_split(step.options.get("split", "train"), "split")
            self._selection(step, recipe)
        except ValueError as err:
            raise ValueError(f"{recipe.path.name}: {step.where}: {err}") from None

    def expected(self, step: Step, recipe: Recipe) -> str:
        selection = self._selection(step, recipe)
        split = step.options.get("split", "train")
        chosen = ", ".join(f"{n} {split}/laion/{label}" for label, n in sorted(selection.selected.items()))
        refused = ", ".join(f"{n} {reason}" for reason, n in selection.refused.items())
        refused = f"; URLs refused: {refused}" if refused else ""
        return f"up to {chosen or 'no images'} (of {selection.seen} rows{refused}; failed downloads are counted, not fatal)"

    def run(self, step: Step, recipe: Recipe) -> str:
        from .sources.web import ingest_url_source

        report = ingest_url_source(
            source_config(step), recipe.out, name=recipe.name, registry=recipe.registry(), progress=False
        )
        return report.summary()


class DedupStep:
    def check(self, step: Step, recipe: Recipe) -> None:
        from .dedup import CONFLICT_RULES

        distance = step.options.get("near_distance", 4)
        if not isinstance(distance, int) or not 0 <= distance <= 32:
            raise ValueError(f"{recipe.path.name}: rules.dedup.near_distance must be 0..32, got {distance!r}")
        if step.options.get("conflicts", "drop") not in CONFLICT_RULES:
            raise ValueError(
                f"{recipe.path.name}: rules.dedup.conflicts {step.options['conflicts']!r}; valid: {', '.join(CONFLICT_RULES)}"
            )

    def expected(self, step: Step, recipe: Recipe) -> str:
        return "drops exact and near duplicates (keeps one copy per group; test copies first)"

    def run(self, step: Step, recipe: Recipe) -> str:
        from .dedup import dedup_root

        # recorded as an uninterrupted run records it, also when it finishes the revision a killed build left
        return dedup_root(recipe.out, **dict(step.options)).text(note_resumed=False)


class BalanceStep:
    def check(self, step: Step, recipe: Recipe) -> None:
        from .dedup import BALANCE_LEVELS

        if step.options.get("by", "split") not in BALANCE_LEVELS:
            raise ValueError(
                f"{recipe.path.name}: rules.balance.by {step.options['by']!r}; valid: {', '.join(BALANCE_LEVELS)}"
            )

    def expected(self, step: Step, recipe: Recipe) -> str:
        return f"as many targets as pairs per concept x {step.options.get('by', 'split')}"

    def run(self, step: Step, recipe: Recipe) -> str:
        from .dedup import balance_root

        return balance_root(recipe.out, **dict(step.options)).text(note_resumed=False)


class ValidateStep:
    def check(self, step: Step, recipe: Recipe) -> None:
        pass

    def expected(self, step: Step, recipe: Recipe) -> str:
        return "checks every shard; reports duplicates and leakage"

    def run(self, step: Step, recipe: Recipe) -> str:
        from .duplicates import find_duplicates
        from .validate import validate_root

        problems = validate_root(recipe.out)
        if problems:
            listed = "; ".join(problems[:5])
            raise ValueError(f"{recipe.out} does not validate ({len(problems)} problem(s)): {listed}")
        return "valid; " + find_duplicates(recipe.out).lines()[0]


class InfoStep:
    def check(self, step: Step, recipe: Recipe) -> None:
        pass

    def expected(self, step: Step, recipe: Recipe) -> str:
        return "counts per concept x split x source x label"

    def run(self, step: Step, recipe: Recipe) -> str:
        from .info import count_samples, format_counts

        return format_counts(count_samples(recipe.out))


DATA_HANDLERS: dict[str, StepHandler] = {
    "folder": IngestStep(),
    "hf_dataset": IngestStep(),
    "urls": UrlsStep(),
    "dedup": DedupStep(),
    "balance": BalanceStep(),
    "validate": ValidateStep(),
    "info": InfoStep(),
}


# ---------------------------------------------------------------- planning and running


@dataclass
class PlannedStep:
    step: Step
    done: bool
    expected: str


def _handler(handlers: Mapping[str, StepHandler], step: Step) -> StepHandler:
    try:
        return handlers[step.kind]
    except KeyError:
        raise ValueError(f"no handler for step kind {step.kind!r}; known: {', '.join(sorted(handlers))}") from None


def check_recipe(recipe: Recipe, handlers: Mapping[str, StepHandler]) -> None:
    """Every step's check, then the root's (another dataset, a file): nothing is written."""
    for step in recipe.steps:
        _handler(handlers, step).check(step, recipe)
    concepts = [recipe.registry().get(c) for c in sorted({s.concept for s in recipe.steps if s.concept})]
    check_root(recipe.out, recipe.name, concepts)


def plan_recipe(recipe: Recipe, handlers: Mapping[str, StepHandler]) -> list[PlannedStep]:
    """The steps with what each writes and whether an earlier build already did it (for ``--dry-run``)."""
    check_recipe(recipe, handlers)
    done = read_state(recipe.out)["steps"] if (recipe.out / MANIFEST_NAME).exists() else {}
    return [PlannedStep(s, s.id in done, _handler(handlers, s).expected(s, recipe)) for s in recipe.steps]


def format_plan(recipe: Recipe, planned: list[PlannedStep]) -> str:
    """The plan as text: one line per step, its expected output and whether it is done."""
    lines = [f"build {recipe.name} into {recipe.out} ({len(planned)} steps, from {recipe.path})"]
    for p in planned:
        lines.append(f"  [{'done' if p.done else 'todo'}] {p.step.title()}: {p.expected}")
    return "\n".join(lines)


def run_recipe(
    recipe: Recipe, handlers: Mapping[str, StepHandler], echo: Callable[[str], None] = print
) -> list[tuple[Step, str]]:
    """Run every step not yet done, in order; each finished step is recorded, so a killed build resumes.

    Raises:
        ValueError: a step's check fails (before anything is written), or a step fails (the steps before it
            stay done).
    """
    check_recipe(recipe, handlers)
    open_root(recipe.out, name=recipe.name)
    state = read_state(recipe.out)  # the resolved recipe travels with the dataset (its last build)
    state["recipe"] = {
        "path": str(recipe.path),
        "name": recipe.name,
        "steps": [
            {"id": s.id, "kind": s.kind, "concept": s.concept, "options": dict(s.options)} for s in recipe.steps
        ],
    }
    atomic_write_json(recipe.out / STATE_NAME, state)
    results = []
    for step in recipe.steps:
        done = read_state(recipe.out)["steps"].get(step.id)
        if done is not None and step.kind not in FINAL_KINDS:
            echo(f"{step.title()}: done before ({done['summary'].splitlines()[0]})")
            continue
        echo(f"{step.title()} ...")
        summary = _handler(handlers, step).run(step, recipe)
        _mark_done(recipe.out, step, summary)
        echo(f"{step.title()}: {summary}")
        results.append((step, summary))
    manifest = read_manifest(recipe.out)
    logger.info("built %s: %d shards", recipe.out, len(manifest["shards"]))
    return results
