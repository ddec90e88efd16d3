"""The import direction between the four packages (docs/architecture.md), checked on the source.

Module-level imports only: a command or the evaluation flow may import another package inside the
function that needs it (lazily), which keeps ``import dataigm`` light and the graph acyclic.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dataigm", "generation", "detectors", "cards")
# What each package may import at module level (besides itself).
ALLOWED = {
    "dataigm": set(),
    "generation": {"dataigm"},
    "detectors": {"dataigm"},
    "cards": {"dataigm"},
}
# The CLI sits on top of everything: it may import any package, but only inside its commands.
TOP = ("dataigm/cli/",)


def module_level_imports(path: Path) -> set[str]:
    """Top-level package names imported by statements outside functions (incl. ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    continue
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.ClassDef):
                visit(node.body)

    visit(tree.body)
    return found & set(PACKAGES)


def _sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path


@pytest.mark.parametrize(("package", "path"), list(_sources()), ids=lambda x: str(x).replace(str(ROOT) + "/", ""))
def test_module_level_imports_follow_the_direction(package, path):
    rel = path.relative_to(ROOT).as_posix()
    if rel.startswith(TOP):
        return
    imported = module_level_imports(path) - {package}
    forbidden = imported - ALLOWED[package]
    assert not forbidden, (
        f"{rel} imports {sorted(forbidden)} at module level; {package} may import {sorted(ALLOWED[package]) or 'nothing else'}"
    )
