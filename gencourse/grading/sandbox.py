"""Keep a submission's kernel away from the course's files (Linux, no root privileges needed).

The autograder starts each kernel through this module inside a new user and mount namespace
(``unshare -r -m``, available to unprivileged users on most Linux systems). Before the kernel
starts, the namespace

* makes the whole course directory read-only,
* hides ``solutions/`` (hidden tests), ``submitted/`` and ``autograded/`` (other students),
  ``feedback/``, ``reports/`` and the SQLite gradebook behind empty mounts,
* mounts the submission's own folder back, writable: the only place in the course it can write,
* hides the graded references of the assignment being graded (:func:`hide_references`): the source
  files that define them are replaced by redacted copies (:mod:`gencourse.grading.redact`), in every
  copy of gencourse this Python can load, with their ``__pycache__``; the assignment's simulated
  students and alternative solution are emptied, and the checkout's solutions, tests and git history
  hidden,

then enters a second, nested namespace, in which those mounts are locked: the kernel cannot
unmount them to see what is underneath. That namespace is also the kernel's own PID namespace
(:func:`isolate_processes`): the kernel cannot see or signal the grader, and every process it starts
(daemons in new sessions included) ends when it ends; and it ends when its grader does
(:func:`die_with_grader`).

What it does not do: it does not hide or protect files outside the course directory (the kernel
runs as the grading user, and can read and write what that user can), and it does not restrict the
network. Run grading as an unprivileged user with no access to anything else you care about.
When ``unshare`` is not permitted, grading goes on without the sandbox and says so in its log;
the grader (an ``nbgrader`` command) then still adopts what a kernel leaves behind and ends it after
each submission (:func:`become_subreaper`, :func:`end_descendants`), but the kernel can see and signal
the grader: ``gencourse autograde`` grades again a submission whose grader was killed, and reports it
as failed if that keeps happening.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN_DIRS = ("solutions", "submitted", "autograded", "feedback", "reports", "exchange", "release", "source")
HIDDEN_FILES = ("gradebook.db", "gradebook.db-journal", "gradebook.db-wal", ".nbgrader.log",
                "gradebook_url.txt")  # the gradebook's URL may hold its password (gencourse.grading.gradebook)


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
        _hide_file(course / name)
    hide_references(course, own)
    os.chdir(own)
    # a nested namespace locks the mounts above: they can no longer be unmounted from inside;
    # it is also the kernel's own PID namespace (isolate_processes), which ends with the grader
    die_with_grader()
    os.execvp("unshare", ["unshare", "-r", "-m", "--propagation", "private", *isolate_processes(), "--", *cmd])


def _hide_file(path: Path, attempts: int = 20) -> None:
    """Mount /dev/null over ``path`` if it exists. SQLite creates and removes its journal while
    other submissions' grades are written: a journal that vanished between the look and the mount
    is looked for again, since it may be back (a new file) by then."""
    for _ in range(attempts):
        if not path.is_file():
            return
        try:
            _mount("--bind", "/dev/null", str(path))
            return
        except subprocess.CalledProcessError:
            time.sleep(0.01)
    raise SystemExit(f"sandbox: {path} could not be hidden")


PID_NAMESPACE = ("--pid", "--fork", "--kill-child")


def isolate_processes() -> list:
    """``unshare`` options that give the kernel its own PID namespace, where the system allows it.

    In it the kernel is process 1: it sees and can signal only the processes it started
    (``os.getppid()`` is 0, the grader has no number there, ``kill(-1)`` stops at the namespace),
    and when it ends, however it ends, the system kills every process left in the namespace:
    background processes, new sessions and daemons included. ``--kill-child`` ends the kernel
    when the ``unshare`` process that waits for it is killed (by the grader, or by the kernel
    signalling its own process group); ``--mount-proc`` gives it a ``/proc`` that lists only its
    own processes. Interrupts still reach the kernel: jupyter_client signals the process group,
    in which the waiting ``unshare`` blocks SIGINT and SIGTERM. Without PID namespaces (an old kernel, a
    container that forbids them) this says so on stderr, the grader's log, and returns no option:
    the grader then still ends leftover processes (:mod:`gencourse.grading.autograder`)."""
    for extra in (("--mount-proc",), ()):
        args = [*PID_NAMESPACE, *extra]
        try:
            ok = subprocess.run(["unshare", "-r", "-m", "--propagation", "private", *args, "true"],
                                capture_output=True, timeout=30).returncode == 0
        except Exception:  # noqa: BLE001 - a missing or broken unshare: no PID namespace
            ok = False
        if ok:
            return args
    print("gencourse sandbox: PID namespaces are not available: the kernel shares the grader's processes",
          file=sys.stderr)
    return []


def die_with_grader() -> bool:
    """Be killed when the process that started this one (the grader) ends, however it ends
    (Linux ``PR_SET_PDEATHSIG``, kept across ``exec``): with ``--kill-child`` the kernel, and with
    it its PID namespace, goes too. A grader killed by the system (out of memory) or stopped for
    running too long therefore leaves no kernel behind."""
    try:
        import ctypes
        import signal

        return ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the grader ends its kernels itself
        return False


def become_subreaper() -> bool:
    """Adopt this process's orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``): a process that
    a kernel starts in a new session and leaves behind stays a descendant of the grader, so that
    :func:`end_descendants` finds it. The kernel's PID namespace (:func:`isolate_processes`) already ends
    such processes with the kernel; this is the line of defence where namespaces are not allowed."""
    if not os.path.exists("/proc/self/stat"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except Exception:  # noqa: BLE001 - not Linux, or no prctl: nothing to adopt with
        return False


def descendants(pid: int | None = None) -> list:
    """Every live process below ``pid`` (default: this one), from ``/proc`` (Linux; else [])."""
    root = os.getpid() if pid is None else pid
    children = {}
    for entry in Path("/proc").glob("[0-9]*") if os.path.isdir("/proc") else ():
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])  # the name may hold spaces and parentheses
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def end_descendants(rounds: int = 100) -> list:
    """Kill every process below this one (each submission's kernel has been shut down when this
    runs), collect those that are its children, and return the ids of all it found there (running,
    or exited and not yet collected).

    A process may fork between being found and being killed; its child is then adopted by this
    process (:func:`become_subreaper`) and found in the next round, so this repeats until a
    round finds nothing (at most ``rounds`` rounds)."""
    import signal

    gone = []
    own_group = os.getpgrp()
    for _ in range(rounds):
        found = descendants()
        states = {pid: _state(pid) for pid in found}
        running = [pid for pid, (state, _) in states.items() if state not in ("Z", None)]
        groups = {group for _, group in states.values()} - {own_group, None}
        for group in groups:
            try:  # each whole group at once, zombies' too: a daemon that forks copies of itself and exits
                # faster than this reads /proc is never found running, but stays in the group of its zombies
                os.killpg(group, signal.SIGKILL)
            except OSError:
                pass
        for pid in running:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in found:  # zombies included: those whose parent was killed are ours to collect
            try:
                os.waitpid(pid, 0)
            except (ChildProcessError, OSError):  # not our child (its parent collects it), or collected
                pass
        gone += [pid for pid in found if pid not in gone]
        if not found:
            break
    return gone


def _state(pid: int) -> tuple:
    """The state letter (``"Z"``: a zombie, waiting to be collected) and process group of ``pid``,
    ``(None, None)`` once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return fields[0], int(fields[2])
    except (OSError, ValueError, IndexError):
        return None, None


def hide_references(course: Path, own: Path) -> list:
    """Inside the namespace: make the graded references of the assignment being graded (the name of
    ``own``, ``autograded/<student>/<assignment>``) unreachable from the kernel, and return the paths
    mounted over.

    Each redacted source (:func:`gencourse.grading.redact.redacted_files`) is written to a private
    tmpfs and bind-mounted over the original, in every copy of the package; every ``__pycache__`` of
    the package is covered by an empty tmpfs (compiled references must not be loadable either); the
    package's checkout and the course lose their solutions, tests and git history. A failure is
    reported on stderr (the grader's log) and grading goes on.
    """
    from . import redact

    assignment = own.name
    if not (redact.ASSIGNMENTS_DIR / assignment / "checks.py").is_file():
        return []
    hidden = []
    stage = Path(tempfile.mkdtemp(prefix="gencourse-redacted-"))
    try:
        _mount("-t", "tmpfs", "-o", "size=16m,mode=755", "tmpfs", str(stage))
        for k, pkg in enumerate(redact.package_copies()):
            for rel, text in redact.redacted_files(pkg, assignment).items():
                copy = stage / f"{k}__{str(rel).replace(os.sep, '__')}"
                copy.write_text(text)
                _mount("--bind", str(copy), str(pkg / rel))
                hidden.append(pkg / rel)
            for folder in sorted({p.parent for p in pkg.rglob("*.py")}):
                cache = folder / "__pycache__"
                try:
                    cache.mkdir(exist_ok=True)
                except OSError:
                    continue  # a read-only folder: nothing can be compiled into it either
                _mount("-t", "tmpfs", "-o", "size=16m,mode=755", "tmpfs", str(cache))
                hidden.append(cache)
            hidden += redact.checkout_dirs(pkg)
        hidden += [course / d for d in redact.CHECKOUT_DIRS if (course / d).is_dir()]
        for folder in dict.fromkeys(p for p in hidden if p.is_dir() and p.name != "__pycache__"):
            _mount("-t", "tmpfs", "-o", "size=64k,mode=755", "tmpfs", str(folder))
    except Exception as e:  # noqa: BLE001 - never stop grading; say it loudly instead
        print(f"gencourse sandbox: the graded references of {assignment} could not all be hidden: {e}", file=sys.stderr)
    finally:
        subprocess.run(["umount", "-l", str(stage)], capture_output=True)
        try:
            stage.rmdir()
        except OSError:
            pass
    return hidden


def main(argv: list) -> None:
    """``python -m gencourse.grading.sandbox --course C --own O -- <kernel command>``."""
    sep = argv.index("--")
    opts = dict(zip(argv[:sep:2], argv[1:sep:2]))
    enter(Path(opts["--course"]), Path(opts["--own"]), argv[sep + 1:])


if __name__ == "__main__":
    main(sys.argv[1:])
