"""The one entry point of the benchmarks: prints a table (markdown) of every measurement.

    python benchmarks/run.py                 # everything
    python benchmarks/run.py --only notebooks,autograde
    python benchmarks/run.py --quick         # smoke run: fewer repeats, tiny budgets

Rows come from: execution time of every lecture and solution notebook, autograding time per
submission (median of several), and each ``benchmarks/bench_*.py`` module's ``run(quick)``
(model quality and speed). Timings are wall-clock on whatever machine runs this; compare rows
only within one run.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def notebook_rows(quick: bool = False) -> list:
    import nbformat
    from nbclient import NotebookClient

    paths = sorted((ROOT / "lectures").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*/*.ipynb"))
    rows = []
    for path in paths[:2] if quick else paths:
        nb = nbformat.read(path, as_version=4)
        os.environ.setdefault("MPLBACKEND", "Agg")
        t = time.perf_counter()
        try:
            NotebookClient(nb, timeout=900, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            note = "nbclient, fresh kernel"
        except Exception as e:  # report it in the table, go on with the others
            note = f"FAILED: {type(e).__name__}"
        rows.append(dict(benchmark="notebook execution", case=str(path.relative_to(ROOT)),
                         value=round(time.perf_counter() - t, 1), unit="s", note=note))
    return rows


def autograde_rows(quick: bool = False) -> list:
    from gencourse.grading import course, demo, simulate

    repeats = 2 if quick else 5
    rows = []
    for assignment in course.assignments(ROOT):
        with tempfile.TemporaryDirectory(prefix="gencourse-bench-") as tmp:
            crs = course.new_course(Path(tmp), ROOT, [assignment])
            course.generate(crs, assignment)
            kinds = {"complete": simulate.Student("x", "complete", ""),
                     "untouched": simulate.Student("x", "untouched", "")}
            for label, student in kinds.items():
                times = []
                for i in range(repeats):
                    name = f"{label}{i}"
                    course.submit(crs, assignment, name, demo.simulated_notebooks(crs, assignment, student))
                    t = time.perf_counter()
                    course.nbgrader(crs, "autograde", assignment, "--student", name, "--force")
                    times.append(time.perf_counter() - t)
                rows.append(dict(benchmark="autograde one submission", case=f"{assignment} ({label})",
                                 value=round(statistics.median(times), 1), unit="s",
                                 note=f"median of {repeats}; nbgrader autograde --student, process start included"))
    return rows


def throughput_rows(quick: bool = False, n: int = 50, only_assignments=None) -> list:
    """Grade ``n`` mixed submissions per assignment with --jobs 1 and --jobs 2 (fresh each time)."""
    import shutil

    from gencourse.grading import batch, course, demo, simulate

    n = 6 if quick else n
    rows = []
    for assignment in course.assignments(ROOT):
        if only_assignments and assignment not in only_assignments:
            continue
        kinds = [("complete", ()), ("untouched", ()), ("alternative", ())]
        kinds += [("mutation", (m,)) for m in simulate.mutation_table(assignment)]
        with tempfile.TemporaryDirectory(prefix="gencourse-throughput-") as tmp:
            crs = course.new_course(Path(tmp), ROOT, [assignment])
            course.generate(crs, assignment)
            for i in range(n):
                kind, muts = kinds[i % len(kinds)]
                st = simulate.Student(f"s{i:03d}", kind, "", muts)
                course.submit(crs, assignment, st.name, demo.simulated_notebooks(crs, assignment, st))
            per_minute = {}
            for jobs in (1, 2):
                for d in ("autograded", "feedback"):
                    shutil.rmtree(crs / d, ignore_errors=True)
                t = time.perf_counter()
                out = batch.grade_class(crs, assignment, jobs=jobs, force=True, timeout=30, progress=False)
                dt = time.perf_counter() - t
                failed = sum(o.status != "graded" for o in out)
                per_minute[jobs] = n / dt * 60
                rows.append(dict(benchmark="autograde throughput", case=f"{assignment}, {n} submissions, --jobs {jobs}",
                                 value=round(per_minute[jobs], 1), unit="submissions/min",
                                 note=f"{dt:.0f} s, {failed} failed; mix of {len(kinds)} kinds incl. buggy and hostile"))
            rows.append(dict(benchmark="autograde throughput", case=f"{assignment}, speed-up --jobs 2 vs 1",
                             value=round(per_minute[2] / per_minute[1], 2), unit="x",
                             note=f"300 students: {300 / per_minute[2]:.0f} min with --jobs 2 on this machine"))
    return rows


def module_rows(quick: bool = False, only=None) -> list:
    rows = []
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        name = path.stem[len("bench_"):]
        if only and name not in only:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        rows += mod.run(quick=quick)
    return rows


def table(rows: list) -> str:
    header = ["benchmark", "case", "value", "unit", "note"]
    lines = [[str(r.get(k, "")) for k in header] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    fmt = lambda row: "| " + " | ".join(x.ljust(w) for x, w in zip(row, widths)) + " |"
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in lines])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run with tiny budgets")
    p.add_argument("--only", default="", help="comma-separated: notebooks, autograde, throughput, or a bench_<name> module name")
    p.add_argument("--submissions", type=int, default=50, help="submissions per assignment in the throughput run")
    p.add_argument("--assignments", default="", help="comma-separated assignments for the throughput run (default all)")
    args = p.parse_args(argv)
    only = set(filter(None, args.only.split(",")))
    rows = []
    if not only or "notebooks" in only:
        rows += notebook_rows(args.quick)
    if not only or "autograde" in only:
        rows += autograde_rows(args.quick)
    if not only or "throughput" in only:
        rows += throughput_rows(args.quick, args.submissions, set(filter(None, args.assignments.split(","))))
    own = {"notebooks", "autograde", "throughput"}
    if not only or only - own:
        rows += module_rows(args.quick, only - own or None)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
