"""Feedback shows a student what they did and why points went, never the hidden tests.

What is tested is what a reader sees: the feedback HTML of ``nbgrader generate_feedback`` with its
tags stripped and its entities unescaped (syntax highlighting splits ``check("a1.entropy", entropy)``
into ``<span>`` pieces, so searching the raw HTML finds nothing even when every hidden test is
shown). Every line of every hidden test region of the source must be absent from that text, in the
cells and in the tracebacks that a failed hidden check leaves, for every assignment. This module
holds the helpers and the preprocessor's own test; the graded feedback is searched where each class
is graded once: assignments 2-8 in tests/test_assignments.py (a complete submission and one with
realistic mistakes that fail hidden tests), assignment 1's whole class, hostile submissions
included, in tests/test_autograder.py.
"""
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat

from gencourse.grading import course
from gencourse.grading.autograder import HideHiddenTests

ROOT = Path(__file__).resolve().parent.parent
DEEP = "a1_maximum_likelihood"  # its feedback is tested on the whole class of tests/test_autograder.py
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS(.*?)### END HIDDEN TESTS", re.S)


class _Text(HTMLParser):
    """The text a browser shows: no tags, no scripts or styles, entities unescaped."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def hidden_lines(root: Path, assignment: str) -> set:
    """Every non-blank line inside a hidden-test region of the assignment's source notebooks
    (short ones, such as a lone ``)``, would match anything and are left out)."""
    lines = set()
    for path in sorted((root / "solutions" / assignment).glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            for region in HIDDEN.findall(cell.source):
                lines |= {ln.strip() for ln in region.splitlines() if len(ln.strip()) >= 6}
    return lines


def leaks(crs: Path, assignment: str, root: Path = ROOT) -> dict:
    """Feedback file -> the hidden test lines its reader can see (empty when none)."""
    hidden = hidden_lines(root, assignment)
    assert hidden and any("check(" in h for h in hidden), f"{assignment} has no hidden tests to look for"
    files = sorted((crs / "feedback").glob(f"*/{assignment}/*.html"))
    assert files, f"no feedback for {assignment}"
    out = {}
    for f in files:
        text = visible_text(f.read_text())
        out[str(f.relative_to(crs))] = sorted(h for h in hidden if h in text)
    return out


def test_every_assignment_has_its_feedback_tested():
    """Assignment 1's feedback is checked on its whole class (tests/test_autograder.py), every other
    assignment's on its end-to-end class (tests/test_assignments.py, which grades each class once)."""
    from test_assignments import CLASSES, MISTAKES

    assert DEEP in course.assignments(ROOT)
    assert set(CLASSES) | {DEEP} == set(course.assignments(ROOT))
    assert set(MISTAKES) == set(CLASSES)


def test_hide_hidden_tests_removes_regions_and_quoted_traceback_lines():
    """The preprocessor on one graded cell: region gone (one comment in its place), the traceback
    keeps its frames and message but no line of hidden code; other cells untouched."""
    src = ('# Visible tests\nassert f(1) == 1\n    ### BEGIN HIDDEN TESTS\n    from gencourse.grading import check\n'
           '    check("a9.f", f)\n    ### END HIDDEN TESTS\nprint("after")')
    grade = {"nbgrader": {"grade": True, "grade_id": "test_f", "points": 1, "solution": False, "locked": True}}
    tb = ["\x1b[0;31mCheckFailed\x1b[0m Traceback (most recent call last)",
          "Cell \x1b[0;32mIn[3], line 5\x1b[0m\n\x1b[1;32m      3\x1b[0m ### BEGIN HIDDEN TESTS\n"
          "\x1b[1;32m      4\x1b[0m \x1b[38;5;28;01mfrom\x1b[39;00m gencourse.grading import check\n"
          "\x1b[0;32m----> 5\x1b[0m \x1b[43mcheck\x1b[49m(\x1b[38;5;124m\"\x1b[39m\x1b[38;5;124ma9.f\x1b[39m\"\x1b[39m, f)\n",
          "\x1b[0;31mCheckFailed\x1b[0m: f on cpu, input (3,): expected 1, got 2"]
    test = nbformat.v4.new_code_cell(src, metadata=grade)
    test.outputs = [nbformat.v4.new_output("error", ename="CheckFailed", evalue="f on cpu", traceback=tb)]
    student = nbformat.v4.new_code_cell("### BEGIN HIDDEN TESTS\nmy own text", metadata={})
    nb = nbformat.v4.new_notebook(cells=[test, student])
    nb, _ = HideHiddenTests().preprocess(nb, {})
    cell = nb.cells[0]
    assert "check(" not in cell.source and "HIDDEN" not in cell.source
    assert cell.source.splitlines() == ["# Visible tests", "assert f(1) == 1",
                                        "    # (hidden tests: run by the grader, not shown)", 'print("after")']
    text = "\n".join(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", t) for t in cell.outputs[0].traceback)
    assert "check(" not in text and "gencourse.grading" not in text and "BEGIN HIDDEN" not in text
    assert "In[3], line 5" in text and "f on cpu, input (3,): expected 1, got 2" in text
    assert nb.cells[1].source == "### BEGIN HIDDEN TESTS\nmy own text"  # not a graded cell: left alone
