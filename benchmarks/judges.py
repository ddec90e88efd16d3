"""Judge throughput: training and inference images/s, cached vs recomputed probe features, shards vs ImageFolder.

The same N random RGB PNG images (S x S, fixed seed, two classes) are written as an ``ImageFolder``
tree and ingested into a dataigm root by dataigm's own ingest (PNG bytes kept as they are). The judge
model is ``--model`` at random weights (default: the real CLIP ViT-B/32 architecture of the default
judge, ``vit_base_patch32_clip_quickgelu_224``, at 224 px), so the figures carry the real compute.
Each measurement is repeated ``--runs`` times; the tables give the median (and every run).

1. **inference**: images/s of ``judge.predict_entries`` over the root's index (our shard loader:
   read at the indexed byte offset, decode, eval transform, model, temperature, threshold), and of a
   ``torchvision.datasets.ImageFolder`` with the same eval transform feeding the same model through a
   ``DataLoader`` with the same batch size and workers: the loader comparison.
2. **probe, per epoch**: ``train_judge(mode=probe)`` with ``cache_features=false`` (the frozen backbone
   runs in every step of every epoch) against the cached mode, whose first epoch pays the one-off
   feature extraction (timed on its own, on an empty cache) and whose later epochs train only the head.
   The ratio is recomputed seconds / cached seconds for each epoch.
3. **finetune**: training images/s of ``train_judge(mode=finetune)`` (forward + backward + AdamW step).

Timed sections exclude writing the images and building the index; every run starts from a fresh
output folder and an empty feature cache. Run from the repository root::

    python benchmarks/judges.py                      # CPU: about 3 minutes on 2 idle cores
    python benchmarks/judges.py --device cuda --n 2048 --batch-size 128
    python benchmarks/judges.py --model resnet18 --img-size 64 --n 512   # a quick look
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

CLASSES = ("church", "other")
CONCEPT = "church"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit_base_patch32_clip_quickgelu_224", help="timm model (random weights)")
    parser.add_argument("--model-kwargs", type=json.loads, default={}, help="JSON create_model arguments")
    parser.add_argument("--img-size", type=int, default=None, help="input side for size-flexible models")
    parser.add_argument("--n", type=int, default=96, help="number of images (default: %(default)s)")
    parser.add_argument("--size", type=int, default=64, help="side of the stored PNGs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default: %(default)s)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="probe epochs (default: %(default)s)")
    parser.add_argument("--finetune-epochs", type=int, default=1, help="finetune epochs (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each measurement (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, help="keep images, shards and runs here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the raw timings to this JSON file")
    args = parser.parse_args(argv)
    for name in ("n", "size", "batch_size", "epochs", "finetune_epochs", "runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def configure_environment(workdir: Path) -> None:
    os.environ.update(
        {
            "HF_HOME": str(workdir / "cache" / "hf"),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TQDM_DISABLE": "1",
        }
    )
    logging.basicConfig(level=logging.WARNING)


def machine_info(device: str) -> dict:
    import timm
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


# ---------------------------------------------------------------- data


def write_folder(folder: Path, n: int, size: int, seed: int = 0) -> None:
    """``n`` PNGs in ``folder/<class>/``: noisy colour blobs, reddish for ``church`` and bluish for ``other``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for cls in CLASSES:
        (folder / cls).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cls = CLASSES[i % 2]
        base = np.array([190, 70, 60] if cls == "church" else [60, 70, 190], dtype=np.int16)
        coarse = rng.integers(-60, 61, size=(max(2, size // 8), max(2, size // 8), 3))
        smooth = np.asarray(
            Image.fromarray((coarse + 128).astype(np.uint8)).resize((size, size), Image.BILINEAR), dtype=np.int16
        )
        pixels = np.clip(base + smooth - 128 + rng.integers(-20, 21, size=(size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / cls / f"img_{i:06d}.png", format="PNG")


def build_root(folder: Path, root: Path) -> None:
    from dataigm.sources.folder import ingest_folder

    report = ingest_folder(folder, root, concept=CONCEPT, split="train", source="real", progress=False)
    if report.skipped_files or report.samples != sum(1 for _ in folder.rglob("*.png")):
        raise RuntimeError(f"ingest did not take every image: {report.summary()}")


# ---------------------------------------------------------------- measurements


def _model(args):
    import torch

    from detectors.judges.model import create_judge_model, judge_data_config

    torch.manual_seed(0)
    model = create_judge_model(args.model, 1, pretrained=False, model_kwargs=args.model_kwargs)
    return model, judge_data_config(model, args.img_size)


def inference_runs(args, root: Path, folder: Path) -> dict:
    """images/s of the judge over our shards, and of ImageFolder feeding the same model."""
    import torch
    from torchvision.datasets import ImageFolder

    from detectors.data import build_index
    from detectors.judges import TimmJudge

    model, data_config = _model(args)
    judge = TimmJudge(model, [CONCEPT], {CONCEPT: 1.0}, {CONCEPT: 0.5}, data_config, device=args.device)
    entries = build_index(root)
    folder_set = ImageFolder(str(folder), transform=judge.image_transform)
    assert len(entries) == len(folder_set) == args.n

    def shards() -> float:
        start = time.perf_counter()
        prediction = judge.predict_entries(entries, batch_size=args.batch_size, num_workers=args.num_workers)
        seconds = time.perf_counter() - start
        assert prediction.probabilities.shape == (args.n, 1)
        return args.n / seconds

    def imagefolder() -> float:
        loader = torch.utils.data.DataLoader(folder_set, batch_size=args.batch_size, num_workers=args.num_workers)
        count, start = 0, time.perf_counter()
        for images, _ in loader:
            probs = judge.forward(images)[0]
            count += probs.shape[0]
        seconds = time.perf_counter() - start
        assert count == args.n
        return args.n / seconds

    shards()  # warm-up (allocator, first-call overheads)
    out = {"shards": [], "imagefolder": []}
    for _ in range(args.runs):  # interleaved, so drifting load hits both alike
        out["shards"].append(shards())
        out["imagefolder"].append(imagefolder())
    return out


def _train(args, root: Path, out: Path, **options):
    from detectors.training.trainer import TrainConfig, train_judge

    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(
        data=str(root),
        out=str(out),
        model=args.model,
        pretrained=False,
        model_kwargs=args.model_kwargs,
        img_size=args.img_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        val_fraction=0.1,
        device=args.device,
        progress=False,
        **options,
    )
    return train_judge(config)


def extraction_seconds(args, root: Path, cache: Path) -> float:
    """Wall time of the one-off feature extraction of the training images into an empty cache."""
    from detectors.data import build_index, carve_validation
    from detectors.judges.model import create_transforms
    from detectors.training.features import cached_features

    shutil.rmtree(cache, ignore_errors=True)
    model, data_config = _model(args)
    model.to(args.device)
    train, _ = carve_validation(build_index(root), 0.1)
    _, eval_transform = create_transforms(data_config)
    start = time.perf_counter()
    cached_features(model, train, eval_transform, cache, args.batch_size, args.num_workers, args.device)
    return time.perf_counter() - start


def probe_runs(args, root: Path, work: Path) -> dict:
    """Per-epoch seconds of the probe with the backbone recomputed, and with cached features."""
    out = {"recomputed": [], "cached_head": [], "extraction": []}
    for run in range(args.runs):
        recomputed = _train(
            args, root, work / "probe-recomputed", mode="probe", epochs=args.epochs, cache_features=False
        )
        out["recomputed"].append([row["seconds"] for row in recomputed.history])
        cache = work / f"cache-{run}"
        out["extraction"].append(extraction_seconds(args, root, cache))
        cached = _train(
            args, root, work / "probe-cached", mode="probe", epochs=args.epochs, cache_dir=str(cache)
        )  # reads the cache just written: its epochs train the head only
        out["cached_head"].append([row["seconds"] for row in cached.history])
    return out


def finetune_runs(args, root: Path, work: Path) -> list[float]:
    """Training images/s (median over the epochs of a run) of full fine-tuning."""
    out = []
    for _ in range(args.runs):
        result = _train(args, root, work / "finetune", mode="finetune", epochs=args.finetune_epochs, augment=False)
        out.append(statistics.median(row["train_images_per_s"] for row in result.history))
    return out


# ---------------------------------------------------------------- report


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(row):
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def _runs(values) -> str:
    return " ".join(f"{v:.1f}" if v >= 10 else f"{v:.3f}" for v in values)


def report(args, results: dict) -> str:
    med = statistics.median
    inf = results["inference"]
    base = med(inf["imagefolder"])
    lines = ["inference (eval transform + model + calibration), images/s"]
    lines.append(
        _table(
            ("loader", "median img/s", "vs ImageFolder", "runs"),
            [
                (
                    "dataigm shards (judge.predict_entries)",
                    f"{med(inf['shards']):.1f}",
                    f"{med(inf['shards']) / base:.2f}x",
                    _runs(inf["shards"]),
                ),
                ("torchvision ImageFolder + same model", f"{base:.1f}", "1.00x", _runs(inf["imagefolder"])),
            ],
        )
    )
    probe = results["probe"]
    rows = []
    for epoch in range(args.epochs):
        recomputed = med(run[epoch] for run in probe["recomputed"])
        head = med(run[epoch] for run in probe["cached_head"])
        cached = head + (med(probe["extraction"]) if epoch == 0 else 0.0)
        rows.append(
            (
                str(epoch + 1),
                f"{recomputed:.3f}",
                f"{cached:.3f}" + (" (extraction + head)" if epoch == 0 else " (head only)"),
                f"{recomputed / cached:.1f}x",
            )
        )
    total_recomputed = sum(med(run[e] for run in probe["recomputed"]) for e in range(args.epochs))
    total_cached = med(probe["extraction"]) + sum(
        med(run[e] for run in probe["cached_head"]) for e in range(args.epochs)
    )
    rows.append(("all", f"{total_recomputed:.3f}", f"{total_cached:.3f}", f"{total_recomputed / total_cached:.1f}x"))
    lines += [
        "",
        f"probe training, seconds per epoch ({args.n} images x 0.9 for training; medians of {args.runs} runs)",
    ]
    lines.append(_table(("epoch", "backbone recomputed", "cached features", "ratio"), rows))
    lines.append(f"feature extraction runs (s): {_runs(probe['extraction'])}")
    ft = results["finetune"]
    lines += ["", "finetune training (forward + backward + AdamW), images/s"]
    lines.append(_table(("mode", "median img/s", "runs"), [("finetune", f"{med(ft):.1f}", _runs(ft))]))
    return "\n".join(lines)


def run(args: argparse.Namespace, workdir: Path) -> dict:
    configure_environment(workdir)
    info = machine_info(args.device)
    folder, root = workdir / "folder", workdir / "root"
    for path in (folder, root):
        shutil.rmtree(path, ignore_errors=True)
    write_folder(folder, args.n, args.size)
    build_root(folder, root)
    gpu = f", {info['gpu']}" if "gpu" in info else ""
    print(
        f"machine: {info['platform']}, python {info['python']}, {info['cpu_count']} CPUs, torch {info['torch']} "
        f"({info['torch_threads']} threads), timm {info['timm']}, device {args.device}{gpu}"
    )
    size = f"img_size={args.img_size}" if args.img_size else "its pretrained_cfg input size"
    print(f"model:   {args.model} at random weights {args.model_kwargs or ''} ({size})")
    print(
        f"data:    {args.n} PNG images {args.size}x{args.size}; batch {args.batch_size}, {args.num_workers} workers; "
        f"{args.runs} runs per measurement\n"
    )
    started = time.perf_counter()
    results = {
        "inference": inference_runs(args, root, folder),
        "probe": probe_runs(args, root, workdir / "runs"),
        "finetune": finetune_runs(args, root, workdir / "runs"),
    }
    print(report(args, results))
    print(f"\ntotal benchmark time: {time.perf_counter() - started:.0f} s")
    return {
        "machine": info,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="dataigm-judges-bench-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        raw = run(args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
        print(f"raw timings written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
