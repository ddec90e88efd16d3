"""``dataigm concepts``: the taxonomy tree with the concepts at its leaves; ``concepts show ID``."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from ..taxonomy import tree
from .common import ConceptsDirOption, command_parser, registry_of
from .options import add_options

HELP = "print the CatIGMU taxonomy with the concepts at its leaves, or one concept"


@dataclass
class ShowOptions:
    """``dataigm concepts show``.

    Attributes:
        id: concept id
    """

    id: str


def configure(parser) -> None:
    add_options(parser, ConceptsDirOption)
    sub = parser.add_subcommands(dest="action", required=False)
    show = command_parser("print one concept")
    sub.add_subcommand("show", show, help="print one concept as YAML")
    add_options(show, ShowOptions, positional=("id",))


def format_tree(registry) -> str:
    by_category = registry.by_category()
    lines = ["CatIGMU"]
    for scope, natures in tree().items():
        lines.append(f"  {scope}")
        for nature, tasks in natures.items():
            lines.append(f"    {nature}")
            for task in tasks:
                members = by_category.get(f"{scope}/{nature}/{task}", [])
                names = ", ".join(f"{c.id}" + (f" ({c.binding})" if c.binding else "") for c in members)
                lines.append(f"      {task}: {names or '-'}")
    return "\n".join(lines)


def run(cfg) -> int:
    registry = registry_of(cfg)
    if cfg.get("action") == "show":
        concept = registry.get(cfg.show.id)
        print(yaml.safe_dump(concept.to_dict(), sort_keys=False, allow_unicode=True), end="")
    else:
        print(format_tree(registry))
    return 0
