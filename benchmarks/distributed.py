"""Wall time of a tiny ``dataigm attack`` on 1 and 2 local Ray workers, side by side, and their ratio.

Each column is a whole run of :func:`generation.attacks.run_attack` with ``distributor="ray"`` on a fresh local
Ray started with that many CPUs (one worker each): Ray's start, the workers' model loading and the merge are inside
the timing, as a user sees them. The prompt files of both runs are checked to be byte-identical. The machine, its
load average before and after, and the settings are printed with the table.

    python benchmarks/distributed.py                                  # tiny SD pipeline, UnlearnDiffAtk, CPU
    python benchmarks/distributed.py --method ring_a_bell --prompts 16
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def attack_once(folder: Path, out: Path, workers: int, args) -> float:
    """Seconds of one Ray attack with ``workers`` local CPUs (one task at a time each)."""
    import ray

    from generation.attacks import AttackConfig, run_attack

    options = dict(population=args.population, generations=args.generations)
    if args.method == "unlearndiffatk":
        options = dict(iterations=args.iterations, timesteps=args.timesteps, target_steps=2)
    cfg = AttackConfig(
        method=args.method, model=str(folder), concept="nudity", out=str(out), max_prompts=args.prompts,
        tokens=3, batch_size=args.batch_size, device="cpu", progress=False, distributor="ray", **options,
    )  # fmt: skip
    start = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        run_attack(cfg)
    finally:
        ray.shutdown()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="unlearndiffatk", choices=["unlearndiffatk", "ring_a_bell"])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--generations", type=int, default=30)
    args = parser.parse_args()

    import torch

    from generation.tiny import save_tiny_pipeline

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"settings: {vars(args)} (tiny SD pipeline, random weights)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_tiny_pipeline(Path(tmp) / "tiny")
        seconds = {n: attack_once(folder, Path(tmp) / f"ray{n}", n, args) for n in (1, 2)}
        files = [sorted((Path(tmp) / f"ray{n}").glob("*.jsonl"))[0].read_bytes() for n in (1, 2)]
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| Ray workers | seconds | prompts/s |\n|---|---|---|")
    for n, s in seconds.items():
        print(f"| {n} | {s:.1f} | {args.prompts / s:.2f} |")
    print(
        f"ratio (1 worker / 2 workers): {seconds[1] / seconds[2]:.2f}x; prompt files identical: {files[0] == files[1]}"
    )


if __name__ == "__main__":
    main()
