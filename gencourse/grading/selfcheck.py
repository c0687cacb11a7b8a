"""``gencourse check <notebook>``: a student's self-check before submitting.

Executes a copy of the notebook top to bottom (the file itself is not modified), then reports each
test cell as passed, failed (with the assertion's message) or not attempted (the code it tests
still raises ``NotImplementedError``). Only the tests in the student's own notebook run: hidden
tests exist only on the grader's side.
"""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

PASSED, FAILED, NOT_ATTEMPTED, MANUAL = "passed", "FAILED", "not attempted", "graded by hand"


def run_visible_tests(path: Path, timeout: int = 120) -> list:
    """Execute the notebook and return ``(grade_id, points, status, message)`` per graded cell."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, allow_errors=True, interrupt_on_timeout=True,
                            kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    env_backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "Agg"
    try:
        client.execute()
    finally:
        if env_backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_backend
    results = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade"):
            continue
        gid, points = meta.get("grade_id", "?"), meta.get("points", 0)
        if cell.cell_type != "code":
            results.append((gid, points, MANUAL, ""))
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if not errors:
            results.append((gid, points, PASSED, ""))
        elif errors[0].get("ename") == "NotImplementedError":
            results.append((gid, points, NOT_ATTEMPTED, "the function it tests still raises NotImplementedError"))
        else:
            results.append((gid, points, FAILED, f"{errors[0].get('ename')}: {errors[0].get('evalue')}".strip()))
    return results


def self_check(path: Path, timeout: int = 120) -> int:
    """Print the per-part summary; exit status 0 when every visible test passed."""
    if not path.exists():
        print(f"gencourse check: no such notebook: {path}")
        return 2
    try:
        results = run_visible_tests(path, timeout)
    except nbformat.reader.NotJSONError:
        print(f"gencourse check: {path} is not a valid notebook (is the file damaged?)")
        return 2
    print(f"Visible tests of {path.name} (hidden tests run only when the assignment is graded):\n")
    width = max((len(r[0]) for r in results), default=10)
    for gid, points, status, message in results:
        print(f"  {gid.ljust(width)}  {points:>3g} pt  {status}" + (f"\n      {message}" if message else ""))
    auto = [r for r in results if r[2] != MANUAL]
    failed = [r for r in auto if r[2] in (FAILED, NOT_ATTEMPTED)]
    print(f"\n{len(auto) - len(failed)} of {len(auto)} autograded parts pass their visible tests"
          + ("" if not failed else "; fix the ones above before submitting.")
          + (f" {len(results) - len(auto)} written answer(s) will be graded by hand." if len(results) > len(auto) else ""))
    return 1 if failed else 0
