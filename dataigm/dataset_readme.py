"""The dataset root's ``README.md``: Hub YAML (configs + features) generated from the manifest.

One config per concept plus a ``default`` config with everything; each lists the splits present.
The YAML is produced by ``huggingface_hub`` and ``datasets`` from the features, never by hand.
"""

from __future__ import annotations

import re
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


def preload_card_libraries() -> None:
    """Import what :func:`dataset_card_data` needs (``datasets`` takes about a second): a job calls it in a
    thread at its start, so the card at its end does not wait for the import."""
    import datasets.info  # noqa: F401
    import huggingface_hub  # noqa: F401


def dataset_card_data(root: str | Path):
    """``huggingface_hub.DatasetCardData`` with ``configs`` and ``dataset_info`` for the root."""
    from datasets import DatasetInfo
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    manifest = read_manifest(root)
    concept_ids = list(manifest["concepts"])
    exts = manifest["image_extensions"] or ["png"]
    version = manifest["schema_version"]  # an older root declares the fields its records hold
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
        infos[DEFAULT_CONFIG] = DatasetInfo(
            features=sample_features(concept_ids, default_class_names(), exts, version)
        )
    for cid in concept_ids:
        if cid not in splits:
            continue
        snapshot = manifest["concepts"][cid]
        configs.append(
            {"config_name": cid, "data_files": [{"split": s, "path": f"data/{cid}/{s}/*.tar"} for s in splits[cid]]}
        )
        names = (snapshot["pair_class"], snapshot["target_class"])
        infos[cid] = DatasetInfo(features=sample_features(concept_ids, names, exts, version))
    card_data = DatasetCardData(
        configs=configs,
        task_categories=["image-classification"],
        tags=["machine-unlearning", "dataigm", "webdataset"],
        pretty_name=manifest["name"],
    )
    DatasetInfosDict(infos).to_dataset_card_data(card_data)
    return card_data


GENERATED_BEGIN = "<!-- dataigm: generated section, rewritten by `dataigm card` -->"
GENERATED_END = "<!-- dataigm: end of generated section -->"


def _minimal_body(manifest: dict) -> str:
    concepts = ", ".join(f"`{c}`" for c in manifest["concepts"]) or "none yet"
    return (
        f"# {manifest['name']}\n\n"
        "A DataIGM dataset written by dataigm: images with and without concepts targeted by machine unlearning, "
        "each labelled with its concept, CatIGMU category and provenance.\n\n"
        f"Concepts: {concepts}. Run `dataigm card <root>` for the full dataset card.\n"
    )


def merge_body(old_body: str | None, generated: str | None, fallback: str) -> str:
    """The README body to write.

    The generated text lives between two markers. A body with markers gets its marked section
    replaced (``generated``, or kept when None); a body without markers was written by a person and is
    left alone; no body at all gets the markers around ``generated`` (or ``fallback``).
    """
    if old_body and GENERATED_BEGIN in old_body and GENERATED_END in old_body:
        if generated is None:
            return old_body
        head, rest = old_body.split(GENERATED_BEGIN, 1)
        _, tail = rest.split(GENERATED_END, 1)
        return f"{head}{GENERATED_BEGIN}\n{generated.strip()}\n{GENERATED_END}{tail}"
    if old_body and old_body.strip():
        return old_body
    return f"{GENERATED_BEGIN}\n{(generated or fallback).strip()}\n{GENERATED_END}\n"


# The YAML front matter of a card (the Hub's format: a block between two ``---`` lines at the top)
_FRONT_MATTER = re.compile(r"^\s*---[\r\n]+[\S\s]*?[\r\n]+---(?:\r\n|\n|$)")


def card_body(text: str) -> str:
    """The text of a card after its YAML front matter (all of it when there is none).

    Splitting is enough: the YAML is regenerated, and parsing it (hundreds of data files) costs a job's
    every README refresh a fraction of a second.
    """
    match = _FRONT_MATTER.match(text)
    return text[match.end() :] if match else text


def write_dataset_readme(root: str | Path, body: str | None = None, **card_fields) -> Path:
    """Write ``<root>/README.md``: the YAML is always regenerated, the body merged by :func:`merge_body`.

    Args:
        root: dataset root.
        body: generated body text (the cards package renders the full card); None keeps what is there.
        card_fields: extra ``DatasetCardData`` fields (license, size_categories...).
    """
    root = Path(root)
    manifest = read_manifest(root)
    path = root / README_NAME
    old_body = card_body(path.read_text(encoding="utf-8")) if path.exists() else None
    card_data = dataset_card_data(root)
    for key, value in card_fields.items():
        setattr(card_data, key, value)
    text = merge_body(old_body, body, _minimal_body(manifest))
    atomic_write_text(path, f"---\n{card_data.to_yaml()}\n---\n\n{text.lstrip()}")
    return path
