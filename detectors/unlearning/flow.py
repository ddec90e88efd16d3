"""``dataigm evaluate``: images (generated or given) -> the five aspects per concept and model -> report.

Each result is cached under ``<out>/cache`` with a fingerprint of its inputs, so a half-finished run
resumes where it stopped and a re-run with the same inputs rebuilds the same report.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from dataigm.files import atomic_write_json
from dataigm.prompts import build_prompts, parse_kinds, subsample, write_prompts

from . import aspects
from .config import EvalConfig
from .images import EvalImage, from_paper_layout, from_shards

logger = logging.getLogger(__name__)


class Cache:
    """JSON results keyed by name, valid while their inputs' fingerprint is unchanged."""

    def __init__(self, folder: Path):
        self.folder = folder

    def get_or_compute(self, name: str, fingerprint: str, compute: Callable[[], dict]) -> dict:
        path = self.folder / f"{name}.json"
        if path.exists():
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("fingerprint") == fingerprint:
                return cached["result"]
        result = compute()
        atomic_write_json(path, {"fingerprint": fingerprint, "result": result})
        return result


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


# ---------------------------------------------------------------- images


def eval_prompts(cfg: EvalConfig, registry) -> list[str]:
    """Write the prompts to render (sets, perturbations, attack files) and return the JSONL paths."""
    from .perturb import perturb_prompts

    paths = []
    for concept_id in cfg.concepts:
        concept = registry.get(concept_id)
        records = []
        for kind in parse_kinds([k for k in cfg.kinds if k != "replace" or concept.replacements], concept):
            made = build_prompts(concept, [kind], registry=registry)
            records += subsample(made, cfg.max_prompts)
        if cfg.attacks:
            records += perturb_prompts(select_forget(records), concept, cfg.attacks, seed=cfg.attack_seed)
        path = Path(cfg.out) / "prompts" / f"{concept_id}.jsonl"
        write_prompts(records, path)
        paths.append(str(path))
    for attack_file in cfg.attack_files:
        paths.append(attack_file)
    return paths


def select_forget(records):
    return [r for r in records if r.kind == "forget"]


def collect_images(cfg: EvalConfig, registry) -> tuple[list[EvalImage], list[str], str]:
    """The evaluation's images, the model names (original first) and the original's name."""
    if cfg.paper_layout is not None:
        images = []
        for concept_id in cfg.concepts:
            prompts = _paper_prompts(cfg, concept_id)
            images += from_paper_layout(cfg.paper_layout, cfg.paper_tasks[concept_id], concept_id, prompts)
        models = sorted({im.model for im in images})
        original = cfg.original or "ORG"
    else:
        from generation.job import JobConfig
        from generation.runner import run_job

        root = cfg.images or str(Path(cfg.out) / "images")
        if cfg.models:
            job = JobConfig(
                out=root, models=cfg.models, prompt_files=eval_prompts(cfg, registry), images_per_prompt=cfg.images_per_prompt,
                steps=cfg.steps, guidance=cfg.guidance, height=cfg.height, width=cfg.width, batch_size=cfg.batch_size,
                device=cfg.device, base_seed=cfg.base_seed, test_fraction=0.0, progress=cfg.progress, concepts_dir=cfg.concepts_dir,
            )  # fmt: skip
            summary = run_job(job)
            if not summary.complete:
                raise ValueError("Generation is incomplete:\n" + summary.text())
            models = [s.label for s in job.model_specs()]
        images = [im for im in from_shards(root) if im.concept in cfg.concepts]
        if not cfg.models:
            models = sorted({im.model for im in images})
        original = cfg.original or (models[0] if cfg.models else _original_of(models))
    if original not in {im.model for im in images}:
        raise ValueError(
            f"No images of the original model {original!r}; models found: {', '.join(sorted({im.model for im in images}))}"
        )
    ordered = [original, *[m for m in models if m != original]]
    return images, ordered, original


def _original_of(models: list[str]) -> str:
    """The original model among generated images: the one named after method ORG."""
    candidates = [m for m in models if m.startswith("ORG")]
    if len(candidates) != 1:
        raise ValueError(f"Say which model is the original with 'original'; models found: {', '.join(models)}")
    return candidates[0]


def _paper_prompts(cfg: EvalConfig, concept_id: str) -> dict | None:
    """``{"forget": {sub: [..]}, "remove": {sub: [..]}}`` from IGMU forgot.json/retain.json files."""
    files = cfg.paper_prompts.get(concept_id)
    if not files:
        return None
    from dataigm.prompt_import import import_igmu

    records = import_igmu(files).get(concept_id, [])
    out: dict[str, dict[str, list[str]]] = {}
    for r in records:
        out.setdefault(r.kind, {}).setdefault(r.subtheme or "-", []).append(r.text)
    return out


# ---------------------------------------------------------------- aspects


def evaluate(cfg: EvalConfig) -> tuple[dict, list[EvalImage]]:
    """Run the evaluation; returns the report dict and the images it looked at."""
    from dataigm.concepts import load_registry
    from detectors.judge import load_judge

    registry = load_registry([d for d in (cfg.concepts_dir or "").split(":") if d])
    images, models, original = collect_images(cfg, registry)
    judge = load_judge(cfg.judge, device=_device(cfg.device))
    cache = Cache(Path(cfg.out) / "cache")
    backbones = _Backbones(cfg)
    results: dict = {}
    for concept_id in cfg.concepts:
        concept = registry.get(concept_id)
        abstract = concept.category.split("/")[1] == "abstract"
        of_concept = [im for im in images if im.concept == concept_id]
        reference = [im for im in of_concept if im.model == original]
        results[concept_id] = {}
        for model in models:
            mine = [im for im in of_concept if im.model == model]
            keys = sorted(im.key for im in mine)
            ref_keys = sorted(im.key for im in reference)
            base = (concept_id, model, cfg.judge)
            steps = {
                "forgetting": (partial(aspects.forgetting, mine, judge, concept_id), (keys,)),
                "robustness": (partial(aspects.robustness, mine, judge, concept_id), (keys,)),
                "csdr": (
                    partial(aspects.csdr, mine, reference, backbones.get("clip")),
                    (keys, ref_keys, cfg.clip_model),
                ),
                "lpips": (
                    partial(aspects.lpips, mine, reference, backbones.get("lpips"), abstract),
                    (keys, ref_keys, cfg.lpips_net, cfg.lpips_random_backbone),
                ),
                "fid": (
                    partial(aspects.image_quality, mine, reference, backbones.get("fid"), abstract),
                    (keys, ref_keys, cfg.fid_feature, cfg.fid_weights),
                ),
            }
            if cfg.clip_model is None:
                steps["csdr"] = (partial(_skipped, "no clip_model configured"), ())
            if cfg.lpips_net is None:
                steps["lpips"] = (partial(_skipped, "no lpips_net configured"), ())
            if concept.human and cfg.person_detector:
                steps["person_rate"] = (
                    partial(aspects.person_rate, mine, backbones.get("person")),
                    (keys, cfg.person_detector),
                )
            row = {}
            for name, (compute, inputs) in steps.items():
                row[name] = cache.get_or_compute(
                    f"{concept_id}/{model}/{name}", fingerprint(name, base, inputs), compute
                )
            results[concept_id][model] = row
    efficiency = _efficiency(cfg, models, original, cache)
    report = {"models": models, "original": original, "concepts": results, "efficiency": efficiency}
    return report | {"judge": judge.describe(), "config": cfg.to_dict(), "versions": _versions()}, images


def run_evaluation(cfg: EvalConfig) -> dict[str, Path]:
    """Evaluate and write the report into ``cfg.out``; returns the written files."""
    from .report import write_report

    report, images = evaluate(cfg)
    return write_report(report, cfg.out, images, cfg.grid_samples)


def _versions() -> dict[str, str]:
    from dataigm.env import environment_report

    report = environment_report()
    return {k: v for k, v in report.items() if k not in ("platform", "devices")}


def _skipped(reason: str) -> dict:
    return {"skipped": reason}


def _efficiency(cfg: EvalConfig, models: list[str], original: str, cache: Cache) -> dict:
    if not cfg.models:
        return {name: {"runtime_s": cfg.runtime_s.get(name)} for name in models}
    from generation.spec import load_model_spec

    from .efficiency import model_efficiency

    specs = {s.label: s for s in map(load_model_spec, cfg.models)}
    out = {}
    for name in models:
        spec = specs[name]
        inputs = (spec.to_dict(), specs[original].to_dict(), cfg.runtime_s.get(name))
        out[name] = cache.get_or_compute(
            f"efficiency/{name}",
            fingerprint("efficiency", inputs),
            lambda s=spec: model_efficiency(s, specs[original], cfg.runtime_s.get(s.label)),
        )
    return out


def _device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class _Lazy:
    """Stands for a metric backbone and builds it on first use, so a cached run loads none."""

    def __init__(self, make: Callable):
        self._make = make
        self._obj = None

    def __getattr__(self, name: str):
        if self._obj is None:
            self._obj = self._make()
        return getattr(self._obj, name)


class _Backbones:
    def __init__(self, cfg: EvalConfig):
        from .person import PersonDetector
        from .quality import ClipScorer, LpipsScorer, fid_metric

        device = _device(cfg.device)
        self._lazy = {
            "clip": _Lazy(lambda: ClipScorer(cfg.clip_model, device)),
            "lpips": _Lazy(lambda: LpipsScorer(cfg.lpips_net, device, cfg.lpips_random_backbone)),
            "fid": _Lazy(lambda: fid_metric(cfg.fid_feature, cfg.fid_weights, device, cfg.fid_pretrained)),
            "person": _Lazy(
                lambda: PersonDetector(cfg.person_detector, cfg.person_weights, cfg.person_pretrained, device=device)
            ),
        }

    def get(self, name: str):
        return self._lazy[name]
