"""Dataset card and pushing a dataset root to the Hub (against the fake Hub of tests/helpers/hub.py)."""

import logging
import re

import pytest
from helpers.data import write_test_root
from helpers.hub import FakeHub
from huggingface_hub import DatasetCard

from cards import push_dataset, size_category, write_dataset_card
from dataigm.cli import main
from dataigm.info import count_samples


def _card_counts(root) -> dict:
    text = (root / "README.md").read_text()
    section = text.split("## Counts", 1)[1].split("##", 1)[0]
    rows = re.findall(r"^\| (\w+) \| (\w+) \| (\w+) \| (\w+) \| (\d+) \|$", section, flags=re.M)
    return {tuple(r[:4]): int(r[4]) for r in rows}


def test_card_yaml_parses_and_load_dataset_uses_it(small_root):
    import datasets

    write_dataset_card(small_root, repo_id="org/dataigm-test")
    card = DatasetCard.load(small_root / "README.md")
    assert card.data.license == "other" and card.data.size_categories == ["n<1K"]
    assert {c["config_name"] for c in card.data.configs} == {"default", "church", "nudity"}
    assert 'load_dataset("org/dataigm-test", "church")' in card.text
    ds = datasets.load_dataset(str(small_root), "church", split="train")
    assert ds.features["cls"].names == ["other", "church"]


def test_card_counts_equal_dataigm_info(small_root):
    write_dataset_card(small_root)
    assert _card_counts(small_root) == dict(count_samples(small_root))


def test_content_warning_only_for_flagged_concepts(tmp_path, small_root):
    write_dataset_card(small_root)
    assert "Content warning" in (small_root / "README.md").read_text()  # nudity
    church_only = write_test_root(tmp_path / "c", {("church", "train", "real"): [2]})
    write_dataset_card(church_only)
    assert "Content warning" not in (church_only / "README.md").read_text()


def test_generated_section_is_replaced_and_curated_text_kept(small_root):
    write_dataset_card(small_root)
    path = small_root / "README.md"
    card = DatasetCard.load(path)
    card.text = "Intro written by a person.\n\n" + card.text + "\nOutro written by a person.\n"
    card.save(path)
    write_test_root(small_root, {("church", "validation", "real"): [2]})
    write_dataset_card(small_root)
    text = path.read_text()
    assert text.count("Intro written by a person.") == 1 and text.count("Outro written by a person.") == 1
    assert ("church", "validation", "real", "target") in _card_counts(small_root)

    curated = DatasetCard.load(path)
    curated.text = "# My own card\n\nNo markers: written by hand.\n"
    curated.save(path)
    write_dataset_card(small_root)
    after = DatasetCard.load(path)
    assert after.text.strip() == "# My own card\n\nNo markers: written by hand."
    assert {c["config_name"] for c in after.data.configs} >= {"church", "nudity"}  # YAML still refreshed


def test_card_lists_generation_models_with_checksums(tiny_pipeline_dir, tmp_path):
    import hashlib

    import torch
    from safetensors.torch import save_file

    from generation.config import JobConfig
    from generation.runner import run_job

    save_file({"conv_out.bias": torch.zeros(4)}, tmp_path / "esd.safetensors")
    digest = hashlib.sha256((tmp_path / "esd.safetensors").read_bytes()).hexdigest()[:16]
    models = [
        str(tiny_pipeline_dir),
        {"base": str(tiny_pipeline_dir), "method": "ESD", "name": "esd", "unet": str(tmp_path / "esd.safetensors")},
    ]
    root = tmp_path / "r"
    run_job(
        JobConfig(
            out=str(root),
            models=models,
            concepts=["church"],
            kinds=["forget"],
            max_prompts=2,
            steps=2,
            height=64,
            width=64,
            progress=False,
        )
    )
    write_dataset_card(root)
    text = (root / "README.md").read_text()
    assert f"unet=esd.safetensors@{digest}" in text and "| ESD |" in text and "| ORG |" in text
    assert _card_counts(root) == dict(count_samples(root))


@pytest.mark.parametrize(
    ("n", "category"), [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (250_000, "100K<n<1M"), (10**8, "n>10M")]
)
def test_size_category(n, category):
    assert size_category(n) == category


def _pushable_files(root) -> dict[str, bytes]:
    """The files of ``root`` a push must upload: everything but the lock, temporaries and caches."""
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return {k: v for k, v in files.items() if k != ".dataigm.lock" and not k.endswith(".tmp")}


def test_push_dataset_calls(small_root):
    hub = FakeHub()
    url = push_dataset(
        small_root, "org/dataigm", private=True, revision="v1", commit_message="first", api=hub.client()
    )
    assert url == "https://huggingface.co/datasets/org/dataigm"
    assert hub.names() == ["create_repo", "create_branch", "upload_folder"]
    assert hub.calls[0][1] == {"repo_id": "org/dataigm", "repo_type": "dataset", "private": True, "exist_ok": True}
    upload = hub.calls[2][1]
    assert (upload["repo_id"], upload["repo_type"], upload["revision"], upload["commit_message"]) == (
        "org/dataigm",
        "dataset",
        "v1",
        "first",
    )
    assert upload["folder_path"] == str(small_root) and "**/.*.tmp" in upload["ignore_patterns"]
    assert hub.files("org/dataigm", repo_type="dataset", revision="v1") == _pushable_files(small_root)


def test_push_dataset_uses_upload_large_folder_where_huggingface_hub_has_it(small_root):
    (small_root / ".cache").mkdir()
    (small_root / ".cache" / "upload.json").write_text("{}")  # upload_large_folder's own resume cache
    hub = FakeHub(large_folder=True)
    url = push_dataset(
        small_root, "org/dataigm", private=True, revision="v1", commit_message="first", api=hub.client()
    )
    assert url == "https://huggingface.co/datasets/org/dataigm"
    assert hub.names() == ["create_repo", "create_branch", "upload_large_folder"]
    upload = hub.calls[2][1]
    assert {k: upload[k] for k in ("repo_id", "repo_type", "revision", "private", "folder_path")} == {
        "repo_id": "org/dataigm",
        "repo_type": "dataset",
        "revision": "v1",
        "private": True,
        "folder_path": str(small_root),
    }
    assert {".dataigm.lock", "**/.*.tmp", ".cache/**"} <= set(upload["ignore_patterns"])
    pushed = hub.files("org/dataigm", repo_type="dataset", revision="v1")
    assert pushed == {k: v for k, v in _pushable_files(small_root).items() if not k.startswith(".cache/")}
    assert "README.md" in pushed and any(k.endswith(".tar") for k in pushed)


@pytest.mark.parametrize("large_folder", [False, True], ids=["upload_folder", "upload_large_folder"])
def test_interrupted_push_resumes_with_the_same_upload(small_root, large_folder):
    hub = FakeHub(large_folder=large_folder, fail_uploads=1)
    call = "upload_large_folder" if large_folder else "upload_folder"
    with pytest.raises(ConnectionError):
        push_dataset(small_root, "org/dataigm", api=hub.client())
    readme = (small_root / "README.md").read_bytes()
    push_dataset(small_root, "org/dataigm", api=hub.client())
    uploads = hub.calls_of(call)
    assert len(uploads) == 2 and uploads[0] == uploads[1]  # the same call again: the Hub side skips what it has
    assert (small_root / "README.md").read_bytes() == readme
    assert hub.files("org/dataigm", repo_type="dataset") == _pushable_files(small_root)


@pytest.mark.parametrize("large_folder", [False, True], ids=["upload_folder", "upload_large_folder"])
def test_a_pushed_revision_deletes_the_retired_shards_on_the_hub(small_root, large_folder):
    from dataigm.manifest import read_manifest
    from dataigm.reader import index_shard
    from dataigm.revision import drop_samples, finish_revisions

    hub = FakeHub(large_folder=large_folder)
    push_dataset(small_root, "org/dataigm", api=hub.client())
    shard = sorted(read_manifest(small_root)["shards"])[0]
    keys = {sample.key for sample in index_shard(small_root / shard)}
    drop_samples(small_root, {shard: keys}, reason="test")  # every sample of one shard: it is retired
    finish_revisions(small_root)
    assert not (small_root / shard).exists() and shard in hub.files("org/dataigm", repo_type="dataset")
    push_dataset(small_root, "org/dataigm", api=hub.client())
    assert hub.calls_of("create_commit") == [{"repo_id": "org/dataigm", "deleted": [shard], "revision": None}]
    assert hub.files("org/dataigm", repo_type="dataset") == _pushable_files(small_root)  # nothing stale is served


def test_invalid_root_is_not_pushed(small_root):
    (small_root / "meta/church/test/real-00000.json").unlink()
    hub = FakeHub()
    with pytest.raises(ValueError, match="does not validate"):
        push_dataset(small_root, "org/dataigm", api=hub.client())
    assert hub.calls == []


def test_cli_push_never_shows_the_token(small_root, fake_hub, monkeypatch, capsys, caplog):
    secret = "hf_SECRET_token_value_123"
    monkeypatch.setenv("HF_TOKEN", secret)
    with caplog.at_level(logging.DEBUG):
        assert main(["push", "dataset", str(small_root), "--repo", "org/dataigm"]) == 0
    out = capsys.readouterr()
    assert "pushed" in out.out
    assert fake_hub.names() == ["create_repo", "upload_folder"] and set(fake_hub.tokens) == {None}
    assert secret not in out.out + out.err + caplog.text
    assert secret not in "".join(
        p.read_text(errors="ignore")
        for p in small_root.rglob("*")
        if p.is_file() and p.suffix in (".md", ".json", ".yaml")
    )


def test_card_names_a_hub_source_by_its_id_and_a_local_one_by_its_folder_name(small_root):
    from cards.dataset_card import render_body
    from dataigm.manifest import update_manifest

    def add_jobs(manifest: dict) -> None:
        for job, dataset in (("ingest-hub", "huggan/wikiart"), ("ingest-local", "/somewhere/else/my-folder")):
            config = {"ingest": "hf_dataset", "dataset": dataset, "hf_split": "train", "concept": "church"}
            config |= {"split": "train", "label_column": "artist", "class_names": {"vincent-van-gogh": "target"}}
            manifest["jobs"][job] = {"ranges": {}, "config": config | {"where": "style == 1 | style == 2"}}

    update_manifest(small_root, add_jobs)
    rows = {
        line.split(" | ")[0]: line for line in render_body(small_root).splitlines() if line.startswith("| ingest-")
    }
    assert "| Hub dataset `huggan/wikiart` (default config, train split) |" in rows["| ingest-hub"]
    local = rows["| ingest-local"]
    assert "| local dataset `my-folder` (default config, train split) |" in local and "/somewhere" not in local
    # a where with a pipe stays in its cell; no counts file: dashes
    assert "where `style == 1 \\| style == 2`; column `artist`: vincent-van-gogh=target | - | - | - | - | - |" in local


@pytest.mark.parametrize(
    "text",
    [
        "---\nlicense: other\nconfigs:\n- config_name: a\n---\n\n# Title\n\nBody --- with dashes\n---\n",
        "---\r\nlicense: other\r\n---\r\nBody after CRLF\r\n",
        "  \n---\nx: 1\n---",
        "# No front matter\n\n---\nnot: yaml at the top\n---\n",
    ],
)
def test_the_body_split_from_a_card_is_huggingface_hubs(text):
    from dataigm.dataset_readme import card_body

    assert card_body(text) == DatasetCard(text).text


def test_a_folder_ingest_is_recorded_and_listed_on_the_card_by_its_folder_name(image_folder, tmp_path):
    """Both ways in (the CLI and ``ingest_folder``) record the folder's name, its labelling and the planned
    images; the card lists them without the folder's local path."""
    import json

    from dataigm.sources.folder import ingest_folder

    root = tmp_path / "root"
    assert main(["ingest", str(image_folder), "--out", str(root), "--concept", "church", "--split", "train"]) == 0
    ingest_folder(image_folder, root, concept="church", split="test", source="laion", progress=False)
    configs = [j["config"] for j in json.loads((root / "dataigm.json").read_text())["jobs"].values()]
    # 5 readable images (3 church, 2 other); the broken PNG is planned too and left out when written
    assert [
        (c["ingest"], c["folder"], c["split"], c.get("source"), c["planned"], c["ignored_files"]) for c in configs
    ] == [
        ("folder", "images", "train", None, {"church/train/real": {"target": 3, "pair": 3}}, 1),
        ("folder", "images", "test", "laion", {"church/test/laion": {"target": 3, "pair": 3}}, 1),
    ]
    write_dataset_card(root)
    text = (root / "README.md").read_text()
    section = text.split("## Folder sources", 1)[1].split("\n## ", 1)[0]
    assert "| `images` | concept=church, split=train |" in section
    assert "church/test/laion: 3 pair, 3 target" in section and str(image_folder.parent) not in text
