import pytest
from helpers.data import make_sample

from dataigm.schema import (
    FIELD_NAMES,
    SCHEMA_VERSION,
    SCHEMA_VERSIONS,
    SchemaError,
    check_key,
    fields_of,
    make_key,
    normalize_record,
    validate_record,
)


def _valid_record() -> dict:
    return normalize_record(make_sample("church", "train", "real", 1).record | {"sha256": "0" * 64})


def test_valid_record_passes_and_has_every_field():
    record = _valid_record()
    validate_record(record, cls=1, concepts={"church": "local/concrete/entity"})
    assert list(record) == list(FIELD_NAMES)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label": "maybe"}, "'label' = 'maybe'; valid values: pair, target"),
        ({"source": "web"}, "'source' = 'web'; valid values: real, laion, generated"),
        ({"height": "12"}, "'height' = '12' should be int"),
        ({"concept": None}, "'concept' must not be null"),
        ({"prompt_kind": "forgot"}, "valid values: forget, remove, replace"),
        ({"sha256": "abc"}, "not a lower-case hex sha256"),
        ({"category": "local/abstract/status"}, "but concept 'church' is 'local/concrete/entity'"),
        ({"concept": "nudity"}, "known concepts: church"),
        ({"source": "generated", "origin": None}, "Generated sample needs field(s)"),
    ],
)
def test_bad_field_is_named(change, message):
    record = _valid_record() | change
    with pytest.raises(SchemaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_record(record, cls=1, concepts={"church": "local/concrete/entity"})


def test_missing_and_unknown_fields_are_named():
    record = _valid_record()
    del record["seed"]
    with pytest.raises(SchemaError, match=r"missing field\(s\) \['seed'\]"):
        validate_record(record)
    with pytest.raises(SchemaError, match="Unknown field"):
        normalize_record({"concept": "church", "colour": "red"})


def test_cls_must_agree_with_label():
    with pytest.raises(SchemaError, match="disagrees with label 'target'"):
        validate_record(_valid_record(), cls=0)


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        # a part whose characters were replaced carries the first 8 hex digits of its sha256 (names stay apart)
        (("real", "img.001.png"), "real_img-001-png-2d6f940d"),
        (("gen", "church-forget-003", 7), "gen_church-forget-003_7"),
        (("a b", "ü"), "a-b-c8687a08_607474ca"),
    ],
)
def test_make_key_is_dot_free(parts, key):
    assert make_key(*parts) == key
    assert "." not in key


@pytest.mark.parametrize("key", ["a.b", "_hidden", "", "sp ace"])
def test_check_key_refuses(key):
    with pytest.raises(SchemaError, match="no dots"):
        check_key(key)


# ---------------------------------------------------------------- schema versions


def _as_schema(root, version: str):
    """Rewrite a root as schema ``version`` wrote it: records without the later fields, ``version`` everywhere.

    The tars are rebuilt member by member (same order and headers), then sidecars, manifest and README follow.
    """
    import io
    import json
    import tarfile

    from dataigm.dataset_readme import write_dataset_readme
    from dataigm.files import atomic_write_json, sha256_bytes
    from dataigm.layout import ShardId, shard_files
    from dataigm.manifest import read_manifest, update_manifest

    for path in shard_files(root):
        buffer = io.BytesIO()
        with tarfile.open(path) as src, tarfile.open(fileobj=buffer, mode="w", format=src.format) as dst:
            for member in src:
                data = src.extractfile(member).read()
                if member.name.endswith(".json"):
                    kept = {f.name for f in fields_of(version)}
                    record = {k: v for k, v in json.loads(data).items() if k in kept}
                    data = json.dumps(record | {"schema_version": version}, separators=(",", ":")).encode()
                    member.size = len(data)
                dst.addfile(member, io.BytesIO(data))
        path.write_bytes(buffer.getvalue())
        shard = ShardId.parse(path.relative_to(root).as_posix())
        sidecar_path = root / shard.sidecar_relpath
        sidecar = json.loads(sidecar_path.read_text()) | {
            "size": path.stat().st_size,
            "sha256": sha256_bytes(path.read_bytes()),
        }
        atomic_write_json(sidecar_path, sidecar)
        update_manifest(
            root, lambda m, r=shard.relpath, s=sidecar: m["shards"][r].update(size=s["size"], sha256=s["sha256"])
        )
    update_manifest(root, lambda m: m.update(schema_version=version))
    assert read_manifest(root)["schema_version"] == version
    write_dataset_readme(root)
    return root


def test_each_version_adds_its_fields():
    assert SCHEMA_VERSION == "3" and SCHEMA_VERSIONS == ("1", "2", "3")
    assert {"model", "label_source", "previous_label"} <= set(FIELD_NAMES)
    assert not {"model", "label_source", "previous_label"} & {f.name for f in fields_of("1")}
    assert {f.name for f in fields_of("3")} - {f.name for f in fields_of("2")} == {"previous_label"}
    record = _valid_record() | {"model": "ESD_x", "label_source": "folder"}
    validate_record(record, cls=1)
    with pytest.raises(SchemaError, match="'label_source' = 'guess'; valid values: prompt, generator, folder"):
        validate_record(record | {"label_source": "guess"})
    with pytest.raises(SchemaError, match="this dataigm reads versions 1, 2, 3"):
        validate_record(record | {"schema_version": "9"})


def test_only_a_label_a_person_checked_has_a_previous_label():
    record = _valid_record() | {"label_source": "person", "previous_label": "pair"}
    validate_record(record, cls=1)
    with pytest.raises(SchemaError, match="'previous_label' = 'maybe'; valid values: pair, target"):
        validate_record(record | {"previous_label": "maybe"})
    with pytest.raises(SchemaError, match="'previous_label' = 'pair' with label_source 'prompt'"):
        validate_record(record | {"label_source": "prompt"})


@pytest.mark.parametrize(("version", "later"), [("1", ["model"]), ("2", ["previous_label"])])
def test_an_older_record_validates_against_its_own_fields_and_is_never_written(version, later):
    kept = {f.name for f in fields_of(version)}
    old = {k: v for k, v in _valid_record().items() if k in kept} | {"schema_version": version}
    validate_record(old, cls=1)
    with pytest.raises(SchemaError, match=rf"Unknown field\(s\) \[{later[0]!r}\]"):
        validate_record(old | {later[0]: None})
    with pytest.raises(SchemaError, match="this dataigm writes '3'"):
        normalize_record(old)


@pytest.mark.parametrize(("version", "absent"), [("1", "model"), ("2", "previous_label")])
def test_a_root_written_by_an_older_schema_still_loads_and_validates(tmp_path, version, absent):
    import datasets
    from helpers.data import write_test_root

    from dataigm import iter_samples
    from dataigm.features import sample_features
    from dataigm.validate import validate_root

    root = _as_schema(
        write_test_root(tmp_path / "old", {("church", "train", "real"): [3], ("church", "test", "real"): [2]}),
        version,
    )
    assert validate_root(root) == []
    records = [s.record for s in iter_samples(root)]
    assert len(records) == 5 and all(absent not in r and r["schema_version"] == version for r in records)
    # the README declares exactly the keys the old records hold, so datasets reads them (streaming too)
    assert absent not in sample_features(["church"], ("a", "b"), schema_version=version)["json"]
    datasets.disable_progress_bars()
    loaded = datasets.load_dataset(str(root), "church", split="train", cache_dir=str(tmp_path / "hf"))
    assert len(loaded) == 3 and absent not in loaded[0]["json"]
    assert set(loaded[0]["json"]) == {f.name for f in fields_of(version)}
    streamed = next(iter(datasets.load_dataset(str(root), "church", split="test", streaming=True)))
    assert streamed["json"]["schema_version"] == version


def test_ingested_records_say_their_label_came_from_the_folder(image_folder, tmp_path):
    from dataigm import iter_samples
    from dataigm.cli import main

    root = tmp_path / "root"
    assert main(["ingest", str(image_folder), "--out", str(root), "--concept", "church", "--split", "train"]) == 0
    records = [s.record for s in iter_samples(root)]
    assert records and all(r["schema_version"] == SCHEMA_VERSION for r in records)
    assert {(r["model"], r["label_source"], r["previous_label"]) for r in records} == {(None, "folder", None)}
