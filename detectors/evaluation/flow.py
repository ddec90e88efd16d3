"""``dataigm evaluate``: the evaluation's plan (:mod:`detectors.evaluation.plan`) run in this process -> report.

:func:`evaluate` builds the plan once from the config, then :func:`run_plan` runs it: the prompt files are written,
the native attacks run, the generation job renders every image that is missing, and a :class:`Runner` measures each
aspect of each concept and model and each model's efficiency. Every result is cached under ``<out>/cache`` by the
content it depends on (:mod:`detectors.evaluation.cache`), so a half-finished run resumes where it stopped, a re-run
with the same inputs rebuilds the same report, and a re-run with changed inputs recomputes what changed.

With ``distributor: ray`` the native attacks' batches, the generation's shards and the measurements
(:mod:`detectors.evaluation.distributed`) run as Ray tasks and the driver writes the report. A worker of a
partition (``num_workers``, ``worker_index``) runs its share of the first phase not done by all workers (attacks,
generation, measurements) and ends with :class:`WorkerDone`; the workers run again until their measurements are
done, then one run without a partition writes the report from the cache.

The generated images live in ``<out>/images`` (or ``images``), a cache of their own: when a model's weights change
(:func:`dataigm.identity.weights_identity`), its images are rendered again and replace the old ones, so every
number of that model is measured on images of the weights given.
"""

from __future__ import annotations

import inspect
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

from dataigm.prompts import write_prompts
from detectors.evaluation import aspects
from detectors.evaluation.cache import Cache, Digests, code_digest, fingerprint, judge_inputs, numeric_versions
from detectors.evaluation.config import EvalConfig
from detectors.evaluation.images import EvalImage, from_shards
from detectors.evaluation.plan import AspectJob, EfficiencyJob, EvalPlan, build_plan, check_concepts, check_original

logger = logging.getLogger(__name__)


class WorkerDone(Exception):
    """A worker of a partition did its share of a phase; the message says what comes next. Not an error."""


def evaluate(cfg: EvalConfig) -> tuple[dict, list[EvalImage]]:
    """Plan and run the evaluation; returns the report dict and the images it looked at."""
    digests = Digests(Path(cfg.out) / "cache" / "digests.json")
    return run_plan(build_plan(cfg, digests), digests)


def run_evaluation(cfg: EvalConfig) -> dict[str, Path]:
    """Evaluate and write the report into ``cfg.out``; returns the written files."""
    from detectors.evaluation.report import write_report

    report, images = evaluate(cfg)
    return write_report(report, cfg.out, images, cfg.grid_samples)


def run_plan(plan: EvalPlan, digests: Digests | None = None) -> tuple[dict, list[EvalImage]]:
    """Run ``plan``; returns the report dict and the images it looked at.

    Everything that can be checked is checked before anything is written: the plan's checks, the device, the
    judge (loaded first) and that it judges every concept.

    Args:
        digests: the file digests' memo the plan was built with (saved at the end).
    """
    from dataigm.devices import resolve_device
    from detectors.judges import load_judge

    cfg = plan.config
    device = resolve_device(cfg.device)
    judge = load_judge(cfg.judge, device=device)
    unjudged = [c for c in plan.concepts if c not in judge.concepts]
    if unjudged:
        raise ValueError(f"The judge {cfg.judge!r} does not judge {unjudged}; it judges: {', '.join(judge.concepts)}")
    images = render(plan, judge) if plan.generation is not None else list(plan.images)
    from detectors.evaluation.distributed import UnitWorker, measure

    names = [job.name for job in (*plan.aspects, *plan.efficiency)]
    here = cfg.distributor == "local" and not cfg.partitioned  # this process measures with the judge it loaded
    worker = UnitWorker(plan, Runner.load, Runner(plan, judge, device, images) if here else None)
    results = measure(worker, names, _distributor(cfg), cfg.retries)
    if cfg.partitioned:
        raise WorkerDone(
            f"this worker's {len(results)} measurement(s) are done and cached; once every worker is done, run "
            "the same command without --num-workers/--worker-index (on the same kind of device: results are "
            "keyed by it) to write the report"
        )
    if digests is not None:
        digests.save()
    report = assemble(plan, results)
    judge_info = judge.describe() | {"content": judge_inputs(judge)}
    return report | {"judge": judge_info, "config": cfg.to_dict(), "versions": _versions()}, images


def _distributor(cfg: EvalConfig):
    """The evaluation's distributor; a Ray task gets ``num_gpus`` (default: 1 when CUDA is available)."""
    from dataigm.distribute import make_distributor

    gpus = cfg.num_gpus
    if cfg.distributor == "ray" and gpus is None:
        import torch

        gpus = 1 if torch.cuda.is_available() else 0
    return make_distributor(cfg.distributor, cfg.num_workers, cfg.worker_index, cfg.ray_address, gpus or 0)


def assemble(plan: EvalPlan, results: Mapping[str, dict]) -> dict:
    """The report's numbers from the results of the plan's units by name (in any order, from any worker): models,
    original, per concept and model its aspects (with the paper's pre-/post-attack ASR beside robustness, read from
    the native attacks' records), and per model its efficiency."""
    from detectors.evaluation.native import paper_robustness

    concepts: dict = {}
    for concept in plan.concepts:
        concepts[concept] = {}
        for model in plan.models:
            row = {job.aspect: results[job.name] for job in plan.aspects_of(concept, model)}
            paper = paper_robustness(plan.native_attacks, concept, model) if plan.native_methods else {}
            if paper and isinstance(row.get("robustness"), dict):  # per prompt, as UnlearnDiffAtk counts it
                row["robustness"] = row["robustness"] | {"paper": paper}
            concepts[concept][model] = row
    efficiency = {job.model: results[job.name] for job in plan.efficiency}
    return {"models": list(plan.models), "original": plan.original, "concepts": concepts, "efficiency": efficiency}


def write_plan_prompts(plan: EvalPlan) -> list[str]:
    """Write the plan's prompt files (one per concept) and return every file its generation renders."""
    for path, records in plan.prompts.items():
        write_prompts(list(records), Path(path))
    return list(plan.prompt_files)


def render(plan: EvalPlan, judge=None) -> list[EvalImage]:
    """Write the prompts, run the native attacks, generate what is missing; returns the images of the plan's concepts.

    ``judge``: the evaluation's, which judges UnlearnDiffAtk's checkpoints.

    Raises:
        ValueError: the generation is incomplete, a concept has no images, or the original model has none.
    """
    from detectors.evaluation.native import run_native_attacks
    from generation.runner import run_job

    cfg = plan.config
    write_plan_prompts(plan)
    attacked = run_native_attacks(cfg, cfg.registry(), plan.native_attacks, judge)
    if len(attacked) < len(plan.native_attacks):  # a worker of a partition: the others' batches are not all there
        raise WorkerDone(
            "this worker's share of the native attacks is done; run the workers again once all are done "
            "(worker 0 merges each attack's batches)"
        )
    summary = run_job(plan.generation)
    if not summary.complete:
        raise ValueError("Generation is incomplete:\n" + summary.text())
    if cfg.partitioned:
        from generation.runner import job_complete

        if not job_complete(plan.generation):
            raise WorkerDone("this worker's share of the generation is done; run the workers again once all are done")
    every = from_shards(plan.generation.out)
    images = [im for im in every if im.concept in plan.concepts]
    check_concepts(plan.concepts, plan.generation.out, every)
    check_original(plan.original, images)
    return images


class Runner:
    """Runs the units of a plan in this process: one aspect of a concept and model, or one model's efficiency.

    Built once per run: the judge, the run-wide parts of every key (:class:`detectors.evaluation.plan.RunContext`),
    the metric backbones (built on first use, so a cached run loads none) and the images by concept and model.
    """

    def __init__(self, plan: EvalPlan, judge, device: str, images: list[EvalImage]):
        from detectors.evaluation.native import own_prompts
        from detectors.evaluation.quality import RANDOM_BACKBONE_SEED

        cfg = plan.config
        self.plan, self.judge, self.num_workers = plan, judge, cfg.loader_workers
        self.cache = Cache(Path(cfg.out) / "cache")
        judge_code = tuple(sorted({inspect.getsourcefile(c) for c in type(judge).__mro__[:-1]}))  # class and bases
        # RANDOM_BACKBONE_SEED: the seed of every backbone with random weights (quality.seeded_init)
        self.context = plan.context(
            judge_inputs(judge), device, code_digest(judge_code), RANDOM_BACKBONE_SEED
        ).as_dict()
        self.backbones = _Backbones(cfg, device)
        self.fid_features = aspects.FidFeatures(self.backbones.get("fid"), cfg.loader_workers)  # the reference's, once
        self.own = own_prompts(plan.native_attacks)  # the attack prompts made against each model
        self.images: dict[tuple[str, str], list[EvalImage]] = defaultdict(list)
        for im in images:
            self.images[(im.concept, im.model)].append(im)

    @classmethod
    def load(cls, plan: EvalPlan) -> Runner:
        """A runner of ``plan`` whose images are there already (given, or generated by an earlier :func:`render`):
        what a worker builds to execute units of a plan it was sent."""
        from dataigm.devices import resolve_device
        from detectors.judges import load_judge

        device = resolve_device(plan.config.device)
        if plan.images is not None:
            images = list(plan.images)
        else:
            images = [im for im in from_shards(plan.generation.out) if im.concept in plan.concepts]
        return cls(plan, load_judge(plan.config.judge, device=device), device, images)

    def unit(self, name: str) -> dict:
        """The result of the plan's unit called ``name`` (an aspect, or a model's efficiency)."""
        for job in self.plan.aspects:
            if job.name == name:
                return self.aspect(job)
        for job in self.plan.efficiency:
            if job.name == name:
                return self.efficiency(job)
        raise ValueError(f"The plan has no unit {name!r}")

    def aspect(self, job: AspectJob) -> dict:
        """The result of ``job``: cached, or computed (then cached); a skipped one with its reason."""
        if job.skipped is not None:
            return {"skipped": job.skipped}
        mine = self.images[(job.concept, job.model)]
        reference = self.images[(job.concept, self.plan.original)]
        if job.aspect == "robustness":
            from detectors.evaluation.native import robustness_images

            mine = robustness_images(mine, job.concept, job.model, self.own, self.plan.native_methods)
        inputs = job.inputs(self.context, mine, reference)
        return self.cache.get_or_compute(job.name, fingerprint(inputs), self._compute(job, mine, reference), inputs)

    def _compute(self, job: AspectJob, mine: list[EvalImage], reference: list[EvalImage]) -> Callable[[], dict]:
        if job.aspect == "forgetting":
            return lambda: aspects.forgetting(mine, self.judge, job.concept, self.num_workers)
        if job.aspect == "robustness":
            from detectors.evaluation.native import robustness

            return lambda: robustness(mine, self.judge, job.concept, self.num_workers)
        if job.aspect == "csdr":
            return lambda: aspects.csdr(mine, reference, self.backbones.get("clip"))
        abstract = job.options.get("abstract")
        if job.aspect == "lpips":
            return lambda: aspects.lpips(mine, reference, self.backbones.get("lpips"), abstract)
        if job.aspect == "fid":
            return lambda: aspects.image_quality(mine, reference, self.fid_features, abstract)
        if job.aspect == "person_rate":
            return lambda: aspects.person_rate(mine, self.backbones.get("person"))
        raise ValueError(f"Unknown aspect {job.aspect!r}")

    def efficiency(self, job: EfficiencyJob) -> dict:
        """The efficiency of ``job``'s model: cached or computed against the original; the runtime alone without
        models."""
        if job.inputs is None:
            return {"runtime_s": job.runtime_s}
        from detectors.evaluation.efficiency import model_efficiency
        from generation.spec import load_model_spec

        def compute() -> dict:
            return model_efficiency(load_model_spec(job.entry), load_model_spec(job.original), job.runtime_s)

        return self.cache.get_or_compute(job.name, job.key, compute, dict(job.inputs))


def _versions() -> dict[str, str]:
    from dataigm.env import environment_report

    report = environment_report()
    out = {k: v for k, v in report.items() if k not in ("platform", "devices")}
    return out | {k: v for k, v in numeric_versions().items() if v is not None}


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
