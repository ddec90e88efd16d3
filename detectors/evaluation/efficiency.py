"""Efficiency of an unlearned model: which parameters changed against the base model, checkpoint size,
and the runtime its authors report (supplied in the evaluation config).

The parameters compared are the denoiser's (the UNet of SD and SDXL, the transformer of SD3 and Flux) and
every text encoder's the pipeline family has; the VAE is never unlearned."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch


def changed_parameters(base: dict, unlearned: dict, depth: int = 2, atol: float = 0.0) -> dict:
    """Share of changed parameter elements, in total and per module prefix of ``depth`` name parts.

    Args:
        base, unlearned: ``{component: module}`` (e.g. ``{"unet": ..., "text_encoder": ...}``).
        depth: how many dotted name parts make a module group (``unet.down_blocks`` at 2).
        atol: differences up to this are "unchanged" (0: any change counts).
    """
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # group -> [changed, total]
    for component, module in base.items():
        other = unlearned[component].state_dict()
        for name, tensor in module.state_dict().items():
            group = ".".join([component, *name.split(".")][:depth])
            changed = (
                int((tensor.float() - other[name].float()).abs().gt(atol).sum()) if name in other else tensor.numel()
            )
            totals[group][0] += changed
            totals[group][1] += tensor.numel()
    changed_all = sum(c for c, _ in totals.values())
    total_all = sum(t for _, t in totals.values())
    return {
        "share_changed": changed_all / total_all if total_all else 0.0,
        "changed": changed_all,
        "total": total_all,
        "by_module": {
            g: {"share_changed": c / t, "changed": c, "total": t} for g, (c, t) in sorted(totals.items()) if c
        },
    }


def checkpoint_bytes(paths: list[str | None]) -> int:
    """Bytes on disk of the unlearned parts (files, or every file of a folder)."""
    size = 0
    for path in paths:
        if path is None or not Path(path).exists():
            continue
        p = Path(path)
        size += p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return size


def compared_parts(loaded) -> list[str]:
    """The parts of a loaded model whose parameters are compared: its denoiser and text encoders."""
    family = loaded.family
    return [p for p in (family.denoiser, *family.text_encoders) if getattr(loaded.pipe, p, None) is not None]


def model_efficiency(spec, base_spec, runtime_s: float | None = None) -> dict:
    """Parameters changed, checkpoint size and supplied runtime of ``spec`` against ``base_spec``.

    Raises:
        ValueError: the two models are of different pipeline families (their parameters cannot be paired).
    """
    from generation.pipeline import load_pipeline

    if spec.is_toy:  # the toy world draws; it has no parameters to compare
        return {
            "share_changed": None,
            "checkpoint_bytes": 0,
            "runtime_s": runtime_s,
            "note": "toy model: no parameters",
        }
    with torch.no_grad():
        base = load_pipeline(base_spec)
        model = load_pipeline(spec)
        if base.family is not model.family:
            raise ValueError(
                f"Model {spec.label!r} ({model.family.name}) and the original {base_spec.label!r} "
                f"({base.family.name}) are of different families: their parameters cannot be compared"
            )
        parts = compared_parts(base)
        report = changed_parameters(
            {p: getattr(base.pipe, p) for p in parts}, {p: getattr(model.pipe, p) for p in parts}
        )
    files = [spec.unet, spec.transformer, spec.text_encoder, spec.text_encoder_2, spec.text_encoder_3]
    report["checkpoint_bytes"] = checkpoint_bytes([*files, spec.lora, spec.pipeline])
    report["parts"] = parts
    report["runtime_s"] = runtime_s
    return report
