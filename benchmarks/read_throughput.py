"""Read throughput: a folder of PNGs against dataigm shards, decoded to float tensors.

The same N random RGB PNG images (S x S, fixed seed) are read three ways, each time decoded to a
``float32`` tensor of shape (3, S, S) in [0, 1] together with its class label, and batched by a
``torch.utils.data.DataLoader(batch_size=B, num_workers=W)``:

* ``imagefolder``: ``torchvision.datasets.ImageFolder`` over ``<workdir>/folder/<class>/*.png``
  with ``transforms.ToTensor()``;
* ``webdataset``: the shards through ``webdataset.WebDataset(urls, shardshuffle=False)
  .decode("torchrgb")`` (with W > 0 the shards are split across workers by webdataset's default
  worker splitter);
* ``hf-streaming``: the shards through ``datasets.load_dataset(root, split="train",
  streaming=True)``, whose PIL ``png`` column is turned into a tensor by ``.map`` with
  ``torchvision.transforms.functional.to_tensor`` (the same conversion as ``ToTensor()``).

The shards are written from the folder by dataigm's own ingest (``ingest_folder``), which keeps
PNG bytes as they are, so all three methods decode exactly the same files. Building the dataset
objects (scanning the folder, resolving the data files) is not timed; each timed pass is one full
iteration of a fresh DataLoader (worker start-up included when W > 0). Each method gets one
warm-up pass, then R timed passes; the table reports the median samples/s and its ratio to
``imagefolder``. Every pass is checked to yield exactly N samples, and the first tensor of each
method to have shape (3, S, S).

Run from the repository root::

    python benchmarks/read_throughput.py --n 2000
    python benchmarks/read_throughput.py --n 2000 --num-workers 2 --json read_throughput.json

Caches of ``datasets`` and the Hub go into the work folder, with the Hub offline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

CLASSES = ("church", "other")  # the church concept's target and pair class folders
CONCEPT = "church"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="number of images (default: %(default)s)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="DataLoader batch size (default: %(default)s)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default: %(default)s)")
    parser.add_argument("--samples-per-shard", type=int, default=500, help="shard size (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="timed passes per method (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, help="keep the images, shards and caches here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the raw timings to this JSON file")
    args = parser.parse_args(argv)
    for name in ("n", "size", "batch_size", "samples_per_shard", "runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.n < len(CLASSES):
        parser.error(f"--n must be at least {len(CLASSES)} (one image per class)")
    if args.num_workers < 0:
        parser.error("--num-workers must be 0 or more")
    return args


def configure_caches(workdir: Path) -> None:
    """Point the Hugging Face caches into ``workdir`` and keep the Hub offline (before ``datasets`` is imported)."""
    os.environ.update(
        {
            "HF_HOME": str(workdir / "cache" / "hf"),
            "HF_DATASETS_CACHE": str(workdir / "cache" / "datasets"),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        }
    )


def machine_info() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------- data


def random_image(rng, size: int):
    """An RGB image of smooth colour blobs (upsampled coarse noise) plus fine pixel noise."""
    import numpy as np
    from PIL import Image

    coarse = rng.integers(0, 256, size=(max(2, size // 8), max(2, size // 8), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR), dtype=np.int16)
    noisy = smooth + rng.integers(-24, 25, size=smooth.shape, dtype=np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_folder(folder: Path, n: int, size: int, seed: int = 0) -> None:
    """``n`` PNGs in ``folder/<class>/``, alternating between the two classes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for cls in CLASSES:
        (folder / cls).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        random_image(rng, size).save(folder / CLASSES[i % len(CLASSES)] / f"img_{i:06d}.png", format="PNG")


def build_shards(folder: Path, root: Path, samples_per_shard: int) -> list[Path]:
    """Ingest ``folder`` into the dataset ``root`` with dataigm; returns the shard files."""
    from dataigm.layout import shard_files
    from dataigm.sources.folder import ingest_folder

    report = ingest_folder(
        folder,
        root,
        concept=CONCEPT,
        split="train",
        source="real",
        samples_per_shard=samples_per_shard,
        progress=False,
    )
    if report.skipped_files:
        raise RuntimeError(f"ingest skipped {len(report.skipped_files)} file(s): {report.skipped_files[:3]}")
    return shard_files(root)


def check_same_bytes(folder: Path, root: Path) -> None:
    """The shards hold exactly the PNG files of the folder, byte for byte."""
    import hashlib
    from collections import Counter

    from dataigm.reader import iter_samples

    in_folder = Counter(hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.png"))
    in_shards = Counter(hashlib.sha256(s.image).hexdigest() for s in iter_samples(root) if s.ext == "png")
    assert in_folder == in_shards, "the shards do not hold the same PNG bytes as the folder"


def prepare(workdir: Path, n: int, size: int, samples_per_shard: int) -> tuple[Path, Path, list[Path]]:
    folder, root = workdir / "folder", workdir / "root"
    for path in (folder, root):  # a reused --workdir starts from scratch
        shutil.rmtree(path, ignore_errors=True)
    write_folder(folder, n, size)
    shards = build_shards(folder, root, samples_per_shard)
    check_same_bytes(folder, root)
    return folder, root, shards


# ---------------------------------------------------------------- the three datasets


def imagefolder_dataset(folder: Path):
    from torchvision import datasets, transforms

    return datasets.ImageFolder(str(folder), transform=transforms.ToTensor())


def webdataset_dataset(shards: list[Path]):
    import webdataset as wds

    return wds.WebDataset([str(p) for p in shards], shardshuffle=False).decode("torchrgb").to_tuple("png", "cls")


def _png_to_tensor(example: dict) -> dict:
    from torchvision.transforms.functional import to_tensor

    return {"png": to_tensor(example["png"]), "cls": example["cls"]}


def hf_streaming_dataset(root: Path):
    from datasets import load_dataset

    ds = load_dataset(str(root), split="train", streaming=True)
    return ds.select_columns(["png", "cls"]).map(_png_to_tensor)


def batch_images(batch):
    """The image tensor of a collated batch: ``(images, labels)`` or ``{"png": images, ...}``."""
    return batch["png"] if isinstance(batch, dict) else batch[0]


# ---------------------------------------------------------------- timing


def one_pass(dataset, batch_size: int, num_workers: int) -> tuple[float, int, tuple[int, ...], str]:
    """Iterate a fresh DataLoader over ``dataset`` once: seconds, samples, first tensor shape and dtype."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    count, first_shape, first_dtype = 0, None, None
    start = time.perf_counter()
    for batch in loader:
        images = batch_images(batch)
        if first_shape is None:
            first_shape, first_dtype = tuple(images.shape[1:]), str(images.dtype)
        count += images.shape[0]
    return time.perf_counter() - start, count, first_shape, first_dtype


def bench(name: str, dataset, args: argparse.Namespace) -> dict:
    """One warm-up pass and ``args.runs`` timed passes; checks the count and the first tensor's shape each pass."""
    expected_shape = (3, args.size, args.size)
    times = []
    for run in range(args.runs + 1):
        seconds, count, shape, dtype = one_pass(dataset, args.batch_size, args.num_workers)
        assert count == args.n, f"{name}: pass {run} yielded {count} samples, expected {args.n}"
        assert shape == expected_shape, f"{name}: first tensor has shape {shape}, expected {expected_shape}"
        assert dtype == "torch.float32", f"{name}: first tensor is {dtype}, expected torch.float32"
        times.append(seconds)
    warmup, timed = times[0], times[1:]
    median = statistics.median(timed)
    return {"method": name, "warmup_s": warmup, "times_s": timed, "median_s": median, "samples_per_s": args.n / median}


def check_value_range(dataset, name: str) -> None:
    """The first decoded tensor lies in [0, 1] (checked once, outside the timed passes)."""
    sample = next(iter(dataset))
    image = batch_images(sample)
    low, high = float(image.min()), float(image.max())
    assert 0.0 <= low and high <= 1.0, f"{name}: first tensor spans [{low}, {high}], expected within [0, 1]"


# ---------------------------------------------------------------- report


def format_table(results: list[dict]) -> str:
    """One row per method: median seconds, median samples/s, ratio to the first method, and every timed pass."""
    base = results[0]["samples_per_s"]
    header = ("method", "median s", "samples/s", "vs imagefolder", "passes (s)")
    rows = [header]
    for r in results:
        passes = " ".join(f"{t:.3f}" for t in r["times_s"])
        ratio = f"{r['samples_per_s'] / base:.2f}x"
        rows.append((r["method"], f"{r['median_s']:.3f}", f"{r['samples_per_s']:.0f}", ratio, passes))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]

    def line(row) -> str:  # text columns left-aligned, numbers right-aligned
        cells = zip(row, widths, strict=True)
        return "  ".join(c.ljust(w) if i in (0, 4) else c.rjust(w) for i, (c, w) in enumerate(cells)).rstrip()

    return "\n".join([line(rows[0]), "  ".join("-" * w for w in widths), *(line(row) for row in rows[1:])])


def print_header(info: dict, args: argparse.Namespace, shards: list[Path], workdir: Path) -> None:
    print(
        f"machine: {info['platform']}, python {info['python']}, {info['cpu_count']} CPUs, "
        f"torch {info['torch']} ({info['torch_threads']} threads)"
    )
    print(
        f"data:    {args.n} PNG images {args.size}x{args.size}, {len(shards)} shard(s) of up to "
        f"{args.samples_per_shard}, in {workdir}"
    )
    print(
        f"loader:  batch_size={args.batch_size}, num_workers={args.num_workers}; "
        f"1 warm-up + {args.runs} timed pass(es) per method"
    )
    print()


def run(args: argparse.Namespace, workdir: Path) -> dict:
    configure_caches(workdir)
    info = machine_info()
    folder, root, shards = prepare(workdir, args.n, args.size, args.samples_per_shard)
    print_header(info, args, shards, workdir)
    methods: list[tuple[str, Callable[[], Iterable]]] = [
        ("imagefolder", lambda: imagefolder_dataset(folder)),
        ("webdataset", lambda: webdataset_dataset(shards)),
        ("hf-streaming", lambda: hf_streaming_dataset(root)),
    ]
    results = []
    for name, make in methods:
        dataset = make()
        check_value_range(dataset, name)
        results.append(bench(name, dataset, args))
    print(format_table(results))
    return {
        "machine": info,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "shards": len(shards),
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dataigm-read-throughput-"))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        report = run(args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nraw timings written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
