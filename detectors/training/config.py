"""The options of a judge training run (``dataigm judge train``): one dataclass, light to import.

The CLI builds ``judge train``'s flags and their help from :class:`TrainConfig`'s fields and its
``Attributes:`` docstring, so every field has one line there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from detectors.judges.calibrate import parse_threshold_rule
from detectors.judges.model import DEFAULT_MODEL, MODES

DEFAULT_LR = {"probe": 1e-3, "finetune": 3e-5}


@dataclass
class TrainConfig:
    """Options of ``dataigm judge train`` (the CLI flags have the same names with dashes).

    Attributes:
        data: the dataset root.
        out: the output folder: checkpoints, summary.csv, config.yaml and the saved judge in ``out/judge``.
        concepts: concepts to judge, one logit each (default: every concept of the training split).
        model: any ``timm.create_model`` name.
        pretrained: start from pretrained weights (timm's source, or ``pretrained_path``).
        pretrained_path: a local weights file for ``model`` (offline runs).
        model_kwargs: extra ``create_model`` arguments, e.g. ``{"img_size": 32}``.
        img_size: input side for models that accept any size (default: the model's pretrained_cfg).
        mode: ``probe`` (frozen backbone, trained classifier) or ``finetune`` (everything trained).
        train_split: the split to train on.
        exclude_methods: unlearning methods whose images are left out of training and validation (e.g.
            ``ESD,UCE``), so ``dataigm judge eval`` can measure the judge on methods it never saw; recorded in
            the judge's ``config.json`` (``dataset.exclude_methods``).
        val_split: a split to validate on; without it ``val_fraction`` of ``train_split`` is carved out
            (by prompt for generated images, by file for the others).
        val_fraction: share of groups carved out for validation.
        epochs: passes over the training split.
        batch_size: images per micro-batch.
        lr: AdamW's peak learning rate, followed by a cosine schedule (default: 1e-3 probe, 3e-5 finetune).
        weight_decay: AdamW's decoupled weight decay.
        warmup_epochs: linear warm-up length, in epochs (fractions allowed).
        min_lr_ratio: the cosine schedule ends at ``lr * min_lr_ratio``.
        accum_steps: micro-batches per optimizer step.
        max_grad_norm: gradient clipping (None: off).
        augment: timm's training augmentation in finetune mode (probe always uses the eval transform).
        cache_features: probe mode: compute frozen features once and cache them on disk.
        cache_images: decode each image once, resized and cropped to the judge's input size, into a uint8 cache
            on disk, and read that in every epoch (inputs of the eval transform: validation, and training
            without augmentation); the inputs are bit-identical to decoding each time.
        cache_dir: where the feature and image caches live (default ``<out>/features``).
        early_stopping: stop after this many epochs without a lower validation loss (0: off).
        threshold_rule: ``max_f1``, ``fpr@X`` or ``fixed@T``.
        calibrate: fit a temperature per concept (False: T = 1).
        amp: mixed precision on CUDA (ignored on CPU).
        device: ``cpu``, ``cuda``, ``cuda:1``... (None, the CLI's ``auto``: CUDA when available; ``LOCAL_RANK``
            under torchrun).
        num_workers: DataLoader worker processes, kept across epochs (None: the host's cores less one, at most
            8, shared by the processes of a torchrun; they change nothing in the result: each sample's
            augmentation is seeded by (seed, epoch, index)).
        seed: seeds the model's initialisation, every epoch's sample order and every augmentation, so the
            same seed, data, options and ``threads`` give the same weights.
        threads: CPU threads of torch's kernels during training (None: torch's default, the machine's cores).
            CPU kernels split their sums by thread count, so a fixed number gives the same weights on
            machines with different core counts; the rest of the process keeps its own setting.
        deterministic: ``torch.use_deterministic_algorithms(True, warn_only=True)`` during training (and no
            cuDNN benchmarking): deterministic kernels where torch has them.
        resume: continue the run in ``out`` from its last checkpoint; with none there, start a fresh run (logged).
        progress: show a progress bar.
    """

    data: str
    out: str
    concepts: list[str] | None = None
    model: str = DEFAULT_MODEL
    pretrained: bool = True
    pretrained_path: str | None = None
    model_kwargs: dict = field(default_factory=dict)
    img_size: int | None = None
    mode: str = "probe"
    train_split: str = "train"
    exclude_methods: list[str] | None = None
    val_split: str | None = None
    val_fraction: float = 0.1
    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float = 0.05
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0
    accum_steps: int = 1
    max_grad_norm: float | None = 1.0
    augment: bool = True
    cache_features: bool = True
    cache_images: bool = True
    cache_dir: str | None = None
    early_stopping: int = 0
    threshold_rule: str = "max_f1"
    calibrate: bool = True
    amp: bool = True
    device: str | None = None
    num_workers: int | None = None
    seed: int = 0
    threads: int | None = None
    deterministic: bool = True
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.concepts, str):
            self.concepts = [c.strip() for c in self.concepts.split(",") if c.strip()]
        elif self.concepts is not None:
            self.concepts = [c.strip() for item in self.concepts for c in str(item).split(",") if c.strip()]
        if isinstance(self.exclude_methods, str):
            self.exclude_methods = [self.exclude_methods]
        if self.exclude_methods is not None:  # "ESD,UCE" as well as a list
            names = [m.strip() for item in self.exclude_methods for m in str(item).split(",") if m.strip()]
            self.exclude_methods = list(dict.fromkeys(names)) or None
        if self.mode not in MODES:
            raise ValueError(f"Unknown mode {self.mode!r}; valid modes: {', '.join(MODES)}")
        for name in ("epochs", "batch_size", "accum_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be at least 1")
        for name in ("img_size", "threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be at least 1 (or null for the default)")
        if self.early_stopping < 0:
            raise ValueError(f"early_stopping={self.early_stopping!r} must be 0 (off) or a number of epochs")
        for name in ("num_workers", "seed", "weight_decay", "warmup_epochs"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be 0 or more")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr >= 0):
            raise ValueError(f"lr={self.lr!r} must be a learning rate >= 0 (or null for the mode's default)")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio={self.min_lr_ratio!r} must be in [0, 1]")
        if self.max_grad_norm is not None and self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm={self.max_grad_norm!r} must be > 0 (or null/0: no clipping)")
        if self.val_split is None and not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction!r} must be strictly between 0 and 1")
        parse_threshold_rule(self.threshold_rule)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.mode]
