"""Labels from captions: which web images show a concept (target) and which are its pair.

A caption that names one of the concept's target words or phrases is ``target``. A caption that names none of
them, nor any of the concept's P̂-1 words (``remove_words``), is ``pair`` when it names one of the pair words:
``--pair-words``, else the concept's P̂-2 replacement concepts; a concept with neither (style, nudity) takes
every other caption as ``pair``. Everything else is left out. Words match whole words, ignoring case.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..concepts import Concept


def _pattern(words: Sequence[str]) -> re.Pattern | None:
    words = sorted({w.strip() for w in words if w and w.strip()}, key=len, reverse=True)
    if not words:
        return None
    # \b does not fit phrases that start or end with punctuation; look-arounds on word characters do
    alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in words)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class CaptionRules:
    """The words that make a caption ``target`` or ``pair`` for one concept."""

    concept: str
    targets: tuple[str, ...]
    excluded: tuple[str, ...]  # never pair: the targets and the P̂-1 words
    pair_words: tuple[str, ...]  # empty: every caption without an excluded word is pair

    @classmethod
    def from_concept(cls, concept: Concept, pair_words: Sequence[str] | None = None) -> CaptionRules:
        """The concept's rules; ``pair_words`` replaces its replacement concepts as the pair rule."""
        pair = tuple(pair_words) if pair_words else concept.replacements
        return cls(concept.id, concept.targets, (*concept.targets, *concept.remove_words), tuple(pair))

    def __post_init__(self) -> None:
        object.__setattr__(self, "_target", _pattern(self.targets))
        object.__setattr__(self, "_excluded", _pattern(self.excluded))
        object.__setattr__(self, "_pair", _pattern(self.pair_words))

    def label(self, caption: object) -> str | None:
        """``"target"``, ``"pair"`` or None (not selected) for one caption; a missing caption is never selected."""
        if not isinstance(caption, str) or not caption.strip():
            return None
        if self._target is not None and self._target.search(caption):
            return "target"
        if self._excluded is not None and self._excluded.search(caption):
            return None
        if self._pair is None or self._pair.search(caption):
            return "pair"
        return None

    def describe(self) -> str:
        """One line saying what selects each class, for the printed counts."""
        pair = f"any of {', '.join(self.pair_words)}" if self.pair_words else "any other caption"
        return f"target: captions naming {', '.join(self.targets)}; pair: {pair} (without {', '.join(self.excluded)})"


def parse_words(text: str | None) -> tuple[str, ...]:
    """``"cat, dog,  bird"`` -> ``("cat", "dog", "bird")``."""
    return tuple(w.strip() for w in (text or "").split(",") if w.strip())
