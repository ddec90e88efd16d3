"""``dataigm attack`` over several workers: partitions (``--num-workers/--worker-index``) and Ray write each batch
of prompts to a part file, a run without a partition merges them, and the prompt file is byte for byte the one a
single process writes; a killed worker's batch is redone, and a batch that keeps failing is retried, then named."""

import pytest
from helpers.attacks import RAB, UDA, one_thread  # noqa: F401  (one_thread: an autouse fixture)
from helpers.jobs import kill_when

from dataigm.cli import main
from dataigm.prompts import build_prompts, subsample


def attack(model, out, *more, method="ring_a_bell", prompts=3) -> list[str]:
    options = RAB if method == "ring_a_bell" else UDA
    return [
        "attack", "--method", method, "--model", str(model), "--concept", "nudity", "--out", str(out),
        "--max-prompts", str(prompts), "--device", "cpu", "--no-progress", "--batch-size", "1", *options, *more,
    ]  # fmt: skip


def prompt_file(out):
    (path,) = sorted(out.glob("*.jsonl"))
    return path


@pytest.fixture(scope="module")
def one_process(tiny_pipeline_dir, tmp_path_factory):
    """The prompt file of the attack run by one process, start to end."""
    out = tmp_path_factory.mktemp("one")
    assert main(attack(tiny_pipeline_dir, out)) == 0
    return prompt_file(out).read_bytes()


def test_partitions_then_a_merging_run_give_the_one_process_file(tiny_pipeline_dir, tmp_path, one_process, capsys):
    out = tmp_path / "parts"
    for index in ("0", "1"):
        assert main(attack(tiny_pipeline_dir, out, "--num-workers", "2", "--worker-index", index)) == 0
    said = capsys.readouterr().out
    assert "2 prompt(s) attacked by this worker" in said and "1 prompt(s) attacked by this worker" in said
    assert "without --num-workers/--worker-index to merge" in said
    assert not list(out.glob("*.jsonl"))  # nothing merged yet: the workers' batches wait in part files
    parts = sorted(p.name for p in (out / "parts").rglob("*.jsonl"))
    assert parts == ["000000-000000.jsonl", "000001-000001.jsonl", "000002-000002.jsonl"]
    assert main(attack(tiny_pipeline_dir, out)) == 0  # the merging run attacks nothing
    assert "(3 already done)" in capsys.readouterr().out
    assert prompt_file(out).read_bytes() == one_process
    assert not (out / "parts").exists()


def test_worker_0_merges_when_it_finds_every_batch_written(tiny_pipeline_dir, tmp_path, one_process):
    out = tmp_path / "last"
    assert main(attack(tiny_pipeline_dir, out, "--num-workers", "2", "--worker-index", "1")) == 0
    assert not list(out.glob("*.jsonl"))  # worker 1 never merges
    assert main(attack(tiny_pipeline_dir, out, "--num-workers", "2", "--worker-index", "0")) == 0
    assert prompt_file(out).read_bytes() == one_process and not (out / "parts").exists()


def test_a_merge_keeps_the_prompt_order_whatever_finished_first(tiny_pipeline_dir, tmp_path, one_process, capsys):
    out = tmp_path / "late"
    # the second partition is done first, then a plain run attacks the rest itself (appending) and merges
    assert main(attack(tiny_pipeline_dir, out, "--num-workers", "2", "--worker-index", "1")) == 0
    assert main(attack(tiny_pipeline_dir, out)) == 0
    assert "(1 already done)" in capsys.readouterr().out
    assert prompt_file(out).read_bytes() == one_process


_PAUSE_AFTER_FIRST_PART = """
from generation.attacks import runner
_write = runner.atomic_write_text
def _write_then_pause(path, text):
    _write(path, text)
    if str(path).endswith("000000-000000.jsonl"):
        time.sleep(3600)
runner.atomic_write_text = _write_then_pause
"""


def test_a_killed_worker_resumes_and_its_unfinished_batch_is_redone(tiny_pipeline_dir, tmp_path, one_process):
    out = tmp_path / "killed"
    argv = attack(tiny_pipeline_dir, out, "--num-workers", "2", "--worker-index", "0")
    kill_when(
        argv,
        _PAUSE_AFTER_FIRST_PART,
        lambda: any(out.glob("parts/*/000000-000000.jsonl")),
        "batch done",
        one_thread=True,
    )
    (first,) = out.glob("parts/*/000000-000000.jsonl")
    done = first.read_bytes()
    # a batch killed while its part was written leaves at most a temporary file, never a part
    (first.parent / ".000002-000002.jsonl.x1y2.tmp").write_text('{"parent_id": "half')
    assert main(argv) == 0  # the worker again: its first batch is kept, the other is attacked
    assert first.read_bytes() == done
    assert main(attack(tiny_pipeline_dir, out)) == 0  # the merging run attacks worker 1's batch itself
    assert prompt_file(out).read_bytes() == one_process
    assert not (out / "parts").exists()


def test_a_failing_batch_is_retried_then_named_in_one_line(tiny_pipeline_dir, tmp_path, capsys, caplog):
    from PIL import Image

    ids = [r.prompt_id for r in subsample(build_prompts("nudity", ["forget"]), 2)]
    targets = tmp_path / "targets"
    targets.mkdir()
    Image.new("RGB", (64, 64), (120, 30, 30)).save(targets / f"{ids[0]}.png")
    (targets / f"{ids[1]}.png").write_bytes(b"not an image")  # found by name, fails when the batch opens it
    out = tmp_path / "out"
    argv = attack(tiny_pipeline_dir, out, "--target-images", str(targets), "--retries", "1", method="unlearndiffatk")
    argv[argv.index("--max-prompts") + 1] = "2"
    assert main([*argv, "--num-workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"attack batch 000001-000001 (prompts {ids[1]}) failed 2 time(s)" in err, err
    assert "re-run the same command to retry" in err
    tries = [r.message for r in caplog.records if "attack batch 000001-000001 failed" in r.message]
    assert len(tries) == 2 and "attempt 2 of 2" in tries[1]
    assert [r.parent_id for r in _read(prompt_file(out))] == [ids[0]]  # the good batch is kept
    Image.new("RGB", (64, 64), (30, 30, 120)).save(targets / f"{ids[1]}.png")
    assert main(argv) == 0
    assert [r.parent_id for r in _read(prompt_file(out))] == ids


def _read(path):
    from dataigm.prompts import read_prompts

    return read_prompts(path)


def test_distributed_options_are_refused_in_one_line(tiny_pipeline_dir, tmp_path, capsys):
    cases = [
        (["--distributor", "slurm"], "Unknown distributor 'slurm'; valid: local, ray"),
        (["--num-workers", "2", "--worker-index", "2"], "worker_index 2 is outside 0..1"),
        (["--retries", "-1"], "retries must be an integer >= 0"),
    ]
    for more, message in cases:
        assert main(attack(tiny_pipeline_dir, tmp_path / "never", *more)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
        assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_ray_with_two_workers_gives_the_one_process_file(tiny_pipeline_dir, tmp_path, one_process, capsys):
    ray = pytest.importorskip("ray")
    out = tmp_path / "ray"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(attack(tiny_pipeline_dir, out, "--distributor", "ray")) == 0
        assert "3 adversarial prompt(s)" in capsys.readouterr().out
        assert prompt_file(out).read_bytes() == one_process
        assert not (out / "parts").exists()
        assert main(attack(tiny_pipeline_dir, out, "--distributor", "ray")) == 0  # all done: nothing to attack
        assert "(3 already done)" in capsys.readouterr().out and prompt_file(out).read_bytes() == one_process
    finally:
        ray.shutdown()


def test_an_evaluation_runs_its_native_attacks_on_a_distributor_in_the_same_folder(tiny_pipeline_dir, tmp_path):
    from dataigm.concepts import load_registry
    from detectors.evaluation.config import EvalConfig
    from detectors.evaluation.native import planned

    common = dict(
        out=str(tmp_path / "eval"), concepts=["nudity"], judge="nudenet", max_prompts=2, clip_model=None,
        lpips_net=None, person_detector=None, attacks=["ring_a_bell"],
        models=[str(tiny_pipeline_dir), {"base": str(tiny_pipeline_dir), "name": "esd"}],
    )  # fmt: skip
    plain = EvalConfig(**common, attack_options={"ring_a_bell": {"tokens": 3}})
    on_ray = EvalConfig(**common, attack_options={"ring_a_bell": {"tokens": 3, "distributor": "ray", "retries": 1}})
    # how the attack runs is not its content: the same folder, so a run on Ray reuses (and resumes) a local one's
    assert [a.path for a in planned(on_ray, load_registry())] == [a.path for a in planned(plain, load_registry())]
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['num_workers'\]"):
        EvalConfig(**common, attack_options={"ring_a_bell": {"num_workers": 2}})
