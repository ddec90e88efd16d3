"""Pipeline families: what each kind of diffusers text-to-image pipeline has, and which call options it takes.

A family is found from the pipeline's class (``_class_name`` in its ``model_index.json``) or set in the model
spec (``family: flux``). It decides which parts a spec may replace (a UNet or a transformer; which text
encoders), the default dtype, and how the job's sampling options apply:

=========  ==============================  ===========  =======================  ===============  =========
family     pipeline class                  denoiser     text encoders            guidance         negative
=========  ==============================  ===========  =======================  ===============  =========
``sd``     StableDiffusionPipeline         unet         text_encoder             CFG scale        yes
``sdxl``   StableDiffusionXLPipeline       unet         text_encoder, _2         CFG scale        yes
``sd3``    StableDiffusion3Pipeline        transformer  text_encoder, _2, _3     CFG scale        yes
``flux``   FluxPipeline                    transformer  text_encoder, _2 (T5)    distilled        no
=========  ==============================  ===========  =======================  ===============  =========

Flux is guidance-distilled: its ``guidance_scale`` is an input of the transformer, not a classifier-free
guidance scale, so the job's and the prompts' CFG scales do not apply to it (documented drop); it takes the
spec's ``guidance`` or :attr:`Family.default_guidance`. It renders without a negative prompt: one given to a
Flux model is an error. SD3 and Flux sample with flow matching: the DDPM-style ``scheduler`` names are refused.

Light: importing this module loads no torch or diffusers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    """What a pipeline family has and accepts.

    Attributes:
        name: the family's name in specs (``family: sdxl``).
        pipelines: diffusers pipeline class names of the family.
        denoiser: the pipeline attribute that denoises (``unet`` or ``transformer``).
        text_encoders: the pipeline's text-encoder attributes, each replaceable by a spec key of that name.
        dtype: the default dtype on GPU (the precision the family's weights are published and trained in).
        negative_prompt: whether the pipeline uses a negative prompt.
        distilled_guidance: ``guidance_scale`` is an embedded input (Flux), not a classifier-free guidance scale.
        default_guidance: the guidance of a distilled model whose spec sets none (the pipeline's default).
        schedulers: whether the DDPM-style scheduler names of :data:`dataigm.sampling.SCHEDULERS` apply.
    """

    name: str
    pipelines: tuple[str, ...]
    denoiser: str
    text_encoders: tuple[str, ...]
    dtype: str
    negative_prompt: bool = True
    distilled_guidance: bool = False
    default_guidance: float | None = None
    schedulers: bool = True


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sd", ("StableDiffusionPipeline",), "unet", ("text_encoder",), "fp16"),
        Family("sdxl", ("StableDiffusionXLPipeline",), "unet", ("text_encoder", "text_encoder_2"), "fp16"),
        Family(
            "sd3",
            ("StableDiffusion3Pipeline",),
            "transformer",
            ("text_encoder", "text_encoder_2", "text_encoder_3"),
            "bf16",
            schedulers=False,
        ),
        Family(
            "flux",
            ("FluxPipeline",),
            "transformer",
            ("text_encoder", "text_encoder_2"),
            "bf16",
            negative_prompt=False,
            distilled_guidance=True,
            default_guidance=3.5,
            schedulers=False,
        ),
    )
}
# Every part a spec may replace, over all families (the spec's keys of these names).
DENOISERS = ("unet", "transformer")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")


def family_named(name: str, who: str = "The model") -> Family:
    """The family called ``name``; raises with the valid names."""
    if name not in FAMILIES:
        raise ValueError(f"{who}: unknown family {name!r}; valid: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of_class(class_name: str) -> Family | None:
    """The family of a diffusers pipeline class name, or None when it is none of ours."""
    return next((f for f in FAMILIES.values() if class_name in f.pipelines), None)


def model_index(ref: str, revision: str | None = None) -> dict:
    """The ``model_index.json`` of a pipeline folder or Hub pipeline ({} when it cannot be read).

    A Hub pipeline's index comes from the cache, else (online) is downloaded: a small file the pipeline's
    loading needs anyway. The class is checked again once the pipeline is loaded.
    """
    path = Path(ref)
    if path.is_dir():
        index = path / "model_index.json"
    else:
        from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(ref, "model_index.json", revision=revision)
            if not isinstance(cached, str) and not constants.HF_HUB_OFFLINE:
                cached = hf_hub_download(ref, "model_index.json", revision=revision)
        except Exception:  # noqa: BLE001 - not a repo id, unreachable, private: loading will say why
            return {}
        if not isinstance(cached, str):
            return {}
        index = Path(cached)
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def pipeline_class(ref: str, revision: str | None = None) -> str | None:
    """``_class_name`` of the pipeline's ``model_index.json``; None when it cannot be read."""
    return model_index(ref, revision).get("_class_name")


def absent_components(index: dict) -> tuple[str, ...]:
    """Components a pipeline was saved without (``[null, null]`` in its index, e.g. SD3 without T5-XXL):
    diffusers loads such a folder only when the call passes each of them as None."""
    return tuple(k for k, v in index.items() if not k.startswith("_") and v == [None, None])


def resolve_family(spec, class_name: str | None) -> Family | None:
    """The family of ``spec``: its ``family`` key, checked against the pipeline class when it is known.

    Raises:
        ValueError: the spec's family contradicts the pipeline class, or the class is of no family and the
            spec names none.
    """
    found = family_of_class(class_name) if class_name else None
    who = f"Model {spec.label!r}"
    if spec.family is not None:
        named = family_named(spec.family, who)
        if found is not None and found is not named:
            raise ValueError(
                f"{who}: family {spec.family!r} does not match its pipeline {class_name} (family {found.name!r}); "
                "remove 'family' or fix it"
            )
        return named
    if class_name and found is None:
        known = ", ".join(f"{c} ({f.name})" for f in FAMILIES.values() for c in f.pipelines)
        raise ValueError(
            f"{who}: pipeline class {class_name} is of no known family ({known}); "
            f"set 'family' to one of {', '.join(FAMILIES)} if it works like one of them"
        )
    return found


def check_spec_for_family(spec, family: Family, job_negative_prompt: str | None = None) -> None:
    """Refuse parts and options that ``family`` does not have, naming what it has instead.

    Args:
        spec: the model spec.
        family: its family.
        job_negative_prompt: the job's negative prompt (it applies to every spec that sets none).
    """
    who = f"Model {spec.label!r} ({family.name})"
    for part in DENOISERS:
        if getattr(spec, part) is not None and part != family.denoiser:
            raise ValueError(
                f"{who}: has no {part}; its denoiser is the {family.denoiser}: give the weights as "
                f"'{family.denoiser}' (a state dict, a folder or a Hub reference)"
            )
    for part in TEXT_ENCODERS:
        if getattr(spec, part) is not None and part not in family.text_encoders:
            raise ValueError(f"{who}: has no {part}; its text encoders are {', '.join(family.text_encoders)}")
    if spec.scheduler is not None and not family.schedulers:
        raise ValueError(
            f"{who}: scheduler {spec.scheduler!r} (from its spec or the job's scheduler) does not apply: the family "
            "samples with flow matching (its own scheduler); set schedulers in the specs of the other models instead"
        )
    if not family.negative_prompt:
        negative = spec.negative_prompt if spec.negative_prompt is not None else job_negative_prompt
        if negative:
            source = "its spec" if spec.negative_prompt else "the job"
            raise ValueError(
                f"{who}: has no negative prompt (guidance-distilled), but {source} gives {negative!r}; "
                "remove it, or set negative_prompt: '' in this model's spec to override the job's"
            )


def check_family(spec, job_negative_prompt: str | None = None) -> Family | None:
    """Before loading: the family of ``spec`` from its pipeline's ``model_index.json``, and its parts and options.

    Returns None (nothing checked yet) for a toy model, or for a Hub pipeline not in the cache with no
    ``family`` key: loading checks it then.
    """
    if spec.is_toy:
        return None
    family = resolve_family(spec, pipeline_class(spec.weights_base, spec.revision))
    if family is not None:
        check_spec_for_family(spec, family, job_negative_prompt)
    return family
