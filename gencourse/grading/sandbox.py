"""Keep a submission's kernel away from the course's files (Linux, no root privileges needed).

The autograder starts each kernel through this module inside a new user and mount namespace
(``unshare -r -m``, available to unprivileged users on most Linux systems). Before the kernel
starts, the namespace

* makes the whole course directory read-only,
* hides ``solutions/`` (hidden tests), ``submitted/`` and ``autograded/`` (other students),
  ``feedback/``, ``reports/`` and the SQLite gradebook behind empty mounts,
* mounts the submission's own folder back, writable: the only place in the course it can write,

then enters a second, nested namespace, in which those mounts are locked: the kernel cannot
unmount them to see what is underneath.

What it does not do: it does not hide or protect files outside the course directory (the kernel
runs as the grading user, and can read and write what that user can), and it does not restrict the
network. Run grading as an unprivileged user with no access to anything else you care about.
When ``unshare`` is not permitted, grading goes on without the sandbox and says so in its log.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HIDDEN_DIRS = ("solutions", "submitted", "autograded", "feedback", "reports", "exchange", "release", "source")
HIDDEN_FILES = ("gradebook.db", "gradebook.db-journal", "gradebook.db-wal", ".nbgrader.log")


def available() -> bool:
    """Whether this system lets an unprivileged process create user and mount namespaces."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-r", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except Exception:
        return False


def wrap(cmd: list, course: Path, own: Path) -> list:
    """The kernel command ``cmd`` started inside the sandbox of submission folder ``own`` of ``course``."""
    return ["unshare", "-r", "-m", "--propagation", "private", sys.executable, "-m", "gencourse.grading.sandbox",
            "--course", str(course), "--own", str(own), "--", *cmd]


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def enter(course: Path, own: Path, cmd: list) -> None:
    """Inside the first namespace: set up the mounts, then exec ``cmd`` in a nested namespace."""
    course, own = course.resolve(), own.resolve()
    if course not in own.parents:
        raise SystemExit(f"sandbox: {own} is not inside {course}")
    stage = Path(tempfile.mkdtemp(prefix="gencourse-own-"))
    _mount("--bind", str(own), str(stage))  # keep a handle on the submission's folder
    _mount("--bind", str(course), str(course))
    _mount("-o", "remount,bind,ro", str(course))  # the course is read-only ...
    for name in HIDDEN_DIRS:
        if (course / name).is_dir():
            _mount("-t", "tmpfs", "-o", "size=64k,mode=755", "tmpfs", str(course / name))  # ... its secrets hidden
    own.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(stage), str(own))  # ... and the submission's own folder writable again
    subprocess.run(["umount", str(stage)], check=True, capture_output=True)
    stage.rmdir()  # the staging point was only needed while the folder was out of sight
    for name in HIDDEN_FILES:
        if (course / name).is_file():
            _mount("--bind", "/dev/null", str(course / name))
    os.chdir(own)
    # a nested namespace locks the mounts above: they can no longer be unmounted from inside
    os.execvp("unshare", ["unshare", "-r", "-m", "--propagation", "private", "--", *cmd])


def main(argv: list) -> None:
    """``python -m gencourse.grading.sandbox --course C --own O -- <kernel command>``."""
    sep = argv.index("--")
    opts = dict(zip(argv[:sep:2], argv[1:sep:2]))
    enter(Path(opts["--course"]), Path(opts["--own"]), argv[sep + 1:])


if __name__ == "__main__":
    main(sys.argv[1:])
