"""``dataigm bench run`` on the evaluation's distributors: a partition in rounds, then a run without it, and 2 local
Ray workers write the results of one process (date and versions aside)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dataigm.cli import main

# when and with what a results file was made: not what it measured
WHEN = ("date", "versions", "checksum")


def _toy(folder: Path, name: str, leak: float) -> Path:
    path = folder / f"{name}.yaml"
    spec = {"base": "toy", "name": name, "method": "ESD", "toy_concept": "nudity", "leak_rate": leak}
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _run(models, out, *more) -> int:
    argv = ["bench", "run", "toy@1", *[a for m in models for a in ("--model", str(m))], "--out", str(out)]
    return main([*argv, "--device", "cpu", "--max-prompts", "6", "--nonstandard", *more])


def _measured(out: Path) -> dict:
    files = {p.name: json.loads(p.read_text()) for p in sorted(out.glob("toy@1--*.json"))}
    return {name: {k: v for k, v in data.items() if k not in WHEN} for name, data in files.items()}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return [_toy(folder, "weak", 0.7), _toy(folder, "strong", 0.1)]


@pytest.fixture(scope="module")
def one_process(models, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("one")
    assert _run(models, out) == 0
    measured = _measured(out)
    assert len(measured) == 2
    return measured


@pytest.mark.slow
def test_a_partition_then_a_plain_run_writes_the_one_process_results(models, one_process, tmp_path, capsys):
    out = tmp_path / "parts"
    for _ in range(2):  # the images, then every worker finds them done
        for index in ("0", "1"):
            assert _run(models, out, "--num-workers", "2", "--worker-index", index) == 0
    said = capsys.readouterr().out
    assert "every worker's attacks and images are done" in said and not list(out.glob("toy@1--*.json"))
    assert _run(models, out) == 0
    assert _measured(out) == one_process


@pytest.mark.slow
def test_two_ray_workers_write_the_one_process_results(models, one_process, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert _run(models, tmp_path / "ray", "--distributor", "ray") == 0
    finally:
        ray.shutdown()
    assert _measured(tmp_path / "ray") == one_process
