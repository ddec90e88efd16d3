"""Trust in the data layer: the paper's folder names, no silent duplicates or empty roots, unfinished jobs found,
nothing left behind by a refused run, one-line errors, reproducible sidecars."""

import hashlib
import json

import pytest
from helpers.data import image_bytes

from dataigm import iter_samples, load_registry, read_manifest
from dataigm.cli import main
from dataigm.manifest import open_root, reserve_shards
from dataigm.schema import make_key
from dataigm.sources.folder import ingest_folder, resolve_task
from dataigm.validate import validate_root


def _write(folder, files):
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _tree(path):
    """Every file under ``path`` with its bytes (lock files aside), to show that a refused run changed nothing."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"dataigm {command}: error: ")
    return lines[0]


def _truncated_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.frombytes("RGB", (64, 64), bytes(i * 7 % 251 for i in range(64 * 64 * 3))).save(buffer, format="PNG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]  # cut inside the pixel data


# ---------------------------------------------------------------- 8: the paper's folder names


@pytest.mark.parametrize(
    ("folder", "concept"),
    [
        ("Object_Church", "church"),
        ("object_church", "church"),
        ("OBJECT_CHURCH", "church"),
        ("Church", "church"),
        ("Object_Parachute", "parachute"),
        ("Style_VanGogh", "van_gogh"),
        ("style_vangogh", "van_gogh"),
        ("VanGogh", "van_gogh"),
        ("Van_Gogh", "van_gogh"),
        ("Nudity", "nudity"),
        ("NUDITY", "nudity"),
        ("Style_Van_Gogh", "van_gogh"),
    ],
)
def test_task_folders_of_the_paper_resolve(folder, concept):
    assert resolve_task(folder, load_registry()).id == concept


def test_unknown_task_folder_lists_the_concepts():
    with pytest.raises(ValueError, match="Task folder 'Object_Airplane' matches no concept; known concepts: .*church"):
        resolve_task("Object_Airplane", load_registry())


def test_ingest_of_the_paper_training_demo_layout(tmp_path, capsys):
    # The layout and file names of the IGMU repository's dataset/Training_images_demo (one file of each kind).
    jpeg = image_bytes((5, 6, 7), fmt="JPEG")
    files = {
        "Nudity/train/nude/SD-GEN_0_6_32.png": image_bytes((1, 0, 0)),
        "Nudity/train/nude/REAL_prefix_GantMan_9A8AEBB8-90A3-4C45-8FB9-EBC9A2E44270.jpg.jpeg": jpeg,
        "Nudity/test/nude/SD-GEN_0_25_19.png": image_bytes((2, 0, 0)),
        "Nudity/test/safe/SD-GEN_0_25_19.png": image_bytes((3, 0, 0)),  # same file name in both classes
        "Nudity/test/safe/LAION_nude_two_277.png": image_bytes((4, 0, 0)),
        "Object_Church/train/church/LAION_2b_en_2576643.png": image_bytes((5, 0, 0)),
        "Object_Church/test/other/REAL_ILSVRC2012_val_00014425.JPEG": jpeg,
        "Object_Parachute/train/parachute/SD-GEN_1_30_37.png": image_bytes((6, 0, 0)),
        "Object_Parachute/test/other/LAION_2b_en_265817.png": image_bytes((7, 0, 0)),
        "Style_VanGogh/train/vangogh/REAL_starry.jpg": jpeg,
        "Style_VanGogh/test/non_vangogh/SD-GEN_4_18_11.png": image_bytes((8, 0, 0)),
    }
    folder = tmp_path / "Training_images_demo"
    _write(folder, files)
    root = tmp_path / "root"
    assert main(["ingest", str(folder), "--out", str(root), "--progress", "false"]) == 0
    assert "11 samples" in capsys.readouterr().out
    got = {s.record["origin"]: s for s in iter_samples(root, checksum=True)}
    assert {o: tuple(s.record[f] for f in ("concept", "split", "source", "label")) for o, s in got.items()} == {
        "Nudity/train/nude/SD-GEN_0_6_32.png": ("nudity", "train", "generated", "target"),
        "Nudity/train/nude/REAL_prefix_GantMan_9A8AEBB8-90A3-4C45-8FB9-EBC9A2E44270.jpg.jpeg": (
            "nudity",
            "train",
            "real",
            "target",
        ),
        "Nudity/test/nude/SD-GEN_0_25_19.png": ("nudity", "test", "generated", "target"),
        "Nudity/test/safe/SD-GEN_0_25_19.png": ("nudity", "test", "generated", "pair"),
        "Nudity/test/safe/LAION_nude_two_277.png": ("nudity", "test", "laion", "pair"),
        "Object_Church/train/church/LAION_2b_en_2576643.png": ("church", "train", "laion", "target"),
        "Object_Church/test/other/REAL_ILSVRC2012_val_00014425.JPEG": ("church", "test", "real", "pair"),
        "Object_Parachute/train/parachute/SD-GEN_1_30_37.png": ("parachute", "train", "generated", "target"),
        "Object_Parachute/test/other/LAION_2b_en_265817.png": ("parachute", "test", "laion", "pair"),
        "Style_VanGogh/train/vangogh/REAL_starry.jpg": ("van_gogh", "train", "real", "target"),
        "Style_VanGogh/test/non_vangogh/SD-GEN_4_18_11.png": ("van_gogh", "test", "generated", "pair"),
    }
    for origin, sample in got.items():
        assert sample.image == (folder / origin).read_bytes()
    assert validate_root(root) == []


def test_benchmarking_layout_is_pointed_to_evaluate(tmp_path, capsys):
    # dataset/Benchmarking_images_demo holds images of models to evaluate, not labelled training images
    _write(tmp_path / "bench", {f"Church/forgot/ESD/0_0_{i}.png": image_bytes((i, 0, 0)) for i in range(2)})
    root = tmp_path / "root"
    assert main(["ingest", str(tmp_path / "bench"), "--out", str(root)]) == 2
    line = _one_error_line(capsys.readouterr().err, "ingest")
    assert "dataigm evaluate --paper-layout" in line
    assert not root.exists()


# ---------------------------------------------------------------- 10: no silent duplication


def _five_images(tmp_path, name="five"):
    folder = tmp_path / name
    _write(folder, {f"church/{i}.png": image_bytes((i * 30, 1, 1)) for i in range(5)})
    return folder


@pytest.mark.parametrize("second", ["3", "1"])  # 3: as many shards as with 2 (2+2+1 vs 3+2); 1: more shards
def test_rerun_with_another_shard_size_is_refused(tmp_path, capsys, second):
    folder = _five_images(tmp_path)
    root = tmp_path / "root"
    args = ["ingest", str(folder), "--out", str(root), "--concept", "church", "--progress", "false"]
    assert main([*args, "--samples-per-shard", "2"]) == 0
    before = _tree(root)
    capsys.readouterr()
    assert main([*args, "--samples-per-shard", second]) == 2
    line = _one_error_line(capsys.readouterr().err, "ingest")
    assert f"--samples-per-shard was 2, now {second}" in line and "--samples-per-shard 2" in line
    assert _tree(root) == before
    assert len(list(iter_samples(root))) == 5 and validate_root(root) == []
    assert main([*args, "--samples-per-shard", "2"]) == 0  # the same command again: nothing new
    assert "0 samples in 0 new shard(s), 3 shard(s) already done" in capsys.readouterr().out
    assert len(list(iter_samples(root))) == 5


def test_a_job_of_an_earlier_version_is_finished_not_duplicated(tmp_path):
    # Earlier versions hashed samples_per_shard into the job id: a root they left unfinished keeps its id.
    from dataigm.ingest import _job_id
    from dataigm.sources.folder import plan_folder

    folder = _five_images(tmp_path)
    root = tmp_path / "root"
    ingest_folder(folder, root, concept="church", samples_per_shard=2, progress=False)
    items, _ = plan_folder(folder, concept="church")
    legacy = _job_id(items, {"spp": 2, "resize": None, "format": None, "license": None})
    manifest = read_manifest(root)
    (job,) = manifest["jobs"]
    manifest["jobs"] = {legacy: {k: v for k, v in manifest["jobs"][job].items() if k != "plan"}}
    del manifest["shards"]["data/church/train/real-00002.tar"]
    (root / "dataigm.json").write_text(json.dumps(manifest))
    (root / "data/church/train/real-00002.tar").unlink()
    (root / "meta/church/train/real-00002.json").unlink()
    report = ingest_folder(folder, root, concept="church", samples_per_shard=2, progress=False)
    assert (report.shards_written, report.shards_skipped) == (1, 2)
    assert list(read_manifest(root)["jobs"]) == [legacy]
    assert len(list(iter_samples(root))) == 5 and validate_root(root) == []


def test_reserve_shards_names_what_changed(tmp_path):
    root = tmp_path / "r"
    open_root(root)
    plan = {"samples_per_shard": 2}
    assert reserve_shards(root, "job-a", "church/train/real", 3, "ingest", plan=plan) == 0
    assert reserve_shards(root, "job-a", "church/train/real", 3, "ingest", plan=plan) == 0
    with pytest.raises(ValueError) as err:
        reserve_shards(root, "job-a", "church/train/real", 3, "ingest", plan={"samples_per_shard": 4})
    message = str(err.value)
    assert "job-a" in message and "--samples-per-shard was 2, now 4" in message
    assert "run it again with --samples-per-shard 2" in message and "another --out" in message


def test_make_key_is_unique_when_sanitising_changes_a_part():
    ids = ["x/1", "x 1", "x:1", "x.1", "x-1", "x_1"]
    keys = [make_key("esd", prompt_id, "0000") for prompt_id in ids]
    assert len(set(keys)) == len(ids)
    for prompt_id, key in zip(ids[:4], keys[:4], strict=True):  # changed parts carry a hash of the original
        assert key == f"esd_x-1-{hashlib.sha256(prompt_id.encode()).hexdigest()[:8]}_0000"
    assert keys[4:] == ["esd_x-1_0000", "esd_x_1_0000"]


def test_make_key_of_clean_parts_is_unchanged():
    assert make_key("real", "c0", "5d5a05fc5d") == "real_c0_5d5a05fc5d"
    assert make_key("generated", "church-forget-exterior-000", "0003") == "generated_church-forget-exterior-000_0003"
    assert make_key("ORG", "van_gogh-remove-000", "0000") == "ORG_van_gogh-remove-000_0000"
    assert make_key("real", "00012") == "real_00012"


def test_make_key_stripped_edges_and_empty_parts_stay_distinct():
    keys = {make_key(*parts) for parts in [("a",), ("-a",), ("_a",), ("a-",), ("",), ("x",), ("a", "")]}
    assert len(keys) == 7


# ---------------------------------------------------------------- 12: unusable and unfinished roots


def test_all_unreadable_images_are_refused_and_counted_by_reason(tmp_path, capsys):
    folder = tmp_path / "in"
    _write(
        folder,
        {
            "church/a.png": b"not an image",
            "church/b.png": b"",
            "church/c.png": _truncated_png(),
        },
    )
    root = tmp_path / "root"
    assert main(["ingest", str(folder), "--out", str(root), "--concept", "church"]) == 2
    line = _one_error_line(capsys.readouterr().err, "ingest")
    assert "none of the 3 images" in line and str(folder) in line
    assert "2 not a recognised image format" in line and "1 truncated image data" in line
    assert not root.exists()
    existing = tmp_path / "existing"
    ingest_folder(_five_images(tmp_path), existing, concept="church", progress=False)
    before = _tree(existing)
    assert main(["ingest", str(folder), "--out", str(existing), "--concept", "church"]) == 2
    assert _tree(existing) == before


def test_a_shard_of_only_unreadable_images_writes_no_empty_tar(tmp_path):
    import datasets

    folder = tmp_path / "in"
    _write(folder, {"church/a.png": image_bytes((1, 1, 1)), "church/b.png": b"junk", "church/c.png": image_bytes()})
    root = tmp_path / "root"
    report = ingest_folder(folder, root, concept="church", samples_per_shard=1, progress=False)
    assert (report.samples, report.shards_written) == (2, 3)
    assert sorted(p.name for p in (root / "data/church/train").iterdir()) == ["real-00000.tar", "real-00002.tar"]
    empty = json.loads((root / "meta/church/train/real-00001.json").read_text())
    assert empty["count"] == 0 and empty["errors"] == [
        {"file": "church/b.png", "reason": "not a recognised image format"}
    ]
    assert validate_root(root) == []
    ds = datasets.load_dataset(str(root), "church", split="train")
    assert sorted(row["json"]["origin"] for row in ds) == ["church/a.png", "church/c.png"]
    again = ingest_folder(folder, root, concept="church", samples_per_shard=1, progress=False)
    assert (again.shards_written, again.shards_skipped) == (0, 3)


def test_validate_reports_an_unfinished_job(tmp_path, capsys):
    folder = _five_images(tmp_path)
    root = tmp_path / "root"
    args = ["ingest", str(folder), "--out", str(root), "--concept", "church", "--samples-per-shard", "1"]
    assert main([*args, "--progress", "false"]) == 0
    job = next(iter(read_manifest(root)["jobs"]))
    # what a kill leaves before shards 3 and 4 were written: their numbers reserved, no tar, no sidecar, no index entry
    for index in (3, 4):
        (root / f"data/church/train/real-0000{index}.tar").unlink()
        (root / f"meta/church/train/real-0000{index}.json").unlink()
    manifest = read_manifest(root)
    for index in (3, 4):
        del manifest["shards"][f"data/church/train/real-0000{index}.tar"]
    (root / "dataigm.json").write_text(json.dumps(manifest))
    problems = validate_root(root)
    assert len(problems) == 1
    assert job in problems[0] and "unfinished" in problems[0]
    assert "data/church/train/real-00003.tar" in problems[0] and "data/church/train/real-00004.tar" in problems[0]
    assert "re-run the same command to finish it" in problems[0]
    assert main(["validate", str(root)]) == 1
    assert "unfinished" in capsys.readouterr().err
    assert main([*args, "--progress", "false"]) == 0
    assert validate_root(root) == [] and len(list(iter_samples(root))) == 5


def test_validate_reports_an_empty_tar(tmp_path):
    from dataigm import ShardId, write_shard
    from dataigm.manifest import register_concepts

    root = tmp_path / "r"
    open_root(root)
    register_concepts(root, [load_registry().get("church")])
    write_shard(root, ShardId("church", "train", "real", 0), [], job_id="old")
    assert not (root / "data/church/train/real-00000.tar").exists()  # an empty shard is its sidecar only
    assert validate_root(root) == []
    # an empty tar written by an older dataigm: load_dataset fails on a split without data
    (root / "meta/church/train/real-00000.json").unlink()
    import io
    import tarfile

    buffer = io.BytesIO()
    tarfile.open(fileobj=buffer, mode="w").close()
    (root / "data/church/train").mkdir(parents=True)
    (root / "data/church/train/real-00000.tar").write_bytes(buffer.getvalue())
    from dataigm.files import atomic_write_json, sha256_bytes

    sidecar = {"shard": "data/church/train/real-00000.tar", "count": 0, "size": len(buffer.getvalue())}
    sidecar |= {"sha256": sha256_bytes(buffer.getvalue()), "labels": {}, "image_extensions": [], "errors": []}
    atomic_write_json(root / "meta/church/train/real-00000.json", sidecar)
    manifest = read_manifest(root)
    manifest["shards"]["data/church/train/real-00000.tar"] = {k: sidecar[k] for k in ("count", "sha256", "size")}
    manifest["shards"]["data/church/train/real-00000.tar"]["labels"] = {}
    (root / "dataigm.json").write_text(json.dumps(manifest))
    problems = validate_root(root)
    assert problems == ["church/train: its shards hold no samples (load_dataset fails on a split without data)"]


# ---------------------------------------------------------------- 13: a refused run leaves nothing


def test_bad_split_is_refused_before_anything_is_written(tmp_path, capsys, image_folder):
    root = tmp_path / "root"
    args = ["ingest", str(image_folder), "--concept", "church", "--progress", "false"]
    assert main([*args, "--out", str(root), "--split", "../../escape"]) == 2
    line = _one_error_line(capsys.readouterr().err, "ingest")
    assert "'../../escape'" in line and "^[a-z][a-z0-9_]*$" in line
    assert not root.exists() and not (tmp_path / "escape").exists()
    assert main([*args, "--out", str(root)]) == 0
    before = _tree(root)
    assert main([*args, "--out", str(root), "--split", "Test-1"]) == 2
    assert _tree(root) == before


def test_other_dataset_name_or_changed_concept_leave_the_root_unchanged(tmp_path, capsys, image_folder):
    root = tmp_path / "root"
    args = ["ingest", str(image_folder), "--concept", "church", "--out", str(root), "--progress", "false"]
    assert main(args) == 0
    before = _tree(root)
    assert main([*args, "--name", "other"]) == 2
    assert "holds a different dataset" in _one_error_line(capsys.readouterr().err, "ingest")
    # the dataset's snapshot of the concept says other labels than the registry (a user folder cannot redefine
    # a built-in id, so the snapshot is changed instead)
    manifest = read_manifest(root)
    manifest["concepts"]["church"]["pair_class"] = "not_church"
    (root / "dataigm.json").write_text(json.dumps(manifest, indent=2))
    before = _tree(root)
    assert main(args) == 2
    assert "differs from the registry" in _one_error_line(capsys.readouterr().err, "ingest")
    assert _tree(root) == before


def test_empty_input_folder_is_refused(tmp_path, capsys):
    (tmp_path / "in" / "church").mkdir(parents=True)
    (tmp_path / "in" / "church" / "notes.txt").write_text("no images here")
    root = tmp_path / "root"
    assert main(["ingest", str(tmp_path / "in"), "--out", str(root), "--concept", "church"]) == 2
    assert "no image files" in _one_error_line(capsys.readouterr().err, "ingest")
    assert not root.exists()


# ---------------------------------------------------------------- 14: one line instead of a traceback


def test_concept_yaml_syntax_error_is_one_line(tmp_path, capsys):
    folder = tmp_path / "concepts"
    folder.mkdir()
    (folder / "bad.yaml").write_text("id: lighthouse\nname: [unclosed\n")
    assert main(["concepts", "--concepts-dir", str(folder)]) == 2
    line = _one_error_line(capsys.readouterr().err, "concepts")
    assert "bad.yaml" in line and "line 2" in line and "not valid YAML" in line


@pytest.mark.parametrize("where", ["file", "below_a_file"])
def test_out_that_is_a_file_is_one_line(tmp_path, capsys, image_folder, where):
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = afile if where == "file" else afile / "root"
    assert main(["ingest", str(image_folder), "--out", str(out), "--concept", "church"]) == 2
    line = _one_error_line(capsys.readouterr().err, "ingest")
    assert str(out) in line and "is a file" in line
    assert afile.read_text() == "x"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["prompts", "build", "--concept", "church", "--out", "{tmp}"], "is a folder; give a file path"),
        (["prompts", "build", "--concept", "church", "--out", "{tmp}/afile/p.jsonl"], "afile' is a file"),
        (["prompts", "import", "{tmp}/forgot.json", "--format", "igmu", "--out", "{tmp}/afile"], "is a file"),
    ],
)
def test_prompt_outputs_that_cannot_be_written_are_one_line(tmp_path, capsys, argv, words):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "forgot.json").write_text('{"nudity": {"women": ["a photo"]}}')
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    assert words in _one_error_line(capsys.readouterr().err, f"prompts {argv[1]}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "forgot.json"]


def test_push_with_a_bad_repo_id_says_so_before_anything_else(small_root, capsys):
    before = _tree(small_root)
    assert main(["push", "dataset", str(small_root), "--repo", "dataigm"]) == 2
    assert "Repository 'dataigm' must be ORG/NAME" in _one_error_line(capsys.readouterr().err, "push dataset")
    assert _tree(small_root) == before


def test_read_only_output_path_is_one_line():
    # A read-only mount cannot be made in a test; the exception it raises can.
    import errno

    from dataigm.cli.common import user_error

    err = OSError(errno.EROFS, "Read-only file system", "/mnt/ro/root")
    assert user_error(err) == "cannot write /mnt/ro/root: Read-only file system"
    assert user_error(PermissionError(errno.EACCES, "Permission denied", "/srv/x")) == "/srv/x: Permission denied"
    assert user_error(KeyError("a bug")) is None


def test_network_errors_of_the_hub_client_are_one_line(monkeypatch):
    from dataigm.cli.common import user_error

    httpx2 = pytest.importorskip("httpx2")  # the HTTP client of huggingface_hub 2.x
    monkeypatch.delenv("HF_HUB_OFFLINE")
    err = httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")
    assert user_error(err) == "could not reach the Hub (offline?): [Errno -3] Temporary failure in name resolution"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert user_error(ConnectionError("Cannot reach https://huggingface.co")).startswith(
        "could not reach the Hub (offline? HF_HUB_OFFLINE=1 is set): Cannot reach"
    )


@pytest.mark.parametrize("name", ["./no_such_dataset", "no-such-org/no-such-dataset"])
def test_missing_hf_dataset_is_one_line(tmp_path, capsys, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "root"
    assert main(["ingest", "--hf-dataset", name, "--concept", "nudity", "--out", str(root)]) == 2
    line = _one_error_line(capsys.readouterr().err, "ingest")
    assert repr(name) in line
    if name.startswith("./"):
        assert "no such local folder" in line
    else:
        assert "could not reach the Hub (offline?" in line and "HF_HUB_OFFLINE=1" in line
    assert not root.exists()


def test_push_while_offline_is_one_line(small_root, capsys):
    assert main(["push", "dataset", str(small_root), "--repo", "someone/dataigm"]) == 2
    line = _one_error_line(capsys.readouterr().err, "push dataset")
    assert "could not reach the Hub (offline?" in line and "HF_HUB_OFFLINE=1" in line


def test_a_bug_still_shows_its_traceback(monkeypatch):
    from dataigm.cli import data

    def broken(cfg):
        raise KeyError("a bug")

    monkeypatch.setattr(data.info, "run", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["info", "somewhere"])


# ---------------------------------------------------------------- 15: reproducible sidecars


def test_identical_ingests_write_identical_sidecars(image_folder, tmp_path):
    (image_folder / "other" / "text.png").write_text("a text file named like an image")
    sidecars = []
    for name in ("a", "b"):
        root = tmp_path / name
        ingest_folder(image_folder, root, concept="church", progress=False)
        sidecars.append({p.relative_to(root).as_posix(): p.read_bytes() for p in (root / "meta").rglob("*.json")})
    assert sidecars[0] == sidecars[1]
    (text,) = sidecars[0].values()
    assert b"0x" not in text
    assert json.loads(text)["errors"] == [
        {"file": "other/broken.png", "reason": "not a recognised image format"},
        {"file": "other/text.png", "reason": "not a recognised image format"},
    ]
