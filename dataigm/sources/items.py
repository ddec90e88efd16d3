"""What every source plans and the writer writes: :class:`IngestItem` (one input image), :class:`SkippedInput` (an
input left out on purpose), and the class names that label them (:func:`class_map`, ``--class-map``).

The folder, URL-list and Hub sources and the writer (:mod:`dataigm.ingest`) all import this module, and it imports
none of them, so imports between them go one way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..concepts import Concept
from ..schema import LABELS


class SkippedInput(OSError):
    """An input left out on purpose, never read or never decoded; the message is its countable reason (an image
    with too many pixels, a link leaving the folder, a dataset's file path outside the dataset)."""


TOO_MANY_PIXELS = "too many pixels"


@dataclass(frozen=True)
class IngestItem:
    """One input image, with everything needed to label it and a way to read its bytes."""

    concept: str
    split: str
    source: str
    label: str
    origin: str
    read: Callable[[], bytes] = field(compare=False, repr=False)
    # position in a stream (a Hub dataset's row): items are written in this order, then by origin
    order: int = field(default=0, compare=False)
    label_source: str = field(default="folder", compare=False)  # who set ``label`` (schema.LABEL_SOURCES)

    @property
    def group(self) -> str:
        return f"{self.concept}/{self.split}/{self.source}"


def class_map(concept: Concept, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Folder or column value -> ``target``/``pair`` for ``concept`` (case-insensitive keys)."""
    mapping = {
        concept.target_class: "target",
        concept.pair_class: "pair",
        "target": "target",
        "pair": "pair",
        "1": "target",
        "0": "pair",
    }
    for name, label in (extra or {}).items():
        if label not in LABELS:
            raise ValueError(f"--class-map {name}={label}: the label must be one of {', '.join(LABELS)}")
        mapping[name] = label
    return {k.lower(): v for k, v in mapping.items()}


def parse_class_map(text: str | None) -> dict[str, str]:
    """``--class-map``: ``"nsfw=target,sfw=pair"`` -> ``{"nsfw": "target", "sfw": "pair"}``.

    Names without ``=LABEL`` take the label of the next entry that has one, so classes can share a label:
    ``"497=target,281,404=pair"`` -> ``{"497": "target", "281": "pair", "404": "pair"}``. Names are folder names,
    ClassLabel names or integer labels.

    Raises:
        ValueError: an empty name, or names left without a label at the end.
    """
    if not text:
        return {}
    out: dict[str, str] = {}
    pending: list[str] = []
    for part in text.split(","):
        name, sep, label = part.partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"--class-map {text!r}: empty class name in {part!r}; write NAME=target or NAME=pair")
        pending.append(name)
        if sep:
            out.update(dict.fromkeys(pending, label.strip()))
            pending = []
    if pending:
        raise ValueError(
            f"--class-map entry {', '.join(pending)!r} has no label; write NAME=target or NAME=pair "
            "(NAME1,NAME2=pair for several)"
        )
    return out


def label_of(value: str, concept: Concept, mapping: dict[str, str], where: str) -> str:
    """The label ``mapping`` gives ``value``.

    Raises:
        ValueError: a value that names no class of ``concept``, listing the valid ones.
    """
    try:
        return mapping[str(value).lower()]
    except KeyError:
        valid = sorted(mapping)
        raise ValueError(
            f"{where}: class {value!r} is not a class of concept {concept.id!r}; valid: {', '.join(valid)} "
            "(or map it with --class-map NAME=target|pair)"
        ) from None
