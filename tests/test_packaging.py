import subprocess
import sys

from dataigm.cli import main


def test_import_dataigm_is_light():
    code = "import sys, dataigm; print(sorted(m for m in ('torch', 'diffusers', 'datasets', 'transformers', 'timm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_env_lists_versions_and_devices(capsys):
    import datasets
    import torch

    assert main(["env"]) == 0
    lines = dict(line[2:].split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["torch"] == torch.__version__.split("+")[0] or lines["torch"] == torch.__version__
    assert lines["datasets"] == datasets.__version__
    assert set(lines) >= {
        "python",
        "torchvision",
        "diffusers",
        "transformers",
        "timm",
        "webdataset",
        "huggingface_hub",
    }
    assert lines["devices"].startswith("cpu")


def test_every_command_prints_its_resolved_config(capsys, tmp_path):
    import yaml

    try:
        main(["ingest", "some/folder", "--out", str(tmp_path), "--concept", "church", "--print_config"])
    except SystemExit as stop:
        assert stop.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (
        printed["folder"] == "some/folder" and printed["concept"] == "church" and printed["samples_per_shard"] == 1000
    )
