"""``dataigm ingest``: a folder of images, a URL list, or a Hugging Face dataset, into shards of a dataset root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..ingest import OUTPUT_FORMATS, folder_config, ingest, parse_class_map, plan_folder
from ..manifest import DEFAULT_NAME
from ..schema import SOURCES
from .card import refresh_card
from .common import ConceptsDirOption, registry_of, save_config
from .options import add_options

HELP = "add real, web or generated images (a folder, a URL list or a Hugging Face dataset) to a dataset root"


@dataclass(kw_only=True)
class IngestOptions(ConceptsDirOption):
    """The options of ``dataigm ingest``.

    Attributes:
        folder: folder of images (or use --urls or --hf-dataset)
        out: dataset root to write to (created when missing)
        concept: concept id (read from <Task> folders otherwise)
        split: split name (default: train, or from folders)
        source: image source (default: real; laion for --urls)
        label: one label for every image: a class name, target or pair
        class_map: class names or integer labels to target/pair, e.g. nsfw=target,sfw=pair or 497=target,281,404=pair
        urls: URL list to download (parquet, CSV or JSONL in LAION's layout: url/URL, caption/TEXT, other columns
            kept); captions naming the concept's target words are target, those naming a pair word are pair
        pair_words: with --urls: comma-separated words that make a caption pair (default: the concept's
            replacement concepts; none: every caption without a target word)
        url_column: with --urls: the URL column (default: url or URL)
        caption_column: with --urls: the caption column (default: caption, TEXT or text)
        where: keep only rows where this holds, on the URL list's or dataset's columns: column names, constants,
            comparisons, and/or/not, in [list], + - * / // %, contains/startswith/endswith(column, 'text',
            case=False), isnull/notnull(column); nothing else (no attributes, no other calls). E.g.
            "punsafe < 0.1 and similarity > 0.3" or "label in [497, 701]"
        max_per_class: keep at most this many rows per class (the first ones)
        processes: with --urls: img2dataset download processes
        threads: with --urls: img2dataset download threads per process
        timeout: with --urls: seconds before a URL is given up
        retries: with --urls: extra attempts per failed URL
        allow_private_addresses: with --urls: also download from localhost and loopback, link-local (cloud
            metadata), private and other non-public IP addresses (refused by default; file: and other non-http(s)
            URLs are always refused)
        img2dataset: with --urls: the img2dataset command (default: $DATAIGM_IMG2DATASET, img2dataset on PATH, or
            the environment `make install` creates in .venv/img2dataset)
        hf_dataset: Hugging Face dataset name or local folder, streamed
        hf_config: its config name
        hf_split: its split to read
        image_column: its image column
        label_column: its label column
        samples_per_shard: images per tar shard
        resize: re-encode with the shorter side at this size
        image_format: re-encode every image to this format
        license: license recorded in every sample (with --urls: where the LICENSE column has none)
        max_pixels: an image with more pixels (width x height) is skipped and counted as "too many pixels", read
            from its header before it is decoded (default: Pillow's decompression-bomb limit, 89478485)
        name: dataset name recorded in the manifest
        progress: show a progress bar
    """

    out: str
    folder: str | None = None
    concept: str | None = None
    split: str | None = None
    source: Literal[SOURCES] | None = None
    label: str | None = None
    class_map: str | None = None
    urls: str | None = None
    pair_words: str | None = None
    url_column: str | None = None
    caption_column: str | None = None
    where: str | None = None
    max_per_class: int | None = None
    processes: int = 2
    threads: int = 32
    timeout: int = 10
    retries: int = 1
    allow_private_addresses: bool = False
    img2dataset: str | None = None
    hf_dataset: str | None = None
    hf_config: str | None = None
    hf_split: str = "train"
    image_column: str = "image"
    label_column: str = "label"
    samples_per_shard: int = 1000
    resize: int | None = None
    image_format: Literal[OUTPUT_FORMATS] | None = None
    license: str | None = None
    max_pixels: int | None = None
    name: str = DEFAULT_NAME
    progress: bool = True


def configure(parser) -> None:
    add_options(parser, IngestOptions, positional=("folder",))


_URL_ONLY = ("pair_words", "url_column", "caption_column", "img2dataset")


def _check_inputs(cfg) -> None:
    given = [
        name
        for name, value in (("FOLDER", cfg.folder), ("--urls", cfg.urls), ("--hf-dataset", cfg.hf_dataset))
        if value
    ]
    if len(given) != 1:
        raise ValueError(
            "give exactly one input: a FOLDER, --urls FILE or --hf-dataset NAME_OR_PATH"
            + (f" (got {' and '.join(given)})" if given else "")
        )
    if cfg.urls is None:
        stray = [f"--{n.replace('_', '-')}" for n in _URL_ONLY if getattr(cfg, n) is not None]
        stray += ["--allow-private-addresses"] if cfg.allow_private_addresses else []
        if stray:
            raise ValueError(f"{', '.join(stray)} only apply to --urls")
    if cfg.folder is not None and (cfg.where is not None or cfg.max_per_class is not None):
        raise ValueError("--where and --max-per-class apply to --urls and --hf-dataset, not to a FOLDER")
    if (cfg.urls or cfg.hf_dataset) and cfg.concept is None:
        raise ValueError(f"--concept is required with {given[0]}")
    if cfg.urls is not None:
        if cfg.source not in (None, "laion"):
            raise ValueError(f"--urls images have source laion; got --source {cfg.source}")
        for option in ("label", "class_map"):
            if getattr(cfg, option) is not None:
                raise ValueError(f"--{option.replace('_', '-')} does not apply to --urls: captions set the labels")


def _write_options(cfg, registry) -> dict:
    """The options of writing shards, the same for every input."""
    return {
        "samples_per_shard": cfg.samples_per_shard,
        "resize": cfg.resize,
        "image_format": cfg.image_format,
        "license": cfg.license,
        "max_pixels": cfg.max_pixels,
        "name": cfg.name,
        "registry": registry,
        "progress": cfg.progress,
    }


def _run_urls(cfg, registry) -> None:
    from ..sources import ingest_urls
    from ..sources.captions import parse_words

    report = ingest_urls(
        cfg.urls,
        cfg.out,
        cfg.concept,
        split=cfg.split or "train",
        where=cfg.where,
        pair_words=parse_words(cfg.pair_words),
        max_per_class=cfg.max_per_class,
        url_column=cfg.url_column,
        caption_column=cfg.caption_column,
        processes=cfg.processes,
        threads=cfg.threads,
        timeout=cfg.timeout,
        retries=cfg.retries,
        img2dataset=cfg.img2dataset,
        allow_private_addresses=cfg.allow_private_addresses,
        **_write_options(cfg, registry),
    )
    _finish(cfg)
    print(report.summary())


def _run_hf_dataset(cfg, registry, class_names) -> None:
    from ..sources.hub import ingest_hf_dataset

    report, counts = ingest_hf_dataset(
        cfg.hf_dataset,
        cfg.out,
        cfg.concept,
        image_column=cfg.image_column,
        label_column=cfg.label_column,
        label=cfg.label,
        hf_config=cfg.hf_config,
        hf_split=cfg.hf_split,
        split=cfg.split,
        source=cfg.source or "real",
        class_names=class_names,
        where=cfg.where,
        max_per_class=cfg.max_per_class,
        **_write_options(cfg, registry),
    )
    _finish(cfg)
    selected = ", ".join(f"{n} {label}" for label, n in counts["rows_selected"].items()) or "none"
    print(f"{counts['rows_seen']} rows read, {counts['rows_after_where']} after --where, selected: {selected}")
    _print_report(report)
    print(f"counts in {counts['counts_file']}")


def _print_report(report, ignored: tuple[str, ...] | list[str] = ()) -> None:
    print(report.summary())
    for skipped in report.skipped_files:
        print(f"  skipped {skipped['file']}: {skipped['reason']}")
    for name in ignored:
        print(f"  ignored {name} (not an image file)")


def _finish(cfg) -> None:
    save_config(cfg, Path(cfg.out) / "meta" / "ingest-config.yaml", append=True)
    refresh_card(cfg.out)


def run(cfg) -> int:
    registry = registry_of(cfg)
    class_names = parse_class_map(cfg.class_map)
    _check_inputs(cfg)
    if cfg.urls is not None:
        _run_urls(cfg, registry)
        return 0
    if cfg.hf_dataset is not None:
        _run_hf_dataset(cfg, registry, class_names)
        return 0
    items, ignored = plan_folder(cfg.folder, cfg.concept, cfg.split, cfg.source, cfg.label, class_names, registry)
    write = _write_options(cfg, registry)
    labelling = dict(concept=cfg.concept, split=cfg.split, source=cfg.source, label=cfg.label, class_names=class_names)
    config = folder_config(cfg.folder, items, ignored, **labelling)
    report = ingest(items, cfg.out, where=repr(cfg.folder), config=config, **write)
    _finish(cfg)
    _print_report(report, ignored)
    return 0
