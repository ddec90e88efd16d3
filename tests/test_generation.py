"""Generation with a tiny real StableDiffusionPipeline on CPU: determinism, batching, resume, scale."""

import io

import numpy as np
import pytest
import torch
from helpers.jobs import kill_mid_run
from PIL import Image

from dataigm import iter_samples
from dataigm.cli import main
from dataigm.distribute import worker_partition
from dataigm.validate import validate_root
from generation.config import JobConfig
from generation.runner import run_job

SMALL = dict(steps=2, height=64, width=64, samples_per_shard=4, progress=False, concepts=["church"])


def job(root, models=None, **changes) -> JobConfig:
    options = dict(SMALL, kinds=["forget", "replace"], max_prompts=5, models=models) | changes
    return JobConfig(out=str(root), **options)


def tars(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "data").rglob("*.tar"))}


def pixels(root) -> dict[str, np.ndarray]:
    return {
        s.key: np.asarray(Image.open(io.BytesIO(s.image)).convert("RGB"), dtype=np.int16) for s in iter_samples(root)
    }


def test_same_job_same_bytes_and_valid_dataset(tiny_pipeline_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    summary = run_job(job(a, [str(tiny_pipeline_dir)]))
    run_job(job(b, [str(tiny_pipeline_dir)]))
    assert summary.complete and summary.images == 10
    assert tars(a) == tars(b) and len(tars(a)) >= 3
    again = run_job(job(a, [str(tiny_pipeline_dir)]))  # nothing left to do
    assert (again.written, again.skipped, again.images) == (0, summary.written, 0) and tars(a) == tars(b)
    assert validate_root(a) == []
    import datasets

    ds = datasets.load_dataset(str(a), "church")
    rows = [r for split in ds.values() for r in split]
    assert len(rows) == 10 and ds[next(iter(ds))].features["cls"].names == ["other", "church"]
    assert all(r["json"]["source"] == 2 and r["json"]["method"] == "ORG" for r in rows)


def test_records_carry_provenance_and_labels(tiny_pipeline_dir, tmp_path):
    run_job(job(tmp_path / "r", [str(tiny_pipeline_dir)], images_per_prompt=2, guidance=5.0))
    samples = list(iter_samples(tmp_path / "r"))
    for s in samples:
        r = s.record
        assert (r["label"], s.cls) == (("target", 1) if r["prompt_kind"] == "forget" else ("pair", 0))
        assert r["model_id"] == str(tiny_pipeline_dir) and r["steps"] == 2 and r["guidance"] == 5.0
        assert r["scheduler"] == "DDIMScheduler" and (r["height"], r["width"]) == (64, 64)
        assert "." not in s.key and s.key.startswith("ORG-tiny_")
    # no prompt (with its variants) in both splits
    split_of = {}
    for s in samples:
        group = s.record["prompt_id"].rsplit("-", 1)[1]  # the scene index shared by a forget prompt and its variants
        split_of.setdefault(group, set()).add(s.record["split"])
    assert all(len(v) == 1 for v in split_of.values())


def test_batch_size_does_not_change_images(tiny_pipeline_dir, tmp_path):
    one = pixels(tmp_path / "one") if run_job(job(tmp_path / "one", [str(tiny_pipeline_dir)], batch_size=1)) else None
    four = (
        pixels(tmp_path / "four") if run_job(job(tmp_path / "four", [str(tiny_pipeline_dir)], batch_size=4)) else None
    )
    assert one.keys() == four.keys()
    # float noise between batched and single calls may move a value across a rounding boundary: 1 level
    assert max(np.abs(one[k] - four[k]).max() for k in one) <= 1


def test_seeds_are_shared_across_models(tiny_pipeline_dir, tmp_path):
    models = [
        str(tiny_pipeline_dir),
        {"base": str(tiny_pipeline_dir), "name": "other", "method": "ESD", "guidance": 2.0},
    ]
    run_job(job(tmp_path / "r", models))
    by_model = {}
    for s in iter_samples(tmp_path / "r"):
        by_model.setdefault(s.record["method"], {})[s.record["prompt_id"]] = s
    assert by_model["ORG"].keys() == by_model["ESD"].keys()
    for pid, sample in by_model["ORG"].items():
        assert sample.record["seed"] == by_model["ESD"][pid].record["seed"]
        assert sample.image != by_model["ESD"][pid].image  # guidance 2.0 vs 7.5


def test_partitioned_workers_union_equals_single_process(tiny_pipeline_dir, tmp_path, monkeypatch):
    run_job(job(tmp_path / "single", [str(tiny_pipeline_dir)]))
    for index in range(3):
        run_job(job(tmp_path / "parts", [str(tiny_pipeline_dir)], num_workers=3, worker_index=index))
    assert tars(tmp_path / "parts") == tars(tmp_path / "single")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert worker_partition(None, None) == (4, 2)
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    assert worker_partition(None, None) == (5, 3)
    with pytest.raises(ValueError, match="worker_index 3 is outside 0..2"):
        worker_partition(3, 3)


@pytest.mark.slow
def test_killed_job_resumes_to_the_uninterrupted_result(tiny_pipeline_dir, tmp_path):
    options = dict(max_prompts=6, samples_per_shard=1, kinds=["forget"])
    run_job(job(tmp_path / "full", [str(tiny_pipeline_dir)], **options))
    root = tmp_path / "root"
    argv = ["generate", "--out", str(root), "--models", f"[{tiny_pipeline_dir}]", "--concepts", "[church]"]
    argv += ["--kinds", "[forget]", "--max-prompts", "6", "--samples-per-shard", "1", "--steps", "2"]
    argv += ["--height", "64", "--width", "64", "--progress", "false"]
    done_at_kill = kill_mid_run(argv, root, pause_after=3)  # killed after its 3rd tar, before that sidecar
    assert 0 < done_at_kill < 6 and len(list((root / "data").rglob("*.tar"))) == 3
    assert main(argv) == 0
    assert validate_root(root) == []
    assert tars(root) == tars(tmp_path / "full") and len(tars(root)) == 6


def test_failed_shards_are_reported_not_retried_and_the_rest_finish(tiny_pipeline_dir, tmp_path, capsys):
    # A readable file whose keys fit no UNet: only loading can tell (an unreadable one is refused before the job starts).
    from safetensors.torch import save_file

    broken = tmp_path / "broken.safetensors"
    save_file({"not_a_unet.weight": torch.zeros(2)}, broken)
    models = f'["{tiny_pipeline_dir}", {{"base": "{tiny_pipeline_dir}", "name": "bad", "method": "ESD", "unet": "{broken}"}}]'
    root = tmp_path / "r"
    argv = ["generate", "--out", str(root), "--models", models, "--concepts", "[church]", "--kinds", "[forget]"]
    argv += ["--max-prompts", "4", "--steps", "2", "--height", "64", "--width", "64", "--retries", "1"]
    argv += ["--progress", "false"]
    assert main(argv) == 3
    err = capsys.readouterr().err
    # a deterministic error is not retried (--retries 1 notwithstanding), and the advice says a re-run repeats it
    assert "FAILED" in err and "after 1 attempt(s)" in err and "UNet weights fit no known layout" in err
    assert "the job is incomplete: the errors above repeat on every run" in err
    assert {s.record["method"] for s in iter_samples(root)} == {"ORG"}
    # validate reports the job's reserved but unwritten shard, and nothing else
    problems = validate_root(root)
    assert len(problems) == 1 and "unfinished" in problems[0] and "1 of its 2 reserved shard(s)" in problems[0]


def test_nan_images_are_flagged(tiny_pipeline_dir, tmp_path):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(tiny_pipeline_dir / "unet")
    state = unet.state_dict()
    state["conv_out.bias"] = torch.full_like(state["conv_out.bias"], float("nan"))
    save_file({"conv_out.bias": state["conv_out.bias"]}, tmp_path / "nan.safetensors")
    summary = run_job(
        job(
            tmp_path / "r",
            [{"base": str(tiny_pipeline_dir), "unet": str(tmp_path / "nan.safetensors")}],
            kinds=["forget"],
        )
    )
    assert summary.flags == {"nan": 5}
    assert {s.record["image_flag"] for s in iter_samples(tmp_path / "r")} == {"nan"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"models": []}, "needs at least one model"),
        ({"concepts": []}, "needs 'concepts'"),
        ({"distributor": "spark"}, "Unknown distributor 'spark'; valid: local, ray"),
        ({"batch_size": 0}, "batch_size must be a positive integer or 'auto'"),
        ({"concepts": ["chruch"]}, "Unknown concept 'chruch'"),
        ({"kinds": ["forgot"]}, "Prompt kind 'forgot' cannot be built for concept 'church'"),
        ({"models": [{"base": "x", "dtype": "fp8"}]}, "unknown dtype 'fp8'; valid: fp32, fp16, bf16"),
        ({"models": [{"base": "x", "scheduler": "heun"}]}, "unknown scheduler 'heun'; valid: ddim, pndm"),
        ({"models": [{"base": "x", "vae": "y"}]}, r"unknown model-spec key\(s\) \['vae'\]"),
    ],
)
def test_bad_job_input_is_named(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        run_job(job(tmp_path / "r", **({"models": ["x"]} | changes)))
    assert not (tmp_path / "r").exists()


def test_variants_share_the_seed_of_their_forget_prompt(tiny_pipeline_dir, tmp_path):
    run_job(
        job(
            tmp_path / "r",
            [str(tiny_pipeline_dir)],
            kinds=["forget", "remove", "replace"],
            max_prompts=3,
            images_per_prompt=2,
        )
    )
    samples = list(iter_samples(tmp_path / "r"))
    seeds = {(s.record["prompt_id"], s.key[-4:]): s.record["seed"] for s in samples}
    for s in samples:
        if s.record["prompt_kind"] == "remove":
            forget_id = s.record["prompt_id"].replace("-remove-", "-forget-")
            assert s.record["seed"] == seeds[(forget_id, s.key[-4:])]
    assert len({s.record["seed"] for s in samples if s.record["prompt_kind"] == "forget"}) == 6
