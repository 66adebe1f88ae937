"""The package's layout is its architecture: stages in layers, no import cycles, private APIs only in compat.

Read from the source with ``ast`` (nothing is imported): every ``import``/``from ... import`` of a
bertstory module, at module level or inside a function, is an edge of the dependency graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "bertstory"

# Each stage may import its own modules and those of the layers below it, never above.
LAYERS = [
    {"errors", "files", "compat", "cli", "forking"},  # plumbing every stage uses
    {"data", "models", "stats"},  # what a run reads and the formulas it applies
    {"attribution"},  # methods, on top of the models
    {"results"},  # the stored run: metrics.json, shards, summaries, figures, report
    {"viewer"},  # the interactive viewer.html, built from the stored run
    {"run"},  # the analysis itself: writes what results reads
    {"finetune"},  # train.py: builds on data, models and the run's plumbing
    {"summary", "compare", "report", "sweep"},  # ``python -m bertstory.X`` entry points
]
MAX_LINES = 450
LONG_ALLOWED = {"bertstory/attribution/engine.py"}  # the hand-linearised engine is one idea


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imported(path: Path, name: str) -> set[str]:
    """The bertstory modules (or packages) that the module ``name`` at ``path`` imports."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("bertstory")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith("bertstory"):
                out.add(base)
    return out


def stage(module: str) -> str:
    """``bertstory.results.report`` -> ``results``; ``bertstory`` itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer(module: str) -> int:
    s = stage(module)
    for i, names in enumerate(LAYERS):
        if s in names:
            return i
    raise AssertionError(f"{module}: stage {s!r} is in no layer of tests/test_layout.py")


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m in imported(path, name) if m != name} for name, path in mods.items()}


def test_every_stage_imports_only_its_own_layer_and_below():
    bad = []
    for module, deps in graph().items():
        if module == "bertstory":
            continue
        for dep in deps:
            if dep != "bertstory" and stage(dep) != stage(module) and layer(dep) > layer(module):
                bad.append(f"{module} -> {dep}")
    assert not bad, "imports that go up a layer: " + ", ".join(sorted(bad))


def test_no_import_cycles():
    g = graph()
    mods = set(g)

    def resolve(dep: str) -> str | None:  # ``bertstory.data`` imports resolve to the package's __init__
        return dep if dep in mods else None

    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g[node]):
            target = resolve(dep)
            if target is None or target == node:
                continue
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]) if target in path else target)
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(cycles)


def private_uses(path: Path) -> list[str]:
    """Private names of other libraries used in a module: ``obj._name`` on anything but ``self``/``cls``,
    and ``from lib import _name``."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            out.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("bertstory") and node.level == 0:
            out += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def test_private_apis_of_other_libraries_only_in_compat():
    found = [use for name, path in modules().items() if name != "bertstory.compat" for use in private_uses(path)]
    assert not found, "private names outside bertstory/compat.py: " + "; ".join(found)


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")))
def test_no_module_is_longer_than_one_idea_needs(path):
    lines = len((ROOT / path).read_text().splitlines())
    assert path in LONG_ALLOWED or lines <= MAX_LINES, f"{path} has {lines} lines (max {MAX_LINES}): split it"


def test_the_layout_test_sees_the_edges():
    """The scanner finds known edges (a test of the test)."""
    g = graph()
    assert "bertstory.results.run_metrics" in g["bertstory.run.analysis"]
    assert "bertstory.compat" in g["bertstory.stats.collection"]
    assert any(use.endswith("._update_count") for use in private_uses(PACKAGE / "compat.py"))


# ------------------------------------------------------------------------------ slow tests

STARTS_PROCESS = ("subprocess.", "analyze(", "run_once(", "sys.executable")


def unmarked_process_tests(path: Path) -> list[str]:
    """Tests of ``path`` that start a subprocess (directly or through a module fixture) without ``slow``."""
    tree = ast.parse(path.read_text())
    if any(isinstance(n, ast.Assign) and "pytestmark" in ast.unparse(n.targets[0]) and "slow" in ast.unparse(n.value)
           for n in tree.body):
        return []
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    starting: set[str] = set()
    grew = True
    while grew:  # fixtures that start a process, or use a fixture that does
        grew = False
        for fn in funcs:
            decorators = " ".join(ast.unparse(d) for d in fn.decorator_list)
            uses = {a.arg for a in fn.args.args}
            if fn.name not in starting and "fixture" in decorators and (
                    any(k in ast.unparse(fn) for k in STARTS_PROCESS) or uses & starting):
                starting.add(fn.name)
                grew = True
    return [fn.name for fn in funcs if fn.name.startswith("test_")
            and (any(k in ast.unparse(fn) for k in STARTS_PROCESS) or {a.arg for a in fn.args.args} & starting)
            and "slow" not in " ".join(ast.unparse(d) for d in fn.decorator_list)]


@pytest.mark.parametrize("path", sorted((ROOT / "tests").rglob("test_*.py")), ids=lambda p: p.name)
def test_tests_that_start_a_process_are_marked_slow(path):
    assert unmarked_process_tests(path) == [], "mark these @pytest.mark.slow (each process costs ~10 s)"
