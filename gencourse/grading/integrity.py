"""The integrity report: submissions whose code touches grading internals, for a human to review.

Nothing here changes a grade (the autograder already confirms every check outside the notebook);
it points an instructor at code worth reading: replacing the reference or the grading helpers,
hiding errors, custom equality, reading files outside the submission's folder.
"""
from __future__ import annotations

import re
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


def scan_notebook(nb, reference_mods=()) -> list:
    """``(cell id, line number, line, reason)`` for each suspicious line of the student's cells."""
    patterns = list(PATTERNS)
    if reference_mods:
        mods = "|".join(sorted(reference_mods))
        patterns.append((rf"gencourse\s*\.\s*({mods})\b|from\s+gencourse\s+import\s+.*\b({mods})\b"
                         rf"|from\s+gencourse\.({mods})\s+import", "calls the reference implementation"))
    hits = []
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or meta.get("locked"):
            continue  # locked cells are replaced by the instructor's version before grading
        for n, line in enumerate(cell.source.splitlines(), 1):
            for pattern, reason in patterns:
                if re.search(pattern, line):
                    hits.append((meta.get("grade_id", f"cell {i}"), n, line.strip()[:120], reason))
                    break
    return hits


def scan_submission(course: Path, assignment: str, student: str) -> list:
    from .catalog import assignment_checks

    mods = reference_modules(assignment_checks(assignment))
    hits = []
    for path in sorted((course / "submitted" / student / assignment).glob("*.ipynb")):
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:
            continue
        hits += [(path.name, *h) for h in scan_notebook(nb, mods)]
    return hits


def write_report(course: Path, assignment: str, students) -> Path:
    """Write ``reports/integrity_<assignment>.md`` and return its path."""
    out = course / "reports" / f"integrity_{assignment}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# Integrity report: {assignment}", "",
             "Code in students' own cells that touches grading internals. Grades are already confirmed "
             "outside the notebooks; these are lines for a human to read.", ""]
    flagged = 0
    for s in students:
        hits = scan_submission(course, assignment, s)
        if not hits:
            continue
        flagged += 1
        lines.append(f"## {s}")
        lines += [f"- `{nb}` {cell}, line {n}: {reason}: `{line}`" for nb, cell, n, line, reason in hits]
        lines.append("")
    lines.insert(4, f"{flagged} of {len(list(students))} submissions flagged.\n")
    out.write_text("\n".join(lines))
    return out
