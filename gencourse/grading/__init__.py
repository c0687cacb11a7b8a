"""The grading side of gencourse (instructors only; the library never imports it).

What hidden tests use is one line per graded item::

    from gencourse.grading import check
    check("a1.gaussian_mle", gaussian_mle)

:func:`check` looks the item up in the registry (:mod:`.catalog`: one folder per assignment under
``grading/assignments/``), builds its seeded inputs and runs the student's code on every available
device (the CPU always, CUDA when present), each run on its own copy of the inputs (:mod:`.spec`:
outputs, their dtypes and devices, gradients, inputs left unchanged).

Outside grading (a student or a test calling it), it also runs the reference and raises
:class:`CheckFailed` with a message a student can act on: which input, expected vs got, the largest
error. The reference is loaded from a *sealed* copy of the package, read afresh from its files, so
``gencourse.mle.gaussian_mle = my_function`` in a notebook changes nothing.

During autograding (``GENCOURSE_EVIDENCE_DIR`` is set by the autograder) it does not need the
reference at all: it only records the student's outputs to a file, and the autograder compares them
with the reference *in its own process*, where no student code ever runs, and fails the test cell
with the same message when the record is missing or wrong (:mod:`.autograder`). Meanwhile the
kernel cannot reach the graded references: the sandbox mounts redacted copies of their source
files (:mod:`.redact`), in which each graded function or class raises :class:`GradingIntegrityError`.
Replacing or disabling this function inside the notebook therefore cannot turn a wrong answer into
points, and borrowing the reference earns nothing.

The rest of the package is the instructor's machinery: :mod:`.autograder` (nbgrader plug-ins),
:mod:`.sandbox`, :mod:`.redact`, :mod:`.batch` (a class in parallel), :mod:`.gradebook`,
:mod:`.course` (release and the nbgrader pipeline), :mod:`.demo`, :mod:`.integrity`,
:mod:`.selfcheck`, :mod:`.simulate` (simulated students), :mod:`.cli` (the ``gencourse`` command).
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

__all__ = ["Case", "Check", "CheckFailed", "GradingIntegrityError", "check", "compare_outputs", "devices",
           "fill_parameters", "registry", "resolve_reference", "to_arrays", "EVIDENCE_ENV"]

EVIDENCE_ENV = "GENCOURSE_EVIDENCE_DIR"

# Everything else is imported on first use (PEP 562): the sandbox, the batch grader and the command
# line import this package before every kernel starts, and need neither torch nor NumPy.
_LAZY = {"registry": "catalog", "resolve_reference": "catalog", "lookup": "catalog", "SEALED_NAME": "catalog",
         **{n: "spec" for n in ("Case", "Check", "CheckFailed", "GradingIntegrityError", "compare_outputs",
                                "compare_records", "devices", "evaluate", "fill_parameters", "to_arrays")}}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_counter = itertools.count()


def check(name: str, impl) -> None:
    """Run ``impl`` on every case and device of check ``name``.

    While a submission is graded (``GENCOURSE_EVIDENCE_DIR`` set), only record its outputs for the
    autograder, which compares them with the reference outside the notebook. Otherwise compare with
    the reference here. Raises :class:`CheckFailed` on the first difference, with the input, the
    device, expected vs got and the largest error; and, in both modes, when ``impl`` raises, returns
    something that is not a tensor or a number, or changes its inputs.
    """
    import sys

    from .catalog import SEALED_NAME, lookup, resolve_reference
    from .spec import CheckFailed, devices

    spec = lookup(name)
    if spec is None:
        raise KeyError(f"no check named {name!r}")
    failed = (CheckFailed, sys.modules[type(spec).__module__].CheckFailed)  # this copy's, and the sealed one's
    what = spec.what or name.split(".")[-1]
    if getattr(impl, "__module__", "") and str(getattr(impl, "__module__", "")).split(".")[0] in ("gencourse", SEALED_NAME):
        raise CheckFailed(f"your {what} is gencourse's own reference; write your own implementation")
    grading = bool(os.environ.get(EVIDENCE_ENV))
    reference = None if grading else resolve_reference(spec)
    cases = spec.build_cases()
    expected = {}
    record = {}
    failure = None
    for dev in devices():
        for i, case in enumerate(cases):
            try:
                got = spec.evaluate(impl, case, dev, i)
            except failed as e:
                failure = failure or f"{what} on {dev.type}, input {case.describe()}: {e}"
                continue
            except Exception as e:  # the student's code raised: say so plainly, with the input
                failure = failure or (f"{what} raised {type(e).__name__}: {e}\n  on {dev.type} with input "
                                      f"{case.describe()}")
                continue
            record[(dev.type, i)] = got
            if reference is not None and failure is None:
                if i not in expected:
                    expected[i] = spec.evaluate(reference, case, "cpu", i)
                msg = spec.compare(case, expected[i], got, dev.type)
                if msg:
                    failure = f"{what} on {dev.type}, input {case.describe()}:\n  {msg}"
    _write_evidence(name, record)
    if failure:
        raise CheckFailed(failure)


def _write_evidence(name: str, record: dict) -> None:
    folder = os.environ.get(EVIDENCE_ENV)
    if not folder:
        return
    import numpy as np

    from .spec import pack_records

    path = Path(folder) / f"{next(_counter):04d}_{os.getpid()}_{name}.npz"
    np.savez(path, **pack_records(record))
