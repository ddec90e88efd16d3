"""Pieces shared by the command modules."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser

from ..concepts import load_registry, split_dirs
from ..safe_yaml import load_yaml

# errno values of an output path that cannot take what a command writes
_WRITE_ERRNOS = (errno.EROFS, errno.ENOSPC, errno.EDQUOT)
# OSError subclasses that are about the user's paths, not our code
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)


def _hub_unreachable(err: BaseException) -> bool:
    if isinstance(err, ConnectionError):  # huggingface_hub's OfflineModeIsEnabled, datasets' "Couldn't reach"
        return True
    # the HTTP client's transport errors (connect, timeout, network), whichever client huggingface_hub uses
    return any(
        k.__module__.split(".")[0] in ("httpx", "httpx2", "requests", "urllib3")
        and any(w in k.__name__ for w in ("Connect", "Timeout", "Network", "Transport"))
        for k in type(err).__mro__
    )


def user_error(err: BaseException) -> str | None:
    """The one-line message for an error caused by the user's input or environment, or None for a bug.

    Expected errors: ``ValueError`` (bad options and inputs, named by our code), missing or unwritable paths,
    a Hub that cannot be reached or refuses the request. Anything else is a bug and keeps its traceback.
    """
    if isinstance(err, ValueError):
        return str(err)
    if _hub_unreachable(err):
        offline = os.environ.get("HF_HUB_OFFLINE")
        hint = f" HF_HUB_OFFLINE={offline} is set" if offline not in (None, "", "0", "false", "False") else ""
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"could not reach the Hub (offline?{hint}): {first}"
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    if isinstance(err, LocalTokenNotFoundError):
        return "no Hugging Face token: run `hf auth login` or set HF_TOKEN"
    if isinstance(err, HfHubHTTPError):
        return f"the Hub refused the request: {str(err).strip().splitlines()[0]}"
    if isinstance(err, OSError) and (isinstance(err, _PATH_ERRORS) or err.errno in _WRITE_ERRNOS):
        where = err.filename if err.filename is not None else ""
        text = err.strerror or str(err)
        if err.errno in _WRITE_ERRNOS:
            return f"cannot write {where}: {text}" if where else f"cannot write: {text}"
        return f"{where}: {text}" if where else text
    return None


def command_parser(description: str) -> ArgumentParser:
    """A sub-parser with ``--config`` (YAML, flags win) and, through it, ``--print_config``."""
    parser = ArgumentParser(description=description, exit_on_error=False)  # main names the subcommand in errors
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of these options")
    return parser


@dataclass(kw_only=True)
class ConceptsDirOption:
    """The option of every command that reads concepts.

    Attributes:
        concepts_dir: folders of concept YAML files added to the built-in registry, joined with os.pathsep (also
            $DATAIGM_CONCEPTS_DIR)
    """

    concepts_dir: str | None = None


def registry_of(cfg):
    """The concept registry of a command: the built-in concepts plus its ``--concepts-dir`` folders."""
    return load_registry(split_dirs(cfg.get("concepts_dir")))


def save_config(cfg, path: str | os.PathLike, append: bool = False) -> None:
    """Write the resolved options next to a command's outputs (every command records the config it ran with).

    With ``append`` the file keeps a list with one entry per distinct run (a dataset root is written
    by several jobs).
    """
    path = Path(path)
    entry = {k: v for k, v in dict(cfg).items() if k not in ("config", "__path__")}
    if append:
        runs = load_yaml(path.read_text(encoding="utf-8"), str(path)) if path.exists() else []  # a root may be shared
        if entry in runs:
            return
        entry = [*runs, entry]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(entry, sort_keys=False), encoding="utf-8")
