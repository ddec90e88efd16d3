"""``datasets.Features`` of a DataIGM root, derived from the schema, the taxonomy and the concepts.

Class names travel in the README YAML (``dataset_info.features``): that is how
``load_dataset(root)`` and ``timm``'s ``hfds/`` reader know them without code of ours.
"""

from __future__ import annotations

from collections.abc import Sequence

from .schema import IMAGE_EXTENSIONS, LABELS, SCHEMA_VERSION, SOURCES, fields_of
from .taxonomy import LEAVES

_VALUE_TYPES = {str: "string", int: "int64", float: "float64"}


def default_class_names() -> tuple[str, str]:
    """``cls`` names of the all-concepts config: 0 = the pair class, 1 = the target class."""
    return LABELS


def sample_features(
    concept_ids: Sequence[str],
    cls_names: Sequence[str],
    image_extensions: Sequence[str] = ("png",),
    schema_version: str = SCHEMA_VERSION,
):
    """The ``datasets.Features`` of one config.

    Args:
        concept_ids: the dataset's concepts in manifest order (``json.concept`` class ids).
        cls_names: names of ``cls`` 0 and 1 (the concept's pair and target class names).
        image_extensions: the image members present in the dataset (each is a column).
        schema_version: the schema the root's records follow: ``json`` declares exactly its fields, so a
            root written by an older version declares the keys its records hold (no ragged json).
    """
    from datasets import ClassLabel, Features, Image, Value

    class_labels = {
        "concept": list(concept_ids),
        "label": list(LABELS),
        "previous_label": list(LABELS),  # null unless a person checked the label
        "category": list(LEAVES),
        "source": list(SOURCES),
    }
    record = {}
    for field in fields_of(schema_version):
        if field.name in class_labels:
            record[field.name] = ClassLabel(names=class_labels[field.name])
        else:
            record[field.name] = Value(_VALUE_TYPES[field.types[0]])
    columns = {"__key__": Value("string"), "__url__": Value("string")}
    for ext in IMAGE_EXTENSIONS:
        if ext in image_extensions:
            columns[ext] = Image()
    columns["cls"] = ClassLabel(names=list(cls_names))
    columns["json"] = record
    return Features(columns)
