"""Every assignment but the first, end to end: release, a simulated class, parallel autograde.

For each assignment with an end-to-end class (``E2E`` in ``grading/assignments/<name>/students.py``): the complete solution and a differently
written correct one keep every autograded point, the untouched release gets none, and each
submission with realistic mistakes loses exactly the points of the test cells they break.
(Assignment 1's deeper test, with broken and hostile submissions, is tests/test_autograder.py.)

The feedback of the same graded class is checked here too (generated for the complete submission and
one with realistic mistakes, so that no class is graded twice): no hidden test line in what a reader
sees, the reasons for lost points kept (the helpers and the preprocessor's own tests are in
tests/test_feedback.py).
"""
import re
from pathlib import Path

import pytest

from gencourse.grading import batch, course, demo, gradebook, simulate
from test_feedback import hidden_lines, leaks, visible_text

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
DEEP = "a1_maximum_likelihood"  # graded with broken and hostile submissions in tests/test_autograder.py
CLASSES = {a: simulate.students(a).E2E for a in simulate.assignments_with("E2E") if a != DEEP}
CASES = [(a, s) for a, cls in CLASSES.items() for s in cls]
#: per assignment, the first end-to-end student whose realistic mistakes fail hidden tests: its
#: feedback and the complete submission's are generated and searched for hidden test lines
MISTAKES = {a: next(s for s, (kind, _, lost) in cls.items() if kind == "mutation" and lost) for a, cls in CLASSES.items()}


class _Graded(dict):
    """Each assignment's class, graded the first time a test asks for it (``-k a2_autoregressive``
    grades only that one): ``{assignment: ({student: outcome}, gradebook rows, course folder)}``."""

    def __init__(self, tmp_path_factory):
        super().__init__()
        self.tmp = tmp_path_factory

    def __missing__(self, assignment):
        cls = CLASSES[assignment]
        crs = course.new_course(self.tmp.mktemp(assignment), ROOT, [assignment])
        course.generate(crs, assignment)
        for name, (kind, muts, _) in cls.items():
            student = simulate.Student(name, kind, "", tuple(muts))
            course.submit(crs, assignment, name, demo.simulated_notebooks(crs, assignment, student))
        outcomes = batch.grade_class(crs, assignment, jobs=2, timeout=60, progress=False)
        rows = gradebook.scores(crs, assignment)
        print(demo.score_table(rows))
        self[assignment] = ({o.student: o for o in outcomes}, rows, crs)
        return self[assignment]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return _Graded(tmp_path_factory)


class _Feedback(dict):
    """The feedback of each graded class, generated the first time a feedback test asks for it, for
    the complete submission and MISTAKES[assignment]: ``{assignment: course folder}``. A failure is
    kept and raised again, so that one failed generation is not retried by every test."""

    def __init__(self, graded):
        super().__init__()
        self.graded = graded

    def __missing__(self, assignment):
        _, _, crs = self.graded[assignment]
        try:
            for student in ("complete", MISTAKES[assignment]):
                course.nbgrader(crs, "generate_feedback", assignment, f"--student={student}", "--force")
        except Exception as exc:  # noqa: BLE001 (raised again by every test of this assignment)
            self[assignment] = exc
        else:
            self[assignment] = crs
        return self[assignment]

    def of(self, assignment):
        got = self[assignment]
        if isinstance(got, Exception):
            raise got
        return got


@pytest.fixture(scope="module")
def feedback(graded):
    return _Feedback(graded)


@pytest.mark.parametrize("assignment,student", CASES)
def test_submission_loses_exactly_the_expected_points(graded, assignment, student):
    outcomes, rows, _ = graded[assignment]
    assert outcomes[student].status == "graded", outcomes[student].detail
    cells = sorted({r.cell for r in rows if r.auto})
    lost = CLASSES[assignment][student][2]
    lost = cells if lost == "all" else lost
    assert set(lost) <= set(cells), f"unknown cells in expectation: {set(lost) - set(cells)}"
    table = {r.cell: r for r in rows if r.student == student}
    got = {c: table[c].score for c in cells}
    expected = {c: 0.0 if c in lost else table[c].max_score for c in cells}
    assert got == expected, f"{assignment}/{student}: {got} != {expected}"


@pytest.mark.parametrize("assignment", list(CLASSES))
def test_integrity_report_flags_borrowing_and_lists_similar_code(graded, assignment):
    _, _, crs = graded[assignment]
    report = (crs / "reports" / f"integrity_{assignment}.md").read_text()
    flagged = set(re.findall(r"^## (\S+)", report, re.M))
    assert not flagged & {"complete", "alternative", "untouched"}, flagged
    if "x_borrow_reference" in CLASSES[assignment]:
        assert "x_borrow_reference" in flagged
    assert "# Similar code" in report and "the instructor's solution" in report  # the complete solution is one
    assert not re.search(r"^\| \d+% likely copy \| alternative \|", report, re.M)


@pytest.mark.parametrize("assignment", list(CLASSES))
def test_feedback_shows_no_hidden_test(feedback, assignment):
    crs = feedback.of(assignment)
    found = leaks(crs, assignment)
    assert len(found) == 2, sorted(found)
    assert not any(found.values()), f"hidden test lines a reader sees: {found}"


@pytest.mark.parametrize("assignment", list(CLASSES))
def test_feedback_still_explains_the_lost_points(feedback, assignment):
    """Hiding the tests keeps what the student needs: the visible tests and why a hidden one failed."""
    crs = feedback.of(assignment)
    student = MISTAKES[assignment]
    text = visible_text((crs / "feedback" / student / assignment / f"{assignment}.html").read_text())
    assert "hidden tests: run by the grader, not shown" in text
    assert re.search(r"\b\w+(Error|Failed): \S", text), "no error message where points were lost"
    assert "assert " in text  # the visible tests stay


@pytest.mark.parametrize("assignment", list(CLASSES))
def test_the_reader_view_sees_hidden_tests_when_they_are_rendered(graded, assignment):
    """The search can fail: the autograded notebook rendered as nbgrader's own pipeline did (without
    the course's HideHiddenTests) shows the hidden tests to a reader, in the cells and the tracebacks."""
    import nbformat
    from nbconvert import HTMLExporter

    _, _, crs = graded[assignment]  # the autograded notebook, before feedback
    student = MISTAKES[assignment]
    nb = nbformat.read(crs / "autograded" / student / assignment / f"{assignment}.ipynb", as_version=4)
    html, _ = HTMLExporter(template_name="classic").from_notebook_node(nb)
    text = visible_text(html)
    hidden = hidden_lines(ROOT, assignment)
    assert {h for h in hidden if "check(" in h} <= {h for h in hidden if h in text}
    assert "<span" in html and not any(h in html for h in hidden if "check(" in h)  # the raw HTML hides them


def test_every_assignment_has_an_end_to_end_class():
    assert set(course.assignments(ROOT)) <= set(simulate.assignments_with("E2E"))
