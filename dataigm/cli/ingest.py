"""``dataigm ingest``: a folder of images, or a Hugging Face dataset, into shards of a dataset root."""

from __future__ import annotations

from pathlib import Path

from ..ingest import OUTPUT_FORMATS, ingest, parse_class_map, plan_folder, plan_hf_dataset
from ..manifest import DEFAULT_NAME
from ..schema import SOURCES
from .card import refresh_card
from .common import add_concepts_dir, registry_of, save_config

HELP = "add real, web or generated images (a folder or a Hugging Face dataset) to a dataset root"


def configure(parser) -> None:
    parser.add_argument("folder", nargs="?", default=None, help="folder of images (or use --hf-dataset)")
    parser.add_argument("--out", required=True, help="dataset root to write to (created when missing)")
    parser.add_argument(
        "--concept", type=str | None, default=None, help="concept id (read from <Task> folders otherwise)"
    )
    parser.add_argument("--split", type=str | None, default=None, help="split name (default: train, or from folders)")
    parser.add_argument(
        "--source", type=str | None, default=None, choices=[None, *SOURCES], help="image source (default: real)"
    )
    parser.add_argument(
        "--label", type=str | None, default=None, help="one label for every image: a class name, target or pair"
    )
    parser.add_argument(
        "--class-map", type=str | None, default=None, help="extra class names, e.g. nsfw=target,sfw=pair"
    )
    parser.add_argument(
        "--hf-dataset", type=str | None, default=None, help="Hugging Face dataset name or local folder"
    )
    parser.add_argument("--hf-config", type=str | None, default=None, help="its config name")
    parser.add_argument("--hf-split", default="train", help="its split to read")
    parser.add_argument("--image-column", default="image", help="its image column")
    parser.add_argument("--label-column", default="label", help="its label column")
    parser.add_argument("--samples-per-shard", type=int, default=1000, help="images per tar shard")
    parser.add_argument("--resize", type=int | None, default=None, help="re-encode with the shorter side at this size")
    parser.add_argument(
        "--image-format",
        type=str | None,
        default=None,
        choices=[None, *OUTPUT_FORMATS],
        help="re-encode every image to this format",
    )
    parser.add_argument("--license", type=str | None, default=None, help="license recorded in every sample")
    parser.add_argument("--name", default=DEFAULT_NAME, help="dataset name recorded in the manifest")
    parser.add_argument("--progress", type=bool, default=True, help="show a progress bar")
    add_concepts_dir(parser)


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
