"""End to end: nbgrader generate_assignment -> simulated submissions -> autograde -> feedback -> export.

Every simulated student is graded by the real ``nbgrader autograde`` with the course's
configuration, in one run. The expectations come from ``gencourse.simulate``: the complete
solution and a differently written correct one get every autograded point, the untouched release
gets none, and each mistake or trick loses exactly the points of the test cells it should.
"""
import csv
import json
import re
from pathlib import Path

import nbformat
import pytest

from gencourse import course, simulate

pytestmark = pytest.mark.slow
A1 = simulate.A1
ROOT = Path(__file__).resolve().parent.parent
M = simulate.MUTATIONS[A1]
HIDDEN_AFTER_GAUSSIAN = ("test_gaussian_mle", "test_poisson_mle", "test_kl_quadrature", "test_fit_gaussian_kl",
                         "test_gmm_log_prob", "test_em_step")

# name -> (kind, mutations, test cells that must lose their points)
STUDENTS = {
    "complete": ("complete", (), ()),
    "complete_again": ("complete", (), ()),
    "untouched": ("untouched", (), "all"),
    "alternative": ("alternative", (), ()),
    # realistic mistakes, two or three per submission, each in a different test cell
    "bugs_a": ("mutation", ("unbiased_variance", "kl_log_ratio_flipped", "em_old_means"),
               M["unbiased_variance"].lost + M["kl_log_ratio_flipped"].lost + M["em_old_means"].lost),
    "bugs_b": ("mutation", ("entropy_nan_at_zero", "gmm_no_logsumexp"),
               M["entropy_nan_at_zero"].lost + M["gmm_no_logsumexp"].lost),
    **{f"bug_{name}": ("mutation", (name,), M[name].lost) for name in
       ("infinite_loop", "shadow_reference", "swallow_errors")},
    # disabling the check function leaves every later hidden test unconfirmed
    "bug_patch_check": ("mutation", ("patch_check",), HIDDEN_AFTER_GAUSSIAN),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    crs = course.new_course(tmp_path_factory.mktemp("course"), ROOT, [A1])
    course.generate(crs, A1)
    for name, (kind, muts, _) in STUDENTS.items():
        student = simulate.Student(name, kind, "", muts)
        course.submit(crs, A1, name, course.simulated_notebooks(crs, A1, student))
    course.nbgrader(crs, "autograde", A1, "--force", timeout=15)
    course.nbgrader(crs, "generate_feedback", A1, "--force")
    course.nbgrader(crs, "export", "--to", str(crs / "grades.csv"))
    rows = course.scores(crs, A1)
    table = {(r.student, r.cell): r for r in rows}
    print(course.score_table(rows))
    return crs, rows, table


def _auto_cells(rows):
    return sorted({r.cell for r in rows if r.auto})


@pytest.mark.parametrize("student", list(STUDENTS))
def test_each_submission_loses_exactly_the_expected_points(graded, student):
    _, rows, table = graded
    lost = STUDENTS[student][2]
    cells = _auto_cells(rows)
    lost = cells if lost == "all" else lost
    assert set(lost) <= set(cells), f"unknown cells in expectation: {set(lost) - set(cells)}"
    got = {c: table[(student, c)].score for c in cells}
    expected = {c: 0.0 if c in lost else table[(student, c)].max_score for c in cells}
    assert got == expected, f"{student}: {got} != {expected}"


def test_written_answer_goes_to_manual_grading(graded):
    _, _, table = graded
    assert table[("complete", "written_kl")].pending
    assert not table[("untouched", "written_kl")].pending and table[("untouched", "written_kl")].score == 0


def test_grading_is_deterministic(graded):
    _, rows, table = graded
    for c in _auto_cells(rows):
        assert table[("complete", c)].score == table[("complete_again", c)].score


def test_timeout_is_reported_in_the_cell_and_the_rest_is_graded(graded):
    crs, _, table = graded
    nb = nbformat.read(crs / "autograded" / "bug_infinite_loop" / A1 / f"{A1}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_poisson_mle")
    assert any(o.get("ename") in ("CellTimeoutError", "KeyboardInterrupt") for o in cell.outputs if o.output_type == "error")
    assert table[("bug_infinite_loop", "test_em_step")].score == 2


def test_tricks_are_named_in_the_graded_notebook(graded):
    crs, _, _ = graded
    nb = nbformat.read(crs / "autograded" / "bug_patch_check" / A1 / f"{A1}.ipynb", as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert any(o.ename == "GradingIntegrityError" and "bypassed or replaced" in o.evalue for o in errors)


def test_feedback_and_export(graded):
    crs, rows, _ = graded
    feedback = sorted((crs / "feedback").rglob("*.html"))
    assert len(feedback) == len(STUDENTS)
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
