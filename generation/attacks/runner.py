"""``dataigm attack``: attack a model's prompts and append each adversarial prompt to a JSONL file as it is found.

The output is a prompt file of kind ``adversarial`` that ``dataigm generate --prompt-files`` and
``dataigm evaluate --attack-files`` read as it is. Each record names its provenance: the attack, the attacked
prompt (``parent_id``, ``source_text``), the target model's spec and checksum, the attack's options, the seed and
the loss or fitness reached. A killed run resumes: prompts already in the file are skipped, a half-written last
line is dropped, and a file made with other options or another model is refused.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from dataigm.files import atomic_write_bytes, atomic_write_text, check_output
from dataigm.identity import json_sha256
from dataigm.prompts import PromptRecord, build_prompts, read_prompts, slug, subsample
from dataigm.shardjob import one_line
from dataigm.shardwork import ShardResult, TaskName

from ..spec import ModelSpec, load_model_spec
from .common import TextSide, model_checksum, prompt_seed
from .config import AttackConfig

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class AttackSummary:
    """What a run did: the prompt file, prompts attacked now, and prompts found done from an earlier run."""

    path: Path
    attacked: int
    resumed: int
    merge_pending: bool = False  # a worker of a partition: its batches wait in part files for the merging run

    def text(self) -> str:
        done = f" ({self.resumed} already done)" if self.resumed else ""
        if self.merge_pending:
            return (
                f"{self.attacked} prompt(s) attacked by this worker{done}; once every worker is done, run the same "
                f"command without --num-workers/--worker-index to merge them into {self.path}"
            )
        return f"{self.attacked + self.resumed} adversarial prompt(s) in {self.path}{done}"


def output_path(out: str | os.PathLike, concept: str, method: str, model_label: str) -> Path:
    """The prompt file of an attack: ``<out>/<concept>-<method>-<model>.jsonl``."""
    return Path(out) / f"{concept}-{method}-{model_label}.jsonl"


def source_prompts(cfg: AttackConfig) -> list[PromptRecord]:
    """The forget prompts to attack: the ``prompts`` file's, else the concept's built-in ones.

    Raises:
        ValueError: the file holds prompts of another kind or concept, or no prompt.
    """
    if cfg.prompts is None:
        records = build_prompts(cfg.concept, ["forget"], registry=cfg.registry())
    else:
        records = read_prompts(cfg.prompts)
        kinds = sorted({r.kind for r in records} - {"forget"})
        if kinds:
            raise ValueError(
                f"prompts {cfg.prompts!r} holds prompts of kind {kinds}; attacks start from kind forget (import a CSV "
                "with `dataigm prompts import --format csv --kind forget`)"
            )
        concepts = sorted({r.concept for r in records} - {cfg.concept})
        if concepts:
            raise ValueError(f"prompts {cfg.prompts!r} holds prompts of concept(s) {concepts}, not {cfg.concept!r}")
    if not records:
        raise ValueError(f"No prompts to attack for concept {cfg.concept!r}")
    return subsample(records, cfg.max_prompts)


def attacked_spec(cfg: AttackConfig) -> ModelSpec:
    """The attacked model's spec (``dtype`` applied); a model without a text encoder is refused."""
    spec = load_model_spec(cfg.model)
    if spec.is_toy:
        raise ValueError(
            f"Model {spec.label!r} ({spec.base}) has no text encoder the attack can reach; attack a diffusers "
            "pipeline such as Stable Diffusion"
        )
    return replace(spec, dtype=cfg.dtype) if cfg.dtype else spec


def original_spec(cfg: AttackConfig, spec: ModelSpec) -> ModelSpec:
    """The model whose images are the targets: ``original``, else ``spec``'s base without its unlearned parts."""
    if cfg.original is not None:
        return attacked_spec(replace(cfg, model=cfg.original))
    if any(getattr(spec, k) is not None for k in ("pipeline", "unet", "text_encoder", "lora")):
        return ModelSpec(base=spec.base, revision=spec.revision, dtype=spec.dtype, name="original")
    return spec


def given_target(cfg: AttackConfig, prompt_id: str) -> Path | None:
    """The supplied target image of a prompt, if any."""
    for suffix in IMAGE_SUFFIXES:
        path = Path(cfg.target_images) / f"{prompt_id}{suffix}"
        if path.is_file():
            return path
    return None


def read_done(path: Path, options: dict, checksum: str) -> dict[str, PromptRecord]:
    """The records an earlier run wrote, by attacked prompt id; a half-written last line is dropped.

    Raises:
        ValueError: the file was made by another attack, with other options, or against other weights.
    """
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):  # killed while writing a line: keep the complete ones
        text = text[: text.rfind("\n") + 1]
        atomic_write_text(path, text)
    done = {r.parent_id: r for r in read_prompts(path)}
    for record in done.values():
        if record.attack_options != options or record.target_checksum != checksum:
            changed = sorted(k for k in options if (record.attack_options or {}).get(k) != options[k])
            what = f"options {changed}" if changed else "model weights (checksum)"
            raise ValueError(
                f"{path} holds adversarial prompts made with other {what}; re-run with the same options, or use "
                "another --out"
            )
    return done


def _append(path: Path, records: list[PromptRecord]) -> None:
    """Append whole lines and sync, so a kill loses at most the batch in flight."""
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def _freeze(pipe) -> None:
    for name in ("unet", "text_encoder", "vae"):
        module = getattr(pipe, name, None)
        if module is not None:
            module.requires_grad_(False)
            module.eval()


def run_attack(cfg: AttackConfig, judge=None) -> AttackSummary:
    """Attack the prompts of ``cfg`` against its model; every input is checked before anything is written.

    A batch of prompts is the unit of work. One local process appends each batch to the prompt file as it is done;
    with a partition (``num_workers``) or Ray, each batch is written whole (atomically) to a part file beside it,
    and a run without a partition merges the parts into the prompt file in the prompts' order, byte for byte the
    file one process writes. A batch that fails is tried ``cfg.retries`` more times, then named.

    Args:
        cfg: the attack.
        judge: the loaded judge of ``cfg.judge`` (a ``detectors`` judge: ``predict(images)`` -> its prediction;
            generation does not load judges), which looks at the checkpoint images.

    Returns:
        The summary: the prompt file and how many prompts it holds now.

    Raises:
        ValueError: bad input (before anything is written), or batches that failed on every attempt.
    """
    from dataigm.devices import resolve_device
    from dataigm.distribute import make_distributor

    from . import mma_diffusion, ring_a_bell, unlearndiffatk

    if (cfg.judge is None) != (judge is None):
        raise ValueError("judge: give both the judge spec (cfg.judge) and the loaded judge, or neither")
    if judge is not None and cfg.concept not in judge.concepts:
        raise ValueError(
            f"The judge {cfg.judge!r} does not judge {cfg.concept!r}; it judges: {', '.join(judge.concepts)}"
        )
    spec = attacked_spec(cfg)
    sources = source_prompts(cfg)
    check_output(cfg.out)
    pairs = None
    if cfg.method == "ring_a_bell":
        pair_records = read_prompts(cfg.concept_prompts) if cfg.concept_prompts else None
        if pair_records is None:
            pair_records = build_prompts(cfg.concept, ["forget", "remove"], registry=cfg.registry())
        pairs = ring_a_bell.concept_pairs(pair_records, cfg.concept)
    if cfg.target_images is not None:
        missing = [r.prompt_id for r in sources if given_target(cfg, r.prompt_id) is None]
        if missing:
            raise ValueError(
                f"target_images {cfg.target_images!r} has no image for prompt(s) {missing[:5]} (name them "
                f"PROMPT_ID{'|'.join(IMAGE_SUFFIXES)})"
            )
    distributor = make_distributor(
        cfg.distributor, cfg.num_workers, cfg.worker_index, cfg.ray_address, _gpus_per_task(cfg)
    )
    remote = cfg.distributor == "ray"
    # the checks and the checksum need the model; Ray's workers load their own, so the driver's stays on the CPU
    device = "cpu" if remote else resolve_device(cfg.device)
    model = _loaded(spec, device)
    text = TextSide.of(model.pipe, spec.label)
    text.check_tokens(cfg.tokens, cfg.method)
    if cfg.method == "mma_diffusion":  # a banned list that leaves no token would fail every batch
        mma_diffusion.check_vocabulary(text, _mma_words(cfg))
    if cfg.method in ("unlearndiffatk", "p4d"):
        unlearndiffatk.check_pipeline(model.pipe, spec.label)
    if cfg.method == "p4d" and original_spec(cfg, spec) == spec:
        raise ValueError(
            f"p4d matches the attacked model's noise predictions to its original's: model {spec.label!r} has no "
            "unlearned part (unet, text_encoder, lora, pipeline) to leave out, so give --original"
        )
    if cfg.method == "p4d":  # an original it cannot use is refused here, before any target is rendered
        from . import p4d

        p4d.check_pipelines(model.pipe, _loaded(original_spec(cfg, spec), device).pipe, spec.label)
    options = cfg.outcome_options()
    checksum = model_checksum(spec, model.model_revision)
    path = output_path(cfg.out, cfg.concept, cfg.method, spec.label)
    done = read_done(path, options, checksum)
    parts = parts_folder(path)
    in_parts = read_parts(parts, options, checksum)
    partitioned = remote or distributor.num_workers > 1
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(cfg.out) / "attack.yaml", _yaml(_recorded(cfg)))
    units = plan_units(sources, cfg.batch_size, cfg.base_seed)
    finished = done.keys() | in_parts.keys()
    todo = [u.pending(finished) for u in distributor.select(units)]
    todo = [u for u in todo if u.prompts]
    worker = AttackWorker(cfg, spec, options, checksum, path, parts if partitioned else None, judge, pairs)
    planned = sum(len(u.prompts) for u in todo)
    bar = _progress(planned, cfg.progress)
    failed = {}
    for attempt in range(cfg.retries + 1):
        results = {r.shard: r for r in distributor.run(worker, todo)} if todo else {}
        for result in results.values():
            if result.error is None and bar is not None:
                bar.update(result.images)
        failed = {u.shard.relpath: (u, results[u.shard.relpath]) for u in todo if results[u.shard.relpath].error}
        todo = [u for u, _ in failed.values()]
        for name, (_, result) in failed.items():
            logger.warning("attack batch %s failed (attempt %d of %d): %s", name, attempt + 1, cfg.retries + 1,
                           result.error)  # fmt: skip
        if not todo:
            break
    if bar is not None:
        bar.close()
    attacked = planned - sum(len(u.prompts) for u, _ in failed.values())
    if failed:
        name, (unit, result) = next(iter(failed.items()))
        ids = ", ".join(r.prompt_id for r in unit.prompts)
        more = f" (and {len(failed) - 1} other batch(es))" if len(failed) > 1 else ""
        raise ValueError(
            f"attack batch {name} (prompts {ids}) failed {cfg.retries + 1} time(s){more}: {result.error}; the other "
            "batches are kept, re-run the same command to retry"
        )
    if partitioned and not remote:
        every = {r.prompt_id for r in sources}
        if not every <= done.keys():  # not merged yet
            written = done.keys() | read_parts(parts, options, checksum).keys()
            if distributor.worker_index != 0 or not every <= written:
                return AttackSummary(path, attacked, len(finished), merge_pending=True)
            # worker 0 finds every batch written (its own last): it merges, as a run without a partition would
            in_parts = True
    if in_parts or remote:
        merge_parts(path, parts, sources)
    if not path.exists():
        atomic_write_text(path, "")  # every prompt was done before: keep the (empty) file a run promises
    return AttackSummary(path, attacked, len(finished))


@dataclass(frozen=True)
class AttackUnit:
    """A batch of prompts to attack (the distributors' task: a dataclass with a ``shard``), with their seeds."""

    shard: TaskName
    prompts: tuple[PromptRecord, ...]
    seeds: tuple[int, ...]

    def pending(self, finished) -> AttackUnit:
        """The unit without its prompts in ``finished``."""
        keep = [i for i, r in enumerate(self.prompts) if r.prompt_id not in finished]
        return replace(self, prompts=tuple(self.prompts[i] for i in keep), seeds=tuple(self.seeds[i] for i in keep))


def plan_units(sources: list[PromptRecord], batch_size: int, base_seed: int) -> list[AttackUnit]:
    """The prompts in batches of ``batch_size`` in their order, each named by its positions (``000004-000007``);
    the same prompts and batch size give the same units in every process."""
    units = []
    for i in range(0, len(sources), batch_size):
        batch = sources[i : i + batch_size]
        name = f"{i:06d}-{i + len(batch) - 1:06d}"
        units.append(AttackUnit(TaskName(name), tuple(batch), tuple(prompt_seed(r, base_seed) for r in batch)))
    return units


def parts_folder(path: Path) -> Path:
    """Where the workers of a partitioned or Ray attack leave their batches: ``<out>/parts/<file stem>/``."""
    return path.parent / "parts" / path.stem


def read_parts(folder: Path, options: dict, checksum: str, check: bool = True) -> dict[str, str]:
    """The records of the part files, as their JSON lines, by attacked prompt id; checked as :func:`read_done`."""
    lines: dict[str, str] = {}
    for part in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        if check:
            read_done(part, options, checksum)
        for line in part.read_text(encoding="utf-8").splitlines(keepends=True):
            lines.setdefault(json.loads(line)["parent_id"], line)
    return lines


def merge_parts(path: Path, folder: Path, sources: list[PromptRecord]) -> None:
    """Write the prompt file in the prompts' order (then records of prompts not attacked now, in the file's order)
    from the file and the part files, atomically, then remove the parts: the bytes one process writes."""
    lines = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            lines.setdefault(json.loads(line)["parent_id"], line)
    in_file = list(lines)
    for parent, line in read_parts(folder, {}, "", check=False).items():
        lines.setdefault(parent, line)
    order = [r.prompt_id for r in sources] + [p for p in in_file if p not in {r.prompt_id for r in sources}]
    atomic_write_text(path, "".join(lines[p] for p in order if p in lines))
    for part in [*folder.glob("*.jsonl"), *folder.glob(".*.tmp")]:  # .tmp: a worker killed while writing one
        part.unlink()
    for empty in (folder, folder.parent):
        if empty.is_dir() and not any(empty.iterdir()):
            empty.rmdir()


@dataclass
class AttackWorker:
    """Attacks one unit and writes its records: appended to the prompt file (``parts`` None: one local process),
    or to its own part file, whole. Picklable (Ray ships it); a process keeps its loaded models across units."""

    cfg: AttackConfig
    spec: ModelSpec
    options: dict
    checksum: str
    path: Path
    parts: Path | None
    judge: object = None
    pairs: object = None

    def run(self, task: AttackUnit) -> ShardResult:
        """Attack ``task``'s prompts; a failure is returned (with its one-line error), not raised."""
        try:
            records = self.attack(task)
            if self.parts is None:
                _append(self.path, records)
            else:
                self.parts.mkdir(parents=True, exist_ok=True)
                text = "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records)
                atomic_write_text(self.parts / f"{task.shard.relpath}.jsonl", text)
        except Exception as err:  # any failure of a batch: retried by the run, then named
            return ShardResult(task.shard.relpath, error=one_line(err), attempts=1)
        return ShardResult(task.shard.relpath, images=len(records), attempts=1)

    def attack(self, task: AttackUnit) -> list[PromptRecord]:
        from dataigm.devices import resolve_device

        from . import ring_a_bell, unlearndiffatk

        cfg, spec, options = self.cfg, self.spec, self.options
        batch, batch_seeds = list(task.prompts), list(task.seeds)
        device = resolve_device(cfg.device)
        model = _loaded(spec, device)
        text = TextSide.of(model.pipe, spec.label)
        if cfg.method == "unlearndiffatk":
            targets = _targets(
                cfg, model, batch, dict(zip([r.prompt_id for r in batch], batch_seeds, strict=True)), device
            )
            latents = unlearndiffatk.encode_targets(model.pipe, [_open(targets[r.prompt_id]) for r in batch])
            opts = unlearndiffatk.Options(
                cfg.tokens, cfg.iterations, cfg.timesteps, cfg.schedule, cfg.lr, cfg.weight_decay, cfg.projection
            )
            check = None if self.judge is None else _checkpoint(cfg, model.pipe, self.judge, batch, batch_seeds)
            results = unlearndiffatk.attack_batch(
                model.pipe, text, [r.text for r in batch], batch_seeds, latents, opts, check
            )
            made = [
                _record(r, s, cfg, spec, self.checksum, options, x.text) | {"loss": x.loss, "extra": _outcome(x)}
                for r, s, x in zip(batch, batch_seeds, results, strict=True)
            ]
        elif cfg.method == "p4d":
            made = self._p4d(task, model, text, device)
        elif cfg.method == "mma_diffusion":
            made = self._mma(task, text)
        else:
            vector = ring_a_bell.concept_vector(text, self.pairs)
            opts = ring_a_bell.Options(
                cfg.tokens, cfg.eta, cfg.population, cfg.generations, cfg.mutation_rate, cfg.crossover_rate
            )
            results = ring_a_bell.search_batch(text, [r.text for r in batch], batch_seeds, vector, opts)
            made = [
                _record(r, s, cfg, spec, self.checksum, options, x.text or r.text)
                | {"fitness": x.fitness, "extra": {"token_ids": x.token_ids, "start_fitness": x.start_fitness}}
                for r, s, x in zip(batch, batch_seeds, results, strict=True)
            ]
        return [PromptRecord(**m) for m in made]

    def _p4d(self, task: AttackUnit, model, text: TextSide, device: str) -> list[dict]:
        from . import p4d, unlearndiffatk

        cfg, spec = self.cfg, self.spec
        batch, seeds = list(task.prompts), list(task.seeds)
        targets = _targets(cfg, model, batch, dict(zip([r.prompt_id for r in batch], seeds, strict=True)), device)
        wanted = original_spec(cfg, spec)
        original = _loaded(wanted, device)
        p4d.check_pipelines(model.pipe, original.pipe, spec.label)
        images = [_open(targets[r.prompt_id]) for r in batch]
        latents = unlearndiffatk.encode_targets(original.pipe, images)
        score = None
        if cfg.p4d_clip is not None:
            similarity = _similarity(cfg.p4d_clip, device)
            render = _renderer(cfg, model.pipe, batch, seeds)

            def score(indices: list[int], texts: list[str]) -> list[float]:
                rendered = render(indices, texts)
                return similarity([rendered[i] for i in indices], [images[i] for i in indices])

        opts = p4d.Options(
            cfg.p4d_variant, cfg.tokens, cfg.p4d_every, cfg.iterations, cfg.lr, cfg.weight_decay, cfg.p4d_eval_every,
            cfg.projection,
        )  # fmt: skip
        results = p4d.attack_batch(
            model.pipe, text, original.pipe, TextSide.of(original.pipe, wanted.label), [r.text for r in batch],
            seeds, latents, opts, score,
        )  # fmt: skip
        extra = ("token_ids", "start_loss", "similarity", "best_step", "retokenizes")
        return [
            _record(r, s, cfg, spec, self.checksum, self.options, x.text)
            | {"loss": x.loss, "extra": {k: getattr(x, k) for k in extra}}
            for r, s, x in zip(batch, seeds, results, strict=True)
        ]

    def _mma(self, task: AttackUnit, text: TextSide) -> list[dict]:
        from . import mma_diffusion

        cfg, spec = self.cfg, self.spec
        batch, seeds = list(task.prompts), list(task.seeds)
        words = _mma_words(cfg)
        opts = mma_diffusion.Options(
            cfg.tokens, cfg.iterations, cfg.mma_candidates, cfg.mma_topk, cfg.mma_reference_rows
        )
        results = mma_diffusion.search_batch(
            text, [r.text for r in batch], seeds, mma_diffusion.banned_ids(text, words), opts
        )
        return [
            _record(r, s, cfg, spec, self.checksum, self.options, x.text)
            | {
                "loss": x.loss,
                "extra": {
                    "token_ids": x.token_ids,
                    "start_loss": x.start_loss,
                    "best_step": x.best_step,
                    "banned_words": list(words),
                },
            }  # fmt: skip
            for r, s, x in zip(batch, seeds, results, strict=True)
        ]


def _mma_words(cfg: AttackConfig) -> list[str]:
    """MMA-Diffusion's banned words: ``mma_banned``, else the concept's (:func:`mma_diffusion.banned_words`)."""
    from . import mma_diffusion

    if cfg.mma_banned is not None:
        return list(cfg.mma_banned)
    concept = cfg.registry().get(cfg.concept)
    return mma_diffusion.banned_words(cfg.concept, concept.targets, concept.remove_words)


_SIMILARITY: dict = {}  # this process's CLIP image-similarity model by (model, device)


def _similarity(model: str, device: str):
    from .p4d import ImageSimilarity

    if (model, device) not in _SIMILARITY:
        _SIMILARITY.clear()
        _SIMILARITY[(model, device)] = ImageSimilarity(model, device)
    return _SIMILARITY[(model, device)]


_MODELS: dict = {}  # this process's loaded pipelines by (spec, device): kept across the units it runs


def _loaded(spec: ModelSpec, device: str):
    from ..pipeline import load_pipeline

    key = (spec, device)
    if key not in _MODELS:
        while len(_MODELS) >= 2:  # the attacked model and its original at most: a worker moving on frees them
            _MODELS.pop(next(iter(_MODELS)))
        model = load_pipeline(spec, device)
        _freeze(model.pipe)
        _MODELS[key] = model
    return _MODELS[key]


def _gpus_per_task(cfg: AttackConfig) -> float:
    if cfg.distributor != "ray":
        return 0
    if cfg.num_gpus is not None:
        return cfg.num_gpus
    import torch

    return 1 if torch.cuda.is_available() else 0


_DISTRIBUTION = ("distributor", "num_workers", "worker_index", "ray_address", "num_gpus", "retries")


def _recorded(cfg: AttackConfig) -> dict:
    """The config as recorded in attack.yaml: without how it was run (every worker of a partition writes it)."""
    return {k: v for k, v in cfg.to_dict().items() if k not in _DISTRIBUTION}


def _outcome(result) -> dict:
    """What an UnlearnDiffAtk record keeps beside its loss (the paper's ASR is recomputed from the flags)."""
    out = {
        "token_ids": result.token_ids,
        "start_loss": result.start_loss,
        "retokenizes": result.retokenizes,
        "loss_rendered": result.loss_rendered,
    }
    if result.flagged_before is not None:
        out |= {
            "flagged_before": result.flagged_before,
            "flagged_at": result.flagged_at,
            "checkpoints": result.checkpoints,
        }
    return out


def _checkpoint(cfg: AttackConfig, pipe, judge, batch: list[PromptRecord], seeds: list[int]):
    """The checkpoint of a batch: the attacked model renders each text with its prompt's seed and guidance (as
    the released code renders with the prompt's evaluation seed and guidance), and the judge says whether it shows
    the concept; a NaN judgement is not a flag."""
    render = _renderer(cfg, pipe, batch, seeds)

    def judge_texts(indices: list[int], texts: list[str]) -> list[bool]:
        images = render(indices, texts)
        prediction = judge.predict([images[i] for i in indices], num_workers=0)
        if cfg.concept not in prediction.concepts:
            raise ValueError(
                f"The judge {cfg.judge!r} does not judge {cfg.concept!r}; it judges: {prediction.concepts}"
            )
        column = prediction.concepts.index(cfg.concept)
        return [bool(x) for x in prediction.present[:, column]]

    return judge_texts


def _renderer(cfg: AttackConfig, pipe, batch: list[PromptRecord], seeds: list[int]):
    """``render(indices, texts) -> {index: image}``: the attacked model's image of each text with its prompt's seed
    and guidance (``target_guidance`` for a prompt without one) and ``target_steps``."""
    from .unlearndiffatk import render_targets

    def render(indices: list[int], texts: list[str]) -> dict[int, object]:
        images: dict[int, object] = {}
        groups: dict[float, list[int]] = {}
        for i in indices:
            guidance = batch[i].guidance if batch[i].guidance is not None else cfg.target_guidance
            groups.setdefault(guidance, []).append(i)
        text_of = dict(zip(indices, texts, strict=True))
        for guidance, group in groups.items():
            rendered = render_targets(
                pipe, [text_of[i] for i in group], [seeds[i] for i in group], cfg.target_steps, guidance
            )
            images.update(zip(group, rendered, strict=True))
        return images

    return render


def _record(source, seed, cfg, spec, checksum, options, text) -> dict:
    return {
        "prompt_id": f"{source.prompt_id}-{slug(cfg.method)}-{slug(spec.label)}",
        "concept": source.concept,
        "kind": "adversarial",
        "text": text,
        "subtheme": source.subtheme,
        "parent_id": source.prompt_id,
        "attack": cfg.method,
        "seed": seed,
        "guidance": source.guidance,
        "source_text": source.text,
        "target_model": spec.to_dict() | {"label": spec.label},
        "target_checksum": checksum,
        "attack_options": options,
    }


def _targets(cfg: AttackConfig, model, pending, seeds: dict, device: str) -> dict[str, Path]:
    """The target image of each pending prompt: supplied, rendered by an earlier run, or rendered now.

    Rendered targets live in ``out/targets/<digest>/PROMPT_ID.png``, the digest of what makes them (the original
    model's checksum, ``target_steps``, ``target_guidance``): another method's or another run's targets in the same
    output folder are reused only when they are the same images, and the folder serves as ``--target-images``."""
    if cfg.target_images is not None:
        return {r.prompt_id: given_target(cfg, r.prompt_id) for r in pending}
    wanted = original_spec(cfg, model.spec)
    folder = target_folder(cfg, wanted)
    paths = {r.prompt_id: folder / f"{r.prompt_id}.png" for r in pending}
    missing = [r for r in pending if not paths[r.prompt_id].is_file()]
    if not missing:
        return paths
    import io

    from .unlearndiffatk import render_targets

    original = model if wanted == model.spec else _loaded(wanted, device)  # the attacked model is the original
    for i in range(0, len(missing), cfg.batch_size):
        batch = missing[i : i + cfg.batch_size]
        by_guidance: dict[float, list[PromptRecord]] = {}
        for r in batch:
            by_guidance.setdefault(r.guidance if r.guidance is not None else cfg.target_guidance, []).append(r)
        for guidance, group in by_guidance.items():
            images = render_targets(
                original.pipe, [r.text for r in group], [seeds[r.prompt_id] for r in group], cfg.target_steps, guidance
            )
            for r, image in zip(group, images, strict=True):
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                atomic_write_bytes(paths[r.prompt_id], buffer.getvalue())
    del original
    return paths


def target_folder(cfg: AttackConfig, original: ModelSpec) -> Path:
    """Where the targets ``original`` renders with ``cfg``'s steps and guidance go (see :func:`_targets`)."""
    key = json_sha256([model_checksum(original), cfg.target_steps, cfg.target_guidance])[:16]
    return Path(cfg.out) / "targets" / key


def _open(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _progress(total: int, enabled: bool):
    if not enabled or not total:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="attack", unit="prompt")
