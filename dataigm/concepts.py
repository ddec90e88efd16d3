"""The concept registry: built-in concepts plus the user's own YAML files, as frozen dataclasses.

Built-in concepts live in ``dataigm/builtin_concepts/*.yaml``. Users add concepts without code by pointing
``--concepts-dir`` or the ``DATAIGM_CONCEPTS_DIR`` environment variable (several folders separated by
``os.pathsep``) at folders of YAML files in the same format.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

import yaml

from .safe_yaml import load_yaml
from .taxonomy import BINDINGS, EXPECTED_OUTPUTS, parse_category

CONCEPTS_DIR_ENV = "DATAIGM_CONCEPTS_DIR"
_BUILTIN_DIR = Path(__file__).parent / "builtin_concepts"
_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Concept:
    """A concept to unlearn and to judge.

    Attributes:
        id: ``snake_case`` identifier, no dots (it appears in shard paths and sample keys).
        name: display name.
        category: CatIGMU leaf path, e.g. ``local/concrete/entity``.
        binding: ``strong`` or ``weak`` (how tightly the concept binds to its carrier), or None.
        targets: words and phrases that name the concept in a prompt; the first is used in templates.
        target_class: class name of images that show the concept (``cls`` = 1).
        pair_class: class name of images that do not (``cls`` = 0).
        subthemes: prompt sub-themes.
        remove_words: the P̂-1 rule: words removed from a prompt to make it target-free.
        replacements: the P̂-2 replacement concepts, as phrases.
        expected_output: what an unlearned model should draw (CatIGMU Table 4).
        human: whether the concept is carried by people (evaluation reports a person rate).
        content_warning: whether its images need a warning and gated access (cards say so).
        description: one line for cards and ``dataigm concepts show``.
    """

    id: str
    name: str
    category: str
    target_class: str
    pair_class: str
    targets: tuple[str, ...]
    binding: str | None = None
    subthemes: tuple[str, ...] = ()
    remove_words: tuple[str, ...] = ()
    replacements: tuple[str, ...] = ()
    expected_output: str = "remove"
    human: bool = False
    content_warning: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not _ID_RE.match(self.id):
            raise ValueError(f"Concept id {self.id!r} must be snake_case (a-z, 0-9, _), starting with a letter")
        parse_category(self.category)
        if self.binding is not None and self.binding not in BINDINGS:
            raise ValueError(f"Concept {self.id!r}: unknown binding {self.binding!r}; valid: {', '.join(BINDINGS)}")
        if self.expected_output not in EXPECTED_OUTPUTS:
            raise ValueError(
                f"Concept {self.id!r}: unknown expected_output {self.expected_output!r}; "
                f"valid: {', '.join(EXPECTED_OUTPUTS)}"
            )
        if not self.targets:
            raise ValueError(f"Concept {self.id!r}: 'targets' must name at least one word or phrase")
        if self.target_class == self.pair_class:
            raise ValueError(f"Concept {self.id!r}: target_class and pair_class are both {self.target_class!r}")
        for sub in self.subthemes:
            if not _ID_RE.match(sub):
                raise ValueError(f"Concept {self.id!r}: sub-theme {sub!r} must be snake_case")

    @property
    def class_names(self) -> tuple[str, str]:
        """ClassLabel names in label order: index 0 is the pair class, 1 the target class."""
        return (self.pair_class, self.target_class)

    @property
    def task(self) -> str:
        return self.category.rsplit("/", 1)[1]

    def to_dict(self) -> dict:
        """A JSON/YAML-ready snapshot (lists instead of tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> Concept:
        """Build a concept from a mapping, naming ``source`` and the valid keys on a bad key."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"{source}: unknown concept key(s) {unknown}; valid keys: {', '.join(valid)}")
        missing = [m for m in ("id", "name", "category", "target_class", "pair_class", "targets") if m not in data]
        if missing:
            raise ValueError(f"{source}: concept is missing required key(s) {missing}")
        tuple_fields = {f.name for f in fields(cls) if f.type.startswith("tuple")}
        kwargs = {}
        for key, value in data.items():
            if key in tuple_fields:
                value = (value,) if isinstance(value, str) else tuple(value or ())  # `targets: ocean` is one target
            kwargs[key] = value
        try:
            return cls(**kwargs)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None


class ConceptRegistry:
    """An ordered, read-only collection of concepts, looked up by id."""

    def __init__(self, concepts: Iterable[Concept]):
        self._concepts: dict[str, Concept] = {}
        for concept in concepts:
            if concept.id in self._concepts:
                raise ValueError(f"Concept id {concept.id!r} is defined twice")
            self._concepts[concept.id] = concept

    def __iter__(self) -> Iterator[Concept]:
        return iter(self._concepts.values())

    def __len__(self) -> int:
        return len(self._concepts)

    def __contains__(self, concept_id: object) -> bool:
        return concept_id in self._concepts

    def ids(self) -> list[str]:
        return list(self._concepts)

    def get(self, concept_id: str) -> Concept:
        """Return the concept ``concept_id``; an unknown id raises with the list of known ones."""
        try:
            return self._concepts[concept_id]
        except KeyError:
            raise ValueError(f"Unknown concept {concept_id!r}; known concepts: {', '.join(self.ids())}") from None

    def by_category(self) -> dict[str, list[Concept]]:
        out: dict[str, list[Concept]] = {}
        for concept in self:
            out.setdefault(concept.category, []).append(concept)
        return out


def _yaml_problem(err: yaml.YAMLError) -> str:
    """``line L, column C: problem`` of a YAML error, on one line."""
    mark, context = getattr(err, "problem_mark", None), getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    text = f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem
    if context is not None and getattr(err, "context", None):
        text += f" ({err.context} started at line {context.line + 1}, column {context.column + 1})"
    return text


def _read_concept_file(path: Path) -> list[Concept]:
    try:
        with open(path, encoding="utf-8") as f:
            data = load_yaml(f, str(path))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    items = data.get("concepts", data) if isinstance(data, dict) else data
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError(f"{path}: expected one concept mapping, a list of them, or 'concepts: [...]'")
    return [Concept.from_dict(item, source=str(path)) for item in items]


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ValueError(f"Concepts folder {str(folder)!r} does not exist or is not a folder")
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def split_dirs(value: str | None) -> list[str]:
    """The folders of a ``concepts_dir`` value: several joined with ``os.pathsep`` (``:``, ``;`` on Windows)."""
    return [d for d in (value or "").split(os.pathsep) if d]


def concept_dirs_from_env() -> list[Path]:
    return [Path(p) for p in split_dirs(os.environ.get(CONCEPTS_DIR_ENV))]


@lru_cache(maxsize=8)
def _load(dirs: tuple[str, ...]) -> ConceptRegistry:
    concepts: list[Concept] = []
    where: dict[str, Path] = {}
    for folder in (_BUILTIN_DIR, *map(Path, dirs)):
        for path in _yaml_files(folder):
            for concept in _read_concept_file(path):
                if concept.id in where:
                    raise ValueError(f"Concept {concept.id!r} is defined in both {where[concept.id]} and {path}")
                where[concept.id] = path
                concepts.append(concept)
    return ConceptRegistry(concepts)


def load_registry(concepts_dirs: Sequence[str | os.PathLike] | None = None) -> ConceptRegistry:
    """Built-in concepts, then those in ``concepts_dirs`` and in ``$DATAIGM_CONCEPTS_DIR`` (cached)."""
    dirs = [str(Path(d).resolve()) for d in (*(concepts_dirs or []), *concept_dirs_from_env())]
    return _load(tuple(dict.fromkeys(dirs)))  # a folder named twice (flag and environment) is read once


def get_concept(concept_id: str, concepts_dirs: Sequence[str | os.PathLike] | None = None) -> Concept:
    """Shortcut for ``load_registry(concepts_dirs).get(concept_id)``."""
    return load_registry(concepts_dirs).get(concept_id)
