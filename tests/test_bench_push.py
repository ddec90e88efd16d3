"""`dataigm bench push` against the fake Hub: results files to a dataset repository as a pull request (byte for
byte, still verifiable), each Hub model's evaluation results as a pull request in the Hub's `.eval_results/` format,
and bad input refused before anything is sent."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers.bench import nudity_results, toy_results

from dataigm.cli import main
from detectors.bench.results import checksum, read_results, write_results


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def on_hub(label: str, pre: int, post: int, **kwargs) -> dict:
    results = nudity_results(label, pre, post, **kwargs)
    results["model"]["hub"] = f"org/{label}"  # as if its weights were on the Hub
    results["checksum"] = checksum(results)
    return results


def test_results_go_to_the_dataset_and_the_model_as_pull_requests(tmp_path, capsys, fake_hub):
    fake_hub.seed("org/esd", {"README.md": b"# esd"})
    esd = write_results(on_hub("esd", 29, 108), tmp_path / "esd.json")
    toy = write_results(toy_results("weak", {"nudity": 0.4}), tmp_path / "toy.json")  # a toy: not on the Hub
    code, out, err = run(capsys, "bench", "push", esd, toy, "--repo", "org/board")
    assert code == 0, err
    # the dataset: a pull request holding both files, byte for byte, main untouched
    assert fake_hub.files("org/board", "dataset") == {}
    pr = fake_hub.files("org/board", "dataset", "refs/pr/1")
    stored = pr["results/unlearndiffatk-nudity@1/unlearndiffatk-nudity@1--esd.json"]
    assert stored == esd.read_bytes() and pr["results/toy@1/toy@1--weak.json"] == toy.read_bytes()
    (tmp_path / "back.json").write_bytes(stored)
    assert read_results(tmp_path / "back.json")["numbers"]["post_asr"]["value"] == 108 / 142
    # the model: a pull request adding its evaluation results, the README kept
    assert fake_hub.files("org/esd") == {"README.md": b"# esd"}
    model_pr = fake_hub.files("org/esd", "model", "refs/pr/1")
    entries = yaml.safe_load(model_pr[".eval_results/dataigm-unlearndiffatk-nudity-v1.yaml"])
    post = next(e for e in entries if e["dataset"]["task_id"] == "unlearndiffatk-nudity-v1-post_asr")
    assert post["dataset"]["id"] == "org/board" and post["value"] == round(100 * 108 / 142, 4)
    assert post["date"] == "2026-12-06" and post["source"]["name"] == "dataigm bench"
    assert "results/unlearndiffatk-nudity@1/" in post["source"]["url"] and "n = 142" in post["notes"]
    assert {e["dataset"]["task_id"] for e in entries} >= {"unlearndiffatk-nudity-v1-pre_asr"}
    uploads = fake_hub.calls_of("upload_folder")
    assert [(u["repo_id"], u["create_pr"]) for u in uploads] == [("org/board", True), ("org/esd", True)]
    assert "discussions/1" in out


def test_no_create_pr_commits_to_main_and_no_model_results_skips_the_model(tmp_path, capsys, fake_hub):
    esd = write_results(on_hub("esd", 29, 108), tmp_path / "esd.json")
    code, _, err = run(capsys, "bench", "push", esd, "--repo", "org/board", "--no-create-pr", "--no-model-results")
    assert code == 0, err
    assert list(fake_hub.files("org/board", "dataset")) == [
        "results/unlearndiffatk-nudity@1/unlearndiffatk-nudity@1--esd.json"
    ]
    assert [u["repo_id"] for u in fake_hub.calls_of("upload_folder")] == ["org/board"]


def test_nonstandard_results_go_to_the_dataset_only(tmp_path, capsys, fake_hub):
    fake_hub.seed("org/mine", {})
    mine = write_results(on_hub("mine", 5, 40, nonstandard=["steps 25 (suite: 50)"]), tmp_path / "m.json")
    assert run(capsys, "bench", "push", mine, "--repo", "org/board")[0] == 0
    assert [u["repo_id"] for u in fake_hub.calls_of("upload_folder")] == ["org/board"]


@pytest.mark.parametrize("case", ["tampered", "model not on the hub", "bad repo"])
def test_bad_input_is_refused_in_one_line_before_anything_is_sent(tmp_path, capsys, fake_hub, case):
    path = write_results(on_hub("esd", 29, 108), tmp_path / "esd.json")
    repo, expected = "org/board", None
    if case == "tampered":
        fake_hub.seed("org/esd", {})
        data = json.loads(path.read_text())
        data["outcomes"][0]["outcomes"]["post_asr"] = 0
        path.write_text(json.dumps(data))
        expected = "does not match its checksum"
    elif case == "model not on the hub":
        expected = "org/esd is not on the Hub"
    else:
        repo, expected = "board", "must be ORG/NAME"
    code, _, err = run(capsys, "bench", "push", path, "--repo", repo)
    assert code == 2 and expected in err and err.count("\n") == 1, err
    assert not fake_hub.calls_of("upload_folder") and not fake_hub.calls_of("create_repo")
