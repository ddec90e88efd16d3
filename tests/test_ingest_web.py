"""``dataigm ingest --urls``: a URL list served from 127.0.0.1, downloaded by img2dataset, into laion shards.

The server serves images written here; some URLs 404, one times out, one returns HTML, one is held until the
test releases it (to kill a run in the middle of its downloads). One uninterrupted run (module fixture) is the
reference that killed and resumed runs must equal byte for byte.
"""

import contextlib
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from helpers.data import image_bytes
from helpers.jobs import kill_mid_run
from helpers.web import ALLOW_LOOPBACK, ImageServer

from dataigm import iter_samples, read_manifest
from dataigm.cli import main
from dataigm.sources import CaptionRules, RowFilter, select_rows
from dataigm.sources.web import DOWNLOADS_DIR
from dataigm.validate import validate_root

TIMEOUT = 2  # seconds img2dataset waits for a URL; the slow route answers after 6


def _rows(server: ImageServer) -> list[dict]:
    """The URL list: 6 church captions that download, 4 pair captions (cat, chair), failures, rows left out."""
    rows = []
    for i in range(6):
        server.images[f"church{i}.png"] = image_bytes((40 * i, 10, 10))
        route = "hold" if i == 4 else "img"  # the 5th church image is held while a kill test runs
        rows.append(
            {"url": server.url(route, f"church{i}.png"), "caption": f"An old Church, photo {i}", "punsafe": 0.01,
             "similarity": 0.35, "LICENSE": "cc-by-4.0"}
        )  # fmt: skip
    for i in range(4):
        server.images[f"cat{i}.jpg"] = image_bytes((10, 40 * i, 10), fmt="JPEG")
        caption = f"a cat on a sofa {i}" if i % 2 else f"a wooden chair {i}"
        rows.append({"url": server.url("img", f"cat{i}.jpg"), "caption": caption, "punsafe": 0.02, "similarity": 0.4})
    rows += [
        {"url": server.url("missing", "a.png"), "caption": "church tower", "punsafe": 0.0, "similarity": 0.5},
        {"url": server.url("slow", "church0.png"), "caption": "church at night", "punsafe": 0.0, "similarity": 0.5},
        {"url": server.url("page", "b"), "caption": "a church web page", "punsafe": 0.0, "similarity": 0.5},
        {"url": server.url("missing", "c.jpg"), "caption": "a cat", "punsafe": 0.0, "similarity": 0.5},
        # left out: unsafe (--where), low similarity (--where), a caption naming no class, a plural
        {"url": server.url("img", "church1.png"), "caption": "church, unsafe", "punsafe": 0.9, "similarity": 0.5},
        {"url": server.url("img", "church2.png"), "caption": "church, off topic", "punsafe": 0.0, "similarity": 0.1},
        {"url": server.url("img", "cat0.jpg"), "caption": "a mountain lake", "punsafe": 0.0, "similarity": 0.5},
        {"url": server.url("img", "cat1.jpg"), "caption": "churches of Rome", "punsafe": 0.0, "similarity": 0.5},
    ]
    return rows


ARGS = ["--concept", "church", "--where", "punsafe < 0.5 and similarity > 0.3", "--samples-per-shard", "3"]
ARGS += ["--timeout", str(TIMEOUT), "--retries", "0", "--processes", "1", "--threads", "4", "--license", "unknown"]
ARGS += ALLOW_LOOPBACK


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """The server, the URL list (parquet) and one uninterrupted ingest of it: ``(server, urls, root, stdout)``."""
    folder = tmp_path_factory.mktemp("web")
    with ImageServer(slow_seconds=3 * TIMEOUT) as server:
        server.release.set()
        urls = folder / "urls.parquet"
        pd.DataFrame(_rows(server)).to_parquet(urls)
        root = folder / "full"
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["ingest", "--urls", str(urls), "--out", str(root), *ARGS, "--progress", "false"]) == 0
        yield server, urls, root, out.getvalue()


def _tars(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in (root / "data").rglob("*.tar")}


def _sidecars(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in (root / "meta").glob("*/*/*.json")}


def test_selected_labelled_and_kept_with_provenance(web):
    server, urls, root, _ = web
    samples = {json.loads(s.record["origin"])["url"]: s for s in iter_samples(root, checksum=True)}
    churches = {server.url("hold" if i == 4 else "img", f"church{i}.png"): f"church{i}.png" for i in range(6)}
    cats = {server.url("img", f"cat{i}.jpg"): f"cat{i}.jpg" for i in range(4)}
    assert set(samples) == set(churches) | set(cats)
    for url, sample in samples.items():
        name = churches.get(url) or cats[url]
        assert hashlib.sha256(sample.image).hexdigest() == hashlib.sha256(server.images[name]).hexdigest()
        assert sample.ext == ("png" if url in churches else "jpg")
        assert (sample.record["label"], sample.cls) == (("target", 1) if url in churches else ("pair", 0))
        assert sample.record["source"] == "laion" and sample.record["split"] == "train"
        origin = json.loads(sample.record["origin"])
        row = next(r for r in pd.read_parquet(urls).to_dict("records") if r["url"] == url)
        assert origin["caption"] == row["caption"] and origin["punsafe"] == pytest.approx(row["punsafe"])
        assert origin["similarity"] == pytest.approx(row["similarity"])
        assert sample.record["license"] == ("cc-by-4.0" if url in churches else "unknown")
        assert (sample.record["width"], sample.record["height"]) == (16, 12)
        assert sample.record["label_source"] == "caption"  # the concept's words in the caption chose the label
    assert validate_root(root) == []


def test_load_dataset_reads_the_labels_and_their_source(web):
    from datasets import load_dataset

    server, _, root, _ = web
    rows = list(load_dataset(str(root), split="train"))
    assert len(rows) == 10
    for row in rows:
        is_church = "/church" in row["json"]["origin"]
        assert row["cls"] == int(is_church) and row["json"]["label_source"] == "caption"


def test_failures_are_counted_by_reason_and_written_next_to_the_shards(web):
    server, _, root, stdout = web
    job = next(j for j in read_manifest(root)["jobs"] if j.startswith("web-"))
    counts = json.loads((root / "meta" / f"{job}-counts.json").read_text())
    assert counts["rows_seen"] == 18 and counts["rows_after_where"] == 16
    assert counts["rows_selected"] == {"pair": 5, "target": 9}
    assert counts["downloaded"] == {"pair": 4, "target": 6}
    assert counts["failed_by_reason"] == {"HTTP 404": 2, "not a recognised image format": 1, "timeout": 1}
    assert "18 rows seen, 16 after --where, selected: 5 pair, 9 target" in stdout
    assert "downloaded: 4 pair, 6 target; failed: 4 (2 HTTP 404, 1 not a recognised image format, 1 timeout)" in stdout
    errors = {
        e["file"]: e["reason"] for p in (root / "meta").glob("*/*/*.json") for e in json.loads(p.read_text())["errors"]
    }
    assert errors == {
        server.url("missing", "a.png"): "HTTP 404",
        server.url("missing", "c.jpg"): "HTTP 404",
        server.url("slow", "church0.png"): "timeout",
        server.url("page", "b"): "not a recognised image format",
    }
    # 14 selected rows in shards of 3 rows: 5 shards, failed rows leave them smaller
    assert sorted(_sidecars(root)) == [f"meta/church/train/laion-{k:05d}.json" for k in range(5)]


def test_the_card_names_a_generation_job_and_the_url_ingest_beside_it(web, tmp_path):
    import shutil

    import yaml

    from cards import write_dataset_card

    _, urls, full, _ = web
    root = tmp_path / "root"
    shutil.copytree(full, root)
    args = ["generate", "--models", "[toy]", "--concepts", "[church]", "--kinds", "[forget]", "--max-prompts", "2"]
    assert main([*args, "--images-per-prompt", "1", "--out", str(root), "--no-progress"]) == 0
    jobs = read_manifest(root)["jobs"]
    web_job = next(j for j in jobs if j.startswith("web-"))
    config = jobs[web_job]["config"]  # the resolved options, also in meta/<job>.yaml
    assert config == yaml.safe_load((root / "meta" / f"{web_job}.yaml").read_text())
    assert (config["ingest"], config["urls"], config["where"]) == (
        "urls",
        str(urls),
        "punsafe < 0.5 and similarity > 0.3",
    )
    text = write_dataset_card(root).read_text()
    generation = next(line for line in text.splitlines() if line.startswith("| generate-"))
    assert "| toy |" in generation
    row = next(line for line in text.splitlines() if line.startswith(f"| {web_job} |"))
    cells = [c.strip() for c in row.strip("|").split(" | ")]
    assert cells[1:3] == ["URL list `urls.parquet`", "church / train"]
    assert cells[3].startswith("where `punsafe < 0.5 and similarity > 0.3`; target: captions naming church")
    assert cells[4:] == [
        "18",
        "5 pair, 9 target",
        "4 pair, 6 target",
        "2 HTTP 404, 1 not a recognised image format, 1 timeout",
        f"`meta/{web_job}-counts.json`",
    ]


def test_a_finished_job_run_again_downloads_nothing_and_changes_nothing(web, capsys):
    server, urls, root, _ = web
    before, sidecars, requests = _tars(root), _sidecars(root), sum(server.requests.values())
    assert main(["ingest", "--urls", str(urls), "--out", str(root), *ARGS, "--progress", "false"]) == 0
    assert "0 new shard(s), 5 shard(s) already done" in capsys.readouterr().out
    assert _tars(root) == before and _sidecars(root) == sidecars
    assert sum(server.requests.values()) == requests


@pytest.mark.parametrize(
    ("rules", "where", "cap", "expected"),
    [
        ({}, None, None, {"target": [0, 1, 3], "pair": [2, 4]}),
        ({}, "punsafe < 0.5", None, {"target": [0, 3], "pair": [2, 4]}),
        ({}, None, 1, {"target": [0], "pair": [2]}),
        ({"pair_words": ["lake"]}, None, None, {"target": [0, 1, 3], "pair": [5]}),
    ],
)
def test_selection_by_caption_where_and_cap(rules, where, cap, expected):
    from dataigm import get_concept

    frame = pd.DataFrame(
        {
            "URL": [f"http://x/{i}" for i in range(7)],
            "TEXT": ["Church", "a CHURCH tower", "a cat", "old church", "airplane", "a lake", "church cat"],
            "punsafe": [0.1, 0.9, 0.1, 0.1, 0.2, 0.1, 0.1],
        }
    )
    frame.loc[6, "TEXT"] = None  # a missing caption is never selected
    caption_rules = CaptionRules.from_concept(get_concept("church"), **rules)
    row_filter = None if where is None else RowFilter.parse(where, frame)
    selection = select_rows(frame, caption_rules, row_filter, cap)
    got = {label: list(selection.rows[selection.rows["label"] == label]["row"]) for label in ("target", "pair")}
    assert got == expected
    assert selection.seen == 7 and selection.selected == {k: len(v) for k, v in expected.items() if v}


def test_caption_rules_match_whole_words_and_phrases():
    from dataigm import get_concept

    van_gogh = CaptionRules.from_concept(get_concept("van_gogh"))
    assert van_gogh.label("Starry night by VAN  GOGH") == "target"
    assert van_gogh.label("a painting by Vincent") is None  # a P̂-1 word: never pair
    assert van_gogh.label("a painting by Monet") == "pair"  # no replacement concepts: any other caption
    church = CaptionRules.from_concept(get_concept("church"))
    assert church.label("churches") is None and church.label("a bird on a church") == "target"
    assert church.label("a bird") == "pair" and church.label("a dog") is None


def _bad_inputs(tmp_path):
    good = tmp_path / "good.csv"
    pd.DataFrame({"url": ["http://127.0.0.1:9/a.png"], "caption": ["a church"], "punsafe": [0.0]}).to_csv(
        good, index=False
    )
    no_url = tmp_path / "no_url.csv"
    pd.DataFrame({"link": ["http://127.0.0.1:9/a.png"], "caption": ["a church"]}).to_csv(no_url, index=False)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"url": "http://x/a.png", "caption": "church"}\n{"url": oops\n')
    return {
        "missing": ([str(tmp_path / "nope.parquet")], "--urls '.*nope.parquet': no such file"),
        "format": ([str(tmp_path / "urls.txt")], "unknown format '.txt'; valid: .parquet, .csv, .jsonl, .json"),
        "parquet": ([str(broken)], "--urls '.*broken.parquet' is not a readable parquet URL list"),
        "jsonl": ([str(lines)], "--urls '.*bad.jsonl' is not a readable jsonl URL list"),
        "column": ([str(no_url)], r"no URL column \(url or URL\); columns: link, caption \(name it with --url-column\)"),
        "where": ([str(good), "--where", "punsafe <> 1"], r"--where 'punsafe <> 1' does not parse: invalid syntax at column 9: punsafe <HERE><> 1"),
        "where_column": ([str(good), "--where", "nsfw < 1"], r"--where 'nsfw < 1': 'nsfw' is not a column; columns: url, caption, punsafe"),
        "cap": ([str(good), "--max-per-class", "0"], "--max-per-class must be at least 1, got 0"),
        "none": ([str(good), "--where", "punsafe > 1"], r"no row of --urls .* is selected \(1 rows, 0 after --where"),
        "label": ([str(good), "--label", "church"], "--label does not apply to --urls: captions set the labels"),
        "processes": ([str(good), "--processes", "0"], "--processes must be at least 1, got 0"),
    }  # fmt: skip


@pytest.mark.parametrize(
    "case",
    ["missing", "format", "parquet", "jsonl", "column", "where", "where_column", "cap", "none", "label", "processes"],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, case):
    (tmp_path / "urls.txt").write_text("x")
    args, message = _bad_inputs(tmp_path)[case]
    root = tmp_path / "root"
    assert main(["ingest", "--urls", *args, "--out", str(root), "--concept", "church"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.search(message, err), err
    assert not root.exists()


@pytest.mark.slow
def test_killed_while_writing_shards_resumes_to_the_uninterrupted_result(web, tmp_path):
    server, urls, full, _ = web
    root = tmp_path / "root"
    args = ["ingest", "--urls", str(urls), "--out", str(root), *ARGS]
    kill_mid_run(args, root, pause_after=3)  # after its 3rd shard tar is in place
    assert len(list((root / "data").rglob("*.tar"))) == 3
    requests = sum(server.requests.values())
    assert main([*args, "--progress", "false"]) == 0
    assert sum(server.requests.values()) == requests  # every download shard was done: nothing fetched again
    assert _tars(root) == _tars(full) and _sidecars(root) == _sidecars(full)
    assert validate_root(root) == []
    assert not list((root / DOWNLOADS_DIR).rglob("*.tar"))  # downloaded images are dropped once in our shards


@pytest.mark.slow
def test_killed_while_downloading_resumes_without_fetching_done_shards_again(web, tmp_path):
    server, urls, full, _ = web
    root = tmp_path / "root"
    server.release.clear()  # the held URL (row 4, download shard 1) waits: the kill lands during the download
    before = server.requests.copy()
    code = f"import sys; from dataigm.cli import main; sys.exit(main({['ingest', '--urls', str(urls), '--out', str(root), *ARGS]!r}))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not list(root.glob(f"{DOWNLOADS_DIR}/*/00000_stats.json")):
            assert proc.poll() is None and time.monotonic() < deadline, "the download did not reach shard 1"
            time.sleep(0.05)
        while server.requests["/hold/church4.png"] == before["/hold/church4.png"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (root / "data").exists()  # killed before any shard of ours
    server.release.set()
    shard0 = [f"/img/church{i}.png" for i in range(3)]  # the rows of download shard 0, done before the kill
    assert all(server.requests[u] == before[u] + 1 for u in shard0)
    assert main(["ingest", "--urls", str(urls), "--out", str(root), *ARGS, "--progress", "false"]) == 0
    assert all(server.requests[u] == before[u] + 1 for u in shard0)  # not fetched again
    assert _tars(root) == _tars(full) and _sidecars(root) == _sidecars(full)
    assert validate_root(root) == []


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("HTTP Error 404: Not Found", "HTTP 404"),
        ("HTTP Error 503: Service Unavailable", "HTTP 503"),
        ("The read operation timed out", "timeout"),
        ("<urlopen error timed out>", "timeout"),
        ("<urlopen error [Errno 111] Connection refused>", "connection refused"),
        ("<urlopen error [Errno -2] Name or service not known>", "unknown host"),
        ("Use of image disallowed by X-Robots-Tag directive", "disallowed by X-Robots-Tag"),
        ("something\nodd   happened", "something odd happened"),
    ],
)
def test_download_failures_get_short_countable_reasons(message, reason):
    from dataigm.sources.img2dataset import failure_reason

    assert failure_reason(message) == reason


def test_parquet_csv_and_jsonl_lists_read_alike(tmp_path):
    from dataigm.sources import read_url_list

    frame = pd.DataFrame(
        {"URL": ["http://a/1.png", "http://a/2.png"], "TEXT": ["a church", None], "punsafe": [0.1, 0.2]}
    )
    frame.to_parquet(tmp_path / "l.parquet")
    frame.to_csv(tmp_path / "l.csv", index=False)
    frame.to_json(tmp_path / "l.jsonl", orient="records", lines=True)
    (tmp_path / "folder").mkdir()
    frame.to_parquet(tmp_path / "folder" / "part-0.parquet")
    for name in ("l.parquet", "l.csv", "l.jsonl", "folder"):
        got = read_url_list(tmp_path / name)
        assert list(got.columns) == ["URL", "TEXT", "punsafe"], name
        assert got["URL"].tolist() == frame["URL"].tolist() and got["punsafe"].tolist() == [0.1, 0.2], name
        assert got["TEXT"].iloc[0] == "a church" and pd.isna(got["TEXT"].iloc[1]), name


@pytest.mark.parametrize("route", ["missing", "page"])
def test_an_unreachable_or_malformed_remote_url_list_is_one_line(tmp_path, capsys, route):
    root = tmp_path / "root"
    with ImageServer() as server:
        args = ["ingest", "--urls", server.url(route, "list.parquet"), "--out", str(root), "--concept", "church"]
        assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a readable parquet URL list" in err, err
    assert ("404" in err) == (route == "missing"), err
    assert not root.exists()
