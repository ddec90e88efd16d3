"""Tiny real models for tests that need them in several modules: an untrained judge in the saved format."""

from __future__ import annotations

from pathlib import Path

# Judge training at test size: a randomly initialised ResNet at 32 px (its pooled features keep colour, which the
# colour roots of helpers.data label), trained as a linear probe. Tests override what they vary.
TINY_PROBE = dict(
    model="resnet10t",
    pretrained=False,
    img_size=32,
    epochs=4,
    batch_size=16,
    lr=0.01,
    val_fraction=0.25,
    progress=False,
)


def save_untrained_judge(folder: Path, concepts: tuple[str, ...] = ("nudity", "church")) -> Path:
    """An untrained ``resnet10t`` judge of ``concepts`` with temperature 1 and threshold 0.5, saved to ``folder``."""
    import torch

    from detectors.judges import save_judge
    from detectors.judges.model import create_judge_model, judge_data_config

    torch.manual_seed(0)
    model = create_judge_model("resnet10t", num_concepts=len(concepts), pretrained=False)
    save_judge(
        model,
        folder,
        list(concepts),
        dict.fromkeys(concepts, 1.0),
        dict.fromkeys(concepts, 0.5),
        "fixed@0.5",
        judge_data_config(model, 32),
    )
    return folder
