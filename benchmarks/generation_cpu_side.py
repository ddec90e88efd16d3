"""What a generation job loses to its CPU side when the model is fast: a stand-in model that renders at a GPU's pace.

The stand-in is the toy model's pipeline with its rendering replaced by a wait of ``batch / --rate`` seconds
(a GPU call also leaves the CPU free) that returns 512 px images computed before the timing starts (smooth
random colour fields with pixel noise, about as costly to PNG-encode as generated photos). Everything else is
the real job: planning, the mapper, PNG encoding, shard writing, the manifest and the dataset card.

Three figures per run, as shares of the rendering time ``images / rate``:

* ``model idle``: the time the model waited on the CPU side while images were left to render (before its
  first call and between calls): what a GPU loses;
* ``after last image``: from the model's last call to the job's end (the last batch's encodes, the last
  shard's write, the dataset card): a fixed cost per job, which a host with more cores shortens;
* ``job lost``: ``wall time / (images / rate) - 1``, all of it (the stand-in's own copies included).

Two ways of running the same job, interleaved ``--runs`` times, fresh output folders each time:

* ``one shard at a time``: each shard is rendered, encoded and written before the next renders (the
  worker's ``run``, as a distributor that hands out one task at a time runs it);
* ``run_job``: the job as it runs locally: the encoder pool outlives the shards and a writer thread writes
  shard k while shard k + 1 renders.

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
        self.calls: list[tuple[float, float]] = []  # (start, end) of every call, perf_counter seconds

    def set_progress_bar_config(self, **_) -> None:
        pass

    def __call__(self, prompt, generator=None, **_):
        import numpy as np

        start = time.perf_counter()
        seeds = [g.initial_seed() for g in generator]
        time.sleep(len(seeds) / self.rate)
        out = _Output(np.stack([self.images[s] for s in seeds]))
        self.calls.append((start, time.perf_counter()))
        return out


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


def shares(calls: list[tuple[float, float]], start: float, end: float, ideal: float) -> tuple[float, ...]:
    """(model idle, after the last image, job lost) as shares of ``ideal``, and the wall time."""
    idle = calls[0][0] - start + sum(b[0] - a[1] for a, b in zip(calls, calls[1:], strict=False))
    return idle / ideal, (end - calls[-1][1]) / ideal, (end - start) / ideal - 1, end - start


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from generation.config import JobConfig
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
        stand_in = _loaded[key].pipe
        runs = {"one shard at a time": [], "run_job": []}
        for run in range(args.runs):
            for name, run_it in (
                ("one shard at a time", lambda out: prepare(config(out)).run(OneAtATime())),
                ("run_job", lambda out: run_job(config(out))),
            ):
                stand_in.calls.clear()
                start = time.perf_counter()
                summary = run_it(work / f"{name.replace(' ', '-')}-{run}")
                end = time.perf_counter()
                assert summary.images == n, summary.text()
                runs[name].append(shares(stand_in.calls, start, end, ideal))
    print(f"{'run':<22}{'model idle':>12}{'after last image':>18}{'job lost':>10}   wall s, each run")
    for name, values in runs.items():
        idle, after, lost = (statistics.median(v[i] for v in values) for i in range(3))
        walls = " ".join(f"{v[3]:.2f}" for v in values)
        print(f"{name:<22}{idle:>12.2%}{after:>18.2%}{lost:>10.2%}   {walls}")
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
