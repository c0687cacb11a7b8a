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
    outcomes = batch.grade_class(crs, A1, jobs=1, force=True, students=again, timeout=15, progress=False)
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
    # the grader's settings reach the kernel as options, never as variables: only the evidence folder
    assert found["environment"] == ["GENCOURSE_EVIDENCE_DIR"], found["environment"]


def test_integrity_report_flags_tricks_not_honest_work(graded):
    crs, _, _, _ = graded
    report = (crs / "reports" / f"integrity_{A1}.md").read_text()
    flagged = set(re.findall(r"^## (\S+)", report, re.M))
    assert {"x_shadow_reference", "x_patch_check", "x_swallow_errors", "x_patch_allclose", "x_exit_kernel",
            "x_read_secrets"} <= flagged
    assert not flagged & {"complete", "alternative", "bugs_a", "bugs_b", "untouched"}


def test_feedback_hides_hidden_tests_and_export_matches(graded):
    crs, outcomes, rows, _ = graded
    feedback = sorted((crs / "feedback").rglob("*.html"))
    assert len(feedback) >= len(STUDENTS)
    source = nbformat.read(ROOT / "solutions" / A1 / f"{A1}.ipynb", as_version=4)
    hidden = set()
    for c in source.cells:
        m = re.search(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", c.source, re.S)
        if m:
            hidden |= {line.strip() for line in m.group(1).splitlines() if "check(" in line}
    assert hidden
    for f in feedback:
        text = f.read_text()
        leaked = [h for h in hidden if h in text or h.replace('"', "&quot;") in text]
        assert not leaked, f"{f} shows hidden test lines {leaked}"
    with open(crs / "grades.csv") as f:
        exported = {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)}
    totals = {}
    for r in rows:
        totals[r.student] = totals.get(r.student, 0) + r.score
    assert exported == pytest.approx(totals)


def test_committed_release_is_in_sync_with_solutions():
    assert course.release_differences(ROOT) == []
