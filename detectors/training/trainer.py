"""Train a judge on a DataIGM root: probe (frozen backbone, cached features) or finetune, then calibrate and save.

Output folder (``out``)::

    config.yaml        the resolved training options
    split.json         how validation was carved, its counts and the validation image ids
    checkpoint.pt      the last epoch (trainable weights, optimizer, schedule, history): --resume continues it
    best.pt            the trainable weights of the epoch with the lowest validation loss
    summary.csv        one row per epoch
    features/          cached frozen features (probe mode) and decoded judge inputs (pixels-*.npy), unless
                       --cache-dir points elsewhere
    judge/             the calibrated judge in timm's Hub format (model.safetensors + config.json)
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import yaml
from sklearn.metrics import roc_auc_score

from detectors.data import (
    Entry,
    ShardImageDataset,
    default_num_workers,
    targets_and_mask,
)
from detectors.judges.calibrate import Calibration, fit_calibration, sigmoid
from detectors.judges.model import (
    autocast,
    classifier_name,
    create_judge_model,
    create_transforms,
    freeze_backbone,
    judge_data_config,
    pooled_features,
)
from detectors.judges.timm_judge import TimmJudge, save_judge
from detectors.metrics import binary_metrics, expected_calibration_error
from detectors.training import distributed
from detectors.training.config import TrainConfig
from detectors.training.data import TrainingData, make_loader, prepare_data
from detectors.training.features import cached_features
from detectors.training.losses import masked_bce
from detectors.training.pixels import PixelDataset, cached_pixels, normalize_batch, split_transform

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
SUMMARY = "summary.csv"


@dataclass
class TrainResult:
    output: Path
    judge_dir: Path | None
    judge: TimmJudge | None
    history: list[dict]
    calibration: Calibration | None
    metrics: dict


# ---------------------------------------------------------------- schedule and checkpoints


def cosine_schedule(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """LR factor per optimizer step: linear warm-up, then a cosine from 1 to ``min_ratio``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _atomic_torch_save(obj: object, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_summary(path: Path, history: list[dict]) -> None:
    """The whole history, rewritten each epoch (a resumed run never duplicates rows)."""
    columns = list(dict.fromkeys(k for row in history for k in row))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)


def _identity(cfg: TrainConfig, data: TrainingData) -> dict:
    """What a resumed run must share with the run it continues."""
    identity = {
        "model": cfg.model,
        "mode": cfg.mode,
        "concepts": data.concepts,
        "dataset": data.revision["manifest_sha256"],
    }
    if data.split_info["exclude_methods"]:  # only when set, so checkpoints of runs without it still resume
        identity["exclude_methods"] = data.split_info["exclude_methods"]
    return identity


# ---------------------------------------------------------------- the trainer


class _Trainer:
    """One training run; built by :func:`train_judge`."""

    def __init__(self, cfg: TrainConfig, dist: distributed.DistInfo):
        self.cfg, self.dist, self.device = cfg, dist, dist.device
        self.out = Path(cfg.out)
        self.amp = cfg.amp and self.device.type == "cuda"
        self.data = prepare_data(cfg)
        torch.manual_seed(cfg.seed)
        self.model = create_judge_model(
            cfg.model, len(self.data.concepts), cfg.pretrained, cfg.pretrained_path, cfg.model_kwargs
        ).to(self.device)
        self.data_config = judge_data_config(self.model, cfg.img_size)
        self.augment = cfg.mode == "finetune" and cfg.augment
        self.train_transform, self.eval_transform = create_transforms(self.data_config, augment=self.augment)
        self.out.mkdir(parents=True, exist_ok=True)  # only once the data and the model are known to be good
        self.probe = cfg.mode == "probe"
        self.trainable = freeze_backbone(self.model) if self.probe else self.model
        self.head_prefix = classifier_name(self.model)
        self.num_workers = (
            cfg.num_workers
            if cfg.num_workers is not None
            else default_num_workers(dist.world_size if dist.enabled else 1)
        )
        self.cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else self.out / "features"
        self.normalize: tuple | None = None  # (mean, std) of batches read from a pixel cache
        self._build_sources()
        loader_workers = 0 if self.cached else self.num_workers
        self.train_loader, self.train_sampler = self._make_loader(self.train_set, True, loader_workers)
        self.val_loader = self._make_loader(self.val_set, False, loader_workers)[0] if self.val_set else None
        self.wrapped = self.trainable
        if dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = torch.nn.parallel.DistributedDataParallel(self.trainable, device_ids=ids)

    # -- inputs ----------------------------------------------------------------------------------
    def _build_sources(self) -> None:
        cfg, data = self.cfg, self.data
        self.cached = self.probe and cfg.cache_features
        if self.cached:
            datasets = []
            for entries in (data.train, data.val):
                if not entries:
                    datasets.append(None)
                    continue
                features = self._features(entries, self.cache_dir)
                targets, mask = targets_and_mask(entries, data.concepts)
                mask = mask * features[1][:, None].float()  # unreadable images count for nothing
                datasets.append(torch.utils.data.TensorDataset(features[0], targets, mask, torch.arange(len(entries))))
            self.train_set, self.val_set = datasets
            return
        split = split_transform(self.eval_transform) if cfg.cache_images else None
        if split is not None:  # eval-transform inputs are decoded once; augmented ones are drawn from the files
            stages, self.normalize = split
        if self.augment or split is None:
            # each sample's augmentation is drawn from RNGs seeded by (seed, epoch, index)
            seed = cfg.seed if self.augment else None
            train_tf = self.train_transform if self.augment else self.eval_transform
            self.train_set = ShardImageDataset(data.train, data.concepts, train_tf, seed=seed)
        else:
            self.train_set = self._pixels(data.train, stages)
        if not data.val:
            self.val_set = None
        elif split is not None:
            self.val_set = self._pixels(data.val, stages)
        else:
            self.val_set = ShardImageDataset(data.val, data.concepts, self.eval_transform)

    def _pixels(self, entries: list[Entry], stages: list) -> PixelDataset:
        """A dataset over the pixel cache of ``entries`` (built by the main process, read by all)."""
        kwargs = dict(num_workers=self.num_workers, batch_size=self.cfg.batch_size)
        if self.dist.is_main:
            path, valid = cached_pixels(entries, stages, self.cache_dir, **kwargs)
        distributed.barrier(self.dist)
        if not self.dist.is_main:
            path, valid = cached_pixels(entries, stages, self.cache_dir, **kwargs)
        return PixelDataset(path, valid, entries, self.data.concepts)

    def _features(self, entries: list[Entry], cache_dir: Path):
        cfg = self.cfg
        kwargs = dict(
            batch_size=cfg.batch_size,
            num_workers=self.num_workers,
            device=self.device,
            amp=self.amp,
            progress=cfg.progress and self.dist.is_main,
        )
        if self.dist.is_main:  # one process writes the cache, the others read it
            result = cached_features(self.model, entries, self.eval_transform, cache_dir, **kwargs)
        distributed.barrier(self.dist)
        if not self.dist.is_main:
            result = cached_features(self.model, entries, self.eval_transform, cache_dir, **kwargs)
        return result

    def _logits(self, inputs: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
        inputs = inputs.to(self.device, non_blocking=True)
        if inputs.dtype == torch.uint8:  # pixel-cache batches travel as uint8 and are scaled on the device
            inputs = normalize_batch(inputs, *self.normalize)
        with autocast(self.device, self.amp):
            if self.cached:
                return module(inputs).float()
            if self.probe:
                with torch.no_grad():
                    features = pooled_features(self.model, inputs)
                return module(features).float()
            return module(inputs).float()

    def _make_loader(self, dataset, shuffle: bool, num_workers: int):
        return make_loader(
            dataset,
            self.cfg.batch_size,
            self.cfg.seed,
            shuffle,
            self.dist,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
        )

    # -- state -----------------------------------------------------------------------------------
    def trainable_state(self) -> dict:
        if self.probe:
            return {f"{self.head_prefix}.{k}": v for k, v in self.trainable.state_dict().items()}
        return self.model.state_dict()

    def load_trainable_state(self, state: dict) -> None:
        if self.probe:
            prefix = self.head_prefix + "."
            self.trainable.load_state_dict({k[len(prefix) :]: v for k, v in state.items()})
        else:
            self.model.load_state_dict(state)

    def checkpoint(self, epoch: int, history: list[dict], best: dict, bad_epochs: int, stopped: bool) -> None:
        state = {
            "epoch": epoch,
            "identity": _identity(self.cfg, self.data),
            "trainable": self.trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": history,
            "best": best,
            "bad_epochs": bad_epochs,
            "stopped": stopped,
            "torch_rng": torch.get_rng_state(),
        }
        _atomic_torch_save(state, self.out / CHECKPOINT)

    # -- loop ------------------------------------------------------------------------------------
    def setup_optimization(self, steps_per_epoch: int) -> None:
        from timm.optim import create_optimizer_v2

        cfg = self.cfg
        self.optimizer = create_optimizer_v2(
            self.trainable, opt="adamw", lr=self.cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        total = cfg.epochs * steps_per_epoch
        warmup = round(cfg.warmup_epochs * steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, cosine_schedule(total, warmup, cfg.min_lr_ratio)
        )
        fp16 = self.amp and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)

    def train_epoch(self, epoch: int, bar) -> dict:
        cfg = self.cfg
        loader = self.train_loader
        self.train_sampler.set_epoch(epoch)
        self.model.train(not self.probe)  # a probe keeps the frozen backbone in eval mode (BN, dropout)
        self.trainable.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, cells, images, started = 0.0, 0.0, 0, time.perf_counter()
        n_batches = len(loader)
        for i, batch in enumerate(loader):
            if batch is None:
                continue
            inputs, targets, mask, _ = batch
            step_now = (i + 1) % cfg.accum_steps == 0 or i + 1 == n_batches
            sync = contextlib.nullcontext()
            if self.dist.enabled and not step_now:
                sync = self.wrapped.no_sync()
            with sync:
                logits = self._logits(inputs, self.wrapped)
                targets, mask = targets.to(self.device), mask.to(self.device)
                loss = masked_bce(logits, targets, mask)
                self.scaler.scale(loss / cfg.accum_steps).backward()
            if step_now:
                if cfg.max_grad_norm:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.trainable.parameters(), cfg.max_grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
            labelled = float(mask.sum())
            loss_sum += float(loss.detach()) * labelled
            cells += labelled
            images += inputs.shape[0]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / max(cells, 1):.4f}")
        seconds = time.perf_counter() - started
        return {"train_loss": loss_sum / max(cells, 1.0), "seconds": seconds, "train_images_per_s": images / seconds}

    @torch.no_grad()
    def val_logits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw logits, targets and mask over the whole validation set (every process computes all of it)."""
        if self.val_set is None:
            n = len(self.data.concepts)
            return np.zeros((0, n)), np.zeros((0, n)), np.zeros((0, n))
        self.model.eval()
        logits, targets, masks = [], [], []
        for batch in self.val_loader:
            if batch is None:
                continue
            inputs, target, mask, _ = batch
            logits.append(self._logits(inputs, self.trainable).cpu())
            targets.append(target)
            masks.append(mask)
        return torch.cat(logits).numpy(), torch.cat(targets).numpy(), torch.cat(masks).numpy()

    def val_row(self) -> dict:
        logits, targets, mask = self.val_logits()
        row: dict = {}
        if not mask.sum():
            row["val_loss"] = float("nan")
            return row
        row["val_loss"] = float(masked_bce(*(torch.from_numpy(a) for a in (logits, targets, mask))))
        for col, concept in enumerate(self.data.concepts):
            rows = mask[:, col] > 0
            if rows.any():
                y, z = targets[rows, col], logits[rows, col]
                row[f"val_acc/{concept}"] = float(np.mean((z >= 0) == (y > 0.5)))
                row[f"val_auroc/{concept}"] = float(roc_auc_score(y, z)) if 0 < y.sum() < y.size else None
        return row


@contextlib.contextmanager
def _reproducible(cfg: TrainConfig) -> Iterator[None]:
    """Threads, deterministic kernels and seeded RNGs for the run; the process's settings come back after."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        random.setstate(py_state)
        np.random.set_state(np_state)


def _resume_state(path: Path, identity: dict) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["identity"] != identity:
        diffs = {k: (state["identity"].get(k), v) for k, v in identity.items() if state["identity"].get(k) != v}
        raise ValueError(f"Cannot resume {path}: the run differs (checkpoint vs now: {diffs})")
    return state


def train_judge(cfg: TrainConfig) -> TrainResult:
    """Train, calibrate on validation and save a judge in ``cfg.out/judge``; see the module docstring.

    With ``resume`` and no checkpoint in ``cfg.out`` a fresh run starts (and says so in the log).

    Raises:
        ValueError: bad options, a dataset without both classes for a concept, or an output folder holding
            another run (without ``resume``). Nothing is written before these checks.
    """
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={str(out)!r} is a file; give a folder for the run")
    if cfg.resume and not (out / CHECKPOINT).exists():
        logger.info("resume: nothing to resume in %s (no %s): starting a fresh run", out, CHECKPOINT)
        cfg = replace(cfg, resume=False)
    if not cfg.resume and (out / CHECKPOINT).exists():
        raise ValueError(
            f"{out} already holds a training run; pass --resume true to continue it or choose another --out"
        )
    dist = distributed.setup(cfg.device)
    try:
        with _reproducible(cfg):
            return _train(cfg, dist)
    finally:
        distributed.cleanup(dist)


def _train(cfg: TrainConfig, dist: distributed.DistInfo) -> TrainResult:
    out = Path(cfg.out)
    trainer = _Trainer(cfg, dist)
    data = trainer.data
    if dist.is_main:
        (out / "config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False), encoding="utf-8")
        (out / "split.json").write_text(json.dumps(data.split_info, indent=2) + "\n", encoding="utf-8")
    steps_per_epoch = math.ceil(len(trainer.train_loader) / cfg.accum_steps)
    trainer.setup_optimization(steps_per_epoch)

    history: list[dict] = []
    best = {"epoch": None, "val_loss": math.inf}
    bad_epochs, stopped, start = 0, False, 0
    if cfg.resume:
        state = _resume_state(out / CHECKPOINT, _identity(cfg, data))
        trainer.load_trainable_state(state["trainable"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        trainer.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        history, best, bad_epochs, stopped = state["history"], state["best"], state["bad_epochs"], state["stopped"]
        start = state["epoch"] + 1
        logger.info("resuming %s after epoch %d", out, start)

    bar = None
    if cfg.progress and dist.is_main and start < cfg.epochs and not stopped:
        from tqdm.auto import tqdm

        per_epoch = len(trainer.train_loader)
        bar = tqdm(total=(cfg.epochs - start) * per_epoch, desc="train", unit="batch")
    for epoch in range(start, cfg.epochs):
        if stopped:
            break
        row = {"epoch": epoch + 1, "lr": trainer.optimizer.param_groups[0]["lr"]}
        row.update(trainer.train_epoch(epoch, bar))
        row.update(trainer.val_row())
        history.append(row)
        # without validation data every epoch counts as the best (the last one is kept)
        improved = math.isnan(row["val_loss"]) or row["val_loss"] < best["val_loss"] or best["epoch"] is None
        if improved:
            best, bad_epochs = {"epoch": epoch + 1, "val_loss": row["val_loss"]}, 0
        else:
            bad_epochs += 1
        stopped = bool(cfg.early_stopping) and bad_epochs >= cfg.early_stopping
        if dist.is_main:
            if improved:
                _atomic_torch_save(trainer.trainable_state(), out / BEST)
            trainer.checkpoint(epoch, history, best, bad_epochs, stopped)
            _write_summary(out / SUMMARY, history)
        logger.info(
            "epoch %d: train loss %.4f, val loss %.4f%s",
            epoch + 1,
            row["train_loss"],
            row["val_loss"],
            " (best)" if improved else "",
        )
        if stopped:
            logger.info("early stopping: no better validation loss for %d epoch(s)", bad_epochs)
    if bar is not None:
        bar.close()
    distributed.barrier(dist)
    if (out / BEST).exists():
        trainer.load_trainable_state(torch.load(out / BEST, map_location="cpu", weights_only=True))
    return _finish(trainer, history, best)


def _finish(trainer: _Trainer, history: list[dict], best: dict) -> TrainResult:
    """Calibrate the best weights on validation, measure them and save the judge."""
    cfg, data = trainer.cfg, trainer.data
    logits, targets, mask = trainer.val_logits()
    calibration = fit_calibration(logits, targets, mask, data.concepts, cfg.threshold_rule, cfg.calibrate)
    metrics: dict = {"validation": {}, "best_epoch": best["epoch"]}
    for col, concept in enumerate(data.concepts):
        rows = mask[:, col] > 0
        if not rows.any():
            continue
        z, y = logits[rows, col], targets[rows, col]
        probs = sigmoid(z / calibration.temperatures[concept])
        values = binary_metrics(y, probs, probs >= calibration.thresholds[concept])
        values["ece_uncalibrated"] = expected_calibration_error(y, sigmoid(z))
        values["n"] = int(rows.sum())
        metrics["validation"][concept] = values
    training = {
        "model": cfg.model,
        "mode": cfg.mode,
        "pretrained": cfg.pretrained if cfg.pretrained_path is None else f"file:{Path(cfg.pretrained_path).name}",
        "epochs": len(history),
        "best_epoch": best["epoch"],
        "lr": cfg.learning_rate,
        "batch_size": cfg.batch_size * cfg.accum_steps * trainer.dist.world_size,
        "seed": cfg.seed,
        "threads": cfg.threads,
        "deterministic": cfg.deterministic,
        "augment": trainer.augment,
    }
    dataset = {
        **data.revision,
        "train_split": cfg.train_split,
        "validation": data.split_info["rule"],
        "counts": data.split_info["counts"],
        "exclude_methods": data.split_info["exclude_methods"],  # held out: `judge eval` measures them apart
    }
    judge_dir = None
    if trainer.dist.is_main:
        judge_dir = save_judge(
            trainer.model,
            Path(cfg.out) / "judge",
            data.concepts,
            calibration.temperatures,
            calibration.thresholds,
            calibration.rule,
            trainer.data_config,
            dataset=dataset,
            metrics=metrics,
            training=training,
            class_names=data.class_names,
        )
    config = {"threshold_rule": calibration.rule, "dataset": dataset, "metrics": metrics, "training": training}
    config["class_names"] = data.class_names
    judge = TimmJudge(
        trainer.model,
        data.concepts,
        calibration.temperatures,
        calibration.thresholds,
        trainer.data_config,
        config=config,
        spec=f"local-dir:{judge_dir}" if judge_dir else "",
        device=trainer.device,
    )
    return TrainResult(Path(cfg.out), judge_dir, judge, history, calibration, metrics)
