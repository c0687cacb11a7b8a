"""The kernel's process isolation (gencourse.grading.sandbox), tested on real processes, without nbgrader.

A command wrapped by :func:`sandbox.wrap` is what a kernel is while a submission is graded. In its
own PID namespace it is process 1, cannot see or signal the grader, and takes every process it
started with it when it ends, however it ends; interrupts still reach it. Where namespaces are not
allowed, the grader adopts and ends what a kernel leaves behind (:func:`sandbox.end_descendants`).
The end-to-end versions (a submission that kills its grader, one that leaves a daemon behind, graded
on a busy machine) are in tests/test_autograder.py.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from gencourse.grading import sandbox

needs_namespaces = pytest.mark.skipif(not sandbox.available(), reason="this system does not allow unprivileged "
                                                                      "user namespaces")


@pytest.fixture
def course(tmp_path):
    """A course folder with a submission's own folder, as the autograder lays it out."""
    own = tmp_path / "autograded" / "s" / "a0_test"
    own.mkdir(parents=True)
    (tmp_path / "solutions").mkdir()
    return tmp_path, own


def _python(code: str) -> list:
    return [sys.executable, "-c", textwrap.dedent(code)]


def _running(token: str) -> list:
    """Processes whose command line holds ``token`` (``pgrep -f``, read from /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if token.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            pass
    return found


def _wait_running(token: str, n: int = 2, seconds: float = 90.0) -> list:
    """The processes holding ``token`` once ``n`` of them run (a loaded machine starts them slowly)."""
    deadline = time.monotonic() + seconds
    while len(_running(token)) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return _running(token)


def _wait_gone(token: str, seconds: float = 30.0) -> list:
    deadline = time.monotonic() + seconds
    while _running(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _running(token)


# run by the code under test: a daemon in a new session that forks away from its parent, and a
# sleeping process in another session, both marked with a token (spelled backwards here, so that the command
# line of the code itself does not carry it)
_DAEMON = """
import subprocess, sys
token = {backwards!r}[::-1]
daemon = subprocess.Popen([sys.executable, '-c', 'import os, time\\nif os.fork():\\n    os._exit(0)\\n'
                           'print(1, flush=True)\\nwhile True:\\n    time.sleep(1)', token],
                          stdout=subprocess.PIPE, start_new_session=True)
sleeper = subprocess.Popen([sys.executable, '-c', 'import time; print(1, flush=True); time.sleep(1000)', token],
                           stdout=subprocess.PIPE, start_new_session=True)
daemon.stdout.readline(), sleeper.stdout.readline()  # both run (however slowly a loaded machine starts them) ...
daemon.wait()  # ... and the daemon has left its parent, which is gone: nothing is still forking
"""


class _Daemon:
    def format(self, token):
        return _DAEMON.format(backwards=token[::-1])


DAEMON = _Daemon()


@needs_namespaces
def test_the_kernel_is_process_one_and_sees_only_its_own_processes(course):
    crs, own = course
    code = """
        import os
        print(os.getpid(), os.getppid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
    """
    out = subprocess.run(sandbox.wrap(_python(code), crs, own), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pid, ppid, visible = out.stdout.split(" ", 2)
    assert (int(pid), int(ppid)) == (1, 0)
    assert visible.strip() == "[1]", visible  # the grader and everything else: not there


@needs_namespaces
def test_the_kernel_cannot_signal_the_grader_or_anything_outside(course):
    crs, own = course
    bystander = subprocess.Popen(["sleep", "60"])  # a process of the grading user, outside the sandbox
    try:
        code = """
            import os, signal
            if os.getpid() != 1:  # not in a PID namespace: kill(-1) would reach every process of the user
                raise SystemExit(3)
            for target in (-1, os.getppid()):  # every process it may signal; its parent (0: its own group)
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
        """
        out = subprocess.run(sandbox.wrap(_python(code), crs, own), capture_output=True, text=True, timeout=60,
                             start_new_session=True)
        assert out.returncode not in (0, 3), "the kernel is not in a PID namespace"  # it killed itself, nothing else
        time.sleep(0.2)
        assert bystander.poll() is None, "a process outside the sandbox was killed"
    finally:
        bystander.kill()
        bystander.wait()


@needs_namespaces
@pytest.mark.parametrize("ending", ["exits", "is killed", "crashes"])
def test_every_process_the_kernel_started_ends_with_it(course, ending):
    crs, own = course
    token = f"gencourse-test-{uuid.uuid4().hex}"
    end = {"exits": "", "is killed": "", "crashes": "import ctypes; ctypes.string_at(0)"}[ending]
    code = (DAEMON.format(token=token) + "\nprint('started', flush=True)\nsys.stdin.readline()  # until told\n"
            + end)
    proc = subprocess.Popen(sandbox.wrap(_python(code), crs, own), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        assert len(_wait_running(token)) >= 2, "the daemons never ran"
        if ending == "is killed":  # as jupyter_client kills a kernel: the process it started, with its group
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.stdin.write("end\n")
            proc.stdin.flush()
        proc.wait(timeout=60)
        assert _wait_gone(token) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in _running(token):
            os.kill(pid, signal.SIGKILL)


@needs_namespaces
def test_the_kernel_and_its_processes_end_when_the_grader_is_killed(course):
    """A grader killed from outside (out of memory, or stopped for running too long) leaves nothing:
    its kernel, in a session of its own, and the kernel's daemons go with it."""
    crs, own = course
    token = f"gencourse-test-{uuid.uuid4().hex}"
    kernel = DAEMON.format(token=token) + "\nprint('started', flush=True)\nimport time; time.sleep(120)"
    grader = ("import subprocess, sys\n"
              f"k = subprocess.Popen({sandbox.wrap(_python(kernel), crs, own)!r}, start_new_session=True)\n"
              "k.wait()")
    proc = subprocess.Popen([sys.executable, "-c", grader], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        assert len(_wait_running(token)) >= 2, "the daemons never ran"
        proc.kill()
        proc.wait()
        assert _wait_gone(token) == []
    finally:
        for pid in _running(token):
            os.kill(pid, signal.SIGKILL)


@needs_namespaces
def test_an_interrupt_reaches_the_kernel_and_only_interrupts_it(course):
    crs, own = course
    code = """
        import signal, sys, time
        hits = []
        signal.signal(signal.SIGINT, lambda *a: hits.append(1))
        print('ready', flush=True)
        deadline = time.time() + 30
        while len(hits) < 2 and time.time() < deadline:
            time.sleep(0.05)
        print('interrupted', len(hits), flush=True)
    """
    proc = subprocess.Popen(sandbox.wrap(_python(code), crs, own), stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # as jupyter_client starts a kernel
    assert proc.stdout.readline().strip() == "ready"
    for _ in range(2):  # as jupyter_client interrupts it: SIGINT to the process group
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.3)
    assert proc.stdout.readline().strip() == "interrupted 2"
    assert proc.wait(timeout=30) == 0


def test_without_namespaces_the_grader_ends_what_a_kernel_left(tmp_path):
    """The fallback: a process that adopts orphans (``become_subreaper``) ends every descendant once
    a submission is graded, daemons that left their session included."""
    token = f"gencourse-test-{uuid.uuid4().hex}"
    code = ("from gencourse.grading.sandbox import become_subreaper, end_descendants\n"
            "assert become_subreaper()\n"
            "import subprocess, sys\n"
            f"subprocess.run([sys.executable, '-c', {DAEMON.format(token=token)!r}], check=True)\n"
            "print(len(end_descendants()))")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert int(out.stdout) >= 2  # the daemon and the sleep, both adopted
        assert _wait_gone(token) == []
    finally:
        for pid in _running(token):
            os.kill(pid, signal.SIGKILL)


def test_a_process_that_keeps_forking_away_is_ended_too(tmp_path):
    """A daemon that forks a new copy of itself and exits, again and again, is found by the next
    round of :func:`sandbox.end_descendants` whenever it forks between being found and being killed."""
    token = f"gencourse-test-{uuid.uuid4().hex}"
    hopper = ("import os, time\\nwhile True:\\n    time.sleep(0.001)\\n    if os.fork():\\n        os._exit(0)")
    code = ("from gencourse.grading.sandbox import become_subreaper, end_descendants\n"
            "assert become_subreaper()\n"
            "import subprocess, sys, time\n"
            f"subprocess.Popen([sys.executable, '-c', '{hopper}', {token[::-1]!r}[::-1]], start_new_session=True)\n"
            "time.sleep(0.5)\n"
            "print(len(end_descendants()))")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert int(out.stdout) >= 1
        assert _wait_gone(token, seconds=5) == []
    finally:
        for _ in range(100):  # a copy that escaped (the test failed) keeps hopping: end it with its group
            left = _running(token)
            if not left:
                break
            for pid in left:
                try:
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
                except OSError:
                    pass


def test_the_daemons_of_these_tests_outlive_a_plain_process(tmp_path):
    """The tests above can fail: without a PID namespace or a subreaper, the same daemons stay."""
    token = f"gencourse-test-{uuid.uuid4().hex}"
    try:
        subprocess.run([sys.executable, "-c", DAEMON.format(token=token)], check=True, timeout=60)
        time.sleep(0.3)
        assert len(_wait_running(token)) >= 2, "the daemons never ran"
    finally:
        for pid in _running(token):
            os.kill(pid, signal.SIGKILL)
