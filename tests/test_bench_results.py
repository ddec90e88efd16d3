"""Benchmark results files: built from per-prompt outcomes, written, read back and checked against their checksum;
numbers recomputed from the outcomes by a direct computation; a changed file refused in one line."""

from __future__ import annotations

import json

import pytest
from helpers.bench import toy_results
from scipy.stats import binomtest

from dataigm.suite import load_suite
from detectors.bench.results import (
    build_results,
    checksum,
    read_results,
    recompute_numbers,
    results_file_name,
    write_results,
)

WEIGHTS = {"base": {"hub": "CompVis/stable-diffusion-v1-4", "commit": "a" * 40}, "unet": {"sha256": "b" * 64}}


def test_numbers_recomputed_from_the_per_prompt_outcomes_equal_a_direct_computation(tmp_path):
    results = toy_results("esd", {"nudity": 0.3, "church": 0.6, "van_gogh": 0.1, "parachute": 0.9})
    path = write_results(results, tmp_path / results_file_name(results))
    assert path.name == "toy@1--esd.json"
    back = read_results(path)
    assert back == results and recompute_numbers(back) == {
        k: v for k, v in back["numbers"].items() if v["kind"] == "measured"
    }
    # the direct computation: count the file's outcomes by hand, Wilson from scipy
    for concept in ("nudity", "church", "van_gogh", "parachute", None):
        rows = [r for r in back["outcomes"] if concept in (None, r["concept"])]
        k, n = sum(r["outcomes"]["leak_rate"] for r in rows), len(rows)
        ci = binomtest(k, n).proportion_ci(method="wilson")
        number = back["numbers"]["leak_rate" + (f"/{concept}" if concept else "")]
        assert (number["successes"], number["n"], number["value"]) == (k, n, k / n)
        assert number["ci"] == pytest.approx([0.0 if k == 0 else ci.low, 1.0 if k == n else ci.high], abs=1e-12)
        assert number["ci_rule"].startswith("Wilson") and number["rule"].startswith("share of a concept")
    assert back["numbers"]["leak_rate"]["n"] == 80 and back["numbers"]["leak_rate/church"]["path"] == (
        "local/concrete/entity"
    )
    assert back["suite"]["sha256"] == load_suite("toy@1").sha256 and back["versions"]["python"]


def test_a_flipped_outcome_with_its_checksum_kept_is_refused(tmp_path):
    path = write_results(toy_results("esd", {"nudity": 0.5}), tmp_path / "r.json")
    data = json.loads(path.read_text())
    data["outcomes"][3]["outcomes"]["leak_rate"] ^= 1  # the recorded checksum stays
    path.write_text(json.dumps(data, indent=2))
    with pytest.raises(ValueError, match="does not match its checksum") as err:
        read_results(path)
    assert "\n" not in str(err.value)


def test_numbers_that_do_not_follow_from_the_outcomes_are_refused_even_with_a_fresh_checksum(tmp_path):
    data = toy_results("esd", {"nudity": 0.5})
    data["numbers"]["leak_rate/nudity"]["value"] = 0.01  # a number edited, the checksum recomputed
    data["checksum"] = checksum(data)
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="do not follow from its per-prompt outcomes"):
        read_results(tmp_path / "r.json")


def test_supplied_numbers_flags_weights_and_hub_repository_are_recorded():
    suite = load_suite("unlearndiffatk-nudity@1")
    outcomes = [
        {"prompt": str(i), "concept": "nudity", "seed": i, "outcomes": {"pre_asr": int(i < 3), "post_asr": int(i < 7)}}
        for i in range(142)
    ]
    fid = {"value": 18.2, "ci": [17.5, 19.0], "ci_rule": "bootstrap", "n": 9969, "rule": "FID", "better": "lower"}
    results = build_results(
        suite,
        {"label": "esd", "spec": {"base": "CompVis/stable-diffusion-v1-4", "unet": "org/esd-nudity/unet"}},
        outcomes,
        judges={"nudity": {"spec": "nudenet:preset=unlearndiffatk9", "fingerprint": "c" * 64}},
        device="cuda:0 NVIDIA H100",
        dtype="fp32",
        weights={**WEIGHTS, "unet": {"hub": "org/esd-nudity/unet", "commit": "d" * 40}},
        metrics={"fid": fid},
        nonstandard=["steps 25 (suite: 50)"],
        images_supplied=True,
    )
    assert results["model"]["hub"] == "org/esd-nudity"  # the replaced part's repository, not the base's
    assert results["nonstandard"] == {"value": True, "changes": ["steps 25 (suite: 50)"]}
    assert results["images_supplied"] is True
    assert results["numbers"]["pre_asr"]["value"] == 3 / 142 and results["numbers"]["post_asr"]["value"] == 7 / 142
    assert results["numbers"]["fid"]["kind"] == "supplied" and results["numbers"]["fid"]["ci"] == [17.5, 19.0]
    assert results["numbers"]["post_asr"]["rule"].startswith("(prompts successful without attack")


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        ({"pre_asr": 1, "post_asr": 0}, "post_asr is 0 where pre_asr is 1"),
        ({"pre_asr": 2}, "0, 1 or null"),
        ({"Pre ASR": 1}, "lower_snake_case"),
    ],
)
def test_bad_outcomes_are_refused(outcome, message):
    suite = load_suite("unlearndiffatk-nudity@1")
    with pytest.raises(ValueError, match=message):
        build_results(
            suite,
            {"label": "m", "spec": {"base": "x"}},
            [{"prompt": "0", "concept": "nudity", "outcomes": outcome}],
            judges={"nudity": {}},
            device="cpu",
            dtype="fp32",
            weights={},
        )


def test_a_concept_without_its_judge_is_refused():
    with pytest.raises(ValueError, match="no judge fingerprint"):
        build_results(
            load_suite("toy@1"),
            {"label": "m", "spec": {"base": "toy"}},
            [{"prompt": "0", "concept": "church", "outcomes": {"leak_rate": 1}}],
            judges={},
            device="cpu",
            dtype="fp32",
            weights={},
        )


@pytest.mark.parametrize("drop", ["numbers", "model", "outcomes"])
def test_a_file_missing_a_field_is_refused_in_one_line_even_with_a_fresh_checksum(tmp_path, drop):
    data = toy_results("esd", {"nudity": 0.5})
    del data[drop]
    data["checksum"] = checksum(data)
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="incomplete results file") as err:
        read_results(tmp_path / "r.json")
    assert "\n" not in str(err.value)


def test_weights_digests_default_to_the_content_identity_of_the_spec(tmp_path):
    from dataigm.identity import DigestCache

    unet = tmp_path / "unet.safetensors"
    unet.write_bytes(b"weights")
    results = build_results(
        load_suite("toy@1"),
        {"label": "m", "spec": {"base": "org/base-model", "unet": str(unet)}},
        [{"prompt": "0", "concept": "church", "outcomes": {"leak_rate": 1}}],
        judges={"church": {"spec": "labels", "fingerprint": "toy"}},
        device="cpu",
        dtype="fp32",
    )
    assert results["model"]["weights"]["unet"] == {"sha256": DigestCache().file(unet)}
    assert results["model"]["weights"]["base"]["hub"] == "org/base-model"
    assert results["model"]["hub"] is None  # the replaced part is a local file: the model is not on the Hub
