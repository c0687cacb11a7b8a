"""The grading side of gencourse (instructors only; the library never imports it).

What hidden tests use is one line per graded item::

    from gencourse.grading import check
    check("a1.gaussian_mle", gaussian_mle)

:func:`check` looks the item up in the registry (:mod:`.catalog`: one folder per assignment under
``grading/assignments/``), builds its seeded inputs, runs the student's code and the reference on
every available device (the CPU always, CUDA when present) and raises :class:`CheckFailed` with a
message a student can act on: which input, expected vs got, the largest error.

Why the result can be trusted:

* The registry and the references are loaded from a *sealed* copy of the package, read afresh
  from its files, so ``gencourse.mle.gaussian_mle = my_function`` in a notebook changes nothing.
* Outputs are compared with plain NumPy arithmetic (:mod:`.spec`).
* During autograding (``GENCOURSE_EVIDENCE_DIR`` is set by the autograder) every call also writes
  the student's outputs to a file. The autograder then recomputes every expected check *in its own
  process*, where no student code ever runs, and fails the test cell if the record is missing or
  wrong (:mod:`.autograder`). Replacing or disabling this function inside the notebook therefore
  cannot turn a wrong answer into points.

The rest of the package is the instructor's machinery: :mod:`.autograder` (nbgrader plug-ins),
:mod:`.sandbox`, :mod:`.batch` (a class in parallel), :mod:`.gradebook`, :mod:`.course` (release
and the nbgrader pipeline), :mod:`.demo`, :mod:`.integrity`, :mod:`.selfcheck`, :mod:`.simulate`
(simulated students), :mod:`.cli` (the ``gencourse`` command).
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import torch

from .catalog import SEALED_NAME, registry, resolve_reference
from .spec import Case, Check, CheckFailed, compare_outputs, devices, fill_parameters, to_arrays

__all__ = ["Case", "Check", "CheckFailed", "check", "compare_outputs", "devices", "fill_parameters",
           "registry", "resolve_reference", "to_arrays", "EVIDENCE_ENV"]

EVIDENCE_ENV = "GENCOURSE_EVIDENCE_DIR"


_counter = itertools.count()


def check(name: str, impl) -> None:
    """Compare ``impl`` with the reference of check ``name`` on every case and device.

    Raises :class:`CheckFailed` on the first difference, with the input shapes, the device,
    expected vs got and the largest error.
    """
    spec = registry().get(name)
    if spec is None:
        raise KeyError(f"no check named {name!r}")
    what = spec.what or name.split(".")[-1]
    if getattr(impl, "__module__", "") and str(getattr(impl, "__module__", "")).split(".")[0] in ("gencourse", SEALED_NAME):
        raise CheckFailed(f"your {what} is gencourse's own reference; write your own implementation")
    reference = resolve_reference(spec)
    cases = spec.build_cases()
    record = {}
    failure = None
    for dev in devices():
        for i, case in enumerate(cases):
            expected = to_arrays(spec.run(reference, case, torch.device("cpu")))
            try:
                got = to_arrays(spec.run(impl, case, dev))
            except CheckFailed as e:
                failure = failure or f"{what} on {dev.type}, input {case.describe()}: {e}"
                continue
            except Exception as e:  # the student's code raised: say so plainly, with the input
                failure = failure or (f"{what} raised {type(e).__name__}: {e}\n  on {dev.type} with input "
                                      f"{case.describe()}")
                continue
            for j, a in enumerate(got):
                record[f"{dev.type}__{i}__{j}"] = a
            msg = compare_outputs(expected, got, spec.rtol, spec.atol)
            if msg and failure is None:
                failure = f"{what} on {dev.type}, input {case.describe()}:\n  {msg}"
    _write_evidence(name, record)
    if failure:
        raise CheckFailed(failure)


def _write_evidence(name: str, record: dict) -> None:
    folder = os.environ.get(EVIDENCE_ENV)
    if not folder:
        return
    path = Path(folder) / f"{next(_counter):04d}_{os.getpid()}_{name}.npz"
    np.savez(path, **record)
