"""The command line as a whole: built from the config classes, light, documented, one error style."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dataigm.cli import build_parser, main
from dataigm.cli.options import add_options, attribute_help

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "diffusers", "transformers")


def _commands(parser, path=()):
    """Every (subcommand path, parser) of the CLI, the root included."""
    yield path, parser
    action = parser._subcommands_action
    if action is not None:
        for name, sub in action.choices.items():
            yield from _commands(sub, (*path, name))


COMMAND_PATHS = [" ".join(path) for path, _ in _commands(build_parser())]


def test_help_of_every_command_imports_no_torch_timm_diffusers_transformers():
    # a fresh interpreter: this test process has imported torch long ago
    script = f"""
import contextlib, io, json, sys
from dataigm.cli import main
for command in {COMMAND_PATHS!r}:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main([*command.split(), "--help"])
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("command", COMMAND_PATHS)
def test_every_option_has_help_and_no_repr_in_the_help(command, capsys):
    parser = dict((" ".join(p), q) for p, q in _commands(build_parser()))[command]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.dest in ("help", "print_config"):
            continue
        assert action.help and action.help.strip(), f"dataigm {command}: {action.option_strings or action.dest}"
    with pytest.raises(SystemExit) as stop:
        main([*command.split(), "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    reprs = re.findall(r"<(?:class|function|lambda|bound method|module|enum)\b[^>]*>?", text)
    assert reprs == [], text


def test_a_mapping_option_reads_as_json_in_the_help_and_takes_json_or_keys(capsys):
    with pytest.raises(SystemExit):
        main(["judge", "train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "[--model-kwargs JSON]" in help_text and "(type: dict[str, Any], default: {})" in help_text
    parser = build_parser()
    for given in (["--model-kwargs", '{"img_size": 32}'], ["--model-kwargs.img_size", "32"]):
        cfg = parser.parse_args(["judge", "train", "--data", "d", "--out", "o", *given])
        assert cfg.judge.train.model_kwargs == {"img_size": 32}


def test_every_device_option_defaults_to_auto():
    found = []
    for path, parser in _commands(build_parser()):
        for action in parser._actions:
            if action.dest == "device":
                found.append(" ".join(path))
                assert action.default == "auto", path
    assert {"generate", "evaluate", "judge train", "judge eval"} <= set(found)


@pytest.mark.parametrize(
    ("flags", "progress", "channels_last"),
    [
        ([], True, False),
        (["--no-progress"], False, False),
        (["--progress", "false"], False, False),  # the value form of older docs still works
        (["--no-progress", "--progress"], True, False),
        (["--channels-last"], True, True),
        (["--channels-last", "true", "--no-channels-last"], True, False),
    ],
)
def test_booleans_are_flag_and_no_flag(flags, progress, channels_last):
    from dataigm.cli.options import boolean_values_as_flags

    parser = build_parser()
    argv = boolean_values_as_flags(parser, ["generate", "--out", "o", *flags])  # as main() does
    cfg = parser.parse_args(argv).generate
    assert (cfg.progress, cfg.channels_last) == (progress, channels_last)


def test_a_boolean_flag_before_a_positional_takes_no_value(tmp_path, capsys):
    from helpers.data import write_test_root

    from dataigm.cli import main

    root = write_test_root(tmp_path / "root", {("church", "train", "real"): [3]})
    for argv in (["info", "--json", str(root)], ["info", "--json=true", str(root)], ["info", str(root), "--json"]):
        assert main(argv) == 0, argv
        rows = json.loads(capsys.readouterr().out)
        assert sum(r["count"] for r in rows) == 3, argv
    assert main(["info", "--json", "false", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split() == ["total", "3"]


def test_config_file_then_flags_win(tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({"out": "o", "steps": 5, "progress": False, "models": ["m"]}), encoding="utf-8")
    cfg = build_parser().parse_args(["generate", "--config", str(config), "--steps", "7"]).generate
    assert (cfg.out, cfg.steps, cfg.progress, cfg.models) == ("o", 7, False, ["m"])
    cfg = build_parser().parse_args(["generate", "--config", str(config), "--progress"]).generate
    assert (cfg.steps, cfg.progress) == (5, True)


@pytest.mark.parametrize(
    ("argv", "starts", "says"),
    [
        (["judge", "train", "--data", "d", "--out", "o", "--epochs", "x"], "dataigm judge train: error: ", "epochs"),
        (["judge", "train", "--out", "o"], "dataigm judge train: error: ", "--data"),
        (["generate", "--models", "[m]"], "dataigm generate: error: ", "--out"),
        (["push", "judge", "j", "--repo", "o/n", "--bogus", "1"], "dataigm push judge: error: ", "--bogus"),
        (["judge", "bogus"], "dataigm judge: error: ", "bogus"),
    ],
)
def test_a_parse_error_is_one_line_that_names_the_subcommand(argv, starts, says, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts) and says in lines[0], lines


def test_a_refused_command_is_one_line_and_at_debug_its_traceback_follows(tmp_path, capsys):
    line = f"dataigm info: error: {tmp_path} is not a dataigm dataset: dataigm.json is missing"
    assert main(["info", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [line]
    assert main(["--log-level", "DEBUG", "info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [line, "Traceback (most recent call last):"]
    assert any(text.strip().startswith('File "') and "manifest.py" in text for text in err)  # where it was raised
    assert err[-1] == f"ValueError: {tmp_path} is not a dataigm dataset: dataigm.json is missing"


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    from helpers.data import write_test_root

    root = write_test_root(tmp_path / "root", {("church", "train", "real"): [2]})
    # `dataigm validate ROOT | head -1`: the reader leaves before the command writes
    read, write = os.pipe()
    os.close(read)
    script = f"import sys; from dataigm.cli import main; sys.exit(main(['validate', {str(root)!r}]))"
    done = subprocess.run([sys.executable, "-c", script], stdout=write, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    os.close(write)
    assert (done.returncode, done.stderr) == (1, "")  # neither "could not reach the Hub" nor a traceback


def test_judge_push_and_push_judge_reach_the_same_function(monkeypatch):
    import dataigm.cli.push as push

    calls = []
    monkeypatch.setattr(push, "run_judge_push", lambda judge_dir, args: calls.append((judge_dir, dict(args))) or 0)
    assert main(["judge", "push", "--judge", "runs/j", "--repo", "o/n", "--private"]) == 0
    assert main(["push", "judge", "runs/j", "--repo", "o/n", "--private", "true"]) == 0
    (first, a), (second, b) = calls
    assert first == second == "runs/j"
    assert {k: v for k, v in a.items() if k not in ("judge", "judge_dir")} == {
        k: v for k, v in b.items() if k not in ("judge", "judge_dir")
    }
    parser = dict(_commands(build_parser()))
    assert (
        parser[("judge", "push")].format_help().split("\n", 1)[1]
        == parser[("push", "judge")].format_help().split("\n", 1)[1]
    )


def test_judge_push_wants_the_judge_once(capsys):
    assert main(["push", "judge", "--repo", "o/n"]) == 2
    assert "give the judge folder once" in capsys.readouterr().err


@dataclasses.dataclass
class _Documented:
    """A config.

    Attributes:
        size (int): the side, in pixels, of
            every image
        name: a name
    Other text.
    """

    size: int = 1
    name: str = "x"
    fast: bool = False


def test_attribute_help_reads_the_google_section_with_continuations():
    assert attribute_help(_Documented) == {"size": "the side, in pixels, of every image", "name": "a name"}


def test_an_undocumented_field_is_a_build_error():
    from jsonargparse import ArgumentParser

    with pytest.raises(TypeError, match=r"_Documented.fast has no line in the Attributes"):
        add_options(ArgumentParser(), _Documented)


def test_evaluation_nests_the_sampling_options_that_a_generation_job_extends(tmp_path, capsys):
    from dataigm.cli import build_parser, main
    from dataigm.cli.options import options_of
    from dataigm.sampling import SamplingConfig
    from detectors.evaluation.config import EvalConfig
    from generation.config import JobConfig

    assert issubclass(JobConfig, SamplingConfig)  # one class: the same names, defaults and checks
    config = tmp_path / "eval.yaml"
    config.write_text(
        yaml.safe_dump({"out": "o", "concepts": ["nudity"], "judge": "x", "generation": {"steps": 3, "height": 64}})
    )
    parsed = build_parser().parse_args(["evaluate", "--config", str(config), "--generation.images-per-prompt", "2"])
    generation = options_of(EvalConfig, parsed.evaluate)["generation"]
    assert generation == SamplingConfig(steps=3, height=64, images_per_prompt=2)
    with pytest.raises(ValueError, match=r"Unknown generation option\(s\) \['stepz'\]; valid: images_per_prompt"):
        EvalConfig(out=str(tmp_path / "e"), concepts=["nudity"], judge="x", models=["m"], generation={"stepz": 3})
    # a flat option of earlier releases names its nested form
    with pytest.raises(SystemExit, match="2"):
        main(["evaluate", "--out", "o", "--concepts", "[nudity]", "--judge", "x", "--steps", "3"])
    assert "did you mean --generation.steps?" in capsys.readouterr().err


def test_concepts_dir_is_split_with_os_pathsep(tmp_path):
    from dataigm.concepts import split_dirs
    from detectors.evaluation.config import EvalConfig

    assert split_dirs(None) == [] and split_dirs(f"a{os.pathsep}{os.pathsep}b") == ["a", "b"]
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "tiger.yaml").write_text(
        yaml.safe_dump(
            {
                "id": "tiger",
                "name": "Tiger",
                "category": "local/concrete/entity",
                "targets": ["tiger"],
                "target_class": "tiger",
                "pair_class": "other",
                "remove_words": ["tiger"],
                "expected_output": "remove",
            }
        ),
        encoding="utf-8",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = EvalConfig.__new__(EvalConfig)  # the registry alone, without the checks of a whole config
    cfg.concepts_dir = f"{empty}{os.pathsep}{extra}"
    assert "tiger" in cfg.registry()
