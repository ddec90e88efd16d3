"""The evaluation as a plan: what to generate, attack, judge and measure, built once from an :class:`EvalConfig`.

:func:`build_plan` reads the config (and the given images, when there are any) and lists every unit of work as plain,
picklable data with a stable name: the prompt files to write, the generation job, the native attacks (each with its
content-keyed folder, planned here and nowhere else), and per concept and model the aspects to measure
(:class:`AspectJob`) and per model its efficiency (:class:`EfficiencyJob`). Running it is
:func:`detectors.evaluation.flow.run_plan`'s job; a runner may execute any one unit given the plan.

A unit's cache key is completed by what only the run knows: the images (generated after the plan) and the run-wide
parts of :class:`RunContext` (the loaded judge's fingerprint, the resolved device, library versions, the code digest).
No torch here: building a plan is cheap, and two builds from the same config and files are equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dataigm.identity import DigestCache
from dataigm.prompts import PromptRecord, build_prompts, parse_kinds, read_prompts, subsample
from detectors.evaluation.cache import (
    backbone_content,
    code_digest,
    fingerprint,
    image_inputs,
    numeric_versions,
    spec_content,
)
from detectors.evaluation.config import EvalConfig
from detectors.evaluation.images import EvalImage, from_paper_layout, from_shards

ASPECTS = ("forgetting", "robustness", "csdr", "lpips", "fid", "person_rate")


@dataclass(frozen=True)
class AspectJob:
    """One aspect of one model on one concept: what it is computed from, and the parts of its cache key.

    Attributes:
        concept, model, aspect: what is measured.
        options: the options its result depends on (backbone names, ``*_pretrained``, the concept's nature...).
        context: ``(input name, RunContext field, sub-key or None)`` of the run-wide parts of its key.
        reference: whether the original model's images enter it (CSDR, LPIPS, FID).
        seeded: whether it uses a backbone with random weights (its seed is then part of the key).
        skipped: the reason it is not computed, or None.
    """

    concept: str
    model: str
    aspect: str
    options: Mapping = field(default_factory=dict)
    context: tuple = ()
    reference: bool = False
    seeded: bool = False
    skipped: str | None = None

    @property
    def name(self) -> str:
        """The stable name of its result (its cache entry)."""
        return f"{self.concept}/{self.model}/{self.aspect}"

    def inputs(self, context: Mapping, mine: Sequence[EvalImage], reference: Sequence[EvalImage] = ()) -> dict:
        """What its result depends on, given the run-wide ``context`` (:meth:`RunContext.as_dict`) and the images."""
        out = {
            "aspect": self.aspect, "concept": self.concept, "device": context["device"],
            "versions": context["versions"], "code": context["code"], "images": image_inputs(mine),
        }  # fmt: skip
        if self.reference:
            out["reference"] = image_inputs(reference)
        for name, part, sub in self.context:
            out[name] = context[part] if sub is None else context[part][sub]
        out |= self.options
        if self.seeded:
            out["random_seed"] = context["random_seed"]
        return out

    def key(self, context: Mapping, mine: Sequence[EvalImage], reference: Sequence[EvalImage] = ()) -> str:
        """The fingerprint of :meth:`inputs`: the cache key of its result."""
        return fingerprint(self.inputs(context, mine, reference))


@dataclass(frozen=True)
class EfficiencyJob:
    """The efficiency of one model: computed against the original when models are given, else the supplied runtime.

    Attributes:
        model: the model's name; entry, original: the model and the original as given in ``models`` (None
            without models); runtime_s: the supplied runtime; inputs: what its result depends on (None: nothing
            is computed, the runtime alone is reported).
    """

    model: str
    entry: object = None
    original: object = None
    runtime_s: float | None = None
    inputs: Mapping | None = None

    @property
    def name(self) -> str:
        return f"efficiency/{self.model}"

    @property
    def key(self) -> str | None:
        return None if self.inputs is None else fingerprint(self.inputs)


@dataclass(frozen=True)
class RunContext:
    """The run-wide parts of every aspect's key: known once the judge is loaded and the device resolved."""

    judge: Mapping
    backbones: Mapping
    weights: Mapping
    device: str
    versions: Mapping
    code: str
    random_seed: int

    def as_dict(self) -> dict:
        return {
            "judge": self.judge, "backbones": self.backbones, "weights": self.weights, "device": self.device,
            "versions": self.versions, "code": self.code, "random_seed": self.random_seed,
        }  # fmt: skip


@dataclass(frozen=True)
class EvalPlan:
    """Everything an evaluation does, in order: write prompts, run native attacks, generate, measure, report.

    Attributes:
        config: the evaluation's config (run-wide settings: device, judge, backbones, workers).
        models: the models, the original first; original: its name.
        prompts: the prompt files to write before rendering, ``{path: records}`` (one per concept).
        prompt_files: every file the generation renders (the concepts', the attack files, the native attacks').
        generation: the generation job (:class:`generation.config.JobConfig`), or None for given images.
        native_attacks: every native attack (:class:`detectors.evaluation.native.NativeAttack`).
        images: the given images (None when they are generated).
        aspects: per concept and model, the aspects to measure; efficiency: per model.
        backbones, weights: the metric backbones and their local weights files by content (run-wide key parts).
    """

    config: EvalConfig
    models: tuple[str, ...]
    original: str
    prompts: Mapping[str, tuple[PromptRecord, ...]]
    prompt_files: tuple[str, ...]
    generation: object
    native_attacks: tuple
    images: tuple[EvalImage, ...] | None
    aspects: tuple[AspectJob, ...]
    efficiency: tuple[EfficiencyJob, ...]
    backbones: Mapping
    weights: Mapping

    @property
    def concepts(self) -> tuple[str, ...]:
        return tuple(self.config.concepts)

    @property
    def native_methods(self) -> list[str]:
        from detectors.evaluation.native import native

        return native(self.config.attacks)

    def aspects_of(self, concept: str, model: str) -> list[AspectJob]:
        return [a for a in self.aspects if (a.concept, a.model) == (concept, model)]

    def context(self, judge: Mapping, device: str, code: str, random_seed: int) -> RunContext:
        """The run-wide key parts, given the loaded judge (:func:`cache.judge_inputs`), device and code digest."""
        return RunContext(judge, self.backbones, self.weights, device, numeric_versions(), code, random_seed)


def aspect_job(name: str, cfg: EvalConfig, concept, model: str) -> AspectJob:
    """The :class:`AspectJob` of aspect ``name`` of ``model`` on ``concept`` (a registry concept) under ``cfg``."""
    abstract = concept.category.split("/")[1] == "abstract"
    base = {"concept": concept.id, "model": model, "aspect": name}
    if name in ("forgetting", "robustness"):
        return AspectJob(**base, context=(("judge", "judge", None),))
    if name == "csdr":
        skipped = "no clip_model configured" if cfg.clip_model is None else None
        return AspectJob(**base, context=(("clip_model", "backbones", "clip"),), reference=True, skipped=skipped)
    if name == "lpips":
        options = {
            "abstract": abstract,
            "lpips_net": cfg.lpips_net,
            "lpips_random_backbone": cfg.lpips_random_backbone,
        }
        skipped = "no lpips_net configured" if cfg.lpips_net is None else None
        return AspectJob(**base, options=options, reference=True, seeded=cfg.lpips_random_backbone, skipped=skipped)
    if name == "fid":
        return AspectJob(
            **base, options={"abstract": abstract, "fid_pretrained": cfg.fid_pretrained},
            context=(("fid_feature", "backbones", "fid"), ("fid_weights", "weights", "fid")), reference=True,
            seeded=not cfg.fid_pretrained,
        )  # fmt: skip
    if name == "person_rate":
        return AspectJob(
            **base, options={"person_detector": cfg.person_detector, "person_pretrained": cfg.person_pretrained},
            context=(("person_weights", "weights", "person"),),
            seeded=not cfg.person_pretrained and not cfg.person_weights,
        )  # fmt: skip
    raise ValueError(f"Unknown aspect {name!r}")


def step_inputs(name: str, cfg: EvalConfig, concept, mine, reference, context: Mapping) -> dict:
    """What the result of aspect ``name`` of one concept and model depends on (:meth:`AspectJob.inputs`)."""
    return aspect_job(name, cfg, concept, "").inputs(context, mine, reference)


def build_plan(cfg: EvalConfig, digests: DigestCache | None = None) -> EvalPlan:
    """The plan of the evaluation ``cfg``: every check that needs no judge or torch, then every unit of work.

    Args:
        digests: where file digests are remembered (``<out>/cache/digests.json`` in a run); the caller saves it.

    Raises:
        ValueError: the original or a ``runtime_s`` entry names no model; a concept has no given images.
    """
    from detectors.evaluation import native

    digests = digests if digests is not None else DigestCache()
    registry = cfg.registry()
    attacks = tuple(native.planned(cfg, registry))  # the only place the native attacks are planned
    prompts: dict[str, tuple[PromptRecord, ...]] = {}
    files: tuple[str, ...] = ()
    job, images = None, None
    if cfg.models:
        prompts = _concept_prompts(cfg, registry)
        files = (*prompts, *cfg.attack_files, *(str(a.path) for a in attacks))
        job = _generation(cfg, files)
        labels = [s.label for s in job.model_specs()]
        if cfg.original is not None and cfg.original not in labels:
            raise ValueError(f"original {cfg.original!r} is none of the models; models: {', '.join(labels)}")
        original = cfg.original or labels[0]
    else:
        images, labels, original = _given_images(cfg, registry)
    unknown = sorted(set(cfg.runtime_s) - set(labels))
    if unknown:
        raise ValueError(f"runtime_s names unknown model(s) {unknown}; models: {', '.join(labels)}")
    models = (original, *[m for m in labels if m != original])
    aspects = []
    for concept_id in cfg.concepts:
        concept = registry.get(concept_id)
        names = [n for n in ASPECTS if n != "person_rate" or (concept.human and cfg.person_detector)]
        aspects += [aspect_job(n, cfg, concept, m) for m in models for n in names]
    return EvalPlan(
        config=cfg, models=models, original=original, prompts=prompts, prompt_files=tuple(files), generation=job,
        native_attacks=attacks, images=images, aspects=tuple(aspects),
        efficiency=_efficiency(cfg, models, original, digests),
        backbones={"clip": backbone_content(cfg.clip_model, digests), "fid": backbone_content(cfg.fid_feature, digests)},
        weights={"fid": digests.maybe_path(cfg.fid_weights), "person": digests.maybe_path(cfg.person_weights)},
    )  # fmt: skip


def _generation(cfg: EvalConfig, prompt_files: Sequence[str]):
    """The generation job that renders ``prompt_files`` with the evaluation's models (checked, nothing written)."""
    from generation.config import JobConfig

    return JobConfig(
        out=cfg.images or str(Path(cfg.out) / "images"), models=cfg.models, prompt_files=list(prompt_files),
        test_fraction=0.0, progress=cfg.progress, concepts_dir=cfg.concepts_dir, device=cfg.device, **cfg.generation.sampling_options(),
        replace_changed_models=True,  # the root is this evaluation's cache: a retrained model's images are redone
        retries=cfg.retries, **cfg.distribution(),
    )  # fmt: skip


def _concept_prompts(cfg: EvalConfig, registry) -> dict[str, tuple[PromptRecord, ...]]:
    """The prompts of each concept as the evaluation renders them (sets, then perturbations of its forget prompts),
    by the file under ``<out>/prompts`` they are written to."""
    from detectors.evaluation.native import native
    from detectors.evaluation.perturb import perturb_prompts

    perturbations = [a for a in cfg.attacks if a not in native(cfg.attacks)]
    out = {}
    for concept_id in cfg.concepts:
        concept = registry.get(concept_id)
        records = []
        if concept_id in cfg.prompt_files:  # given prompts (a suite's pinned ones), with their own seeds and guidance
            given = [r for path in cfg.prompt_files[concept_id] for r in read_prompts(path) if r.concept == concept_id]
            for kind in cfg.kinds:
                records += subsample([r for r in given if r.kind == kind], cfg.max_prompts)
        else:
            for kind in parse_kinds([k for k in cfg.kinds if k != "replace" or concept.replacements], concept):
                records += subsample(build_prompts(concept, [kind], registry=registry), cfg.max_prompts)
        if perturbations:
            forget = [r for r in records if r.kind == "forget"]
            records += perturb_prompts(forget, concept, perturbations, seed=cfg.attack_seed)
        out[str(Path(cfg.out) / "prompts" / f"{concept_id}.jsonl")] = tuple(records)
    return out


def _given_images(cfg: EvalConfig, registry) -> tuple[tuple[EvalImage, ...], list[str], str]:
    """The given images of the evaluated concepts, the model names (sorted) and the original's name.

    Raises:
        ValueError: a concept has no images, or the original model has none.
    """
    if cfg.paper_layout is not None:
        images = []
        for concept_id in cfg.concepts:
            images += from_paper_layout(
                cfg.paper_layout, cfg.paper_tasks[concept_id], concept_id, _paper_prompts(cfg, concept_id),
                registry.get(concept_id).category,
            )  # fmt: skip
        models = sorted({im.model for im in images})
        original = cfg.original or "ORG"
    else:
        every = from_shards(cfg.images)
        images = [im for im in every if im.concept in cfg.concepts]
        check_concepts(cfg.concepts, cfg.images, every)
        models = sorted({im.model for im in images})
        original = cfg.original or _original_of(models)
    check_original(original, images)
    return tuple(images), models, original


def check_concepts(concepts: Sequence[str], root: str, every: Sequence[EvalImage]) -> None:
    """Raise ValueError naming the concepts without images among ``every`` image of ``root``, and those it has."""
    there = sorted({im.concept for im in every})
    missing = [c for c in concepts if c not in there]
    if missing:
        raise ValueError(
            f"{root} holds no generated images of concept(s) {missing}; "
            f"concepts with generated images there: {', '.join(there) or 'none'}"
        )


def check_original(original: str, images: Sequence[EvalImage]) -> None:
    """Raise ValueError when the original model has no images."""
    if original not in {im.model for im in images}:
        raise ValueError(
            f"No images of the original model {original!r}; models found: {', '.join(sorted({im.model for im in images}))}"
        )


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


def _efficiency(cfg: EvalConfig, models, original: str, digests: DigestCache) -> tuple[EfficiencyJob, ...]:
    if not cfg.models:
        return tuple(EfficiencyJob(name, runtime_s=cfg.runtime_s.get(name)) for name in models)
    from generation.spec import load_model_spec

    given = {s.label: (entry, s) for entry, s in zip(cfg.models, map(load_model_spec, cfg.models), strict=True)}
    original_entry, original_spec = given[original]
    out = []
    for name in models:
        entry, spec = given[name]
        inputs = {
            "aspect": "efficiency", "model": spec_content(spec, digests), "original": spec_content(original_spec, digests),
            "runtime_s": cfg.runtime_s.get(name), "versions": numeric_versions(), "code": code_digest(),
        }  # fmt: skip
        out.append(EfficiencyJob(name, entry, original_entry, cfg.runtime_s.get(name), inputs))
    return tuple(out)
