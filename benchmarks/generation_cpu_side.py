"""What a generation job loses to its CPU side when the model is fast: a stand-in model that renders at a GPU's pace.

The stand-in is the toy model's pipeline with its rendering replaced by a wait of ``batch / --rate`` seconds
(a GPU call also leaves the CPU free) that returns 512 px images computed before the timing starts (smooth
random colour fields with pixel noise, about as costly to PNG-encode as generated photos). Everything else is
the real job: planning, the mapper, PNG encoding, shard writing, the manifest and the dataset card.

The loss is ``wall time / (images / rate) - 1``: the share of the job the model sat idle. Two ways of running
the same job, interleaved ``--runs`` times, fresh output folders each time:

* ``one shard at a time``: each shard is rendered, then written, before the next renders (the worker's
  ``run``, as a distributor that hands out one task at a time runs it);
* ``writer thread``: ``run_job`` as it runs locally: shard k is written while shard k + 1 renders.

Run from the repository root (about 2 minutes on 2 idle cores)::

    python benchmarks/generation_cpu_side.py
    python benchmarks/generation_cpu_side.py --images 64 --runs 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=128, help="images per job (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=6.0, help="stand-in model, images/s (default: %(default)s)")
    parser.add_argument("--size", type=int, default=512, help="image side (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="(default: %(default)s)")
    parser.add_argument("--samples-per-shard", type=int, default=32, help="(default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="(default: %(default)s)")
    return parser.parse_args(argv)


class StandIn:
    """``pipe(prompt=[...], generator=[...], ...)`` that waits ``len(batch) / rate`` seconds and returns images
    computed beforehand (one per seed)."""

    def __init__(self, images: dict, rate: float):
        self.images, self.rate = images, rate

    def set_progress_bar_config(self, **_) -> None:
        pass

    def __call__(self, prompt, generator=None, **_):
        import numpy as np

        seeds = [g.initial_seed() for g in generator]
        time.sleep(len(seeds) / self.rate)
        return _Output(np.stack([self.images[s] for s in seeds]))


@dataclass
class _Output:
    images: object


def stand_in_images(seeds, size: int) -> dict:
    import numpy as np
    from PIL import Image

    out = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        coarse = rng.integers(0, 256, size=(size // 16, size // 16, 3), dtype=np.uint8)
        pixels = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.float32)
        out[seed] = np.clip(pixels + rng.normal(0, 3, size=pixels.shape), 0, 255).astype(np.float32) / 255
    return out


class OneAtATime:
    """A distributor that hands the worker one task at a time (no writer thread)."""

    shares_reservation = False

    def select(self, tasks):
        return list(tasks)

    def run(self, worker, tasks):
        for task in tasks:
            yield worker.run(task)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from generation.job import JobConfig
    from generation.runner import _loaded, get_model, prepare, run_job

    prompts = max(1, args.images // 2)

    def config(out: Path) -> JobConfig:
        return JobConfig(
            out=str(out), models=[{"base": "toy", "name": "standin"}], concepts=["church"], kinds=["forget", "replace"],
            max_prompts=prompts // 2 or 1, images_per_prompt=2, height=args.size, width=args.size,
            batch_size=args.batch_size, samples_per_shard=args.samples_per_shard, device="cpu", progress=False,
        )  # fmt: skip

    load = os.getloadavg()
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}; load average "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the start"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plan = prepare(config(work / "plan"))
        seeds = [item.seed for task in plan.tasks for item in task.items]
        n = len(seeds)
        images = stand_in_images(seeds, args.size)
        model = get_model(config(work / "plan"), 0)
        key = next(iter(_loaded))
        _loaded[key] = replace(model, pipe=StandIn(images, args.rate))
        ideal = n / args.rate
        print(f"job: {n} images of {args.size} px in shards of {args.samples_per_shard}, batch {args.batch_size}; "
              f"stand-in model at {args.rate:g} img/s: {ideal:.1f} s of rendering\n")  # fmt: skip
        times = {"one shard at a time": [], "writer thread": []}
        for run in range(args.runs):
            start = time.perf_counter()
            summary = prepare(config(work / f"serial-{run}")).run(OneAtATime())
            times["one shard at a time"].append(time.perf_counter() - start)
            assert summary.images == n, summary.text()
            start = time.perf_counter()
            summary = run_job(config(work / f"threaded-{run}"))
            times["writer thread"].append(time.perf_counter() - start)
            assert summary.images == n, summary.text()
    print(f"{'run':<22}{'median s':>10}{'lost to CPU':>13}   runs (s)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<22}{median:>10.2f}{median / ideal - 1:>12.1%}   " + " ".join(f"{v:.2f}" for v in values))
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
