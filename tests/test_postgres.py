"""A PostgreSQL gradebook as README describes it, against a real server that these tests start.

The server is Debian's PostgreSQL (``.ci/run`` installs it), started by the fixture in a temporary
folder with ``initdb``/``pg_ctl`` (as the ``postgres`` user when the tests run as root: the server
refuses root), with a password-protected role, so every URL here is
``postgresql://gencourse:<password>@127.0.0.1:<port>/<db>``. Without a server or the driver the
tests are skipped on a developer's machine, and FAIL in CI (``CI`` set by ``.ci/run``).

What is tested, each time through the real ``gencourse`` command:

* a missing driver, an unreachable server, a wrong password, a missing database: one line
  ``gencourse autograde: error: ...``, no traceback, no password;
* graders started together on an empty database, and on one with tables but not the assignment,
  all succeed, and the assignment is there once;
* two graders (one machine's ``--db``, the other's ``gradebook_url.txt``) grade disjoint students
  into one empty database at once; then ``gencourse feedback`` (warning loudly about a student
  whose autograded notebook is not on this machine) and a plain ``nbgrader export``: each student
  graded exactly once, with the expected scores, and no SQLite file ever made;
* the Formgrader's configuration and every plain ``nbgrader`` command read the same URL, and a
  submission's kernel cannot read it.
"""
import csv
import glob
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gencourse.grading import course, demo, gradebook, sandbox, simulate

pytestmark = pytest.mark.slow
A1 = "a1_maximum_likelihood"
ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret-pw"
IN_CI = bool(os.environ.get("CI"))
GRADERS = 4  # started together in the setup test: with two, the race is lost less often


def _unavailable(why: str):
    if IN_CI:
        pytest.fail(f"{why}: CI must test the PostgreSQL gradebook (.ci/run installs the server and the "
                    "driver)", pytrace=False)
    pytest.skip(why)


def _bindir():
    """The newest PostgreSQL server binaries: Debian's /usr/lib/postgresql/<v>/bin, else PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(re.sub(r"\D", "", Path(p).parent.parent.name) or 0))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A throwaway PostgreSQL server in a temporary folder, reachable on 127.0.0.1 with a password."""

    def __init__(self, bindir: Path):
        self.bindir, self.port = bindir, _free_port()
        # in /tmp: every user can reach it, and the socket's path stays short (Unix sockets: 107 bytes)
        self.dir = Path(tempfile.mkdtemp(prefix="gencourse-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.user = None  # the system user the server runs as (None: this one)
        if os.geteuid() == 0:  # postgres refuses to run as root
            self.user = "postgres"
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                self.user = "gencourse-pg"
                subprocess.run(["useradd", "--system", "--no-create-home", self.user], check=False)
            shutil.chown(self.dir, self.user)
        (self.dir / "pw").write_text(PASSWORD + "\n")
        if self.user:
            shutil.chown(self.dir / "pw", self.user)

    def _run(self, *cmd, **kw):
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        # run from the server's folder: the server's user may not be allowed into the current one
        return subprocess.run(prefix + [str(self.bindir / cmd[0]), *cmd[1:]], capture_output=True, text=True,
                              cwd=self.dir, **kw)

    def start(self):
        data = self.dir / "data"
        p = self._run("initdb", "-D", str(data), "-U", "gencourse", f"--pwfile={self.dir / 'pw'}",
                      "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale")
        assert p.returncode == 0, p.stderr
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        p = self._run("pg_ctl", "-D", str(data), "-o", opts, "-l", str(self.dir / "log"), "-w", "-t", "60", "start")
        assert p.returncode == 0, p.stderr + (self.dir / "log").read_text()

    def stop(self):
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, db: str, password: str = PASSWORD) -> str:
        return f"postgresql://gencourse:{password}@127.0.0.1:{self.port}/{db}"

    def createdb(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def query(self, db: str, sql: str) -> list:
        import psycopg

        with psycopg.connect(self.url(db)) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def server():
    bindir = _bindir()
    if bindir is None:
        _unavailable("no PostgreSQL server binaries (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable('no PostgreSQL driver (pip install -e ".[postgres]")')
    srv = Server(bindir)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    """A course folder with a1's sources and its release, made once (in a throwaway SQLite course,
    so the databases under test start empty)."""
    crs = course.new_course(tmp_path_factory.mktemp("released") / "course", ROOT, [A1])
    course.release(crs, [A1], dest=crs / "assignments")
    return crs


def _course(released: Path, tmp_path: Path, name: str = "course") -> Path:
    """A fresh copy of the released course."""
    return Path(shutil.copytree(released, tmp_path / name))


def _gencourse(*args: str, pre: str = "") -> list:
    """The command line of the real ``gencourse`` command; ``pre`` runs first (e.g. hiding the driver)."""
    code = "import sys\n" + pre + "\nfrom gencourse.grading.cli import main\nsys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *args]


def _gencourse_together(rounds: list, barrier: Path, n: int) -> list:
    """A process that runs the ``gencourse`` command once per round (a list of argument lists),
    each round only when ``n`` such processes are ready for it (everything imported before), so
    that processes started together reach the gradebook together. Prints ``ROUND <i> EXIT <rc>``."""
    code = ("import json, os, sys, time\nfrom gencourse.grading.cli import main\n"
            "import gencourse.grading.batch, nbgrader.api, sqlalchemy, psycopg\n"
            f"for i, argv in enumerate(json.loads({json.dumps(rounds)!r})):\n"
            f"    b = os.path.join({str(barrier)!r}, str(i)); os.makedirs(b, exist_ok=True)\n"
            "    open(os.path.join(b, str(os.getpid())), 'w').close()\n"
            f"    t = time.time()\n    while len(os.listdir(b)) < {n} and time.time() < t + 120: time.sleep(0.005)\n"
            "    try:\n        rc = main(argv)\n"
            "    except BaseException as e:  # a crash must not leave the others waiting at the next round\n"
            "        import traceback; traceback.print_exc(); rc = type(e).__name__\n"
            "    print(f'ROUND {i} EXIT {rc}', flush=True)\n")
    return [sys.executable, "-c", code]


def _env():
    return course.nbgrader_env()


def _run(cmd, timeout=300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), **kw)


def _one_line_error(capsys, *argv, command="autograde"):
    """Run the ``gencourse`` command's entry point; it must fail with one line on stderr."""
    from gencourse.grading.cli import main

    rc = main(list(argv))  # a traceback would raise here
    err = capsys.readouterr().err.strip()
    assert rc == 2, (rc, err[-3000:])
    assert len(err.splitlines()) == 1 and err.startswith(f"gencourse {command}: error: "), err
    assert PASSWORD not in err, err
    return err


# ---------------------------------------------------------------- one-line errors


def test_missing_driver_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    # the driver cannot be imported (what `pip install psycopg2-binary` leaves with SQLAlchemy 2.1)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    crs = course.new_course(tmp_path / "course", ROOT, [A1])
    url = f"postgresql://gencourse:{PASSWORD}@127.0.0.1:{_free_port()}/gencourse"
    err = _one_line_error(capsys, "autograde", A1, "--course", str(crs), "--db", url)
    assert "psycopg" in err and 'pip install "gencourse[postgres]"' in err, err
    err = _one_line_error(capsys, "feedback", A1, "--course", str(crs), "--db", url, command="feedback")
    assert 'pip install "gencourse[postgres]"' in err, err


def test_unreachable_server_wrong_password_and_missing_database_are_one_line_errors(server, tmp_path, capsys):
    crs = course.new_course(tmp_path / "course", ROOT, [A1])
    cases = {
        "nothing listens": (f"postgresql://gencourse:{PASSWORD}@127.0.0.1:{_free_port()}/gencourse", "refused"),
        "wrong password": (server.url("postgres", password="not-" + PASSWORD), "password authentication failed"),
        "no such database": (server.url("no_such_db"), 'database "no_such_db" does not exist'),
        "postgres:// (not a SQLAlchemy name)": (server.url("x").replace("postgresql:", "postgres:"), "postgresql://"),
    }
    for what, (url, phrase) in cases.items():
        err = _one_line_error(capsys, "autograde", A1, "--course", str(crs), "--db", url)
        assert phrase in err, (what, err)
        assert "gencourse:***@127.0.0.1" in err, (what, err)
    assert not (crs / "gradebook.db").exists()


# ---------------------------------------------------------------- concurrent setup


def test_graders_started_together_set_up_the_gradebook_once(server, released, tmp_path):
    """Four graders (four machines: four course folders) reach one fresh gradebook at the same
    moment, twice: an empty database (without the setup lock, one fails with ``UniqueViolation ...
    CREATE TYPE grade_cell_type``), then one with tables but not the assignment (two
    ``generate_assignment --force`` at once: ``ForeignKeyViolation``). Every grader succeeds and
    the assignment is there once."""
    from nbgrader.api import Gradebook

    dbs = {"empty": "setup_empty", "tables": "setup_tables"}
    urls = {k: server.createdb(db) for k, db in dbs.items()}
    Gradebook(urls["tables"], "gencourse").close()  # the tables, not the assignment
    assert server.query(dbs["tables"], "SELECT count(*) FROM assignment") == [(0,)]
    courses = [_course(released, tmp_path, f"machine{i}") for i in range(GRADERS)]
    rounds = lambda c: [["autograde", A1, "--course", str(c), "--db", urls[k]] for k in dbs]  # noqa: E731
    procs = [subprocess.Popen(_gencourse_together(rounds(c), tmp_path / "barrier", GRADERS), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env()) for c in courses]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and re.findall(r"^ROUND (\d) EXIT (\w+)", out, re.M) == [("0", "0"), ("1", "0")], \
            (out[-2000:], err[-3000:])
    for db in dbs.values():
        assert server.query(db, "SELECT name FROM assignment") == [(A1,)], db
        assert server.query(db, "SELECT count(*) FROM notebook") == [(1,)], db
        cells = server.query(db, "SELECT b.name FROM grade_cells g JOIN base_cell b ON g.id = b.id")
        assert sorted(c for c, in cells) == sorted(_cell_points(courses[0], every=True)), db


# ---------------------------------------------------------------- a class, two graders, one gradebook


def _cell_points(crs: Path, every: bool = False) -> dict:
    """Points of the autograded cells of a1 (``every``: the written answers too), from the source."""
    import nbformat

    nb = nbformat.read(crs / "solutions" / A1 / f"{A1}.ipynb", as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"]) for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and (every or c.cell_type == "code")}


def test_two_graders_fill_one_postgres_gradebook_then_feedback_and_export(server, released, tmp_path):
    url = server.createdb("klass")
    crs = _course(released, tmp_path)
    bug = simulate.mutation_table(A1)["unbiased_variance"]
    students = {"ada": simulate.Student("ada", "complete", ""),
                "bob": simulate.Student("bob", "untouched", ""),
                "cy": simulate.Student("cy", "mutation", "", ("unbiased_variance",))}
    for name, s in students.items():
        course.submit(crs, A1, name, demo.simulated_notebooks(crs, A1, s))
    # one setting for the course: the URL, password included, in gradebook_url.txt
    (crs / gradebook.URL_FILE).write_text(f"# the course's gradebook\n{url}\n")

    # two graders at once on disjoint students: one reads the course's setting, one is given --db
    a = subprocess.Popen(_gencourse("autograde", A1, "--course", str(crs), "--student", "ada", "--student", "bob"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    b = subprocess.Popen(_gencourse("autograde", A1, "--course", str(crs), "--student", "cy", "--db", url),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    for p, mine in ((a, ("ada", "bob")), (b, ("cy",))):
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, (out[-3000:], err[-3000:])
        assert out.startswith(f"{len(mine)} graded, 0 skipped, 0 failed"), out
        graded_here = set(re.findall(r"^  (\w+)\s+graded\b", out, re.M))
        assert graded_here == set(mine), out

    # each student graded exactly once, into PostgreSQL only
    assert not (crs / "gradebook.db").exists()
    subs = server.query("klass", "SELECT student_id, count(*) FROM submitted_assignment GROUP BY student_id")
    assert sorted(subs) == [("ada", 1), ("bob", 1), ("cy", 1)]
    per_student = server.query("klass", "SELECT sa.student_id, count(*) FROM grade g JOIN submitted_notebook sn "
                                        "ON g.notebook_id = sn.id JOIN submitted_assignment sa "
                                        "ON sn.assignment_id = sa.id GROUP BY sa.student_id")
    assert dict(per_student) == {s: len(_cell_points(crs, every=True)) for s in students}

    points = _cell_points(crs)
    rows = gradebook.scores(crs, A1)  # through the course's setting
    got = {(r.student, r.cell): r.score for r in rows if r.auto}
    assert {c for _, c in got} == set(points)
    for cell, pts in points.items():
        assert got[("ada", cell)] == pts, cell
        assert got[("bob", cell)] == 0, cell
        assert got[("cy", cell)] == (0 if cell in bug.lost else pts), cell

    # feedback on a machine that lacks one student's autograded notebook: a loud warning
    away = tmp_path / "other_machine"
    shutil.move(crs / "autograded" / "cy", away)
    proc = _run(_gencourse("feedback", A1, "--course", str(crs)))
    assert proc.returncode == 1, (proc.stdout, proc.stderr[-3000:])
    assert "WARNING" in proc.stderr and "cy" in proc.stderr and "share the course folder" in proc.stderr, proc.stderr
    assert {p.name for p in (crs / "feedback").iterdir()} == {"ada", "bob"}
    shutil.move(away, crs / "autograded" / "cy")
    proc = _run(_gencourse("feedback", A1, "--course", str(crs)))
    assert proc.returncode == 0, (proc.stdout, proc.stderr[-3000:])
    assert {p.parent.parent.name for p in (crs / "feedback").glob(f"*/{A1}/*.html")} == set(students)

    # a plain nbgrader command, no URL given: the course's setting again
    course.nbgrader(crs, "export", "--to", str(crs / "grades.csv"))
    with open(crs / "grades.csv") as f:
        exported = [r for r in csv.DictReader(f) if r["assignment"] == A1]
    assert sorted(r["student_id"] for r in exported) == sorted(students)
    totals = {s: sum(r.score for r in rows if r.student == s) for s in students}
    assert {r["student_id"]: float(r["score"]) for r in exported} == pytest.approx(totals)
    assert not (crs / "gradebook.db").exists()

    # the Formgrader, set up as `jupyter lab` started in the course sets it up, sees the class
    code = ("from nbgrader.server_extensions.formgrader.formgrader import FormgradeExtension\n"
            "from nbgrader.apps.api import NbGraderAPI\n"
            "fg = FormgradeExtension()\nfg.root_dir = '.'\nfg.initialize([])\n"
            "api = NbGraderAPI(fg.coursedir, parent=fg)\n"
            "print(fg.coursedir.db_url == open('gradebook_url.txt').read().split()[-1], "
            "api.get_assignment('" + A1 + "')['num_submissions'])")
    proc = _run([sys.executable, "-c", code], cwd=crs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == ["True", "3"], proc.stdout
    assert not (crs / "gradebook.db").exists()


# ---------------------------------------------------------------- the password stays with the instructor


def test_the_configured_password_stays_off_command_lines_and_out_of_kernels(tmp_path):
    crs = tmp_path / "course"
    own = crs / "autograded" / "s" / A1
    own.mkdir(parents=True)
    url = f"postgresql://grader:{PASSWORD}@dbhost:5432/gencourse"
    given = f"postgresql://grader:other-{PASSWORD}@dbhost:5432/gencourse"
    assert gradebook.url(crs) == gradebook.sqlite_url(crs)
    (crs / gradebook.URL_FILE).write_text(url + "\n")
    assert gradebook.url(crs) == url and gradebook.url(crs, given) == given  # --db still overrides
    # a child nbgrader reads the configured URL itself; one given by hand must be passed on
    assert gradebook.child_url(crs, url) is None and gradebook.child_url(crs, given) == given
    assert gradebook.child_url(crs, gradebook.sqlite_url(crs)) == gradebook.sqlite_url(crs)
    if not sandbox.available():
        pytest.skip("this system does not allow unprivileged user namespaces (no sandbox to test)")
    read = [sys.executable, "-c", f"print(repr(open({str(crs / gradebook.URL_FILE)!r}).read()))"]
    proc = subprocess.run(sandbox.wrap(read, crs, own), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert PASSWORD not in proc.stdout and proc.stdout.strip() == "''", proc.stdout

