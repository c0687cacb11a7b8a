"""The instructor's pipeline on a course directory: release, collect, autograde, feedback, export.

Each step runs the real nbgrader command (``python -m nbgrader ...``) in the course directory, so
what works here works the same for an instructor typing the commands. :func:`demo` runs it all on
a simulated class in a temporary directory.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import nbformat

from . import simulate

CONFIG_NAME = "nbgrader_config.py"


class CourseError(RuntimeError):
    """A step of the pipeline failed; the message says which and why."""


def find_course_root(start: Optional[os.PathLike] = None) -> Path:
    """The folder holding ``solutions/`` and ``nbgrader_config.py``: ``start`` or a parent, else the
    checkout gencourse was installed from."""
    candidates = []
    here = Path(start or os.getcwd()).resolve()
    candidates += [here, *here.parents]
    candidates.append(Path(__file__).resolve().parent.parent)
    for c in candidates:
        if (c / "solutions").is_dir() and (c / CONFIG_NAME).is_file():
            return c
    raise CourseError("no course found: run this inside a gencourse checkout (a folder with solutions/ "
                      "and nbgrader_config.py), or pass --course")


def assignments(root: Path) -> list:
    """Assignment names: the folders of ``solutions/`` that hold a notebook."""
    return sorted(p.name for p in (root / "solutions").iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def _env(timeout: Optional[int] = None) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # nbgrader runs alembic
    env.setdefault("PYTHONHASHSEED", "0")
    env.setdefault("MPLBACKEND", "Agg")
    if timeout is not None:
        env["GENCOURSE_CELL_TIMEOUT"] = str(timeout)
    return env


def nbgrader(course: Path, *args: str, timeout: Optional[int] = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``nbgrader <args>`` in ``course`` and return the finished process."""
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"], cwd=course,
                          env=_env(timeout), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise CourseError(f"nbgrader {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def new_course(dest: Path, root: Path, names: Iterable[str]) -> Path:
    """A fresh course directory at ``dest`` with the sources of ``names`` and the course config."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(root / CONFIG_NAME, dest / CONFIG_NAME)
    for name in names:
        shutil.copytree(root / "solutions" / name, dest / "solutions" / name,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return dest


def generate(course: Path, name: str) -> None:
    """``nbgrader generate_assignment``: solutions/<name> -> assignments/<name>."""
    nbgrader(course, "generate_assignment", name, "--force")


def release(root: Path, names: Optional[Iterable[str]] = None, dest: Optional[Path] = None) -> list:
    """Regenerate the student release of ``names`` (default all) into ``dest`` (default
    ``root/assignments``), working in a temporary course so that no gradebook is left behind.
    Returns the written notebook paths."""
    names = list(names or assignments(root))
    dest = Path(dest or root / "assignments")
    written = []
    with tempfile.TemporaryDirectory(prefix="gencourse-release-") as tmp:
        course = new_course(Path(tmp), root, names)
        for name in names:
            generate(course, name)
            out = dest / name
            if out.exists():
                shutil.rmtree(out)
            shutil.copytree(course / "assignments" / name, out)
            written += sorted(out.glob("*.ipynb"))
    return written


def release_differences(root: Path) -> list:
    """Assignments whose committed release differs from one generated now from ``solutions/``."""
    stale = []
    with tempfile.TemporaryDirectory(prefix="gencourse-sync-") as tmp:
        release(root, dest=Path(tmp))
        for name in assignments(root):
            fresh = sorted(p.relative_to(Path(tmp)) for p in (Path(tmp) / name).rglob("*") if p.is_file())
            committed_dir = root / "assignments" / name
            committed = sorted(p.relative_to(root / "assignments") for p in committed_dir.rglob("*")
                               if p.is_file() and ".ipynb_checkpoints" not in p.parts) if committed_dir.exists() else []
            if fresh != committed:
                stale.append(f"{name}: files differ ({[str(p) for p in fresh]} vs {[str(p) for p in committed]})")
                continue
            for rel in fresh:
                a, b = Path(tmp) / rel, root / "assignments" / rel
                same = (json.loads(a.read_text()) == json.loads(b.read_text())) if rel.suffix == ".ipynb" \
                    else a.read_bytes() == b.read_bytes()
                if not same:
                    stale.append(f"{rel} is out of date with solutions/")
    return stale


def submit(course: Path, assignment: str, student: str, notebooks: dict) -> Path:
    """Place a student's notebooks where ``nbgrader collect`` would: submitted/<student>/<assignment>/."""
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    for filename, nb in notebooks.items():
        if isinstance(nb, (str, bytes)):
            (folder / filename).write_text(nb) if isinstance(nb, str) else (folder / filename).write_bytes(nb)
        else:
            nbformat.write(nb, folder / filename)
    (folder / "timestamp.txt").write_text("2026-11-20 12:00:00.000000 UTC")
    return folder


def simulated_notebooks(course: Path, assignment: str, student: simulate.Student) -> dict:
    """The notebooks of a simulated student, built from the course's release and source."""
    out = {}
    for release_path in sorted((course / "assignments" / assignment).glob("*.ipynb")):
        source = nbformat.read(course / "solutions" / assignment / release_path.name, as_version=4)
        rel = nbformat.read(release_path, as_version=4)
        out[release_path.name] = simulate.build_submission(rel, source, student.kind, assignment, student.mutations)
    return out


@dataclass
class Score:
    student: str
    cell: str
    score: float
    max_score: float
    auto: bool
    pending: bool = False  # awaits manual grading


def scores(course: Path, assignment: str) -> list:
    """Every graded cell of every submission of ``assignment`` in the course's gradebook."""
    from nbgrader.api import Gradebook

    out = []
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for sub in gb.assignment_submissions(assignment):
            for nb in sub.notebooks:
                for g in nb.grades:
                    out.append(Score(sub.student.id, g.name, float(g.score), float(g.max_score),
                                     g.cell.cell_type == "code", bool(g.needs_manual_grade)))
    return sorted(out, key=lambda s: (s.student, s.cell))


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
        names = [a for a in simulate.DEMO_CLASS if (root / "solutions" / a).is_dir()]
        new_course(course, root, names)
        for assignment in names:
            t0 = time.perf_counter()
            out(f"[1/5] nbgrader generate_assignment {assignment}")
            generate(course, assignment)
            students = simulate.DEMO_CLASS[assignment]
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
