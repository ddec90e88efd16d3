"""The ``dataigm`` command line: one thin ``main(argv)`` over the library.

Every command accepts ``--config FILE.yaml`` (flags override it) and ``--print_config``. A command refused for
its input or environment prints one line (``dataigm <command>: error: ...``); with ``--log-level DEBUG`` the
traceback follows it. Building the parser imports no torch, timm or diffusers: options come from light config
classes (:mod:`dataigm.cli.options`) and the work is imported inside each command's ``run``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Sequence

import yaml
from jsonargparse import ArgumentError, ArgumentParser, get_loader, set_loader

from ..safe_yaml import YamlRefused, load_yaml
from . import (
    attack,
    bench,
    build,
    card,
    concepts,
    curate,
    data,
    dedup,
    demo,
    env,
    evaluate,
    generate,
    ingest,
    judge,
    prompts,
    push,
    review,
)
from .common import command_parser, user_error
from .options import boolean_values_as_flags

# Command modules: each has ``HELP``, ``configure(parser)`` and ``run(cfg) -> int``.
COMMANDS = {
    "concepts": concepts,
    "prompts": prompts,
    "ingest": ingest,
    "generate": generate,
    "attack": attack,
    "validate": data.validate,
    "dedup": dedup,
    "build": build,
    "card": card,
    "push": push,
    "info": data.info,
    "env": env,
    "judge": judge,
    "review": review,
    "curate": curate,
    "evaluate": evaluate,
    "bench": bench,
    "demo": demo,
}


_JSONARGPARSE_YAML = get_loader("yaml")


def _bounded_yaml(text: str):
    """jsonargparse's YAML reading (``--config`` files, option values), behind the alias bound of
    ``dataigm.safe_yaml``: a config file is shared like a recipe, and an alias bomb in it hung the parser."""
    load_yaml(text, "--config file or option value")
    return _JSONARGPARSE_YAML(text)


def build_parser() -> ArgumentParser:
    """The ``dataigm`` parser with every command (light: no torch, timm or diffusers imported)."""
    # yaml.YAMLError as jsonargparse registers it: a value that is not YAML (a --where with a backtick) stays text
    set_loader("yaml", _bounded_yaml, exceptions=(yaml.YAMLError,))
    parser = ArgumentParser(
        prog="dataigm",
        description="DataIGM: data, judges and evaluation for unlearning in image generation",
        exit_on_error=False,  # main names the subcommand in the error line
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold (DEBUG: a refused command prints its traceback after its one-line error)",
    )
    sub = parser.add_subcommands(dest="command")
    for name, module in COMMANDS.items():
        # jsonargparse wants nested subcommands added top-down: attach first, then configure.
        command = command_parser(module.HELP)
        sub.add_subcommand(name, command, help=module.HELP)
        module.configure(command)
    return parser


def _subcommand(parser: ArgumentParser, argv: Sequence[str]) -> tuple[list[str], ArgumentParser]:
    """The subcommand path (``["judge", "train"]``) that ``argv`` reached, and its parser."""
    path: list[str] = []
    for token in argv:
        action = parser._subcommands_action  # jsonargparse keeps the subcommands of a parser here
        if action is None:
            break
        if token in action.choices:
            path.append(token)
            parser = action.choices[token]
    return path, parser


def _parse_error(parser: ArgumentParser, argv: Sequence[str], err: ArgumentError) -> None:
    path, command = _subcommand(parser, argv)
    message = str(err).replace("\n", " ").strip()
    if path:  # jsonargparse names a nested option "judge.train.out"; the user typed --out
        message = message.replace(".".join(path) + ".", "--")
    message += _nested_hint(command, message)
    # one line, like every other error of the CLI; `--help` shows the usage
    print(
        f"{' '.join(['dataigm', *path])}: error: {message} (see {' '.join(['dataigm', *path])} --help)",
        file=sys.stderr,
    )
    raise SystemExit(2)


def _nested_hint(parser: ArgumentParser, message: str) -> str:
    """'; did you mean --generation.steps?' when an unknown option is a nested group's (old flat names)."""
    match = re.search(r"option '([\w-]+)'|unrecognized arguments: --([\w-]+)", message)
    if not match:
        return ""
    name = (match.group(1) or match.group(2)).replace("_", "-")
    options = [o for action in parser._actions for o in action.option_strings]
    nested = [o for o in options if o.endswith("." + name)]
    return f"; did you mean {' or '.join(nested)}?" if nested else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    argv = list(argv) if argv is not None else sys.argv[1:]
    parser = build_parser()
    argv = boolean_values_as_flags(parser, argv)
    try:
        cfg = parser.parse_args(argv)
    except ArgumentError as err:
        _parse_error(parser, argv, err)
    except YamlRefused as err:  # a --config file (or a YAML option value) the bounded reader refuses
        print(f"dataigm: error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=cfg.log_level, format="%(levelname)s %(name)s: %(message)s")
    command = cfg.command
    try:
        code = COMMANDS[command].run(cfg[command]) or 0
        sys.stdout.flush()  # a closed pipe shows here rather than as a warning at exit
        return code
    except BrokenPipeError:  # the reader left (`dataigm validate ROOT | head -1`): nothing more to say
        _silence_stdout()
        return 1
    except Exception as err:  # bad input or environment: one line that says what and how to fix it
        message = user_error(err)
        if message is None:  # a bug: keep the traceback
            raise
        print(f"{' '.join(['dataigm', *_command_path(cfg)])}: error: {message}", file=sys.stderr)
        if cfg.log_level == "DEBUG":  # where the refusal was raised, for a bug report or a closer look
            traceback.print_exception(err, file=sys.stderr)
        return 2


def _silence_stdout() -> None:
    """Point stdout at the null device, so the interpreter's last flush into the closed pipe fails no more
    (the recipe of Python's documentation of ``signal``, "Note on SIGPIPE")."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # a stdout without a file descriptor (captured): nothing is flushed at exit
        pass


def _command_path(cfg) -> list[str]:
    """The subcommand a user ran, e.g. ``["judge", "train"]`` (nested subcommands keep their name under ``dest``)."""
    path = [cfg.command]
    sub = cfg[cfg.command]
    for dest in ("action", "what"):  # the dest names of the nested subcommands (judge/prompts/concepts, push)
        name = sub.get(dest) if hasattr(sub, "get") else None
        if isinstance(name, str):
            path.append(name)
            break
    return path
