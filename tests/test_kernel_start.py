"""A kernel that dies, or never answers, before its first reply is started again (GencourseExecute).

On a busy machine a kernel can die while it starts (before any student code has run): the
submission must not be reported ungradable for that. Tested with a kernel manager whose first
kernels exit at once, without nbgrader's pipeline.
"""
import sys

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager

from gencourse.grading.autograder import GencourseExecute


def _dying_first(n: int, counter: list) -> type:
    """A kernel manager whose first ``n`` kernels exit before they answer."""
    class DyingFirst(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            counter.append(1)
            if len(counter) <= n:
                return [sys.executable, "-c", "import sys; sys.exit(3)"]
            return super().format_kernel_cmd(extra_arguments)
    return DyingFirst


def _notebook():
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 6 * 7\nprint(x)")])


def _run(n_dying: int, attempts: int):
    starts = []
    ep = GencourseExecute(timeout=60, startup_timeout=60, startup_attempts=attempts,
                          kernel_manager_class=_dying_first(n_dying, starts), sandbox=False)
    nb, _ = ep.preprocess(_notebook(), {"metadata": {"path": "."}})
    return nb, len(starts)


@pytest.mark.parametrize("n_dying", [1, 2])
def test_a_kernel_that_dies_while_starting_is_started_again(n_dying):
    nb, starts = _run(n_dying, attempts=3)
    assert starts == n_dying + 1
    assert nb.cells[0].outputs[0]["text"] == "42\n"


def test_after_the_last_attempt_the_error_is_raised():
    with pytest.raises(RuntimeError, match="Kernel died"):
        _run(2, attempts=2)
