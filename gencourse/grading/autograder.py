"""nbgrader plug-ins that make autograding deterministic and trustworthy.

Configured by :func:`configure` from the course's ``nbgrader_config.py``; they run inside
``nbgrader autograde`` (and therefore inside ``gencourse autograde`` and ``gencourse demo``):

* :class:`GencourseExecute` executes a submission with every random number generator seeded
  before the first cell, ``PYTHONHASHSEED`` fixed, a per-cell timeout that interrupts the cell and
  goes on with the next, and a private folder where :func:`gencourse.grading.check` records the
  student's outputs, filed by the cell that produced them.
  A kernel that dies, or does not stop when a cell past its timeout is interrupted, is replaced
  (the cells before are replayed) and the rest of the notebook is graded; once the submission is
  graded, every process its kernels left behind is ended (:mod:`.sandbox`).
* :class:`HideHiddenTests` removes the hidden tests, and the traceback lines quoting them, from
  the feedback that ``generate_feedback`` renders.
* :class:`StderrToStdout` keeps warnings printed to stderr visible but stops them from zeroing a
  correct test (nbgrader scores any stderr output in a test cell as a failure).
* :class:`VerifyChecks` runs, in the grader's own process, the reference of every check that a
  test cell calls, compares it with the student's recorded outputs, dtypes and gradients (the
  kernel only records them: the sandbox hides the graded references from it), and fails the cell
  when the record is missing or wrong. Code in the notebook that replaces the reference, the check
  function, ``torch.allclose`` or the exception display cannot turn a wrong answer into points.
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
from traitlets import Bool, Enum, Integer, Unicode

from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from nbgrader import utils as nbutils


from . import EVIDENCE_ENV, catalog
from .spec import unpack_records

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
        extra = ["--HistoryManager.hist_file=:memory:",
                 f"--IPKernelApp.exec_lines={SEED_LINES.format(seed=self.seed, threads=self.torch_threads)}"]
        self.extra_arguments = [a for a in self.extra_arguments if a not in extra] + extra  # once per process
        self._use_sandbox(resources)
        # the one variable of ours a kernel sees: where check() records the student's outputs
        env = {EVIDENCE_ENV: str(evidence), "PYTHONHASHSEED": "0"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        from .sandbox import become_subreaper, end_descendants

        ends_leftovers = grader_process() and become_subreaper()
        try:
            return super().preprocess(nb, resources)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            left = end_descendants() if ends_leftovers else []  # nothing a kernel started outlives its grading
            if left:
                self.log.warning("ended %d process(es) left behind by the submission's kernel", len(left))

    max_output_chars = Integer(200_000, help="Characters of printed output kept per cell; the rest is "
                                             "dropped while the cell runs, with a note").tag(config=True)

    shutdown_kernel = Enum(["graceful", "immediate"], default_value="immediate",
                           help="The kernel is killed once the last cell has run (its PID namespace with it): "
                                "nothing of it is needed, and a graceful shutdown costs about a second").tag(config=True)
    iopub_timeout = Integer(60, help="Seconds to wait, once a cell has replied, for the rest of its output (nbclient's "
                                     "default, 4, is too short on a busy machine)").tag(config=True)
    interrupt_grace = Integer(10, help="Seconds a kernel has to stop once a cell past its timeout was interrupted; "
                                       "then the kernel is replaced and the notebook goes on").tag(config=True)

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        """Execute one cell; when the kernel dies in it, or does not stop when a cell past its time
        limit is interrupted, say so in the cell, start a new kernel, replay the cells before it, and
        go on, so that the rest of the notebook is still graded."""
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        self._chars = 0
        patience = self.iopub_timeout
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        except (DeadKernelError, CellTimeoutError) as e:
            died = isinstance(e, DeadKernelError)
            self.log.warning("kernel %s in cell %s; replacing it and replaying the cells before",
                             "died" if died else "did not stop after the cell's timeout", cell_index)
            name, what = (("KernelDied", "the kernel died while running this cell (os._exit, a crash, or out of memory)")
                          if died else
                          ("CellTimeoutError", f"the cell ran past its time limit ({self.timeout} s) and did not stop "
                                               "when interrupted"))
            cell.outputs.append(NotebookNode(output_type="error", ename=name, evalue=what,
                                             traceback=[f"{name}: {what}; the notebook went on in a new kernel"]))
            self._dead = getattr(self, "_dead", set()) | {cell_index}
            self._file_evidence(cell_index)  # what it recorded stays with it
            await self._restart_and_replay(cell_index)
            return cell
        finally:
            self.iopub_timeout = patience

    async def _async_handle_timeout(self, timeout, cell=None):
        # the cell is interrupted: its kernel has interrupt_grace seconds to finish it, not iopub_timeout
        self.iopub_timeout = min(self.iopub_timeout, self.interrupt_grace)
        return await super()._async_handle_timeout(timeout, cell)

    startup_attempts = Integer(3, help="Times a kernel is started before the submission is reported ungradable: "
                                       "on a busy machine a kernel can die, or be slow, before it first "
                                       "answers").tag(config=True)

    async def async_start_new_kernel_client(self):
        """nbclient's, but a kernel that dies or does not answer before its first reply is started
        again (``startup_attempts`` times in all): no student code has run yet, so nothing is lost."""
        for attempt in range(1, self.startup_attempts + 1):
            try:
                return await super().async_start_new_kernel_client()  # on failure it shuts km down, drops kc
            except (RuntimeError, TimeoutError) as e:
                if attempt == self.startup_attempts:
                    raise
                self.log.warning("the kernel did not start (%s); starting it again (attempt %d of %d)",
                                 e, attempt + 1, self.startup_attempts)
                if self.km is None:
                    self.km = self.create_kernel_manager()
                await self.async_start_new_kernel()

    async def _ready(self) -> None:
        """Wait for a restarted kernel; one that dies before it answers is restarted again."""
        from nbclient.util import ensure_async

        for attempt in range(1, self.startup_attempts + 1):
            try:
                return await ensure_async(self.kc.wait_for_ready(timeout=self.startup_timeout))
            except (RuntimeError, TimeoutError) as e:
                if attempt == self.startup_attempts:
                    raise
                self.log.warning("the restarted kernel did not answer (%s); restarting it again", e)
                await ensure_async(self.km.restart_kernel(now=True))

    async def _restart_and_replay(self, upto: int) -> None:
        import copy

        from nbclient.exceptions import CellTimeoutError, DeadKernelError
        from nbclient.util import ensure_async

        await ensure_async(self.km.restart_kernel(now=True))
        await self._ready()
        for i, c in enumerate(self.nb.cells[:upto]):
            if c.cell_type == "code" and i not in self._dead:
                try:
                    await super().async_execute_cell(copy.deepcopy(c), i, store_history=False)
                except (DeadKernelError, CellTimeoutError):  # it failed this time: a new kernel, without it
                    self._dead.add(i)
                    await ensure_async(self.km.restart_kernel(now=True))
                    await self._ready()
                except Exception:  # a replayed cell that fails again only loses its own state
                    self._dead.add(i)

    from nbclient.util import run_sync as _run_sync
    execute_cell = _run_sync(async_execute_cell)  # nbclient binds the sync wrappers to its own methods
    start_new_kernel_client = _run_sync(async_start_new_kernel_client)
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
        self._file_evidence(kwargs["cell_index"])

    def _file_evidence(self, cell_index: int) -> None:
        """File what the cell recorded under the cell's index: a record only counts for the cell
        that was running when it was written."""
        target = self._evidence / f"cell{cell_index:04d}"
        for f in list(self._evidence.glob("*.npz")):
            target.mkdir(exist_ok=True)
            shutil.move(str(f), target / f.name)


def grader_process() -> bool:
    """Whether this process is an ``nbgrader`` command (``nbgrader autograde``, ``python -m nbgrader``),
    whose only descendants are the kernels it starts. In any other process (the Formgrader inside a
    Jupyter server, whose other kernels are the user's) nothing is adopted or ended."""
    import sys

    argv0 = Path(sys.argv[0] if sys.argv else "")
    return argv0.name == "nbgrader" or (argv0.name == "__main__.py" and argv0.parent.name == "nbgrader")


class StderrToStdout(NbGraderPreprocessor):
    """Turn stderr stream outputs into stdout ones marked ``[stderr]``: visible, but not a failure."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream" and out.get("name") == "stderr":
                    out["name"] = "stdout"
                    out["text"] = "".join("[stderr] " + line for line in out["text"].splitlines(True))
        return cell, resources


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback without hidden tests: in every graded cell, remove each ``### BEGIN HIDDEN TESTS`` ...
    ``### END HIDDEN TESTS`` region (leaving one comment in its place), and drop from the cell's
    tracebacks every line that quotes the removed code (a failed hidden check shows its own call).
    The error itself (name and message: which input, expected vs got) stays.

    nbgrader's ``generate_feedback`` renders the autograded notebook, which holds the hidden tests
    (autograding restores them from the source); this runs first in its pipeline
    (``GenerateFeedback.preprocessors``, set by :func:`configure`). Unlike nbgrader's
    ``ClearHiddenTests``, a malformed region never stops the feedback: an unterminated one is
    removed to the end of the cell."""

    begin_test_delimeter = Unicode("BEGIN HIDDEN TESTS").tag(config=True)
    end_test_delimeter = Unicode("END HIDDEN TESTS").tag(config=True)
    placeholder = Unicode("# (hidden tests: run by the grader, not shown)").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not nbutils.is_grade(cell) or self.begin_test_delimeter not in cell.source:
            return cell, resources
        kept, hidden, inside = [], [], False
        for line in cell.source.split("\n"):
            if not inside and self.begin_test_delimeter in line:
                inside = True
                hidden.append(line)
                kept.append(line[:len(line) - len(line.lstrip())] + self.placeholder)
            elif inside:
                hidden.append(line)
                inside = self.end_test_delimeter not in line
            else:
                kept.append(line)
        cell.source = "\n".join(kept)
        quoted = {h.strip() for h in hidden if len(h.strip()) >= 6}  # not ")": that would hide the message
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                out["traceback"] = [self._without(entry, quoted) for entry in out.get("traceback", [])]
        return cell, resources

    @staticmethod
    def _without(entry: str, quoted: set) -> str:
        return "\n".join(line for line in entry.split("\n")
                         if not any(q in ANSI.sub("", line) for q in quoted))


class VerifyChecks(NbGraderPreprocessor):
    """Compare, here, what each test cell's ``check(...)`` calls recorded in the kernel with the
    reference, and fail the cell with the message a student can act on (``CheckFailed``: the input,
    expected vs got), or as unconfirmed (``GradingIntegrityError``) when there is no usable record."""

    error_name = Unicode("GradingIntegrityError").tag(config=True)
    mismatch_name = Unicode("CheckFailed").tag(config=True)

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
                unconfirmed = problem.startswith(f"{name}: ") or "unknown check" in problem
                ename = self.error_name if unconfirmed else self.mismatch_name
                cell.outputs.append(NotebookNode(
                    output_type="error", ename=ename, evalue=problem, traceback=[f"{ename}: {problem}"]))
                self.log.warning("cell %s: %s", index, problem)
                break
        return cell, resources


def verify_check(name: str, folder: Path | None) -> str | None:
    """Run the reference of check ``name`` here and compare with the student's records in ``folder``.

    The kernel only recorded the student's outputs, dtypes, devices and gradients (it cannot reach
    the reference while the assignment is graded); every comparison happens in this process, where
    no student code runs. Returns ``None`` when a record exists and matches the reference on every
    case and device, else a message for the student's feedback: the input, expected vs got.
    """
    spec = catalog.registry(sealed=False).get(name)
    if spec is None:
        return f"the test calls an unknown check {name!r} (an instructor should look at this)"
    records = sorted(folder.glob(f"*_{name}.npz")) if folder is not None and folder.is_dir() else []
    if not records:
        return (f"{name}: no result was recorded while this cell ran; the grading code was "
                "bypassed or replaced, so this test cannot be confirmed")
    try:
        with np.load(records[-1], allow_pickle=False) as f:
            data = unpack_records({k: f[k] for k in f.files})
    except Exception:
        return f"{name}: the recorded result is unreadable"
    reference = catalog.resolve_reference(spec, sealed=False)
    cases = spec.build_cases()
    devices = sorted({dev for dev, _ in data}) or ["cpu"]
    if "cpu" not in devices:
        return f"{name}: no result on the CPU was recorded"
    what = spec.what or name.split(".")[-1]
    for i, case in enumerate(cases):
        expected = spec.evaluate(reference, case, "cpu", i)
        for dev in devices:
            got = data.get((dev, i))
            if not got:
                return f"{name}: input {case.describe()} on {dev} has no recorded result"
            msg = spec.compare(case, expected, got, dev)
            if msg:
                return f"{what} on {dev}, input {case.describe()}:\n  {msg}\n(confirmed outside the notebook)"
    return None


def configure(c, root: str | os.PathLike, timeout: int = 120) -> None:
    """Set the course's nbgrader configuration on the config object ``c``."""
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, LimitOutput, SaveAutoGrades)
    from nbconvert.preprocessors import ClearMetadataPreprocessor

    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = "gencourse"
    from . import gradebook  # the one gradebook setting: gradebook_url.txt beside nbgrader_config.py, else SQLite
    c.CourseDirectory.db_url = gradebook.url(Path(root))
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
    from nbgrader.preprocessors import GetGrades
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor

    c.GenerateFeedback.preprocessors = [HideHiddenTests, GetGrades, CSSHTMLHeaderPreprocessor]  # no hidden tests
    # a local exchange inside the course (nbgrader release_assignment, list, fetch_assignment, submit,
    # collect, and JupyterLab's Assignment List and Formgrader): nbgrader's default,
    # /usr/local/share/nbgrader/exchange, does not exist on a laptop. Fetched assignments land in the
    # course folder, where JupyterLab's Assignment List finds this configuration again.
    exchange = Path(root) / "exchange"
    try:
        exchange.mkdir(exist_ok=True)
    except OSError:  # a read-only course: the exchange commands will say that it is missing
        pass
    c.Exchange.root = str(exchange)
    c.Exchange.assignment_dir = str(root)
