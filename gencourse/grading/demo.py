"""``gencourse demo``: the whole instructor pipeline on a simulated class, in a temporary course.

Regenerates the student release with ``nbgrader generate_assignment``, submits the notebooks of the
simulated students of each assignment's ``DEMO`` class (``grading/assignments/<name>/students.py``),
runs ``nbgrader autograde``, ``generate_feedback`` and ``export``, and prints every grade.
"""
from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path
from typing import Optional

import nbformat

from . import simulate
from .course import CourseError, find_course_root, generate, nbgrader, new_course, submit
from .gradebook import scores


def simulated_notebooks(course: Path, assignment: str, student: simulate.Student) -> dict:
    """The notebooks of a simulated student, built from the course's release and source."""
    out = {}
    for release_path in sorted((course / "assignments" / assignment).glob("*.ipynb")):
        source = nbformat.read(course / "solutions" / assignment / release_path.name, as_version=4)
        rel = nbformat.read(release_path, as_version=4)
        out[release_path.name] = simulate.build_submission(rel, source, student.kind, assignment, student.mutations)
    return out


def score_table(rows: list, notes: Optional[dict] = None) -> str:
    """A plain-text table: one row per student, one column per graded cell, then totals."""
    students = sorted({r.student for r in rows})
    cells = sorted({r.cell for r in rows}, key=lambda c: min(i for i, r in enumerate(rows) if r.cell == c))
    by = {(r.student, r.cell): r for r in rows}
    maxes = {c: next(r.max_score for r in rows if r.cell == c) for c in cells}
    header = ["student"] + [f"{c} /{maxes[c]:g}" for c in cells] + ["total", "note"]  # "?": awaits a grader
    total_max = sum(maxes.values())
    lines = []
    for s in students:
        got = [by.get((s, c)) for c in cells]
        shown = ["-" if r is None else ("?" if r.pending else f"{r.score:g}") for r in got]
        total = sum(r.score for r in got if r is not None)
        lines.append([s] + shown + [f"{total:g}/{total_max:g}", (notes or {}).get(s, "")])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in lines])


def demo(keep: Optional[Path] = None, timeout: int = 15, root: Optional[Path] = None, out=print) -> list:
    """Run the whole instructor pipeline on a simulated class and print the grade table.

    Works in a temporary course directory (or ``keep``), leaving nothing in the repository.
    Returns the scores.
    """
    root = root or find_course_root()
    tmp = None
    if keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="gencourse-demo-")
        course = Path(tmp.name)
    else:
        course = Path(keep)
        if course.exists() and any(course.iterdir()):
            raise CourseError(f"{course} is not empty")
    all_rows = []
    try:
        names = [a for a in simulate.assignments_with("DEMO") if (root / "solutions" / a).is_dir()]
        new_course(course, root, names)
        for assignment in names:
            t0 = time.perf_counter()
            out(f"[1/5] nbgrader generate_assignment {assignment}")
            generate(course, assignment)
            students = simulate.students(assignment).DEMO
            out(f"[2/5] {len(students)} simulated submissions: " + ", ".join(f"{s.name} ({s.note})" for s in students))
            for s in students:
                submit(course, assignment, s.name, simulated_notebooks(course, assignment, s))
            out(f"[3/5] nbgrader autograde {assignment} (per-cell timeout {timeout} s)")
            t = time.perf_counter()
            nbgrader(course, "autograde", assignment, "--force", timeout=timeout)
            out(f"      graded {len(students)} submissions in {time.perf_counter() - t:.1f} s")
            out(f"[4/5] nbgrader generate_feedback {assignment}")
            nbgrader(course, "generate_feedback", assignment, "--force")
            out("[5/5] nbgrader export")
            nbgrader(course, "export", "--to", str(course / "grades.csv"))
            rows = scores(course, assignment)
            all_rows += rows
            with open(course / "grades.csv") as f:
                exported = {r["student_id"]: r for r in csv.DictReader(f) if r["assignment"] == assignment}
            out(f"\nScores for {assignment} ('?' = a written answer awaiting manual grading), "
                f"{time.perf_counter() - t0:.0f} s in all:\n")
            out(score_table(rows, {s.name: s.note for s in students}))
            out("\nExported totals (grades.csv): " + ", ".join(f"{k}={float(v['score']):g}" for k, v in sorted(exported.items())))
            fb = sorted((course / "feedback").rglob("*.html"))
            out(f"Feedback files: {len(fb)} (e.g. {fb[0].relative_to(course)})" if fb else "Feedback files: none")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return all_rows
