"""Command-line options built from a config dataclass: one flag per field, help from its docstring.

A field ``batch_size`` becomes ``--batch-size`` (YAML key ``batch_size``); its help is the field's line in the
class docstring's Google-style ``Attributes:`` section (a few lines of parsing here instead of a dependency: the
section's format is ours). Booleans are ``--flag`` / ``--no-flag`` and still accept ``--flag true|false``.
A field whose type is itself a dataclass is a nested group: ``generation: SamplingConfig`` gives
``--generation.steps`` (YAML ``generation: {steps: 50}``), its help from the nested class.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Mapping
from typing import Any

from jsonargparse import ActionYesNo, ArgumentParser

_ATTRIBUTE = re.compile(r"^(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")
# A bare container annotation shows as "<class 'dict'>" in the help; parsed with its item types it reads as one.
_BARE_CONTAINERS = {dict: dict[str, Any], list: list[Any], set: set[Any]}


def attribute_help(cls: type) -> dict[str, str]:
    """``{field: help}`` from the ``Attributes:`` sections of ``cls`` and its bases' docstrings.

    A line ``name: text`` starts an entry; more indented lines continue it.
    """
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = inspect.cleandoc(klass.__dict__.get("__doc__") or "")
        lines = doc.splitlines()
        if "Attributes:" not in lines:
            continue
        current, indent = None, None
        for line in lines[lines.index("Attributes:") + 1 :]:
            if not line.strip():
                continue
            depth = len(line) - len(line.lstrip())
            if depth == 0:  # the section ends at the next unindented line
                break
            match = _ATTRIBUTE.match(line.strip())
            if indent is None or depth <= indent:
                if not match:
                    break
                indent, current = depth, match.group(1)
                found[current] = match.group(2).strip()
            elif current is not None:
                found[current] += " " + line.strip()
    return found


def add_flag(parser: ArgumentParser, flag: str, default: bool, help: str, dest: str | None = None) -> None:
    """A boolean option: ``--flag`` / ``--no-flag``; :func:`boolean_values_as_flags` keeps ``--flag true|false``.

    The flag takes no value, so a positional may follow it (``dataigm info --json ROOT``).
    """
    parser.add_argument(
        flag,
        dest=dest or flag[2:].replace("-", "_"),
        action=ActionYesNo(no_prefix="no-"),
        nargs=0,
        default=default,
        help=help,
    )


_BOOLEAN_WORDS = {"true": True, "yes": True, "false": False, "no": False}


def boolean_values_as_flags(parser: ArgumentParser, argv: list[str]) -> list[str]:
    """``--flag true|false`` (and ``--flag=false``), the value form of older docs, as ``--flag`` / ``--no-flag``.

    Only the boolean options of the subcommands that ``argv`` names are rewritten; any other token is kept.
    """
    flags: set[str] = set()
    current = parser
    for token in ["", *argv]:
        subcommands = current._subcommands_action  # jsonargparse keeps a parser's subcommands here
        if token and subcommands is not None and token in subcommands.choices:
            current = subcommands.choices[token]
        elif token:
            continue
        flags |= {o for a in current._actions if type(a).__name__ == "ActionYesNo" for o in a.option_strings}
    out: list[str] = []
    i = 0
    while i < len(argv):
        name, equals, value = argv[i].partition("=")
        if name in flags and not name.startswith("--no-"):
            if not equals and i + 1 < len(argv) and argv[i + 1].lower() in _BOOLEAN_WORDS:
                value, i = argv[i + 1], i + 1
            if value.lower() in _BOOLEAN_WORDS:
                out.append(name if _BOOLEAN_WORDS[value.lower()] else "--no-" + name[2:])
                i += 1
                continue
        out.append(argv[i])
        i += 1
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def add_options(
    parser: ArgumentParser,
    cls: type,
    *,
    skip: tuple[str, ...] = (),
    positional: tuple[str, ...] = (),
    types: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    more_help: Mapping[str, str] | None = None,
    prefix: str = "",
) -> None:
    """Add one option per field of the dataclass ``cls`` to ``parser``.

    Args:
        parser: the command's parser.
        cls: a dataclass whose docstring has an ``Attributes:`` line for every field.
        skip: fields that are not options.
        positional: fields given as positional arguments (optional when they have a default).
        types: a type to parse a field as, where its annotation is too loose for the command line.
        defaults: a command-line default that differs from the field's.
        more_help: text appended to a field's help, kept elsewhere once (e.g. the judge kinds' registry).
        prefix: the dotted path of a nested group (``"generation."``); set by the recursion.

    Raises:
        TypeError: a field has no help line (a bug of the config class, caught by the CLI tests).
    """
    helps = attribute_help(cls)
    hints = typing.get_type_hints(cls)
    types, defaults = dict(types or {}), dict(defaults or {})
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if not helps.get(f.name):
            raise TypeError(f"{cls.__name__}.{f.name} has no line in the Attributes: section of its docstring")
        kind = types.get(f.name, hints[f.name])
        kind = _BARE_CONTAINERS.get(kind, kind)
        if dataclasses.is_dataclass(kind):
            add_options(parser, kind, prefix=f"{prefix}{f.name}.")
            continue
        default = defaults.get(f.name, _default(f))
        text = " ".join([helps[f.name], *([more_help[f.name]] if f.name in (more_help or {}) else [])])
        extra: dict[str, Any] = {"help": text.replace("``", "`")}  # reST literals read as Markdown ones
        if f.name in positional:
            nargs = None if _required(f) else "?"
            if typing.get_origin(kind) is list:  # FILE [FILE ...]: argparse collects the items
                nargs, kind = "+", typing.get_args(kind)[0]
            if not _required(f):
                extra["default"] = default
            parser.add_argument(f.name, type=kind, nargs=nargs, **extra)
            continue
        flag, dest = "--" + prefix + f.name.replace("_", "-"), prefix + f.name
        if typing.get_origin(kind) is dict:  # given as JSON/YAML ('{"img_size": 32}') or one key at a time (--x.key)
            extra["metavar"] = "JSON"
        if kind is bool:
            add_flag(parser, flag, default, extra["help"], dest=dest)
        elif _required(f) and f.name not in defaults:
            parser.add_argument(flag, dest=dest, type=kind, required=True, **extra)
        else:
            parser.add_argument(flag, dest=dest, type=kind, default=default, **extra)


def options_of(cls: type, cfg: Mapping[str, Any], *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keyword arguments of ``cls`` from a parsed namespace (the fields ``add_options`` added).

    A nested group becomes an instance of its dataclass.
    """
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            group = cfg[f.name]
            out[f.name] = kind(**{g.name: group[g.name] for g in dataclasses.fields(kind)})
        else:
            out[f.name] = cfg[f.name]
    return out
