"""The sample record: one schema for every image in DataIGM (docs/dataset-format.md).

A sample is ``KEY.<image ext>`` + ``KEY.cls`` + ``KEY.json``. Every field below is present in every
record (null where it does not apply) because ``datasets`` streaming fails on ragged json.

Versions: each field names the schema version that added it (``Field.since``). Version 2 added ``model``
(the model spec's label) and ``label_source`` (who set the label); version 3 added ``previous_label`` (the label
an image had before a person checked it, so a curated record says what it changed) and the label sources
``caption`` and ``dataset`` (web and Hub ingests). This dataigm writes
:data:`SCHEMA_VERSION` only; records of an older version (:data:`SCHEMA_VERSIONS`) are read and
validated against the fields of their own version, so roots written earlier still load and validate.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

SCHEMA_VERSION = "3"
SCHEMA_VERSIONS = ("1", "2", "3")  # every version this dataigm reads, oldest first
SOURCES = ("real", "laion", "generated")
LABELS = ("pair", "target")  # index = the value of ``cls``
PROMPT_KINDS = ("forget", "remove", "replace", "retain", "adversarial", "multilingual")
IMAGE_FLAGS = ("nan", "all_black")
IMAGE_EXTENSIONS = ("png", "jpg", "webp")
# Who set a sample's label: the prompt it was generated from, a generator that knows what it drew (the toy
# world), the folder it was ingested from, the caption of a web image (words of the concept), the label column
# of the dataset a row came from, a judge, a person.
LABEL_SOURCES = ("prompt", "generator", "folder", "caption", "dataset", "judge", "person")
PERSON = "person"  # the label source of a label a person set or confirmed (it has a ``previous_label``)


@dataclass(frozen=True)
class Field:
    name: str
    types: tuple[type, ...]
    nullable: bool = True
    doc: str = ""
    since: str = "1"  # the schema version that added the field


# Order matters: records are written in this order, so shards are byte-identical across runs.
FIELDS: tuple[Field, ...] = (
    Field("schema_version", (str,), False, "version of this schema"),
    Field("concept", (str,), False, "concept id from the registry"),
    Field("label", (str,), False, "'target' (the concept is present, cls=1) or 'pair' (cls=0)"),
    Field("category", (str,), False, "CatIGMU path of the concept"),
    Field("source", (str,), False, "'real', 'laion' or 'generated'"),
    Field("split", (str,), False, "dataset split, e.g. train / test"),
    Field("prompt_id", (str,), True, "stable id of the prompt record"),
    Field("prompt", (str,), True, "prompt text"),
    Field("prompt_kind", (str,), True, "forget / remove / replace / retain / adversarial / multilingual"),
    Field("subtheme", (str,), True, "prompt sub-theme"),
    Field("attack", (str,), True, "attack that made an adversarial prompt"),
    Field("lang", (str,), True, "language of a multilingual prompt"),
    Field("model", (str,), True, "label of the model spec that generated the image (null if not generated)", "2"),
    Field("model_id", (str,), True, "base pipeline: Hub id or folder"),
    Field("model_revision", (str,), True, "Hub revision or checksum of the base pipeline"),
    Field("method", (str,), True, "unlearning method (ORG for the original model)"),
    Field("checkpoint", (str,), True, "unlearned weights: file name and sha256"),
    Field("seed", (int,), True, "seed of this image"),
    Field("steps", (int,), True, "denoising steps"),
    Field("guidance", (float, int), True, "classifier-free guidance scale"),
    Field("scheduler", (str,), True, "scheduler name"),
    Field("height", (int,), False, "image height in pixels"),
    Field("width", (int,), False, "image width in pixels"),
    Field("origin", (str,), True, "where the image came from: relative file path, dataset row, URL"),
    Field("license", (str,), True, "license of the image"),
    Field("sha256", (str,), False, "sha256 of the image bytes"),
    Field("image_flag", (str,), True, "a defect found when the image was made: 'nan' or 'all_black'"),
    Field(
        "label_source",
        (str,),
        True,
        "who set the label: prompt, generator, folder, caption, dataset, judge or person",
        "2",
    ),
    Field(
        "previous_label",
        (str,),
        True,
        "the label before a person checked it ('target' or 'pair'; null unless label_source is 'person')",
        "3",
    ),
)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
_GENERATED_REQUIRED = ("prompt_id", "prompt", "prompt_kind", "model_id", "method", "seed")
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class SchemaError(ValueError):
    """A sample record that does not follow the schema; the message names the field."""


def fields_of(version: str = SCHEMA_VERSION) -> tuple[Field, ...]:
    """The fields of schema ``version``, in record order.

    Raises:
        SchemaError: ``version`` is not one this dataigm reads.
    """
    if version not in SCHEMA_VERSIONS:
        raise SchemaError(
            f"Field 'schema_version' = {version!r}; this dataigm reads versions {', '.join(SCHEMA_VERSIONS)}"
        )
    rank = SCHEMA_VERSIONS.index(version)
    return tuple(f for f in FIELDS if SCHEMA_VERSIONS.index(f.since) <= rank)


def empty_record() -> dict:
    """A record with every field set to None (schema_version filled in)."""
    record = dict.fromkeys(FIELD_NAMES)
    record["schema_version"] = SCHEMA_VERSION
    return record


def normalize_record(record: Mapping) -> dict:
    """Return ``record`` with every schema field, in schema order, for writing; unknown keys raise.

    Only :data:`SCHEMA_VERSION` is written: a record of another version raises (a root holds one version).
    """
    unknown = sorted(set(record) - set(FIELD_NAMES))
    if unknown:
        raise SchemaError(f"Unknown field(s) {unknown} in sample record; valid fields: {', '.join(FIELD_NAMES)}")
    if record.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise SchemaError(
            f"Field 'schema_version' = {record['schema_version']!r}; this dataigm writes {SCHEMA_VERSION!r}"
        )
    out = empty_record()
    out.update(record)
    if isinstance(out["guidance"], int) and not isinstance(out["guidance"], bool):
        out["guidance"] = float(out["guidance"])
    return out


def validate_record(record: Mapping, cls: int | None = None, concepts: Mapping | None = None) -> None:
    """Check one record against the schema of its own ``schema_version`` (any of :data:`SCHEMA_VERSIONS`).

    Args:
        record: the sample's json.
        cls: the sample's ``cls`` value, checked against ``label`` when given.
        concepts: ``{concept_id: category}`` of known concepts, checked when given.

    Raises:
        SchemaError: naming the first bad field, its value and what was expected.
    """
    if not isinstance(record.get("schema_version"), str):
        raise SchemaError(f"Field 'schema_version' = {record.get('schema_version')!r} should be str")
    fields = fields_of(record["schema_version"])
    names = [f.name for f in fields]
    missing = [name for name in names if name not in record]
    if missing:
        raise SchemaError(f"Sample record is missing field(s) {missing}")
    unknown = sorted(set(record) - set(names))
    if unknown:
        raise SchemaError(f"Unknown field(s) {unknown} in sample record; valid fields: {', '.join(names)}")
    for field in fields:
        value = record[field.name]
        if value is None:
            if not field.nullable:
                raise SchemaError(f"Field {field.name!r} must not be null ({field.doc})")
            continue
        if isinstance(value, bool) or not isinstance(value, field.types):
            expected = " or ".join(t.__name__ for t in field.types)
            raise SchemaError(f"Field {field.name!r} = {value!r} should be {expected} ({field.doc})")
    _check_choice(record, "label", LABELS)
    _check_choice(record, "source", SOURCES)
    if record["prompt_kind"] is not None:
        _check_choice(record, "prompt_kind", PROMPT_KINDS)
    if record["image_flag"] is not None:
        _check_choice(record, "image_flag", IMAGE_FLAGS)
    if record.get("label_source") is not None:
        _check_choice(record, "label_source", LABEL_SOURCES)
    if record.get("previous_label") is not None:
        _check_choice(record, "previous_label", LABELS)
        if record["label_source"] != PERSON:
            raise SchemaError(
                f"Field 'previous_label' = {record['previous_label']!r} with label_source "
                f"{record['label_source']!r}: only a label a person checked has a previous label"
            )
    if not _SHA_RE.match(record["sha256"]):
        raise SchemaError(f"Field 'sha256' = {record['sha256']!r} is not a lower-case hex sha256")
    if record["height"] <= 0 or record["width"] <= 0:
        raise SchemaError(f"Image size {record['width']}x{record['height']} must be positive")
    if record["source"] == "generated" and record["origin"] is None:
        # Our generator fills the whole provenance; an ingested generated image at least says where it came from.
        missing = [name for name in _GENERATED_REQUIRED if record[name] is None]
        if missing:
            raise SchemaError(f"Generated sample needs field(s) {missing} (its provenance), or an 'origin'")
    if concepts is not None:
        if record["concept"] not in concepts:
            raise SchemaError(f"Field 'concept' = {record['concept']!r}; known concepts: {', '.join(concepts)}")
        if record["category"] != concepts[record["concept"]]:
            raise SchemaError(
                f"Field 'category' = {record['category']!r} but concept {record['concept']!r} is "
                f"{concepts[record['concept']]!r}"
            )
    if cls is not None and (cls not in (0, 1) or LABELS[cls] != record["label"]):
        raise SchemaError(f"cls = {cls!r} disagrees with label {record['label']!r} (cls 1 = 'target', 0 = 'pair')")


def _check_choice(record: Mapping, name: str, choices: tuple[str, ...]) -> None:
    if record[name] not in choices:
        raise SchemaError(f"Field {name!r} = {record[name]!r}; valid values: {', '.join(choices)}")


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid sample key (no dots: WebDataset splits keys at the first dot)."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise SchemaError(
            f"Sample key {key!r} is invalid: use letters, digits, '_' and '-', starting with a letter or digit "
            "(no dots: WebDataset splits the file name at the first dot)"
        )
    return key


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def _key_part(text: str) -> str:
    clean = _UNSAFE_KEY_CHARS.sub("-", text)
    if clean == text:
        return text
    # Sanitising lost information: the hash of the original keeps ``x/1``, ``x 1`` and ``x:1`` apart.
    stripped = clean.strip("-_")
    return f"{stripped}-{_digest(text)}" if stripped else _digest(text)


def make_key(*parts: object) -> str:
    """Join parts with '_' into a dot-free sample key.

    A part made only of letters, digits, '_' and '-' is kept as it is. A part holding any other
    character has those replaced by '-' and gets ``-<8 hex digits of the sha256 of the original part>``
    appended, so parts that differ only in replaced characters (``x/1``, ``x 1``, ``x:1``, ``x-1``)
    still give different keys. A key that would start or end with '-'/'_' (or be empty) is stripped and
    gets the hash of all its parts. Callers give a fixed number of parts; parts are not escaped, so
    ``("a_b", "c")`` and ``("a", "b_c")`` share a key (keep free text in one part).
    """
    texts = [str(p) for p in parts]
    joined = "_".join(_key_part(t) for t in texts)
    stripped = joined.strip("-_")
    if stripped != joined or not stripped:
        tail = _digest(json.dumps(texts))
        stripped = f"{stripped}-{tail}" if stripped else f"x-{tail}"
    return check_key(stripped)
