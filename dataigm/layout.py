"""Paths inside a dataset root (docs/dataset-format.md).

```
<root>/README.md
<root>/data/<concept>/<split>/<source>-<NNNNN>.tar
<root>/meta/<concept>/<split>/<source>-<NNNNN>.json   (sidecar)
<root>/dataigm.json                                  (manifest)
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .schema import SOURCES

MANIFEST_NAME = "dataigm.json"
README_NAME = "README.md"
DATA_DIR = "data"
META_DIR = "meta"
TMP_SUFFIX = ".tmp"
_SPLIT_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_SHARD_RE = re.compile(r"^data/([a-z][a-z0-9_]*)/([a-z][a-z0-9_]*)/([a-z]+)-(\d{5})\.tar$")


def check_split(split: str, what: str = "Split name") -> str:
    """Return ``split`` if it can name a split: it becomes a folder and a ``datasets`` split name.

    Raises:
        ValueError: naming the value and the rule.
    """
    if not isinstance(split, str) or not _SPLIT_RE.match(split):
        raise ValueError(
            f"{what} {split!r} is invalid: a split name is lower-case letters, digits and '_', starting with a "
            f"letter ({_SPLIT_RE.pattern}), e.g. train, test"
        )
    return split


@dataclass(frozen=True, order=True)
class ShardId:
    """Where a shard lives: ``data/<concept>/<split>/<source>-<index>.tar``."""

    concept: str
    split: str
    source: str
    index: int

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"Unknown source {self.source!r}; valid sources: {', '.join(SOURCES)}")
        check_split(self.split)
        if not 0 <= self.index <= 99999:
            raise ValueError(f"Shard index {self.index} is outside 0..99999")

    @property
    def group(self) -> str:
        return f"{self.concept}/{self.split}/{self.source}"

    @property
    def relpath(self) -> str:
        return f"{DATA_DIR}/{self.concept}/{self.split}/{self.source}-{self.index:05d}.tar"

    @property
    def sidecar_relpath(self) -> str:
        return f"{META_DIR}/{self.concept}/{self.split}/{self.source}-{self.index:05d}.json"

    @classmethod
    def parse(cls, relpath: str) -> ShardId:
        match = _SHARD_RE.match(relpath)
        if not match:
            raise ValueError(f"{relpath!r} is not a shard path data/<concept>/<split>/<source>-<NNNNN>.tar")
        concept, split, source, index = match.groups()
        return cls(concept, split, source, int(index))


def shard_files(root: str | Path) -> list[Path]:
    """Every ``.tar`` under ``<root>/data``, sorted."""
    return sorted((Path(root) / DATA_DIR).glob("*/*/*.tar"))


def temporary_files(root: str | Path) -> list[Path]:
    """Temporaries an interrupted job left behind."""
    root = Path(root)
    return sorted(p for d in (DATA_DIR, META_DIR) for p in (root / d).glob(f"**/.*{TMP_SUFFIX}"))
