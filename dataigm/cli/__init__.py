"""The ``dataigm`` command line: one thin ``main(argv)`` over the library.

Every command accepts ``--config FILE.yaml`` (flags override it) and ``--print_config``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from jsonargparse import ArgumentParser

from . import card, concepts, data, demo, env, evaluate, generate, ingest, judge, prompts, push
from .common import command_parser, user_error

# Command modules: each has ``HELP``, ``configure(parser)`` and ``run(cfg) -> int``.
COMMANDS = {
    "concepts": concepts,
    "prompts": prompts,
    "ingest": ingest,
    "generate": generate,
    "validate": data.validate,
    "card": card,
    "push": push,
    "info": data.info,
    "env": env,
    "judge": judge,
    "evaluate": evaluate,
    "demo": demo,
}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="dataigm", description="DataIGM: data, judges and evaluation for unlearning in image generation"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subcommands(dest="command")
    for name, module in COMMANDS.items():
        # jsonargparse wants nested subcommands added top-down: attach first, then configure.
        command = command_parser(module.HELP)
        sub.add_subcommand(name, command, help=module.HELP)
        module.configure(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    cfg = parser.parse_args(list(argv) if argv is not None else sys.argv[1:])
    logging.basicConfig(level=cfg.log_level, format="%(levelname)s %(name)s: %(message)s")
    command = cfg.command
    try:
        return COMMANDS[command].run(cfg[command]) or 0
    except Exception as err:  # bad input or environment: one line that says what and how to fix it
        message = user_error(err)
        if message is None:  # a bug: keep the traceback
            raise
        print(f"dataigm {command}: error: {message}", file=sys.stderr)
        return 2
