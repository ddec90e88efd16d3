"""Generation that can be trusted: one job per piece of work, options that do what they say, clean failures.

Issue 11, defects 10, 11, 13 and 14 (generation part), with the tiny real pipeline on the CPU.
"""

import errno
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from dataigm import iter_samples, make_key
from dataigm.cli import main
from dataigm.validate import validate_root
from generation.config import JobConfig
from generation.job import MAX_PLANNED_IMAGES, collect_prompts, job_id
from generation.runner import is_transient, run_job

BASE = ["--steps", "2", "--height", "64", "--width", "64", "--progress", "false"]


def argv(root, models, *extra) -> list[str]:
    models = models if isinstance(models, str) else json.dumps(models)
    return ["generate", "--out", str(root), "--models", models, "--concepts", "[church]", "--kinds", "[forget]"] + [
        "--max-prompts",
        "2",
        *BASE,
        *extra,
    ]


def job(root, models, **changes) -> JobConfig:
    options = dict(concepts=["church"], kinds=["forget"], max_prompts=2, steps=2, height=64, width=64, progress=False)
    return JobConfig(out=str(root), models=models, **(options | changes))


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of a root with its bytes (the lock file aside: it is the lock, not content)."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".dataigm.lock"
    }


def the_error(capsys) -> str:
    """The CLI's error: exactly one line on stderr, no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("dataigm generate: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def existing_root(tiny_pipeline_dir, tmp_path_factory) -> Path:
    """A finished root of 2 church images, to be copied by tests that must leave it unchanged."""
    root = tmp_path_factory.mktemp("existing") / "root"
    assert main(argv(root, [str(tiny_pipeline_dir)])) == 0
    return root


# ---------------------------------------------------------------- 10. one job per piece of work


def test_job_identity_is_the_work_not_how_it_is_cut(tiny_pipeline_dir, tmp_path):
    cfg = job(tmp_path / "r", [str(tiny_pipeline_dir)])
    prompts = collect_prompts(cfg, cfg.registry())
    same = job_id(cfg, prompts)
    for changes in (
        {"samples_per_shard": 3},
        {"batch_size": 1},
        {"device": "cpu"},
        {"num_workers": 2, "worker_index": 1},
        {"retries": 0},
        {"root": tmp_path / "elsewhere"},
    ):
        other = job(**({"root": tmp_path / "r", "models": [str(tiny_pipeline_dir)]} | changes))
        assert job_id(other, prompts) == same, changes
    for changes in (
        {"steps": 3},
        {"guidance": 2.0},
        {"scheduler": "euler"},
        {"base_seed": 1},
        {"images_per_prompt": 2},
        {"height": 128},
        {"negative_prompt": "blurry"},
        {"models": [{"base": str(tiny_pipeline_dir), "method": "ESD"}]},
    ):
        other = job(**({"root": tmp_path / "r", "models": [str(tiny_pipeline_dir)]} | changes))
        assert job_id(other, prompts) != same, changes
    assert job_id(cfg, prompts[:1]) != same  # other prompts, other work


def test_same_work_with_another_shard_size_is_refused_before_rendering(tiny_pipeline_dir, tmp_path, capsys):
    root = tmp_path / "r"
    first = argv(root, [str(tiny_pipeline_dir)], "--max-prompts", "3", "--samples-per-shard", "2")
    assert main(first) == 0
    before = snapshot(root)
    capsys.readouterr()
    again = argv(root, [str(tiny_pipeline_dir)], "--max-prompts", "3", "--samples-per-shard", "3")
    assert main(again) == 2
    error = the_error(capsys)
    assert "--samples-per-shard 2 as before" in error and "new --out" in error
    assert snapshot(root) == before  # nothing rendered, nothing reserved
    assert len(list(iter_samples(root))) == 3 and validate_root(root) == []
    assert main(first) == 0 and snapshot(root) == before  # the original command still resumes (nothing to do)


def test_a_job_recorded_by_the_old_identity_is_found_again(tiny_pipeline_dir, tmp_path, capsys):
    root = tmp_path / "r"
    command = argv(root, [str(tiny_pipeline_dir)], "--samples-per-shard", "1")
    assert main(command) == 0
    manifest = json.loads((root / "dataigm.json").read_text())
    (job,) = manifest["jobs"]  # as the earlier code recorded it: another id, no job_identity
    entry = manifest["jobs"].pop(job)
    del entry["config"]["job_identity"]
    manifest["jobs"]["generate-0123456789abcdef"] = entry
    (root / "dataigm.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    shards = {k: v for k, v in snapshot(root).items() if k.startswith("data/")}
    assert main(command) == 0  # resumed: nothing to do, nothing duplicated, no new job
    assert {k: v for k, v in snapshot(root).items() if k.startswith("data/")} == shards
    assert list(json.loads((root / "dataigm.json").read_text())["jobs"]) == ["generate-0123456789abcdef"]
    assert len(list(iter_samples(root))) == 2 and validate_root(root) == []
    before = snapshot(root)
    capsys.readouterr()
    assert main(argv(root, [str(tiny_pipeline_dir)], "--samples-per-shard", "2")) == 2
    assert "--samples-per-shard 1 as before" in the_error(capsys) and snapshot(root) == before


def test_prompt_ids_that_sanitise_alike_never_share_a_key(tiny_pipeline_dir, tmp_path, capsys):
    ids = ["x/1", "x 1", "x:1"]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"prompt_id": i, "concept": "church", "kind": "forget", "text": f"a church {i}"}) + "\n"
            for i in ids
        )
    )
    root = tmp_path / "r"
    command = ["generate", "--out", str(root), "--models", f"[{tiny_pipeline_dir}]", "--prompt-files", f"[{prompts}]"]
    code = main([*command, "--samples-per-shard", "1", *BASE])
    keys_alike = len({make_key("ORG-tiny", i, "0000") for i in ids}) < len(ids)
    if keys_alike:  # the key function maps them to one key: the plan refuses, naming them, before anything exists
        assert code == 2
        error = the_error(capsys)
        assert all(repr(i) in error for i in ids)
        assert not root.exists()
    else:  # the key function keeps them apart: every image is there once
        assert code == 0
        keys = [s.key for s in iter_samples(root)]
        assert len(keys) == len(set(keys)) == 3 and validate_root(root) == []


def test_changed_weights_behind_written_images_are_refused(tiny_pipeline_dir, tmp_path, capsys):
    from safetensors.torch import save_file

    weights = tmp_path / "w.safetensors"
    save_file({"not_a_unet.weight": torch.zeros(2)}, weights)  # fits no UNet: this model writes nothing
    models = [str(tiny_pipeline_dir), {"base": str(tiny_pipeline_dir), "name": "edited", "unet": str(weights)}]
    root = tmp_path / "r"
    assert main(argv(root, models, "--max-prompts", "1")) == 3
    save_file({"conv_out.bias": torch.zeros(4)}, weights)  # fixed in place: the same job goes on
    assert main(argv(root, models, "--max-prompts", "1")) == 0
    assert sorted(s.key.split("_")[0] for s in iter_samples(root)) == ["ORG-tiny", "edited"]
    before = snapshot(root)
    save_file({"conv_out.bias": torch.ones(4)}, weights)  # other weights behind images already written
    capsys.readouterr()
    assert main(argv(root, models, "--max-prompts", "1")) == 2
    error = the_error(capsys)
    assert "model 'edited': unet weights changed since its images were generated" in error
    assert "new 'name'" in error and snapshot(root) == before


def test_the_plan_refuses_a_key_given_twice(tmp_path):
    from dataigm.prompts import PromptRecord
    from generation.job import check_unique_keys, plan_items

    cfg = job(tmp_path / "r", ["x"], images_per_prompt=2)
    prompts = [PromptRecord("p-1", "church", "forget", "a church"), PromptRecord("p-1", "nudity", "forget", "a nude")]
    items = plan_items(cfg, prompts)  # two concepts, two groups, one prompt id: the same keys
    with pytest.raises(ValueError, match=r"2 sample key\(s\) of model 'ORG-x' would be shared .* prompt ids 'p-1'"):
        check_unique_keys(cfg.model_specs(), items)
    check_unique_keys(cfg.model_specs(), plan_items(cfg, prompts[:1]))  # one of them alone is fine


# ---------------------------------------------------------------- 11. options that do what they say


def test_scheduler_option_selects_and_records_the_scheduler(tiny_pipeline_dir, tmp_path):
    run_job(job(tmp_path / "ddim", [str(tiny_pipeline_dir)]))
    run_job(job(tmp_path / "euler", [str(tiny_pipeline_dir)], scheduler="euler"))
    run_job(job(tmp_path / "spec", [{"base": str(tiny_pipeline_dir), "scheduler": "ddim"}], scheduler="euler"))
    recorded = {
        name: {s.record["scheduler"] for s in iter_samples(tmp_path / name)} for name in ("ddim", "euler", "spec")
    }
    assert recorded == {"ddim": {"DDIMScheduler"}, "euler": {"EulerDiscreteScheduler"}, "spec": {"DDIMScheduler"}}
    ddim, euler, spec = ({s.key: s.image for s in iter_samples(tmp_path / name)} for name in ("ddim", "euler", "spec"))
    assert ddim.keys() == euler.keys() == spec.keys() and len(ddim) == 2
    # the same job writes the same bytes, so any difference is the sampler's (small with random tiny weights)
    assert all(ddim[k] != euler[k] for k in ddim)
    assert spec == ddim  # the spec's own scheduler wins over the job's
    config = json.loads((tmp_path / "euler" / "dataigm.json").read_text())["jobs"]
    assert [m["scheduler"] for j in config.values() for m in j["config"]["models"]] == ["euler"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scheduler", "bogus"], "Unknown scheduler 'bogus'; valid: ddim, pndm, lms, euler, euler_a, dpm++"),
        (["--steps", "0"], "steps must be an integer >= 1, got 0"),
        (["--steps", "-1"], "steps must be an integer >= 1, got -1"),
        (["--guidance", "-1"], "guidance must be a number >= 0, got -1.0"),
        (["--height", "12"], "height must be a multiple of 8 from 8 to 8192, got 12"),
        (["--width", "-64"], "width must be a multiple of 8 from 8 to 8192, got -64"),
        (["--max-prompts", "0"], "max_prompts must be >= 1"),
        (["--images-per-prompt", "1000000000"], "The job plans 2,000,000,000 images (1 model(s) x 2 prompt(s)"),
    ],
    ids=["scheduler", "steps-0", "steps-neg", "guidance", "height", "width", "max-prompts", "images-per-prompt"],
)
def test_bad_sampling_options_are_refused_before_anything(tiny_pipeline_dir, tmp_path, capsys, extra, message):
    root = tmp_path / "r"
    assert main(argv(root, [str(tiny_pipeline_dir)], *extra)) == 2
    assert message in the_error(capsys)
    assert not root.exists()


def test_spec_sampling_settings_are_checked(tmp_path):
    for bad, message in (
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"guidance": -0.5}, "guidance must be a number >= 0"),
        ({"height": -8}, "height must be a multiple of 8"),
    ):
        with pytest.raises(ValueError, match=message):
            job(tmp_path / "r", [{"base": "x"} | bad]).model_specs()
    assert MAX_PLANNED_IMAGES >= 1_000_000  # the bound docs/generation.md documents


def test_unknown_method_is_recorded_as_given_with_a_warning(tiny_pipeline_dir, tmp_path, caplog):
    models = [{"base": str(tiny_pipeline_dir), "name": "a", "method": "esd"}]
    with caplog.at_level(logging.WARNING, logger="generation"):
        run_job(job(tmp_path / "r", models, max_prompts=1))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "method" in r.getMessage()]
    assert len(warnings) == 1 and "'esd' is not a known method (did you mean 'ESD'?)" in warnings[0]
    assert {s.record["method"] for s in iter_samples(tmp_path / "r")} == {"esd"}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="generation"):
        run_job(job(tmp_path / "k", [{"base": str(tiny_pipeline_dir), "method": "ESD"}], max_prompts=1))
    assert not [r for r in caplog.records if "known method" in r.getMessage()]


# ---------------------------------------------------------------- 13/14. failures leave nothing behind


def _bad_inputs(tiny: Path, work: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (extra argv or replaced models, text the error must contain)."""
    work.mkdir(parents=True, exist_ok=True)
    garbage = work / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    pickle = work / "garbage.ckpt"
    pickle.write_bytes(b"\x80\x04not a pickle at all")
    not_pipeline = work / "not-a-pipeline"
    not_pipeline.mkdir(exist_ok=True)
    broken_yaml = work / "spec.yaml"
    broken_yaml.write_text("base: [unclosed\n")
    model = lambda **kw: ["--models", json.dumps([{"base": str(tiny)} | kw])]  # noqa: E731
    return {
        "missing model folder": (["--models", "[/nonexistent/models/sd]"], "'/nonexistent/models/sd' does not exist"),
        "uncached hub id": (["--models", "[no-such-org/no-such-model]"], "not in the local cache"),
        "folder that is no pipeline": (["--models", f"[{not_pipeline}]"], "without model_index.json"),
        "garbage safetensors": (model(unet=str(garbage)), "is not a readable safetensors file"),
        "garbage pickle": (model(unet=str(pickle)), "cannot be read safely"),
        "missing unet file": (model(unet=str(work / "none.safetensors")), "none.safetensors' does not exist"),
        "missing spec file": (["--models", f"[{work / 'none.yaml'}]"], "none.yaml' does not exist"),
        "broken spec file": (["--models", f"[{broken_yaml}]"], "spec.yaml' is not valid YAML (line 2"),
        "missing prompt file": (["--prompt-files", f"[{work / 'none.jsonl'}]"], "none.jsonl' does not exist"),
        "impossible height": (["--height", "100"], "height must be a multiple of 8"),
        "unknown device": (["--device", "gpu"], "--device 'gpu' is not a device; valid: auto, cpu, cuda"),
        "cuda without cuda": (["--device", "cuda"], "no CUDA device on this machine; use --device auto or cpu"),
    }


BAD = [
    "missing model folder",
    "uncached hub id",
    "folder that is no pipeline",
    "garbage safetensors",
    "garbage pickle",
    "missing unet file",
    "missing spec file",
    "broken spec file",
    "missing prompt file",
    "impossible height",
    "unknown device",
    "cuda without cuda",
]


def _bad_argv(root, tiny, work, name) -> tuple[list[str], str]:
    if name == "cuda without cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    extra, message = _bad_inputs(tiny, work)[name]
    command = argv(root, [str(tiny)])
    if extra[0] == "--models":  # replace the model list
        i = command.index("--models")
        command[i + 1] = extra[1]
        extra = extra[2:]
    return command + extra, message


@pytest.mark.parametrize("name", BAD)
def test_bad_input_leaves_no_root(tiny_pipeline_dir, tmp_path, capsys, name):
    root = tmp_path / "out"
    command, message = _bad_argv(root, tiny_pipeline_dir, tmp_path / "work", name)
    assert main(command) == 2
    assert message in the_error(capsys)
    assert not root.exists()


@pytest.mark.parametrize("name", BAD)
def test_bad_input_leaves_an_existing_root_unchanged(tiny_pipeline_dir, existing_root, tmp_path, capsys, name):
    root = tmp_path / "out"
    shutil.copytree(existing_root, root)
    before = snapshot(root)
    command, message = _bad_argv(root, tiny_pipeline_dir, tmp_path / "work", name)
    assert main(command) == 2
    assert message in the_error(capsys)
    assert snapshot(root) == before


@pytest.fixture
def unfitting_unet(tmp_path) -> Path:
    """A readable safetensors file whose keys fit no UNet layout: only loading it can tell."""
    from safetensors.torch import save_file

    path = tmp_path / "unfitting.safetensors"
    save_file({"not_a_unet.weight": torch.zeros(2)}, path)
    return path


def test_a_model_that_fails_to_load_is_not_retried_and_leaves_nothing(
    tiny_pipeline_dir, existing_root, unfitting_unet, tmp_path, capsys
):
    models = [{"base": str(tiny_pipeline_dir), "name": "bad", "method": "ESD", "unet": str(unfitting_unet)}]
    fresh = tmp_path / "fresh"
    assert main(argv(fresh, models, "--samples-per-shard", "1", "--retries", "2")) == 2
    error = the_error(capsys)
    assert "UNet weights fit no known layout" in error and "nothing was written" in error
    assert not fresh.exists()
    existing = tmp_path / "existing"
    shutil.copytree(existing_root, existing)
    before = snapshot(existing)
    assert main(argv(existing, models, "--samples-per-shard", "1")) == 2
    assert "UNet weights fit no known layout" in the_error(capsys)
    assert snapshot(existing) == before  # no reservation, no concept, no meta file, no card change


@pytest.mark.parametrize("where", ["a file", "under a file", "read-only"])
def test_out_that_cannot_be_written_is_named(tiny_pipeline_dir, tmp_path, capsys, where):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    if where == "a file":
        out, expected = target, f"--out {target} is a file"
    elif where == "under a file":
        out, expected = target / "root", f"--out {target / 'root'} cannot be created: {target} is a file"
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        out = folder / "root"
        if os.access(folder, os.W_OK):  # root ignores permissions: use a read-only file system instead
            out = Path("/sys/dataigm-test-root")
            try:
                with open(out.parent / ".probe", "w"):
                    pytest.skip("no read-only folder to test with")
            except OSError:
                pass
        expected = f"--out {out} cannot be written: {out.parent} is not writable"
    assert main(argv(out, [str(tiny_pipeline_dir)])) == 2
    assert expected in the_error(capsys)
    assert target.read_text() == "keep me" and (out == target or not out.exists())


def test_only_errors_that_can_pass_are_transient():
    assert is_transient(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_transient(OSError(errno.EIO, "Input/output error"))
    assert is_transient(ConnectionResetError(errno.ECONNRESET, "reset"))
    for err in (
        ValueError("UNet weights fit no known layout"),
        FileNotFoundError(errno.ENOENT, "No such file"),
        RuntimeError("Error(s) in loading state_dict for UNet2DConditionModel: size mismatch"),
        OSError("Error no file named diffusion_pytorch_model.bin found in directory x"),
    ):
        assert not is_transient(err), err
