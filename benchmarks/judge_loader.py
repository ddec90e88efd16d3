"""Judge input pipeline: loader images/s per core, and the training loop against the model alone.

Two measurements, each side by side in one run, interleaved ``--runs`` times (medians reported, every run
listed):

1. **loader, images/s on one core** (``torch.set_num_threads(1)``, no worker processes) at the judge's
   input size (default 224 px, the CLIP ViT-B/32 judge) over ``--n`` PNGs of ``--size`` px (default 512, a
   generated image) stored in a dataigm root. Each pass reads every image and yields the normalised
   float batch the model gets:

   * ``decode each epoch (before)``: the read of a shard's bytes, ``Image.open(...).convert("RGB")`` and the
     eval transform, the judge loader as it was before the pixel cache;
   * ``decode each epoch (now)``: :class:`detectors.data.ShardImageDataset` (an RGB PNG decoded in place);
   * ``pixel cache, first pass``: building :func:`detectors.training.pixels.cached_pixels` (decode once);
   * ``pixel cache, later epochs``: :class:`~detectors.training.pixels.PixelDataset` + ``normalize_batch``.

   The decode rate also says how many cores a GPU probe needs to extract features at 2,000 images/s
   (one pass over the images: the decode path counts, not the cache).

2. **training loop**: ``train_judge(mode=finetune, augment=False)`` of ``--model`` (default resnet18 at 64 px,
   random weights) over ``--train-n`` PNGs of ``--size`` px, against the same model's forward + backward + AdamW
   step on tensors already in memory (``model only``), in images/s. The run is measured with the loader as it was (``--num-workers 0``,
   no pixel cache) and as it is now (pixel cache, workers sized to the host). The epochs' own timings
   (``train_images_per_s``, which excludes building the cache) are used; the first epoch is left out as a
   warm-up when there are several.

3. **prediction**: images/s of ``judge.predict_entries`` (one pass, as ``dataigm judge eval`` and the evaluation
   judge) with ``num_workers=0`` (in process), the default (``None``: :func:`detectors.data.one_pass_workers`) and
   :func:`detectors.data.default_num_workers` forced, in two cases: a ``--predict-model`` judge (default resnet18,
   random weights) at ``--input`` px over the ``--n`` PNGs of ``--size`` px, and the demo's judge eval (resnet10t at
   64 px over ``--small-n`` 64 px PNGs), where the default reads in process.

Run from the repository root::

    python benchmarks/judge_loader.py                  # about 4 minutes on 2 idle cores, plus the prediction
    python benchmarks/judge_loader.py --n 64 --runs 1  # a quick look
    python benchmarks/judge_loader.py --only prediction
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

GPU_PROBE_RATE = 2000.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=192, help="images (default: %(default)s)")
    parser.add_argument("--size", type=int, default=512, help="side of the stored PNGs (default: %(default)s)")
    parser.add_argument(
        "--input", type=int, default=224, help="judge input side for the loader (default: %(default)s)"
    )
    parser.add_argument("--model", default="resnet18", help="timm model for the training loop (default: %(default)s)")
    parser.add_argument("--img-size", type=int, default=64, help="its input side (default: %(default)s)")
    parser.add_argument("--train-n", type=int, default=512, help="images of the training loop (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per run (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, help="keep the data here (default: a temporary folder)")
    parser.add_argument("--skip-training", action="store_true", help="measure the loader only")
    parser.add_argument(
        "--predict-model", default="resnet18", help="judge model of the prediction (default: %(default)s)"
    )
    parser.add_argument(
        "--small-n", type=int, default=704, help="64 px images of the demo-sized prediction (default: %(default)s)"
    )
    parser.add_argument(
        "--only", choices=("loader", "training", "prediction"), help="run one measurement (default: all three)"
    )
    args = parser.parse_args(argv)
    for name in ("n", "size", "input", "img_size", "train_n", "epochs", "batch_size", "runs", "small_n"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def write_root(root: Path, n: int, size: int, seed: int = 0) -> None:
    """A dataigm root of ``n`` smooth random RGB PNGs (``size`` px, alternating labels), via our writer."""
    import numpy as np
    from PIL import Image

    from dataigm import Sample, ShardId, load_registry, make_key, write_shard
    from dataigm.dataset_readme import write_dataset_readme
    from dataigm.manifest import open_root, register_concepts

    registry = load_registry()
    concept = registry.get("church")
    open_root(root)
    register_concepts(root, [concept])
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        coarse = rng.integers(0, 256, size=(size // 16, size // 16, 3), dtype=np.uint8)
        pixels = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.int16)
        pixels = np.clip(pixels + rng.integers(-6, 7, size=pixels.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        label = "target" if i % 2 == 0 else "pair"
        record = {
            "concept": "church",
            "label": label,
            "category": concept.category,
            "source": "real",
            "split": "train",
            "height": size,
            "width": size,
            "origin": f"bench/{i:06d}.png",
        }
        samples.append(Sample(make_key("real", f"{i:06d}"), buffer.getvalue(), "png", int(label == "target"), record))
    per_shard = 64
    for start in range(0, n, per_shard):
        shard = ShardId("church", "train", "real", start // per_shard)
        write_shard(root, shard, samples[start : start + per_shard])
    write_dataset_readme(root)


class _DecodeBefore:
    """The judge loader before the pixel cache: read, ``Image.open().convert("RGB")``, eval transform."""

    def __init__(self, entries, transform):
        self.entries, self.transform = entries, transform

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int):
        from PIL import Image

        with Image.open(io.BytesIO(self.entries[index].read_bytes())) as img:
            return self.transform(img.convert("RGB"))


def loader_runs(args, root: Path, cache: Path) -> dict:
    """images/s on one core of each loader (see the module docstring)."""
    import timm.data
    import torch

    from detectors.data import ShardImageDataset, build_index, collate_skip_none
    from detectors.training.pixels import PixelDataset, cached_pixels, normalize_batch, split_transform

    torch.set_num_threads(1)
    entries = build_index(root)
    transform = timm.data.create_transform(input_size=(3, args.input, args.input), is_training=False)
    stages, (mean, std) = split_transform(transform)

    def rate(dataset, finish=lambda x: x) -> float:
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate_skip_none)
        start, count = time.perf_counter(), 0
        for batch in loader:
            images = finish(batch[0] if isinstance(batch, list) else batch)
            assert images.dtype == torch.float32 and images.shape[-1] == args.input
            count += images.shape[0]
        assert count == len(entries)
        return count / (time.perf_counter() - start)

    def before() -> float:
        return rate(_DecodeBefore(entries, transform))

    def now() -> float:
        dataset = ShardImageDataset(entries, ["church"], transform)
        try:
            return rate(dataset)
        finally:
            dataset.close()

    def first_pass() -> float:
        shutil.rmtree(cache, ignore_errors=True)
        start = time.perf_counter()
        cached_pixels(entries, stages, cache, num_workers=0, batch_size=args.batch_size)
        return len(entries) / (time.perf_counter() - start)

    def later() -> float:
        path, valid = cached_pixels(entries, stages, cache)
        return rate(PixelDataset(path, valid, entries, ["church"]), lambda x: normalize_batch(x, mean, std))

    out = {"before": [], "now": [], "first_pass": [], "later": []}
    for _ in range(args.runs):
        for name, fn in (("before", before), ("now", now), ("first_pass", first_pass), ("later", later)):
            out[name].append(fn())
    torch.set_num_threads(os.cpu_count() or 1)
    return out


def model_only_rate(args, steps: int) -> float:
    """images/s of forward + backward + AdamW (+ clipping) on a batch already in memory."""
    import torch
    from timm.optim import create_optimizer_v2

    from detectors.judges.model import create_judge_model
    from detectors.training.losses import masked_bce

    torch.manual_seed(0)
    model = create_judge_model(args.model, 1, pretrained=False)
    model.train()
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05)
    inputs = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    targets = torch.randint(0, 2, (args.batch_size, 1)).float()
    mask = torch.ones_like(targets)

    def step() -> None:
        loss = masked_bce(model(inputs).float(), targets, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * args.batch_size / (time.perf_counter() - start)


def training_runs(args, root: Path, work: Path) -> dict:
    """images/s of the model alone, and of train_judge with the loader before and now."""
    from detectors.training.trainer import TrainConfig, train_judge

    def train(**options) -> float:
        out = work / "run"
        shutil.rmtree(out, ignore_errors=True)
        config = TrainConfig(
            data=str(root),
            out=str(out),
            model=args.model,
            pretrained=False,
            img_size=args.img_size,
            mode="finetune",
            augment=False,
            epochs=args.epochs,
            batch_size=args.batch_size,
            val_fraction=0.1,
            device="cpu",
            progress=False,
            **options,
        )
        history = train_judge(config).history
        rates = [row["train_images_per_s"] for row in history]
        return statistics.median(rates[1:] if len(rates) > 1 else rates)

    steps = max(1, round(0.9 * args.train_n / args.batch_size))
    out = {"model_only": [], "before": [], "now": []}
    for _ in range(args.runs):
        out["model_only"].append(model_only_rate(args, steps))
        out["before"].append(train(num_workers=0, cache_images=False))
        out["now"].append(train())
    return out


def _saved_judge(folder: Path, model_name: str, input_size: int) -> str:
    """A one-concept judge of ``model_name`` at random weights, saved as a trained judge is; its spec."""
    import torch

    from detectors.judges import save_judge
    from detectors.judges.model import create_judge_model, judge_data_config

    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        model = create_judge_model(model_name, 1, pretrained=False)
        config = judge_data_config(model, input_size)
        save_judge(model, folder, ["church"], {"church": 1.0}, {"church": 0.5}, "fixed@0.5", config)
    return f"local-dir:{folder}"


def prediction_runs(args, cases: list[tuple[str, Path, str]]) -> dict:
    """images/s of ``predict_entries`` per case with 0 workers, the default and the host's count forced."""
    import numpy as np

    from detectors.data import build_index, default_num_workers
    from detectors.judges import load_judge

    settings = {"0 workers": 0, "default": None, f"{default_num_workers()} worker(s) forced": default_num_workers()}
    out = {}
    for label, root, spec in cases:
        judge = load_judge(spec, device="cpu")
        entries = build_index(root)
        rates = {name: [] for name in settings}
        judge.predict_entries(entries[: args.batch_size], num_workers=0)  # warm-up, untimed
        reference = None
        for _ in range(args.runs):
            for name, workers in settings.items():
                start = time.perf_counter()
                prediction = judge.predict_entries(entries, batch_size=args.batch_size, num_workers=workers)
                rates[name].append(len(entries) / (time.perf_counter() - start))
                if reference is None:
                    reference = prediction.probabilities
                assert np.array_equal(prediction.probabilities, reference)  # the same whatever the workers
        out[label] = rates
    return out


def _runs(values) -> str:
    return " ".join(f"{v:.1f}" for v in values)


def prediction_report(args, prediction: dict) -> str:
    med = statistics.median
    lines = [f"prediction (judge.predict_entries, batch {args.batch_size}), images/s (median of {args.runs}; runs)"]
    for label, rates in prediction.items():
        base = med(rates["0 workers"])
        lines.append(f"  {label}")
        for name, values in rates.items():
            lines.append(f"    {name:<26} {med(values):8.1f}  {med(values) / base:5.2f}x   {_runs(values)}")
    return "\n".join(lines)


def report(args, loader: dict | None, training: dict | None) -> str:
    med = statistics.median
    if loader is None:
        return "" if training is None else _training_report(args, training)
    base = med(loader["before"])
    lines = [
        f"loader at {args.input} px from {args.size} px PNGs, one core, images/s (median of {args.runs}; runs)",
    ]
    names = {
        "before": "decode each epoch (before)",
        "now": "decode each epoch (now)",
        "first_pass": "pixel cache, first pass",
        "later": "pixel cache, later epochs",
    }
    for key, name in names.items():
        lines.append(f"  {name:<28} {med(loader[key]):8.1f}  {med(loader[key]) / base:5.2f}x   {_runs(loader[key])}")
    decode = max(med(loader["now"]), med(loader["first_pass"]))
    lines.append(
        f"  a GPU probe extracting {GPU_PROBE_RATE:.0f} img/s needs ~{GPU_PROBE_RATE / decode:.0f} such cores to decode "
        f"(before: ~{GPU_PROBE_RATE / base:.0f})"
    )
    if training is None:
        return "\n".join(lines)
    return "\n".join(lines) + "\n\n" + _training_report(args, training)


def _training_report(args, training: dict) -> str:
    med = statistics.median
    model = med(training["model_only"])
    lines = [f"training loop, {args.model} at {args.img_size} px, batch {args.batch_size}, images/s"]
    for key, name in (("model_only", "model only (tensors in memory)"), ("before", "train_judge, loader before"),
                      ("now", "train_judge, loader now")):  # fmt: skip
        lines.append(
            f"  {name:<32} {med(training[key]):8.1f}  {med(training[key]) / model:5.2f}x   {_runs(training[key])}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="dataigm-loader-bench-"))).resolve()
    os.environ.update({"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"})
    try:
        import torch

        from detectors.data import default_num_workers

        load = os.getloadavg()
        print(
            f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the start; "
            f"default judge loader workers here: {default_num_workers()}"
        )
        started = time.perf_counter()
        wanted = {"loader", "training", "prediction"} if args.only is None else {args.only}
        if args.skip_training:
            wanted.discard("training")
        roots = [("loader", args.n, args.size)] if wanted & {"loader", "prediction"} else []
        roots += [("train", args.train_n, args.size)] if "training" in wanted else []
        roots += [("small", args.small_n, 64)] if "prediction" in wanted else []
        for name, n, size in roots:
            if not (workdir / name / "dataigm.json").exists():
                write_root(workdir / name, n, size)
        loader = loader_runs(args, workdir / "loader", workdir / "cache") if "loader" in wanted else None
        training = training_runs(args, workdir / "train", workdir) if "training" in wanted else None
        text = report(args, loader, training)
        if "prediction" in wanted:
            cases = [
                (
                    f"{args.predict_model} at {args.input} px over {args.n} PNGs of {args.size} px",
                    workdir / "loader",
                    _saved_judge(workdir / "judge-large", args.predict_model, args.input),
                ),
                (
                    f"resnet10t at 64 px over {args.small_n} PNGs of 64 px (the demo's judge eval)",
                    workdir / "small",
                    _saved_judge(workdir / "judge-small", "resnet10t", 64),
                ),
            ]
            text = "\n\n".join(t for t in (text, prediction_report(args, prediction_runs(args, cases))) if t)
        print(text)
        load = os.getloadavg()
        print(f"\nload average at the end {load[0]:.1f}; total {time.perf_counter() - started:.0f} s")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
