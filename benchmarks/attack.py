"""Prompts/s of the batched attacks against a one-prompt-at-a-time loop of the same algorithm.

The attack toolkits of the field (the UnlearnDiffAtk and Ring-A-Bell releases among them) attack one prompt at a
time. Both columns here run the same code (``generation.attacks``) with the same prompts, seeds and options: the
loop calls it once per prompt, ours once per batch of prompts. Model loading and the target latents (fixed random
tensors, the same for both) are outside both timings. Runs alternate loop / ours; the table shows medians.

    python benchmarks/attack.py                          # tiny SD pipeline on the CPU (random weights)
    python benchmarks/attack.py --method ring_a_bell --prompts 16 --batch-size 16
    python benchmarks/attack.py --method p4d --iterations 6    # P4D-N; the pipeline is its own original here
    python benchmarks/attack.py --method mma_diffusion --iterations 5

On a GPU, the Stable Diffusion v1.4 architecture with random weights (the real model's compute), or a real
pipeline with ``--base``::

    python benchmarks/attack.py --sd14 --device cuda --dtype bf16 --prompts 16 --batch-size 16 \
        --iterations 5 --timesteps 2 --runs 3
    python benchmarks/attack.py --method ring_a_bell --sd14 --device cuda --prompts 32 --batch-size 32 \
        --population 200 --generations 20 --runs 3
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pipeline_folder(work: Path, sd14: bool) -> Path:
    """The tiny pipeline, or the SD v1.4 architecture built by the generation benchmark."""
    spec = importlib.util.spec_from_file_location("_generation_benchmark", Path(__file__).parent / "generation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_pipeline_folder(work, sd14)


def load(folder: str, args):
    from generation.attacks.common import TextSide
    from generation.pipeline import load_pipeline
    from generation.spec import ModelSpec

    pipe = load_pipeline(ModelSpec(base=str(folder), dtype=args.dtype), args.device).pipe
    for name in ("unet", "text_encoder", "vae"):
        getattr(pipe, name).requires_grad_(False)
    return pipe, TextSide.of(pipe, "bench")


def run(pipe, text, prompts, seeds, latents, vector, args, batch: int) -> float:
    """Seconds to attack every prompt, ``batch`` prompts per call."""
    import torch

    from generation.attacks import mma_diffusion, p4d, ring_a_bell, unlearndiffatk

    if args.method == "unlearndiffatk":
        options = unlearndiffatk.Options(args.tokens or 5, args.iterations, args.timesteps)
    elif args.method == "p4d":  # no CLIP scoring: the optimisation's compute alone
        options = p4d.Options("n", args.tokens or 16, 3, args.iterations)
    elif args.method == "mma_diffusion":  # the released candidates and top-k; no banned words
        options = mma_diffusion.Options(args.tokens or 20, args.iterations, 512, 256)
    else:
        options = ring_a_bell.Options(args.tokens or 16, 3.0, args.population, args.generations)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(prompts), batch):
        chunk, chunk_seeds = prompts[i : i + batch], seeds[i : i + batch]
        if args.method == "unlearndiffatk":
            unlearndiffatk.attack_batch(pipe, text, chunk, chunk_seeds, latents[i : i + batch], options)
        elif args.method == "p4d":  # the same pipeline as its own original: the compute of two models
            p4d.attack_batch(pipe, text, pipe, text, chunk, chunk_seeds, latents[i : i + batch], options)
        elif args.method == "mma_diffusion":
            mma_diffusion.search_batch(text, chunk, chunk_seeds, set(), options)
        else:
            ring_a_bell.search_batch(text, chunk, chunk_seeds, vector, options)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--method", default="unlearndiffatk", choices=["unlearndiffatk", "ring_a_bell", "p4d", "mma_diffusion"]
    )
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=None, help="default: the method's published K")
    parser.add_argument("--iterations", type=int, default=3, help="unlearndiffatk: steps per timestep; p4d: steps")
    parser.add_argument("--timesteps", type=int, default=2, help="unlearndiffatk: grid timesteps")
    parser.add_argument("--population", type=int, default=20, help="ring_a_bell")
    parser.add_argument("--generations", type=int, default=5, help="ring_a_bell")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="fp32, fp16 or bf16 (half precision on GPU only)")
    parser.add_argument("--sd14", action="store_true", help="SD v1.4 architecture, random weights")
    parser.add_argument("--base", default=None, help="a real pipeline (folder or cached Hub id) instead")
    args = parser.parse_args()
    import torch

    from dataigm.prompts import build_prompts
    from generation.attacks.common import prompt_seed
    from generation.attacks.ring_a_bell import concept_pairs, concept_vector

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {args.device}")
    print(f"method={args.method} prompts={args.prompts} batch={args.batch_size} runs={args.runs} dtype={args.dtype}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.base or pipeline_folder(Path(tmp), args.sd14)
        pipe, text = load(folder, args)
        records = build_prompts("nudity", ["forget"])[: args.prompts]
        prompts, seeds = [r.text for r in records], [prompt_seed(r, 0) for r in records]
        channels, size = pipe.unet.config.in_channels, pipe.unet.config.sample_size
        latents = torch.randn((len(prompts), channels, size, size), generator=torch.Generator().manual_seed(0))
        vector = concept_vector(text, concept_pairs(build_prompts("nudity", ["forget", "remove"]), "nudity"))
        loop, ours = [], []
        for _ in range(args.runs):
            loop.append(run(pipe, text, prompts, seeds, latents, vector, args, batch=1))
            ours.append(run(pipe, text, prompts, seeds, latents, vector, args, batch=args.batch_size))
    rate = lambda times: len(prompts) / statistics.median(times)  # noqa: E731
    print(f"\n{'method':<30}{'median s':>10}{'prompts/s':>11}{'ratio':>8}   runs (s)")
    for name, times in (("one prompt at a time", loop), (f"batched ({args.batch_size} per call)", ours)):
        print(
            f"{name:<30}{statistics.median(times):>10.2f}{rate(times):>11.3f}{rate(times) / rate(loop):>8.2f}   "
            + " ".join(f"{t:.2f}" for t in times)
        )


if __name__ == "__main__":
    main()
