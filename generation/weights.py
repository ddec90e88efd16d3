"""Loading unlearned weights into a pipeline: UNet, transformer and text-encoder state dicts in any published layout.

Safetensors first; pickled files only through ``torch.load(weights_only=True)`` (a refused one is said to be no
checkpoint, or a pickle that needs code, by :mod:`dataigm.weights_files`; never how to load it unsafely). A UNet
file may use diffusers keys or the original CompVis/LDM keys (SD and SDXL, converted with diffusers' own converter); a
transformer file diffusers keys or the original SD3 (``joint_blocks``) or Flux (``double_blocks``) layout; a
text-encoder file the transformers keys (CLIP or T5) or the LDM ``cond_stage_model`` ones. A file whose keys fit
no known layout is refused with examples of the keys that were expected.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dataigm.weights_files import torch_load_safely

from .ldm_layout import ldm_name

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
LDM_UNET_PREFIX = "model.diffusion_model."
LDM_TEXT_PREFIXES = ("cond_stage_model.transformer.", "cond_stage_model.model.transformer.")
_LDM_UNET_ROOTS = ("input_blocks.", "middle_block.", "output_blocks.", "time_embed.", "out.")


def load_state_dict(path: str | Path) -> dict:
    """Tensors of a weights file; a Lightning-style ``{"state_dict": ...}`` wrapper is unwrapped."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Weights file {str(path)!r} does not exist")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"Weights file {path.name!r}: unknown format; valid: {', '.join(WEIGHT_SUFFIXES)}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except SafetensorError as err:
            raise ValueError(f"Weights file {path.name!r} is not a readable safetensors file: {err}") from None
    else:
        state = torch_load_safely(path, f"Weights file {path.name!r}")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"Weights file {path.name!r} does not hold a state dict")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def check_weights_file(path: str | Path) -> None:
    """Refuse a weights file that cannot be loaded, without reading its tensors.

    Safetensors: the header is parsed. Pickles: ``torch.load(weights_only=True, mmap=True)`` maps the
    file (the tensors are not read); an old non-zip pickle is loaded whole.

    Raises:
        ValueError: the file is missing, of an unknown format, unreadable or holds no tensors.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Weights file {str(path)!r} does not exist")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"Weights file {str(path)!r}: unknown format; valid: {', '.join(WEIGHT_SUFFIXES)}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                count = len(list(f.keys()))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"Weights file {str(path)!r} is not a readable safetensors file ({err})") from None
    else:
        state = torch_load_safely(path, f"Weights file {str(path)!r}", mmap=True)  # a pre-zip pickle: read whole
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"Weights file {str(path)!r} does not hold a state dict")
        count = sum(isinstance(v, torch.Tensor) for v in state.values())
    if not count:
        raise ValueError(f"Weights file {str(path)!r} holds no tensors")


def unet_layout(state: dict, model_keys: set[str]) -> str:
    """``"diffusers"`` or ``"ldm"`` (CompVis); raises with expected keys when neither fits."""
    keys = list(state)
    if any(k.startswith(LDM_UNET_PREFIX) for k in keys) or all(k.startswith(_LDM_UNET_ROOTS) for k in keys):
        return "ldm"
    stripped = {k.removeprefix("unet.") for k in keys}
    if stripped and stripped <= model_keys:
        return "diffusers"
    unknown = sorted(stripped - model_keys)[:3]
    examples = sorted(model_keys)[:2]
    raise ValueError(
        f"UNet weights fit no known layout: keys such as {unknown} are neither diffusers UNet keys "
        f"(e.g. {examples}) nor CompVis/LDM keys (e.g. '{LDM_UNET_PREFIX}input_blocks.0.0.weight')"
    )


def unet_state_for(unet, state: dict) -> dict:
    """``state`` in the diffusers key layout of ``unet`` (converting CompVis/LDM keys)."""
    model_keys = set(unet.state_dict())
    layout = unet_layout(state, model_keys)
    if layout == "diffusers":
        return {k.removeprefix("unet."): v for k, v in state.items()}
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    if not any(k.startswith(LDM_UNET_PREFIX) for k in state):
        state = {LDM_UNET_PREFIX + k: v for k, v in state.items()}
    given = [k for k in state if k.startswith(LDM_UNET_PREFIX)]
    base = unet.state_dict()
    try:
        names = {LDM_UNET_PREFIX + ldm_name(k, dict(unet.config)): k for k in base}
    except (KeyError, IndexError, ValueError):  # a UNet our map does not cover: convert the file alone
        names = {}
    if names and set(given) <= set(names):
        # Fill what the file lacks from the base UNet, convert the whole, keep the tensors the file gave.
        full = {ldm: base[key] for ldm, key in names.items()} | {k: state[k] for k in given}
        converted = convert_ldm_unet_checkpoint(full, dict(unet.config))
        return {names[k]: converted[names[k]] for k in given}
    try:
        converted = convert_ldm_unet_checkpoint(state, dict(unet.config))
    except KeyError as err:
        raise ValueError(
            f"CompVis/LDM UNet weights do not fit this UNet (no {err}); convert them to diffusers keys"
        ) from None
    if len(converted) < len(given):  # the converter skips keys it has no name for: refuse to drop weights silently
        raise ValueError(
            f"Only {len(converted)} of {len(given)} CompVis/LDM UNet tensors have a diffusers name for this UNet "
            "(is it a checkpoint of another architecture?)"
        )
    unknown = sorted(set(converted) - model_keys)[:3]
    if unknown:
        raise ValueError(f"Converted CompVis UNet weights do not fit this UNet (e.g. {unknown})")
    return converted


def text_encoder_state_for(text_encoder, state: dict, part: str = "text_encoder") -> dict:
    """``state`` in the transformers layout of ``text_encoder`` (CLIP, CLIP with projection or T5).

    LDM ``cond_stage_model`` keys are converted; a ``{part}.`` prefix (pipeline state dicts) is dropped.
    """
    model_keys = set(text_encoder.state_dict())
    if any(k.startswith(LDM_TEXT_PREFIXES) for k in state):
        from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint

        state = convert_ldm_clip_checkpoint(state)
    state = {k.removeprefix(f"{part}.").removeprefix("text_encoder."): v for k, v in state.items()}

    def fit(key: str) -> str:
        # transformers 5 dropped the "text_model." level of CLIPTextModel that published checkpoints use
        if key in model_keys:
            return key
        if key.removeprefix("text_model.") in model_keys:
            return key.removeprefix("text_model.")
        return f"text_model.{key}" if f"text_model.{key}" in model_keys else key

    state = {fit(k): v for k, v in state.items()}
    unknown = sorted(set(state) - model_keys)
    if unknown:
        raise ValueError(
            f"Text-encoder weights fit no known layout: keys such as {unknown[:3]} are neither keys of this "
            f"{type(text_encoder).__name__} (e.g. {sorted(model_keys)[:2]}) nor LDM keys "
            "('cond_stage_model.transformer.text_model...')"
        )
    return state


# The original (non-diffusers) transformer layouts, told apart by a key only they have, with diffusers' converter.
_ORIGINAL_TRANSFORMERS = {
    "flux": ("double_blocks.", "convert_flux_transformer_checkpoint_to_diffusers"),
    "sd3": ("joint_blocks.", "convert_sd3_transformer_checkpoint_to_diffusers"),
}


def transformer_state_for(transformer, state: dict, family: str) -> dict:
    """``state`` in the diffusers key layout of ``transformer`` (SD3 or Flux).

    Diffusers keys may carry a ``transformer.`` prefix; the original layouts (``model.diffusion_model.`` or bare
    ``double_blocks``/``joint_blocks`` keys) are converted with diffusers' converter, which needs a whole
    checkpoint: a partial one in the original layout is refused (convert it to diffusers keys first).
    """
    model_keys = set(transformer.state_dict())
    stripped = {k.removeprefix("transformer.").removeprefix(LDM_UNET_PREFIX): v for k, v in state.items()}
    if stripped and set(stripped) <= model_keys:
        return stripped
    marker, converter_name = _ORIGINAL_TRANSFORMERS.get(family, (None, None))
    if marker is None or not any(k.startswith(marker) for k in stripped):
        unknown = sorted(set(stripped) - model_keys)[:3]
        original = f" nor original {family} keys (e.g. '{marker}0...')" if marker else ""
        raise ValueError(
            f"Transformer weights fit no known layout: keys such as {unknown} are neither diffusers keys of this "
            f"transformer (e.g. {sorted(model_keys)[:2]}){original}"
        )
    from diffusers.loaders import single_file_utils

    try:
        converted = getattr(single_file_utils, converter_name)(dict(stripped))
    except (KeyError, IndexError, RuntimeError) as err:
        raise ValueError(
            f"Original-layout {family} transformer weights could not be converted ({type(err).__name__}: {err}); "
            "a partial checkpoint or another size: convert it to diffusers keys first"
        ) from None
    unknown = sorted(set(converted) - model_keys)[:3]
    if unknown:
        raise ValueError(f"Converted {family} transformer weights do not fit this transformer (e.g. {unknown})")
    return converted


def load_into(module, state: dict, what: str) -> int:
    """Copy ``state`` into ``module``; a partial state dict replaces only what it holds. Returns the count."""
    if not state:
        raise ValueError(f"{what} weights file holds no tensors")
    missing, unexpected = module.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{what} weights have keys the model lacks: {unexpected[:3]}")
    if missing:
        logger.info("%s weights replace %d of %d tensors", what, len(state), len(state) + len(missing))
    return len(state)
