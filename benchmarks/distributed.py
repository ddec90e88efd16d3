"""Wall time of a tiny ``dataigm attack`` and a tiny ``dataigm evaluate`` on 1 and 2 local Ray workers, side by
side, and their ratios.

Each column is a whole run with ``distributor="ray"`` on a fresh local Ray started with that many CPUs (one worker
each): Ray's start, the workers' model loading and the merge are inside the timing, as a user sees them. The attack:
:func:`generation.attacks.run_attack`, whose prompt files are checked to be byte-identical. The evaluation:
:func:`detectors.evaluation.flow.run_evaluation` of two tiny SD models on ``--eval-prompts`` nudity prompts (forget
and remove) with a Ring-A-Bell attack, generation and measurements on Ray; its reports are checked to be equal
apart from the config and versions. The machine, its load average before and after, and the settings are printed.

    python benchmarks/distributed.py                                  # tiny SD pipeline, UnlearnDiffAtk, CPU
    python benchmarks/distributed.py --method ring_a_bell --prompts 16 --skip-evaluation
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


def evaluate_once(folder: Path, out: Path, workers: int, args) -> tuple[float, dict]:
    """Seconds and the report (without how it ran) of one Ray evaluation with ``workers`` local CPUs."""
    import json

    import ray
    import torch

    from detectors.evaluation.config import EvalConfig
    from detectors.evaluation.flow import run_evaluation
    from detectors.judges import save_judge
    from detectors.judges.model import create_judge_model, judge_data_config

    torch.manual_seed(0)  # an untrained judge: the timing needs its passes, not its verdicts
    model = create_judge_model("resnet10t", num_concepts=1, pretrained=False)
    judge = out.parent / "judge"  # one path: the report names the judge spec
    save_judge(model, judge, ["nudity"], {"nudity": 1.0}, {"nudity": 0.5}, "fixed@0.5", judge_data_config(model, 32))
    cfg = EvalConfig(
        out=str(out), concepts=["nudity"], judge=f"local-dir:{judge}", kinds=["forget", "remove"],
        max_prompts=args.eval_prompts, models=[str(folder), {"base": str(folder), "name": "esd", "method": "ESD"}],
        generation={"steps": 4, "height": 64, "width": 64}, attacks=["ring_a_bell"],
        attack_options={"ring_a_bell": {"tokens": 3, "population": 20, "generations": 20, "batch_size": 1}},
        clip_model=None, lpips_net=None, person_detector=None, fid_feature="resnet10t", fid_pretrained=False,
        progress=False, device="cpu", grid_samples=0, distributor="ray",
    )  # fmt: skip
    start = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        report = json.loads(run_evaluation(cfg)["json"].read_text())
    finally:
        ray.shutdown()
    return time.perf_counter() - start, {k: v for k, v in report.items() if k not in ("config", "versions")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="unlearndiffatk", choices=["unlearndiffatk", "ring_a_bell"])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--generations", type=int, default=30)
    parser.add_argument("--eval-prompts", type=int, default=4)
    parser.add_argument("--skip-evaluation", action="store_true")
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
        evaluations = (
            {} if args.skip_evaluation else {n: evaluate_once(folder, Path(tmp) / f"eval{n}", n, args) for n in (1, 2)}
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| Ray workers | attack seconds | prompts/s | evaluation seconds |\n|---|---|---|---|")
    for n, s in seconds.items():
        evaluation = f"{evaluations[n][0]:.1f}" if evaluations else "not run"
        print(f"| {n} | {s:.1f} | {args.prompts / s:.2f} | {evaluation} |")
    print(
        f"attack: ratio (1 worker / 2 workers): {seconds[1] / seconds[2]:.2f}x; prompt files identical: "
        f"{files[0] == files[1]}"
    )
    if evaluations:
        ratio = evaluations[1][0] / evaluations[2][0]
        print(f"evaluation: ratio {ratio:.2f}x; reports equal: {evaluations[1][1] == evaluations[2][1]}")


if __name__ == "__main__":
    main()
