"""Grading a whole class: ``gencourse autograde <assignment> --jobs N``.

Every submission is graded by its own ``nbgrader autograde --student S`` process (so the course's
nbgrader settings all apply) with resource limits, N at a time, each process forked from a warm
:class:`Forkserver` that has imported nbgrader and the course's configuration once. Around that:

* **before**: each submission folder is checked. A notebook that is not valid JSON (or empty) is
  set aside as ``<name>.unreadable`` so that nbgrader records zero for it instead of crashing; a
  renamed notebook (the expected one missing, exactly one other ``.ipynb``) is graded under its
  expected name; extra files are listed. Every such event is reported for the student.
* **during**: processes write to one gradebook. SQLite gets a busy timeout so that concurrent
  writers wait instead of failing, and a run that still hits "database is locked" is retried
  (grading is idempotent: nbgrader updates the one row per graded cell). A grading process killed
  by a signal (the system out of memory; without the sandbox, a submission) grades again; one that
  runs past ``wall_limit`` is stopped with every process below it.
* **after**: the gradebook is read back; a submission counts as graded only when every graded cell
  of every notebook has a score or awaits manual grading. The summary lists graded, skipped
  (already graded; ``--force`` regrades) and failed submissions with the reason, and the command
  exits non-zero when any failed (the reason: the exception that stopped nbgrader, not the events it
  handled; its whole log in ``reports/logs/<assignment>/<student>.log``). An integrity report lists
  code that touches grading internals.
"""
from __future__ import annotations

import os
import re
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


def end_process_tree(pid: int) -> None:
    """Kill process ``pid``, its process group, and every process below it (its kernels, in their
    own sessions, and what they started): a grader stopped for running too long leaves nothing."""
    import signal

    from .sandbox import descendants

    for p in [pid, *descendants(pid)]:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def run_process(cmd: list, cwd: Path, env: dict, memory_mb: int, file_mb: int, wall_limit: float):
    """Run the nbgrader command ``cmd`` in a new process with the resource limits; return
    ``(returncode, log, timed_out)``."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_limits(memory_mb, file_mb), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=wall_limit)
        return proc.returncode, err, False
    except subprocess.TimeoutExpired:
        end_process_tree(proc.pid)
        out, err = proc.communicate()
        return proc.returncode, err, True


class ForkserverError(RuntimeError):
    """The fork server could not start or stopped answering."""


class Forkserver:
    """A warm process from which each submission's grader is forked.

    Starting ``nbgrader autograde`` costs seconds before any work (importing nbgrader, Jupyter,
    nbconvert, SQLAlchemy, then the course's configuration, which imports torch): the profile in
    ``benchmarks/run.py --only profile`` shows it. The fork server (``python -c`` running
    :func:`serve`, with the nbgrader environment) imports all that once; for each submission it
    forks a child that sets the resource limits, starts a new session, sends its output to a log
    file and runs nbgrader's own command-line entry point with the same arguments as the separate
    process would. Each submission therefore still has its own process (its own limits, killed on its
    own, a crash loses nothing else), started in milliseconds. One server serves one grading thread,
    one submission at a time; when it cannot start, grading falls back to :func:`run_process`."""

    def __init__(self, env: dict):
        import sys

        self.broken = False
        self.proc = subprocess.Popen([sys.executable, "-c", "from gencourse.grading.batch import serve; serve()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True)
        self._buffer = b""
        try:
            ready = self._read(timeout=300)
        except ForkserverError:
            ready = None
        if ready != {"ready": True}:
            self.close()
            raise ForkserverError("the fork server did not start")

    def _read(self, timeout: float):
        import json
        import select

        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None  # nothing in time
            chunk = os.read(fd, 65536)
            if not chunk:
                raise ForkserverError("the fork server ended")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, cmd: list, cwd: Path, env: dict, memory_mb: int, file_mb: int, wall_limit: float):
        """Like :func:`run_process`, in a child of the server. Should the server itself fail, the
        server is marked broken and the run counts as killed (-9): :func:`grade_one` grades the
        submission again, in a process of its own, once this child has ended."""
        import json
        import tempfile

        fd, log = tempfile.mkstemp(prefix="gencourse-grader-", suffix=".log")
        os.close(fd)
        pid, start = None, time.monotonic()
        try:
            request = dict(args=cmd[3:], cwd=str(cwd), env=env, memory_mb=memory_mb, file_mb=file_mb, log=log)
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            pid = (self._read(timeout=60) or {}).get("pid")
            if pid is None:
                raise ForkserverError("the fork server did not fork")
            done, timed_out = self._read(timeout=wall_limit), False
            if done is None:
                end_process_tree(pid)
                done, timed_out = self._read(timeout=60), True
            return (done or {}).get("status", -9), Path(log).read_text(errors="replace"), timed_out
        except (ForkserverError, OSError, ValueError) as e:
            self.broken = True
            while pid is not None and _alive(pid) and time.monotonic() - start < wall_limit:
                time.sleep(0.5)  # never two graders of one submission at once
            if pid is not None:
                end_process_tree(pid)
            return -9, f"{Path(log).read_text(errors='replace')}\n[the fork server failed: {e}]", False
        finally:
            os.unlink(log)

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def serve() -> None:
    """The fork server's loop (see :class:`Forkserver`): one JSON request per line on stdin; answers
    ``{"pid": ...}`` once the child is forked and ``{"status": ...}`` (its exit status, negative
    for a signal) once it has ended."""
    import json
    import sys

    import nbgrader.apps.nbgraderapp  # noqa: F401 - the expensive imports, once
    from . import autograder  # noqa: F401 - what the course's nbgrader_config.py imports (torch)

    out = sys.stdout.buffer
    out.write(b'{"ready": true}\n')
    out.flush()
    for line in sys.stdin.buffer:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _grade_in_child(request)  # never returns
        out.write(json.dumps({"pid": pid}).encode() + b"\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        out.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
        out.flush()


def _grade_in_child(request: dict) -> None:
    """In a child of the fork server: become the ``nbgrader`` command of ``request`` and exit."""
    import sys
    import traceback

    code = 1
    try:
        os.setsid()
        _limits(request["memory_mb"], request["file_mb"])()
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import nbgrader
        from nbgrader.apps.nbgraderapp import main

        sys.argv = [str(Path(nbgrader.__file__).with_name("__main__.py")), *request["args"]]
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - say why in the log, exit non-zero
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)  # no interpreter teardown: everything is written


def grade_one(course: Path, assignment: str, student: str, db_url: str, timeout: int, memory_mb: int,
              file_mb: int, wall_limit: float, retries: int = 4, extra_args: tuple = (),
              log_to: Optional[Path] = None, forkserver: Optional["Forkserver"] = None) -> Outcome:
    """Grade one submission in its own ``nbgrader autograde --student`` process (``extra_args`` added
    to its command line; its log written to ``log_to`` when given, and kept under ``reports/logs/``
    when the submission could not be graded), forked from ``forkserver`` when given."""
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
                                      timeout=timeout, db_url=gradebook.child_url(course, db_url))
    if any(a.startswith("--log-level") for a in extra_args):  # one log level only
        cmd = [a for a in cmd if not a.startswith("--log-level")]
    cmd += list(extra_args)
    for attempt in range(retries + 1):
        if forkserver is not None and not forkserver.broken:
            returncode, err, timed_out = forkserver.run(cmd, course, env, memory_mb, file_mb, wall_limit)
        else:
            returncode, err, timed_out = run_process(cmd, course, env, memory_mb, file_mb, wall_limit)
        if timed_out:
            detail = f"grading took longer than {wall_limit:.0f} s and was stopped"
            break
        if LOCKED in err and attempt < retries:
            time.sleep(1.0 + attempt)
            continue
        if returncode < 0 and attempt < retries:
            # the grader itself was killed (the system out of memory, or a submission that reached it
            # where the sandbox is unavailable): grade again rather than lose the grade
            events.append(f"the grading process was killed by signal {-returncode}; graded again")
            continue
        if returncode != 0:
            detail = failure_reason(err, returncode)
        break
    if log_to is not None:
        Path(log_to).write_text(err)
    complete, score, max_score = graded_state(course, assignment, student, db_url)
    status = "graded" if complete else "failed"
    if complete:
        detail = ""
    else:
        detail = detail or "nbgrader finished but some parts have no grade"
        log = course / "reports" / "logs" / assignment / f"{student}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        shown = re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", " ".join(cmd))  # no password in a report
        log.write_text(f"$ {shown}\nexit status {returncode}\n\n{err}")
        detail += f" (log: {log.relative_to(course)})"
    return Outcome(student, status, time.perf_counter() - t0, detail, events, score, max_score)


# what nbclient logs at ERROR level about events the autograder handles (a timeout interrupts the
# cell, a dead kernel is restarted): never the reason a submission could not be graded
HANDLED = ("Timeout waiting for execute reply", "Interrupting kernel", "Kernel died while waiting for execute reply")


EXCEPTION = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Died)\b(:|$)")


def failure_reason(err: str, returncode: int) -> str:
    """One line saying why an ``nbgrader autograde`` process failed, from its log ``err``: the last
    line of its last traceback, else its last error that the autograder did not handle."""
    lines = [ln.rstrip() for ln in err.splitlines() if ln.strip()]
    starts = [i for i, ln in enumerate(lines) if ln.endswith("Traceback (most recent call last):")]
    if starts:  # nbgrader logs the traceback indented: its exception is the last line naming one
        exception = [ln.strip() for ln in lines[starts[-1] + 1:] if EXCEPTION.match(ln.strip())]
        if exception:
            return exception[-1][:300]
    errors = [ln for ln in lines if ("ERROR" in ln or "Error" in ln) and not any(h in ln for h in HANDLED)]
    if errors:
        return errors[-1][:300]
    if returncode < 0:
        return f"the grading process was killed by signal {-returncode}"
    return (lines[-1] if lines else f"exit {returncode}")[:300]


def students_of(course: Path, assignment: str) -> list:
    base = course / "submitted"
    return sorted(p.name for p in base.iterdir() if (p / assignment).is_dir()) if base.is_dir() else []


def grade_class(course: Path, assignment: str, jobs: int = 1, force: bool = False, students=None,
                timeout: int = 120, memory_mb: int = 4096, file_mb: int = 256, wall_limit: float = 1800,
                db_url: Optional[str] = None, progress: bool = True, fork: bool = True) -> list:
    """Grade every submission of ``assignment`` in ``course``, ``jobs`` at a time (each in its own
    process, forked from a warm :class:`Forkserver` unless ``fork`` is false)."""
    course = Path(course).resolve()
    db_url = gradebook.url(course, db_url)
    if not (course / "solutions" / assignment).is_dir():
        raise course_mod.CourseError(f"no assignment {assignment!r} in {course / 'solutions'}")
    gradebook.check(db_url)  # a missing driver or an unreachable server: one line, before any work
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
    servers = ServerPool(max(1, min(jobs, len(todo))) if fork else 0)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(servers.grade, course, assignment, s, db_url, timeout, memory_mb, file_mb, wall_limit): s
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
    servers.close()
    if bar is not None:
        bar.close()
    outcomes.sort(key=lambda o: o.student)
    from .integrity import write_report
    write_report(course, assignment, students_of(course, assignment))  # every submission, not only this run's
    return outcomes


class ServerPool:
    """``size`` fork servers shared by the grading threads, started when first needed; a server that
    fails is replaced, and when none can start a submission is graded by a new process."""

    def __init__(self, size: int):
        import queue

        self._free = queue.Queue()
        for _ in range(size):
            self._free.put(None)  # a slot, without a server yet
        self.size = size

    def grade(self, *args) -> Outcome:
        if not self.size:
            return grade_one(*args)
        server = self._free.get()
        try:
            if server is None or server.broken:
                if server is not None:
                    server.close()
                server = None
                server = Forkserver(course_mod.nbgrader_env())
        except (ForkserverError, OSError):
            server = None  # this submission gets a process of its own
        try:
            return grade_one(*args, forkserver=server)
        finally:
            self._free.put(server)

    def close(self) -> None:
        while not self._free.empty():
            server = self._free.get()
            if server is not None:
                server.close()


def _ensure_assignment(course: Path, assignment: str, db_url: str) -> None:
    """The assignment must be in the gradebook (``generate_assignment`` puts it there).

    Several graders may start together on one gradebook (one per machine, on disjoint students):
    the first contact (creating the schema, the course's row, the assignment) runs under the
    gradebook's setup lock (:func:`gencourse.grading.gradebook.setup_lock`, where the choice of a
    lock over retries is explained), so the others wait and then find everything in place."""
    from nbgrader.api import Gradebook, MissingEntry

    with gradebook.setup_lock(db_url):
        with Gradebook(db_url) as gb:  # creates the tables and the course's row when missing
            try:
                a = gb.find_assignment(assignment)
                if a.notebooks:
                    return
            except MissingEntry:
                pass
        course_mod.generate(course, assignment, db_url=gradebook.child_url(course, db_url))


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
