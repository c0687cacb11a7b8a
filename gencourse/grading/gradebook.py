"""The gradebook: one URL builder, and the grades read back.

Every command that opens the gradebook (``gencourse autograde``, the demo, the tests, and nbgrader
itself through :func:`gencourse.grading.autograder.configure`) takes its URL from :func:`url`: the
URL given (``--db``, e.g. a shared PostgreSQL server), else the course's SQLite file opened with a
busy timeout, so that concurrent graders wait for each other instead of failing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

BUSY_TIMEOUT = 120.0  # seconds an SQLite writer waits for another one


def sqlite_url(course: Path, busy_timeout: float = BUSY_TIMEOUT) -> str:
    """The course gradebook with a busy timeout: concurrent writers wait instead of failing."""
    return f"sqlite:///{(course / 'gradebook.db').resolve()}?timeout={busy_timeout:g}"


def url(course: Path, db_url: Optional[str] = None) -> str:
    """The gradebook of ``course``: ``db_url`` when given, else its SQLite file."""
    return db_url or sqlite_url(Path(course))


@dataclass
class Score:
    student: str
    cell: str
    score: float
    max_score: float
    auto: bool
    pending: bool = False  # awaits manual grading


def scores(course: Path, assignment: str, db_url: Optional[str] = None) -> list:
    """Every graded cell of every submission of ``assignment`` in the course's gradebook."""
    from nbgrader.api import Gradebook

    out = []
    with Gradebook(url(course, db_url)) as gb:
        for sub in gb.assignment_submissions(assignment):
            for nb in sub.notebooks:
                for g in nb.grades:
                    out.append(Score(sub.student.id, g.name, float(g.score), float(g.max_score),
                                     g.cell.cell_type == "code", bool(g.needs_manual_grade)))
    return sorted(out, key=lambda s: (s.student, s.cell))


def graded_state(course: Path, assignment: str, student: str, db_url: str):
    """``(complete, score, max_score)`` of a student's submission in the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        try:
            sub = gb.find_submission(assignment, student)
        except MissingEntry:
            return False, None, None
        grades = [g for nb in sub.notebooks for g in nb.grades]
        # every autograded (code) cell needs a score; written answers may await a human
        complete = (course / "autograded" / student / assignment).is_dir() and bool(grades) and all(
            g.auto_score is not None or g.manual_score is not None for g in grades if g.cell.cell_type == "code")
        return complete, float(sub.score), float(sub.max_score)


def record_zero(course: Path, assignment: str, student: str, db_url: str) -> None:
    """Record a submission with no gradeable notebook: every part gets 0 (what nbgrader does for
    a missing notebook when at least one other notebook is present)."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        gb.update_or_create_student(student)
        sub = gb.update_or_create_submission(assignment, student)
        for nb in sub.notebooks:
            for g in nb.grades:
                g.auto_score, g.needs_manual_grade = 0, False
            for c in nb.comments:
                c.auto_comment = "No readable notebook was submitted."
        gb.db.commit()
    out = course / "autograded" / student / assignment
    out.mkdir(parents=True, exist_ok=True)
    (out / "NO_NOTEBOOK.txt").write_text("No readable notebook was submitted; every part was recorded as 0.\n")
