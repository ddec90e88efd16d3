"""``dataigm generate``: concepts x prompt kinds x model specs x N images -> shards of a dataset root."""

from __future__ import annotations

import dataclasses
import sys
import typing

from .card import refresh_card

HELP = "generate DataIGM images with diffusers pipelines (original and unlearned models)"

_HELP = {
    "out": "dataset root to write to",
    "models": "model specs: Hub ids, pipeline folders, spec YAML files or mappings (the original model first)",
    "concepts": "concepts whose built-in prompt sets to render",
    "kinds": "prompt kinds to render: forget, remove, replace, retain",
    "prompt_files": "JSONL prompt files to render as well (from `dataigm prompts build|import`)",
    "max_prompts": "at most this many prompts per concept and kind, spread over the set (quick runs)",
    "images_per_prompt": "images per prompt and model",
    "base_seed": "seed of the job; each image's seed derives from it, the prompt id and the sample index",
    "test_fraction": "share of prompts (with their variants) in the test split",
    "steps": "denoising steps (>= 1) of every model whose spec sets none",
    "guidance": "classifier-free guidance scale (>= 0) of every model whose spec sets none",
    "height": "image height, a multiple of 8 (default: the pipeline's own)",
    "width": "image width, a multiple of 8 (default: the pipeline's own)",
    "negative_prompt": "negative prompt of every model whose spec sets none",
    "scheduler": "ddim, pndm, lms, euler, euler_a or dpm++ for every model whose spec names none "
    "(default: the pipeline's own); samples record the scheduler class that ran",
    "batch_size": "images per pipeline call, or 'auto' (probe free GPU memory)",
    "samples_per_shard": "images per tar shard (the unit of work, resume and retry); "
    "keep it when re-running a job into the same --out",
    "retries": "extra attempts of a shard that failed out of memory or on transient I/O",
    "device": "auto, cpu, cuda, cuda:1...",
    "compile": "torch.compile the UNet",
    "channels_last": "channels-last UNet memory format",
    "num_workers": "partition shards over this many workers (default: torchrun / SLURM array / 1)",
    "worker_index": "this worker's index in the partition",
    "distributor": "local or ray",
    "ray_address": "address of an existing Ray cluster (default: start a local one)",
    "num_gpus": "GPUs per Ray task (default: 1 when CUDA is available, else 0)",
    "name": "dataset name recorded in the manifest",
    "progress": "show a progress bar",
    "concepts_dir": "folder of extra concept YAML files",
}


def configure(parser) -> None:
    from generation.job import JobConfig

    hints = typing.get_type_hints(JobConfig)
    for f in dataclasses.fields(JobConfig):
        kind = hints[f.name]
        if f.name == "models":
            kind = list[str | dict]
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=default, help=_HELP.get(f.name, f.name)
        )


def run(cfg) -> int:
    from generation.job import JobConfig
    from generation.runner import EXIT_INCOMPLETE, run_job

    options = {f.name: cfg[f.name] for f in dataclasses.fields(JobConfig)}
    if options["out"] is None:
        raise ValueError("--out is required: the dataset root to write to")
    job = JobConfig(**options)
    summary = run_job(job)
    refresh_card(job.out)
    print(summary.text(), file=sys.stdout if summary.complete else sys.stderr)
    return 0 if summary.complete else EXIT_INCOMPLETE
