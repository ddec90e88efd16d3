"""Shared pieces of the attack tests: the small attack options, one torch thread per test module, and an
"unlearned" tiny model whose original is the tiny pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

RAB = ["--population", "6", "--generations", "3", "--tokens", "3"]  # Ring-A-Bell, tiny
UDA = ["--tokens", "2", "--iterations", "2", "--timesteps", "2", "--target-steps", "2"]  # UnlearnDiffAtk, tiny


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread than on a shared, busy CPU's several (and Ray's workers use one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def save_unlearned(base: Path, folder: Path, name: str = "esd") -> Path:
    """A model-spec file of the pipeline ``base`` with a perturbed UNet file (its original: ``base`` itself)."""
    from safetensors.torch import save_file

    from generation.pipeline import load_pipeline
    from generation.spec import ModelSpec

    folder.mkdir(parents=True, exist_ok=True)
    unet = load_pipeline(ModelSpec(base=str(base))).pipe.unet
    torch.manual_seed(3)
    save_file({k: v + 0.05 * torch.randn_like(v) for k, v in unet.state_dict().items()}, folder / "unet.safetensors")
    spec = folder / f"{name}.yaml"
    spec.write_text(json.dumps({"base": str(base), "unet": str(folder / "unet.safetensors"), "name": name,
                                "method": "ESD"}))  # fmt: skip
    return spec
