"""YAML files other people write (recipes, concept, model spec and perturbation files) stay data: aliases that
stand for too much (an alias bomb) are refused in one line naming the file and the line, before they expand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.data import image_bytes

from dataigm.safe_yaml import MAX_ALIAS_VALUES, YamlRefused, load_yaml


def _bomb(indent: str, levels: int) -> str:
    """``levels`` lines, each a list of ten aliases of the line before: 10**levels strings once expanded."""
    lines = [f"{indent}a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        previous, name = chr(96 + i), chr(97 + i)
        lines.append(f"{indent}{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]")
    return "\n".join(lines) + "\n"


# Nine levels: 10**9 strings once expanded, from ten lines of a step's option.
BOMB_RECIPE = "concepts:\n  church:\n    - kind: folder\n      folder: images\n      source: real\n      class_map:\n"
BOMB_RECIPE += _bomb("        ", 9)


def test_an_alias_bomb_in_a_recipe_step_is_refused_in_one_line_before_it_expands(tmp_path):
    (tmp_path / "images" / "church").mkdir(parents=True)
    (tmp_path / "images" / "church" / "c.png").write_bytes(image_bytes())
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(BOMB_RECIPE, encoding="utf-8")
    out = tmp_path / "out"
    code = "import sys; from dataigm.cli import main; sys.exit(main(sys.argv[1:]))"
    # yaml.safe_load let it through and the step's id expanded it: the build hung, memory growing (timeout: a hang)
    done = subprocess.run(
        [sys.executable, "-c", code, "build", str(recipe), "--out", str(out), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    # a: 11 values; b: 10 x 11 through aliases; c: 10 x 111; d: the 8th alias of 1111 values passes 10000
    assert done.stderr == (
        "dataigm build: error: recipe.yaml: line 10: the aliases (*c and those before it) stand for more than "
        f"{MAX_ALIAS_VALUES} values; write the values out instead of aliasing\n"
    )
    assert not out.exists()


CONCEPT = """id: lighthouse
name: Lighthouse
category: global/concrete/entity
description: A lighthouse on a coast.
targets: [a lighthouse]
target_class: lighthouse
pair_class: other
remove_words: [lighthouse]
expected_output: remove
"""
FIVE_LEVELS = "extra:\n" + _bomb("  ", 5)  # 10**5 strings; the 4th level's 8th alias passes the bound


def _read_concepts(tmp_path: Path) -> tuple[Path, object, int]:
    from dataigm.concepts import load_registry

    folder = tmp_path / "concepts"
    folder.mkdir()
    (folder / "lighthouse.yaml").write_text(CONCEPT + FIVE_LEVELS, encoding="utf-8")
    return folder / "lighthouse.yaml", lambda: load_registry([str(folder)]), 9 + 5


def _read_spec(tmp_path: Path) -> tuple[Path, object, int]:
    from generation.spec import load_model_spec

    path = tmp_path / "spec.yaml"
    path.write_text("name: esd\nbase: org/sd\n" + FIVE_LEVELS, encoding="utf-8")
    return path, lambda: load_model_spec(str(path)), 2 + 5


def _read_translations(tmp_path: Path) -> tuple[Path, object, int]:
    from detectors.evaluation.perturb import load_translations

    path = tmp_path / "words.yaml"
    path.write_text("sentences:\n  fr: {a church: une église}\n" + FIVE_LEVELS, encoding="utf-8")
    return path, lambda: load_translations(str(path)), 2 + 5


def _read_recipe(tmp_path: Path) -> tuple[Path, object, int]:
    from dataigm.recipe import load_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text("out: x\n" + FIVE_LEVELS, encoding="utf-8")
    return path, lambda: load_recipe(path), 1 + 5


@pytest.mark.parametrize("reader", [_read_concepts, _read_spec, _read_translations, _read_recipe])
def test_an_alias_bomb_is_refused_in_every_yaml_file_users_share(tmp_path, reader):
    path, read, line = reader(tmp_path)
    with pytest.raises(ValueError) as err:
        read()
    message = str(err.value)
    assert "\n" not in message and path.name in message
    assert (
        f"line {line}: the aliases (*c and those before it) stand for more than {MAX_ALIAS_VALUES} values" in message
    )


def test_shared_values_as_yaml_safe_dump_writes_them_still_read():
    shared = ["a lighthouse", "a beacon"]
    data = {"targets": shared, "remove_words": shared, "nested": [{"x": shared}] * 3}
    text = yaml.safe_dump(data)
    assert "&id001" in text and "*id001" in text  # PyYAML anchors an object used twice
    assert load_yaml(text, "f.yaml") == yaml.safe_load(text) == data


def test_a_self_containing_alias_and_very_deep_nesting_are_refused():
    with pytest.raises(YamlRefused, match=r"^f.yaml: line 2: alias \*a is inside the value it names"):
        load_yaml("a: &a\n  - *a\n", "f.yaml")
    with pytest.raises(YamlRefused, match=r"^f.yaml: the YAML is nested too deeply to read$"):
        load_yaml("[" * 5000 + "]" * 5000, "f.yaml")
    with pytest.raises(yaml.YAMLError):  # not YAML: the callers' own message
        load_yaml("a: [1, 2", "f.yaml")


def test_an_alias_bomb_in_a_config_file_is_refused_in_one_line(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("model_kwargs:\n" + _bomb("  ", 9), encoding="utf-8")
    code = "import sys; from dataigm.cli import main; sys.exit(main(sys.argv[1:]))"
    # jsonargparse's own YAML loader expanded it while reading --config: the command hung, memory growing
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "judge",
            "train",
            "--config",
            str(config),
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"stand for more than {MAX_ALIAS_VALUES} values" in done.stderr


def test_option_values_and_config_files_without_aliases_read_as_before(tmp_path):
    from dataigm.cli import build_parser

    config = tmp_path / "train.yaml"
    config.write_text("model_kwargs: &k {img_size: 32}\nepochs: 3\n", encoding="utf-8")
    cfg = build_parser().parse_args(
        ["judge", "train", "--config", str(config), "--data", "d", "--out", "o", "--model-kwargs.drop", "0.1"]
    )
    assert cfg.judge.train.epochs == 3
    assert dict(cfg.judge.train.model_kwargs) == {"img_size": 32, "drop": 0.1}
