"""``dataigm ingest``: a folder of images, or a Hugging Face dataset, into shards of a dataset root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..ingest import OUTPUT_FORMATS, ingest, parse_class_map, plan_folder, plan_hf_dataset
from ..manifest import DEFAULT_NAME
from ..schema import SOURCES
from .card import refresh_card
from .common import ConceptsDirOption, registry_of, save_config
from .options import add_options

HELP = "add real, web or generated images (a folder or a Hugging Face dataset) to a dataset root"


@dataclass(kw_only=True)
class IngestOptions(ConceptsDirOption):
    """The options of ``dataigm ingest``.

    Attributes:
        folder: folder of images (or use --hf-dataset)
        out: dataset root to write to (created when missing)
        concept: concept id (read from <Task> folders otherwise)
        split: split name (default: train, or from folders)
        source: image source (default: real)
        label: one label for every image: a class name, target or pair
        class_map: extra class names, e.g. nsfw=target,sfw=pair
        hf_dataset: Hugging Face dataset name or local folder
        hf_config: its config name
        hf_split: its split to read
        image_column: its image column
        label_column: its label column
        samples_per_shard: images per tar shard
        resize: re-encode with the shorter side at this size
        image_format: re-encode every image to this format
        license: license recorded in every sample
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
    hf_dataset: str | None = None
    hf_config: str | None = None
    hf_split: str = "train"
    image_column: str = "image"
    label_column: str = "label"
    samples_per_shard: int = 1000
    resize: int | None = None
    image_format: Literal[OUTPUT_FORMATS] | None = None
    license: str | None = None
    name: str = DEFAULT_NAME
    progress: bool = True


def configure(parser) -> None:
    add_options(parser, IngestOptions, positional=("folder",))


def run(cfg) -> int:
    registry = registry_of(cfg)
    class_names = parse_class_map(cfg.class_map)
    if (cfg.folder is None) == (cfg.hf_dataset is None):
        raise ValueError("give either a FOLDER or --hf-dataset NAME_OR_PATH (exactly one)")
    ignored: list[str] = []
    if cfg.hf_dataset is not None:
        if cfg.concept is None:
            raise ValueError("--concept is required with --hf-dataset")
        items = plan_hf_dataset(
            cfg.hf_dataset,
            cfg.concept,
            image_column=cfg.image_column,
            label_column=cfg.label_column,
            label=cfg.label,
            hf_config=cfg.hf_config,
            hf_split=cfg.hf_split,
            split=cfg.split,
            source=cfg.source or "real",
            class_names=class_names,
            registry=registry,
        )
    else:
        items, ignored = plan_folder(cfg.folder, cfg.concept, cfg.split, cfg.source, cfg.label, class_names, registry)
    report = ingest(
        items,
        cfg.out,
        samples_per_shard=cfg.samples_per_shard,
        resize=cfg.resize,
        image_format=cfg.image_format,
        license=cfg.license,
        name=cfg.name,
        registry=registry,
        progress=cfg.progress,
        where=repr(cfg.folder) if cfg.folder is not None else f"--hf-dataset {cfg.hf_dataset!r}",
    )
    save_config(cfg, Path(cfg.out) / "meta" / "ingest-config.yaml", append=True)
    refresh_card(cfg.out)
    print(report.summary())
    for skipped in report.skipped_files:
        print(f"  skipped {skipped['file']}: {skipped['reason']}")
    for name in ignored:
        print(f"  ignored {name} (not an image file)")
    return 0
