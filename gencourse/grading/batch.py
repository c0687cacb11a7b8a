"""Grading a whole class: ``gencourse autograde <assignment> --jobs N``.

Every submission is graded by its own ``nbgrader autograde --student S`` process (so the course's
nbgrader settings all apply) with resource limits, N at a time. Around that:

* **before**: each submission folder is checked. A notebook that is not valid JSON (or empty) is
  set aside as ``<name>.unreadable`` so that nbgrader records zero for it instead of crashing; a
  renamed notebook (the expected one missing, exactly one other ``.ipynb``) is graded under its
  expected name; extra files are listed. Every such event is reported for the student.
* **during**: processes write to one gradebook. SQLite gets a busy timeout so that concurrent
  writers wait instead of failing, and a run that still hits "database is locked" is retried
  (grading is idempotent: nbgrader updates the one row per graded cell).
* **after**: the gradebook is read back; a submission counts as graded only when every graded cell
  of every notebook has a score or awaits manual grading. The summary lists graded, skipped
  (already graded; ``--force`` regrades) and failed submissions with the reason, and the command
  exits non-zero when any failed. An integrity report lists code that touches grading internals.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import nbformat

from . import course as course_mod
from . import gradebook
from .gradebook import graded_state, record_zero

LOCKED = "database is locked"


@dataclass
class Outcome:
    student: str
    status: str  # "graded", "skipped", "failed"
    seconds: float = 0.0
    detail: str = ""
    events: list = field(default_factory=list)
    score: Optional[float] = None
    max_score: Optional[float] = None


def expected_notebooks(course: Path, assignment: str) -> list:
    return sorted(p.name for p in (course / "solutions" / assignment).glob("*.ipynb"))


def preflight(course: Path, assignment: str, student: str) -> list:
    """Make a submission folder gradeable; return what was found, as sentences for the report."""
    folder = course / "submitted" / student / assignment
    events = []
    expected = expected_notebooks(course, assignment)
    present = sorted(p.name for p in folder.glob("*.ipynb"))
    for name in expected:
        path = folder / name
        if not path.exists() and (folder / (name + ".unreadable")).exists():
            events.append(f"'{name}' is not a valid notebook (found set aside as '{name}.unreadable' "
                          "by an earlier run): its parts get 0")
            continue
        if not path.exists():
            others = [p for p in present if p not in expected]
            if len(others) == 1:
                shutil.copy(folder / others[0], path)
                events.append(f"notebook submitted as '{others[0]}': graded as '{name}'")
                present.remove(others[0])
            else:
                events.append(f"no notebook '{name}': its parts get 0")
            continue
        problem = None
        try:
            raw = path.read_bytes()
            if not raw.strip():
                problem = "is empty"
            else:
                nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
                nbformat.validate(nb)
        except Exception as e:  # not JSON, not UTF-8, not a notebook
            problem = f"is not a valid notebook ({type(e).__name__})"
        if problem:
            path.rename(path.with_name(name + ".unreadable"))
            events.append(f"'{name}' {problem}: kept as '{name}.unreadable', its parts get 0")
    extra = sorted(p.name for p in folder.iterdir()
                   if p.name not in expected and p.name != "timestamp.txt" and not p.name.endswith(".unreadable")
                   and p.name not in present)
    extra += [p for p in present if p not in expected]
    if extra:
        events.append("extra files ignored: " + ", ".join(sorted(set(extra))))
    return events


def _limits(memory_mb: int, file_mb: int):
    def apply():
        mem = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        size = file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def grade_one(course: Path, assignment: str, student: str, db_url: str, timeout: int, memory_mb: int,
              file_mb: int, wall_limit: float, retries: int = 4) -> Outcome:
    t0 = time.perf_counter()
    events = preflight(course, assignment, student)
    detail = ""
    env = course_mod.nbgrader_env()
    folder = course / "submitted" / student / assignment
    if not any((folder / n).exists() for n in expected_notebooks(course, assignment)):
        record_zero(course, assignment, student, db_url)  # nbgrader refuses a folder without notebooks
        complete, score, max_score = graded_state(course, assignment, student, db_url)
        return Outcome(student, "graded" if complete else "failed", time.perf_counter() - t0,
                       "" if complete else "could not record zero", events, score, max_score)
    cmd = course_mod.nbgrader_command("autograde", assignment, "--student", student, "--force",
                                      timeout=timeout, db_url=db_url)
    for attempt in range(retries + 1):
        proc = subprocess.Popen(cmd, cwd=course, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_limits(memory_mb, file_mb), start_new_session=True)
        try:
            out, err = proc.communicate(timeout=wall_limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            out, err = proc.communicate()
            detail = f"grading took longer than {wall_limit:.0f} s and was stopped"
            break
        if LOCKED in err and attempt < retries:
            time.sleep(1.0 + attempt)
            continue
        if proc.returncode != 0:
            lines = [ln for ln in err.splitlines() if "ERROR" in ln or "Error" in ln]
            detail = (lines[-1] if lines else err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}")[:300]
        break
    complete, score, max_score = graded_state(course, assignment, student, db_url)
    status = "graded" if complete else "failed"
    if complete:
        detail = ""
    elif not detail:
        detail = "nbgrader finished but some parts have no grade"
    return Outcome(student, status, time.perf_counter() - t0, detail, events, score, max_score)


def students_of(course: Path, assignment: str) -> list:
    base = course / "submitted"
    return sorted(p.name for p in base.iterdir() if (p / assignment).is_dir()) if base.is_dir() else []


def grade_class(course: Path, assignment: str, jobs: int = 1, force: bool = False, students=None,
                timeout: int = 120, memory_mb: int = 4096, file_mb: int = 256, wall_limit: float = 1800,
                db_url: Optional[str] = None, progress: bool = True) -> list:
    """Grade every submission of ``assignment`` in ``course``, ``jobs`` at a time."""
    course = Path(course).resolve()
    db_url = gradebook.url(course, db_url)
    if not (course / "solutions" / assignment).is_dir():
        raise course_mod.CourseError(f"no assignment {assignment!r} in {course / 'solutions'}")
    _ensure_assignment(course, assignment, db_url)
    todo, outcomes = [], []
    for s in students or students_of(course, assignment):
        if not force and (course / "autograded" / s / assignment).is_dir() and graded_state(course, assignment, s, db_url)[0]:
            outcomes.append(Outcome(s, "skipped", detail="already graded (use --force to regrade)"))
        else:
            todo.append(s)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(todo), desc=f"grading {assignment}", unit="submission")
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(grade_one, course, assignment, s, db_url, timeout, memory_mb, file_mb, wall_limit): s
                   for s in todo}
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except Exception as e:  # never lose a student: report the failure
                res = Outcome(futures[fut], "failed", detail=f"{type(e).__name__}: {e}")
            with lock:
                outcomes.append(res)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    outcomes.sort(key=lambda o: o.student)
    from .integrity import write_report
    write_report(course, assignment, students_of(course, assignment))  # every submission, not only this run's
    return outcomes


def _ensure_assignment(course: Path, assignment: str, db_url: str) -> None:
    """The assignment must be in the gradebook (``generate_assignment`` puts it there)."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        try:
            a = gb.find_assignment(assignment)
            if a.notebooks:
                return
        except MissingEntry:
            pass
    course_mod.generate(course, assignment, db_url=db_url)


def summary(outcomes: list, seconds: float) -> str:
    graded = [o for o in outcomes if o.status == "graded"]
    failed = [o for o in outcomes if o.status == "failed"]
    skipped = [o for o in outcomes if o.status == "skipped"]
    lines = [f"{len(graded)} graded, {len(skipped)} skipped, {len(failed)} failed in {seconds:.1f} s"]
    for o in outcomes:
        score = f"{o.score:g}/{o.max_score:g}" if o.score is not None else ""
        lines.append(f"  {o.student:<20} {o.status:<8} {score:<9} {o.detail}")
        lines += [f"  {'':<20}   - {e}" for e in o.events]
    return "\n".join(lines)
