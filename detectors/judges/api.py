"""The ``Judge`` API: per-concept probabilities and present/absent decisions for images.

Every judge (a trained timm judge or a baseline) turns one PIL image into a model input with
``image_transform`` (picklable, so it runs in ``DataLoader`` workers), batches inputs with ``collate``
and scores a batch with ``forward``. :meth:`Judge.predict` accepts PIL images, image tensors or arrays,
image files, a ``datasets`` dataset or a DataIGM root, and returns a :class:`Prediction`.

Trained judges are saved with ``timm.models.save_for_hf`` plus our keys in ``config.json`` (see
:func:`save_judge`) and loaded with :func:`load_judge` (``local-dir:…`` or ``hf-hub:…``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from detectors.judges.options import split_spec

logger = logging.getLogger(__name__)

JUDGE_FORMAT = "dataigm-judge/1"
# pretrained_cfg fields that still describe a trained judge; everything else inherited from the base
# model's tag (test_input_size, tag, paper_ids, origin_url, license, hf_hub_id, notes...) is dropped.
KEPT_PRETRAINED_CFG = (
    "architecture",
    "input_size",
    "fixed_input_size",
    "interpolation",
    "crop_pct",
    "crop_mode",
    "mean",
    "std",
    "num_classes",
    "pool_size",
    "first_conv",
    "classifier",
    "custom_load",
)
DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
_IMAGE_COLUMNS = ("png", "jpg", "jpeg", "webp", "image", "img")


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
    """

    concepts: list[str]
    probabilities: np.ndarray
    present: np.ndarray
    keys: list[str] | None = None
    valid: np.ndarray | None = None
    unreadable: np.ndarray | None = None

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
        """One dict per image: ``{"key"?, concept: {"probability", "present"}}``; both None without a judgement."""
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


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{data.dtype}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _to_pil(item: Any) -> Image.Image:
    """A PIL image, image file, (C,H,W) tensor in [0, 1] or uint8, or (H,W,C) uint8 array -> RGB PIL image."""
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, (str, Path)):
        with Image.open(item) as img:
            return img.convert("RGB")
    if isinstance(item, torch.Tensor):
        from torchvision.transforms.functional import to_pil_image

        if item.ndim != 3:
            raise ValueError(f"An image tensor must be (C, H, W); got shape {tuple(item.shape)}")
        if item.is_floating_point() and (item.min() < 0 or item.max() > 1):
            raise ValueError("A float image tensor must hold values in [0, 1] (un-normalised RGB)")
        return to_pil_image(item.detach().cpu()).convert("RGB")
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.dtype != np.uint8:
            raise ValueError(f"An image array must be (H, W, C) uint8; got {item.dtype} {item.shape}")
        return Image.fromarray(item).convert("RGB")
    raise ValueError(
        f"Cannot judge an object of type {type(item).__name__}; give PIL images, image tensors, image files, "
        "a datasets.Dataset or a DataIGM root"
    )


def _is_hf_dataset(obj: Any) -> bool:
    try:
        import datasets
    except ImportError:
        return False
    return isinstance(obj, (datasets.Dataset, datasets.IterableDataset))


def _image_column(dataset) -> str:
    import datasets

    features = dataset.features or {}
    for name in _IMAGE_COLUMNS:
        if name in features and isinstance(features[name], datasets.Image):
            return name
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            return name
    raise ValueError(f"The dataset has no image column; its columns: {', '.join(features) or 'unknown'}")


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _identity(image: Image.Image) -> Image.Image:
    return image


def default_collate_images(items: list):
    """Stack tensors; keep anything else as a list."""
    if items and isinstance(items[0], torch.Tensor):
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
        self.device = torch.device(device)
        self.image_transform: Callable[[Image.Image], Any] = _identity

    # -- to implement ----------------------------------------------------------------------------
    def forward(self, batch: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Score a collated batch: (B, C) probabilities, and (B, C) decisions or None to apply the thresholds."""
        raise NotImplementedError

    def collate(self, items: list) -> Any:
        return default_collate_images(items)

    def to(self, device: str | torch.device) -> Judge:
        self.device = torch.device(device)
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
            blob = json.dumps(payload, sort_keys=True, default=repr).encode()
            self._fingerprint = hashlib.sha256(blob).hexdigest()
        return self._fingerprint

    def _fingerprint_parts(self) -> dict:
        """What else decides the outputs. Default: the spec, and the weights of ``self.model`` when it has one.

        A judge without weights in ``self.model`` that reads other files must add their hashes here.
        """
        parts: dict[str, Any] = {"spec": self.spec}
        model = getattr(self, "model", None)
        if isinstance(model, torch.nn.Module):
            parts["weights_sha256"] = state_dict_sha256(model.state_dict())
        return parts

    # -- shared ------------------------------------------------------------------------------------
    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        thresholds = np.array([self.thresholds[c] for c in self.concepts])
        return probabilities >= thresholds[None, :]

    def _score(self, batch: Any) -> tuple[np.ndarray, np.ndarray]:
        probs, present = self.forward(batch)
        probs = np.asarray(probs, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            decisions = self.decide(probs) if present is None else np.asarray(present, dtype=bool)
        return probs, decisions  # Prediction turns decisions on invalid probabilities into False + valid=False

    def predict(
        self,
        images: Any,
        batch_size: int = 32,
        num_workers: int = 0,
        progress: bool = False,
    ) -> Prediction:
        """Judge ``images``: a PIL image, image tensor/array or file, a list of those, a ``datasets`` dataset,
        or the path of a DataIGM root (every split; use :meth:`predict_entries` to choose).

        Image tensors are un-normalised RGB, (C, H, W) or (N, C, H, W), float in [0, 1] or uint8; every
        input goes through the judge's own preprocessing.
        """
        if isinstance(images, (str, Path)) and Path(images).is_dir():
            from detectors.data import build_index

            return self.predict_entries(build_index(images), batch_size, num_workers, progress)
        keys: list[str] | None = None
        if _is_hf_dataset(images):
            column = _image_column(images)
            has_keys = "__key__" in (images.column_names or [])
            rows = images.select_columns([column, "__key__"] if has_keys else [column])
            keys = [] if has_keys else None
            stream = (self._remember_key(keys, row, column) for row in rows)
        elif isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4:
            stream = iter(images)  # a batch: (N, C, H, W) tensor or (N, H, W, C) array
        elif isinstance(images, (Image.Image, str, Path, torch.Tensor, np.ndarray)):
            stream = iter([images])
        elif isinstance(images, Iterable):
            stream = iter(images)
        else:
            raise ValueError(f"Cannot judge an object of type {type(images).__name__}")
        probs, present = [], []
        for chunk in self._progress(_chunks(stream, batch_size), progress):
            p, d = self._score(self.collate([self.image_transform(_to_pil(item)) for item in chunk]))
            probs.append(p)
            present.append(d)
        return self._prediction(probs, present, keys)

    @staticmethod
    def _remember_key(keys: list[str] | None, row: dict, column: str):
        if keys is not None:
            keys.append(row["__key__"])
        return row[column]

    def predict_entries(
        self, entries: Sequence, batch_size: int = 32, num_workers: int = 0, progress: bool = False
    ) -> Prediction:
        """Judge the images of DataIGM index entries (:func:`detectors.data.build_index`), in order.

        Images are read and preprocessed by a ``DataLoader`` (``num_workers`` processes); an unreadable
        image gets NaN probabilities and no decision.
        """
        from detectors.data import ShardImageDataset

        dataset = ShardImageDataset(entries, sorted({e.concept for e in entries}), self.image_transform)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=self._collate_indexed
        )
        probs = np.full((len(entries), len(self.concepts)), np.nan)
        present = np.zeros((len(entries), len(self.concepts)), dtype=bool)
        read = np.zeros(len(entries), dtype=bool)
        for batch in self._progress(loader, progress):
            if batch is None:
                continue
            items, index = batch
            p, d = self._score(items)
            probs[index], present[index], read[index] = p, d, True
        dataset.close()
        prediction = Prediction(self.concepts, probs, present, [e.uid for e in entries], unreadable=~read)
        _warn_invalid(prediction)
        return prediction

    def _collate_indexed(self, batch: list):
        batch = [item for item in batch if item is not None]
        if not batch:
            return None
        return self.collate([item[0] for item in batch]), np.array([item[3] for item in batch])

    def _prediction(self, probs: list, present: list, keys: list[str] | None) -> Prediction:
        n = len(self.concepts)
        probabilities = np.concatenate(probs) if probs else np.zeros((0, n))
        decisions = np.concatenate(present) if present else np.zeros((0, n), dtype=bool)
        prediction = Prediction(self.concepts, probabilities, decisions, keys)
        _warn_invalid(prediction)
        return prediction

    @staticmethod
    def _progress(iterable, enabled: bool):
        if not enabled:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc="judging", unit="batch")


class TimmJudge(Judge):
    """A trained judge: a timm model with one logit per concept, temperature-scaled, thresholded.

    Args:
        model: the timm model (``num_classes`` = number of concepts).
        concepts, temperatures, thresholds: per-concept calibration (probability = sigmoid(logit / T)).
        data_config: input size, mean/std, crop and interpolation of the eval transform.
        config: the judge's ``config.json`` keys (rule, dataset, metrics...), kept for reports and re-saving.
        amp: bf16/fp16 autocast on CUDA (faster, not bit-identical to float32).
    """

    kind = "timm"

    def __init__(
        self,
        model: torch.nn.Module,
        concepts: Sequence[str],
        temperatures: dict[str, float],
        thresholds: dict[str, float],
        data_config: dict,
        config: dict | None = None,
        spec: str = "",
        device: str | torch.device = "cpu",
        amp: bool = False,
    ):
        import timm.data

        super().__init__(concepts, thresholds, spec, str(device))
        self.amp = amp
        if model.num_classes != len(self.concepts):
            raise ValueError(
                f"The model has {model.num_classes} outputs but the judge names {len(self.concepts)} concepts"
            )
        self.model = model.eval().to(self.device)
        self.temperatures = {c: float(temperatures.get(c, 1.0)) for c in self.concepts}
        self.data_config = {k: _as_tuple(data_config[k]) for k in DATA_CONFIG_KEYS if k in data_config}
        self.config = dict(config or {})
        self.revision: str | None = None  # the resolved Hub commit of an hf-hub: judge
        self.image_transform = timm.data.create_transform(**self.data_config, is_training=False)

    def to(self, device: str | torch.device) -> TimmJudge:
        super().to(device)
        self.model.to(self.device)
        return self

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw (uncalibrated) logits of a preprocessed batch (bf16/fp16 autocast on CUDA when ``self.amp``)."""
        from detectors.training.features import autocast

        with torch.inference_mode(), autocast(self.device, self.amp):
            return self.model(batch.to(self.device, non_blocking=True)).float()

    def forward(self, batch: torch.Tensor) -> tuple[np.ndarray, None]:
        temperatures = torch.tensor([self.temperatures[c] for c in self.concepts], device=self.device)
        return torch.sigmoid(self.logits(batch) / temperatures).double().cpu().numpy(), None

    def describe(self) -> dict:
        out = super().describe()
        out.update(
            temperatures=self.temperatures,
            threshold_rule=self.config.get("threshold_rule"),
            architecture=self.config.get("architecture"),
            dataset=self.config.get("dataset"),
        )
        if self.revision is not None:
            out["revision"] = self.revision
        return out

    def _fingerprint_parts(self) -> dict:
        """The weights as loaded (so a judge fresh from training and the same judge loaded from its folder
        agree), the architecture, temperatures and input transform; for ``hf-hub:`` judges also the commit."""
        parts: dict[str, Any] = {
            "weights_sha256": state_dict_sha256(self.model.state_dict()),
            "architecture": self.config.get("architecture") or self.model.pretrained_cfg.get("architecture"),
            "temperatures": self.temperatures,
            "data_config": self.data_config,
        }
        if self.revision is not None:
            parts["revision"] = self.revision
        return parts

    def save(self, directory: str | Path) -> Path:
        """Save in timm's Hub format with this judge's keys (see :func:`save_judge`)."""
        extra = {k: v for k, v in self.config.items() if k in ("dataset", "metrics", "training", "class_names")}
        return save_judge(
            self.model,
            directory,
            self.concepts,
            self.temperatures,
            self.thresholds,
            self.config.get("threshold_rule", "unknown"),
            self.data_config,
            **extra,
        )


def save_judge(
    model: torch.nn.Module,
    directory: str | Path,
    concepts: Sequence[str],
    temperatures: dict[str, float],
    thresholds: dict[str, float],
    threshold_rule: str,
    data_config: dict,
    dataset: dict | None = None,
    metrics: dict | None = None,
    training: dict | None = None,
    class_names: dict | None = None,
) -> Path:
    """Write ``model.safetensors`` + ``config.json`` with ``timm.models.save_for_hf`` and our keys.

    ``config.json`` gets, next to timm's keys: ``judge_format``, ``concepts`` (also timm's ``label_names``),
    ``class_names``, ``temperatures``, ``thresholds``, ``threshold_rule``, ``dataset`` (name and manifest
    sha256), ``metrics`` and ``training``. The base model's pretrained_cfg is reduced to the fields that
    still hold (:data:`KEPT_PRETRAINED_CFG`), with the judge's input size, so e.g. an inherited
    ``test_input_size``, ``tag``, ``paper_ids`` or ``origin_url`` is not carried over.
    """
    from timm.models import save_for_hf

    directory = Path(directory)
    concepts = list(concepts)
    original_cfg = model.pretrained_cfg
    cleaned = {k: v for k, v in original_cfg.items() if k in KEPT_PRETRAINED_CFG}
    cleaned.update({k: data_config[k] for k in DATA_CONFIG_KEYS if k in data_config})
    cleaned["num_classes"] = len(concepts)
    ours = {
        "judge_format": JUDGE_FORMAT,
        "label_names": concepts,
        "concepts": concepts,
        "class_names": class_names or {},
        "temperatures": {c: float(temperatures[c]) for c in concepts},
        "thresholds": {c: float(thresholds[c]) for c in concepts},
        "threshold_rule": str(threshold_rule),
        "dataset": dataset or {},
        "metrics": metrics or {},
        "training": training or {},
    }
    model.pretrained_cfg = cleaned
    try:
        save_for_hf(
            model,
            str(directory),
            model_config=ours,
            safe_serialization=True,
            data_config={k: data_config[k] for k in DATA_CONFIG_KEYS if k in data_config},
        )
    finally:
        model.pretrained_cfg = original_cfg
    logger.info("saved judge (%s) to %s", ", ".join(concepts), directory)
    return directory


# Weight files a timm Hub folder may hold, in the order timm's loader prefers them.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _hub_file(repo: str, revision: str | None, filename: str, spec: str) -> Path | None:
    """A file of a Hub repository (through huggingface_hub's cache); None when the repository has no such file."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo, filename, revision=revision))
    except LocalEntryNotFoundError as err:  # offline and not cached (a subclass of EntryNotFoundError)
        raise ValueError(f"Cannot get {filename} of judge {spec!r}: {_first_line(err)}") from None
    except EntryNotFoundError:
        return None
    except OSError as err:  # unknown repository or revision, network errors
        raise ValueError(f"Cannot get {filename} of judge {spec!r}: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _judge_config_file(kind: str, location: str, spec: str) -> tuple[Path, str | None]:
    """``(config.json, Hub commit or None)`` of a ``local-dir:``/``hf-hub:`` judge."""
    if kind == "local-dir":
        config = Path(location) / "config.json"
        if not config.is_file():
            raise ValueError(f"{location!r} is not a judge folder: {config} is missing")
        return config, None
    repo, _, revision = location.partition("@")
    config = _hub_file(repo, revision or None, "config.json", spec)
    if config is None:
        raise ValueError(f"Judge {spec!r}: the repository has no config.json (is it a timm model?)")
    return config, config.parent.name  # huggingface_hub's cache layout: .../snapshots/<commit>/<file>


def _judge_weights_file(kind: str, location: str, spec: str, config: Path) -> Path:
    """The weights file next to ``config`` (timm's preference order)."""
    if kind == "local-dir":
        found = (config.parent / name for name in WEIGHT_FILES if (config.parent / name).is_file())
    else:
        repo, _, revision = location.partition("@")
        found = (w for name in WEIGHT_FILES if (w := _hub_file(repo, revision or None, name, spec)))
    weights = next(found, None)
    if weights is None:
        where = config.parent if kind == "local-dir" else f"Judge {spec!r}:"
        raise ValueError(f"{where} has no weights file ({' or '.join(WEIGHT_FILES)})")
    return weights


def _read_judge_config(path: Path, spec: str) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the judge folder is damaged") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a {type(config).__name__}, not a JSON object; the judge folder is damaged")
    for key in ("concepts", "temperatures", "thresholds"):
        if key not in config:
            raise ValueError(f"{spec} is a timm model but not a dataigm judge ({path} has no {key!r})")
    if not config.get("architecture"):
        raise ValueError(f"{path} names no 'architecture'; the judge folder is damaged")
    return config


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (safetensors, or a torch file read with ``weights_only``)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load

            return load(path.read_bytes())
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # each format raises its own error types on damaged bytes
        raise ValueError(f"{path} cannot be read as judge weights ({_first_line(err)})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return state


def load_timm_judge(spec: str, device: str | None = None) -> TimmJudge:
    """Load a judge saved by :func:`save_judge`: ``local-dir:PATH`` or ``hf-hub:ORG/NAME[@REVISION]``.

    Raises:
        ValueError: a missing or damaged ``config.json`` or weights file (named in the message), weights that
            do not fit the architecture, or a Hub judge that cannot be fetched.
    """
    import timm

    kind, location = split_spec(spec)
    config_path, revision = _judge_config_file(kind, location, spec)
    config = _read_judge_config(config_path, spec)
    weights_path = _judge_weights_file(kind, location, spec, config_path)
    state = _read_weights(weights_path)
    source = location if kind == "hf-hub" else str(config_path.parent)
    try:
        # the architecture and pretrained_cfg from config.json; the weights are the ones read above
        model = timm.create_model(f"{kind}:{source}", pretrained=False)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{config_path}: cannot build the model it describes ({_first_line(err)})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(
            f"{weights_path} does not fit the architecture {config['architecture']!r} of {config_path} "
            f"({_first_line(err)})"
        ) from None
    data_config = {k: model.pretrained_cfg[k] for k in DATA_CONFIG_KEYS if k in model.pretrained_cfg}
    judge = TimmJudge(
        model,
        config["concepts"],
        config["temperatures"],
        config["thresholds"],
        data_config,
        config=config,
        spec=spec,
        device=device or default_device(),
    )
    judge.revision = revision
    return judge


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_nudenet(spec: str, device: str | None = None) -> Judge:
    from detectors.judges.nudenet import NudeNetJudge

    return NudeNetJudge.from_spec(spec)


def _load_clip(spec: str, device: str | None = None) -> Judge:
    from detectors.judges.clip_zeroshot import ClipZeroShotJudge

    return ClipZeroShotJudge.from_spec(spec, device or default_device())


def _load_imagenet(spec: str, device: str | None = None) -> Judge:
    from detectors.judges.imagenet import ImageNetJudge

    return ImageNetJudge.from_spec(spec, device or default_device())


# Judge kinds by spec prefix. A loader takes the whole spec and a device.
JUDGE_KINDS: dict[str, Callable[[str, str | None], Judge]] = {
    "local-dir": load_timm_judge,
    "hf-hub": load_timm_judge,
    "nudenet": _load_nudenet,
    "clip-zeroshot": _load_clip,
    "imagenet": _load_imagenet,
}
_SPEC_HELP = (
    "local-dir:PATH, hf-hub:ORG/NAME[@REV], nudenet[:preset=paper6|unlearndiffatk9,threshold=0.6], "
    "clip-zeroshot:model=PATH_OR_ID,target=TEXT,anchor=TEXT, imagenet:model=NAME,classes=ID[|ID...]"
)


def load_judge(spec: str, device: str | None = None) -> Judge:
    """Load a judge from its spec (see :mod:`detectors.judges.options`); a bare folder path means ``local-dir:``.

    Raises:
        ValueError: an unknown kind (the message lists the known ones) or bad options.
    """
    spec = str(spec)
    kind, _ = split_spec(spec)
    if kind not in JUDGE_KINDS and Path(spec).is_dir():
        spec, kind = f"local-dir:{spec}", "local-dir"
    if kind not in JUDGE_KINDS:
        raise ValueError(
            f"Unknown judge kind {kind!r} in {spec!r}; known kinds: {', '.join(JUDGE_KINDS)} ({_SPEC_HELP})"
        )
    return JUDGE_KINDS[kind](spec, device)
