"""The native attacks of ``dataigm attack`` inside ``dataigm evaluate`` (``attacks: [unlearndiffatk, ...]``).

Each native attack runs against each unlearned model (every model but the original) on the concept's forget
prompts of the evaluation. Its prompt file lives in ``<out>/attacks/<fingerprint>/``, the fingerprint covering
what the prompts depend on (method, options, the forget prompts, the model's spec and a sha256 of its weights
files, the original model, the seed), so a re-run reuses it, a killed run resumes it (``dataigm attack`` appends
per prompt) and a changed input makes a new one. The generation job renders the files like any attack file; a
model's robustness counts only the prompts made against it (rendered by another model they would measure
transfer), and reports, next to each attack's ASR, the ASR of the starting prompts without the attack.

UnlearnDiffAtk runs with the evaluation's judge (the concept's oracle) at its released checkpoints, so its records
carry the per-prompt outcomes from which :func:`paper_robustness` gives the paper's pre- and post-attack ASR
beside ours (per image of the final prompt).

``generation`` is imported inside the functions (detectors never import it at module level).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dataigm.prompts import PromptRecord, read_prompts, write_prompts

# AttackConfig fields the evaluation sets itself: the rest may be given per method in ``attack_options``
_SET_BY_EVALUATION = (
    "method", "model", "concept", "out", "prompts", "max_prompts", "original", "device", "base_seed", "progress",
    "concepts_dir", "judge", "num_workers", "worker_index",
)  # fmt: skip
# How an attack runs (Ray, its GPUs, retries): the evaluation's own, or given per method in ``attack_options``; not
# part of its content (its folder). A partition is the evaluation's (num_workers, worker_index), never per method
_HOW_IT_RUNS = ("distributor", "ray_address", "num_gpus", "retries")
NO_ATTACK = "no attack (starting prompts)"
CHECKPOINTED = ("unlearndiffatk",)  # native attacks that judge images at checkpoints (the evaluation's judge)
TARGETED = ("unlearndiffatk", "p4d")  # native attacks that start from the original model's images of the prompts
ASR_PER_IMAGE = "share of the images of the attack's final prompts (every sample of every prompt) that the judge flags"


def native(attacks: Sequence[str]) -> list[str]:
    """The native attacks among ``attacks``: the methods of ``dataigm attack``."""
    from generation.attacks.config import METHODS

    return [a for a in attacks if a in METHODS]


def check_attack_options(options: dict) -> None:
    """Refuse options of an unknown method or an option its method does not use (the valid ones named)."""
    from generation.attacks.config import METHODS, OUTCOME_FIELDS, AttackConfig

    used = {f for fields in OUTCOME_FIELDS.values() for f in fields}
    running = [f for f in AttackConfig.__dataclass_fields__ if f not in used]  # how any attack runs (batch, Ray)
    for method, given in options.items():
        if method not in METHODS:
            raise ValueError(f"attack_options names unknown attack {method!r}; native attacks: {', '.join(METHODS)}")
        valid = [f for f in (*OUTCOME_FIELDS[method], *running) if f not in _SET_BY_EVALUATION]
        if not isinstance(given, dict):
            raise ValueError(f"attack_options of {method!r} must be a mapping of options, got {given!r}")
        unknown = sorted(set(given) - set(valid))
        if unknown:
            raise ValueError(f"attack_options of {method!r}: unknown option(s) {unknown}; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class NativeAttack:
    """One native attack of one concept against one model, and where its prompts go."""

    concept: str
    method: str
    model: str  # the model's label
    entry: object  # the model as given in ``models``
    folder: Path
    path: Path

    @property
    def prompts_file(self) -> Path:
        return self.folder / f"{self.concept}-forget.jsonl"


def forget_prompts(cfg, concept_id: str, registry) -> list[PromptRecord]:
    """The concept's forget prompts as the evaluation renders them (subsampled by ``max_prompts``): its given
    ``prompt_files`` (a suite's pinned prompts), else its built-in set."""
    from dataigm.prompts import build_prompts, read_prompts, subsample

    if concept_id in cfg.prompt_files:
        given = [r for path in cfg.prompt_files[concept_id] for r in read_prompts(path)]
        return subsample([r for r in given if r.concept == concept_id and r.kind == "forget"], cfg.max_prompts)
    return subsample(build_prompts(registry.get(concept_id), ["forget"], registry=registry), cfg.max_prompts)


def attack_options(cfg, method: str) -> dict:
    """The options of one native attack: UnlearnDiffAtk's targets are rendered with the evaluation's sampling
    settings (so a target is the original model's evaluation image of the prompt and seed), then ``attack_options``."""
    base = {}
    if method in TARGETED:
        base = {"target_steps": cfg.generation.steps, "target_guidance": cfg.generation.guidance}
    return base | cfg.attack_options.get(method, {})


def _specs(cfg) -> list[tuple[object, object]]:
    from generation.spec import load_model_spec

    return [(entry, load_model_spec(entry)) for entry in cfg.models]


def planned(cfg, registry) -> list[NativeAttack]:
    """Every native attack of ``cfg``: concept x method x unlearned model, with its content-keyed folder."""
    methods = native(cfg.attacks)
    if not methods or not cfg.models:
        return []
    from generation.attacks.common import model_checksum
    from generation.attacks.runner import output_path

    specs = _specs(cfg)
    original = cfg.original or specs[0][1].label
    original_entry = next((e for e, s in specs if s.label == original), None)
    out = []
    for concept_id in cfg.concepts:
        prompts = [(r.prompt_id, r.text, r.seed) for r in forget_prompts(cfg, concept_id, registry)]
        for method in methods:
            options = attack_options(cfg, method)
            for entry, spec in specs:
                if spec.label == original:
                    continue
                content = {
                    "method": method, "concept": concept_id,
                    "options": {k: v for k, v in options.items() if k not in _HOW_IT_RUNS}, "prompts": prompts,
                    "model": spec.to_dict(), "weights": model_checksum(spec), "original": original_entry,
                    "base_seed": cfg.generation.base_seed, "judge": cfg.judge if method in CHECKPOINTED else None,
                }  # fmt: skip
                digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]
                folder = Path(cfg.out) / "attacks" / digest
                path = output_path(folder, concept_id, method, spec.label)
                out.append(NativeAttack(concept_id, method, spec.label, entry, folder, path))
    return out


def _attack_config(cfg, concept_id: str, method: str, entry, original_entry, folder: Path):
    from generation.attacks.config import AttackConfig

    # how it runs: the evaluation's distribution unless attack_options says otherwise for this method
    options = {k: getattr(cfg, k) for k in _HOW_IT_RUNS} | attack_options(cfg, method)
    if options["distributor"] == "local":  # a partitioned evaluation attacks its share of every attack's batches
        options |= {"num_workers": cfg.num_workers, "worker_index": cfg.worker_index}
    return AttackConfig(
        method=method, model=entry, concept=concept_id, out=str(folder), prompts=str(folder / f"{concept_id}-forget.jsonl"),
        original=original_entry if method in TARGETED else None, device=cfg.device,
        base_seed=cfg.generation.base_seed, progress=cfg.progress, concepts_dir=cfg.concepts_dir,
        judge=cfg.judge if method in CHECKPOINTED else None, **options,
    )  # fmt: skip


def run_native_attacks(cfg, registry, attacks: Sequence[NativeAttack], judge=None) -> list[Path]:
    """Run (or resume) the native attacks ``attacks`` (:func:`planned`); returns the prompt files that are complete
    (a worker of a partition leaves its batches for the merge: those files are not returned).

    ``judge``: the evaluation's loaded judge, which looks at UnlearnDiffAtk's checkpoint images (loaded from
    ``cfg.judge`` when not given and needed).
    """
    from generation.attacks.runner import run_attack

    specs = _specs(cfg)
    original = cfg.original or specs[0][1].label
    original_entry = next((e for e, s in specs if s.label == original), None)
    paths = []
    for attack in attacks:
        attack.folder.mkdir(parents=True, exist_ok=True)
        if not attack.prompts_file.exists():
            write_prompts(forget_prompts(cfg, attack.concept, registry), attack.prompts_file)
        config = _attack_config(cfg, attack.concept, attack.method, attack.entry, original_entry, attack.folder)
        if attack.method in CHECKPOINTED and judge is None:
            from dataigm.devices import resolve_device
            from detectors.judges import load_judge

            judge = load_judge(cfg.judge, device=resolve_device(cfg.device))
        summary = run_attack(config, judge if attack.method in CHECKPOINTED else None)
        if not summary.merge_pending:
            paths.append(attack.path)
    return paths


def own_prompts(attacks: Sequence[NativeAttack]) -> dict[tuple[str, str], set[str]]:
    """``{(concept, model): texts}`` of the native attack prompts made against each model (of ``attacks``)."""
    out: dict[tuple[str, str], set[str]] = {}
    for attack in attacks:
        if attack.path.exists():
            out.setdefault((attack.concept, attack.model), set()).update(r.text for r in read_prompts(attack.path))
    return out


def robustness_images(mine: list, concept: str, model: str, own: dict, methods: Sequence[str]) -> list:
    """A model's images for robustness: native attack prompts made against another model are left out, and its
    forget images join as the starting prompts (kind adversarial, group :data:`NO_ATTACK`) when native attacks ran."""
    if not methods:
        return mine
    texts = own.get((concept, model), set())
    kept = [im for im in mine if not (im.kind == "adversarial" and im.group in methods and im.prompt not in texts)]
    return kept + [replace(im, kind="adversarial", group=NO_ATTACK) for im in mine if im.kind == "forget"]


def robustness(images: list, judge, concept: str, num_workers: int | None = None) -> dict:
    """:func:`aspects.robustness` with the starting prompts shown beside the attacks, not counted in ``overall``,
    and the definition of its ASR."""
    from detectors.evaluation import aspects

    start = [im for im in images if im.group == NO_ATTACK]
    out = aspects.robustness([im for im in images if im.group != NO_ATTACK], judge, concept, num_workers)
    if start and "by_attack" in out:
        out["by_attack"][NO_ATTACK] = aspects.robustness(start, judge, concept, num_workers)["overall"]
    return out | ({} if out.get("skipped") else {"definition": ASR_PER_IMAGE})


def paper_robustness(attacks: Sequence[NativeAttack], concept: str, model: str) -> dict:
    """``{method: the paper's pre- and post-attack ASR}`` (:func:`aspects.paper_asr`) of the checkpointed native
    attacks (of ``attacks``) made against ``model``, from the per-prompt outcomes in their records; empty when none
    ran."""
    from detectors.evaluation import aspects

    out = {}
    for attack in attacks:
        if attack.method in CHECKPOINTED and (attack.concept, attack.model) == (concept, model):
            records = read_prompts(attack.path) if attack.path.exists() else []
            out[attack.method] = aspects.paper_asr([r.extra or {} for r in records])
    return out
