"""The specification of a graded item: its reference, its seeded inputs, how outputs are compared.

A :class:`Check` names the reference implementation (``"module:attribute"`` inside gencourse), the
function building its seeded inputs (a list of :class:`Case`), optionally how to call a class, and
the tolerances. :func:`compare_outputs` compares outputs with plain NumPy arithmetic on float64
copies, so patching ``torch.allclose`` or returning objects whose ``__eq__`` is always true does not
help (:func:`to_arrays` rejects anything that is not a tensor or a number).

Per-assignment checks live in ``gencourse/grading/assignments/<assignment>/checks.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from ..train import devices

__all__ = ["Case", "Check", "CheckFailed", "compare_outputs", "devices", "fill_parameters", "to_arrays"]


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


