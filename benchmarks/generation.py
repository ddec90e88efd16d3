"""Images/s of ``dataigm generate`` against the per-image loop most unlearning code uses.

The baseline is the loop of the paper's code and other benchmarks: ``pipe(prompt, generator=...)``
once per image in fp32 with default settings, each image saved as a PNG file. Ours renders the same
prompts with the same seeds through ``generation.runner.run_job``: batched calls with one generator
per image, PNG encoding overlapped with the next batch, samples written as validated shards.

    python benchmarks/generation.py                 # tiny SD pipeline on the CPU (random weights)
    python benchmarks/generation.py --family all    # tiny SD, SDXL, SD3 and Flux pipelines, one after the other
    python benchmarks/generation.py --sd14 --device cuda --steps 50 --images 64 --batch-size 16

``--sd14`` builds the Stable Diffusion v1.4 architecture with random weights (the real model's
compute, ~82.8 TFLOP per 512 px image with 50 steps and guidance) for GPU measurements.

At full size on a GPU, ``--base`` names a real pipeline (a folder or a Hub id in the local cache); ours runs in
the family's dtype (fp16 for SDXL, bf16 for Flux), the loop in fp32 as the per-image scripts do::

    python benchmarks/generation.py --family sdxl --base stabilityai/stable-diffusion-xl-base-1.0 \
        --device cuda --size 1024 --steps 30 --images 64 --batch-size auto --runs 3
    python benchmarks/generation.py --family flux --base black-forest-labs/FLUX.1-dev \
        --device cuda --size 1024 --steps 28 --images 32 --batch-size auto --runs 3
"""

from __future__ import annotations

import argparse
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
FAMILIES = ("sd", "sdxl", "sd3", "flux")


def build_pipeline_folder(work: Path, sd14: bool, family: str = "sd") -> Path:
    from generation.tiny import save_tiny_family

    if not sd14:
        return save_tiny_family(work / f"tiny-{family}", family)
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from generation.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline(work / "sd14-work")
    torch.manual_seed(0)
    pipe.unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=768,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    pipe.vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    pipe.text_encoder = CLIPTextModel(
        CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                       vocab_size=1000, bos_token_id=512, eos_token_id=513, pad_token_id=513)
    )  # fmt: skip
    pipe.register_to_config()
    folder = work / "sd14"
    pipe.save_pretrained(folder)
    return folder


def prompts_and_seeds(n: int):
    from dataigm.prompts import build_prompts
    from generation.seeds import item_seed

    records = build_prompts("church", ["forget", "replace"])[:n]
    return records, [item_seed(0, r.parent_id or r.prompt_id, 0) for r in records]


def run_loop(folder: Path, records, seeds, out: Path, args) -> float:
    """The baseline: one call per image, fp32, PNG files."""
    import torch
    from diffusers import DiffusionPipeline

    # only SD pipelines have a safety checker to switch off
    extra = {"safety_checker": None, "requires_safety_checker": False} if args.family == "sd" else {}
    pipe = DiffusionPipeline.from_pretrained(folder, **extra)
    pipe = pipe.to(args.device)
    pipe.set_progress_bar_config(disable=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    for record, seed in zip(records, seeds, strict=True):
        generator = torch.Generator("cpu").manual_seed(seed)
        image = pipe(
            record.text, generator=generator, num_inference_steps=args.steps, height=args.size, width=args.size
        ).images[0]
        image.save(out / f"{record.prompt_id}.png")
    return time.perf_counter() - start


def run_ours(folder: Path, records, out: Path, args) -> float:
    from dataigm.prompts import write_prompts
    from generation.config import JobConfig
    from generation.runner import _loaded, run_job

    prompts = out.parent / f"{out.name}.jsonl"
    write_prompts(records, prompts)
    cfg = JobConfig(
        out=str(out), models=[{"base": str(folder), "dtype": args.dtype, "name": "bench"}], prompt_files=[str(prompts)], steps=args.steps,
        height=args.size, width=args.size, batch_size=args.batch_size, samples_per_shard=args.images, device=args.device,
        progress=False, test_fraction=0.0,
    )  # fmt: skip
    _loaded.clear()  # pipeline loading is outside both timings: load it now
    from generation.runner import get_model

    get_model(cfg, 0)
    start = time.perf_counter()
    summary = run_job(cfg)
    elapsed = time.perf_counter() - start
    assert summary.images == len(records), summary.text()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", default="16", help="an integer or auto")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="ours (default: the family's; half precision on GPU only)")
    parser.add_argument("--sd14", action="store_true", help="SD v1.4 architecture, random weights")
    parser.add_argument("--family", default="sd", choices=[*FAMILIES, "all"], help="tiny pipeline(s) to build")
    parser.add_argument("--base", default=None, help="a real pipeline (folder or cached Hub id) instead of a tiny one")
    args = parser.parse_args()
    if args.batch_size != "auto":
        args.batch_size = int(args.batch_size)
    import torch

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {args.device}")
    print(f"images={args.images} steps={args.steps} size={args.size} batch={args.batch_size} runs={args.runs}")
    print("each run: the loop, then ours, on the same prompts and seeds; pipeline loading is outside both timings")
    for family in FAMILIES if args.family == "all" else [args.family]:
        args.family = family
        compare(args)


def compare(args) -> None:
    """``args.runs`` alternating runs of the loop and of ours for one family; prints one table."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = args.base or build_pipeline_folder(work, args.sd14, args.family)
        records, seeds = prompts_and_seeds(args.images)
        loop, ours = [], []
        for run in range(args.runs):
            loop.append(run_loop(folder, records, seeds, work / f"loop{run}", args))
            ours.append(run_ours(folder, records, work / f"ours{run}", args))
    print(f"\nfamily {args.family} ({args.base or 'tiny, random weights'})")
    rate = lambda times: args.images / statistics.median(times)  # noqa: E731
    print(f"{'method':<28}{'median s':>10}{'images/s':>10}{'ratio':>8}   runs (s)")
    print(
        f"{'pipe(prompt) loop, fp32':<28}{statistics.median(loop):>10.2f}{rate(loop):>10.2f}{1:>8.2f}   "
        + " ".join(f"{t:.2f}" for t in loop)
    )
    print(
        f"{'dataigm generate':<28}{statistics.median(ours):>10.2f}{rate(ours):>10.2f}{rate(ours) / rate(loop):>8.2f}   "
        + " ".join(f"{t:.2f}" for t in ours)
    )


if __name__ == "__main__":
    main()
