"""The CatIGMU taxonomy as data.

Three tiers (scope, nature, task) plus an optional binding strength. A category is written as a path,
``local/concrete/entity``. The valid leaves are listed here once; everything else (ClassLabel names,
CLI choices, the ``dataigm concepts`` tree) is derived from this module.
"""

from __future__ import annotations

from dataclasses import dataclass

TAXONOMY_VERSION = "1"

SCOPES = ("global", "local")
NATURES = ("abstract", "concrete")
TASKS = ("style", "entity", "status", "property", "collective")
BINDINGS = ("strong", "weak")

# The leaves of CatIGMU (paper, Fig. 2): which tasks exist under each scope/nature pair.
LEAVES: tuple[str, ...] = (
    "global/abstract/style",
    "global/concrete/entity",
    "local/abstract/property",
    "local/abstract/status",
    "local/abstract/collective",
    "local/concrete/entity",
)

# Expected output of an unlearned model by kind (CatIGMU Table 4).
EXPECTED_OUTPUTS = ("edit", "remove", "replace", "placeholder")


@dataclass(frozen=True)
class Category:
    """One taxonomy leaf, e.g. ``Category("local", "concrete", "entity")``."""

    scope: str
    nature: str
    task: str

    @property
    def path(self) -> str:
        return f"{self.scope}/{self.nature}/{self.task}"

    def __str__(self) -> str:
        return self.path


def parse_category(path: str) -> Category:
    """Parse ``scope/nature/task`` into a :class:`Category`.

    Raises:
        ValueError: if ``path`` is not one of the taxonomy's leaves; the message lists them.
    """
    if path not in LEAVES:
        raise ValueError(f"Unknown category {path!r}; valid categories are: {', '.join(LEAVES)}")
    return Category(*path.split("/"))


def tree() -> dict[str, dict[str, list[str]]]:
    """The taxonomy as nested ``{scope: {nature: [task, ...]}}`` in a stable order."""
    out: dict[str, dict[str, list[str]]] = {}
    for leaf in LEAVES:
        scope, nature, task = leaf.split("/")
        out.setdefault(scope, {}).setdefault(nature, []).append(task)
    return out
