"""The test suite's own rules: test modules share code through ``tests/helpers`` and fixtures, never by
importing each other or ``conftest``; whole-job tests carry the ``slow`` marker (``make test-fast``)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent
# calls that run a whole job: a test making one is marked slow
WHOLE_JOBS = {"kill_mid_run", "run_demo"}


def _modules() -> dict[str, ast.Module]:
    return {p.name: ast.parse(p.read_text()) for p in sorted(TESTS.glob("test_*.py"))}


def _imported(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." if node.level else (node.module or "").split(".")[0])
    return names


def test_no_test_module_imports_another_test_module_or_conftest():
    local = {p.stem for p in TESTS.glob("*.py")}  # test_*, conftest
    offenders = {name: sorted(_imported(tree) & (local | {"."})) for name, tree in _modules().items()}
    assert {name: found for name, found in offenders.items() if found} == {}


def _is_slow(node: ast.FunctionDef, module: ast.Module) -> bool:
    marks = [ast.unparse(d) for d in node.decorator_list]
    module_marks = [
        ast.unparse(s.value)
        for s in module.body
        if isinstance(s, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in s.targets)
    ]
    return any("mark.slow" in m for m in marks + module_marks)


def test_tests_that_run_whole_jobs_are_marked_slow():
    unmarked = []
    for name, tree in _modules().items():
        fixtures_running_jobs = set()
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            called = {
                getattr(c.func, "id", getattr(c.func, "attr", None)) for c in ast.walk(node) if isinstance(c, ast.Call)
            }
            runs_job = bool(called & WHOLE_JOBS) or bool({a.arg for a in node.args.args} & fixtures_running_jobs)
            if node.name.startswith("test_"):
                if runs_job and not _is_slow(node, tree):
                    unmarked.append(f"{name}::{node.name}")
            elif runs_job:  # a fixture or helper that runs a job: its users are whole-job tests too
                fixtures_running_jobs.add(node.name)
    assert unmarked == []
