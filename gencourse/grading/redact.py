"""Redacted sources: the library as a student's kernel sees it while an assignment is graded.

The reference library is public (lectures use it), so the guarantee that a submission cannot borrow
the reference has to come from the grader. While assignment ``a`` is graded, the sandbox
(:func:`gencourse.grading.sandbox.hide_references`) mounts, over the source file of every module
that defines one of ``a``'s graded references, a copy in which those functions, classes or methods
(the ``reference`` and ``hides`` of each check, followed through re-exports to where they are
defined) are replaced by stubs raising ``GradingIntegrityError("gencourse.mle.gaussian_mle is not
available while a1_maximum_likelihood is graded: write your own")``. Everything else in the module
is left as it is, on the same lines, so data, training, plotting, helpers and other model families
keep working; lectures and students outside grading keep the whole library.

Every route then meets the stub: ``import``, an alias, ``importlib``, ``exec(open(module.__file__)
.read())``, ``inspect.getsource``, the sealed copy (read from the same files), an installed copy of
the package in site-packages (redacted too). The ``__pycache__`` folders are hidden, and so are the
simulated students and the alternative solution of the assignment, and the checkout's solutions,
tests and git history.

Everything here works from the source text (the ``ast`` module): nothing is imported, so it is
cheap enough to run before every kernel starts.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Iterable, Optional

from .catalog import ASSIGNMENTS_DIR, PACKAGE_DIR

#: files of the graded assignment's folder that hold solutions (whole or in parts): emptied
SOLUTION_FILES = ("alternative.py", "students.py")
#: folders of the package's checkout that hold solutions, tests or history: hidden
CHECKOUT_DIRS = (".git", "solutions", "tests", "build")

#: the body of every stub: self-contained, so a stub copied with ``inspect.getsource`` and executed
#: elsewhere still says what happened
_RAISE = 'raise type("GradingIntegrityError", (RuntimeError,), {{}})({message!r})'


def module_path(package_dir: Path, module: str) -> Path:
    """``gencourse/<module as a path>.py`` (``"grading.assignments.a1.checks"`` -> ``.../checks.py``)."""
    return package_dir.joinpath(*module.split(".")).with_suffix(".py")


def check_targets(assignment: str, assignments_dir: Path = ASSIGNMENTS_DIR) -> list:
    """``"module:qualname"`` of every check of ``assignment``: its ``reference`` and its ``hides``,
    read from ``checks.py`` without importing it."""
    tree = ast.parse((assignments_dir / assignment / "checks.py").read_text())
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Check"):
            continue
        ref = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "reference"), None)
        if isinstance(ref, ast.Constant) and isinstance(ref.value, str):
            out.append(ref.value)
        for k in node.keywords:
            if k.arg == "hides" and isinstance(k.value, (ast.Tuple, ast.List)):
                out += [e.value for e in k.value.elts if isinstance(e, ast.Constant)]
    return list(dict.fromkeys(out))


def _relative_module(module: str, node: ast.ImportFrom) -> Optional[str]:
    """The gencourse-relative module an ``ImportFrom`` inside ``module`` reads from (``None``: outside gencourse)."""
    if node.level == 0:
        name = node.module or ""
        return name[len("gencourse."):] if name.startswith("gencourse.") else None
    package = ["gencourse"] + module.split(".")[:-1]
    base = package[:len(package) - (node.level - 1)]
    full = base + ([node.module] if node.module else [])
    return ".".join(full[1:]) if len(full) > 1 and full[0] == "gencourse" else None


def resolve(package_dir: Path, target: str, _seen=None) -> Optional[tuple]:
    """``(module, qualname)`` where ``"module:qualname"`` is defined, following ``from .x import name``
    re-exports; ``None`` when it cannot be found in ``package_dir``."""
    module, qualname = target.split(":")
    seen = _seen or set()
    if (module, qualname) in seen:
        return None
    seen.add((module, qualname))
    path = module_path(package_dir, module)
    if not path.is_file():
        return None
    top = qualname.split(".")[0]
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == top:
            return module, qualname
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            names = [t.id for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)]
            if top in names:
                return module, qualname
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == top:
                    source = _relative_module(module, node)
                    if source is not None:
                        rest = qualname.split(".")[1:]
                        return resolve(package_dir, f"{source}:{'.'.join([alias.name] + rest)}", seen)
    return None


def redaction_plan(package_dir: Path, assignment: str, assignments_dir: Path = ASSIGNMENTS_DIR) -> dict:
    """``{module: {qualname, ...}}``: what to redact in which module while ``assignment`` is graded."""
    plan: dict = {}
    for target in check_targets(assignment, assignments_dir):
        found = resolve(package_dir, target)
        if found is not None:
            plan.setdefault(found[0], set()).add(found[1])
    return plan


def find_definition(body: list, qualname: str):
    """The statement of ``body`` defining ``qualname`` (``"f"``, ``"Class.method"``) and its class, if any."""
    head, _, rest = qualname.partition(".")
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == head:
            if not rest:
                return node
            return find_definition(node.body, rest) if isinstance(node, ast.ClassDef) else None
        if not rest and isinstance(node, (ast.Assign, ast.AnnAssign)):
            names = [t.id for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)]
            if head in names:
                return node
    return None


def _stub(node, source: str, dotted: str, assignment: str) -> list:
    """The lines replacing ``node``: same name and kind, a body that raises."""
    line = source.splitlines()[node.lineno - 1]
    indent = line[:len(line) - len(line.lstrip())]
    call = _RAISE.format(message=f"{dotted} is not available while {assignment} is graded: write your own")
    if isinstance(node, ast.ClassDef):
        bases = [ast.get_source_segment(source, b) for b in node.bases]
        bases += [f"{k.arg}={ast.get_source_segment(source, k.value)}" for k in node.keywords if k.arg]
        head = f"{indent}class {node.name}({', '.join(bases)}):" if bases else f"{indent}class {node.name}:"
        return [head, f"{indent}    def __init__(self, *args, **kwargs):", f"{indent}        {call}"]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        keep = [f"{indent}@{ast.get_source_segment(source, d)}" for d in node.decorator_list
                if isinstance(d, ast.Name) and d.id in ("property", "classmethod", "staticmethod")]
        return keep + [f"{indent}def {node.name}(*args, **kwargs):", f"{indent}    {call}"]
    names = [t.id for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)]
    return [f"{indent}def {names[0]}(*args, **kwargs):", f"{indent}    {call}"]


def redact_source(source: str, qualnames: Iterable[str], module: str, assignment: str) -> str:
    """``source`` with each of ``qualnames`` replaced by a stub raising ``GradingIntegrityError``.

    Every other line stays where it was (a stub is padded with blank lines to the length of what it
    replaces), so tracebacks through the rest of the module still point at the right lines.
    """
    tree = ast.parse(source)
    nodes = []
    for q in qualnames:
        node = find_definition(tree.body, q)
        if node is not None:
            nodes.append((q, node))
    lines = source.splitlines()
    for q, node in sorted(nodes, key=lambda qn: -qn[1].lineno):
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        end = node.end_lineno
        stub = _stub(node, source, f"gencourse.{module}.{q}", assignment)
        if len(stub) < end - start:
            stub += [""] * (end - start - len(stub))
        lines[start:end] = stub
    return "\n".join(lines) + "\n"


def redacted_files(package_dir: Path, assignment: str, assignments_dir: Path = ASSIGNMENTS_DIR) -> dict:
    """``{path inside package_dir: new text}`` for the graded assignment: its redacted modules, and
    its simulated students and alternative solution emptied."""
    out = {}
    for module, names in sorted(redaction_plan(package_dir, assignment, assignments_dir).items()):
        path = module_path(package_dir, module)
        out[path.relative_to(package_dir)] = redact_source(path.read_text(), sorted(names), module, assignment)
    folder = Path("grading") / "assignments" / assignment
    for name in SOLUTION_FILES:
        if (package_dir / folder / name).is_file():
            out[folder / name] = f'"""Hidden while {assignment} is graded."""\n'
    return out


_EDITABLE = re.compile(r"""["']gencourse["']\s*:\s*["']([^"']+)["']""")


def _editable_targets(folder: Path) -> list:
    """Checkouts that editable installs in ``folder`` (a site-packages) point at: setuptools writes
    their path into ``__editable___<name>_finder.py`` rather than onto ``sys.path``."""
    out = []
    try:
        finders = list(folder.glob("__editable__*gencourse*finder.py"))
    except OSError:
        return out
    for finder in finders:
        try:
            out += [Path(m).parent for m in _EDITABLE.findall(finder.read_text())]
        except OSError:
            continue
    return out


def package_copies(extra: Iterable[Path] = ()) -> list:
    """Every copy of gencourse this Python can import or load by path: the one running, one in each
    entry of ``sys.path`` (an installed, non-editable copy in site-packages included), and the
    checkouts that editable installs on ``sys.path`` point at."""
    entries = [Path(p) for p in sys.path if p]
    found = []
    for base in [PACKAGE_DIR.parent, *entries, *(t for e in entries for t in _editable_targets(e)), *extra]:
        pkg = (base / "gencourse") if base.name != "gencourse" else base
        try:
            if (pkg / "grading" / "catalog.py").is_file():
                found.append(pkg.resolve())
        except OSError:
            continue
    return list(dict.fromkeys(found))


def checkout_dirs(package_dir: Path) -> list:
    """Folders of the checkout holding ``package_dir`` that must be hidden (solutions, tests, history)."""
    root = package_dir.parent
    if not ((root / "pyproject.toml").is_file() or (root / ".git").exists()):
        return []  # an installed copy: no checkout around it
    return [root / d for d in CHECKOUT_DIRS if (root / d).is_dir()]
