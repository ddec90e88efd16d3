"""``dataigm evaluate``: images (generated or given) -> the five aspects per concept and model -> report.

Each result is cached under ``<out>/cache`` with a fingerprint of everything it depends on, so a
half-finished run resumes where it stopped, a re-run with the same inputs rebuilds the same report,
and a re-run with changed inputs recomputes what changed. A fingerprint covers (see :func:`step_inputs`):

* the images: the sha256 of every image's bytes, with its key, kind, family, sample, group, sub-theme
  and prompt text;
* the judge by what decides its outputs: :meth:`detectors.judges.Judge.fingerprint` (weights as loaded,
  thresholds, temperatures, input transform; for baselines their spec and weight files), with the kind of
  its spec (``local-dir``, ``hf-hub``...); where the judge lives does not count;
* every option that changes the metric (backbone names, their local weight files or folders by content,
  ``*_pretrained``, ``lpips_random_backbone``, the concept's nature) and the resolved device;
* the versions of the libraries that compute the numbers (:data:`NUMERIC_PACKAGES`) and the sha256 of
  the evaluation's own code.

The cache file keeps these inputs in readable form (images by the digest of their list) beside the result.
The generated images live in ``<out>/images`` (or ``images``), a cache of their own: when a model's weights change
(:func:`dataigm.identity.weights_identity`), its images are rendered again and replace the old ones, so every
number of that model is measured on images of the weights given.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Callable
from functools import partial
from importlib import metadata
from pathlib import Path

from dataigm.files import atomic_write_json
from dataigm.identity import DigestCache, hub_commit, json_sha256, weights_identity
from dataigm.prompts import build_prompts, parse_kinds, subsample, write_prompts
from detectors.evaluation import aspects
from detectors.evaluation.config import EvalConfig
from detectors.evaluation.images import EvalImage, from_paper_layout, from_shards

logger = logging.getLogger(__name__)

# Libraries whose version can change a number of the report (and so keys every cached result).
NUMERIC_PACKAGES = (
    "torch", "torchvision", "torchmetrics", "torch-fidelity", "lpips", "transformers", "timm", "numpy", "scipy",
    "pillow", "nudenet", "onnxruntime",
)  # fmt: skip
_THIS = Path(__file__).resolve().parent


class Cache:
    """JSON results keyed by name, valid while their inputs' fingerprint is unchanged."""

    def __init__(self, folder: Path):
        self.folder = folder

    def get_or_compute(
        self, name: str, fingerprint: str, compute: Callable[[], dict], inputs: dict | None = None
    ) -> dict:
        """The cached result of ``name`` when its fingerprint matches, else ``compute()`` (then cached)."""
        path = self.folder / f"{name}.json"
        if path.exists():
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("fingerprint") == fingerprint:
                return cached["result"]
            logger.info("recomputing %s: its inputs changed", name)
        result = compute()
        entry = {"fingerprint": fingerprint, "result": result}
        if inputs is not None:
            entry["inputs"] = inputs
        atomic_write_json(path, entry)
        return result


def fingerprint(*parts: object) -> str:
    """sha256 (hex) of the JSON of ``parts``; anything JSON cannot write raises (a repr may hold an address)."""
    return json_sha256(parts, default=_json_default)


def _json_default(value: object):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# ---------------------------------------------------------------- content digests


Digests = DigestCache  # the name this module's callers know


def judge_inputs(judge) -> dict:
    """What a judge's decisions depend on, for cache keys: the kind of its spec and its own fingerprint."""
    return {"kind": str(judge.spec).partition(":")[0], "fingerprint": judge.fingerprint()}


def backbone_content(name: str | None, digests: Digests) -> dict | None:
    """A metric backbone by content: a local folder/file (or ``local-dir:`` folder) by sha256, ``hf-hub:`` and
    Hub ids by their cached revision, any other name (timm, torchvision, ``inception``) by itself."""
    if name is None:
        return None
    kind, _, location = name.partition(":")
    if kind == "local-dir":
        return {"name": name if not Path(location).is_dir() else "local-dir", "sha256": digests.maybe_path(location)}
    if kind == "hf-hub":
        return {"name": name, "revision": hub_commit(location.partition("@")[0])}
    local = digests.maybe_path(name)
    if local is not None:
        return {"name": "local", "sha256": local}
    return {"name": name, "revision": hub_commit(name) if "/" in name else None}


def code_digest(extra_files: tuple = ()) -> str:
    """sha256 of the evaluation's code that computes numbers (every module here but the report's and the CLI's)."""
    files = sorted(p for p in _THIS.glob("*.py") if p.name not in ("report.py", "__init__.py"))
    files += [_THIS.parent / "stats.py"]  # the intervals: a changed rule recomputes them
    files += [Path(f) for f in extra_files]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def numeric_versions() -> dict[str, str | None]:
    """Installed versions of :data:`NUMERIC_PACKAGES` (None when not installed)."""
    out = {}
    for name in NUMERIC_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def image_inputs(images: list[EvalImage]) -> dict:
    """The images a result is computed from: their count and the sha256 of their sorted descriptions."""
    rows = sorted(
        [im.key, im.digest, im.kind, im.family, im.sample, im.group, im.subtheme, im.prompt] for im in images
    )  # keys are unique, so the sort never compares the later (possibly None) fields
    return {"n": len(rows), "sha256": fingerprint(rows)}


# ---------------------------------------------------------------- images


def prompt_paths(cfg: EvalConfig) -> list[str]:
    """The JSONL files the evaluation renders: one per concept under ``<out>/prompts``, the attack files, then the
    native attacks' prompt files (:mod:`detectors.evaluation.native`)."""
    from detectors.evaluation.native import planned

    native = [str(a.path) for a in planned(cfg, cfg.registry())]
    return [str(Path(cfg.out) / "prompts" / f"{c}.jsonl") for c in cfg.concepts] + list(cfg.attack_files) + native


def eval_prompts(cfg: EvalConfig, registry, judge=None) -> list[str]:
    """Write the prompts to render (sets, perturbations, attack files) and return the JSONL paths; ``judge``: the
    evaluation's, which judges UnlearnDiffAtk's checkpoints (:func:`detectors.evaluation.native.run_native_attacks`)."""
    from detectors.evaluation.native import run_native_attacks
    from detectors.evaluation.perturb import perturb_prompts
    from generation.attacks.config import METHODS as NATIVE_ATTACKS

    perturbations = [a for a in cfg.attacks if a not in NATIVE_ATTACKS]

    for concept_id, path in zip(cfg.concepts, prompt_paths(cfg), strict=False):
        concept = registry.get(concept_id)
        records = []
        for kind in parse_kinds([k for k in cfg.kinds if k != "replace" or concept.replacements], concept):
            made = build_prompts(concept, [kind], registry=registry)
            records += subsample(made, cfg.max_prompts)
        if perturbations:
            records += perturb_prompts(select_forget(records), concept, perturbations, seed=cfg.attack_seed)
        write_prompts(records, Path(path))
    run_native_attacks(cfg, registry, judge)
    return prompt_paths(cfg)


def select_forget(records):
    return [r for r in records if r.kind == "forget"]


def generation_job(cfg: EvalConfig):
    """The ``generation`` job that renders the evaluation's images (checked, nothing written yet), or None."""
    if not cfg.models:
        return None
    from generation.config import JobConfig

    job = JobConfig(
        out=cfg.images or str(Path(cfg.out) / "images"), models=cfg.models, prompt_files=prompt_paths(cfg),
        test_fraction=0.0, progress=cfg.progress, concepts_dir=cfg.concepts_dir, device=cfg.device, **cfg.generation.sampling_options(),
        replace_changed_models=True,  # the root is this evaluation's cache: a retrained model's images are redone
    )  # fmt: skip
    labels = [s.label for s in job.model_specs()]
    if cfg.original is not None and cfg.original not in labels:
        raise ValueError(f"original {cfg.original!r} is none of the models; models: {', '.join(labels)}")
    unknown = sorted(set(cfg.runtime_s) - set(labels))
    if unknown:
        raise ValueError(f"runtime_s names unknown model(s) {unknown}; models: {', '.join(labels)}")
    return job


def collect_images(cfg: EvalConfig, registry, job=None, judge=None) -> tuple[list[EvalImage], list[str], str]:
    """The evaluation's images, the model names (original first) and the original's name.

    Raises:
        ValueError: a concept has no images, or the original model has none.
    """
    if cfg.paper_layout is not None:
        images = []
        for concept_id in cfg.concepts:
            prompts = _paper_prompts(cfg, concept_id)
            images += from_paper_layout(
                cfg.paper_layout, cfg.paper_tasks[concept_id], concept_id, prompts, registry.get(concept_id).category
            )
        models = sorted({im.model for im in images})
        original = cfg.original or "ORG"
    else:
        from generation.runner import run_job

        root = cfg.images or str(Path(cfg.out) / "images")
        job = job or generation_job(cfg)
        if job is not None:
            eval_prompts(cfg, registry, judge)
            summary = run_job(job)
            if not summary.complete:
                raise ValueError("Generation is incomplete:\n" + summary.text())
            models = [s.label for s in job.model_specs()]
        images = [im for im in from_shards(root) if im.concept in cfg.concepts]
        missing = [c for c in cfg.concepts if not any(im.concept == c for im in images)]
        if missing:
            there = sorted({im.concept for im in from_shards(root)})
            raise ValueError(
                f"{root} holds no generated images of concept(s) {missing}; "
                f"concepts with generated images there: {', '.join(there) or 'none'}"
            )
        if job is None:
            models = sorted({im.model for im in images})
        original = cfg.original or (models[0] if job is not None else _original_of(models))
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


def step_inputs(
    name: str, cfg: EvalConfig, concept, mine: list[EvalImage], reference: list[EvalImage], context: dict
) -> dict:
    """What the result of aspect ``name`` for one concept and model depends on (see the module docstring).

    ``context`` holds the run-wide parts: ``judge`` (:func:`judge_inputs`), ``backbones`` (by
    :func:`backbone_content`), ``weights`` (sha256 of ``fid_weights``/``person_weights``), ``device``,
    ``versions``, ``code`` and ``random_seed`` (of the backbones with random weights).
    """
    abstract = concept.category.split("/")[1] == "abstract"
    common = {
        "aspect": name, "concept": concept.id, "device": context["device"], "versions": context["versions"],
        "code": context["code"], "images": image_inputs(mine),
    }  # fmt: skip
    if name in ("forgetting", "robustness"):
        return common | {"judge": context["judge"]}
    if name == "csdr":
        return common | {"reference": image_inputs(reference), "clip_model": context["backbones"]["clip"]}
    if name == "lpips":
        return common | {
            "reference": image_inputs(reference), "abstract": abstract, "lpips_net": cfg.lpips_net,
            "lpips_random_backbone": cfg.lpips_random_backbone,
        } | _random_seed(cfg.lpips_random_backbone, context)  # fmt: skip
    if name == "fid":
        return common | {
            "reference": image_inputs(reference), "abstract": abstract, "fid_feature": context["backbones"]["fid"],
            "fid_weights": context["weights"]["fid"], "fid_pretrained": cfg.fid_pretrained,
        } | _random_seed(not cfg.fid_pretrained, context)  # fmt: skip
    if name == "person_rate":
        return common | {
            "person_detector": cfg.person_detector, "person_weights": context["weights"]["person"],
            "person_pretrained": cfg.person_pretrained,
        } | _random_seed(not cfg.person_pretrained and not cfg.person_weights, context)  # fmt: skip
    raise ValueError(f"Unknown aspect {name!r}")


def _random_seed(random_weights: bool, context: dict) -> dict:
    """The seed of a backbone with random weights (``context["random_seed"]``), part of its results' key."""
    return {"random_seed": context["random_seed"]} if random_weights else {}


def evaluate(cfg: EvalConfig) -> tuple[dict, list[EvalImage]]:
    """Run the evaluation; returns the report dict and the images it looked at.

    Everything that can be checked is checked before anything is written: the models, the device, the
    judge (loaded first) and that it judges every concept.
    """
    from dataigm.devices import resolve_device
    from detectors.evaluation.native import native, own_prompts, paper_robustness, robustness_images
    from detectors.evaluation.native import robustness as native_robustness
    from detectors.evaluation.quality import RANDOM_BACKBONE_SEED
    from detectors.judges import load_judge

    registry = cfg.registry()
    job = generation_job(cfg)
    device = resolve_device(cfg.device)
    judge = load_judge(cfg.judge, device=device)
    unjudged = [c for c in cfg.concepts if c not in judge.concepts]
    if unjudged:
        raise ValueError(f"The judge {cfg.judge!r} does not judge {unjudged}; it judges: {', '.join(judge.concepts)}")
    images, models, original = collect_images(cfg, registry, job, judge)
    if job is None:
        unknown = sorted(set(cfg.runtime_s) - set(models))
        if unknown:
            raise ValueError(f"runtime_s names unknown model(s) {unknown}; models: {', '.join(models)}")
    cache = Cache(Path(cfg.out) / "cache")
    digests = Digests(Path(cfg.out) / "cache" / "digests.json")
    judge_code = tuple(inspect.getsourcefile(c) for c in type(judge).__mro__[:-1])  # the judge class and its bases
    context = {
        "judge": judge_inputs(judge),
        "backbones": {
            "clip": backbone_content(cfg.clip_model, digests),
            "fid": backbone_content(cfg.fid_feature, digests),
        },
        "weights": {"fid": digests.maybe_path(cfg.fid_weights), "person": digests.maybe_path(cfg.person_weights)},
        "device": device,
        "versions": numeric_versions(),
        "code": code_digest(tuple(sorted(set(judge_code)))),
        "random_seed": RANDOM_BACKBONE_SEED,  # of every backbone with random weights (quality.seeded_init)
    }
    backbones = _Backbones(cfg, device)
    fid_features = aspects.FidFeatures(backbones.get("fid"), cfg.num_workers)  # the reference's, once for all models
    native_methods, own = native(cfg.attacks), own_prompts(cfg, registry)  # attack prompts made against each model
    results: dict = {}
    for concept_id in cfg.concepts:
        concept = registry.get(concept_id)
        abstract = concept.category.split("/")[1] == "abstract"
        of_concept = [im for im in images if im.concept == concept_id]
        reference = [im for im in of_concept if im.model == original]
        results[concept_id] = {}
        for model in models:
            mine = [im for im in of_concept if im.model == model]
            attacked = robustness_images(mine, concept_id, model, own, native_methods)
            steps = {
                "forgetting": partial(aspects.forgetting, mine, judge, concept_id, cfg.num_workers),
                "robustness": partial(native_robustness, attacked, judge, concept_id, cfg.num_workers),
                "csdr": partial(aspects.csdr, mine, reference, backbones.get("clip")),
                "lpips": partial(aspects.lpips, mine, reference, backbones.get("lpips"), abstract),
                "fid": partial(aspects.image_quality, mine, reference, fid_features, abstract),
            }
            if concept.human and cfg.person_detector:
                steps["person_rate"] = partial(aspects.person_rate, mine, backbones.get("person"))
            row = {}
            for name, compute in steps.items():
                if name == "csdr" and cfg.clip_model is None:
                    row[name] = _skipped("no clip_model configured")
                    continue
                if name == "lpips" and cfg.lpips_net is None:
                    row[name] = _skipped("no lpips_net configured")
                    continue
                inputs = step_inputs(
                    name, cfg, concept, attacked if name == "robustness" else mine, reference, context
                )
                row[name] = cache.get_or_compute(f"{concept_id}/{model}/{name}", fingerprint(inputs), compute, inputs)
            paper = paper_robustness(cfg, registry, concept_id, model) if native_methods else {}
            if paper and isinstance(row.get("robustness"), dict):  # per prompt, as UnlearnDiffAtk counts it
                row["robustness"] = row["robustness"] | {"paper": paper}
            results[concept_id][model] = row
    efficiency = _efficiency(cfg, models, original, cache, digests)
    digests.save()
    report = {"models": models, "original": original, "concepts": results, "efficiency": efficiency}
    judge_info = judge.describe() | {"content": context["judge"]}
    return report | {"judge": judge_info, "config": cfg.to_dict(), "versions": _versions()}, images


def run_evaluation(cfg: EvalConfig) -> dict[str, Path]:
    """Evaluate and write the report into ``cfg.out``; returns the written files."""
    from detectors.evaluation.report import write_report

    report, images = evaluate(cfg)
    return write_report(report, cfg.out, images, cfg.grid_samples)


def _versions() -> dict[str, str]:
    from dataigm.env import environment_report

    report = environment_report()
    out = {k: v for k, v in report.items() if k not in ("platform", "devices")}
    return out | {k: v for k, v in numeric_versions().items() if v is not None}


def _skipped(reason: str) -> dict:
    return {"skipped": reason}


def spec_content(spec, digests: Digests) -> dict:
    """A model spec by content: its fields, and the identity of each weights file, folder or Hub model it loads
    (:func:`dataigm.identity.weights_identity`, the identity its generation job records)."""
    fields = spec.to_dict()
    return {"spec": fields, "files": weights_identity(fields, digests)}


def _efficiency(cfg: EvalConfig, models: list[str], original: str, cache: Cache, digests: Digests) -> dict:
    if not cfg.models:
        return {name: {"runtime_s": cfg.runtime_s.get(name)} for name in models}
    from detectors.evaluation.efficiency import model_efficiency
    from generation.spec import load_model_spec

    specs = {s.label: s for s in map(load_model_spec, cfg.models)}
    out = {}
    for name in models:
        spec = specs[name]
        inputs = {
            "aspect": "efficiency", "model": spec_content(spec, digests), "original": spec_content(specs[original], digests),
            "runtime_s": cfg.runtime_s.get(name), "versions": numeric_versions(), "code": code_digest(),
        }  # fmt: skip
        out[name] = cache.get_or_compute(
            f"efficiency/{name}",
            fingerprint(inputs),
            lambda s=spec: model_efficiency(s, specs[original], cfg.runtime_s.get(s.label)),
            inputs,
        )
    return out


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
    def __init__(self, cfg: EvalConfig, device: str):
        from detectors.evaluation.person import PersonDetector
        from detectors.evaluation.quality import ClipScorer, LpipsScorer, fid_metric

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
