"""Pieces shared by the command modules."""

from __future__ import annotations

import os

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
