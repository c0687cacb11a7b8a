"""What hidden tests use: compare a student's function or module with the gencourse reference.

A hidden test cell is one line per graded item::

    from gencourse.grading import check
    check("a1.gaussian_mle", gaussian_mle)

:func:`check` looks the item up in the registry of checks (``gencourse.checks``), builds its seeded
inputs, runs the student's code and the reference on every available device (the CPU always, CUDA
when present) and raises :class:`CheckFailed` with a message a student can act on: which input,
expected vs got, the largest error.

Why the result can be trusted:

* The registry and the references are loaded from a *sealed* copy of the package, read afresh
  from its files, so ``gencourse.mle.gaussian_mle = my_function`` in a notebook changes nothing.
* Outputs are compared with plain NumPy arithmetic on copies converted to float64 arrays; patching
  ``torch.allclose``, ``numpy.testing`` or returning objects whose ``__eq__`` is always true does
  not help (anything that is not a tensor or a number is rejected).
* During autograding (``GENCOURSE_EVIDENCE_DIR`` is set by the autograder) every call also writes
  the student's outputs to a file. The autograder then recomputes every expected check *in its own
  process*, where no student code ever runs, and fails the test cell if the record is missing or
  wrong (see :mod:`gencourse.autograder`). Replacing or disabling this function inside the notebook
  therefore cannot turn a wrong answer into points.
"""
from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

__all__ = ["Check", "Case", "CheckFailed", "check", "devices", "compare_outputs", "fill_parameters",
           "registry", "EVIDENCE_ENV"]

PACKAGE_DIR = Path(__file__).resolve().parent
SEALED_NAME = "_gencourse_sealed"
EVIDENCE_ENV = "GENCOURSE_EVIDENCE_DIR"


class CheckFailed(AssertionError):
    """A hidden test found a difference from the reference; the message says where."""


@dataclass
class Case:
    """One seeded input of a check: positional ``args`` and keyword ``kwargs`` (CPU tensors)."""

    args: tuple
    kwargs: dict = field(default_factory=dict)
    label: str = ""

    def describe(self) -> str:
        parts = [_describe_value(a) for a in self.args]
        parts += [f"{k}={_describe_value(v)}" for k, v in self.kwargs.items()]
        return (self.label + ": " if self.label else "") + "(" + ", ".join(parts) + ")"


@dataclass
class Check:
    """A graded item: the reference, how to build inputs, how to call, how close is close enough.

    Args:
        name: ``"<assignment>.<item>"``, the id hidden tests use.
        reference: ``"module:attribute"`` inside gencourse, e.g. ``"mle:gaussian_mle"``.
        cases: ``cases(generator) -> list[Case]`` building CPU inputs from a seeded generator.
        call: ``call(impl, case) -> outputs``; default ``impl(*case.args, **case.kwargs)``.
            Modules use it to construct, fill parameters (:func:`fill_parameters`) and run.
        rtol, atol: tolerances of :func:`compare_outputs`.
        what: a short description used in messages ("your gaussian_mle").
    """

    name: str
    reference: str
    cases: Callable[[torch.Generator], list]
    call: Optional[Callable[[Any, Case], Any]] = None
    rtol: float = 1e-4
    atol: float = 1e-5
    what: str = ""
    seed: int = 0

    def build_cases(self) -> list:
        return list(self.cases(torch.Generator().manual_seed(self.seed)))

    def run(self, impl, case: Case, device: torch.device):
        case = Case(_to_device(case.args, device), _to_device(case.kwargs, device), case.label)
        if self.call is not None:
            return self.call(impl, case)
        return impl(*case.args, **case.kwargs)


def devices() -> list:
    """The devices hidden tests run on: the CPU always, CUDA when present."""
    out = [torch.device("cpu")]
    if torch.cuda.is_available():
        out.append(torch.device("cuda"))
    return out


def fill_parameters(module: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    """Overwrite every parameter with seeded values, in order of parameter name.

    Two modules with the same parameter names and shapes end up with identical weights however
    their constructors initialised them, so their outputs can be compared.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            p.copy_((torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale).to(p))
    return module


# --------------------------------------------------------------------------------------------
# The sealed copy of the package
# --------------------------------------------------------------------------------------------
def _sealed_module(name: str):
    """``gencourse.<name>`` loaded afresh from the package's files under a private name.

    gencourse modules import each other relatively, so a sealed module only ever sees sealed
    siblings, never the (patchable) ``gencourse`` modules of the running notebook.
    """
    if SEALED_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            SEALED_NAME, PACKAGE_DIR / "__init__.py", submodule_search_locations=[str(PACKAGE_DIR)])
        pkg = importlib.util.module_from_spec(spec)
        sys.modules[SEALED_NAME] = pkg
        spec.loader.exec_module(pkg)
    return importlib.import_module(f"{SEALED_NAME}.{name}")


def registry(sealed: bool = True) -> dict:
    """Every registered check by name (from the sealed copy unless ``sealed=False``)."""
    mod = _sealed_module("checks") if sealed else importlib.import_module("gencourse.checks")
    return mod.CHECKS


def resolve_reference(check: Check, sealed: bool = True):
    module, attr = check.reference.split(":")
    mod = _sealed_module(module) if sealed else importlib.import_module(f"gencourse.{module}")
    return getattr(mod, attr)


# --------------------------------------------------------------------------------------------
# Comparing outputs
# --------------------------------------------------------------------------------------------
def _to_device(obj, device):
    if type(obj) is torch.Tensor:
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_to_device(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to_device(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


def _describe_value(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"tensor{tuple(v.shape)} {str(v.dtype).replace('torch.', '')}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_describe_value(x) for x in v) + "]"
    if isinstance(v, type):
        return v.__name__
    return repr(v)


def to_arrays(out) -> list:
    """Flatten an output (tensor, number, or nested tuple/list of them) into float64/bool arrays.

    Raises :class:`CheckFailed` for anything else: only real tensors and numbers are compared,
    never objects that could define their own equality.
    """
    flat = []

    def visit(o, where):
        t = type(o)
        if t is torch.Tensor or t is torch.nn.Parameter:
            a = o.detach().to("cpu")
            a = a.to(torch.float64) if a.dtype != torch.bool else a
            flat.append(np.array(a.numpy(), copy=True))
        elif t in (float, int, bool) or isinstance(o, (np.floating, np.integer)):
            flat.append(np.array(float(o), dtype=np.float64))
        elif t is tuple or t is list:
            for i, x in enumerate(o):
                visit(x, f"{where}[{i}]")
        else:
            raise CheckFailed(f"the output{where} is a {t.__name__}; expected a torch tensor, a number, "
                              "or a tuple of them")

    visit(out, "")
    return flat


def compare_outputs(expected: Sequence[np.ndarray], got: Sequence[np.ndarray], rtol: float, atol: float) -> Optional[str]:
    """``None`` when ``got`` matches ``expected`` elementwise, else a message saying how not.

    Equal infinities and NaN in the same places match; otherwise |got - expected| must be at most
    ``atol + rtol * |expected|`` everywhere.
    """
    if len(got) != len(expected):
        return f"returned {len(got)} output(s), expected {len(expected)}"
    for i, (e, g) in enumerate(zip(expected, got)):
        label = f"output {i}" if len(expected) > 1 else "the output"
        e = np.asarray(e, dtype=np.float64)
        g = np.asarray(g, dtype=np.float64)
        if e.shape != g.shape:
            return f"{label} has shape {tuple(g.shape)}, expected {tuple(e.shape)}"
        both_nan = np.isnan(e) & np.isnan(g)
        same_inf = np.isinf(e) & (e == g)
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.abs(g - e)
            bad = ~(both_nan | same_inf | (np.isfinite(e) & (err <= atol + rtol * np.abs(e))))
        if bad.any():
            err = np.where(bad, np.nan_to_num(err, nan=np.inf), 0.0)
            idx = np.unravel_index(int(np.argmax(err)), e.shape) if e.ndim else ()
            where = f" at index {tuple(int(j) for j in idx)}" if e.ndim else ""
            return (f"{label} differs in {int(bad.sum())} of {e.size} values; largest error {float(err[idx]):.3g}"
                    f"{where}: expected {float(e[idx]):.6g}, got {float(g[idx]):.6g} "
                    f"(tolerance {atol:g} + {rtol:g}*|expected|)")
    return None


# --------------------------------------------------------------------------------------------
# The entry point of hidden tests
# --------------------------------------------------------------------------------------------
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
