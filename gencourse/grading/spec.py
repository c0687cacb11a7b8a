"""The specification of a graded item: its reference, its seeded inputs, how outputs are compared.

A :class:`Check` names the reference implementation (``"module:attribute"`` inside gencourse), the
function building its seeded inputs (a list of :class:`Case`), optionally how to call a class, and
the tolerances. Running an implementation on a case (:func:`evaluate`) gives a list of
:class:`Output` records; two such lists are compared by :func:`compare_records`. What is compared:

* **values**, with plain NumPy arithmetic on float64 copies (patching ``torch.allclose`` or
  returning objects whose ``__eq__`` is always true does not help: only real tensors and numbers are
  accepted), equal infinities and NaN in the same places matching;
* **dtypes and devices**: the reference's output dtype is the specification (float32 returned for
  float64 input, a float mask where a bool one is returned, float degrees where int64 ones are, all
  fail), unless the check or the case relaxes it to the kind (bool, integer, floating); a tensor
  output must be on the device of the inputs;
* **inputs left alone**: every implementation gets its own deep copy of every input, and one that
  changes an input it was not asked to (``x -= mean``, ``eps.mul_(std)``) fails;
* **gradients**, for every differentiable item: a fixed, seeded cotangent is back-propagated
  through the floating-point outputs, and the gradients with respect to the floating-point inputs
  (those named by ``Check.grad``) and to the parameters of every module filled with
  :func:`fill_parameters` must match the reference's, so ``weight.data``, a stray ``detach()`` or
  ``torch.no_grad()`` in the wrong place fail.

The records are plain data (arrays and strings): the autograder writes the student's to a file in
the kernel and compares them with the reference's in its own process (:mod:`.autograder`).
Per-assignment checks live in ``gencourse/grading/assignments/<assignment>/checks.py``.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from ..train import devices

__all__ = ["Case", "Check", "CheckFailed", "GradingIntegrityError", "Output", "compare_outputs", "compare_records",
           "devices", "evaluate", "fill_parameters", "pack_records", "to_arrays", "unpack_records"]


class CheckFailed(AssertionError):
    """A hidden test found a difference from the reference; the message says where."""


class GradingIntegrityError(RuntimeError):
    """Raised where grading cannot be trusted: a reference reached while it is graded, a record missing."""


@dataclass
class Case:
    """One seeded input of a check: positional ``args`` and keyword ``kwargs`` (CPU tensors).

    ``exact_dtype`` overrides the check's setting for this case (``False``: only the kind of each
    output, bool, integer or floating, must match the reference's).
    """

    args: tuple
    kwargs: dict = field(default_factory=dict)
    label: str = ""
    exact_dtype: Optional[bool] = None

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
        cases: ``cases(generator) -> list[Case]`` building CPU inputs from a seeded generator. It
            runs inside the student's kernel while grading, where the graded references are
            hidden: it must not call them.
        call: ``call(impl, case) -> outputs``; default ``impl(*case.args, **case.kwargs)``.
            Modules use it to construct, fill parameters (:func:`fill_parameters`) and run. Like
            ``cases`` it must not use the graded references.
        rtol, atol: tolerances of the values (and, unless ``grad_rtol``/``grad_atol`` say otherwise,
            of the gradients).
        what: a short description used in messages ("your gaussian_mle").
        grad: the inputs whose gradients are compared, by position (0-based) or keyword name;
            ``None``: every floating-point tensor argument; ``()``: none. Parameters of the modules
            filled with :func:`fill_parameters` are always compared when an output is differentiable.
        exact_dtype: compare output dtypes exactly (default) or only their kind.
        modifies: the arguments the item is asked to change in place (position or name).
        hides: further ``"module:qualname"`` inside gencourse that implement this item (a library
            function behind an adapter, a method such as ``"vae:LinearGaussianModel.elbo"``): hidden
            from the kernel like the reference while the assignment is graded.
        exposed: ``"module:qualname"`` that implement this item but cannot be hidden because the
            notebook's own locked cells use them; the integrity report flags students' cells that
            call them.
        outputs: names of the outputs in the order they come (flattened), used in messages: "the
            variance: 3 of 12 values differ", not "output 1: ...". Unnamed outputs are numbered.
    """

    name: str
    reference: str
    cases: Callable[[torch.Generator], list]
    call: Optional[Callable[[Any, Case], Any]] = None
    rtol: float = 1e-4
    atol: float = 1e-5
    what: str = ""
    seed: int = 0
    grad: Optional[tuple] = None
    grad_rtol: Optional[float] = None
    grad_atol: Optional[float] = None
    exact_dtype: bool = True
    modifies: tuple = ()
    hides: tuple = ()
    exposed: tuple = ()
    outputs: tuple = ()

    def build_cases(self) -> list:
        return list(self.cases(torch.Generator().manual_seed(self.seed)))

    def run(self, impl, case: Case, device: torch.device):
        """The raw outputs of ``impl`` on a private copy of ``case`` moved to ``device``."""
        return self._call(impl, _copy_case(case, device))

    def _call(self, impl, case: Case):
        if self.call is not None:
            return self.call(impl, case)
        return impl(*case.args, **case.kwargs)

    # The two below use the functions of the module this class comes from: a check loaded from the
    # sealed copy is run and compared by the sealed copy's code (its fill_parameters, its evaluate).
    def evaluate(self, impl, case: Case, device, case_index: int = 0) -> list:
        """:func:`evaluate` of ``impl`` on ``case``."""
        return evaluate(self, impl, case, device, case_index)

    def compare(self, case: Case, expected, got, device: str = "cpu"):
        """:func:`compare_records` of the student's records ``got`` with the reference's ``expected``."""
        return compare_records(self, case, expected, got, device)


# --------------------------------------------------------------------------------------------
# Modules: identical parameters, and which ones to differentiate
# --------------------------------------------------------------------------------------------
_FILLED: list = []  # while evaluate() runs: the modules filled by fill_parameters, in order


def fill_parameters(module: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    """Overwrite every parameter with seeded values, in order of parameter name.

    Two modules with the same parameter names and shapes end up with identical weights however
    their constructors initialised them, so their outputs can be compared. While a check runs, the
    module's parameters are also differentiated (their gradients compared with the reference's).
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            p.copy_((torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale).to(p))
    if _FILLED and module not in _FILLED[-1]:
        _FILLED[-1].append(module)
    return module


@contextlib.contextmanager
def _full_precision():
    """TF32 off while a check runs: cuDNN's default on recent GPUs rounds convolutions (forward and
    backward) to about 1e-3, far above the checks' tolerances."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """For a check of a random procedure: a CPU generator for the submission to draw from and, in case
    it uses the global generators instead, those seeded too (and restored afterwards), so the same
    submission always gets the same numbers."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield torch.Generator().manual_seed(seed + 1)


@contextlib.contextmanager
def _filled_modules():
    _FILLED.append([])
    try:
        yield _FILLED[-1]
    finally:
        _FILLED.pop()


# --------------------------------------------------------------------------------------------
# Running an implementation on a case: outputs, dtypes, devices, gradients
# --------------------------------------------------------------------------------------------
@dataclass
class Output:
    """One recorded output: ``name`` ("output 0", "gradient wrt log_p", ...), its value as a float64,
    int64 or bool array (``None`` for a gradient that does not exist), its dtype (``"torch.float32"``,
    or ``"float"``/``"int"``/``"bool"`` for a Python number, ``"none"``) and its device type."""

    name: str
    value: Optional[np.ndarray]
    dtype: str
    device: str = ""


def _copy_value(obj, device):
    """A deep copy of ``obj`` whose tensors are new tensors on ``device``: never shared with the caller."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone().to(device)
    if isinstance(obj, tuple):
        return tuple(_copy_value(o, device) for o in obj)
    if isinstance(obj, list):
        return [_copy_value(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _copy_value(v, device) for k, v in obj.items()}
    return copy.deepcopy(obj)


def _copy_case(case: Case, device) -> Case:
    return Case(_copy_value(case.args, device), _copy_value(case.kwargs, device), case.label, case.exact_dtype)


def _has_tensor(obj) -> bool:
    if isinstance(obj, torch.Tensor):
        return True
    if isinstance(obj, (tuple, list)):
        return any(_has_tensor(o) for o in obj)
    if isinstance(obj, dict):
        return any(_has_tensor(o) for o in obj.values())
    return False


def _same(a, b) -> bool:
    """Exact structural equality of two inputs (tensors by dtype, shape and values, NaN equal to NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device:
            return False
        a, b = a.detach(), b.detach()
        same = a == b
        if a.is_floating_point() or a.is_complex():
            same = same | (torch.isnan(a) & torch.isnan(b))
        return bool(same.all())
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:
        return False


def _argument_names(check: Check, impl, case: Case) -> list:
    """Names of the positional arguments, for messages: the parameters of a function, else "input i"."""
    if check.call is None:
        try:
            params = [p.name for p in inspect.signature(impl).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            params = []
        if len(params) >= len(case.args):
            return [f"`{p}`" for p in params[:len(case.args)]]
    return [f"input {i + 1}" for i in range(len(case.args))]


def _selected(check: Check, key) -> bool:
    return check.grad is None or key in check.grad


def _changed_inputs(check: Check, names: list, before: Case, after: Case) -> list:
    changed = [names[i] for i, (b, a) in enumerate(zip(before.args, after.args))
               if i not in check.modifies and not _same(b, a)]
    changed += [f"`{k}`" for k in before.kwargs if k not in check.modifies and not _same(before.kwargs[k], after.kwargs.get(k))]
    return changed


def _flatten(out, paths: Optional[list] = None) -> list:
    """``[(name, tensor or number)]`` of an output (tensor, number, or nested tuple/list of them).

    ``paths``, when given, receives the position of each leaf in the nesting (``(1, 2)``: the third
    element of the second output).

    Raises :class:`CheckFailed` for anything else: only real tensors and numbers are compared,
    never objects that could define their own equality.
    """
    flat = []

    def visit(o, where, path=()):
        t = type(o)
        if t is torch.Tensor or t is torch.nn.Parameter or t in (float, int, bool) or isinstance(
                o, (np.floating, np.integer, np.bool_)):
            flat.append(o)
            if paths is not None:
                paths.append(path)
        elif t is tuple or t is list:
            for i, x in enumerate(o):
                visit(x, f"{where}[{i}]", path + (i,))
        else:
            raise CheckFailed(f"the output{where} is a {t.__name__}; expected a torch tensor, a number, "
                              "or a tuple of them")

    visit(out, "")
    return flat


def _record(name: str, o) -> Output:
    if isinstance(o, torch.Tensor):
        a = o.detach().to("cpu")
        if a.dtype == torch.bool:
            value = a.numpy().copy()
        elif a.is_floating_point():
            value = a.to(torch.float64).numpy().copy()
        elif a.is_complex():
            raise CheckFailed(f"{name} is a complex tensor; expected a real one")
        else:
            value = a.to(torch.int64).numpy().copy()
        return Output(name, value, str(o.dtype), o.device.type)
    if o is None:
        return Output(name, None, "none", "")
    kind = "bool" if isinstance(o, (bool, np.bool_)) else "int" if isinstance(o, (int, np.integer)) else "float"
    return Output(name, np.array(float(o), dtype=np.float64), kind, "")


def _cotangent(shape, like: torch.Tensor, case_index: int, j: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(7919 * (case_index + 1) + j)
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float64).to(dtype=like.dtype, device=like.device)


def evaluate(check: Check, impl, case: Case, device, case_index: int = 0) -> list:
    """Run ``impl`` on its own copy of ``case`` on ``device``: its outputs, then its gradients.

    Returns a list of :class:`Output`. Raises :class:`CheckFailed` when the outputs are not tensors
    or numbers, or when ``impl`` changed an input it was not asked to; exceptions raised by ``impl``
    propagate.
    """
    device = torch.device(device)
    given = _copy_case(case, device)
    before = _copy_case(given, device)
    with _full_precision(), _filled_modules() as filled:
        out = check._call(impl, given)
    paths = []
    flat = _flatten(out, paths)
    changed = _changed_inputs(check, _argument_names(check, impl, case), before, given)
    if changed:
        raise CheckFailed(f"it changed its argument {', '.join(changed)} in place (an in-place operation such as "
                          "`x -= ...`, `x.mul_(...)` or `x[...] = ...` on a tensor it was given); leave the inputs "
                          "unchanged and compute new tensors")
    # the name keeps the output's place in the nesting, for messages (see output_label)
    outputs = [_record(f"output {j}@{'.'.join(map(str, p))}", o) for j, (o, p) in enumerate(zip(flat, paths))]
    # the gradient pass runs the item again; with no selected input and no filled module there is
    # nothing to differentiate, so it is skipped (random items drawing many samples cost half as much)
    selected = [a for i, a in enumerate(case.args) if _float_tensor(a) and _selected(check, i)]
    selected += [v for k, v in case.kwargs.items() if _float_tensor(v) and _selected(check, k)]
    if any(_float_tensor(o) for o in flat) and (selected or filled):
        outputs += _gradients(check, impl, case, device, case_index)
    return outputs


def _float_tensor(o) -> bool:
    return isinstance(o, torch.Tensor) and o.is_floating_point()


def _gradients(check: Check, impl, case: Case, device, case_index: int) -> list:
    """The gradients of ``<outputs, seeded cotangents>`` with respect to the selected floating-point
    inputs and the parameters of the filled modules (an empty list when there is nothing to differentiate)."""
    given = _copy_case(case, device)
    names = _argument_names(check, impl, case)
    leaves = []

    def leaf(t, name):
        x = t.detach().clone().requires_grad_(True)
        leaves.append((name, x))
        return x.clone()  # not the leaf itself: in-place operations on it stay legal

    args = [leaf(a, names[i]) if isinstance(a, torch.Tensor) and a.is_floating_point() and _selected(check, i) else a
            for i, a in enumerate(given.args)]
    kwargs = {k: leaf(v, f"`{k}`") if isinstance(v, torch.Tensor) and v.is_floating_point() and _selected(check, k) else v
              for k, v in given.kwargs.items()}
    with torch.enable_grad(), _full_precision(), _filled_modules() as modules:
        try:
            out = check._call(impl, Case(tuple(args), kwargs, case.label, case.exact_dtype))
        except Exception as e:
            raise CheckFailed(f"gradients could not be computed through it when its inputs require them: "
                              f"{type(e).__name__}: {e}") from None
        named = [(name, p) for m in modules for name, p in sorted(m.named_parameters(), key=lambda kv: kv[0])]
        params = [(f"parameter {i} ({name})", p) for i, (name, p) in enumerate(named)]
        wrt = leaves + params
        if not wrt:
            return []
        flat = [o for o in _flatten(out) if isinstance(o, torch.Tensor) and o.is_floating_point()]
        total = None
        for j, o in enumerate(flat):
            if o.requires_grad:
                term = (o * _cotangent(o.shape, o, case_index, j)).sum()
                total = term if total is None else total + term
        grads = [None] * len(wrt)
        if total is not None:
            grads = torch.autograd.grad(total, [t for _, t in wrt], allow_unused=True)
    return [_record(f"gradient wrt {name}", g) for (name, _), g in zip(wrt, grads)]


# --------------------------------------------------------------------------------------------
# Comparing records
# --------------------------------------------------------------------------------------------
def _describe_value(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"tensor{tuple(v.shape)} {str(v.dtype).replace('torch.', '')}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_describe_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_describe_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, type):
        return v.__name__
    return repr(v)


def _kind(dtype: str) -> str:
    if dtype in ("float", "int", "bool", "none"):
        return dtype
    t = getattr(torch, dtype.replace("torch.", ""), None)
    if t is torch.bool:
        return "bool"
    if isinstance(t, torch.dtype) and t.is_floating_point:
        return "float"
    return "int"


def _pretty(dtype: str) -> str:
    return {"float": "a Python float", "int": "a Python int", "bool": "a Python bool"}.get(
        dtype, f"a {dtype.replace('torch.', '')} tensor")


def _dtype_problem(label: str, e: Output, g: Output, exact: bool) -> Optional[str]:
    e_num, g_num = e.dtype in ("float", "int", "bool"), g.dtype in ("float", "int", "bool")
    if e_num:  # a Python number: any number, or a 0-d tensor of the same kind
        if g_num or (_kind(g.dtype) == _kind(e.dtype) and g.value is not None and g.value.ndim == 0):
            return None
        return f"{label} is {_pretty(g.dtype)}; expected {_pretty(e.dtype)}"
    if exact and not g_num and g.dtype == e.dtype:
        return None
    if not exact and _kind(g.dtype) == _kind(e.dtype):
        return None
    want = _pretty(e.dtype) if exact else f"a {_kind(e.dtype)} tensor (like {e.dtype.replace('torch.', '')})"
    return f"{label} is {_pretty(g.dtype)}; expected {want}"


def _values_problem(label: str, e: np.ndarray, g: np.ndarray, rtol: float, atol: float) -> Optional[str]:
    e = np.asarray(e, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    if e.shape != g.shape:
        return f"{label} has shape {tuple(g.shape)}, expected {tuple(e.shape)}"
    both_nan = np.isnan(e) & np.isnan(g)
    same_inf = np.isinf(e) & (e == g)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(g - e)
        bad = ~(both_nan | same_inf | (np.isfinite(e) & (err <= atol + rtol * np.abs(e))))
    if not bad.any():
        return None
    err = np.where(bad, np.nan_to_num(err, nan=np.inf), 0.0)
    idx = np.unravel_index(int(np.argmax(err)), e.shape) if e.ndim else ()
    where = f" at index {tuple(int(j) for j in idx)}" if e.ndim else ""
    return (f"{label}: {int(bad.sum())} of {e.size} values differ; largest error {float(err[idx]):.3g}"
            f"{where}: expected {float(e[idx]):.6g}, got {float(g[idx]):.6g} "
            f"(tolerance {atol:g} + {rtol:g}*|expected|)")


def output_label(check: Check, record: str, n: int) -> str:
    """How messages name the output recorded as ``record`` ("output 3@1.2": the fourth leaf, third
    element of the second output) among ``n``: by ``check.outputs`` ("the variance", "the generator's
    parameters [2]"), else by number ("output 3", or "the output" when there is only one)."""
    head, _, where = record.partition("@")
    path = [int(p) for p in where.split(".") if p]
    if not path and len(check.outputs) == 1:
        return f"the {check.outputs[0]}"
    if path and path[0] < len(check.outputs):
        rest = "".join(f"[{p}]" for p in path[1:])
        return f"the {check.outputs[path[0]]}" + (f" {rest}" if rest else "")
    return head if n > 1 else "the output"


def compare_outputs(expected: Sequence[np.ndarray], got: Sequence[np.ndarray], rtol: float, atol: float) -> Optional[str]:
    """``None`` when the arrays ``got`` match ``expected`` elementwise, else a message saying how not.

    Equal infinities and NaN in the same places match; otherwise |got - expected| must be at most
    ``atol + rtol * |expected|`` everywhere.
    """
    if len(got) != len(expected):
        return f"returned {len(got)} output(s), expected {len(expected)}"
    for i, (e, g) in enumerate(zip(expected, got)):
        msg = _values_problem(f"output {i}" if len(expected) > 1 else "the output", e, g, rtol, atol)
        if msg:
            return msg
    return None


def compare_records(check: Check, case: Case, expected: Sequence[Output], got: Sequence[Output],
                    device: str = "cpu") -> Optional[str]:
    """``None`` when the records ``got`` of a student's run match the reference's ``expected``, else a
    message: outputs first (count, dtype, device, shape, values), then gradients."""
    exact = check.exact_dtype if case.exact_dtype is None else case.exact_dtype
    e_out = [o for o in expected if o.name.startswith("output")]
    g_out = [o for o in got if o.name.startswith("output")]
    if len(g_out) != len(e_out):
        return f"returned {len(g_out)} output(s), expected {len(e_out)}"
    want_device = device if _has_tensor((case.args, case.kwargs)) else "cpu"
    for i, (e, g) in enumerate(zip(e_out, g_out)):
        label = output_label(check, e.name, len(e_out))
        msg = _dtype_problem(label, e, g, exact)
        if msg:
            return msg
        if g.device and e.device and g.device != want_device:
            return f"{label} is on {g.device}; expected it on {want_device}, the device of the inputs"
        msg = _values_problem(label, e.value, g.value, check.rtol, check.atol)
        if msg:
            return msg
    rtol = check.rtol if check.grad_rtol is None else check.grad_rtol
    atol = check.atol if check.grad_atol is None else check.grad_atol
    e_grad = [o for o in expected if o.name.startswith("gradient")]
    g_grad = {o.name: o for o in got if o.name.startswith("gradient")}
    if e_grad and not g_grad:
        return ("no gradient could be recorded: none of its outputs is differentiable (a detach(), .data, "
                "torch.no_grad() or a conversion to NumPy or Python numbers cuts it off from autograd)")
    e_params = [o for o in e_grad if o.name.startswith("gradient wrt parameter")]
    g_params = [o for o in g_grad.values() if o.name.startswith("gradient wrt parameter")]
    if len(e_params) != len(g_params):
        return (f"the module has {len(g_params)} parameter tensor(s), expected {len(e_params)} "
                "(keep the layers and names given in the notebook)")
    g_params_by_index = {o.name.split(" (")[0]: o for o in g_params}
    for e in e_grad:
        g = g_grad.get(e.name) or g_params_by_index.get(e.name.split(" (")[0])
        if g is None:
            continue  # an argument the student's version did not receive as a tensor: its outputs decide
        what = e.name.replace("gradient wrt ", "")
        if e.value is None and g.value is None:
            continue
        ev = e.value if e.value is not None else np.zeros_like(g.value, dtype=np.float64)
        gv = g.value if g.value is not None else np.zeros_like(ev, dtype=np.float64)
        finite = np.isfinite(np.asarray(ev, dtype=np.float64))  # where the exact gradient is undefined, anything goes
        if ev.shape == gv.shape:
            ev = np.where(finite, ev, 0.0)
            gv = np.where(finite, gv, 0.0)
        msg = _values_problem(f"the gradient with respect to {what}", ev, gv, rtol, atol)
        if msg:
            if g.value is None:
                return (f"no gradient reaches {what}, expected one: a detach(), .data, torch.no_grad() or a "
                        f"conversion to NumPy or Python numbers cuts it off from autograd ({msg})")
            return (msg + " (the values match but the gradients do not: is part of the computation detached, "
                    "done on .data or under torch.no_grad()?)")
    return None


def to_arrays(out) -> list:
    """Flatten an output (tensor, number, or nested tuple/list of them) into float64/bool arrays.

    Raises :class:`CheckFailed` for anything else: only real tensors and numbers are compared,
    never objects that could define their own equality.
    """
    return [o.value for o in (_record("output", x) for x in _flatten(out))]


def pack_records(records: dict) -> dict:
    """``{(device, case index): [Output]}`` as plain arrays for ``np.savez`` (no pickling needed to read them)."""
    arrays, meta = {}, {}
    for (dev, i), outs in records.items():
        for j, o in enumerate(outs):
            key = f"{dev}__{i}__{j}"
            arrays[key] = o.value if o.value is not None else np.zeros(0)
            meta[key] = [o.name, o.dtype, o.device, o.value is None]
    arrays["__meta__"] = np.array(json.dumps(meta))
    return arrays


def unpack_records(arrays) -> dict:
    """The inverse of :func:`pack_records`, from a loaded ``.npz`` (a mapping of arrays)."""
    meta = json.loads(str(arrays["__meta__"]))
    records: dict = {}
    for key in sorted(meta, key=lambda k: (k.split("__")[0], int(k.split("__")[1]), int(k.split("__")[2]))):
        dev, i, _ = key.split("__")
        name, dtype, device, missing = meta[key]
        records.setdefault((dev, int(i)), []).append(Output(name, None if missing else np.asarray(arrays[key]), dtype, device))
    return records
