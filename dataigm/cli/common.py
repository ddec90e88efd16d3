"""Pieces shared by the command modules."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser

from ..concepts import load_registry


def command_parser(description: str) -> ArgumentParser:
    """A sub-parser with ``--config`` (YAML, flags win) and, through it, ``--print_config``."""
    parser = ArgumentParser(description=description)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of these options")
    return parser


def add_concepts_dir(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--concepts-dir",
        type=str | None,
        default=None,
        help="folder of concept YAML files added to the built-in registry; several joined with "
        f"{os.pathsep!r} (also $DATAIGM_CONCEPTS_DIR)",
    )


def registry_of(cfg):
    dirs = [d for d in (cfg.get("concepts_dir") or "").split(os.pathsep) if d]
    return load_registry(dirs)


def save_config(cfg, path: str | os.PathLike, append: bool = False) -> None:
    """Write the resolved options next to a command's outputs (DESIGN §10).

    With ``append`` the file keeps a list with one entry per distinct run (a dataset root is written
    by several jobs).
    """
    path = Path(path)
    entry = {k: v for k, v in dict(cfg).items() if k not in ("config", "__path__")}
    if append:
        runs = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else []
        if entry in runs:
            return
        entry = [*runs, entry]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(entry, sort_keys=False), encoding="utf-8")
