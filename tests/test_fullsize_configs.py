"""The full-size benchmark's configs are the published architectures: each one, built on the ``meta`` device (no
memory, no weights), has the published parameter count within 1%."""

from __future__ import annotations

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from benchmarks.configs import MODELS, build, parameters  # noqa: E402

# Published counts, independent of the configs: the model cards and papers.
# SD-1.4 UNet 859.52M and CLIP ViT-L/14 text 123.06M (CompVis/stable-diffusion-v1-4 weights); SDXL UNet 2.567B and
# OpenCLIP bigG text 694.66M (Podell et al., arXiv:2307.01952, Table 1; the diffusers weights); SD3-medium
# transformer 2.028B (stabilityai/stable-diffusion-3-medium card: "2 billion"; the diffusers weights); FLUX.1-dev
# transformer 11.9B (black-forest-labs/FLUX.1-dev card: "12 billion"); T5 v1.1 XXL encoder 4.76B (google/t5-v1_1-xxl
# encoder weights).
PUBLISHED = [
    ("sd14", "unet", 859.52e6),
    ("sd14", "text_encoder", 123.06e6),
    ("sdxl", "unet", 2.567e9),
    ("sdxl", "text_encoder", 123.06e6),
    ("sdxl", "text_encoder_2", 694.66e6),
    ("sd3", "transformer", 2.028e9),
    ("sd3", "text_encoder_3", 4.76e9),
    ("flux", "transformer", 11.9e9),
    ("flux", "text_encoder_2", 4.76e9),
]


@pytest.mark.parametrize(("model", "component", "published"), PUBLISHED, ids=[f"{m}-{c}" for m, c, _ in PUBLISHED])
def test_config_has_the_published_parameter_count(model, component, published):
    module = build(model, component, device="meta")
    assert all(p.device.type == "meta" for p in module.parameters())  # nothing was allocated
    assert parameters(module) == pytest.approx(published, rel=0.01)


def test_every_model_names_its_hub_repository_and_native_resolution():
    assert {m: spec["repo"] for m, spec in MODELS.items()} == {
        "sd14": "CompVis/stable-diffusion-v1-4",
        "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
        "sd3": "stabilityai/stable-diffusion-3-medium-diffusers",
        "flux": "black-forest-labs/FLUX.1-dev",
    }
    assert {m: spec["resolution"] for m, spec in MODELS.items()} == {
        "sd14": 512,
        "sdxl": 1024,
        "sd3": 1024,
        "flux": 1024,
    }
