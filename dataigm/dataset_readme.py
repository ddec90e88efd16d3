"""The dataset root's ``README.md``: Hub YAML (configs + features) generated from the manifest.

One config per concept plus a ``default`` config with everything; each lists the splits present.
The YAML is produced by ``huggingface_hub`` and ``datasets`` from the features, never by hand.
"""

from __future__ import annotations

from pathlib import Path

from .features import default_class_names, sample_features
from .files import atomic_write_text
from .layout import README_NAME, ShardId
from .manifest import read_manifest

DEFAULT_CONFIG = "default"


def _splits(manifest: dict) -> dict[str, list[str]]:
    """``{concept: [split, ...]}`` of the finished shards."""
    out: dict[str, set[str]] = {}
    for relpath in manifest["shards"]:
        shard = ShardId.parse(relpath)
        out.setdefault(shard.concept, set()).add(shard.split)
    return {c: sorted(s) for c, s in out.items()}


def dataset_card_data(root: str | Path):
    """``huggingface_hub.DatasetCardData`` with ``configs`` and ``dataset_info`` for the root."""
    from datasets import DatasetInfo
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    manifest = read_manifest(root)
    concept_ids = list(manifest["concepts"])
    exts = manifest["image_extensions"] or ["png"]
    splits = _splits(manifest)
    all_splits = sorted({s for ss in splits.values() for s in ss})
    configs, infos = [], {}
    if all_splits:
        configs.append(
            {
                "config_name": DEFAULT_CONFIG,
                "default": True,
                "data_files": [{"split": s, "path": f"data/*/{s}/*.tar"} for s in all_splits],
            }
        )
        infos[DEFAULT_CONFIG] = DatasetInfo(features=sample_features(concept_ids, default_class_names(), exts))
    for cid in concept_ids:
        if cid not in splits:
            continue
        snapshot = manifest["concepts"][cid]
        configs.append(
            {"config_name": cid, "data_files": [{"split": s, "path": f"data/{cid}/{s}/*.tar"} for s in splits[cid]]}
        )
        names = (snapshot["pair_class"], snapshot["target_class"])
        infos[cid] = DatasetInfo(features=sample_features(concept_ids, names, exts))
    card_data = DatasetCardData(
        configs=configs,
        task_categories=["image-classification"],
        tags=["machine-unlearning", "dataigm", "webdataset"],
        pretty_name=manifest["name"],
    )
    DatasetInfosDict(infos).to_dataset_card_data(card_data)
    return card_data


def write_dataset_readme(root: str | Path, body: str | None = None) -> Path:
    """Write ``<root>/README.md`` with the generated YAML; returns its path."""
    from huggingface_hub import DatasetCard

    root = Path(root)
    manifest = read_manifest(root)
    if body is None:
        concepts = ", ".join(f"`{c}`" for c in manifest["concepts"]) or "none yet"
        body = (
            f"# {manifest['name']}\n\n"
            "A DataIGM dataset written by [dataigm](https://github.com/dataigm/dataigm): images with and without "
            "concepts targeted by machine unlearning, each labelled with its concept, CatIGMU category and provenance.\n\n"
            f"Concepts: {concepts}.\n\n"
            '```python\nfrom datasets import load_dataset\nds = load_dataset("path/to/this/folder")  # or a concept config\n```\n'
        )
    card = DatasetCard(f"---\n{dataset_card_data(root).to_yaml()}\n---\n\n{body}")
    path = root / README_NAME
    atomic_write_text(path, str(card))
    return path
