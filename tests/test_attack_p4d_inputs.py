"""P4D's inputs: given target images with a named original model (the images for the latents, the original for
the noise target)."""

from __future__ import annotations

import pytest
from helpers.attacks import one_thread, save_unlearned  # noqa: F401 - one_thread applies to this module

from dataigm.cli import main
from dataigm.prompts import read_prompts

P4D = ["--iterations", "3", "--tokens", "3", "--target-steps", "2", "--p4d-clip", "null", "--max-prompts", "1"]


@pytest.fixture(scope="module")
def unlearned(tiny_pipeline_dir, tmp_path_factory):
    """A spec of the tiny pipeline with a perturbed UNet (its original: the tiny pipeline itself)."""
    return save_unlearned(tiny_pipeline_dir, tmp_path_factory.mktemp("unlearned"))


def attack(model, out, *more) -> list[str]:
    return [
        "attack", "--method", "p4d", "--model", str(model), "--concept", "nudity", "--out", str(out),
        "--device", "cpu", "--no-progress", *P4D, *more,
    ]  # fmt: skip


def test_given_target_images_and_an_original_are_used_together(unlearned, tiny_pipeline_dir, tmp_path):
    assert main(attack(unlearned, tmp_path / "rendered")) == 0
    (folder,) = (tmp_path / "rendered" / "targets").iterdir()
    given = ["--target-images", str(folder), "--original", str(tiny_pipeline_dir)]
    assert main(attack(unlearned, tmp_path / "given", *given)) == 0
    (rendered,), (made,) = (read_prompts(next((tmp_path / d).glob("*.jsonl"))) for d in ("rendered", "given"))
    assert made.attack_options["original"] == str(tiny_pipeline_dir) and made.attack_options["target_images"]
    assert made.extra["token_ids"] == rendered.extra["token_ids"]  # the same images and the same original
