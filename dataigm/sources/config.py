"""The options of each ingest source, one dataclass each: a folder (:class:`FolderSource`), a Hugging Face dataset
(:class:`HubSource`) and a URL list (:class:`UrlListSource`).

Each class is the one statement of its source's options: ``dataigm ingest`` makes its flags from the fields (help
from the ``Attributes:`` docstrings, :mod:`dataigm.cli.options`), a recipe step accepts exactly the fields as keys
(:mod:`dataigm.recipe`), and the job records the fields as its configuration (:meth:`SourceConfig.recorded`), which
the dataset card lists. Light: importing it loads neither pandas nor datasets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..schema import SOURCES
from .captions import parse_words
from .items import parse_class_map

SAMPLES_PER_SHARD = 1000  # images per shard of every ingest, unless asked otherwise
OUTPUT_FORMATS = ("png", "jpg", "webp")
WRITE_KEYS = ("samples_per_shard", "resize", "image_format", "license", "max_pixels")


def check_write_options(
    samples_per_shard: int, resize: int | None, image_format: str | None, max_pixels: int | None
) -> None:
    """Raise a one-line ``ValueError`` for the first bad option of how images are written."""
    if samples_per_shard < 1:
        raise ValueError(f"--samples-per-shard must be at least 1, got {samples_per_shard}")
    if image_format is not None and image_format not in OUTPUT_FORMATS:
        raise ValueError(f"Unknown image format {image_format!r}; valid: {', '.join(OUTPUT_FORMATS)}")
    if resize is not None and resize < 1:
        raise ValueError(f"--resize must be a positive size in pixels, got {resize}")
    check_max_pixels(max_pixels)


def check_max_pixels(max_pixels: int | None) -> None:
    """Raise a ``ValueError`` for a ``--max-pixels`` below 1."""
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"--max-pixels must be at least 1, got {max_pixels}")


@dataclass(kw_only=True)
class SourceConfig:
    """What every source takes: the concept its images are labelled for, their split, and how they are written.

    Attributes:
        concept: concept id (read from <Task> folders otherwise)
        split: split name (default: train, or from folders, or from --hf-split)
        samples_per_shard: images per tar shard
        resize: re-encode with the shorter side at this size
        image_format: re-encode every image to this format
        license: license recorded in every sample (with --urls: where the LICENSE column has none)
        max_pixels: an image with more pixels (width x height) is skipped and counted as "too many pixels", read
            from its header before it is decoded (default: Pillow's decompression-bomb limit, 89478485)
    """

    KIND: ClassVar[str] = ""  # the recorded ``ingest`` value and the recipe step's kind
    INPUT: ClassVar[str] = ""  # the field naming what is read
    # recorded besides the fields: what planning found, and the recipe step that ran it
    RESULTS: ClassVar[tuple[str, ...]] = ("recipe_step",)

    concept: str | None = None
    split: str | None = None
    samples_per_shard: int = SAMPLES_PER_SHARD
    resize: int | None = None
    image_format: Literal[OUTPUT_FORMATS] | None = None
    license: str | None = None
    max_pixels: int | None = None

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The option names: the input first, then what is read and how it is labelled, then how it is written."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != cls.INPUT and f.name not in WRITE_KEYS]
        return (cls.INPUT, *names, *WRITE_KEYS)

    def check(self) -> None:
        """Raise a one-line ``ValueError`` for a missing input or a bad writing option."""
        if getattr(self, self.INPUT) is None:
            raise ValueError(f"a {self.KIND} source needs {self.INPUT!r}")
        check_write_options(self.samples_per_shard, self.resize, self.image_format, self.max_pixels)

    def write_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`dataigm.ingest.ingest` that say how images are written."""
        return {k: getattr(self, k) for k in WRITE_KEYS}

    def recorded(self, **values: Any) -> dict[str, Any]:
        """The job's configuration: ``ingest`` (the kind), every field, and ``values`` (resolved fields, or the
        class's :attr:`RESULTS`).

        Raises:
            TypeError: a value that is neither a field nor a result (a bug of the caller).
        """
        unknown = sorted(set(values) - set(self.keys()) - set(self.RESULTS))
        if unknown:
            raise TypeError(f"{type(self).__name__} records no {unknown[0]!r}")
        return {"ingest": self.KIND, **{k: self._recorded(k) for k in self.keys()}, **values}

    def _recorded(self, name: str) -> Any:
        return getattr(self, name)


@dataclass(kw_only=True)
class LabelledSource(SourceConfig):
    """A source whose labels come from its folders or columns (a folder, a Hub dataset).

    Attributes:
        source: image source (default: real; laion for --urls)
        label: one label for every image: a class name, target or pair
        class_map: class names or integer labels to target/pair, e.g. nsfw=target,sfw=pair or 497=target,281,404=pair
    """

    source: Literal[SOURCES] | None = None
    label: str | None = None
    class_map: str | dict[str, str] | None = None

    def class_names(self) -> dict[str, str]:
        """``class_map`` as a mapping (a recipe may give one; a flag gives ``NAME=LABEL,...``)."""
        if isinstance(self.class_map, Mapping):
            return {str(k): str(v) for k, v in self.class_map.items()}
        return parse_class_map(self.class_map)

    def _recorded(self, name: str) -> Any:
        return self.class_names() if name == "class_map" else super()._recorded(name)


@dataclass(kw_only=True)
class FolderSource(LabelledSource):
    """A folder of images (``dataigm ingest FOLDER``, a recipe's ``folder`` step).

    Attributes:
        folder: folder of images (or use --urls or --hf-dataset)
    """

    KIND: ClassVar[str] = "folder"
    INPUT: ClassVar[str] = "folder"
    RESULTS: ClassVar[tuple[str, ...]] = ("planned", "ignored_files", "recipe_step")

    folder: str | None = None

    def _recorded(self, name: str) -> Any:
        # by its name only: a card carries no local paths
        return Path(self.folder).name if name == "folder" else super()._recorded(name)


@dataclass(kw_only=True)
class RowSelection:
    """How rows of a table are chosen (a URL list, a dataset's columns).

    Attributes:
        where: keep only rows where this holds, on the URL list's or dataset's columns: column names, constants,
            comparisons, and/or/not, in [list], + - * / // %, contains/startswith/endswith(column, 'text',
            case=False), isnull/notnull(column); nothing else (no attributes, no other calls). E.g.
            "punsafe < 0.1 and similarity > 0.3" or "label in [497, 701]"
        max_per_class: keep at most this many rows per class (the first ones)
    """

    where: str | None = None
    max_per_class: int | None = None


@dataclass(kw_only=True)
class HubSource(LabelledSource, RowSelection):
    """A Hugging Face dataset, streamed (``dataigm ingest --hf-dataset``, a recipe's ``hf_dataset`` step).

    Attributes:
        hf_dataset: Hugging Face dataset name or local folder, streamed
        hf_config: its config name
        hf_split: its split to read
        image_column: its image column
        label_column: its label column
    """

    KIND: ClassVar[str] = "hf_dataset"
    INPUT: ClassVar[str] = "hf_dataset"

    hf_dataset: str | None = None
    hf_config: str | None = None
    hf_split: str = "train"
    image_column: str = "image"
    label_column: str = "label"

    def _recorded(self, name: str) -> Any:
        return (self.source or "real") if name == "source" else super()._recorded(name)


@dataclass(kw_only=True)
class UrlListSource(SourceConfig, RowSelection):
    """A LAION-style URL list downloaded by img2dataset (``dataigm ingest --urls``, a recipe's ``urls`` step).

    Attributes:
        urls: URL list to download (parquet, CSV or JSONL in LAION's layout: url/URL, caption/TEXT, other columns
            kept); captions naming the concept's target words are target, those naming a pair word are pair
        pair_words: with --urls: comma-separated words that make a caption pair (default: the concept's
            replacement concepts; none: every caption without a target word)
        url_column: with --urls: the URL column (default: url or URL)
        caption_column: with --urls: the caption column (default: caption, TEXT or text)
        processes: with --urls: img2dataset download processes
        threads: with --urls: img2dataset download threads per process
        timeout: with --urls: seconds before a URL is given up
        retries: with --urls: extra attempts per failed URL
        allow_private_addresses: with --urls: also download from localhost and loopback, link-local (cloud
            metadata), private and other non-public IP addresses (refused by default; file: and other non-http(s)
            URLs are always refused)
        img2dataset: with --urls: the img2dataset command (default: $DATAIGM_IMG2DATASET, img2dataset on PATH, or
            the environment `make install` creates in .venv/img2dataset)
    """

    KIND: ClassVar[str] = "urls"
    INPUT: ClassVar[str] = "urls"
    RESULTS: ClassVar[tuple[str, ...]] = ("selection", "recipe_step")

    urls: str | None = None
    pair_words: str | list[str] | None = None
    url_column: str | None = None
    caption_column: str | None = None
    processes: int = 2
    threads: int = 32
    timeout: int = 10
    retries: int = 1
    allow_private_addresses: bool = False
    img2dataset: str | None = None

    def words(self) -> tuple[str, ...] | None:
        """``pair_words`` as words (a recipe may give a list; a flag gives ``a,b``)."""
        if self.pair_words is None or isinstance(self.pair_words, str):
            return parse_words(self.pair_words)
        return tuple(str(w) for w in self.pair_words)

    def _recorded(self, name: str) -> Any:
        if name == "pair_words":
            words = self.words()
            return None if words is None else list(words)
        if name == "split":
            return self.split or "train"
        return super()._recorded(name)


# In the order ``dataigm ingest`` lists their options.
SOURCE_CONFIGS: dict[str, type[SourceConfig]] = {c.KIND: c for c in (FolderSource, HubSource, UrlListSource)}
