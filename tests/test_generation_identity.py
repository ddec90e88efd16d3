"""A generation job follows the content of the weights it loads, and every base seed is its own work.

The tiny real SD pipeline is copied to a folder whose UNet weights the tests change in place.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

from dataigm import iter_samples
from dataigm.cli import main
from dataigm.identity import DigestCache, weights_identity
from dataigm.validate import validate_root

BASE = ["--steps", "2", "--height", "32", "--width", "32", "--progress", "false", "--samples-per-shard", "1"]


def argv(root, models, *extra) -> list[str]:
    command = ["generate", "--out", str(root), "--models", json.dumps(models), "--concepts", "[church]"]
    return command + ["--kinds", "[forget]", "--max-prompts", "2", *BASE, *extra]


def the_error(capsys) -> str:
    """The CLI's error: exactly one line on stderr, no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".dataigm.lock"
    }


def images(root: Path) -> dict[str, bytes]:
    return {s.key: s.image for s in iter_samples(root)}


def unet_file(pipeline: Path) -> Path:
    (path,) = sorted((pipeline / "unet").glob("*.safetensors"))
    return path


def change_unet(pipeline: Path, shift: float = 0.5) -> None:
    """New UNet weights in place: every tensor shifted (the images change)."""
    from safetensors.torch import load_file, save_file

    path = unet_file(pipeline)
    shifted = {k: v + shift for k, v in load_file(path).items()}
    save_file(shifted, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)  # as a trainer saves: the old file may still be mapped


@pytest.fixture
def pipeline(tiny_pipeline_dir, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_pipeline_dir, tmp_path / "pipe"))


def erased(pipeline: Path) -> dict:
    return {"base": str(pipeline), "name": "erased", "method": "ESD", "unet": str(pipeline / "unet")}


# ---------------------------------------------------------------- the identity of content


def test_weights_identity_follows_content_not_paths_names_or_touches(pipeline, tmp_path):
    spec = erased(pipeline)
    first = weights_identity(spec, DigestCache())
    assert set(first) == {"base", "unet"}
    unet = unet_file(pipeline)
    os.utime(unet, ns=(1_000_000_000, 1_000_000_000))  # touched: same bytes
    assert weights_identity(spec, DigestCache()) == first
    moved = Path(shutil.move(str(pipeline), tmp_path / "elsewhere"))  # moved and renamed: same bytes
    alone = tmp_path / "my-unet.safetensors"
    shutil.copy(unet_file(moved), alone)
    as_file = weights_identity({"base": str(moved), "unet": str(alone)}, DigestCache())
    assert weights_identity(erased(moved), DigestCache()) == first
    renamed = tmp_path / "renamed.safetensors"
    shutil.copy(alone, renamed)
    assert weights_identity({"base": str(moved), "unet": str(renamed)}, DigestCache()) == as_file
    change_unet(moved)
    changed = weights_identity(erased(moved), DigestCache())
    assert changed["unet"] != first["unet"]
    assert changed["base"] == first["base"]  # the base's own UNet is replaced whole by the unet folder: not loaded
    # a state-dict file may be partial: the base's UNet stays part of what the model computes with
    assert weights_identity({"base": str(moved), "unet": str(alone)}, DigestCache())["base"] != as_file["base"]


def test_a_hub_model_is_identified_by_its_commit_in_the_local_cache():
    from huggingface_hub import constants

    from dataigm.identity import changed_parts

    commit, newer = "a" * 40, "b" * 40
    repo = Path(constants.HF_HUB_CACHE) / "models--someone--erased-sd"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model_index.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    spec = {"base": "someone/erased-sd", "unet": "someone/erased-sd/unet"}
    found = weights_identity(spec)
    assert found == {
        "base": {"hub": "someone/erased-sd", "commit": commit},
        "unet": {"hub": "someone/erased-sd/unet", "commit": commit},
    }
    pinned = weights_identity(spec | {"revision": newer})["base"]  # a pinned commit names the files by itself
    assert pinned == {"hub": "someone/erased-sd", "commit": newer}
    assert changed_parts(found, {**found, "base": pinned}) == ["base"]
    missing = weights_identity({"base": "someone/not-downloaded"})["base"]
    assert missing == {"hub": "someone/not-downloaded", "commit": None}  # unknown, so never counted as a change
    assert changed_parts({"base": missing}, {"base": {**missing, "commit": commit}}) == []


def test_the_digest_memo_does_not_read_an_unchanged_file_again(tmp_path, monkeypatch):
    import dataigm.identity as identity

    path = tmp_path / "w.bin"
    path.write_bytes(b"weights" * 1000)
    memo = tmp_path / "digests.json"
    cache = DigestCache(memo)
    digest = cache.file(path)
    cache.save()
    reads = []
    monkeypatch.setattr(identity, "sha256_file", lambda p: reads.append(p) or "read")
    assert DigestCache(memo).file(path) == digest and reads == []
    path.write_bytes(b"other" * 1000)
    assert DigestCache(memo).file(path) == "read" and len(reads) == 1


# ---------------------------------------------------------------- changed weights under an existing root


@pytest.mark.slow
def test_changed_unet_folder_is_refused_naming_the_part(pipeline, tmp_path, capsys):
    root = tmp_path / "r"
    assert main(argv(root, [erased(pipeline)])) == 0
    before = snapshot(root)
    change_unet(pipeline)
    capsys.readouterr()
    assert main(argv(root, [erased(pipeline)])) == 2
    error = the_error(capsys)
    assert "model 'erased': unet weights changed since its images were generated" in error
    assert "base" not in error.split("(")[0]  # only the part that changed is named
    assert "--replace-changed-models" in error and "new 'name'" in error
    assert snapshot(root) == before


@pytest.mark.slow
def test_replace_changed_models_renders_new_images_and_retires_the_old_shards_after(
    tiny_pipeline_dir, pipeline, tmp_path, capsys
):
    root = tmp_path / "r"
    models = [str(tiny_pipeline_dir), erased(pipeline)]  # the original's weights do not change: its images stay
    assert main(argv(root, models)) == 0
    old = images(root)
    unet = unet_file(pipeline)
    good = unet.read_bytes()
    unet.write_bytes(b"not safetensors")  # the replacement cannot render: nothing of the old may go
    assert main(argv(root, models, "--replace-changed-models")) != 0
    assert images(root) == old and validate_root(root) == []
    unet.write_bytes(good)
    change_unet(pipeline)
    assert main(argv(root, models, "--replace-changed-models")) == 0
    new = images(root)
    assert set(new) == set(old) and validate_root(root) == []
    for key in old:
        assert (new[key] != old[key]) == key.startswith("erased_"), key
    manifest = json.loads((root / "dataigm.json").read_text())
    sidecars = [json.loads(p.read_text()) for p in (root / "meta" / "church").rglob("*.json")]
    retired = [s["shard"] for s in sidecars if s.get("revision")]
    assert len(retired) == 2 and not any((root / shard).exists() for shard in retired)
    assert set(retired).isdisjoint(manifest["shards"]) and len(manifest["shards"]) == 4
    assert [r["status"] for r in manifest["revisions"]] == ["done"]
    capsys.readouterr()
    assert main(argv(root, models)) == 0  # the new weights are the recorded ones: nothing to do
    assert images(root) == new and "0 shard(s) written" in capsys.readouterr().out
    change_unet(pipeline, -0.25)  # changed again: the replacement's images are the ones replaced now
    assert main(argv(root, models)) == 2 and "model 'erased': unet weights changed" in the_error(capsys)
    assert main(argv(root, models, "--replace-changed-models")) == 0
    third = images(root)
    assert set(third) == set(old) and validate_root(root) == []
    assert all((third[key] != new[key]) == key.startswith("erased_") for key in old)


@pytest.mark.slow
def test_base_seeds_are_different_work_in_one_root(tiny_pipeline_dir, tmp_path):
    root = tmp_path / "r"
    assert main(argv(root, [str(tiny_pipeline_dir)], "--base-seed", "0")) == 0
    first = images(root)
    assert main(argv(root, [str(tiny_pipeline_dir)], "--base-seed", "1")) == 0
    both = images(root)
    assert len(first) == 2 and len(both) == 4 and validate_root(root) == []
    second = {k: v for k, v in both.items() if k not in first}
    assert len(second) == 2 and not set(first.values()) & set(second.values())
    seeds = {s.key: s.record["seed"] for s in iter_samples(root)}
    assert len(set(seeds.values())) == 4
