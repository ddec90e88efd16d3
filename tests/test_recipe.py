"""`dataigm build RECIPE`: the recipe's checks, the plan (--dry-run), the toy recipe built, killed and resumed."""

from __future__ import annotations

import runpy
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from helpers.data import image_bytes
from helpers.jobs import kill_mid_run

from dataigm import iter_samples
from dataigm.cli import main
from dataigm.duplicates import find_duplicates
from dataigm.info import count_samples
from dataigm.manifest import read_manifest
from dataigm.recipe import read_state
from dataigm.validate import validate_root

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _toy_inputs(workdir: Path) -> Path:
    """The toy recipe and its inputs, written by the script a user runs."""
    return runpy.run_path(str(RECIPES / "toy_inputs.py"))["write_toy_inputs"](workdir)


@pytest.fixture(scope="module")
def toy_workdir(tmp_path_factory) -> Path:
    return _toy_inputs(tmp_path_factory.mktemp("toy")).parent


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit:  # options that do not parse
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def _recipe(tmp_path: Path, body: dict) -> Path:
    (tmp_path / "images" / "church").mkdir(parents=True, exist_ok=True)
    (tmp_path / "images" / "church" / "c.png").write_bytes(image_bytes())
    (tmp_path / "empty").mkdir(exist_ok=True)
    _url_list(tmp_path / "urls.parquet")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def _url_list(path: Path) -> Path:
    """A LAION-style URL list (nothing is downloaded from it in these tests)."""
    import pandas as pd

    captions = ["an old church", "a church at night", "a bird on a wire", "an airplane", "a church", "a plate"]
    pd.DataFrame(
        {
            "url": [f"http://example.com/{i}.png" for i in range(len(captions))],
            "caption": captions,
            "punsafe": [0.01, 0.5, 0.02, 0.01, 0.03, 0.0],
        }
    ).to_parquet(path)
    return path


def _png(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


FOLDER = {"kind": "folder", "folder": "images", "source": "real"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"concepts": {"church": [{"kind": "flder", "folder": "images"}]}},
            "recipe.yaml: concepts.church[0]: unknown step kind 'flder'; valid kinds: generate, folder, hf_dataset, urls",
        ),
        (
            {"concepts": {"church": [{**FOLDER, "folder": "missing"}]}},
            "recipe.yaml: concepts.church[0]: folder '{tmp}/missing' does not exist",
        ),
        (
            {"concepts": {"church": [{**FOLDER, "splt": "train"}]}},
            "concepts.church[0]: unknown key 'splt' for a folder source; valid keys: folder, split, source",
        ),
        ({"concepts": {"chruch": [FOLDER]}}, "concepts.chruch: Unknown concept 'chruch'"),
        ({"concepts": {"church": [FOLDER]}, "rule": {}}, "unknown key 'rule' for a recipe; valid keys: name, out"),
        ({"concepts": {"church": [{**FOLDER, "counts": {"train": {"targets": 3}}}]}}, "counts.train must map"),
        ({"concepts": {"church": [{**FOLDER, "source": "web"}]}}, "unknown source 'web'; valid sources: real, laion"),
        ({"concepts": {"church": [FOLDER]}, "rules": {"balance": {"by": "class"}}}, "rules.balance.by 'class'"),
        ({"concepts": {"church": [{"kind": "generate", "modles": ["toy"]}]}}, "unknown key 'modles' for a generate"),
        (
            {"concepts": {"church": [{"kind": "generate", "models": ["toy"], "concepts": ["nudity"]}]}},
            "concepts.church[0]: a generate step takes its 'concepts' from the recipe; remove it",
        ),
        (
            {"concepts": {"church": [{"kind": "urls", "urls": "x.parquet"}]}},
            "URL list '{tmp}/x.parquet' does not exist",
        ),
        (
            {"concepts": {"church": [{"kind": "urls", "urls": "urls.parquet", "url_column": "link"}]}},
            "concepts.church[0]: ",
        ),
        (
            {"concepts": {"church": [{"kind": "urls", "urls": "urls.parquet", "where": "punsafe <"}]}},
            "concepts.church[0]: --where 'punsafe <' does not parse",
        ),
        ({"concepts": {"church": [{**FOLDER, "folder": "empty"}]}}, "concepts.church[0]: Input folder"),
    ],
)
def test_bad_recipe_is_one_line_and_writes_nothing(tmp_path, capsys, body, message):
    path = _recipe(tmp_path, body)
    out = tmp_path / "out"
    for dry_run in ([], ["--dry-run"]):
        code, _, err = _run(["build", str(path), "--out", str(out), *dry_run], capsys)
        assert code == 2
        assert message.format(tmp=tmp_path) in err and len(err.splitlines()) == 1, err
        assert not out.exists()


def test_missing_recipe_or_root(tmp_path, capsys):
    code, _, err = _run(["build", str(tmp_path / "none.yaml")], capsys)
    assert code == 2 and f"Recipe '{tmp_path}/none.yaml' does not exist" in err
    path = _recipe(tmp_path, {"concepts": {"church": [FOLDER]}})
    code, _, err = _run(["build", str(path)], capsys)
    assert code == 2 and "no dataset root: set 'out' in the recipe or pass --out" in err


def test_dry_run_prints_the_plan_and_writes_nothing(toy_workdir, tmp_path, capsys):
    out = tmp_path / "toy"
    code, text, _ = _run(["build", str(toy_workdir / "toy.yaml"), "--out", str(out), "--dry-run"], capsys)
    assert code == 0 and not out.exists()
    lines = text.splitlines()
    assert lines[0].startswith(f"build dataigm-toy into {out} (8 steps")
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "[todo] 1. generate church",
        "[todo] 2. folder church",
        "[todo] 3. hf_dataset church",
        "[todo] 4. dedup",
        "[todo] 5. balance",
        "[todo] 6. validate",
        "[todo] 7. info",
        "[todo] 8. card",
    ]
    # counts per split and class, from the recipe's counts; the Hub dataset holds 5 church and 6 other rows
    assert "2 test/real/pair, 2 test/real/target, 5 train/real/pair, 5 train/real/target" in lines[2]
    assert "6 train/laion/pair, 5 train/laion/target" in lines[3]
    # the generation plan: max_prompts x kinds x images_per_prompt
    planned = sum(int(part.split()[0]) for part in lines[1].split(": ", 1)[1].split(" (")[0].split(", "))
    assert planned == 6 * 2 * 2


@pytest.fixture(scope="module")
def toy_build(toy_workdir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built") / "toy"
    assert main(["build", str(toy_workdir / "toy.yaml"), "--out", str(out)]) == 0
    return out


def _content(root: Path) -> dict[str, str]:
    return {s.key: s.record["sha256"] for s in iter_samples(root, checksum=True)}


@pytest.mark.slow
def test_toy_recipe_builds_a_valid_balanced_dataset_without_duplicates(toy_build, toy_workdir, capsys):
    from datasets import load_dataset

    root = toy_build
    assert validate_root(root) == []
    assert find_duplicates(root).groups == []
    counts = count_samples(root)
    assert {source for (_, _, source, _) in counts} == {"generated", "real", "laion"}
    for split in ("train", "test"):
        per_label = Counter()
        for (_, s, _, label), n in counts.items():
            if s == split:
                per_label[label] += n
        assert per_label["target"] == per_label["pair"] > 0, (split, per_label)
    ds = load_dataset(str(root))
    assert {split: len(ds[split]) for split in ds} == {
        split: sum(n for (_, s, _, _), n in counts.items() if s == split) for split in ("train", "test")
    }
    # the dedup rule dropped the planted copies: both revisions are recorded and finished
    manifest = read_manifest(root)
    assert [(r["reason"], r["status"]) for r in manifest["revisions"]] == [("dedup", "done"), ("balance", "done")]
    assert manifest["revisions"][0]["dropped"] >= 1
    card = (root / "README.md").read_text()
    assert "dataigm-toy" in card and "| toy |" in card  # the generation job's model ...
    hub = next(line for line in card.splitlines() if "local dataset `hub-church`" in line)  # ... and the Hub source
    assert "church / train | column `label`: church=target, other=pair |" in hub
    assert hub.endswith("-counts.json` |")  # the job's counts file, next to its shards
    state = read_state(root)
    assert len(state["steps"]) == 8 and [s["id"] for s in state["recipe"]["steps"]] == list(state["steps"])
    # planned again: every step done; built again: nothing changes
    code, text, _ = _run(["build", str(toy_workdir / "toy.yaml"), "--out", str(root), "--dry-run"], capsys)
    assert code == 0 and text.count("[done]") == 8
    before = _content(root)
    assert main(["build", str(toy_workdir / "toy.yaml"), "--out", str(root)]) == 0
    assert _content(root) == before and read_manifest(root)["shards"] == manifest["shards"]


def _source_shards(root: Path) -> int:
    """Shards written by the source steps (before any revision)."""
    jobs = read_manifest(root)["jobs"]
    return sum(
        n
        for job, entry in jobs.items()
        if not job.startswith(("dedup-", "balance-"))
        for _, n in entry["ranges"].values()
    )


@pytest.mark.slow
@pytest.mark.parametrize("where", ["generate", "dedup"])
def test_toy_build_killed_anywhere_resumes_to_the_same_dataset(toy_build, toy_workdir, tmp_path, where):
    root = tmp_path / "toy"
    pause_after = 2 if where == "generate" else _source_shards(toy_build) + 1
    recipe = str(toy_workdir / "toy.yaml")
    kill_mid_run(["build", recipe, "--out", str(root)], root, pause_after=pause_after)
    assert validate_root(root) != []  # killed mid-step: the root says what is unfinished
    assert main(["build", recipe, "--out", str(root)]) == 0
    assert validate_root(root) == []
    assert _content(root) == _content(toy_build)
    assert read_manifest(root)["shards"] == read_manifest(toy_build)["shards"]


# Runs in the child: the build stops for good just before it removes the first retired shard's tar, i.e. after
# the dedup revision swapped the manifest and retired that shard's sidecar (the clean-up step), and says so.
_PAUSE_IN_CLEAN_UP = """
import pathlib, sys, time
_unlink = pathlib.Path.unlink
def _pause_before_tar(self, *args, **kwargs):
    if self.suffix == ".tar":
        pathlib.Path({marker!r}).touch()
        time.sleep(3600)
    return _unlink(self, *args, **kwargs)
pathlib.Path.unlink = _pause_before_tar
from dataigm.cli import main
sys.exit(main({argv!r}))
"""


@pytest.mark.slow
def test_toy_build_killed_while_retiring_old_shards_resumes_to_the_same_dataset(toy_build, toy_workdir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    root, marker = tmp_path / "toy", tmp_path / "paused"
    argv = ["build", str(toy_workdir / "toy.yaml"), "--out", str(root)]
    child = _PAUSE_IN_CLEAN_UP.format(marker=str(marker), argv=argv)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the build never reached its clean-up"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    (revision,) = read_manifest(root)["revisions"]
    assert (revision["reason"], revision["status"]) == ("dedup", "retiring")  # killed after the swap
    plan = yaml.safe_load((root / revision["plan"]).read_text())
    assert all((root / old).exists() for old in plan["replaced"])  # no old tar removed yet
    assert main(argv) == 0
    assert validate_root(root) == []
    assert [r["status"] for r in read_manifest(root)["revisions"]] == ["done", "done"]
    assert not any((root / old).exists() for old in plan["replaced"])  # the clean-up was finished
    assert _content(root) == _content(toy_build)
    assert read_manifest(root)["shards"] == read_manifest(toy_build)["shards"]


def test_url_list_and_hub_where_in_the_plan(toy_workdir, tmp_path, capsys):
    recipe = {
        "concepts": {
            "church": [
                {"kind": "urls", "urls": str(_url_list(tmp_path / "urls.parquet")), "where": "punsafe < 0.1"},
                {"kind": "hf_dataset", "dataset": str(toy_workdir / "hub-church"), "where": "label == 1"},
            ]
        }
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    code, text, err = _run(["build", str(path), "--out", str(tmp_path / "out"), "--dry-run"], capsys)
    assert code == 0, err
    lines = text.splitlines()
    # "church" captions under punsafe 0.1 are target (2); captions naming a replacement concept are pair (2)
    assert "1. urls church: up to 2 train/laion/pair, 2 train/laion/target (of 6 rows" in lines[1]
    assert "2. hf_dataset church: 5 train/real/target" in lines[2]
    assert not (tmp_path / "out").exists()


def test_paper_recipe_parses_but_cannot_run_here(tmp_path, capsys):
    """The paper's recipe needs gated Hub datasets, web downloads and a GPU: it parses, and says what is missing."""
    from dataigm.recipe import load_recipe

    text = (RECIPES / "dataigm-paper.yaml").read_text()
    assert "CANNOT RUN" in text
    shutil.copyfile(RECIPES / "dataigm-paper.yaml", tmp_path / "paper.yaml")
    argv = ["build", str(tmp_path / "paper.yaml"), "--out", str(tmp_path / "dataigm"), "--dry-run"]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "laion-metadata/part-00000.parquet' does not exist" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "dataigm").exists()
    (tmp_path / "laion-metadata").mkdir()
    _url_list(tmp_path / "laion-metadata" / "part-00000.parquet")
    recipe = load_recipe(tmp_path / "paper.yaml", out=tmp_path / "dataigm")
    sources = {(s.concept, s.kind) for s in recipe.steps if s.concept}
    assert {c for c, _ in sources} == {"nudity", "van_gogh", "church", "parachute"}
    assert all(
        (c, k) in sources
        for c in ("nudity", "van_gogh", "church", "parachute")
        for k in ("hf_dataset", "urls", "generate")
    )
    assert [s.kind for s in recipe.steps if not s.concept] == ["dedup", "balance", "validate", "info", "card"]
    # offline, the first Hub dataset cannot be reached: one line, nothing written
    code, _, err = _run(argv, capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "imagenet-1k" in err.lower(), err
    assert not (tmp_path / "dataigm").exists()


@pytest.mark.slow
def test_a_recipe_with_a_url_list_downloads_labels_and_counts_failures(tmp_path, capsys):
    import json

    import pandas as pd
    from helpers.web import ImageServer

    with ImageServer() as server:
        rows = []
        for i in range(4):
            server.images[f"church{i}.png"] = image_bytes((200, 20 * i, 10))
            rows.append({"url": server.url("img", f"church{i}.png"), "caption": f"an old church {i}", "punsafe": 0.0})
            server.images[f"cat{i}.png"] = image_bytes((10, 20 * i, 200))
            rows.append({"url": server.url("img", f"cat{i}.png"), "caption": f"a cat on a chair {i}", "punsafe": 0.0})
        rows.append({"url": server.url("missing", "x.png"), "caption": "a church that is gone", "punsafe": 0.0})
        rows.append({"url": server.url("page", "y.png"), "caption": "a church page", "punsafe": 0.0})
        rows.append({"url": server.url("img", "church0.png"), "caption": "church, unsafe", "punsafe": 0.9})
        pd.DataFrame(rows).to_parquet(tmp_path / "urls.parquet")
        source = {"kind": "urls", "urls": "urls.parquet", "where": "punsafe < 0.5", "samples_per_shard": 3}
        source |= {"timeout": 2, "retries": 0, "processes": 1, "threads": 2, "allow_private_addresses": True}
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump({"name": "web", "concepts": {"church": [source]}}))
        out = tmp_path / "out"
        code, text, err = _run(["build", str(path), "--out", str(out)], capsys)
    assert code == 0, err
    samples = list(iter_samples(out, checksum=True))
    labels = {json.loads(s.record["origin"])["url"].rsplit("/", 1)[1]: s.record["label"] for s in samples}
    assert labels == {f"church{i}.png": "target" for i in range(4)} | {f"cat{i}.png": "pair" for i in range(4)}
    assert {s.record["source"] for s in samples} == {"laion"}
    assert "1. urls church" in text and "failed" in text  # the two failed URLs are counted, not fatal
    assert validate_root(out) == []


@pytest.mark.slow
def test_dedup_runs_again_after_a_source_is_added(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    def texture(seed: int) -> bytes:
        rng = np.random.default_rng(seed)
        image = Image.fromarray(rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)).resize((48, 48))
        return _png(image)

    for name, seeds in (("church", range(4)), ("other", range(10, 14))):
        (tmp_path / "a" / name).mkdir(parents=True)
        for seed in seeds:
            (tmp_path / "a" / name / f"{seed}.png").write_bytes(texture(seed))
    (tmp_path / "b" / "church").mkdir(parents=True)
    (tmp_path / "b" / "church" / "again.png").write_bytes(texture(0))  # the same pixels as a/church/0.png
    (tmp_path / "b" / "church" / "new.png").write_bytes(texture(99))
    first = {"kind": "folder", "folder": "a", "source": "real", "class_map": {"other": "pair"}}
    recipe = {"name": "grow", "concepts": {"church": [first]}, "rules": {"dedup": True}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    assert _run(["build", str(path), "--out", str(out)], capsys)[0] == 0
    recipe["concepts"]["church"].append({"kind": "folder", "folder": "b", "source": "laion", "label": "target"})
    path.write_text(yaml.safe_dump(recipe))
    code, plan, _ = _run(["build", str(path), "--out", str(out), "--dry-run"], capsys)
    assert [line.split("]")[0].strip() for line in plan.splitlines()[1:4]] == ["[done", "[todo", "[todo"]
    assert _run(["build", str(path), "--out", str(out)], capsys)[0] == 0
    origins = {(s.record["source"], s.record["origin"]) for s in iter_samples(out)}
    assert ("laion", "church/new.png") in origins and ("real", "church/0.png") in origins
    assert ("laion", "church/again.png") not in origins
    assert find_duplicates(out).groups == []


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing in the build catches it, so the root is left as a kill leaves it."""


@pytest.mark.slow
@pytest.mark.parametrize("step", ["dedup", "balance"])
def test_a_rule_step_interrupted_mid_revision_records_what_an_uninterrupted_build_does(tmp_path, monkeypatch, step):
    import numpy as np
    from PIL import Image

    import dataigm.revision

    def texture(seed: int) -> bytes:
        rng = np.random.default_rng(seed)
        return _png(Image.fromarray(rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)).resize((48, 48)))

    for name, seeds in (("church", range(6)), ("other", range(10, 12))):
        (tmp_path / "images" / name).mkdir(parents=True)
        for seed in seeds:
            (tmp_path / "images" / name / f"{seed}.png").write_bytes(texture(seed))
    (tmp_path / "images" / "church" / "again.png").write_bytes(texture(0))  # one copy for dedup to drop
    source = {"kind": "folder", "folder": "images", "source": "real", "class_map": {"other": "pair"}}
    recipe = {"concepts": {"church": [source]}, "rules": {"dedup": True, "balance": {"by": "split"}}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert main(["build", str(path), "--out", str(clean)]) == 0

    write_shard = dataigm.revision.write_shard

    def killed_while_writing(root, shard, samples, job_id, **kwargs):
        if job_id.startswith(f"{step}-"):  # the step's revision is recorded and its copies are being written
            raise _Killed
        return write_shard(root, shard, samples, job_id=job_id, **kwargs)

    monkeypatch.setattr(dataigm.revision, "write_shard", killed_while_writing)
    with pytest.raises(_Killed):
        main(["build", str(path), "--out", str(killed)])
    monkeypatch.setattr(dataigm.revision, "write_shard", write_shard)
    assert [(r["reason"], r["status"]) for r in read_manifest(killed)["revisions"]][-1] == (step, "writing")
    assert main(["build", str(path), "--out", str(killed)]) == 0

    def recorded(root: Path) -> dict:  # every step's record but the card's, which names the root it wrote into
        return {k: s for k, s in read_state(root)["steps"].items() if not s["title"].endswith("card")}

    assert recorded(killed) == recorded(clean)
    summary = next(s["summary"] for s in recorded(clean).values() if s["title"].endswith(step))
    assert summary.startswith(f"revision {step}-") and " sample(s) dropped" in summary  # not "nothing to drop"
    assert read_manifest(killed)["shards"] == read_manifest(clean)["shards"]
