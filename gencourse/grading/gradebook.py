"""The gradebook: one URL builder, one setting, safe concurrent setup, and the grades read back.

**One URL.** Every command that opens the gradebook (``gencourse autograde`` and ``feedback``, the
demo, the tests, and nbgrader itself, the Formgrader included, through
:func:`gencourse.grading.autograder.configure`) takes its URL from :func:`url`: the URL given
(``--db``), else the course's setting, else the course's SQLite file opened with a busy timeout,
so that concurrent graders wait for each other instead of failing.

**One setting.** The course's setting is the file ``gradebook_url.txt`` beside
``nbgrader_config.py`` (not committed: ``.gitignore`` lists it), e.g.
``postgresql://grader:s3cret@dbhost:5432/gencourse``. ``nbgrader_config.py`` reads it, so
``jupyter lab`` (the Formgrader), every ``nbgrader`` command and ``gencourse`` agree without the
URL being passed by hand. It is a file and not an environment variable on purpose: a variable is
inherited by every kernel that grading starts, where a submission's code could read the password
and rewrite its grades; the file is hidden from kernels by :mod:`gencourse.grading.sandbox`, and
when the URL comes from it, gencourse does not put it on its nbgrader children's command lines
either (:func:`child_url`: any process on the machine can read another's command line). This is
a user-facing source of configuration, read by ``nbgrader_config.py``; gencourse's own settings
still cross its internal process boundaries as command options, never as variables.

**Safe concurrent setup.** Two graders started together on an empty database both create the
schema (``CREATE TYPE`` fails in one of them), and on a database without the assignment both run
``generate_assignment --force`` (one fails on a foreign key). :func:`setup_lock` serialises that
first contact: a PostgreSQL *advisory lock* (session level, so a grader that dies releases it
with its connection), or an exclusive lock on a file beside an SQLite gradebook. A lock rather
than "retry on error": ``generate_assignment --force`` rewrites the assignment's rows and the
release folder, so two of them must not overlap at all, and a retry would also have to tell
every other error apart from a lost race; with the lock, the second grader simply re-reads and
finds everything in place.

**One-line errors.** :func:`check` opens the gradebook once before any work and turns a missing
driver, a wrong URL or an unreachable server into a :class:`GradebookError` with one line of
explanation (the password hidden).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .course import CourseError

BUSY_TIMEOUT = 120.0  # seconds an SQLite writer waits for another one
URL_FILE = "gradebook_url.txt"  # the course's gradebook setting, beside nbgrader_config.py
SETUP_LOCK_KEY = 0x67656E63  # the PostgreSQL advisory lock of gradebook setup ("genc"), per database
CONNECT_TIMEOUT = 15  # seconds to reach a database server before giving up


class GradebookError(CourseError):
    """The gradebook cannot be opened; the message says why in one line."""


def sqlite_url(course: Path, busy_timeout: float = BUSY_TIMEOUT) -> str:
    """The course gradebook with a busy timeout: concurrent writers wait instead of failing."""
    return f"sqlite:///{(course / 'gradebook.db').resolve()}?timeout={busy_timeout:g}"


def configured_url(course: Path) -> Optional[str]:
    """The URL in the course's ``gradebook_url.txt`` (its first line that is neither blank nor a
    ``#`` comment), or ``None`` when the course has no such file."""
    path = Path(course) / URL_FILE
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    return None


def url(course: Path, db_url: Optional[str] = None) -> str:
    """The gradebook of ``course``: ``db_url`` when given, else the course's ``gradebook_url.txt``,
    else its SQLite file."""
    return db_url or configured_url(Path(course)) or sqlite_url(Path(course))


def shown(db_url: str) -> str:
    """``db_url`` with its password replaced by ``***``, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(db_url).render_as_string(hide_password=True)
    except Exception:
        return "<the gradebook URL>"


def hide_password(text: str, db_url: Optional[str]) -> str:
    """``text`` with the password of ``db_url`` (if any) replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        secret = make_url(db_url).password if db_url else None
    except Exception:
        secret = None
    return text.replace(secret, "***") if secret else text


def child_url(course: Path, db_url: str) -> Optional[str]:
    """The URL to pass to a child ``nbgrader`` process as ``--CourseDirectory.db_url``: ``db_url``,
    except when it carries a password and is the course's configured one. The child reads that one
    from the course's configuration itself, and a password on a command line can be read by every
    process of the machine (``/proc/<pid>/cmdline``), a submission's kernel included."""
    from sqlalchemy.engine import make_url

    try:
        secret = make_url(db_url).password is not None
    except Exception:
        secret = False
    return None if secret and db_url == configured_url(Path(course)) else db_url


def check(db_url: str) -> None:
    """Open the gradebook once; raise :class:`GradebookError` with one line of explanation when the
    URL is malformed, its driver is not installed, or the server cannot be reached."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    try:
        u = make_url(db_url)
    except ArgumentError:
        raise GradebookError("the gradebook URL is not a database URL; write it as "
                             "postgresql://user:password@host:5432/database") from None
    if u.get_backend_name() == "sqlite":
        return  # a local file, created on first use
    where = shown(db_url)
    try:
        engine = create_engine(u, connect_args=_connect_args(u))
    except NoSuchModuleError:
        raise GradebookError(f"{where}: unknown kind of database {u.drivername!r} "
                             "(a PostgreSQL URL starts with postgresql://)") from None
    except ImportError as e:
        hint = 'pip install "gencourse[postgres]"' if u.get_backend_name() == "postgresql" else "install it"
        raise GradebookError(f"{where} needs the Python package {getattr(e, 'name', None) or 'of its driver'!r}, "
                             f"which is not installed: {hint}") from None
    try:
        with engine.connect():
            pass
    except DBAPIError as e:
        reason = hide_password(" ".join(str(e.orig).split()) or type(e.orig).__name__, db_url)
        raise GradebookError(f"cannot open the gradebook {where}: {reason}") from None
    finally:
        engine.dispose()


def _connect_args(u) -> dict:
    """A connection timeout for servers (libpq otherwise waits for TCP's, minutes)."""
    if u.get_backend_name() == "postgresql" and "connect_timeout" not in u.query:
        return {"connect_timeout": CONNECT_TIMEOUT}
    return {}


@contextlib.contextmanager
def setup_lock(db_url: str):
    """Hold the gradebook's setup lock while the ``with`` block runs (see the module docstring):
    a PostgreSQL advisory lock, or an exclusive ``flock`` of ``<gradebook>.lock`` beside an
    SQLite file. Other databases get no lock."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    u = make_url(db_url)
    if u.get_backend_name() == "postgresql":
        engine = create_engine(u, connect_args=_connect_args(u))
        try:
            # autocommit: hold the (session-level) lock without keeping a transaction open
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SETUP_LOCK_KEY})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SETUP_LOCK_KEY})
        finally:
            engine.dispose()
    elif u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
        import fcntl

        fd = os.open(f"{u.database}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock
    else:
        yield


def missing_autograded(course: Path, assignment: str, db_url: Optional[str] = None) -> list:
    """Students with a submission of ``assignment`` in the gradebook whose autograded notebooks are
    not in this machine's ``autograded/`` (graded on another machine whose course folder is not
    shared with this one): ``nbgrader generate_feedback`` skips them without a word."""
    from nbgrader.api import Gradebook

    with Gradebook(url(course, db_url)) as gb:
        graded = sorted(sub.student.id for sub in gb.assignment_submissions(assignment))
    return [s for s in graded if not (Path(course) / "autograded" / s / assignment).is_dir()]


def feedback(course: Path, assignment: str, db_url: Optional[str] = None) -> list:
    """``nbgrader generate_feedback <assignment> --force`` for every student whose autograded
    notebooks are here; returns the graded students who got no feedback because theirs are not
    (see :func:`missing_autograded`)."""
    from .course import nbgrader

    course = Path(course).resolve()
    db_url = url(course, db_url)
    check(db_url)
    missing = missing_autograded(course, assignment, db_url)
    nbgrader(course, "generate_feedback", assignment, "--force", db_url=child_url(course, db_url))
    return missing


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
