"""End to end: generate_assignment -> a simulated class -> parallel autograde -> feedback -> export.

A class of simulated submissions is graded in one run of ``gencourse autograde --jobs 2`` (each
submission by its own ``nbgrader autograde`` process with the course's configuration): correct,
differently written, untouched, with realistic bugs, looping, crashing, memory-hungry, printing
without end, broken files, edited test cells, and tricks against the grader. Expectations come
from ``gencourse/grading/assignments/a1_maximum_likelihood/students.py``: each submission loses exactly the points of the test cells it should,
every other student is graded normally, and no grade is lost.
"""
import csv
import re
from pathlib import Path

import nbformat
import pytest

from gencourse.grading import batch, course, demo, gradebook, simulate

pytestmark = pytest.mark.slow
A1 = "a1_maximum_likelihood"
ROOT = Path(__file__).resolve().parent.parent
CLASS = simulate.students(A1)
STUDENTS = CLASS.E2E  # name -> (kind, mutations, test cells that must lose their points)
FILES = {f"f_{name}": case for name, case in CLASS.FILE_CASES.items()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    crs = course.new_course(tmp_path_factory.mktemp("course"), ROOT, [A1])
    course.generate(crs, A1)
    for name, (kind, muts, _) in STUDENTS.items():
        course.submit(crs, A1, name, demo.simulated_notebooks(crs, A1, simulate.Student(name, kind, "", muts)))
    complete = demo.simulated_notebooks(crs, A1, simulate.Student("c", "complete", ""))
    for name, (build, _, _) in FILES.items():
        (fname, nb), = complete.items()
        course.submit(crs, A1, name, build(nbformat.reads(nbformat.writes(nb), as_version=4), fname))
    outcomes = batch.grade_class(crs, A1, jobs=2, timeout=15, progress=False)
    print(batch.summary(outcomes, 0))
    course.nbgrader(crs, "generate_feedback", A1, "--force")
    course.nbgrader(crs, "export", "--to", str(crs / "grades.csv"))
    rows = gradebook.scores(crs, A1)
    print(demo.score_table(rows))
    return crs, {o.student: o for o in outcomes}, rows, {(r.student, r.cell): r for r in rows}


def _auto_cells(rows):
    return sorted({r.cell for r in rows if r.auto})


def _expect(student):
    if student in STUDENTS:
        return STUDENTS[student][2]
    return FILES[student][1]


@pytest.mark.parametrize("student", list(STUDENTS) + list(FILES))
def test_each_submission_loses_exactly_the_expected_points(graded, student):
    _, outcomes, rows, table = graded
    assert outcomes[student].status == "graded", outcomes[student].detail
    cells = _auto_cells(rows)
    lost = cells if _expect(student) == "all" else _expect(student)
    assert set(lost) <= set(cells), f"unknown cells in expectation: {set(lost) - set(cells)}"
    got = {c: table[(student, c)].score for c in cells}
    expected = {c: 0.0 if c in lost else table[(student, c)].max_score for c in cells}
    assert got == expected, f"{student}: {got} != {expected}"


@pytest.mark.parametrize("student", list(FILES))
def test_broken_files_are_explained(graded, student):
    _, outcomes, _, _ = graded
    phrase = FILES[student][2]
    if phrase:
        assert any(phrase in e for e in outcomes[student].events), outcomes[student].events


def test_no_grade_is_lost_or_duplicated(graded):
    crs, outcomes, rows, _ = graded
    assert set(outcomes) == set(STUDENTS) | set(FILES)
    keys = [(r.student, r.cell) for r in rows]
    assert len(keys) == len(set(keys))
    cells = {r.cell for r in rows}
    assert len(rows) == len(outcomes) * len(cells)


def test_written_answer_goes_to_manual_grading(graded):
    _, _, _, table = graded
    assert table[("complete", "written_kl")].pending
    assert not table[("untouched", "written_kl")].pending and table[("untouched", "written_kl")].score == 0


def test_grading_is_deterministic_across_runs_and_jobs(graded):
    crs, _, rows, table = graded
    cells = _auto_cells(rows)
    for c in cells:
        assert table[("complete", c)].score == table[("complete_again", c)].score
    again = ["bugs_a", "x_segfault", "alternative"]
    # again, one at a time, each in a new process instead of one forked from the warm server
    outcomes = batch.grade_class(crs, A1, jobs=1, force=True, students=again, timeout=15, progress=False, fork=False)
    assert all(o.status == "graded" for o in outcomes)
    fresh = {(r.student, r.cell): r.score for r in gradebook.scores(crs, A1)}
    assert all(fresh[(s, c)] == table[(s, c)].score for s in again for c in cells)


def test_rerun_skips_graded_submissions(graded):
    crs, _, _, _ = graded
    outcomes = batch.grade_class(crs, A1, jobs=2, students=["complete", "untouched"], progress=False)
    assert [o.status for o in outcomes] == ["skipped", "skipped"]


def test_timeout_and_crash_are_reported_in_the_cell(graded):
    crs, _, _, table = graded

    def errors(student, gid):
        nb = nbformat.read(crs / "autograded" / student / A1 / f"{A1}.ipynb", as_version=4)
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)
        return [o.ename for o in cell.outputs if o.output_type == "error"]

    assert set(errors("x_infinite_loop", "test_poisson_mle")) & {"CellTimeoutError", "KeyboardInterrupt"}
    assert "KernelDied" in errors("x_exit_kernel", "test_poisson_mle")
    assert "KernelDied" in errors("x_segfault", "test_em_step")
    # a kernel in its own PID namespace kills only itself (os.getppid() is 0 there: its own group)
    assert "KernelDied" in errors("x_kill_parent", "test_poisson_mle")
    # a kernel that does not stop when interrupted is replaced; the rest of the notebook is graded
    assert "CellTimeoutError" in errors("x_ignore_interrupt", "test_poisson_mle")
    assert "GradingIntegrityError" in errors("x_patch_check", "test_poisson_mle")
    nb = nbformat.read(crs / "autograded" / "x_huge_output" / A1 / f"{A1}.ipynb", as_version=4)
    assert sum(len(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.outputs) < 2_000_000


def test_kernel_cannot_read_course_secrets_or_write_outside_its_folder(graded):
    import ast

    from gencourse.grading import sandbox

    crs, _, _, _ = graded
    if not sandbox.available():
        pytest.skip("this system does not allow unprivileged user namespaces")
    found = ast.literal_eval((crs / "autograded" / "x_read_secrets" / A1 / "leak.txt").read_text())
    assert found["solutions"] == [] and found["others"] == [] and found["gradebook_bytes"] == 0, found
    assert found["write_outside"] != "written" and not (crs / "hacked.txt").exists()
    # the grader's settings reach the kernel as options, never as variables: only the evidence folder,
    # and nbgrader's own NBGRADER_EXECUTION=autograde (nbgrader sets it for every autograded notebook)
    assert set(found["environment"]) - {"NBGRADER_EXECUTION"} == {"GENCOURSE_EVIDENCE_DIR"}, found["environment"]


def test_integrity_report_flags_tricks_not_honest_work(graded):
    crs, _, _, _ = graded
    report = (crs / "reports" / f"integrity_{A1}.md").read_text()
    flagged = set(re.findall(r"^## (\S+)", report, re.M))
    assert {"x_shadow_reference", "x_patch_check", "x_swallow_errors", "x_patch_allclose", "x_exit_kernel",
            "x_read_secrets"} <= flagged
    assert not flagged & {"complete", "alternative", "bugs_a", "bugs_b", "untouched"}


def test_feedback_hides_hidden_tests_and_export_matches(graded):
    """What a reader of each feedback file sees (tags stripped, entities unescaped; tests/test_feedback.py)
    holds no line of any hidden test, for every student of the class, hostile ones included."""
    from test_feedback import leaks

    crs, outcomes, rows, _ = graded
    found = leaks(crs, A1)
    assert len(found) >= len(STUDENTS)
    assert not any(found.values()), f"hidden test lines a reader sees: { {f: h for f, h in found.items() if h} }"
    with open(crs / "grades.csv") as f:
        exported = {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)}
    totals = {}
    for r in rows:
        totals[r.student] = totals.get(r.student, 0) + r.score
    assert exported == pytest.approx(totals)


def test_a_failed_grading_says_why_in_one_line():
    """The reason given for a submission that could not be graded is the exception that stopped
    nbgrader (logged indented), not one of the events the autograder handled."""
    log = ("[AutogradeApp | ERROR] Timeout waiting for execute reply (15s).\n[AutogradeApp | ERROR] Interrupting kernel\n"
           "[AutogradeApp | ERROR] There was an error processing assignment: x\n"
           "[AutogradeApp | ERROR] Traceback (most recent call last):\n"
           "      File \"client.py\", line 791, in _async_poll_for_reply\n        raise CellTimeoutError.error_from(\n"
           "    nbclient.exceptions.CellTimeoutError: A cell timed out while it was being executed, after 4 seconds.\n"
           "    The message was: Timeout waiting for IOPub output.\n"
           "[AutogradeApp | ERROR] Please see the the above traceback for details on the specific errors.\n")
    assert batch.failure_reason(log, 1) == ("nbclient.exceptions.CellTimeoutError: A cell timed out while it was "
                                            "being executed, after 4 seconds.")
    handled = "[AutogradeApp | ERROR] Kernel died while waiting for execute reply.\n"
    assert batch.failure_reason(handled, -9) == "the grading process was killed by signal 9"


def _leftovers(crs, student):
    """The token of the background process that a submission started, and the processes that still
    carry it on their command line (``pgrep -f``, read from /proc): none once grading is over."""
    token_file = crs / "autograded" / student / A1 / "background.txt"
    assert token_file.is_file(), "the submission's background process never ran"
    token = token_file.read_text().strip()
    assert token.startswith("gencourse-leftover-")
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if token.encode() in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:  # ended meanwhile
            pass
    return token, found


def test_no_process_outlives_grading(graded):
    crs, outcomes, _, _ = graded
    assert outcomes["x_background_process"].status == "graded"
    token, found = _leftovers(crs, "x_background_process")
    assert not found, f"still running after grading: {found}"


HOSTILE_UNDER_LOAD = ("complete", "x_memory_bomb", "x_segfault", "x_infinite_loop", "x_kill_parent",
                      "x_background_process")


@pytest.fixture(scope="module")
def graded_under_load(tmp_path_factory):
    """A few hostile submissions and a complete one graded while three CPU-bound processes keep the
    machine busy (the situation in which x_memory_bomb once came back "failed")."""
    import subprocess
    import sys

    crs = course.new_course(tmp_path_factory.mktemp("busy"), ROOT, [A1])
    course.generate(crs, A1)
    for name in HOSTILE_UNDER_LOAD:
        kind, muts, _ = STUDENTS[name]
        course.submit(crs, A1, name, demo.simulated_notebooks(crs, A1, simulate.Student(name, kind, "", muts)))
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    try:
        outcomes = batch.grade_class(crs, A1, jobs=2, timeout=15, progress=False)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    print(batch.summary(outcomes, 0))
    return crs, {o.student: o for o in outcomes}, {(r.student, r.cell): r for r in gradebook.scores(crs, A1)}


@pytest.mark.parametrize("student", HOSTILE_UNDER_LOAD)
def test_busy_machine_never_fails_a_submission(graded_under_load, student):
    crs, outcomes, table = graded_under_load
    assert outcomes[student].status == "graded", outcomes[student].detail
    cells = sorted({c for (_, c), r in table.items() if r.auto})
    lost = STUDENTS[student][2]
    got = {c: table[(student, c)].score for c in cells}
    assert got == {c: 0.0 if c in lost else table[(student, c)].max_score for c in cells}, student
    if student == "x_background_process":
        token, found = _leftovers(crs, student)
        assert not found, f"still running after grading: {found}"


def _assignment_list(crs):
    """What JupyterLab's Assignment List tab asks its server for (nbgrader's own handler code,
    which reads the course's configuration from the folder the server runs in)."""
    from nbgrader.server_extensions.assignment_list.handlers import AssignmentList

    lister = AssignmentList()
    lister.root_dir = str(crs)
    return lister.list_released_assignments(), lister.list_submitted_assignments()


def test_local_exchange_release_fetch_submit_collect(tmp_path, monkeypatch):
    """The student flow through nbgrader's exchange, as instructor and student (one user), with
    nbgrader's own commands; and what the Assignment List and the Formgrader check for it."""
    from nbgrader.apps import NbGrader
    from nbgrader.apps.api import NbGraderAPI

    crs = course.new_course(tmp_path / "course", ROOT, [A1])
    course.generate(crs, A1)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))  # the student's exchange cache
    monkeypatch.chdir(crs)
    app = NbGrader()
    app.load_config_file()
    api = NbGraderAPI(config=app.config)  # what the Formgrader shows
    assert not api.exchange_missing and api.exchange_is_functional, api.exchange_root

    def run(*args):  # the command as typed (INFO: nbgrader list prints at that level)
        import subprocess
        import sys

        proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=crs, env=course.nbgrader_env(),
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr

    run("release_assignment", A1)
    assert f"gencourse {A1}" in run("list")
    released, _ = _assignment_list(crs)
    assert released["success"], released["value"]
    assert [(a["assignment_id"], a["status"]) for a in released["value"]] == [(A1, "released")]
    run("fetch_assignment", A1)
    fetched = crs / A1 / f"{A1}.ipynb"
    released, _ = _assignment_list(crs)
    assert [(a["assignment_id"], a["status"]) for a in released["value"]] == [(A1, "fetched")]
    # the student fills in the notebook, then submits it
    work = demo.simulated_notebooks(crs, A1, simulate.Student("me", "complete", ""))[f"{A1}.ipynb"]
    nbformat.write(work, fetched)
    run("submit", A1)
    _, submitted = _assignment_list(crs)
    assert submitted["success"], submitted["value"]
    assert [len(a["submissions"]) for a in submitted["value"]] == [1]
    run("collect", A1)
    user = next((crs / "submitted").iterdir()).name
    got = nbformat.read(crs / "submitted" / user / A1 / f"{A1}.ipynb", as_version=4)
    assert [c.source for c in got.cells] == [c.source for c in work.cells]


def test_committed_release_is_in_sync_with_solutions():
    assert course.release_differences(ROOT) == []
