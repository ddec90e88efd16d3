"""Backbones with random weights (``fid_pretrained: false``, ``lpips_random_backbone``, a person detector without
weights: tests and smoke runs) are drawn from a fixed seed: two runs give the same numbers, and the seed is part of
the cache key of every result computed with them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dataigm.concepts import load_registry
from detectors.evaluation.cache import fingerprint
from detectors.evaluation.config import EvalConfig
from detectors.evaluation.plan import step_inputs
from detectors.evaluation.quality import LpipsScorer, fid, fid_metric


def _noise(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8))


def test_two_random_fid_backbones_give_the_same_fid_and_leave_torch_random_state_alone():
    a, b = [_noise(i) for i in range(4)], [_noise(10 + i) for i in range(4)]
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first = fid(a, b, fid_metric("resnet10t", pretrained=False))
    torch.manual_seed(999)  # the global state does not decide the weights
    second = fid(a, b, fid_metric("resnet10t", pretrained=False))
    other = fid(a, b, fid_metric("resnet10t", pretrained=False, seed=1))
    assert first == second and first != other
    torch.manual_seed(123)
    fid_metric("resnet10t", pretrained=False)
    assert torch.equal(torch.rand(3), before)  # building the backbone drew nothing from the caller's stream


def test_two_random_lpips_backbones_give_the_same_distances():
    pairs = [(_noise(i).resize((64, 64)), _noise(20 + i).resize((64, 64))) for i in range(2)]
    torch.manual_seed(1)
    first = LpipsScorer(random_backbone=True).distances(pairs)
    torch.manual_seed(2)
    assert LpipsScorer(random_backbone=True).distances(pairs) == first
    assert LpipsScorer(random_backbone=True, seed=5).distances(pairs) != first


def test_the_seed_of_a_random_backbone_is_in_the_cache_key(tmp_path):
    concept = load_registry().get("nudity")
    context = {
        "device": "cpu", "versions": {}, "code": "c", "judge": {}, "backbones": {"fid": None, "clip": None},
        "weights": {"fid": None, "person": None}, "random_seed": 0,
    }  # fmt: skip

    def key(name: str, seed: int, **options) -> str:
        cfg = EvalConfig(out=str(tmp_path / "eval"), concepts=["nudity"], judge="x", images=str(tmp_path), **options)
        return fingerprint(step_inputs(name, cfg, concept, [], [], context | {"random_seed": seed}))

    assert key("fid", 0, fid_pretrained=False) != key("fid", 1, fid_pretrained=False)
    assert key("fid", 0, fid_pretrained=True) == key("fid", 1, fid_pretrained=True)
    assert key("lpips", 0, lpips_random_backbone=True) != key("lpips", 1, lpips_random_backbone=True)
    assert key("person_rate", 0, person_pretrained=False) != key("person_rate", 1, person_pretrained=False)
    assert key("person_rate", 0) == key("person_rate", 1)


@pytest.mark.parametrize("seed", [0, 3])
def test_a_person_detector_without_weights_is_the_same_twice(seed):
    from detectors.evaluation.person import PersonDetector

    torch.manual_seed(seed)
    first = PersonDetector(pretrained=False).model.state_dict()
    torch.manual_seed(seed + 100)
    second = PersonDetector(pretrained=False).model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
