"""The one entry point of the benchmarks: prints a table (markdown) of every measurement.

    python benchmarks/run.py                 # everything
    python benchmarks/run.py --only notebooks,autograde
    python benchmarks/run.py --only profile   # where the time of one graded submission goes
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


PROFILE_FORMAT = ("--Application.log_format=%(asctime)s.%(msecs)03d [%(name)s|%(levelname)s] %(message)s",
                  "--Application.log_datefmt=%s", "--log-level=DEBUG")


def _profile_phases(log: str, start: float, end: float) -> dict:
    """Seconds per phase of one ``nbgrader autograde --student`` run, from its timestamped DEBUG log
    (``PROFILE_FORMAT``: epoch seconds, milliseconds) and the wall-clock start and end of the run."""
    import re

    lines = []
    for ln in log.splitlines():
        m = re.match(r"(\d+)\.(\d{3}) \[\w+\|\w+\] (.*)", ln)
        if m:
            lines.append((int(m.group(1)) + int(m.group(2)) / 1000, m.group(3)))

    def first(text, after=0.0):
        return next(t for t, msg in lines if text in msg and t >= after)

    def last(text, before=float("inf")):
        return [t for t, msg in lines if text in msg and t <= before][-1]

    config = first("for config files")
    loaded = last("Loaded config file")
    execute = first("Applying preprocessor: GencourseExecute")
    cells = [t for t, msg in lines if ("Executing cell" in msg or "Skipping non-executing cell" in msg) and t >= execute]
    stderr = first("Applying preprocessor: StderrToStdout", execute)
    idle = last("'execution_state': 'idle'", stderr)
    verify, after = first("Applying preprocessor: VerifyChecks", execute), first("Applying preprocessor: LimitOutput", execute)
    written = lines[-1][0]
    starts = [t for t, msg in lines if "Executing cell" in msg and t >= execute]
    idles = [t for t, msg in lines if "'execution_state': 'idle'" in msg and t >= execute]
    per_cell = sorted(((min([i for i in idles if i > s] or [s]) - s) for s in starts), reverse=True)
    return {
        "process start, imports (nbgrader, jupyter)": config - start,
        "course configuration (nbgrader_config.py, gencourse.grading)": loaded - config,
        "gradebook set-up, copy and check of the submission": execute - loaded,
        "sandbox and kernel start (with its seeding, which imports torch)": cells[0] - execute,
        "execution of the notebook's cells": idle - cells[0],
        "kernel shutdown": stderr - idle,
        "verification of the checks in the grader": after - verify,
        "grades and notebook saved": written - after,
        "process exit, grades read back": end - written,
        "_slowest cells": per_cell[:3],
    }


def profile_rows(quick: bool = False, assignment: str = "a1_maximum_likelihood") -> list:
    """Where the time of one graded submission goes: a complete submission of ``assignment`` graded
    by ``gencourse autograde``'s own path (:func:`gencourse.grading.batch.grade_one`), with nbgrader's
    DEBUG log timestamped (which itself costs a little), ``repeats`` times after one warm-up run; the
    median of each phase. Three ways of running the grader: a new ``nbgrader`` process per submission
    that shuts its kernel down gracefully (how it was done before), the same with the kernel killed
    at the end (the course's setting now), and a child forked from a warm
    :class:`gencourse.grading.batch.Forkserver` (what ``gencourse autograde`` does)."""
    import subprocess

    from gencourse.grading import batch, course, demo, gradebook, sandbox, simulate

    repeats = 1 if quick else 3
    rows = []
    with tempfile.TemporaryDirectory(prefix="gencourse-profile-") as tmp:
        crs = course.new_course(Path(tmp), ROOT, [assignment])
        course.generate(crs, assignment)
        db_url = gradebook.url(crs)
        modes = {"new process, graceful kernel shutdown (as before)": ("--GencourseExecute.shutdown_kernel=graceful",),
                 "new process": (), "fork server": ()}
        for mode, extra in modes.items():
            server = batch.Forkserver(course.nbgrader_env()) if mode == "fork server" else None
            runs, totals = [], []
            for i in range(repeats + 1):  # the first run warms the disk caches and is not counted
                name = f"m{list(modes).index(mode)}_{i}"
                st = simulate.Student(name, "complete", "")
                course.submit(crs, assignment, name, demo.simulated_notebooks(crs, assignment, st))
                log = Path(tmp) / f"{name}.log"
                start = time.time()
                out = batch.grade_one(crs, assignment, name, db_url, timeout=120, memory_mb=4096, file_mb=256,
                                      wall_limit=600, extra_args=PROFILE_FORMAT + extra, log_to=log, forkserver=server)
                end = time.time()
                if out.status != "graded":
                    raise RuntimeError(f"profile run {name} was not graded: {out.detail}")
                if i:
                    runs.append(_profile_phases(log.read_text(), start, end))
                    totals.append(end - start)
            if server is not None:
                server.close()
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            note = f"{mode}; median of {repeats}; load average {load:.1f} on {os.cpu_count()} CPUs"
            for phase in runs[0]:
                if not phase.startswith("_"):
                    rows.append(dict(benchmark="profile of one submission", case=f"{assignment}: {phase}",
                                     value=round(statistics.median(r[phase] for r in runs), 2), unit="s", note=note))
            slow = runs[len(runs) // 2]["_slowest cells"]
            rows.append(dict(benchmark="profile of one submission", case=f"{assignment}: total ({mode})",
                             value=round(statistics.median(totals), 2), unit="s",
                             note=f"{note}; slowest cells {', '.join(f'{c:.2f}' for c in slow)} s"))
        own = crs / "autograded" / "m2_1" / assignment
        t = time.perf_counter()
        if sandbox.available():
            subprocess.run(sandbox.wrap(["true"], crs, own), check=True, capture_output=True)
        rows.append(dict(benchmark="profile of one submission", case=f"{assignment}: the sandbox alone",
                         value=round(time.perf_counter() - t, 2), unit="s",
                         note="part of the kernel start: unshare, mounts, hidden references, PID namespace"))
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
    p.add_argument("--only", default="", help="comma-separated: notebooks, autograde, throughput, profile, or a "
                                                  "bench_<name> module name")
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
    if not only or "profile" in only:
        rows += profile_rows(args.quick)
    own = {"notebooks", "autograde", "throughput", "profile"}
    if not only or only - own:
        rows += module_rows(args.quick, only - own or None)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
