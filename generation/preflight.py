"""Checks of a generation job's inputs that run before anything is written.

Every deterministic error a job could hit (an output path that cannot be written, a device that is
not there, a model folder or Hub id that cannot be found, a weights file that cannot be read) is
found here and raised as one ``ValueError`` line naming the bad value, so that a failed start leaves
no dataset root, reservation or card behind.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from dataigm.devices import resolve_device

from .families import DENOISERS, TEXT_ENCODERS, check_family
from .spec import ModelSpec, warn_unknown_method
from .weights import WEIGHT_SUFFIXES, check_weights_file

logger = logging.getLogger(__name__)


def check_out(out: str) -> None:
    """``out`` is a folder (or can become one) that this process can write to."""
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: give a folder for the dataset root")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--out {out} cannot be created: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):  # a real write: permissions, read-only mounts, root users
            pass
    except OSError as err:
        raise ValueError(f"--out {out} cannot be written: {existing} is not writable ({err.strerror})") from None


def check_device(device: str) -> None:
    """``device`` names a device this machine has (``auto`` always does); see :func:`dataigm.devices.resolve_device`."""
    if device != "auto":
        resolve_device(device)


def _check_hub(what: str, ref: str, revision: str | None = None, filename: str | None = None) -> None:
    """``ref`` (``org/name[/subfolder]``) is a Hub model that can be loaded: cached when offline, else existing."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    parts = ref.split("/")
    repo, subfolder = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        validate_repo_id(repo)
    except HFValidationError:
        raise ValueError(
            f"{what} {ref!r} does not exist: it is neither a local path nor a Hub id (org/name)"
        ) from None
    if constants.HF_HUB_OFFLINE:
        from huggingface_hub import try_to_load_from_cache

        if filename is not None:
            cached = try_to_load_from_cache(
                repo, f"{subfolder}/{filename}" if subfolder else filename, revision=revision
            )
            found = isinstance(cached, str)
        else:
            found = (Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))).is_dir()
        if not found:
            raise ValueError(
                f"{what} {ref!r} is not a local path, and the Hub model is not in the local cache "
                "(HF_HUB_OFFLINE is set): download it first or give a folder"
            )
        return
    from huggingface_hub import repo_exists

    try:
        exists = repo_exists(repo)
    except Exception:  # noqa: BLE001 - the Hub is unreachable: loading will try (and say) for itself
        logger.info("could not reach the Hub to check %s %r", what, ref)
        return
    if not exists:
        raise ValueError(
            f"{what} {ref!r} is not a local path, and the Hub has no model {repo!r} "
            "(or it is private: log in with `hf auth login`)"
        )


def _check_pipeline_ref(what: str, ref: str, revision: str | None) -> None:
    path = Path(ref)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{what} {ref!r} is a file: give a diffusers pipeline folder (with model_index.json)")
        if not (path / "model_index.json").is_file():
            raise ValueError(f"{what} {ref!r} is a folder without model_index.json: not a diffusers pipeline")
        return
    _check_hub(what, ref, revision, "model_index.json")


def _check_part_ref(what: str, ref: str, lora: bool) -> None:
    """A UNet/text-encoder/LoRA reference: a weights file, a model folder or a Hub reference."""
    path = Path(ref)
    if path.is_file() or ref.endswith(WEIGHT_SUFFIXES):
        try:
            check_weights_file(path)
        except ValueError as err:
            raise ValueError(f"{what}: {err}") from None
        return
    if path.is_dir():
        if lora:  # diffusers finds the LoRA file in the folder by itself
            return
        if not (path / "config.json").is_file():
            raise ValueError(f"{what} {ref!r} is a folder without config.json: not a model folder")
        return
    _check_hub(what, ref, None, None if lora else "config.json")


def check_model(spec: ModelSpec) -> None:
    """Every path and Hub id of ``spec`` can be loaded (toy models have none)."""
    if spec.is_toy:
        return
    who = f"Model {spec.label!r}:"
    _check_pipeline_ref(f"{who} {'pipeline' if spec.pipeline else 'base'}", spec.weights_base, spec.revision)
    for part in (*DENOISERS, *TEXT_ENCODERS, "lora"):
        ref = getattr(spec, part)
        if ref is not None:
            _check_part_ref(f"{who} {part}", ref, lora=part == "lora")


def check_inputs(cfg, specs: list[ModelSpec]) -> None:
    """All the checks of a job that need no rendering: output folder, device, models; warns on unknown methods."""
    check_out(cfg.out)
    if cfg.distributor == "local":  # Ray workers have devices of their own
        check_device(cfg.device)
    for spec in specs:
        check_model(spec)
        check_family(spec, cfg.negative_prompt)
        warn_unknown_method(spec)
