"""The judge registry: judge kinds register their loader by name, ``load_judge(spec)`` finds it by prefix.

A spec is ``KIND[:REST]`` (see :mod:`detectors.judges.options`). Kinds register themselves with
:func:`register_judge` in their own module (the pattern of timm's ``register_model``);
``detectors.judges`` imports those modules, so every built-in kind is known once the package is imported.
The help of each kind exists here only: error messages and the CLI read it through :func:`judge_kinds_help`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from detectors.judges.options import Option

if TYPE_CHECKING:
    from detectors.judges.base import Judge

JudgeLoader = Callable[[str, "str | None"], "Judge"]

# A bare Hub repository id: ORG/NAME with an optional @REVISION (what ``hf-hub:`` expects after the colon).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@\S+)?$")
# A Windows drive path, whose drive letter would otherwise be read as a judge kind.
_WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\/]")


@dataclass(frozen=True)
class JudgeKind:
    """A registered judge kind.

    Attributes:
        name: the spec prefix (``nudenet`` in ``nudenet:preset=paper6``).
        loader: ``loader(spec, device) -> Judge``; it receives the whole spec.
        help: one line saying what the kind is.
        example: a spec that shows its options.
        options: its ``key=value`` options (empty for a kind whose spec is not options, such as ``local-dir``);
            the kind's loader resolves them with ``resolve_options(kind, given, options, example)``.
    """

    name: str
    loader: JudgeLoader
    help: str
    example: str
    options: tuple[Option, ...] = ()


JUDGE_REGISTRY: dict[str, JudgeKind] = {}


def register_judge(
    name: str, *, help: str, example: str, options: Sequence[Option] = ()
) -> Callable[[JudgeLoader], JudgeLoader]:
    """Decorator: register ``loader(spec, device) -> Judge`` as the judge kind ``name``.

    Args:
        name: the spec prefix; lowercase letters, digits and dashes, at least two characters (a single
            letter would shadow a Windows drive).
        help: one line for error messages and ``--help``.
        example: a complete spec of this kind; also what the kind's missing-option error shows.
        options: the kind's option table, the one its loader resolves the spec with.

    Raises:
        ValueError: a malformed name, or one registered already by another loader.
    """
    if not re.fullmatch(r"[a-z][a-z0-9-]+", name):
        raise ValueError(f"Judge kind {name!r} must be lowercase letters, digits and dashes (two or more)")

    def decorator(loader: JudgeLoader) -> JudgeLoader:
        known = JUDGE_REGISTRY.get(name)
        if known is not None and known.loader is not loader:
            raise ValueError(f"Judge kind {name!r} is registered already (by {known.loader.__module__})")
        JUDGE_REGISTRY[name] = JudgeKind(name, loader, help, example, tuple(options))
        return loader

    return decorator


def judge_kinds() -> list[str]:
    """The registered kinds, in registration order."""
    return list(JUDGE_REGISTRY)


def judge_kinds_help(separator: str = "\n") -> str:
    """One entry per kind, ``KIND: HELP; options A (required), B, ... (e.g. EXAMPLE)``, joined by ``separator``
    (the CLI's help text); the option list comes from the kind's registered table."""
    return separator.join(f"{k.name}: {k.help}{_options_list(k)} (e.g. {k.example})" for k in JUDGE_REGISTRY.values())


def _options_list(kind: JudgeKind) -> str:
    names = [f"{o.name} (required)" if o.required else o.name for o in kind.options]
    return f"; options {', '.join(names)}" if names else ""


def parse_judge_spec(spec: str) -> tuple[str, str]:
    """``(kind, rest)`` of a judge spec, as timm's ``parse_model_name`` splits a model name.

    An existing folder without a kind prefix is read as ``local-dir:`` (a judge saved by training).

    Raises:
        ValueError: an unknown kind, a bare Hub id or a Windows path; the message names the fix
            (``hf-hub:ORG/NAME``, ``local-dir:PATH``) and the registered kinds with their help.
    """
    spec = str(spec).strip()
    kind, sep, rest = spec.partition(":")
    kind = kind.strip()
    if kind in JUDGE_REGISTRY:
        return kind, rest.strip()
    if Path(spec).is_dir():
        return "local-dir", spec
    kinds = f"known kinds: {', '.join(JUDGE_REGISTRY)} ({judge_kinds_help('; ')})"
    if _WINDOWS_PATH.match(spec):
        raise ValueError(
            f"Judge {spec!r} looks like a Windows path, but {kind!r} would be read as a judge kind and "
            f"no such folder exists; write local-dir:{spec} for a judge folder; {kinds}"
        )
    if not sep and _HUB_ID.match(spec):
        raise ValueError(
            f"Judge {spec!r} has no kind and is not a folder: for a judge on the Hub write hf-hub:{spec}, "
            f"for a folder local-dir:PATH; {kinds}"
        )
    if not sep and ("/" in spec or "\\" in spec or spec.startswith(".")):
        raise ValueError(f"Judge {spec!r}: no such folder (for a judge folder write local-dir:PATH); {kinds}")
    raise ValueError(f"Unknown judge kind {kind!r} in {spec!r}; {kinds}")


def load_judge(spec: str, device: str | None = None) -> Judge:
    """Load a judge from its spec: ``KIND[:OPTIONS]`` (see :func:`judge_kinds_help`), or a judge folder.

    Args:
        spec: e.g. ``local-dir:runs/judge``, ``hf-hub:org/judge@v1``, ``nudenet:preset=paper6``.
        device: ``auto``/None (CUDA when available), ``cpu``, ``cuda:1``...; ignored by CPU-only kinds.

    Raises:
        ValueError: see :func:`parse_judge_spec`; loaders raise on bad options or damaged files.
    """
    spec = str(spec)
    kind, rest = parse_judge_spec(spec)
    if spec.partition(":")[0].strip() != kind:  # a bare folder: loaders and fingerprints see the full spec
        spec = f"{kind}:{rest}"
    return JUDGE_REGISTRY[kind].loader(spec, device)
