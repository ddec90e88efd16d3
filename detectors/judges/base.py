"""The judge API every judge implements: :class:`Judge` (per-concept probabilities and decisions) and
:class:`Prediction` (its output).

A judge turns one PIL image into a model input with ``image_transform`` (picklable, so it runs in
``DataLoader`` workers), batches inputs with ``collate`` and scores a batch with ``forward``.
:meth:`Judge.predict` accepts what :mod:`detectors.judges.inputs` accepts, or a DataIGM root. torch is
imported where a judge uses it, so this module is light to import.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dataigm.identity import json_sha256, state_dict_sha256
from detectors.judges.inputs import chunked, image_stream, is_tensor, to_pil

logger = logging.getLogger(__name__)


@dataclass
class Prediction:
    """Judge output for N images and C concepts.

    A judgement is *valid* when its probability is a number in [0, 1]. An unreadable image, or a judge
    that returned NaN (or a value outside [0, 1]), gives an invalid cell: its probability is kept as the
    judge gave it (NaN for an unreadable image, never clamped) and its decision is False, which then
    means "no judgement", not "absent". Consumers must check ``valid`` before counting a False as absent.

    Attributes:
        concepts: the C concept ids, in column order.
        probabilities: (N, C) calibrated probabilities that each concept is present (NaN where no judgement).
        present: (N, C) booleans, the judge's decisions (False wherever ``valid`` is False).
        keys: an id per image when the input had them (dataset keys, ``<shard>#<key>`` for a DataIGM root).
        valid: (N, C) booleans, True where the judgement is usable (derived from ``probabilities`` when not given).
        unreadable: (N,) booleans, True for images that could not be read (their whole row is invalid).
        details: per-image numbers a judge reports beside its probabilities, name -> (N,) floats (NaN where an
            image got none), e.g. the VLM judge's ``answer_mass``; None when the judge reports none.
    """

    concepts: list[str]
    probabilities: np.ndarray
    present: np.ndarray
    keys: list[str] | None = None
    valid: np.ndarray | None = None
    unreadable: np.ndarray | None = None
    details: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.probabilities = np.asarray(self.probabilities, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            usable = np.isfinite(self.probabilities) & (self.probabilities >= 0) & (self.probabilities <= 1)
        self.valid = usable if self.valid is None else np.asarray(self.valid, dtype=bool) & usable
        self.present = np.asarray(self.present, dtype=bool) & self.valid
        n = self.probabilities.shape[0]
        self.unreadable = np.zeros(n, dtype=bool) if self.unreadable is None else np.asarray(self.unreadable, bool)

    def __len__(self) -> int:
        return self.probabilities.shape[0]

    @property
    def probs(self) -> np.ndarray:
        """Alias of ``probabilities``."""
        return self.probabilities

    @property
    def n_invalid(self) -> int:
        """Number of invalid (image, concept) cells."""
        return int((~self.valid).sum())

    def column(self, concept: str) -> int:
        try:
            return self.concepts.index(concept)
        except ValueError:
            raise ValueError(
                f"This judge has no concept {concept!r}; its concepts: {', '.join(self.concepts)}"
            ) from None

    def probability(self, concept: str) -> np.ndarray:
        return self.probabilities[:, self.column(concept)]

    def is_present(self, concept: str) -> np.ndarray:
        """Decisions for one concept; False also where :meth:`is_valid` is False (no judgement)."""
        return self.present[:, self.column(concept)]

    def is_valid(self, concept: str) -> np.ndarray:
        return self.valid[:, self.column(concept)]

    def to_records(self) -> list[dict]:
        """One dict per image: ``{"key"?, concept: {"probability", "present"}, "details"?}``; both None without a
        judgement; ``details`` (the judge's per-image numbers, None where missing) when the judge reports some."""
        records = []
        for row in range(len(self)):
            record: dict[str, Any] = {} if self.keys is None else {"key": self.keys[row]}
            for col, concept in enumerate(self.concepts):
                if self.valid[row, col]:
                    cell = {
                        "probability": float(self.probabilities[row, col]),
                        "present": bool(self.present[row, col]),
                    }
                else:
                    cell = {"probability": None, "present": None}
                record[concept] = cell
            if self.details:
                record["details"] = {
                    name: float(v[row]) if np.isfinite(v[row]) else None for name, v in self.details.items()
                }
            records.append(record)
        return records


def _warn_invalid(prediction: Prediction) -> None:
    bad = ~prediction.valid & ~prediction.unreadable[:, None]
    if bad.any():
        logger.warning(
            "the judge gave %d of %d judgement(s) that are NaN or outside [0, 1]: they are invalid "
            "(Prediction.valid is False), not 'absent'",
            int(bad.sum()),
            bad.size,
        )


def _identity(image: Image.Image) -> Image.Image:
    return image


def default_collate_images(items: list):
    """Stack tensors; keep anything else as a list."""
    if items and is_tensor(items[0]):
        import torch

        return torch.stack(items)
    return items


class Judge:
    """Base class: says, for each of its concepts, how likely an image shows it and whether it does.

    Subclasses set ``concepts``, ``thresholds`` and ``image_transform`` and implement :meth:`forward`.
    """

    kind = "judge"

    def __init__(self, concepts: Sequence[str], thresholds: dict[str, float], spec: str = "", device: str = "cpu"):
        self.concepts = list(concepts)
        missing = [c for c in self.concepts if c not in thresholds]
        if missing:
            raise ValueError(f"No threshold for concept(s) {missing}")
        self.thresholds = {c: float(thresholds[c]) for c in self.concepts}
        self.spec = spec
        self.device = _device(device)
        self.image_transform: Callable[[Image.Image], Any] = _identity

    # -- to implement ----------------------------------------------------------------------------
    # names of the per-image details (``Prediction.details``) that ``forward`` returns as a third element
    detail_names: tuple[str, ...] = ()

    def forward(self, batch: Any) -> tuple:
        """Score a collated batch: (B, C) probabilities, and (B, C) decisions or None to apply the thresholds;
        a judge with ``detail_names`` returns a third element, name -> (B,) floats."""
        raise NotImplementedError

    def collate(self, items: list) -> Any:
        return default_collate_images(items)

    def to(self, device) -> Judge:
        """Move the judge to ``device`` (a name or a ``torch.device``)."""
        self.device = _device(device)
        return self

    def describe(self) -> dict:
        """What a report needs to name this judge."""
        return {"kind": self.kind, "spec": self.spec, "concepts": self.concepts, "thresholds": self.thresholds}

    def fingerprint(self) -> str:
        """A sha256 (hex) of everything that decides this judge's outputs, for caches keyed by content.

        It covers the kind, concepts and thresholds plus :meth:`_fingerprint_parts` (for trained judges the
        weights, temperatures, architecture and input transform; for baselines their spec and weights).
        Two judges with the same fingerprint give the same outputs on the same device and precision.
        Computed on the first call and kept: changing the weights of a loaded judge in place afterwards is
        not seen.
        """
        if getattr(self, "_fingerprint", None) is None:
            payload = {
                "fingerprint_format": 1,
                "kind": self.kind,
                "concepts": self.concepts,
                "thresholds": self.thresholds,
                **self._fingerprint_parts(),
            }
            self._fingerprint = json_sha256(payload, default=repr)
        return self._fingerprint

    def _fingerprint_parts(self) -> dict:
        """What else decides the outputs. Default: the spec, and the weights of ``self.model`` when it has one.

        A judge without weights in ``self.model`` that reads other files must add their hashes here.
        """
        parts: dict[str, Any] = {"spec": self.spec}
        model = getattr(self, "model", None)
        torch = sys.modules.get("torch")  # a model that is a torch module means torch is loaded
        if torch is not None and isinstance(model, torch.nn.Module):
            parts["weights_sha256"] = state_dict_sha256(model.state_dict())
        return parts

    # -- shared ------------------------------------------------------------------------------------
    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        thresholds = np.array([self.thresholds[c] for c in self.concepts])
        return probabilities >= thresholds[None, :]

    def _score(self, batch: Any) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        probs, present, *rest = self.forward(batch)
        probs = np.asarray(probs, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            decisions = self.decide(probs) if present is None else np.asarray(present, dtype=bool)
        details = {name: np.asarray(values, dtype=np.float64) for name, values in (rest[0] if rest else {}).items()}
        return probs, decisions, details  # Prediction turns decisions on invalid probabilities into False

    def predict(
        self,
        images: Any,
        batch_size: int = 32,
        num_workers: int | None = None,
        progress: bool = False,
    ) -> Prediction:
        """Judge ``images``: a PIL image, image tensor/array or file, a list of those, a ``datasets`` dataset,
        or the path of a DataIGM root (every split; use :meth:`predict_entries` to choose).

        Image tensors are un-normalised RGB, (C, H, W) or (N, C, H, W), float in [0, 1] or uint8; every
        input goes through the judge's own preprocessing.

        Args:
            images: what to judge (see above). A list (any sized ``Sequence``, e.g. one whose ``__getitem__`` loads
                the image) is read by index, in workers when there are some; other inputs are read as one stream.
            batch_size: images per forward.
            num_workers: ``DataLoader`` worker processes that read and preprocess a root or a list (0: this
                process; None: sized to the host, none for a small pass or small images:
                :func:`detectors.data.one_pass_workers`). The prediction does not depend on it.
            progress: show a progress bar.
        """
        if isinstance(images, (str, Path)) and Path(images).is_dir():
            from detectors.data import build_index

            return self.predict_entries(build_index(images), batch_size, num_workers, progress)
        if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
            inputs = _Inputs(images, self.image_transform)
            return self._predict_loader(inputs, batch_size, num_workers, progress, inputs.first_pixels)
        stream, keys = image_stream(images)
        probs, present, details = [], [], {name: [] for name in self.detail_names}
        for chunk in self._progress(chunked(stream, batch_size), progress):
            p, d, extra = self._score(self.collate([self.image_transform(to_pil(item)) for item in chunk]))
            probs.append(p)
            present.append(d)
            for name in details:
                details[name].append(extra.get(name, np.full(len(p), np.nan)))
        return self._prediction(probs, present, keys, details)

    def predict_entries(
        self, entries: Sequence, batch_size: int = 32, num_workers: int | None = None, progress: bool = False
    ) -> Prediction:
        """Judge the images of DataIGM index entries (:func:`detectors.data.build_index`), in order.

        Images are read and preprocessed by a ``DataLoader`` with ``num_workers`` processes (0: this process;
        None: sized to the host, none for a small pass or small images: :func:`detectors.data.one_pass_workers`);
        the prediction does not depend on it. An unreadable image gets NaN probabilities and no decision.
        """
        from detectors.data import ShardImageDataset, entry_pixels

        dataset = ShardImageDataset(entries, sorted({e.concept for e in entries}), self.image_transform)
        try:
            prediction = self._predict_loader(
                dataset, batch_size, num_workers, progress, lambda: entry_pixels(entries)
            )
        finally:
            dataset.close()
        prediction.keys = [e.uid for e in entries]
        return prediction

    def _predict_loader(
        self, dataset, batch_size: int, num_workers: int | None, progress: bool, image_pixels: Callable
    ) -> Prediction:
        """Judge a map-style dataset whose items are ``(input, ..., index)`` or None (an unreadable image),
        read by one ``DataLoader`` (a single pass: its workers end with it)."""
        import torch

        from detectors.data import one_pass_workers

        n = len(dataset)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=one_pass_workers(num_workers, n, batch_size, image_pixels),
            collate_fn=self._collate_indexed,
        )
        probs = np.full((n, len(self.concepts)), np.nan)
        present = np.zeros((n, len(self.concepts)), dtype=bool)
        read = np.zeros(n, dtype=bool)
        details = {name: np.full(n, np.nan) for name in self.detail_names}
        for batch in self._progress(loader, progress):
            if batch is None:
                continue
            items, index = batch
            p, d, extra = self._score(items)
            probs[index], present[index], read[index] = p, d, True
            for name in details:
                details[name][index] = extra.get(name, np.nan)
        prediction = Prediction(self.concepts, probs, present, unreadable=~read, details=details or None)
        _warn_invalid(prediction)
        return prediction

    def _collate_indexed(self, batch: list):
        batch = [item for item in batch if item is not None]
        if not batch:
            return None
        return self.collate([item[0] for item in batch]), np.array([item[-1] for item in batch])

    def _prediction(
        self, probs: list, present: list, keys: list[str] | None, details: dict[str, list] | None = None
    ) -> Prediction:
        n = len(self.concepts)
        probabilities = np.concatenate(probs) if probs else np.zeros((0, n))
        decisions = np.concatenate(present) if present else np.zeros((0, n), dtype=bool)
        per_image = {name: np.concatenate(v) if v else np.zeros(0) for name, v in (details or {}).items()}
        prediction = Prediction(self.concepts, probabilities, decisions, keys, details=per_image or None)
        _warn_invalid(prediction)
        return prediction

    @staticmethod
    def _progress(iterable, enabled: bool):
        if not enabled:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc="judging", unit="batch")


class _Inputs:
    """A sequence of judge inputs as a map-style dataset: ``(transform(image), index)``, each image read when indexed
    (in a ``DataLoader`` worker when there are workers)."""

    def __init__(self, items: Sequence, transform: Callable):
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.transform(to_pil(self.items[index])), index

    def first_pixels(self) -> int | None:
        """Width x height of the first image (it is loaded once more for this)."""
        if not len(self.items):
            return None
        image = to_pil(self.items[0])
        return image.width * image.height


def _device(device):
    import torch

    return torch.device(device)
