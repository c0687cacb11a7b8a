"""The integrity report: submissions whose code touches grading internals, and copied code, for a human to review.

Nothing here changes a grade (the autograder already confirms every check outside the notebook, and
the sandbox hides the graded references from the kernel); it points an instructor at code worth
reading:

* lines of students' cells that replace the reference or the grading helpers, hide errors, define
  their own equality, read files outside the submission's folder, or call code that implements a
  graded item and stays reachable because the notebook's own tests use it (``Check.exposed``);
* **copy detection**, MOSS-like: every function and class of every student's solution cells is
  turned into a normalised token sequence (its syntax tree: the names it binds itself, numbers and
  strings replaced by placeholders; comments, docstrings, formatting, parentheses and type hints
  gone), fingerprinted by winnowing hashed k-grams (Schleimer, Wilkerson and Aiken, 2003), and
  compared (Jaccard similarity of fingerprints) with the reference implementations of the graded
  items, with the instructor's solution, and with every other student's code of the same cell. Code
  the notebook gives every student (the release's version of each cell) is subtracted first, like
  MOSS's base file, and functions too short to tell copying from the obvious solution are left
  out. The most similar pairs come first.
"""
from __future__ import annotations

import ast
import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

PATTERNS = [
    (r"gencourse\.grading|_gencourse_sealed|\bcheck\s*=", "touches the grading code"),
    (r"set_custom_exc|showtraceback|sys\.excepthook|InteractiveShell", "changes how errors are reported"),
    (r"sys\.modules|importlib|__import__", "edits or loads modules by hand"),
    (r"\b__builtins__\b|\bbuiltins\b", "touches Python's builtins"),
    (r"def\s+__eq__|__eq__\s*=|def\s+__bool__", "defines its own equality"),
    (r"\b(torch|np|numpy)\s*\.\s*(allclose|isclose|equal|testing)\s*=|setattr\(\s*(torch|np|numpy)", "replaces comparison functions"),
    (r"GENCOURSE_|gradebook|solutions/|autograded/|submitted/|\.\./|os\.environ", "reads grading files or the environment"),
    (r"os\._exit|ctypes|signal\.|subprocess|os\.system|socket", "process-level or system calls"),
]


def reference_modules(assignment_checks) -> set:
    return {c.reference.split(":")[0] for c in assignment_checks}


def exposed_names(assignment_checks) -> set:
    """Last parts of the ``exposed`` names: code that implements a graded item but stays reachable."""
    return {t.split(":")[1].split(".")[-1] for c in assignment_checks for t in getattr(c, "exposed", ())}


def scan_notebook(nb, reference_mods=(), exposed=()) -> list:
    """``(cell id, line number, line, reason)`` for each suspicious line of the student's cells."""
    patterns = list(PATTERNS)
    if reference_mods:
        mods = "|".join(sorted(reference_mods))
        patterns.append((rf"gencourse\s*\.\s*({mods})\b|from\s+gencourse\s+import\s+.*\b({mods})\b"
                         rf"|from\s+gencourse\.({mods})\s+import", "calls the reference implementation"))
    solution_only = []  # patterns for the cells students write in (the given cells use these names)
    if exposed:
        names = "|".join(sorted(map(re.escape, exposed)))
        solution_only.append((rf"\b({names})\s*\(", "calls library code that implements a graded item (left "
                                                       "reachable because the notebook's own tests use it)"))
    hits = []
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or meta.get("locked"):
            continue  # locked cells are replaced by the instructor's version before grading
        for n, line in enumerate(cell.source.splitlines(), 1):
            for pattern, reason in patterns + (solution_only if meta.get("solution") else []):
                if re.search(pattern, line):
                    hits.append((meta.get("grade_id", f"cell {i}"), n, line.strip()[:120], reason))
                    break
    return hits


def _given_lines(course: Path, assignment: str) -> set:
    """The lines of the instructor's notebook (stripped, as reported): code every student is given,
    such as ``from gencourse.pixelcnn import blind_spot`` in an exploration cell, is not the student's."""
    source = course / "solutions" / assignment / f"{assignment}.ipynb"
    if not source.is_file():
        return set()
    try:
        nb = nbformat.read(source, as_version=4)
    except Exception:
        return set()
    return {line.strip()[:120] for c in nb.cells if c.cell_type == "code" for line in c.source.splitlines()}


def scan_submission(course: Path, assignment: str, student: str) -> list:
    from .catalog import assignment_checks

    checks = assignment_checks(assignment)
    mods, exposed = reference_modules(checks), exposed_names(checks)
    given = _given_lines(course, assignment)
    hits = []
    for path in sorted((course / "submitted" / student / assignment).glob("*.ipynb")):
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:
            continue
        hits += [(path.name, *h) for h in scan_notebook(nb, mods, exposed) if h[2] not in given]
    return hits


# --------------------------------------------------------------------------------------------
# Copy detection
# --------------------------------------------------------------------------------------------
K_GRAM = 5  #: tokens per hashed k-gram
WINDOW = 4  #: winnowing window: every run of WINDOW + K_GRAM - 1 identical tokens shares a fingerprint
MIN_FINGERPRINTS = 8  #: smaller functions (after removing the given code) are not compared
REPORTED = 0.5  #: pairs at least this similar are listed
LIKELY_COPY = 0.7  #: and marked as likely copies from here on
_SOLUTION_BLOCK = re.compile(r"^([ \t]*)### BEGIN SOLUTION[ \t]*\n.*?^[ \t]*### END SOLUTION[ \t]*$", re.M | re.S)


def _bound_names(node) -> set:
    """Names the definition binds itself: its own name, arguments, local variables, nested definitions, imports."""
    names = {getattr(node, "name", "")}
    for n in ast.walk(node):
        if isinstance(n, ast.arg):
            names.add(n.arg)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            names.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, ast.alias):
            names.add((n.asname or n.name).split(".")[0])
    return names


def normalized_tokens(node) -> list:
    """The token sequence of a function or class that renaming and reformatting do not change.

    A pre-order walk of its syntax tree: node types; the names it binds itself become ``V`` (names
    from outside, ``torch``, ``logsumexp``, stay); numbers become ``NUM`` and strings ``STR``;
    docstrings, type hints, decorators, comments and layout are gone.
    """
    bound = _bound_names(node)
    out = []

    def visit(n):
        if isinstance(n, (ast.Load, ast.Store, ast.Del)):
            return
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str):
            return  # a docstring or a bare string
        if isinstance(n, ast.Name):
            out.append("V" if n.id in bound else n.id)
        elif isinstance(n, ast.arg):
            out.append("V")
        elif isinstance(n, ast.Constant):
            v = n.value
            out.append("STR" if isinstance(v, (str, bytes)) else
                       "NUM" if isinstance(v, (int, float, complex)) and not isinstance(v, bool) else repr(v))
        elif isinstance(n, ast.Attribute):
            visit(n.value)
            out.append("." + n.attr)
        elif isinstance(n, ast.keyword):
            out.append(f"{n.arg}=")
            visit(n.value)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append("def")
            args = n.args
            out.extend(["V"] * len(args.posonlyargs + args.args + args.kwonlyargs))
            for d in args.defaults + [d for d in args.kw_defaults if d is not None]:
                visit(d)
            for stmt in n.body:
                visit(stmt)
        elif isinstance(n, ast.ClassDef):
            out.append("class")
            for b in n.bases:
                visit(b)
            for stmt in n.body:
                visit(stmt)
        elif isinstance(n, ast.AnnAssign):
            out.append("Assign")
            visit(n.target)
            if n.value is not None:
                visit(n.value)
        else:
            out.append(type(n).__name__)
            for child in ast.iter_child_nodes(n):
                visit(child)

    visit(node)
    return out


def fingerprints(tokens: list) -> frozenset:
    """Winnowed fingerprints of a token sequence: the smallest hash of each window of ``WINDOW`` hashed
    ``K_GRAM``-grams (a stable hash: the same code gives the same fingerprints in every process)."""
    if not tokens:
        return frozenset()
    grams = [" ".join(tokens[i:i + K_GRAM]) for i in range(max(len(tokens) - K_GRAM + 1, 1))]
    hashes = [int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "big") for g in grams]
    return frozenset(min(hashes[i:i + WINDOW]) for i in range(max(len(hashes) - WINDOW + 1, 1)))


def similarity(a: frozenset, b: frozenset) -> float:
    """Jaccard similarity of two fingerprint sets: 1 for code that is the same up to names and layout."""
    return len(a & b) / len(a | b) if a and b else 0.0


def definitions(source: str) -> dict:
    """``name -> node`` of the top-level functions and classes of a cell (``{}`` if it does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def template(source: str) -> str:
    """A solution cell as the release gives it: each solution block replaced by ``raise NotImplementedError()``."""
    return _SOLUTION_BLOCK.sub(lambda m: f"{m.group(1)}raise NotImplementedError()", source)


def solution_cells(nb) -> dict:
    """``grade_id -> source`` of the cells a student writes in (code solution cells)."""
    out = {}
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution") and not meta.get("locked"):
            out[meta.get("grade_id", f"cell {i}")] = cell.source
    return out


@dataclass(frozen=True)
class Similar:
    """One line of the copy table: ``student``'s ``name`` (in cell ``cell``) looks like ``other``."""

    similarity: float
    student: str
    cell: str
    name: str
    other: str


def references(course: Path, assignment: str) -> dict:
    """``label -> fingerprints`` of what students must not copy: the reference implementations of the
    assignment's graded items (as defined in the library, through re-exports) and the instructor's
    solution cells."""
    from . import catalog, redact

    out = {}
    for module, names in sorted(redact.redaction_plan(catalog.PACKAGE_DIR, assignment).items()):
        tree = ast.parse(redact.module_path(catalog.PACKAGE_DIR, module).read_text())
        for q in sorted(names):
            node = redact.find_definition(tree.body, q)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out[f"the reference gencourse.{module}.{q}"] = fingerprints(normalized_tokens(node))
    source = course / "solutions" / assignment / f"{assignment}.ipynb"
    if source.is_file():
        for gid, src in solution_cells(nbformat.read(source, as_version=4)).items():
            for name, node in definitions(re.sub(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", "", src, flags=re.M)).items():
                out[f"the instructor's solution {name} ({gid})"] = fingerprints(normalized_tokens(node))
    return out


def given_code(course: Path, assignment: str) -> frozenset:
    """Fingerprints of the code every student is given (the release's version of each solution cell)."""
    source = course / "solutions" / assignment / f"{assignment}.ipynb"
    if not source.is_file():
        return frozenset()
    base = set()
    for src in solution_cells(nbformat.read(source, as_version=4)).values():
        for node in definitions(template(src)).values():
            base |= fingerprints(normalized_tokens(node))
    return frozenset(base)


def copy_table(course: Path, assignment: str, students) -> list:
    """Every pair at least ``REPORTED`` similar, most similar first: each student's functions against the
    references and the instructor's solution, and against every other student's in the same cell."""
    base = given_code(course, assignment)
    refs = {label: fp - base for label, fp in references(course, assignment).items()}
    refs = {label: fp for label, fp in refs.items() if len(fp) >= MIN_FINGERPRINTS}
    code = {}  # (student, cell, name) -> fingerprints
    for s in students:
        for path in sorted((course / "submitted" / s / assignment).glob("*.ipynb"))[:1]:
            try:
                nb = nbformat.read(path, as_version=4)
            except Exception:
                continue
            for gid, src in solution_cells(nb).items():
                for name, node in definitions(src).items():
                    fp = fingerprints(normalized_tokens(node)) - base
                    if len(fp) >= MIN_FINGERPRINTS:
                        code[(s, gid, name)] = fp
    rows = []
    for (s, gid, name), fp in code.items():
        for label, ref in refs.items():
            sim = similarity(fp, ref)
            if sim >= REPORTED:
                rows.append(Similar(sim, s, gid, name, label))
    for (a, b) in itertools.combinations(sorted(code), 2):
        if a[0] != b[0] and a[1] == b[1]:
            sim = similarity(code[a], code[b])
            if sim >= REPORTED:
                rows.append(Similar(sim, a[0], a[1], a[2], f"{b[0]}'s {b[2]}"))
    return sorted(rows, key=lambda r: (-r.similarity, r.student, r.cell, r.name, r.other))


def write_report(course: Path, assignment: str, students, max_rows: int = 100) -> Path:
    """Write ``reports/integrity_<assignment>.md`` and return its path."""
    from . import sandbox

    students = list(students)
    out = course / "reports" / f"integrity_{assignment}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# Integrity report: {assignment}", "",
             "Code in students' own cells that touches grading internals. Grades are already confirmed "
             "outside the notebooks; these are lines for a human to read.", ""]
    if not sandbox.available():
        lines += ["**The graded references could not be hidden from the kernels**: this system does not allow "
                  "unprivileged user namespaces, so grading ran without the sandbox, and a submission could "
                  "call the reference implementations. Read the lines and the copies below with that in mind.", ""]
    flagged = 0
    for s in students:
        hits = scan_submission(course, assignment, s)
        if not hits:
            continue
        flagged += 1
        lines.append(f"## {s}")
        lines += [f"- `{nb}` {cell}, line {n}: {reason}: `{line}`" for nb, cell, n, line, reason in hits]
        lines.append("")
    lines.insert(4, f"{flagged} of {len(students)} submissions flagged.\n")
    rows = copy_table(course, assignment, students)
    likely = [r for r in rows if r.similarity >= LIKELY_COPY]
    lines += ["# Similar code", "",
              f"Each function and class of the students' cells, normalised (names, numbers, strings, comments and "
              f"layout do not count; the code the notebook gives is left out), compared with the references, the "
              f"instructor's solution and the other students' code of the same cell. Pairs at least {REPORTED:.0%} "
              f"similar, most similar first; from {LIKELY_COPY:.0%} on, a likely copy. "
              f"{len(likely)} likely copies among {len(rows)} pairs listed.", ""]
    if rows:
        lines += ["| similarity | student | cell | function | similar to |", "|---:|---|---|---|---|"]
        lines += [f"| {r.similarity:.0%}{' likely copy' if r.similarity >= LIKELY_COPY else ''} | {r.student} | "
                  f"{r.cell} | `{r.name}` | {r.other} |" for r in rows[:max_rows]]
        if len(rows) > max_rows:
            lines.append(f"\n{len(rows) - max_rows} more pairs not shown.")
    lines.append("")
    out.write_text("\n".join(lines))
    return out
