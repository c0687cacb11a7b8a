"""The shape of the package: the library never reaches into grading, no import cycles, one folder per
assignment discovered by name, simulated students that are real (linted, applicable) code."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from gencourse.grading import catalog, course, simulate

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "gencourse"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set:
    """Every gencourse module ``path`` imports (static, lazy ones inside functions included)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "gencourse"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "gencourse":
                continue
            for alias in node.names:  # `from . import x` may name a submodule
                sub = f"{mod}.{alias.name}"
                out.add(sub if (PKG.parent / (sub.replace(".", "/") + ".py")).exists()
                        or (PKG.parent / sub.replace(".", "/")).is_dir() else mod)
    return out


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}
GRAPH = {m: {i for i in _imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}


def test_library_never_imports_grading():
    library = [m for m in MODULES if not m.startswith("gencourse.grading")]
    assert len(library) >= 8
    offenders = {m: sorted(i for i in GRAPH[m] if i.startswith("gencourse.grading")) for m in library}
    assert not {m: v for m, v in offenders.items() if v}


def test_import_graph_has_no_cycle():
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_the_cycle_detector_finds_a_cycle(monkeypatch):
    # the test above must be able to fail: plant a cycle and watch it being found
    monkeypatch.setitem(GRAPH, "gencourse.data", GRAPH["gencourse.data"] | {"gencourse.train"})
    monkeypatch.setitem(GRAPH, "gencourse.train", GRAPH["gencourse.train"] | {"gencourse.data"})
    with pytest.raises(AssertionError, match="import cycle"):
        test_import_graph_has_no_cycle()


def test_every_assignment_has_one_folder_with_checks_and_students():
    names = course.assignments(ROOT)
    assert names and catalog.assignment_names() == names
    registry = catalog.registry(sealed=False)
    for name in names:
        folder = catalog.ASSIGNMENTS_DIR / name
        assert {"checks.py", "students.py", "alternative.py"} <= {p.name for p in folder.iterdir()}, name
        prefix = {c.name.split(".")[0] for c in catalog.assignment_checks(name)}
        assert len(prefix) == 1 and all(c in registry for c in (c.name for c in catalog.assignment_checks(name)))


@pytest.mark.parametrize("assignment", course.assignments(ROOT))
def test_simulated_students_apply_to_the_notebook(assignment):
    source = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    solution_cells = set(simulate.solution_sources(source))
    alternative = simulate.alternative_cells(assignment)
    assert alternative and set(alternative) <= solution_cells
    for name in simulate.mutation_table(assignment):  # raises when a snippet is not in its cell
        simulate.build_submission(source, source, "mutation", assignment, (name,))
    for student, (kind, mutations, lost) in simulate.students(assignment).E2E.items():
        assert kind in ("complete", "untouched", "alternative", "mutation"), student
        assert set(mutations) <= set(simulate.mutation_table(assignment)), student


def test_alternative_solutions_are_linted_python():
    files = sorted(catalog.ASSIGNMENTS_DIR.glob("*/alternative.py"))
    assert files
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed: pip install -e '.[dev]'")
    proc = subprocess.run([ruff, "check", "--select", "F,E9", "--output-format", "concise",
                           *map(str, files), str(catalog.ASSIGNMENTS_DIR)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_notebooks_train_for_a_fixed_number_of_steps():
    """No wall-clock training budget in a lecture, solution or release: a slow laptop must get the
    same model as a fast one (``fit(..., max_seconds=...)`` is for benchmarks only)."""
    import json

    offenders = []
    for nb in sorted(ROOT.glob("lectures/*.ipynb")) + sorted(ROOT.glob("solutions/*/*.ipynb")) + sorted(
            ROOT.glob("assignments/*/*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            if cell["cell_type"] == "code" and "max_seconds" in "".join(cell["source"]):
                offenders.append(f"{nb.relative_to(ROOT)} cell {i}")
    assert not offenders, f"wall-clock training budgets: {offenders}"
