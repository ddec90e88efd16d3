"""Judge specs: ``KIND[:OPTIONS]``, looked up by kind in a registry.

* ``local-dir:PATH`` and ``hf-hub:ORG/NAME[@REVISION]``: a trained judge in timm's Hub format.
* ``nudenet[:preset=paper6,threshold=0.6]``, ``clip-zeroshot:model=PATH_OR_ID,target=nude,anchor=properly dressed``,
  ``imagenet:model=resnet50.a1_in1k,classes=497``: baseline judges, options as ``key=value`` pairs
  separated by commas (a value may itself hold commas, e.g. ``classes=497,498``, as long as what
  follows a comma does not look like ``key=``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_OPTION_SPLIT = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_-]*\s*=)")


def split_spec(spec: str) -> tuple[str, str]:
    """``"kind:rest"`` -> ``("kind", "rest")``; a spec without a colon is a bare kind."""
    kind, _, rest = str(spec).partition(":")
    return kind.strip(), rest.strip()


def parse_options(text: str) -> dict[str, str]:
    """``"a=1,b=x y"`` -> ``{"a": "1", "b": "x y"}``; raises on a part without ``=`` or a repeated key."""
    options: dict[str, str] = {}
    if not text.strip():
        return options
    for part in _OPTION_SPLIT.split(text):
        key, sep, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"Judge option {part!r} is not key=value (in {text!r})")
        if key in options:
            raise ValueError(f"Judge option {key!r} is given twice (in {text!r})")
        options[key] = value.strip()
    return options


def to_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false)")


def to_list(value: str) -> list[str]:
    """``"a|b"`` or ``"a,b"`` -> ``["a", "b"]``."""
    return [v.strip() for v in re.split(r"[|,]", value) if v.strip()]


def to_int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in to_list(value)]
    except ValueError:
        raise ValueError(f"{value!r} is not a list of integers such as 497 or 497|701") from None


@dataclass(frozen=True)
class Option:
    """One option of a judge kind.

    Attributes:
        name: the key in ``key=value``.
        convert: text -> value; raises ``ValueError`` on a bad value.
        default: the value when the option is not given (unused for a required option).
        help: one line saying what the option is; :attr:`text` adds "(required)" from ``required``.
        required: the kind cannot be built without it; :func:`resolve_options` refuses its absence.
    """

    name: str
    convert: Callable[[str], Any]
    default: Any
    help: str
    required: bool = False

    @property
    def text(self) -> str:
        """The help line as error messages show it."""
        return f"{self.help} (required)" if self.required else self.help


def resolve_options(
    kind: str, given: Mapping[str, str], options: Sequence[Option], example: str = ""
) -> dict[str, Any]:
    """Convert ``given`` with ``options``, filling defaults.

    Args:
        kind: the judge kind, for messages.
        given: the options as text (:func:`parse_options`).
        options: the kind's option table.
        example: a complete spec of the kind (its registered example), shown when a required option is missing.

    Raises:
        ValueError: an unknown name (naming the valid ones), a missing or blank required option (naming the
            missing ones with their help, and ``example``), or a value its converter refuses.
    """
    known = {o.name: o for o in options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        valid = ", ".join(f"{o.name} ({o.text})" for o in options)
        raise ValueError(f"Unknown option(s) {unknown} for judge kind {kind!r}; valid options: {valid}")
    missing = [o for o in options if o.required and not str(given.get(o.name, "")).strip()]
    if missing:
        what = "; ".join(f"{o.name}: {o.help}" for o in missing)
        e_g = f"; e.g. {example}" if example else ""
        raise ValueError(f"Judge {kind!r} needs option(s) {[o.name for o in missing]} ({what}){e_g}")
    out = {}
    for name, option in known.items():
        if name not in given:
            out[name] = option.default
            continue
        try:
            out[name] = option.convert(given[name])
        except ValueError as err:
            raise ValueError(f"Judge {kind!r}, option {name}={given[name]!r}: {err} ({option.text})") from None
    return out
