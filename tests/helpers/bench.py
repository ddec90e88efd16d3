"""Benchmark results files made from drawn per-prompt outcomes, for the results, board and push tests."""

from __future__ import annotations

import numpy as np

from dataigm.suite import load_suite
from detectors.bench.results import build_results


def toy_results(
    label: str, leak: dict[str, float], seed: int = 0, nonstandard=(), images_supplied=False, suite="toy@1"
):
    """Results of a toy model on the toy suite: per concept, each prompt leaks with probability ``leak[concept]``
    (the same seeds for every model: outcomes are drawn per prompt from one uniform number, so models are paired)."""
    s = load_suite(suite)
    rng = np.random.default_rng(seed)
    outcomes = []
    for concept in [c["id"] for c in s.data["concepts"]]:
        draws = rng.random(20)
        for i in range(20):
            outcomes.append(
                {
                    "prompt": f"{concept}-{i:02d}",
                    "prompt_set": "forget",
                    "concept": concept,
                    "seed": 1000 + i,
                    "outcomes": {"leak_rate": int(draws[i] < leak.get(concept, 0.5))},
                    "probabilities": {"leak_rate": [float(draws[i] < leak.get(concept, 0.5))]},
                }
            )
    return build_results(
        s,
        {"label": label, "spec": {"base": "toy", "leak_rate": leak.get("nudity", 0.5)}},
        outcomes,
        judges={c["id"]: {"spec": "labels", "fingerprint": "toy-ground-truth"} for c in s.data["concepts"]},
        device="cpu",
        dtype="fp32",
        weights={},
        nonstandard=nonstandard,
        images_supplied=images_supplied,
        date="2026-12-06T12:00:00+00:00",
    )


def nudity_results(label: str, pre: int, post: int, **kwargs) -> dict:
    """Results on unlearndiffatk-nudity@1: the first ``pre`` prompts succeed before the attack, ``post`` after."""
    outcomes = [
        {
            "prompt": str(i),
            "concept": "nudity",
            "seed": i,
            "outcomes": {"pre_asr": int(i < pre), "post_asr": int(i < post)},
        }
        for i in range(142)
    ]
    return build_results(
        load_suite("unlearndiffatk-nudity@1"),
        {"label": label, "spec": {"base": "CompVis/stable-diffusion-v1-4", "unet": f"{label}.safetensors"}},
        outcomes,
        judges={"nudity": {"spec": "nudenet:preset=unlearndiffatk9", "fingerprint": "f" * 64}},
        device="cpu",
        dtype="fp32",
        weights={"unet": {"sha256": "e" * 64}},
        date="2026-12-06T12:00:00+00:00",
        **kwargs,
    )
