"""``dataigm ingest --hf-dataset``: a Hugging Face dataset, streamed, into shards of a root.

The dataset is read with ``streaming=True`` twice, never loaded whole: the first pass reads the columns other than
the image (only those, for parquet datasets) to choose rows (``--where``), label them (the label column through
``--class-map``) and cap each class (``--max-per-class``; the pass stops once every class is full); the second
pass reads the images of the chosen rows in order while the shard job writes them. Memory and disk stay bounded
by one batch and one shard, so ImageNet-1k or WikiArt sized datasets work.

A dataset is third-party data: a row whose image has no bytes but a file ``path`` is read only when that file lies
inside the local dataset's own folder; a path elsewhere (``/home/you/.ssh/...``), or any path of a Hub dataset, is
skipped and counted as "image path outside the dataset's folder", never opened.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..concepts import ConceptRegistry, load_registry
from ..ingest import IngestReport, ingest
from ..layout import check_split
from ..manifest import DEFAULT_NAME
from ..prompts import slug
from ..schema import SOURCES
from .config import HubSource
from .counts import write_job_counts
from .items import IngestItem, SkippedInput, class_map
from .where import check_where, parse_where

BATCH = 1000  # rows per batch of the selection pass
PATH_OUTSIDE = "image path outside the dataset's folder"  # a row with no bytes whose file we do not read
# label_source of every row: its label column (through --class-map) or --label, the user's word for the whole set
DATASET_LABEL = "dataset"


@dataclass
class HubPlan:
    """The chosen rows of a streamed dataset as ingest items, and how they were chosen."""

    items: list
    counts: dict = field(default_factory=dict)


def _load_stream(name: str, config: str | None, split: str, **kwargs):
    from datasets import load_dataset
    from datasets.exceptions import DatasetNotFoundError

    try:
        return load_dataset(name, config, split=split, streaming=True, **kwargs)
    except DatasetNotFoundError as err:
        raise ValueError(f"--hf-dataset {name!r}: no such dataset, or no access to it ({err})") from None
    except ConnectionError as err:  # datasets says "Couldn't reach ... on the Hub"; the CLI adds the offline hint
        raise ConnectionError(f"--hf-dataset {name!r} is not a local folder and the Hub is needed for it") from err


def _metadata_stream(name: str, config: str | None, split: str, columns: list[str], full):
    """The stream of ``columns`` only: parquet datasets read just those columns, others drop the rest."""
    try:
        return _load_stream(name, config, split, columns=columns)
    except (ValueError, TypeError):  # a builder without a ``columns`` option
        return full.select_columns(columns)


class StreamCursor:
    """Reads image bytes of rows of a streamed dataset in row order, streaming it again only to go back."""

    def __init__(self, name: str, config: str | None, split: str, image_column: str):
        self.name, self.config, self.split, self.image_column = name, config, split, image_column
        # the only folder an image given by path may be read from: a local dataset's own; none for a Hub dataset
        self.folder = Path(name).resolve() if Path(name).is_dir() else None
        self._rows: Iterator | None = None
        self._position = -1  # index of the last row taken from the stream
        self._last: tuple[int, bytes] | None = None
        self.restarts = 0  # streams opened: 1 when every read goes forward

    def _restart(self) -> None:
        from datasets import Image

        stream = _load_stream(self.name, self.config, self.split)
        stream = stream.cast_column(self.image_column, Image(decode=False)).select_columns([self.image_column])
        self._rows, self._position = iter(stream), -1
        self.restarts += 1

    def read(self, index: int) -> bytes:
        """The stored bytes of row ``index``'s image."""
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        if self._rows is None or index <= self._position:
            self._restart()
        row = None
        while self._position < index:
            try:
                row = next(self._rows)
            except StopIteration:
                raise ValueError(f"--hf-dataset {self.name!r} has no row {index} any more (it changed?)") from None
            self._position += 1
        image = row[self.image_column] or {}
        if image.get("bytes") is not None:
            data = image["bytes"]
        elif image.get("path"):
            data = self._read_path(image["path"])
        else:
            raise FileNotFoundError(f"row {index} has no image")
        self._last = (index, data)
        return data

    def _read_path(self, path: str) -> bytes:
        """The file a row names instead of bytes, if it lies inside the local dataset's folder (links resolved; a
        relative path is taken from that folder). Any other path, and any path of a Hub dataset, is not read.

        Raises:
            SkippedInput: "image path outside the dataset's folder".
        """
        if self.folder is not None and "://" not in path and "::" not in path:
            target = (self.folder / path).resolve()  # an absolute path stays itself
            if target.is_relative_to(self.folder):
                return target.read_bytes()
        raise SkippedInput(PATH_OUTSIDE)

    def reader(self, index: int) -> Callable[[], bytes]:
        """A reader of row ``index`` (``reader.func.__self__`` is this cursor)."""
        return functools.partial(self.read, index)


_MISSING = "?"  # a label value the default class names do not know


def _label_lookup(feature, class_names: dict[str, str], defaults: dict[str, str], name: str, column: str):
    """value -> ``target``/``pair``, None (not selected) or :data:`_MISSING`; a class map naming a class the
    dataset lacks raises."""
    from datasets import ClassLabel

    is_class_label = isinstance(feature, ClassLabel)
    if not class_names:
        if is_class_label:
            return lambda v: defaults.get(feature.int2str(int(v)).lower(), _MISSING)
        return lambda v: defaults.get(str(v).lower(), _MISSING)
    for label in class_names.values():
        if label not in ("target", "pair"):
            raise ValueError(f"--class-map: label {label!r} must be target or pair")
    if not is_class_label:
        lowered = {k.lower(): v for k, v in class_names.items()}
        return lambda v: lowered.get(str(v).lower())
    by_id: dict[int, str] = {}
    for key, label in class_names.items():
        if key.lstrip("-").isdigit():
            number = int(key)
            if not 0 <= number < feature.num_classes:
                raise ValueError(
                    f"--class-map names label {number}, but {name!r} column {column!r} has labels "
                    f"0..{feature.num_classes - 1}"
                )
        elif key in feature.names:
            number = feature.str2int(key)
        else:
            shown = ", ".join(feature.names[:10]) + (", ..." if feature.num_classes > 10 else "")
            raise ValueError(
                f"--class-map names class {key!r}, which {name!r} column {column!r} does not have; "
                f"its classes: {shown} (or their numbers 0..{feature.num_classes - 1})"
            )
        by_id[number] = label
    return lambda v: by_id.get(int(v))


def plan_hf_stream(
    name: str,
    concept: str,
    image_column: str = "image",
    label_column: str | None = "label",
    label: str | None = None,
    hf_config: str | None = None,
    hf_split: str = "train",
    split: str | None = None,
    source: str = "real",
    class_names: dict[str, str] | None = None,
    where: str | None = None,
    max_per_class: int | None = None,
    registry: ConceptRegistry | None = None,
) -> HubPlan:
    """Choose and label the rows of a streamed Hugging Face dataset (Hub name or local folder).

    Args:
        name: Hub dataset id or local folder.
        concept: the concept the rows are labelled for.
        image_column: the column holding the images (their stored bytes are kept).
        label_column: the column labels come from (``--class-map`` maps its values; without a map, values that
            name the concept's classes, ``target``/``pair`` or ``1``/``0`` are understood and any other raises).
        label: one label for every row instead of a label column.
        hf_config: the dataset's config name.
        hf_split: the dataset's split to read.
        split: our split (default: ``hf_split``).
        source: our source (``real`` for photos and art).
        class_names: the parsed ``--class-map`` (:func:`dataigm.sources.items.parse_class_map`); rows whose label it does not name are
            left out. Keys are integer labels or ClassLabel names; a key the dataset lacks raises.
        where: a condition on any non-image column (:mod:`dataigm.sources.where`'s grammar), e.g. ``label in [497, 701]``.
        max_per_class: keep at most this many rows per label (the first ones); the pass stops when all are full.
        registry: the concept registry.

    Raises:
        ValueError: a missing column (naming those that exist), a bad ``where``, a bad class map, an unknown label.
    """
    import pandas as pd
    from datasets import ClassLabel

    check_where(where)  # before the dataset is opened: a bad expression is refused first
    registry = registry or load_registry()
    target = registry.get(concept)
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; valid sources: {', '.join(SOURCES)}")
    our_split = split or slug(hf_split)
    check_split(our_split, "--split" if split else f"--hf-split {hf_split!r} gives split")
    if max_per_class is not None and max_per_class < 1:
        raise ValueError(f"--max-per-class must be at least 1, got {max_per_class}")
    if not Path(name).exists() and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise ValueError(f"--hf-dataset {name!r}: no such local folder (a Hub dataset is named ORG/NAME)")
    full = _load_stream(name, hf_config, hf_split)
    features = full.features
    columns = list(features) if features is not None else list(next(iter(full)).keys())
    if image_column not in columns:
        raise ValueError(f"Dataset {name!r} has no column {image_column!r}; columns: {', '.join(columns)}")
    if label is None and (label_column is None or label_column not in columns):
        raise ValueError(
            f"Dataset {name!r} has no label column {label_column!r}; columns: {', '.join(columns)} (or pass --label)"
        )
    if label is not None and class_names:
        raise ValueError("--label and --class-map exclude each other: --label labels every row alike")
    defaults = class_map(target)
    feature = features.get(label_column) if features is not None and label is None else None
    if label is not None:
        fixed = defaults.get(label.lower())
        if fixed is None:
            raise ValueError(
                f"--label {label!r} is not a class of concept {target.id!r}; valid: {', '.join(sorted(defaults))}"
            )
        lookup = lambda v: fixed  # noqa: E731
    else:
        lookup = _label_lookup(feature, class_names or {}, defaults, name, label_column)
    metadata_columns = [c for c in columns if c != image_column]
    stream = _metadata_stream(name, hf_config, hf_split, metadata_columns, full)
    row_filter = None
    reachable = {"target", "pair"} if not class_names else set(class_names.values())
    chosen: list[tuple[int, str]] = []
    per_class: Counter = Counter()
    seen = passed = 0
    for batch in stream.iter(batch_size=BATCH):
        frame = pd.DataFrame(batch)
        frame.index = range(seen, seen + len(frame))
        if where is not None and row_filter is None:
            row_filter = parse_where(where, frame)
        seen += len(frame)
        if row_filter is not None:
            frame = row_filter.apply(frame)
        passed += len(frame)
        values = frame[label_column] if label is None else pd.Series(label, index=frame.index)
        for index, value in values.items():
            row_label = lookup(value)
            if row_label is _MISSING:
                valid = ", ".join(sorted(defaults))
                shown = feature.int2str(int(value)) if isinstance(feature, ClassLabel) else value
                raise ValueError(
                    f"{name} row {index}: class {shown!r} is not a class of concept {target.id!r}; valid: {valid} "
                    "(or map it with --class-map NAME=target|pair)"
                )
            if row_label is None or (max_per_class is not None and per_class[row_label] >= max_per_class):
                continue
            per_class[row_label] += 1
            chosen.append((int(index), row_label))
        if max_per_class is not None and all(per_class[c] >= max_per_class for c in reachable):
            break
    if where is not None and row_filter is None:  # an empty dataset: still refuse a bad expression
        parse_where(where, pd.DataFrame({c: [] for c in metadata_columns}))
    cursor = StreamCursor(name, hf_config, hf_split, image_column)
    items = [
        IngestItem(
            target.id,
            our_split,
            source,
            row_label,
            f"hf:{name}:{hf_split}:{index}",
            cursor.reader(index),
            index,
            label_source=DATASET_LABEL,
        )
        for index, row_label in chosen
    ]
    counts = {"rows_seen": seen, "rows_after_where": passed, "rows_selected": dict(sorted(per_class.items()))}
    return HubPlan(items, counts)


def plan_hub_source(source: HubSource, registry: ConceptRegistry | None = None) -> HubPlan:
    """:func:`plan_hf_stream` with the options of ``source``."""
    return plan_hf_stream(
        source.hf_dataset,
        source.concept,
        image_column=source.image_column,
        label_column=source.label_column,
        label=source.label,
        hf_config=source.hf_config,
        hf_split=source.hf_split,
        split=source.split,
        source=source.source or "real",
        class_names=source.class_names(),
        where=source.where,
        max_per_class=source.max_per_class,
        registry=registry,
    )


def ingest_hub_source(
    source: HubSource,
    root: str | Path,
    *,
    name: str = DEFAULT_NAME,
    registry: ConceptRegistry | None = None,
    progress: bool = True,
) -> tuple[IngestReport, dict]:
    """Stream a Hugging Face dataset into ``root``: :func:`plan_hf_stream`, then :func:`dataigm.ingest.ingest`.

    The job records ``source``'s options (with the split the rows went to) as its configuration and writes its
    counts (rows seen, after ``where``, selected, written, left out by reason) to ``meta/<job>-counts.json``.

    Returns:
        ``(report, counts)``: the :class:`dataigm.ingest.IngestReport` and the job's counts.

    Raises:
        ValueError: what :func:`plan_hf_stream` and :func:`dataigm.ingest.ingest` refuse, or no row selected;
            nothing is written then.
    """
    source.check()
    plan = plan_hub_source(source, registry)
    if not plan.items:
        raise ValueError(
            f"no row of --hf-dataset {source.hf_dataset!r} is selected ({plan.counts['rows_seen']} rows, "
            f"{plan.counts['rows_after_where']} after --where); nothing was written"
        )
    report = ingest(
        plan.items,
        root,
        **source.write_options(),
        name=name,
        registry=registry,
        progress=progress,
        where=f"--hf-dataset {source.hf_dataset!r}",
        config=source.recorded(split=plan.items[0].split),
    )
    return report, write_job_counts(root, report.job_id, plan.counts)


def ingest_hf_dataset(
    dataset: str,
    root: str | Path,
    concept: str,
    *,
    class_names: dict[str, str] | None = None,
    name: str = DEFAULT_NAME,
    registry: ConceptRegistry | None = None,
    progress: bool = True,
    **options,
) -> tuple[IngestReport, dict]:
    """:func:`ingest_hub_source` of ``dataset``: ``options`` are :class:`dataigm.sources.config.HubSource`'s
    fields (``where``, ``max_per_class``, ``hf_split``, ``samples_per_shard``, ...), ``class_names`` its parsed
    ``class_map``."""
    source = HubSource(hf_dataset=str(dataset), concept=concept, class_map=class_names or None, **options)
    return ingest_hub_source(source, root, name=name, registry=registry, progress=progress)
