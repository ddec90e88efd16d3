"""Trained judges: a timm model with one logit per concept, temperature-scaled and thresholded.

Saved with ``timm.models.save_for_hf`` plus our keys in ``config.json`` (:func:`save_judge`); loaded from
a folder (``local-dir:PATH``) or the Hub (``hf-hub:ORG/NAME[@REVISION]``), the two judge kinds this module
registers. torch and timm are imported inside the functions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dataigm.devices import resolve_device
from dataigm.identity import state_dict_sha256
from dataigm.weights_files import torch_load_safely
from detectors.judges.base import Judge
from detectors.judges.options import split_spec
from detectors.judges.registry import register_judge

if TYPE_CHECKING:
    import torch

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
        import torch

        from detectors.judges.model import autocast

        with torch.inference_mode(), autocast(self.device, self.amp):
            return self.model(batch.to(self.device, non_blocking=True)).float()

    def forward(self, batch: torch.Tensor) -> tuple[np.ndarray, None]:
        import torch

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
        state = torch_load_safely(path, str(path))  # a pickle that needs code is named, never run
    except ValueError as err:
        if str(err).startswith(f"{path} cannot be read safely"):
            raise
        raise ValueError(f"{path} cannot be read as judge weights ({_first_line(err)})") from None
    except Exception as err:  # each format raises its own error types on damaged bytes
        raise ValueError(f"{path} cannot be read as judge weights ({_first_line(err)})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return state


# decorators apply bottom-up: local-dir is registered first
@register_judge("hf-hub", help="a trained judge on the Hugging Face Hub", example="hf-hub:ORG/NAME[@REVISION]")
@register_judge("local-dir", help="a trained judge folder (timm's Hub format)", example="local-dir:runs/judge/judge")
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
        device=resolve_device(device),
    )
    judge.revision = revision
    return judge


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
