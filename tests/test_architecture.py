"""The import direction between the four packages (docs/architecture.md), checked on the source.

Between packages, module-level imports only: a command or the evaluation flow may import another package inside
the function that needs it (lazily), which keeps ``import dataigm`` light and the graph acyclic. Inside a package,
no import circle at all, module-level or inside functions (:func:`test_no_import_circle_inside_a_package`).
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


# ---------------------------------------------------------------- no import circle inside a package

# Circles between modules of one package that are known and tolerated, each with its reason: {frozenset of module
# names: why}. None today (dataigm.ingest <-> dataigm.sources.hub and dataigm.distribute <-> dataigm.shardjob were
# cut: shared pieces moved to a module both import).
KNOWN_CIRCLES: dict[frozenset[str], str] = {}


def _module_names() -> dict[str, tuple[Path, bool]]:
    """``{dotted module name: (file, is a package's __init__)}`` for every module of the four packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def imported_modules(name: str, path: Path, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``name``'s own top-level package that it imports, at module level or inside functions
    (``if TYPE_CHECKING`` blocks left out: they never run). ``from .x import y`` counts as importing the module
    ``x.y`` when there is one, else ``x``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if is_package else name.rpartition(".")[0]
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets.update(f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names)
    out = set()
    for target in targets:
        while target and target not in known:  # a name imported from a module: the module
            target = target.rpartition(".")[0]
        if target and target != name and target.split(".")[0] == name.split(".")[0]:
            out.add(target)
    return out


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        circles.append(sorted(group))
    return circles


def test_the_circle_finder_finds_a_circle_through_a_function_level_import(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from .b import thing\n")
    (tmp_path / "pkg" / "b.py").write_text("def thing():\n    from pkg.a import x\n")
    (tmp_path / "pkg" / "c.py").write_text("from . import a\n")
    known = {"pkg", "pkg.a", "pkg.b", "pkg.c"}
    graph = {
        name: imported_modules(name, tmp_path / (name.replace(".", "/") + ".py"), False, known)
        for name in ("pkg.a", "pkg.b", "pkg.c")
    } | {"pkg": set()}
    assert graph["pkg.c"] == {"pkg.a"}
    assert import_circles(graph) == [["pkg.a", "pkg.b"]]


def test_no_import_circle_inside_a_package():
    """Module-level and function-level imports between modules of one package go one way: a circle means two
    modules that each need the other, so neither can be read (or moved) alone."""
    known = _module_names()
    graph = {name: imported_modules(name, path, is_package, set(known)) for name, (path, is_package) in known.items()}
    circles = [c for c in import_circles(graph) if frozenset(c) not in KNOWN_CIRCLES]
    assert circles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in circles)
    gone = [sorted(c) for c in KNOWN_CIRCLES if list(sorted(c)) not in import_circles(graph)]
    assert gone == [], f"remove these from KNOWN_CIRCLES, they are cut: {gone}"
