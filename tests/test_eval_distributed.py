"""``dataigm evaluate`` over several workers: a partition (``--num-workers/--worker-index``, repeated rounds, then a
run without it) and 2 local Ray workers give the report of one process; a failing measurement (an exception, or a
Ray worker process that dies) is retried, then named in one line; a killed driver resumes."""

import functools
import json
import os
import sys
from pathlib import Path

import pytest
from helpers.jobs import kill_when
from helpers.models import save_untrained_judge

from dataigm.cli import main
from detectors.evaluation.config import EvalConfig
from detectors.evaluation.flow import WorkerDone, run_evaluation

# what differs between runs of the same evaluation: where and how it ran (options of its config); the report holds
# no time or date, so everything else, key order included, is the same text
HOW = ("out", "distributor", "num_workers", "worker_index")


@pytest.fixture(scope="module")
def options(tiny_pipeline_dir, tmp_path_factory) -> dict:
    judge = save_untrained_judge(tmp_path_factory.mktemp("judge"), ("nudity",))
    return dict(
        concepts=["nudity"], judge=f"local-dir:{judge}", kinds=["forget", "remove"], max_prompts=2,
        models=[str(tiny_pipeline_dir), {"base": str(tiny_pipeline_dir), "name": "esd", "method": "ESD"}],
        generation={"steps": 2, "height": 64, "width": 64}, attacks=["ring_a_bell"],
        attack_options={"ring_a_bell": {"tokens": 2, "population": 2, "generations": 1, "batch_size": 1}},
        clip_model=None, lpips_net=None, person_detector=None, fid_feature="resnet10t", fid_pretrained=False,
        progress=False, device="cpu", grid_samples=0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def one_process(options, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("one")
    return json.loads(run_evaluation(EvalConfig(out=str(out), **options))["json"].read_text())


def _numbers(report: dict) -> str:
    """The report as JSON text without the config's options of where and how it ran."""
    return json.dumps(report | {"config": {k: v for k, v in report["config"].items() if k not in HOW}})


@pytest.mark.slow
def test_a_partition_in_rounds_then_a_plain_run_gives_the_one_process_report(options, one_process, tmp_path):
    out = str(tmp_path / "parts")
    said, rounds = [], 0
    while rounds < 4 and not (said and all("measurement(s) are done" in m for m in said[-2:])):
        rounds += 1
        for index in (0, 1):  # a worker goes on to the next phase as soon as every worker finished this one
            with pytest.raises(WorkerDone) as done:
                run_evaluation(EvalConfig(out=out, num_workers=2, worker_index=index, **options))
            said.append(str(done.value))
    # round 1: both attack their batches; 2: worker 0 merges the attack and renders its shards, worker 1 renders the
    # rest and measures its share; 3: both measure (worker 1's share is cached)
    assert rounds == 3 and ["native attacks" in m for m in said[:2]] == [True, True], said
    assert "generation" in said[2] and all("measurement(s) are done" in m for m in said[3:]), said
    assert not (tmp_path / "parts" / "report.json").exists()  # a worker writes no report
    report = json.loads(run_evaluation(EvalConfig(out=out, **options))["json"].read_text())
    assert _numbers(report) == _numbers(one_process)
    assert report["concepts"]["nudity"]["esd"]["robustness"]["by_attack"]["ring_a_bell"]["n"] >= 1


@pytest.mark.slow
def test_two_ray_workers_give_the_one_process_report(options, one_process, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cfg = EvalConfig(out=str(tmp_path / "ray"), distributor="ray", **options)
        report = json.loads(run_evaluation(cfg)["json"].read_text())
        crashes = _worker_process_deaths(tmp_path / "flags")  # on the same Ray: its start costs ~10 s
    finally:
        ray.shutdown()
    assert _numbers(report) == _numbers(one_process)
    assert report["config"]["distributor"] == "ray"
    once, always = crashes
    assert once == {"a": {"unit": "a"}, "b": {"unit": "b"}}  # each died once, then its retry ran
    assert "\n" not in always and "measurement a failed 2 time(s)" in always and "Ray task failed" in always, always


class _DiesOnce:
    """Units whose Ray worker process exits on a unit's first try (flag files say which were tried), or always."""

    def __init__(self, flags: Path, always: bool):
        self.flags, self.always = flags, always

    def unit(self, name: str) -> dict:
        flag = self.flags / name
        if self.always or not flag.exists():
            flag.touch()
            os._exit(1)  # the process dies: no exception reaches Ray, as when a worker is killed
        return {"unit": name}


def _dies_once(flags: Path, always: bool, plan) -> _DiesOnce:
    return _DiesOnce(flags, always)


def _worker_process_deaths(flags: Path) -> tuple[dict, str]:
    """Measure two units on the running Ray with workers that die: once each (then retried), and always."""
    import ray.cloudpickle

    from dataigm.distribute import RayDistributor
    from detectors.evaluation.distributed import UnitWorker, measure

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import a test module
    flags.mkdir()
    once = measure(UnitWorker(None, functools.partial(_dies_once, flags, False)), ["a", "b"], RayDistributor(), 1)
    with pytest.raises(ValueError) as err:
        measure(UnitWorker(None, functools.partial(_dies_once, flags, True)), ["a"], RayDistributor(), 1)
    return once, str(err.value)


def test_a_failing_measurement_is_retried_then_named_in_one_line(options, tmp_path, caplog, monkeypatch):
    from detectors.evaluation import flow

    calls = []

    def failing(self, name):
        calls.append(name)
        raise RuntimeError(f"out of memory in {name}\nsecond line")

    monkeypatch.setattr(flow.Runner, "unit", failing)
    cfg = EvalConfig(out=str(tmp_path / "e"), retries=1, **options | {"attacks": [], "kinds": ["forget"]})
    with pytest.raises(ValueError) as err:
        run_evaluation(cfg)
    text = str(err.value)
    assert "\n" not in text and "failed 2 time(s)" in text and "out of memory in" in text, text
    assert "run the same command again to retry" in text
    assert len(calls) == 2 * len(set(calls))  # every unit tried twice


_PAUSE_AFTER_FIRST_UNIT = """
from detectors.evaluation import flow
_unit = flow.Runner.unit
def _pause_after_first(self, name):
    result = _unit(self, name)
    time.sleep(3600)
flow.Runner.unit = _pause_after_first
"""


@pytest.mark.slow
def test_a_killed_driver_resumes_to_the_same_report(options, tmp_path, capsys):
    import yaml

    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({**options, "attacks": [], "out": str(tmp_path / "killed")}))
    argv = ["evaluate", "--config", str(config)]
    cache = tmp_path / "killed" / "cache"
    cached = lambda: any(p.name != "digests.json" for p in cache.rglob("*.json"))  # noqa: E731
    kill_when(argv, _PAUSE_AFTER_FIRST_UNIT, cached, "measurement cached", one_thread=True)
    assert main(argv) == 0
    resumed = json.loads((tmp_path / "killed" / "report.json").read_text())
    fresh = run_evaluation(EvalConfig(out=str(tmp_path / "fresh"), **options | {"attacks": []}))
    assert _numbers(resumed) == _numbers(json.loads(fresh["json"].read_text()))


def test_num_workers_alone_is_refused_in_one_line_naming_loader_workers(options, tmp_path, capsys):
    argv = ["evaluate", "--out", str(tmp_path / "x"), "--concepts", "[nudity]", "--judge", "nudenet"]
    assert main([*argv, "--models", "[toy]", "--num-workers", "4"]) == 2
    err = capsys.readouterr().err
    assert "num_workers partitions the evaluation and needs worker_index" in err and "loader_workers" in err
    assert err.count("\n") == 1 and not (tmp_path / "x").exists()


def test_a_partition_with_an_attack_on_ray_is_refused_in_one_line(options, tmp_path):
    # every worker of the partition would run the whole attack on Ray, writing the same files at once
    ray_attack = {"ring_a_bell": options["attack_options"]["ring_a_bell"] | {"distributor": "ray"}}
    with pytest.raises(ValueError, match="attack_options gives ring_a_bell distributor ray") as err:
        EvalConfig(out=str(tmp_path / "x"), num_workers=2, worker_index=0, **options | {"attack_options": ray_attack})
    assert "\n" not in str(err.value)
    EvalConfig(out=str(tmp_path / "x"), **options | {"attack_options": ray_attack})  # without a partition: fine
