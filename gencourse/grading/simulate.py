"""Simulated students: submissions built from an assignment's release and its solutions.

Every submission starts from the released notebook. ``complete`` fills each solution cell with
the instructor's solution; the others change that complete submission in one place:

* a :class:`Mutation` replaces one snippet of one solution cell (a realistic bug, an infinite
  loop, a hostile trick); ``lost`` names the test cells that must lose their points because of it,
  so the autograder tests can check that exactly those points go;
* an alternative solution rewrites cells in a different but correct way, which must keep full
  marks.

The material of each assignment lives beside its checks, in
``gencourse/grading/assignments/<assignment>/``: ``students.py`` (``MUTATIONS``, the end-to-end
class ``E2E``, for some the ``DEMO`` class) and ``alternative.py`` (a real, linted Python file whose
``# %% <grade_id>`` sections are the alternative solution cells).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import nbformat

from . import catalog

SOLUTION_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` by ``new`` in the solution cell ``cell`` of a complete submission."""

    cell: str
    old: str
    new: str
    note: str
    lost: tuple = field(default_factory=tuple)


@dataclass(frozen=True)
class Student:
    """A simulated student: a name, how the submission is built, and what it should score."""

    name: str
    kind: str  # "complete", "untouched", "mutation", "alternative"
    note: str
    mutations: tuple = ()
    lost: tuple = ()


SECTION = re.compile(r"^# %% (\w+)[ \t]*$", re.MULTILINE)


def students(assignment: str):
    """The module ``students.py`` of an assignment (its ``MUTATIONS``, ``E2E``, ...)."""
    return catalog.assignment_module(assignment, "students")


def mutation_table(assignment: str) -> dict:
    return dict(getattr(students(assignment), "MUTATIONS", {}))


def alternative_cells(assignment: str) -> dict:
    """The cells of ``alternative.py``: grade id -> source, from its ``# %% <grade_id>`` sections."""
    path = catalog.ASSIGNMENTS_DIR / assignment / "alternative.py"
    parts = SECTION.split(path.read_text())
    return {gid: body.strip("\n") for gid, body in zip(parts[1::2], parts[2::2])}


def assignments_with(attribute: str) -> list:
    """Assignments whose ``students.py`` defines ``attribute`` (``"E2E"``, ``"DEMO"``)."""
    return [a for a in catalog.assignment_names()
            if (catalog.ASSIGNMENTS_DIR / a / "students.py").is_file() and hasattr(students(a), attribute)]


def solution_sources(source_nb) -> dict:
    """The instructor's code of every solution cell, by grade id, with the markers removed."""
    out = {}
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            out[meta["grade_id"]] = SOLUTION_MARKERS.sub("", cell.source)
    return out


def build_submission(release_nb, source_nb, kind: str, assignment: str, mutations=()) -> nbformat.NotebookNode:
    """A simulated submission (a new notebook) of the given kind; see :class:`Student`."""
    nb = copy.deepcopy(release_nb)
    if kind == "untouched":
        return nb
    solutions = solution_sources(source_nb)
    if kind == "alternative":
        solutions.update(alternative_cells(assignment))
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "code" and gid in solutions and cell.metadata["nbgrader"].get("solution"):
            cell.source = solutions[gid]
        elif cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = "A simulated student's answer: maximum likelihood minimises the forward KL."
    table = mutation_table(assignment) if mutations else {}
    for name in mutations:
        m = table[name]
        cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == m.cell]
        if not cells or m.old not in cells[0].source:
            raise ValueError(f"mutation {name!r}: {m.old!r} is not in cell {m.cell!r}; "
                             f"update gencourse/grading/assignments/{assignment}/students.py")
        cells[0].source = cells[0].source.replace(m.old, m.new)
    return nb
