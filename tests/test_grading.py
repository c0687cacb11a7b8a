"""gencourse.grading without nbgrader: what a hidden check compares (values, dtypes, devices, inputs
left alone, gradients, edge cases), the verification outside the notebook, the redacted references
of the sandbox, and every simulated student of every assignment run through the real checks.

Each mechanism test shows both sides: the comparison used before (the reference and the student's
code sharing the same input tensors, output values only, as float64) lets the mistake through, the
check of today fails it with a message that says what is wrong.
"""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gencourse.mle
from gencourse import grading
from gencourse.grading import autograder, catalog, redact, sandbox, simulate, spec

ROOT = Path(__file__).resolve().parent.parent
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
CHECK_LINE = re.compile(r"""check\(\s*["']([\w.]+)["']\s*,\s*(\w+)\s*\)""")
ASSIGNMENTS = catalog.assignment_names()


def wrong_variance(x):
    return x.mean(0), x.var(0)  # divides by N - 1


def _old_check(name, impl):
    """The comparison before issue 9: the reference and ``impl`` get the SAME input tensors, and only
    the output values are compared, as float64. ``None`` when it lets ``impl`` pass."""
    check = catalog.registry(sealed=False)[name]
    reference = catalog.resolve_reference(check, sealed=False)
    for case in check.build_cases():
        expected = grading.to_arrays(check._call(reference, case))
        msg = grading.compare_outputs(expected, grading.to_arrays(check._call(impl, case)), check.rtol, check.atol)
        if msg:
            return msg
    return None


# --------------------------------------------------------------------------------------------
# The registry and the messages
# --------------------------------------------------------------------------------------------
def test_every_registered_check_passes_an_independent_implementation():
    # the reference wrapped (so it is not recognised as gencourse's own) passes every check
    for name, check in grading.registry().items():
        ref = grading.resolve_reference(check, sealed=False)
        grading.check(name, lambda *a, _f=ref, **k: _f(*a, **k))


def test_wrong_answer_fails_with_an_actionable_message():
    with pytest.raises(grading.CheckFailed) as e:
        grading.check("a1.gaussian_mle", wrong_variance)
    msg = str(e.value)
    assert "gaussian_mle on cpu" in msg and "5 scalars" in msg and "expected" in msg and "largest error" in msg


def test_exceptions_shapes_and_types_are_reported():
    with pytest.raises(grading.CheckFailed, match="raised ZeroDivisionError"):
        grading.check("a1.entropy", lambda p: 1 / 0)
    with pytest.raises(grading.CheckFailed, match="shape"):
        grading.check("a1.entropy", lambda p: -(torch.xlogy(p, p)).sum(-1, keepdim=True))

    class AlwaysEqual:
        def __eq__(self, other):
            return True
    with pytest.raises(grading.CheckFailed, match="AlwaysEqual"):
        grading.check("a1.entropy", lambda p: AlwaysEqual())


def test_reference_is_sealed_against_patching(monkeypatch):
    monkeypatch.setattr(gencourse.mle, "gaussian_mle", wrong_variance)
    monkeypatch.setattr(torch, "allclose", lambda *a, **k: True)
    monkeypatch.setattr(np, "allclose", lambda *a, **k: True)
    with pytest.raises(grading.CheckFailed):
        grading.check("a1.gaussian_mle", wrong_variance)
    with pytest.raises(grading.CheckFailed, match="gencourse's own reference"):
        grading.check("a1.entropy", gencourse.mle.entropy)


def test_compare_outputs_edge_cases():
    a = np.array([1.0, np.inf, np.nan])
    assert grading.compare_outputs([a], [a.copy()], 1e-6, 1e-8) is None
    assert "differ" in grading.compare_outputs([a], [np.array([1.0, -np.inf, np.nan])], 1e-6, 1e-8)
    assert "NaN" not in (grading.compare_outputs([a], [np.array([1.1, np.inf, np.nan])], 1e-6, 1e-8) or "")
    assert "output(s)" in grading.compare_outputs([a], [a, a], 1e-6, 1e-8)


def test_fill_parameters_makes_modules_identical():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    grading.fill_parameters(a, seed=1), grading.fill_parameters(b, seed=1)
    x = torch.randn(4, 3)
    assert torch.equal(a(x), b(x))


# --------------------------------------------------------------------------------------------
# (a) inputs changed in place
# --------------------------------------------------------------------------------------------
def centre_in_place(x):
    mean = x.mean(0)
    x -= mean
    return mean, (x ** 2).mean(0)


def test_an_input_changed_in_place_fails():
    assert _old_check("a1.gaussian_mle", centre_in_place) is None  # the reference ran first: nothing to see
    with pytest.raises(grading.CheckFailed, match=r"changed its argument `x` in place"):
        grading.check("a1.gaussian_mle", centre_in_place)

    def reparameterize_in_place(mu, log_var, eps):
        return eps.mul_(torch.exp(0.5 * log_var)).add_(mu)
    assert _old_check("a3.reparameterize", reparameterize_in_place) is None
    with pytest.raises(grading.CheckFailed, match=r"`eps` in place"):
        grading.check("a3.reparameterize", reparameterize_in_place)


def test_each_implementation_gets_its_own_copy_and_declared_changes_are_allowed():
    seen = []

    def keeps(x):
        seen.append(x)
        return x.sum()
    case = grading.Case((torch.ones(3),))
    check = grading.Check("t.sum", "mle:entropy", lambda g: [case])
    spec.evaluate(check, keeps, case, "cpu")
    spec.evaluate(check, keeps, case, "cpu")
    assert seen[0] is not seen[1] and seen[0] is not case.args[0]  # a fresh copy each time, never the case's

    def zero_(x):
        x.zero_()
        return x.sum()
    with pytest.raises(grading.CheckFailed, match="in place"):
        spec.evaluate(check, zero_, case, "cpu")
    allowed = grading.Check("t.zero_", "mle:entropy", lambda g: [case], modifies=(0,))
    assert spec.evaluate(allowed, zero_, case, "cpu")[0].value == 0
    assert torch.equal(case.args[0], torch.ones(3))


# --------------------------------------------------------------------------------------------
# (b) dtypes (and devices) as the specification states them
# --------------------------------------------------------------------------------------------
def poisson_float32_total(k):
    total = torch.zeros(k.shape[1:])
    for row in k:
        total += row
    return total / len(k)


def made_masks_bool(degrees):
    masks = []
    for layer in range(len(degrees) - 1):
        d_in, d_out = degrees[layer], degrees[layer + 1]
        last = layer == len(degrees) - 2
        masks.append(d_out[:, None] > d_in[None, :] if last else d_out[:, None] >= d_in[None, :])
    return masks


def test_output_dtypes_are_compared():
    assert _old_check("a1.poisson_mle", poisson_float32_total) is None
    with pytest.raises(grading.CheckFailed, match="is a float32 tensor; expected a float64 tensor"):
        grading.check("a1.poisson_mle", poisson_float32_total)
    assert _old_check("a2.made_masks", made_masks_bool) is None
    with pytest.raises(grading.CheckFailed, match="is a bool tensor; expected a float32 tensor"):
        grading.check("a2.made_masks", made_masks_bool)

    def float_degrees(n_dims, hidden_sizes, order):
        return [d.double() for d in catalog.resolve_reference(catalog.registry(False)["a2.made_degrees"], False)(
            n_dims, hidden_sizes, order)]
    assert _old_check("a2.made_degrees", float_degrees) is None
    with pytest.raises(grading.CheckFailed, match="expected a int64 tensor"):
        grading.check("a2.made_degrees", float_degrees)


def test_dtype_rules_numbers_kinds_and_devices():
    check = grading.Check("t", "mle:entropy", lambda g: [])
    case = grading.Case((torch.ones(2),))
    out = spec.Output("output 0", np.ones(2), "torch.float64", "cpu")
    assert spec.compare_records(check, case, [out], [spec.Output("output 0", np.ones(2), "torch.float64", "cpu")]) is None
    f32 = spec.Output("output 0", np.ones(2), "torch.float32", "cpu")
    assert "float32" in spec.compare_records(check, case, [out], [f32])
    assert spec.compare_records(check, grading.Case(case.args, exact_dtype=False), [out], [f32]) is None  # only the kind
    on_cpu = spec.Output("output 0", np.ones(2), "torch.float64", "cpu")
    assert "expected it on cuda" in spec.compare_records(check, case, [out], [on_cpu], device="cuda")
    number = spec.Output("output 0", np.array(2.0), "float", "")
    zero_d = spec.Output("output 0", np.array(2.0), "torch.float64", "cpu")
    assert spec.compare_records(check, case, [number], [zero_d]) is None  # a 0-d tensor for a Python float
    assert "Python float" in spec.compare_records(check, case, [zero_d], [number])


# --------------------------------------------------------------------------------------------
# (c) gradients of every differentiable item
# --------------------------------------------------------------------------------------------
class WeightDataConv(nn.Conv2d):
    """A masked convolution that masks ``weight.data``: the right outputs, no gradient to the weight."""

    def __init__(self, in_channels, out_channels, kernel_size, mask_type):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        c = kernel_size // 2
        mask = torch.zeros(kernel_size, kernel_size)
        mask[:c] = 1
        mask[c, :c + (mask_type == "B")] = 1
        self.register_buffer("mask", mask.expand(out_channels, in_channels, -1, -1).clone())

    def forward(self, x):
        return F.conv2d(x, self.weight.data * self.mask, self.bias, padding=self.padding)


def test_gradients_are_compared():
    assert _old_check("a2.masked_conv", WeightDataConv) is None
    with pytest.raises(grading.CheckFailed, match=r"no gradient reaches parameter 1 \(weight\)"):
        grading.check("a2.masked_conv", WeightDataConv)

    def elbo_detached(x, logits, mu, log_var):
        rec = -F.binary_cross_entropy_with_logits(logits.detach(), x.expand_as(logits), reduction="none").sum(-1)
        return rec.mean(0) - 0.5 * (mu ** 2 + log_var.exp() - log_var - 1).sum(-1)
    assert _old_check("a3.elbo", elbo_detached) is None
    with pytest.raises(grading.CheckFailed, match="no gradient reaches `logits`"):
        grading.check("a3.elbo", elbo_detached)

    def kl_no_grad_variance(mu, log_var):
        with torch.no_grad():
            var = log_var.exp()
        return 0.5 * (mu ** 2 + var - log_var - 1).sum(-1)
    assert _old_check("a3.kl_standard_normal", kl_no_grad_variance) is None
    with pytest.raises(grading.CheckFailed, match="gradient with respect to `log_var`: "):
        grading.check("a3.kl_standard_normal", kl_no_grad_variance)


# --------------------------------------------------------------------------------------------
# (d) edge cases the specification allows
# --------------------------------------------------------------------------------------------
def test_edge_cases_catch_mistakes_that_benign_inputs_let_through():
    def rectangle(log_p, log_q, x):
        f = torch.exp(log_p) * (log_p - log_q)
        return (f[..., :-1] * (x[1:] - x[:-1])).sum(-1)

    def em_ignoring_reg_covar(x, weights, means, covs, reg_covar=1e-6):
        return gencourse.mle.em_step(x, weights, means, covs)

    def em_prob_space(x, weights, means, covs, reg_covar=1e-6):
        dens = weights * torch.distributions.MultivariateNormal(means, covs).log_prob(x[:, None]).exp()
        r = dens / dens.sum(1, keepdim=True)
        nk = r.sum(0)
        m = r.T @ x / nk[:, None]
        d = x[None] - m[:, None]
        c = torch.einsum("nk,kni,knj->kij", r, d, d) / nk[:, None, None] + reg_covar * torch.eye(x.shape[1], dtype=x.dtype)
        return nk / len(x), m, c

    def gmm_squeezed(x, weights, means, covs):
        return gencourse.mle.gmm_log_prob(x, weights, means, covs).squeeze()

    def iwae_global_max(a, b, c):
        log_w = a + b - c
        top = log_w.max()
        return top + torch.log(torch.exp(log_w - top).mean(0))

    def log_softmax_global_max(logits, x):
        if logits.dim() == x.dim():
            return (x * logits - F.softplus(logits)).sum(-1)
        shifted = logits - logits.max()
        log_p = shifted - torch.log(torch.exp(shifted).sum(-1, keepdim=True))
        return log_p.gather(-1, x.long().unsqueeze(-1)).squeeze(-1).sum(-1)

    def bce_float_only(logits, x):
        if logits.dim() == x.dim():
            return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        return torch.log_softmax(logits, -1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1).sum(-1)

    def naive_tanh(h):
        h_f, h_g = h.chunk(2, dim=1)
        e = torch.exp(2 * h_f)
        return (e - 1) / (e + 1) * torch.sigmoid(h_g)

    def poisson_float_counts_only(k):
        return k.mean(0)

    cases = [("a1.forward_kl", rectangle, "neither density vanishes at the ends"),
             ("a1.em_step", em_ignoring_reg_covar, "reg_covar = 0.1"),
             ("a1.em_step", em_prob_space, "densities underflow"),
             ("a1.gmm_log_prob", gmm_squeezed, "N = K = 1"),
             ("a1.poisson_mle", poisson_float_counts_only, "given as int64"),
             ("a3.iwae_bound", iwae_global_max, "normalise per example"),
             ("a2.log_likelihood", log_softmax_global_max, "normalise per example"),
             ("a2.log_likelihood", bce_float_only, "given as bool"),
             ("a2.gated_activation", naive_tanh, "+-100")]
    for name, impl, edge in cases:
        with pytest.raises(grading.CheckFailed) as e:
            grading.check(name, impl)
        # the first input that fails is the edge case: every earlier, benign input passes
        assert edge in str(e.value), (name, impl.__name__, str(e.value))


# --------------------------------------------------------------------------------------------
# Records and the verification outside the notebook
# --------------------------------------------------------------------------------------------
def test_outside_verification_confirms_only_true_records(tmp_path, monkeypatch):
    monkeypatch.setenv(grading.EVIDENCE_ENV, str(tmp_path))
    assert "no result was recorded" in autograder.verify_check("a1.gaussian_mle", tmp_path)
    grading.check("a1.gaussian_mle", lambda x: (x.mean(0), ((x - x.mean(0)) ** 2).mean(0)))
    assert autograder.verify_check("a1.gaussian_mle", tmp_path) is None
    for f in tmp_path.glob("*.npz"):
        f.unlink()
    grading.check("a1.gaussian_mle", wrong_variance)  # while grading, the kernel only records
    msg = autograder.verify_check("a1.gaussian_mle", tmp_path)
    assert "confirmed outside the notebook" in msg and "5 scalars" in msg and "expected" in msg
    (next(tmp_path.glob("*.npz"))).write_bytes(b"not an npz")
    assert "unreadable" in autograder.verify_check("a1.gaussian_mle", tmp_path)


def test_records_carry_dtypes_devices_and_gradients_to_the_grader(tmp_path, monkeypatch):
    monkeypatch.setenv(grading.EVIDENCE_ENV, str(tmp_path))
    grading.check("a2.made_masks", made_masks_bool)  # recorded, not judged, in the kernel
    assert "bool tensor; expected a float32 tensor" in autograder.verify_check("a2.made_masks", tmp_path)
    grading.check("a2.masked_conv", WeightDataConv)
    assert "no gradient reaches parameter 1 (weight)" in autograder.verify_check("a2.masked_conv", tmp_path)
    records = {(d, i): [spec.Output("output 0", np.ones(2), "torch.float32", "cpu"),
                        spec.Output("gradient wrt `x`", None, "none", "")] for d, i in (("cpu", 0), ("cuda", 1))}
    back = spec.unpack_records(dict(np.load(_savez(tmp_path / "r.npz", spec.pack_records(records)))))
    assert back.keys() == records.keys() and back[("cuda", 1)][1].value is None
    assert back[("cpu", 0)][0].dtype == "torch.float32" and back[("cpu", 0)][0].value.tolist() == [1.0, 1.0]


def _savez(path, arrays):
    np.savez(path, **arrays)
    return path


def test_while_grading_the_kernel_never_needs_the_reference(tmp_path, monkeypatch):
    def unreachable(*a, **k):
        raise AssertionError("the reference was reached in the kernel")
    references = {name: catalog.resolve_reference(c, sealed=False) for name, c in catalog.registry(sealed=False).items()}
    monkeypatch.setenv(grading.EVIDENCE_ENV, str(tmp_path))
    monkeypatch.setattr(catalog, "resolve_reference", unreachable)
    for name, impl in references.items():
        grading.check(name, lambda *a, _f=impl, **k: _f(*a, **k))
    assert len(list(tmp_path.glob("*.npz"))) == len(catalog.registry(sealed=False))


def test_check_call_pattern_finds_names():
    src = 'from gencourse.grading import check\ncheck("a1.forward_kl", forward_kl)\ncheck( \'a1.reverse_kl\', f)'
    assert autograder.CHECK_CALL.findall(src) == ["a1.forward_kl", "a1.reverse_kl"]


# --------------------------------------------------------------------------------------------
# Redacted references
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_graded_reference_is_found_and_redacted(assignment):
    checks = catalog.assignment_checks(assignment)
    # what the sandbox reads from checks.py without importing it is what the registry holds
    assert redact.check_targets(assignment) == list(dict.fromkeys(
        t for c in checks for t in (c.reference, *c.hides)))
    plan = redact.redaction_plan(catalog.PACKAGE_DIR, assignment)
    for target in redact.check_targets(assignment):
        assert redact.resolve(catalog.PACKAGE_DIR, target) is not None, target
    for module, names in plan.items():
        path = redact.module_path(catalog.PACKAGE_DIR, module)
        original = path.read_text()
        redacted = redact.redact_source(original, names, module, assignment)
        assert len(redacted.splitlines()) == len(original.splitlines())  # every other line where it was
        namespace = {"__name__": f"gencourse.{module}", "__package__": f"gencourse.{module}".rsplit(".", 1)[0]}
        exec(compile(redacted, str(path), "exec"), namespace)
        for q in names:
            obj = namespace[q.split(".")[0]]
            for part in q.split(".")[1:]:
                obj = getattr(obj, part)
            with pytest.raises(RuntimeError, match=f"gencourse.{module}.{q} is not available while {assignment} "
                                                   "is graded: write your own") as e:
                obj(*([None] * (1 if "." in q else 0)))
            assert type(e.value).__name__ == "GradingIntegrityError"
    # the exposed names are reachable on purpose (the notebook's own tests use them): never redacted
    for c in checks:
        for target in c.exposed:
            module, q = redact.resolve(catalog.PACKAGE_DIR, target)
            assert q not in plan.get(module, set()), target


def test_only_the_graded_items_are_redacted():
    plan = redact.redaction_plan(catalog.PACKAGE_DIR, "a1_maximum_likelihood")
    assert set(plan) == {"mle"} and "normal_log_pdf" not in plan["mle"] and "gaussian_mle" in plan["mle"]
    files = redact.redacted_files(catalog.PACKAGE_DIR, "a1_maximum_likelihood")
    assert Path("grading/assignments/a1_maximum_likelihood/alternative.py") in files  # a whole solution
    assert not any("a2_autoregressive" in str(f) for f in files)


# --------------------------------------------------------------------------------------------
# Simulated students, run through the real checks without nbgrader
# --------------------------------------------------------------------------------------------
def _notebooks(assignment):
    source = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    release = nbformat.read(ROOT / "assignments" / assignment / f"{assignment}.ipynb", as_version=4)
    return source, release


def _job(submission, source) -> dict:
    """What running a submission needs: its solution and given cells, and each test cell (nbgrader
    takes test cells from the source) split into the visible part and the hidden checks."""
    setup = [simulate.SOLUTION_MARKERS.sub("", c.source) for c in submission.cells
             if c.cell_type == "code" and c.metadata.get("nbgrader") and not c.metadata["nbgrader"].get("grade")]
    tests = [(c.metadata["nbgrader"]["grade_id"], HIDDEN.sub("", c.source), CHECK_LINE.findall(c.source))
             for c in source.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]
    return {"setup": setup, "tests": tests}


def _run_job(job, skip=()) -> dict:
    """Cell -> why it lost its points, for the cells that did (in this process, checks compared here).
    Test cells in ``skip`` are not run (see :func:`_unaffected`)."""
    namespace = {}
    for src in job["setup"]:
        exec(compile(src, "<solution cell>", "exec"), namespace)
    lost = {}
    for gid, visible, checks in job["tests"]:
        if gid in skip:
            continue
        try:
            exec(compile(visible, gid, "exec"), dict(namespace))
        except Exception as e:
            lost[gid] = f"visible: {type(e).__name__}: {e}"
            continue
        for name, var in checks:
            try:
                grading.check(name, namespace[var])
            except Exception as e:
                lost[gid] = f"hidden: {type(e).__name__}: {e}"
                break
    return lost


def _names(src: str) -> tuple:
    """(names a cell defines at its top level, other than by imports; names it reads anywhere)."""
    tree = ast.parse(src)
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    # imports are not followed: a mistake changes a definition, and every cell reads torch
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return defined, read


def _imports(src: str) -> list:
    return sorted(ast.dump(n) for n in ast.walk(ast.parse(src)) if isinstance(n, (ast.Import, ast.ImportFrom)))


def _unaffected(complete: dict, mutated: dict) -> set:
    """Test cells that cannot see the mutated solution cell: no name they read leads to a name it
    defines, directly or through other cells' definitions. Their outcome is the complete submission's
    (asserted to be full marks), so they need not run again: this keeps the test's time to the cells
    a mistake can reach (training cells and many-sample checks take seconds each)."""
    changed = [i for i, (a, b) in enumerate(zip(complete["setup"], mutated["setup"])) if a != b]
    assert len(complete["setup"]) == len(mutated["setup"]) and changed
    if any(_imports(complete["setup"][i]) != _imports(mutated["setup"][i]) for i in changed):
        return set()  # a changed import: run everything
    cells = [_names(src) for src in mutated["setup"]]
    tainted = set().union(*(cells[i][0] for i in changed))
    grown = True
    while grown:  # a cell that reads a tainted name taints what it defines
        grown = False
        for i, (defined, read) in enumerate(cells):
            if read & tainted and not defined <= tainted:
                tainted |= defined
                grown = True
    return {gid for gid, visible, checks in mutated["tests"]
            if not (_names(visible)[1] | {var for _, var in checks}) & tainted}


def test_unaffected_cells_follow_names_through_other_cells():
    complete = {"setup": ["import torch\ndef f(x):\n    return x", "def g(x):\n    return f(x) + 1", "def h(x):\n    return x"],
                "tests": [("t_f", "assert f(1) == 1", []), ("t_g", "assert g(1) == 2", []), ("t_h", "h(0)", [("a.h", "h")]),
                          ("t_hidden", "", [("a.g", "g")])]}
    mutated = dict(complete, setup=["import torch\ndef f(x):\n    return -x", *complete["setup"][1:]])
    assert _unaffected(complete, mutated) == {"t_h"}  # g calls f: its tests are affected too
    imported = dict(complete, setup=["import numpy as torch\ndef f(x):\n    return x", *complete["setup"][1:]])
    assert _unaffected(complete, imported) == set()


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_simulated_students_lose_exactly_their_cells(assignment):
    source, release = _notebooks(assignment)
    students = simulate.students(assignment)
    for kind in ("complete", "alternative"):
        nb = simulate.build_submission(release, source, kind, assignment)
        assert _run_job(_job(nb, source)) == {}, kind
    complete = _job(simulate.build_submission(release, source, "complete", assignment), source)
    for name in students.REALISTIC:
        mutation = students.MUTATIONS[name]
        nb = simulate.build_submission(release, source, "mutation", assignment, (name,))
        job = _job(nb, source)
        lost = _run_job(job, skip=_unaffected(complete, job))
        assert set(lost) == set(mutation.lost), (name, lost)
        if name in students.HIDDEN_ONLY:  # the visible tests pass: only the hidden checks catch it
            assert all(why.startswith("hidden:") for why in lost.values()), (name, lost)
    # every class of mistake of issue 9 is represented by a mistake only the hidden checks catch
    assert len(students.HIDDEN_ONLY) >= 3


SANDBOXED_RUN = r'''
import json, os, sys
import matplotlib
matplotlib.use("Agg")
from gencourse.grading import check

job, out, evidence = json.load(open(sys.argv[1])), {}, sys.argv[3]
for sub, spec in job.items():
    namespace, lost = {}, {}
    for src in spec["setup"]:
        try:
            exec(compile(src, "<solution cell>", "exec"), namespace)
        except Exception as e:
            pass  # a cell that fails: the tests using it fail
    for gid, visible, checks in spec["tests"]:
        os.environ["GENCOURSE_EVIDENCE_DIR"] = folder = os.path.join(evidence, sub, gid)
        os.makedirs(folder)
        try:
            exec(compile(visible, gid, "exec"), dict(namespace))
            for name, var in checks:
                check(name, namespace[var])
        except BaseException as e:
            lost[gid] = f"{type(e).__name__}: {e}"
    out[sub] = lost
json.dump(out, open(sys.argv[2], "w"))
'''


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_sandbox_hides_the_references_from_the_kernel(assignment, tmp_path):
    """In the sandbox of a real autograde (a redacted library, the checks recording only), an honest
    submission keeps every point (data, training, plotting and helpers work), and each route to the
    reference (import, alias, importlib, exec of the source file, inspect.getsource, the sealed copy,
    the hidden checks' own adapters) costs the cell that uses it."""
    assert sandbox.available(), "this system does not allow unprivileged user namespaces"
    course = tmp_path / "course"
    own = course / "autograded" / "student" / assignment
    own.mkdir(parents=True)
    (course / "solutions").mkdir()
    source, release = _notebooks(assignment)
    students = simulate.students(assignment)
    borrow = getattr(students, "BORROW", ())
    subs = {"complete": simulate.build_submission(release, source, "complete", assignment)}
    if borrow:
        subs["borrow"] = simulate.build_submission(release, source, "mutation", assignment, borrow)
    job = {name: _job(nb, source) for name, nb in subs.items()}
    (own / "job.json").write_text(json.dumps(job))
    (own / "run.py").write_text(SANDBOXED_RUN)
    evidence = tmp_path / "evidence"
    cmd = sandbox.wrap([sys.executable, str(own / "run.py"), str(own / "job.json"), str(own / "out.json"),
                        str(evidence)], course, own)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "could not all be hidden" not in proc.stderr, proc.stderr
    in_kernel = json.loads((own / "out.json").read_text())
    for sub, lost in in_kernel.items():
        # the grader's side: confirm every check the kernel recorded, as VerifyChecks does
        for gid, _, checks in job[sub]["tests"]:
            if gid not in lost:
                problems = [autograder.verify_check(name, evidence / sub / gid) for name, _ in checks]
                if any(problems):
                    lost[gid] = next(p for p in problems if p)
        expected = set(sum((students.MUTATIONS[m].lost for m in borrow), ())) if sub == "borrow" else set()
        assert set(lost) == expected, (sub, lost)
        for gid, why in lost.items():
            assert "GradingIntegrityError" in why and "is graded: write your own" in why, (gid, why)


COPIES_PROBE = r'''
import json, os, sys
import gencourse.mle
paths = [gencourse.mle.__file__, sys.argv[1]]
out = {}
for path in paths:
    text = open(path).read()
    cache = os.path.join(os.path.dirname(path), "__pycache__")
    out[path] = {"redacted": "is not available while a1_maximum_likelihood is graded" in text
                 and "var = ((x - mean) ** 2).mean(0)" not in text,
                 "helper kept": "def normal_log_pdf(" in text,
                 "compiled copies": sorted(os.listdir(cache)) if os.path.isdir(cache) else []}
json.dump(out, open(sys.argv[2], "w"))
'''


def test_every_copy_of_the_package_is_redacted(tmp_path):
    """An installed copy (here first on ``sys.path``, so the kernel imports it) and the editable
    checkout both serve redacted sources to the kernel, with no compiled copies beside them."""
    assert sandbox.available(), "this system does not allow unprivileged user namespaces"
    import os
    import shutil
    site = tmp_path / "site"
    shutil.copytree(catalog.PACKAGE_DIR, site / "gencourse", ignore=shutil.ignore_patterns("__pycache__"))
    course = tmp_path / "course"
    own = course / "autograded" / "student" / "a1_maximum_likelihood"
    own.mkdir(parents=True)
    (own / "probe.py").write_text(COPIES_PROBE)
    real = catalog.PACKAGE_DIR / "mle.py"
    import py_compile
    py_compile.compile(str(real), doraise=True)  # a compiled, unredacted mle beside the checkout's source
    env = dict(os.environ, PYTHONPATH=str(site))
    cmd = sandbox.wrap([sys.executable, str(own / "probe.py"), str(real), str(own / "out.json")], course, own)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=course)  # as nbgrader
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads((own / "out.json").read_text())
    assert set(found) == {str(site / "gencourse" / "mle.py"), str(real)}, found
    for path, what in found.items():
        assert what["redacted"] and what["helper kept"], (path, what)
    # the checkout's compiled modules (the unredacted mle among them) are out of the kernel's sight
    assert any(p.name.startswith("mle.") for p in (catalog.PACKAGE_DIR / "__pycache__").glob("*.pyc"))
    assert found[str(real)]["compiled copies"] == []
    assert "is not available" not in real.read_text()  # outside the sandbox: untouched


def test_messages_name_the_output_that_differs():
    # a multi-output item says which output is wrong ("the variance"), not its position
    ref = grading.resolve_reference(grading.registry()["a8.q_posterior"], sealed=False)

    def variance_too_big(x0, xt, t, betas):
        mean, var = ref(x0, xt, t, betas)
        return mean, var * 1.1

    with pytest.raises(grading.CheckFailed, match=r"the variance: \d+ of \d+ values differ") as e:
        grading.check("a8.q_posterior", variance_too_big)
    assert "output 1" not in str(e.value)
    # nested outputs name their element; unnamed ones are numbered
    named = spec.Check("x.y", "mle:gaussian_mle", lambda g: [], outputs=("losses", "generator's parameters"))
    assert spec.output_label(named, "output 3@1.2", 5) == "the generator's parameters [2]"
    assert spec.output_label(named, "output 0@0", 5) == "the losses"
    assert spec.output_label(spec.Check("x.y", "mle:gaussian_mle", lambda g: []), "output 3@3", 5) == "output 3"
    assert spec.output_label(spec.Check("x.y", "mle:gaussian_mle", lambda g: []), "output 0@", 1) == "the output"
