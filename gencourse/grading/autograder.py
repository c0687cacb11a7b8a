"""nbgrader plug-ins that make autograding deterministic and trustworthy.

Configured by :func:`configure` from the course's ``nbgrader_config.py``; they run inside
``nbgrader autograde`` (and therefore inside ``gencourse autograde`` and ``gencourse demo``):

* :class:`GencourseExecute` executes a submission with every random number generator seeded
  before the first cell, ``PYTHONHASHSEED`` fixed, a per-cell timeout that interrupts the cell and
  goes on with the next, and a private folder where :func:`gencourse.grading.check` records the
  student's outputs, filed by the cell that produced them.
* :class:`StderrToStdout` keeps warnings printed to stderr visible but stops them from zeroing a
  correct test (nbgrader scores any stderr output in a test cell as a failure).
* :class:`VerifyChecks` recomputes, in the grader's own process, every check that a test cell
  calls, compares with the recorded outputs, and fails the cell when the record is missing or
  wrong. Code in the notebook that replaces the reference, the check function, ``torch.allclose``
  or the exception display cannot turn a wrong answer into points.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from nbformat.notebooknode import NotebookNode
from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Integer, Unicode

from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from nbgrader import utils as nbutils

import torch

from . import EVIDENCE_ENV, catalog
from .spec import compare_outputs, to_arrays

CHECK_CALL = re.compile(r"""\bcheck\(\s*["']([\w.\-]+)["']""")
SEED_LINES = ("import random as _r, numpy as _np, torch as _t; _r.seed({seed}); _np.random.seed({seed}); "
              "_t.manual_seed({seed}); _t.set_num_threads({threads}); del _r, _np, _t")


def sandboxed_kernel_manager(course: Path, own: Path) -> type:
    """A kernel manager class that starts kernels through :mod:`gencourse.grading.sandbox` for the
    submission folder ``own`` of ``course`` (course files hidden, course read-only). The paths go
    on the sandbox's command line: nothing of the grader's settings reaches the kernel's
    environment."""
    from . import sandbox

    class SandboxedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            return sandbox.wrap(super().format_kernel_cmd(extra_arguments), course, own)

    return SandboxedKernelManager


_SANDBOX_OK = None


class GencourseExecute(Execute):
    """nbgrader's Execute with seeding, a fixed hash seed and recorded check outputs."""

    seed = Integer(0, help="Seed of Python's, NumPy's and torch's generators before the first cell.").tag(config=True)
    torch_threads = Integer(1, help="torch threads per submission: one makes sums reproducible and lets "
                                    "several submissions be graded side by side").tag(config=True)

    sandbox = Bool(True, help="Run each kernel in gencourse.grading.sandbox (Linux user namespaces) when the "
                              "system allows it").tag(config=True)

    def _use_sandbox(self, resources) -> None:
        """Start this submission's kernels in the sandbox, when the system allows it."""
        global _SANDBOX_OK
        from . import sandbox

        own = Path(resources.get("metadata", {}).get("path") or ".").resolve()
        if not self.sandbox or len(own.parents) < 3 or own.parents[1].name != "autograded":
            return
        if _SANDBOX_OK is None:
            _SANDBOX_OK = sandbox.available()
            if not _SANDBOX_OK:
                self.log.warning("user namespaces are not available: grading without the sandbox")
        if _SANDBOX_OK:
            self.kernel_manager_class = sandboxed_kernel_manager(own.parents[2], own)

    def preprocess(self, nb, resources):
        evidence = Path(tempfile.mkdtemp(prefix="gencourse-evidence-"))
        resources["gencourse_evidence"] = str(evidence)
        self._evidence = evidence
        self._dead = set()
        self.extra_arguments = list(self.extra_arguments) + [
            "--HistoryManager.hist_file=:memory:",
            f"--IPKernelApp.exec_lines={SEED_LINES.format(seed=self.seed, threads=self.torch_threads)}",
        ]
        self._use_sandbox(resources)
        # the one variable of ours a kernel sees: where check() records the student's outputs
        env = {EVIDENCE_ENV: str(evidence), "PYTHONHASHSEED": "0"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            return super().preprocess(nb, resources)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    max_output_chars = Integer(200_000, help="Characters of printed output kept per cell; the rest is "
                                             "dropped while the cell runs, with a note").tag(config=True)

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        """Execute one cell; when the kernel dies in it, say so in the cell, start a new kernel,
        replay the cells before it, and go on, so that the rest of the notebook is still graded."""
        from nbclient.exceptions import DeadKernelError

        self._chars = 0
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        except DeadKernelError:
            self.log.warning("kernel died in cell %s; restarting it and replaying the cells before", cell_index)
            cell.outputs.append(NotebookNode(
                output_type="error", ename="KernelDied",
                evalue="the kernel died while running this cell (os._exit, a crash, or out of memory)",
                traceback=["KernelDied: the kernel died while running this cell (os._exit, a crash, or out of "
                           "memory); the notebook went on in a new kernel"]))
            self._dead = getattr(self, "_dead", set()) | {cell_index}
            await self._restart_and_replay(cell_index)
            return cell

    async def _restart_and_replay(self, upto: int) -> None:
        import copy

        from nbclient.util import ensure_async

        await ensure_async(self.km.restart_kernel(now=True))
        await ensure_async(self.kc.wait_for_ready(timeout=self.startup_timeout))
        for i, c in enumerate(self.nb.cells[:upto]):
            if c.cell_type == "code" and i not in self._dead:
                try:
                    await super().async_execute_cell(copy.deepcopy(c), i, store_history=False)
                except Exception:  # a replayed cell that fails again only loses its own state
                    self._dead.add(i)

    from nbclient.util import run_sync as _run_sync
    execute_cell = _run_sync(async_execute_cell)  # nbclient binds the sync wrapper to its own method
    del _run_sync

    def output(self, outs, msg, display_id, cell_index):
        """Keep at most ``max_output_chars`` of printed text per cell (a print loop cannot exhaust memory)."""
        content = msg.get("content", {})
        if msg.get("msg_type") == "stream":
            n = len(content.get("text", ""))
            self._chars = getattr(self, "_chars", 0) + n
            if self._chars > self.max_output_chars:
                if self._chars - n <= self.max_output_chars:
                    outs.append(NotebookNode(output_type="stream", name="stdout",
                                             text=f"\n[output truncated by the grader after {self.max_output_chars} characters]\n"))
                return None
        return super().output(outs, msg, display_id, cell_index)

    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        # file what the cell recorded under the cell's index: a record only counts for the cell
        # that was running when it was written
        target = self._evidence / f"cell{kwargs['cell_index']:04d}"
        for f in list(self._evidence.glob("*.npz")):
            target.mkdir(exist_ok=True)
            shutil.move(str(f), target / f.name)


class StderrToStdout(NbGraderPreprocessor):
    """Turn stderr stream outputs into stdout ones marked ``[stderr]``: visible, but not a failure."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream" and out.get("name") == "stderr":
                    out["name"] = "stdout"
                    out["text"] = "".join("[stderr] " + line for line in out["text"].splitlines(True))
        return cell, resources


class VerifyChecks(NbGraderPreprocessor):
    """Fail any test cell whose ``check(...)`` calls are not confirmed outside the notebook."""

    error_name = Unicode("GradingIntegrityError").tag(config=True)

    def preprocess(self, nb, resources):
        folder = resources.get("gencourse_evidence")
        self._evidence = Path(folder) if folder else None
        try:
            return super().preprocess(nb, resources)
        finally:
            if self._evidence is not None:
                shutil.rmtree(self._evidence, ignore_errors=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not nbutils.is_grade(cell):
            return cell, resources
        names = CHECK_CALL.findall(cell.source)
        if not names or any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return cell, resources  # nothing to confirm, or already failed
        folder = self._evidence / f"cell{index:04d}" if self._evidence else None
        for name in names:
            problem = verify_check(name, folder)
            if problem:
                cell.outputs.append(NotebookNode(
                    output_type="error", ename=self.error_name, evalue=problem,
                    traceback=[f"{self.error_name}: {problem}"]))
                self.log.warning("cell %s: %s", index, problem)
                break
        return cell, resources


def verify_check(name: str, folder: Path | None) -> str | None:
    """Recompute check ``name`` here and compare with the outputs recorded in ``folder``.

    Returns ``None`` when a record exists and matches the reference on every case and device,
    else a message for the student's feedback.
    """
    spec = catalog.registry(sealed=False).get(name)
    if spec is None:
        return f"the test calls an unknown check {name!r} (an instructor should look at this)"
    records = sorted(folder.glob(f"*_{name}.npz")) if folder is not None and folder.is_dir() else []
    if not records:
        return (f"{name}: no result was recorded while this cell ran; the grading code was "
                "bypassed or replaced, so this test cannot be confirmed")
    reference = catalog.resolve_reference(spec, sealed=False)
    cases = spec.build_cases()
    expected = [to_arrays(spec.run(reference, case, torch.device("cpu"))) for case in cases]
    try:
        with np.load(records[-1], allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception:
        return f"{name}: the recorded result is unreadable"
    devices = sorted({k.split("__")[0] for k in data}) or ["cpu"]
    if "cpu" not in devices:
        return f"{name}: no result on the CPU was recorded"
    for dev in devices:
        for i, exp in enumerate(expected):
            got = [data[f"{dev}__{i}__{j}"] for j in range(len(data)) if f"{dev}__{i}__{j}" in data]
            if not got:
                return f"{name}: input {cases[i].describe()} on {dev} has no recorded result"
            msg = compare_outputs(exp, got, spec.rtol, spec.atol)
            if msg:
                return f"{name} on {dev}, input {cases[i].describe()}: {msg} (confirmed outside the notebook)"
    return None


def configure(c, root: str | os.PathLike, timeout: int = 120) -> None:
    """Set the course's nbgrader configuration on the config object ``c``."""
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, LimitOutput, SaveAutoGrades)
    from nbconvert.preprocessors import ClearMetadataPreprocessor

    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = "gencourse"
    c.CourseDirectory.source_directory = "solutions"
    c.CourseDirectory.release_directory = "assignments"
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".DS_Store"]
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
    c.OverwriteCells.add_missing_cells = True  # deleted test cells come back from the source
    c.GencourseExecute.timeout = timeout  # seconds per cell; a cell past it is interrupted
    c.GencourseExecute.interrupt_on_timeout = True
    c.GencourseExecute.startup_timeout = 120
    c.Autograde.autograde_preprocessors = [
        GencourseExecute, StderrToStdout, VerifyChecks, ClearMetadataPreprocessor, LimitOutput,
        SaveAutoGrades, AssignLatePenalties, CheckCellMetadata,
    ]
    c.Validator.validate_all = True
