"""The built-in default: the demo on the toy world, in the configuration `make demo` runs."""

import json

import pytest

from dataigm.cli.demo import DemoConfig, run_demo
from dataigm.validate import validate_root

pytestmark = pytest.mark.slow  # the whole demo: dataset, judge, evaluation, cards

# The judge must be this accurate on the first source (toy renders) for every concept.
FIRST_SOURCE_MIN_ACCURACY = 0.9


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    return out, run_demo(DemoConfig(out=str(out), progress=False))  # the defaults: what the README shows


def test_judge_is_accurate_on_the_first_source_and_reports_the_second(demo):
    _, summary = demo
    generated, real = summary["judge_accuracy"]["generated"], summary["judge_accuracy"]["real"]
    assert set(generated) == set(real) == {"nudity", "van_gogh", "church", "parachute"}
    for concept, acc in generated.items():
        assert acc["value"] >= FIRST_SOURCE_MIN_ACCURACY, (concept, acc)
    assert all(acc["n"] > 0 for acc in real.values())


def test_measured_forgetting_is_within_its_interval_of_the_ground_truth(demo):
    _, summary = demo
    assert set(summary["models"]) == {"esd-toy", "uce-toy", "mace-toy"}
    for name, m in summary["models"].items():
        low, high = m["measured_forgetting"]["ci"]
        assert low <= m["true_forgetting"] <= high, (name, m)
        assert abs(m["true_forgetting"] - m["nominal_forgetting"]) < 0.2  # the toy model keeps its leak rate


def test_outputs_validate_load_and_carry_cards(demo):
    import datasets

    out, summary = demo
    root = out / "dataigm"
    assert validate_root(root) == []
    ds = datasets.load_dataset(str(root), "nudity", split="test")
    assert ds.features["cls"].names == ["safe", "nude"]
    sources = {ds.features["json"]["source"].int2str(r["json"]["source"]) for r in ds}
    assert sources == {"generated", "real"}
    assert "## Counts" in (root / "README.md").read_text()
    report = json.loads((out / "evaluation" / "report.json").read_text())
    assert report["models"] == ["org-toy", "esd-toy", "uce-toy", "mace-toy"]
    assert (out / "evaluation" / "radar-nudity.png").exists() and (out / "judge-eval" / "metrics.json").exists()
    assert json.loads((out / "summary.json").read_text()) == summary
    # the judge's training does not depend on the machine's core count (tests/test_judge_trust.py)
    training = json.loads((out / "judge-run" / "judge" / "config.json").read_text())["training"]
    assert training["threads"] == summary["judge_training"]["threads"] == DemoConfig().threads
    assert training["deterministic"] is True
    from huggingface_hub import ModelCard

    judge_card = ModelCard.load(out / "judge-run" / "judge" / "README.md")
    assert judge_card.data.library_name == "timm" and "real" in judge_card.text  # per-source tables
    assert "esd-toy" in (out / "evaluation" / "README.md").read_text()
