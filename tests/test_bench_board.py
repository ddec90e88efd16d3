"""`dataigm bench board`: results of one suite version as markdown and a static page. Paired ranks and differences
against a direct computation on the results files, the composite normalised to the base model only, reported rows
with their prompt-count check, bad input refused in one line with nothing written, and the page in headless
Chromium (sorting, a filter, one number equal to its results file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.bench import nudity_results, toy_results

from dataigm.cli import main
from dataigm.suite import load_suite
from detectors.bench.board import board_data, load_board_results, multiple_of, outcome_matrix, reported_rows
from detectors.bench.paired import rank_intervals
from detectors.bench.results import checksum, results_file_name, write_results

LEAKS = {
    "toy": {"nudity": 1.0, "church": 1.0, "van_gogh": 1.0, "parachute": 1.0},  # the suite's base model
    "weak": {"nudity": 0.7, "church": 0.8, "van_gogh": 0.6, "parachute": 0.9},
    "strong": {"nudity": 0.1, "church": 0.2, "van_gogh": 0.05, "parachute": 0.3},
}


def write_toy(tmp_path: Path, labels=("toy", "weak", "strong"), **kwargs) -> list[Path]:
    paths = []
    for label in labels:
        results = toy_results(label, LEAKS.get(label, {"nudity": 0.5}), **kwargs)
        paths.append(write_results(results, tmp_path / "results" / results_file_name(results)))
    return paths


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_board_ranks_and_pairs_equal_a_direct_computation_on_the_results_files(tmp_path, capsys):
    paths = write_toy(tmp_path)
    code, out, err = run(capsys, "bench", "board", *paths, "--out", tmp_path / "board", "--n-boot", 300)
    assert code == 0, err
    md = (tmp_path / "board" / "board.md").read_text()
    html = (tmp_path / "board" / "board.html").read_text()
    assert "# Board: toy@1" in md and "## Paired comparisons" in md and "<script" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html  # no network
    suite, results = load_board_results(paths)
    data = board_data(suite, results, n_boot=300)
    rows = {r["model"]: r for r in data["rows"]}
    # the direct computation: the outcome matrix from the files' records, ranks by paired.rank_intervals
    files = [json.loads(p.read_text()) for p in paths]
    for concept in ("nudity", "church", None):
        x = np.array(
            [
                [o["outcomes"]["leak_rate"] for o in sorted(f["outcomes"], key=lambda o: (o["concept"], o["prompt"]))]
                for f in files
                if True
            ]
        )
        keep = [
            i
            for i, o in enumerate(sorted(files[0]["outcomes"], key=lambda o: (o["concept"], o["prompt"])))
            if concept in (None, o["concept"])
        ]
        direct = rank_intervals(x[:, keep], ["toy", "weak", "strong"], n_boot=300)
        key = "leak_rate" + (f"/{concept}" if concept else "")
        for rank in direct:
            assert rows[rank.model]["ranks"][key] == {"rank": rank.rank, "ci": list(rank.ci)}
            assert rows[rank.model]["numbers"][key]["value"] == pytest.approx(rank.rate, abs=1e-12)
    assert [rows[m]["ranks"]["leak_rate"]["rank"] for m in ("strong", "weak", "toy")] == [1, 2, 3]
    # McNemar's discordant counts by hand from the files
    pair = next(p for p in data["pairs"] if p["key"] == "leak_rate/church" and {p["a"], p["b"]} == {"weak", "strong"})
    a, b = (files[[f["model"]["label"] for f in files].index(m)] for m in (pair["a"], pair["b"]))
    oa = {o["prompt"]: o["outcomes"]["leak_rate"] for o in a["outcomes"] if o["concept"] == "church"}
    ob = {o["prompt"]: o["outcomes"]["leak_rate"] for o in b["outcomes"] if o["concept"] == "church"}
    assert pair["mcnemar"]["n10"] == sum(oa[k] == 1 and ob[k] == 0 for k in oa)
    assert pair["mcnemar"]["n01"] == sum(oa[k] == 0 and ob[k] == 1 for k in oa)
    assert pair["difference"]["value"] == pytest.approx(np.mean(list(oa.values())) - np.mean(list(ob.values())))


def test_composite_is_normalised_to_the_base_model_and_does_not_move_when_a_model_is_added(tmp_path):
    paths = write_toy(tmp_path)
    suite, results = load_board_results(paths)
    three = {r["model"]: r["composite"] for r in board_data(suite, results, n_boot=50)["rows"]}
    two = {r["model"]: r["composite"] for r in board_data(suite, results[:2], n_boot=50)["rows"]}
    base = results[0]["numbers"]["leak_rate"]["value"]
    weak = results[1]["numbers"]["leak_rate"]["value"]
    assert three["toy"]["value"] == 0.0 and three["weak"]["value"] == pytest.approx((base - weak) / base)
    assert two["weak"] == three["weak"]
    without_base = board_data(suite, results[1:], n_boot=50)["rows"]
    assert all(r["composite"]["value"] is None and "base model toy" in r["composite"]["skipped"] for r in without_base)


def test_reported_rows_carry_their_source_and_a_rate_counted_on_other_prompts_is_flagged():
    suite = load_suite("unlearndiffatk-nudity@1")
    rows, warnings = reported_rows(suite)
    assert len(rows) == 8 and warnings == []  # the README's nudity rates are all multiples of 1/142
    esd = next(r for r in rows if r["model"].startswith("Erased Stable Diffusion"))
    assert esd["numbers"]["post_asr"]["value"] == pytest.approx(0.7605)
    assert esd["source"]["commit"] == "5a3e5d37fb8787113e5d479204ab593a60e303e0"
    # rates printed from 118 prompts (2/118 = 1.69%, 5/118 = 4.24%) on the 142-prompt suite
    data = {suite.id: {"source": esd["source"], "percent": ["pre_asr", "post_asr"], "decimals": 2}}
    data[suite.id]["rows"] = [{"model": "M", "pre_asr": round(200 / 118, 2), "post_asr": round(500 / 118, 2)}]
    rows, warnings = reported_rows(suite, data)
    assert len(warnings) == 1 and "not a multiple of 1/142" in warnings[0] and rows[0]["prompt_count_warning"]
    assert multiple_of(0.0169, 118, 0.0001) and not multiple_of(0.0169, 142, 0.0001)


def test_a_board_with_reported_rows_and_flags_in_markdown(tmp_path, capsys):
    a = write_results(nudity_results("esd", 29, 108), tmp_path / "a.json")
    b = write_results(nudity_results("mine", 5, 40, nonstandard=["steps 25 (suite: 50)"]), tmp_path / "b.json")
    code, _, err = run(capsys, "bench", "board", a, b, "--out", tmp_path / "board", "--n-boot", 100)
    assert code == 0, err
    md = (tmp_path / "board" / "board.md").read_text()
    assert "Forget-Me-Not (FMN) (reported)" in md and "5a3e5d37fb87" in md
    assert "nonstandard: steps 25 (suite: 50)" in md and "76.1% [" in md  # 108/142, with its interval
    assert "no results of the suite's base model sd-1.4" in md
    code, _, _ = run(capsys, "bench", "board", a, "--out", tmp_path / "bare", "--no-reported", "--n-boot", 10)
    assert code == 0 and "(reported)" not in (tmp_path / "bare" / "board.md").read_text()


def _with_suite(results: dict, version: int) -> dict:
    changed = json.loads(json.dumps(results))
    changed["suite"] |= {"version": version, "id": f"{changed['suite']['name']}@{version}"}
    changed["checksum"] = checksum(changed)
    return changed


@pytest.mark.parametrize("case", ["mixed versions", "mixed suites", "unknown version", "tampered", "same label"])
def test_bad_input_is_refused_in_one_line_with_nothing_written(tmp_path, capsys, case):
    toy = toy_results("weak", LEAKS["weak"])
    first = write_results(toy, tmp_path / "first.json")
    if case == "mixed versions":
        other = write_results(_with_suite(toy_results("strong", LEAKS["strong"]), 2), tmp_path / "o.json")
        expected = "never share a ranking"
    elif case == "mixed suites":
        other = write_results(nudity_results("esd", 3, 9), tmp_path / "o.json")
        expected = "never share a ranking"
    elif case == "unknown version":
        first = write_results(_with_suite(toy, 2), tmp_path / "first.json")
        other = write_results(_with_suite(toy_results("strong", LEAKS["strong"]), 2), tmp_path / "o.json")
        expected = "has no version '2'"
    elif case == "tampered":
        other = write_results(toy_results("strong", LEAKS["strong"]), tmp_path / "o.json")
        data = json.loads(other.read_text())
        data["outcomes"][0]["outcomes"]["leak_rate"] ^= 1
        other.write_text(json.dumps(data))
        expected = "does not match its checksum"
    else:
        other = write_results(toy_results("weak", LEAKS["strong"], seed=3), tmp_path / "o.json")
        expected = "one row per model"
    code, out, err = run(capsys, "bench", "board", first, other, "--out", tmp_path / "board")
    assert code == 2 and expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "board").exists()


def test_outcome_matrix_pairs_prompts_by_identity_and_leaves_missing_ones_out():
    a = toy_results("a", LEAKS["weak"])
    b = toy_results("b", LEAKS["strong"])
    b["outcomes"] = b["outcomes"][1:]  # one prompt missing for b
    x, keys = outcome_matrix([a, b], "leak_rate", "nudity")
    assert x.shape == (2, 20) and np.isnan(x[1]).sum() == 1 and keys == sorted(keys)


@pytest.mark.slow
def test_the_page_in_headless_chromium_sorts_filters_and_shows_the_results_numbers(tmp_path, capsys):
    from helpers.browser import browser as _browser
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    paths = write_toy(tmp_path, images_supplied=False)
    nudity = [
        write_results(nudity_results("esd", 29, 108), tmp_path / "n1.json"),
        write_results(nudity_results("mine", 5, 40, images_supplied=True), tmp_path / "n2.json"),
    ]
    assert run(capsys, "bench", "board", *paths, "--out", tmp_path / "toy", "--n-boot", 100)[0] == 0
    assert run(capsys, "bench", "board", *nudity, "--out", tmp_path / "nudity", "--n-boot", 100)[0] == 0
    browser, reason = _browser()
    if browser is None:
        pytest.skip(reason)
    try:
        browser.get((tmp_path / "toy" / "board.html").as_uri())

        def models():
            return [tr.get_attribute("data-model") for tr in browser.find_elements(By.CSS_SELECTOR, "#board-body tr")]

        def value(model, key):
            td = browser.find_element(By.CSS_SELECTOR, f'#board-body tr[data-model="{model}"] td[data-key="{key}"]')
            return float(td.get_attribute("data-value")), td.find_element(By.CLASS_NAME, "value").text

        # one number on the page equals its results file
        weak = json.loads(paths[1].read_text())["numbers"]["leak_rate/church"]["value"]
        assert value("weak", "leak_rate/church") == (weak, f"{100 * weak:.1f}%")
        # sorting: one click ascending, a second descending
        browser.find_element(By.CSS_SELECTOR, 'th[data-key="leak_rate"]').click()
        assert models() == ["strong", "weak", "toy"]
        browser.find_element(By.CSS_SELECTOR, 'th[data-key="leak_rate"]').click()
        assert models() == ["toy", "weak", "strong"]
        # filters: a concept keeps its columns only; a CatIGMU path keeps the concepts under it
        Select(browser.find_element(By.ID, "concept-filter")).select_by_value("church")
        heads = [th.get_attribute("data-key") for th in browser.find_elements(By.CSS_SELECTOR, "#board-head th")]
        assert heads == ["model", "flags", "composite", "leak_rate/church"]
        Select(browser.find_element(By.ID, "concept-filter")).select_by_value("all")
        Select(browser.find_element(By.ID, "path-filter")).select_by_value("local/concrete")
        heads = [th.get_attribute("data-key") for th in browser.find_elements(By.CSS_SELECTOR, "#board-head th")]
        assert heads[3:] == ["leak_rate/church", "leak_rate/parachute"]
        # reported rows, shown and hidden; flags marked
        browser.get((tmp_path / "nudity" / "board.html").as_uri())
        assert len(models()) == 10 and len(browser.find_elements(By.CSS_SELECTOR, "tr.reported")) == 8
        assert browser.find_element(By.CSS_SELECTOR, 'tr[data-model="mine"] .flag.supplied').text == "images supplied"
        browser.find_element(By.ID, "show-reported").click()
        assert sorted(models()) == ["esd", "mine"]
        assert value("esd", "post_asr/nudity")[0] == 108 / 142
        assert len(browser.find_elements(By.CSS_SELECTOR, "#pairs-body tr")) == 1
    finally:
        browser.quit()
