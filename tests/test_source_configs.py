"""Each ingest source's options are stated once, in its config class (``dataigm.sources.config``): the flags
``dataigm ingest`` takes with that source, the keys its recipe step accepts and the keys its job records are the
class's fields, read here from each layer's real behaviour (the parser, a recipe's refusal, a written manifest)."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml
from helpers.data import image_bytes
from helpers.web import ALLOW_LOOPBACK, ImageServer

from cards.dataset_card import render_body
from dataigm import read_manifest
from dataigm.cli import build_parser, main
from dataigm.cli.ingest import source_of
from dataigm.recipe import load_recipe, source_config
from dataigm.sources.config import SAMPLES_PER_SHARD, SOURCE_CONFIGS

# A command-line value for every source option and the value its config gets (``--concept church`` is always given).
CLI_VALUES = {
    "split": (["--split", "test"], "test"),
    "samples_per_shard": (["--samples-per-shard", "7"], 7),
    "resize": (["--resize", "8"], 8),
    "image_format": (["--image-format", "png"], "png"),
    "license": (["--license", "cc0-1.0"], "cc0-1.0"),
    "max_pixels": (["--max-pixels", "1000"], 1000),
    "source": (["--source", "generated"], "generated"),
    "label": (["--label", "target"], "target"),
    "class_map": (["--class-map", "a=target"], "a=target"),
    "where": (["--where", "x > 1"], "x > 1"),
    "max_per_class": (["--max-per-class", "2"], 2),
    "hf_config": (["--hf-config", "c"], "c"),
    "hf_split": (["--hf-split", "validation"], "validation"),
    "image_column": (["--image-column", "img"], "img"),
    "label_column": (["--label-column", "lab"], "lab"),
    "pair_words": (["--pair-words", "cat"], "cat"),
    "url_column": (["--url-column", "u"], "u"),
    "caption_column": (["--caption-column", "c"], "c"),
    "processes": (["--processes", "3"], 3),
    "threads": (["--threads", "3"], 3),
    "timeout": (["--timeout", "3"], 3),
    "retries": (["--retries", "3"], 3),
    "allow_private_addresses": (["--allow-private-addresses"], True),
    "img2dataset": (["--img2dataset", "i2d"], "i2d"),
}
INPUTS = {"folder": ["images"], "hf_dataset": ["--hf-dataset", "org/data"], "urls": ["--urls", "urls.parquet"]}
# What only a recipe step takes (so many images per split and class), and a key's earlier name.
RECIPE_ONLY = {"folder": {"counts"}, "hf_dataset": {"counts", "dataset"}, "urls": set()}
# What a job records besides the fields: its kind, and what planning found.
RECORDED_RESULTS = {"folder": {"planned", "ignored_files"}, "hf_dataset": set(), "urls": {"selection"}}


def _fields(kind: str) -> set[str]:
    return {f.name for f in dataclasses.fields(SOURCE_CONFIGS[kind])}


def test_the_value_table_names_every_source_option():
    every = set().union(*(_fields(kind) for kind in SOURCE_CONFIGS))
    assert every == set(CLI_VALUES) | set(INPUTS) | {"concept"}


def _cli_options(kind: str) -> set[str]:
    """The source options ``dataigm ingest`` takes with ``kind``'s input: each flag given alone, kept when the
    config built from the command line carries its value, refused otherwise (naming the flag)."""
    parser = build_parser()
    taken = {"concept", kind}
    for name, (args, value) in CLI_VALUES.items():
        cfg = parser.parse_args(["ingest", *INPUTS[kind], "--out", "root", "--concept", "church", *args])
        try:
            source = source_of(cfg["ingest"])
        except ValueError as err:
            assert args[0] in str(err), (name, str(err))
            continue
        assert getattr(source, name) == value and source.concept == "church" and getattr(source, kind)
        taken.add(name)
    return taken


def _recipe_keys(kind: str, tmp_path: Path) -> set[str]:
    """The keys a recipe's ``kind`` step accepts, as its refusal of an unknown key lists them (one line)."""
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "urls.parquet").write_bytes(b"")
    path = tmp_path / "recipe.yaml"
    step = {"kind": kind, kind: INPUTS[kind][-1], "colour": "red"}
    path.write_text(yaml.safe_dump({"out": "out", "concepts": {"church": [step]}}))
    with pytest.raises(ValueError, match="unknown key 'colour'") as refused:
        load_recipe(path)
    (message,) = str(refused.value).splitlines()
    return set(message.split("valid keys: ")[1].split(", "))


def _local_dataset(folder: Path) -> Path:
    import datasets

    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": image_bytes((i * 40, 9, 9)), "path": None} for i in range(4)], "label": [1, 0, 1, 0]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    )
    (folder / "data").mkdir(parents=True)
    ds.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


def _recorded_keys(kind: str, tmp_path: Path, image_folder: Path) -> set[str]:
    """The keys of the configuration a real ``dataigm ingest`` of ``kind`` records in the manifest."""
    root = tmp_path / "root"
    common = ["--out", str(root), "--concept", "church", "--no-progress"]
    if kind == "folder":
        assert main(["ingest", str(image_folder), *common]) == 0
    elif kind == "hf_dataset":
        assert main(["ingest", "--hf-dataset", str(_local_dataset(tmp_path / "ds")), *common]) == 0
    else:
        with ImageServer() as server:
            server.images["a.png"] = image_bytes((9, 9, 200))
            server.images["b.png"] = image_bytes((200, 9, 9))
            urls = tmp_path / "urls.parquet"
            rows = {"url": [server.url("img", "a.png"), server.url("img", "b.png")], "caption": ["a church", "a cat"]}
            import pandas as pd

            pd.DataFrame(rows).to_parquet(urls)
            args = [
                "ingest",
                "--urls",
                str(urls),
                *common,
                "--pair-words",
                "cat",
                "--processes",
                "1",
                "--threads",
                "2",
            ]
            assert main([*args, *ALLOW_LOOPBACK]) == 0
    (job,) = read_manifest(root)["jobs"].values()
    assert job["config"]["ingest"] == kind
    # the dataset card reads the recorded fields: it names the source by its file or folder name
    body = render_body(root)
    assert {"folder": "| `images` |", "hf_dataset": "local dataset `ds`", "urls": "URL list `urls.parquet`"}[
        kind
    ] in body
    return set(job["config"]) - {"ingest"} - RECORDED_RESULTS[kind]


@pytest.mark.parametrize("kind", ["folder", "hf_dataset", pytest.param("urls", marks=pytest.mark.slow)])
def test_a_source_has_one_set_of_options_in_the_cli_the_recipe_and_the_recorded_config(kind, tmp_path, image_folder):
    fields = _fields(kind)
    assert _cli_options(kind) == fields
    # a recipe gives the concept by the key its steps are listed under
    assert _recipe_keys(kind, tmp_path) - RECIPE_ONLY[kind] == fields - {"concept"}
    assert _recorded_keys(kind, tmp_path, image_folder) == fields


def test_a_recipe_folder_step_records_the_fields_too(tmp_path, image_folder):
    path = tmp_path / "recipe.yaml"
    step = {"kind": "folder", "folder": str(image_folder), "samples_per_shard": 2, "class_map": {"other": "pair"}}
    path.write_text(yaml.safe_dump({"out": "out", "concepts": {"church": [step]}}))
    assert main(["build", str(path)]) == 0
    configs = [j["config"] for j in read_manifest(tmp_path / "out")["jobs"].values() if j.get("config")]
    (config,) = [c for c in configs if c.get("ingest") == "folder"]
    assert set(config) - {"ingest", "planned", "ignored_files", "recipe_step"} == _fields("folder")
    assert (config["samples_per_shard"], config["class_map"], config["folder"]) == (2, {"other": "pair"}, "images")
    assert config["split"] == "train" and config["planned"] == {"church/train/real": {"target": 3, "pair": 3}}


def test_a_recipe_step_takes_every_field_from_its_key(tmp_path):
    (tmp_path / "images").mkdir()
    values = {name: value for name, (_, value) in CLI_VALUES.items()}
    values |= {"pair_words": ["cat", "dog"], "class_map": {"a": "target"}}
    for kind in SOURCE_CONFIGS:
        options = {k: values[k] for k in _fields(kind) - {"concept", kind}}
        (tmp_path / "urls.parquet").write_bytes(b"")
        path = tmp_path / "recipe.yaml"
        step = {"kind": kind, kind: INPUTS[kind][-1], **options}
        path.write_text(yaml.safe_dump({"out": "out", "concepts": {"church": [step]}}))
        (loaded,) = [s for s in load_recipe(path).steps if s.kind == kind]
        source = source_config(loaded)
        assert {k: getattr(source, k) for k in options} == options and source.concept == "church"


def test_a_recipe_step_names_its_concept_by_its_place_and_refuses_a_concept_key(tmp_path):
    (tmp_path / "images").mkdir()
    path = tmp_path / "recipe.yaml"
    step = {"kind": "folder", "folder": "images", "concept": "nudity"}
    path.write_text(yaml.safe_dump({"out": "out", "concepts": {"church": [step]}}))
    with pytest.raises(ValueError, match=r"concepts.church\[0\]: a folder source takes its 'concept' from the recipe"):
        load_recipe(path)


def test_an_hf_dataset_step_keeps_its_earlier_key_dataset(tmp_path):
    path = tmp_path / "recipe.yaml"
    step = {"kind": "hf_dataset", "dataset": "org/data", "hf_split": "validation"}
    path.write_text(yaml.safe_dump({"out": "out", "concepts": {"church": [step]}}))
    (loaded,) = [s for s in load_recipe(path).steps if s.kind == "hf_dataset"]
    assert source_config(loaded).hf_dataset == "org/data" and dict(loaded.options) == {
        "dataset": "org/data",  # as written: the step's id, and so a build's record of it, stays the same
        "hf_split": "validation",
    }


def test_one_default_for_samples_per_shard():
    from dataigm.ingest import ingest
    from dataigm.sources.img2dataset import DownloadOptions

    parser = build_parser()
    cfg = parser.parse_args(["ingest", "images", "--out", "root"])
    assert cfg["ingest"]["samples_per_shard"] == SAMPLES_PER_SHARD
    assert inspect.signature(ingest).parameters["samples_per_shard"].default == SAMPLES_PER_SHARD
    assert DownloadOptions().samples_per_shard == SAMPLES_PER_SHARD
    assert {cls().samples_per_shard for cls in SOURCE_CONFIGS.values()} == {SAMPLES_PER_SHARD}
