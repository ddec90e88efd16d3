"""``dataigm ingest FOLDER``: a folder of labelled images, planned into ingest items and written by
:func:`dataigm.ingest.ingest`.

Every image under the folder is labelled before anything is written, from one ``--label``, the IGMU demo layout
``[<Task>/]<split>/<class>/<PREFIX>_name.ext``, or class sub-folders; the options are :class:`FolderSource`'s.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..concepts import Concept, ConceptRegistry, load_registry
from ..ingest import IngestReport, ingest
from ..layout import check_split
from ..manifest import DEFAULT_NAME
from ..prompt_import import IGMU_TASKS
from ..prompts import slug
from ..schema import SOURCES
from .config import FolderSource
from .items import IngestItem, SkippedInput, class_map, label_of

LINK_OUTSIDE = "symbolic link leaving the folder"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# File-name prefixes of the IGMU demo layout <Task>/<split>/<class>/ and the source each stands for.
SOURCE_PREFIXES = {"REAL_": "real", "LAION_": "laion", "SD-GEN_": "generated"}


# Prefixes of the IGMU task folders (Object_Church, Style_VanGogh, Nudity): the task kind, then the concept.
TASK_PREFIXES = ("object_", "style_", "nudity_")


def resolve_task(name: str, registry: ConceptRegistry) -> Concept:
    """The concept a task folder stands for, ignoring case, separators and an ``Object_``/``Style_``/``Nudity_``
    prefix: ``Object_Church`` -> church, ``Style_VanGogh`` -> van_gogh, ``Nudity`` -> nudity."""
    base = slug(name)
    candidates = [base] + [base[len(p) :] for p in TASK_PREFIXES if base.startswith(p) and len(base) > len(p)]
    if base in IGMU_TASKS:
        return registry.get(IGMU_TASKS[base])
    for candidate in candidates:
        squash = candidate.replace("_", "")
        for concept in registry:
            if squash in (concept.id.replace("_", ""), slug(concept.name).replace("_", "")):
                return concept
    raise ValueError(
        f"Task folder {name!r} matches no concept; known concepts: {', '.join(registry.ids())} (folder names are "
        f"matched ignoring case and a {'/'.join(p.capitalize() for p in TASK_PREFIXES)} prefix; or pass --concept)"
    )


# ---------------------------------------------------------------- planning a folder


def _reader(path: Path, folder: Path) -> Callable[[], bytes]:
    return functools.partial(_read_inside, path, folder.resolve())


def _read_inside(path: Path, folder: Path) -> bytes:
    """The bytes of ``path`` if it lies inside ``folder`` once links are resolved (checked when read, so a link
    changed after planning is caught too).

    Raises:
        SkippedInput: a symbolic link that leaves the folder (it is not followed).
    """
    if not path.resolve().is_relative_to(folder):
        raise SkippedInput(LINK_OUTSIDE)
    return path.read_bytes()


def plan_folder(
    folder: str | Path,
    concept: str | None = None,
    split: str | None = None,
    source: str | None = None,
    label: str | None = None,
    class_names: dict[str, str] | None = None,
    registry: ConceptRegistry | None = None,
) -> tuple[list[IngestItem], list[str]]:
    """Label every image under ``folder``; returns the items and the non-image files ignored.

    Layouts, tried in this order:

    * one ``label`` for the whole folder (an explicit label wins over the IGMU prefixes below, which then only
      give each file's source unless ``source`` is given);
    * the IGMU demo layout ``[<Task>/]<split>/<class>/<PREFIX>_name.ext`` with ``REAL_``, ``LAION_`` or
      ``SD-GEN_`` prefixes (source from the prefix, split and class from the folders);
    * class sub-folders ``<class>/...`` named by the concept's class names.

    Symbolic links: a link to a file inside ``folder`` is read like that file; a link that leaves ``folder`` is
    never followed: it is skipped and counted as "symbolic link leaving the folder" (in the shard's sidecar, like
    an unreadable file). Linked directories are never descended into.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"Input folder {str(folder)!r} does not exist")
    registry = registry or load_registry()
    if source is not None and source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; valid sources: {', '.join(SOURCES)}")
    if split is not None:
        check_split(split, "--split")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    ignored = [p.relative_to(folder).as_posix() for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if not images:
        raise ValueError(
            f"Input folder {str(folder)!r} holds no image files (looked for {', '.join(IMAGE_SUFFIXES)}; "
            f"{len(ignored)} other file(s))"
        )
    fixed_concept = registry.get(concept) if concept else None
    if label is None and any(p.name.startswith(tuple(SOURCE_PREFIXES)) for p in images):
        items = _plan_igmu_layout(folder, images, fixed_concept, source, class_names, registry)
        return items, ignored
    _refuse_benchmarking_layout(folder, images)
    if fixed_concept is None:
        raise ValueError("--concept is required unless the folder uses the IGMU layout <Task>/<split>/<class>/")
    mapping = class_map(fixed_concept, class_names)
    items = []
    for path in images:
        rel = path.relative_to(folder)
        prefix = next((p for p in SOURCE_PREFIXES if path.name.startswith(p)), None)
        item_source = source or (SOURCE_PREFIXES[prefix] if prefix else "real")
        if label is not None:
            item_label = label_of(label, fixed_concept, mapping, "--label")
        elif len(rel.parts) < 2:
            raise ValueError(
                f"{rel} is not inside a class sub-folder; use sub-folders named "
                f"{fixed_concept.target_class!r}/{fixed_concept.pair_class!r} or pass --label"
            )
        else:
            item_label = label_of(rel.parts[0], fixed_concept, mapping, f"folder {rel.parts[0]!r}")
        items.append(
            IngestItem(
                fixed_concept.id, split or "train", item_source, item_label, rel.as_posix(), _reader(path, folder)
            )
        )
    return items, ignored


# Folders of the IGMU benchmarking layout <Task>/{forgot,remove_word,unrelated}/<Method>/...: images to evaluate.
_BENCHMARK_FOLDERS = {"forgot", "remove_word", "unrelated"}


def _refuse_benchmarking_layout(folder: Path, images: list[Path]) -> None:
    for path in images:
        dirs = path.relative_to(folder).parts[:-1]
        if len(dirs) >= 3 and dirs[1].lower() in _BENCHMARK_FOLDERS:
            raise ValueError(
                f"{str(folder)!r} is in the IGMU benchmarking layout <Task>/forgot|remove_word|unrelated/<Method>/ "
                f"(e.g. {path.relative_to(folder).as_posix()}): images of models to evaluate, not labelled images "
                f"to ingest. Evaluate them with `dataigm evaluate --paper-layout {folder}`"
            )


def _plan_igmu_layout(folder, images, fixed_concept, source, class_names, registry) -> list[IngestItem]:
    items = []
    for path in images:
        rel = path.relative_to(folder)
        dirs = rel.parts[:-1]
        if len(dirs) == 3:
            concept = fixed_concept or resolve_task(dirs[0], registry)
        elif len(dirs) == 2 and fixed_concept is not None:
            concept = fixed_concept
        else:
            raise ValueError(
                f"{rel}: expected <Task>/<split>/<class>/<file> (or <split>/<class>/<file> with --concept)"
            )
        prefix = next((p for p in SOURCE_PREFIXES if path.name.startswith(p)), None)
        item_source = SOURCE_PREFIXES[prefix] if prefix else source
        if item_source is None:
            raise ValueError(f"{rel}: no source prefix ({', '.join(SOURCE_PREFIXES)}); pass --source for such files")
        label = label_of(dirs[-1], concept, class_map(concept, class_names), f"{rel}")
        split = check_split(slug(dirs[-2]), f"{rel}: split folder {dirs[-2]!r} gives split")
        items.append(IngestItem(concept.id, split, item_source, label, rel.as_posix(), _reader(path, folder)))
    return items


def plan_folder_source(
    source: FolderSource, registry: ConceptRegistry | None = None
) -> tuple[list[IngestItem], list[str]]:
    """:func:`plan_folder` with the options of ``source``."""
    return plan_folder(
        source.folder, source.concept, source.split, source.source, source.label, source.class_names(), registry
    )


def planned_per_class(items: Sequence[IngestItem]) -> dict[str, dict[str, int]]:
    """The planned images per ``concept/split/source`` and class, as a folder job records them."""
    planned: dict[str, dict[str, int]] = {}
    for item in items:
        by_label = planned.setdefault(item.group, {})
        by_label[item.label] = by_label.get(item.label, 0) + 1
    return planned


def ingest_folder_source(
    source: FolderSource,
    root: str | os.PathLike,
    *,
    name: str = DEFAULT_NAME,
    registry: ConceptRegistry | None = None,
    progress: bool = True,
    where: str | None = None,
) -> IngestReport:
    """Plan ``source`` with :func:`plan_folder` and write it with :func:`dataigm.ingest.ingest`; the job records
    the source's options (the folder by its name) with the planned images per concept, split, source and class,
    which the dataset card lists.

    Raises:
        ValueError: what :func:`plan_folder` and :func:`dataigm.ingest.ingest` refuse; nothing is written then.
    """
    source.check()
    items, ignored = plan_folder_source(source, registry)
    config = source.recorded(planned=planned_per_class(items), ignored_files=len(ignored))
    report = ingest(
        items,
        root,
        **source.write_options(),
        name=name,
        registry=registry,
        progress=progress,
        where=where or str(source.folder),
        config=config,
    )
    report.ignored_files = ignored
    return report


def ingest_folder(
    folder: str | os.PathLike,
    root: str | os.PathLike,
    *,
    class_names: dict[str, str] | None = None,
    name: str = DEFAULT_NAME,
    registry: ConceptRegistry | None = None,
    progress: bool = True,
    **options,
) -> IngestReport:
    """:func:`ingest_folder_source` of ``folder``: ``options`` are :class:`FolderSource`'s fields (``concept``,
    ``split``, ``source``, ``label``, ``samples_per_shard``, ...), ``class_names`` its parsed ``class_map``."""
    source = FolderSource(folder=str(folder), class_map=class_names or None, **options)
    return ingest_folder_source(source, root, name=name, registry=registry, progress=progress)
