"""The course directory and the nbgrader commands run in it: find the course, release, submit.

Each step runs the real nbgrader command (``python -m nbgrader ...``) in the course directory, so
what works here works the same for an instructor typing the commands. :mod:`.demo` runs the whole
pipeline on a simulated class; :mod:`.gradebook` reads the grades back.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Optional

import nbformat

CONFIG_NAME = "nbgrader_config.py"


class CourseError(RuntimeError):
    """A step of the pipeline failed; the message says which and why."""


def find_course_root(start: Optional[os.PathLike] = None) -> Path:
    """The folder holding ``solutions/`` and ``nbgrader_config.py``: ``start`` or a parent, else the
    checkout gencourse was installed from."""
    candidates = []
    here = Path(start or os.getcwd()).resolve()
    candidates += [here, *here.parents]
    candidates.append(Path(__file__).resolve().parents[2])  # the checkout gencourse/grading/ is in
    for c in candidates:
        if (c / "solutions").is_dir() and (c / CONFIG_NAME).is_file():
            return c
    raise CourseError("no course found: run this inside a gencourse checkout (a folder with solutions/ "
                      "and nbgrader_config.py), or pass --course")


def assignments(root: Path) -> list:
    """Assignment names: the folders of ``solutions/`` that hold a notebook."""
    return sorted(p.name for p in (root / "solutions").iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def nbgrader_env() -> dict:
    """The environment of an nbgrader process: this Python's scripts on ``PATH`` (nbgrader runs
    ``alembic``), a fixed hash seed and a non-interactive plotting backend."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONHASHSEED", "0")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def nbgrader_command(*args: str, timeout: Optional[int] = None, db_url: Optional[str] = None) -> list:
    """``python -m nbgrader <args>`` with the course's per-cell timeout and gradebook, when given,
    passed as options (settings cross process boundaries as arguments, never as variables)."""
    cmd = [sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"]
    if timeout is not None:
        cmd.append(f"--GencourseExecute.timeout={int(timeout)}")
    if db_url is not None:
        cmd.append(f"--CourseDirectory.db_url={db_url}")
    return cmd


def nbgrader(course: Path, *args: str, timeout: Optional[int] = None, db_url: Optional[str] = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run ``nbgrader <args>`` in ``course`` and return the finished process."""
    proc = subprocess.run(nbgrader_command(*args, timeout=timeout, db_url=db_url), cwd=course,
                          env=nbgrader_env(), capture_output=True, text=True)
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


def generate(course: Path, name: str, db_url: Optional[str] = None) -> None:
    """``nbgrader generate_assignment``: solutions/<name> -> assignments/<name>."""
    nbgrader(course, "generate_assignment", name, "--force", db_url=db_url)


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
