"""UnlearnDiffAtk's target images: each prompt's is rendered by the original model with the prompt's own seed and
guidance (a benchmark row's evaluation_seed and evaluation_guidance), the target guidance only for prompts
without one."""

from __future__ import annotations

import numpy as np
from helpers.attacks import UDA, one_thread, save_unlearned  # noqa: F401 - one_thread applies to this module
from PIL import Image

from dataigm.cli import main
from dataigm.prompts import build_prompts, subsample, write_prompts


def test_each_target_is_rendered_with_its_prompts_seed_and_guidance(tiny_pipeline_dir, tmp_path):
    from generation.attacks.unlearndiffatk import render_targets
    from generation.pipeline import load_pipeline
    from generation.spec import ModelSpec

    records = subsample(build_prompts("nudity", ["forget"]), 3)
    records = [records[0].__class__(**{**records[0].to_dict(), "guidance": 2.0, "seed": 11}),
               records[1].__class__(**{**records[1].to_dict(), "guidance": 12.0, "seed": 12}),
               records[2].__class__(**{**records[2].to_dict(), "guidance": None, "seed": 13})]  # fmt: skip
    prompts = tmp_path / "prompts.jsonl"
    write_prompts(records, prompts)
    out = tmp_path / "attack"
    argv = ["attack", "--method", "unlearndiffatk", "--model", str(tiny_pipeline_dir), "--concept", "nudity"]
    argv += ["--out", str(out), "--prompts", str(prompts), "--device", "cpu", "--no-progress", *UDA]
    assert main([*argv, "--target-guidance", "5.0", "--batch-size", "3"]) == 0
    pipe = load_pipeline(ModelSpec(base=str(tiny_pipeline_dir)), "cpu").pipe
    for record, guidance in zip(records, (2.0, 12.0, 5.0), strict=True):
        (folder,) = (out / "targets").iterdir()
        saved = np.asarray(Image.open(folder / f"{record.prompt_id}.png"))
        (alone,) = render_targets(pipe, [record.text], [record.seed], 2, guidance)
        assert np.array_equal(saved, np.asarray(alone)), record.prompt_id
        (other,) = render_targets(pipe, [record.text], [record.seed], 2, 7.5)
        assert not np.array_equal(saved, np.asarray(other))  # the guidance shows in the pixels


def test_targets_made_with_other_settings_in_the_same_folder_are_not_reused(tiny_pipeline_dir, tmp_path):

    from generation.attacks.unlearndiffatk import render_targets
    from generation.pipeline import load_pipeline
    from generation.spec import ModelSpec

    pipe = load_pipeline(ModelSpec(base=str(tiny_pipeline_dir)), "cpu").pipe
    spec = save_unlearned(tiny_pipeline_dir, tmp_path / "unlearned")
    (record,) = subsample(build_prompts("nudity", ["forget"]), 1)
    record = record.__class__(**{**record.to_dict(), "seed": 5, "guidance": 6.0})
    prompts = tmp_path / "prompts.jsonl"
    write_prompts([record], prompts)
    out = tmp_path / "attack"
    argv = ["attack", "--model", str(spec), "--concept", "nudity", "--out", str(out), "--prompts", str(prompts),
            "--device", "cpu", "--no-progress", "--tokens", "2", "--iterations", "1"]  # fmt: skip
    assert main([*argv, "--method", "unlearndiffatk", "--timesteps", "1", "--target-steps", "2"]) == 0
    # another method into the same folder, the same original, other steps: its own targets, not the first's
    assert main([*argv, "--method", "p4d", "--target-steps", "3", "--p4d-clip", "null"]) == 0
    folders = sorted((out / "targets").iterdir())
    assert len(folders) == 2
    saved = [np.asarray(Image.open(f / f"{record.prompt_id}.png")) for f in folders]
    want = {steps: np.asarray(render_targets(pipe, [record.text], [5], steps, 6.0)[0]) for steps in (2, 3)}
    assert sorted(int(np.array_equal(s, want[2])) + 2 * int(np.array_equal(s, want[3])) for s in saved) == [1, 2]
