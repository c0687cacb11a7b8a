"""Simulated students of a1_maximum_likelihood: realistic mistakes, and the classes graded by the demo and the tests.

* ``MUTATIONS``: each replaces one snippet of one solution cell of a complete submission; ``lost``
  names the test cells that must lose their points because of it.
* ``alternative.py`` (beside this file): a correct solution written differently, which must keep
  full marks.
* ``E2E``: the class graded end to end by the tests: student -> (kind, mutations, test cells that
  must lose their points, or ``"all"``).
* ``DEMO``: the four students of ``gencourse demo``.
* ``FILE_CASES``: broken or hostile submission *files*: name -> (how to build the folder's files
  from a complete notebook, the test cells that must lose their points, a phrase the grading
  report must contain for the student, or "").

Assignment 1's class is the deepest: besides mistakes it loops, crashes, exhausts memory, floods
the output and plays tricks on the grader (``tests/test_autograder.py``).
"""
from ...simulate import Mutation, Student  # noqa: F401

MUTATIONS = {
    "unbiased_variance": Mutation(
        "gaussian_mle", "return mean, ((x - mean) ** 2).mean(0)", "return mean, x.var(0)",
        "variance with torch.var, which divides by N - 1", ("test_gaussian_mle",)),
    "kl_log_ratio_flipped": Mutation(
        "entropy_kl", "return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)",
        "return (torch.xlogy(p, q) - torch.xlogy(p, p)).sum(-1)",
        "KL with log q - log p (wrong sign)", ("test_kl",)),
    "entropy_nan_at_zero": Mutation(
        "entropy_kl", "return -torch.xlogy(p, p).sum(-1)", "return -(p * torch.log(p)).sum(-1)",
        "entropy with p log p, which is NaN where p = 0", ("test_entropy",)),
    "em_old_means": Mutation(
        "gmm", "diff = x[None] - new_means[:, None]  # (K, N, D)", "diff = x[None] - means[:, None]  # (K, N, D)",
        "EM covariance around the old means", ("test_em_step", "test_fit_gmm")),
    "gmm_no_logsumexp": Mutation(
        "gmm", "return torch.logsumexp(torch.log(weights) + components.log_prob(x[:, None, :]), dim=1)",
        "return torch.log((weights * components.log_prob(x[:, None, :]).exp()).sum(1))",
        "mixture density summed outside log space (underflows far from the data)", ("test_gmm_log_prob",)),
    "infinite_loop": Mutation(
        "poisson_mle", "return k.double().mean(0)",
        "rate = 1.0\n    while True:  # 'iterate until converged', with no way out\n        rate = k.double().mean(0)",
        "a loop that never ends", ("test_poisson_mle",)),
    "shadow_reference": Mutation(
        "gaussian_mle", "return mean, ((x - mean) ** 2).mean(0)",
        "return mean, x.var(0)\n\nimport gencourse.mle\ngencourse.mle.gaussian_mle = gaussian_mle  # replace the reference",
        "a wrong answer that also replaces the reference gencourse.mle.gaussian_mle", ("test_gaussian_mle",)),
    "patch_check": Mutation(
        "gaussian_mle", "return mean, ((x - mean) ** 2).mean(0)",
        "return mean, ((x - mean) ** 2).sum(0) / len(x)\n\nimport gencourse.grading\n"
        "gencourse.grading.check = lambda *args, **kwargs: None  # disable the hidden tests\n"
        "def _wrong_variance(x):\n    mean = x.mean(0)\n    return mean, ((x - mean) ** 2).sum(0) / (len(x) + 1)\n"
        "gaussian_mle = _wrong_variance",
        "a wrong answer that also disables gencourse.grading.check", ("test_gaussian_mle",)),
    "swallow_errors": Mutation(
        "entropy_kl", "return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)",
        "return (torch.xlogy(p, q) - torch.xlogy(p, p)).sum(-1)\n\n"
        "get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)  # hide every error",
        "a wrong KL that also hides every exception from the grader", ("test_kl",)),
    "patch_allclose": Mutation(
        "gaussian_mle", "return mean, ((x - mean) ** 2).mean(0)",
        "return mean, x.var(0)\n\ntorch.allclose = lambda *args, **kwargs: True  # every comparison passes",
        "a wrong variance that also replaces torch.allclose", ("test_gaussian_mle",)),
    "always_equal": Mutation(
        "gaussian_mle", "return mean, ((x - mean) ** 2).mean(0)",
        "class _Anything(torch.Tensor):\n        def __eq__(self, other):\n            return True\n"
        "    return mean, (((x - mean) ** 2).sum(0) / (len(x) - 1)).as_subclass(_Anything)",
        "a wrong variance returned as a tensor subclass whose == is always true", ("test_gaussian_mle",)),
    "exit_kernel": Mutation(
        "poisson_mle", "return k.double().mean(0)", "import os\n    os._exit(1)",
        "calls os._exit, killing the kernel", ("test_poisson_mle",)),
    "segfault": Mutation(
        "gmm", "r = torch.softmax(", "import ctypes\n    ctypes.string_at(0)  # reads address 0: a crash\n    r = torch.softmax(",
        "crashes the interpreter (segmentation fault) in em_step", ("test_em_step", "test_fit_gmm")),
    "memory_bomb": Mutation(
        "gmm", "components = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)\n    return",
        "hog = [bytearray(2 ** 28) for _ in range(256)]  # 64 GB, 256 MB at a time\n"
        "    components = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)\n    return",
        "allocates memory without bound in gmm_log_prob", ("test_gmm_log_prob", "test_fit_gmm")),
    "huge_output": Mutation(
        "gaussian_mle", "return mean, ((x - mean) ** 2).mean(0)",
        "print('spam ' * 10_000_000)  # 50 MB of output\n    return mean, ((x - mean) ** 2).mean(0)",
        "prints 50 MB every time gaussian_mle is called", ()),
    "read_secrets": Mutation(
        "entropy_kl", "return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)",
        "return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)\n\n"
        "import glob, os\n"
        "_found = {'solutions': glob.glob('../../../solutions/**/*.ipynb', recursive=True),\n"
        "          'others': sorted(os.listdir('../../../submitted')) if os.path.isdir('../../../submitted') else [],\n"
        "          'gradebook_bytes': os.path.getsize('../../../gradebook.db') if os.path.exists('../../../gradebook.db') else -1,\n"
        "          'environment': sorted(k for k in os.environ if 'GENCOURSE' in k or 'NBGRADER' in k)}\n"
        "try:\n    open('../../../hacked.txt', 'w').write('x')\n    _found['write_outside'] = 'written'\n"
        "except OSError as e:\n    _found['write_outside'] = type(e).__name__\n"
        "open('leak.txt', 'w').write(repr(_found))",
        "tries to read the hidden tests, the gradebook, other submissions and the grader's settings, and to "
        "write outside its folder", ()),
    "kill_parent": Mutation(
        "poisson_mle", "return k.double().mean(0)",
        "import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)  # kill the grader\n    return k.double().mean(0)",
        "kills the process that started its kernel (the grader, without a PID namespace)", ("test_poisson_mle",)),
    "background_process": Mutation(
        "poisson_mle", "return k.double().mean(0)",
        "return k.double().mean(0)\n\n\nimport os, subprocess, sys, time, uuid\n"
        "_token = 'gencourse-leftover-' + uuid.uuid4().hex  # a daemon in a new session, detached twice\n"
        "subprocess.Popen([sys.executable, '-c', 'import os, sys, time\\nif os.fork():\\n    os._exit(0)\\n'\n"
        "                  'open(\"background.txt\", \"w\").write(sys.argv[1])\\nwhile True:\\n    time.sleep(1)', _token],\n"
        "                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "for _ in range(300):  # wait until it runs\n    if os.path.exists('background.txt'):\n        break\n"
        "    time.sleep(0.1)",
        "starts a process in a new session that forks away and runs forever (it must end with grading)", ()),
    "ignore_interrupt": Mutation(
        "poisson_mle", "return k.double().mean(0)",
        "import signal\n    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the grader's interrupt does nothing\n"
        "    while True:\n        pass",
        "loops forever and ignores the interrupt after the timeout (as a kernel busy allocating memory on a "
        "loaded machine answers it late)", ("test_poisson_mle",)),
}

# Mistakes of EM run to convergence
MUTATIONS.update({
    "fit_fixed_iterations": Mutation(
        "fit_gmm", "        if len(trace) > 1 and trace[-1] - trace[-2] < tol:\n            break\n", "",
        "EM for a fixed number of steps, never checking convergence (tol ignored)", ("test_fit_gmm",)),
    "fit_trace_before_step": Mutation(
        "fit_gmm",
        "        weights, means, covs = em_step(x, weights, means, covs, reg_covar)\n"
        "        trace.append(float(gmm_log_prob(x, weights, means, covs).mean()))\n",
        "        trace.append(float(gmm_log_prob(x, weights, means, covs).mean()))  # the log-likelihood, then a step\n"
        "        weights, means, covs = em_step(x, weights, means, covs, reg_covar)\n",
        "records the log-likelihood before each EM step instead of after it (the trace lags one step)",
        ("test_fit_gmm",)),
})

# Realistic mistakes that pass every visible test and that only the hidden checks catch: an input
# changed in place, a wrong dtype, an optional argument ignored, edge cases (a grid whose densities do
# not vanish at its ends, one point, far-away points)
MUTATIONS.update({
    "centre_in_place": Mutation(
        "gaussian_mle", "return mean, ((x - mean) ** 2).mean(0)",
        "x -= mean  # centre the data (in place, to save memory)\n    return mean, (x ** 2).mean(0)",
        "centres the caller's data in place (x -= mean): right values, but the input is destroyed",
        ("test_gaussian_mle",)),
    "poisson_float32_total": Mutation(
        "poisson_mle", "return k.double().mean(0)",
        "total = torch.zeros(k.shape[1:])  # running sum of the counts\n    for row in k:\n        total += row\n"
        "    return total / len(k)",
        "sums the counts into a float32 accumulator: float32 rates for float64 counts", ("test_poisson_mle",)),
    "rectangle_rule": Mutation(
        "kl_fit", "return (0.5 * (f[..., 1:] + f[..., :-1]) * (x[1:] - x[:-1])).sum(-1)",
        "return (f[..., :-1] * (x[1:] - x[:-1])).sum(-1)  # left Riemann sum",
        "a left Riemann sum instead of the trapezoidal rule (the same where the densities vanish at the grid's ends)",
        ("test_kl_quadrature",)),
    "gmm_squeeze": Mutation(
        "gmm", "return torch.logsumexp(torch.log(weights) + components.log_prob(x[:, None, :]), dim=1)",
        "return torch.logsumexp(torch.log(weights) + components.log_prob(x[:, None, :]), dim=1).squeeze()  # (N,)",
        "squeezes the result: a single point gives a scalar instead of shape (1,)", ("test_gmm_log_prob",)),
    "em_ignores_reg_covar": Mutation(
        "gmm", "new_covs = new_covs + reg_covar * torch.eye(", "new_covs = new_covs + 1e-6 * torch.eye(",
        "EM with the default 1e-6 written in, ignoring the reg_covar argument", ("test_em_step", "test_fit_gmm")),
    "em_prob_space": Mutation(
        "gmm", "r = torch.softmax(torch.log(weights) + components.log_prob(x[:, None, :]), dim=1)  # (N, K)",
        "dens = weights * components.log_prob(x[:, None, :]).exp()  # (N, K)\n    r = dens / dens.sum(1, keepdim=True)",
        "EM responsibilities from densities, outside log space (0 / 0 where every density underflows)",
        ("test_em_step",)),
    "fit_ignores_reg_covar": Mutation(
        "fit_gmm", "em_step(x, weights, means, covs, reg_covar)", "em_step(x, weights, means, covs)",
        "EM run to convergence without passing reg_covar on to em_step (its default 1e-6 is used)", ("test_fit_gmm",)),
    # borrowing the reference, one route per cell: each must fail in the kernel and cost that cell
    "borrow_import_alias": Mutation(
        "entropy_kl", "return -torch.xlogy(p, p).sum(-1)",
        "from gencourse.mle import entropy as reference_entropy\n    return reference_entropy(p)",
        "delegates entropy to the reference, imported under another name", ("test_entropy",)),
    "borrow_importlib": Mutation(
        "gaussian_mle", "return mean, ((x - mean) ** 2).mean(0)",
        "import importlib\n    return importlib.import_module('gencourse.' + 'mle').gaussian_mle(x)",
        "delegates gaussian_mle to the reference loaded with importlib", ("test_gaussian_mle",)),
    "borrow_exec_source": Mutation(
        "poisson_mle", "return k.double().mean(0)",
        "import gencourse.mle\n    namespace = {}\n"
        "    exec(open(gencourse.mle.__file__).read().replace('from .', 'from gencourse.'), namespace)\n"
        "    return namespace['poisson_mle'](k)",
        "executes the library's source file and calls its poisson_mle", ("test_poisson_mle",)),
    "borrow_sealed_copy": Mutation(
        "kl_fit", "f = torch.exp(log_p) * (log_p - log_q)\n    return (0.5 * (f[..., 1:] + f[..., :-1]) * (x[1:] - x[:-1])).sum(-1)",
        "import importlib\n    from gencourse.grading import catalog\n"
        "    return importlib.import_module(catalog.package(sealed=True) + '.mle').forward_kl(log_p, log_q, x)",
        "delegates forward_kl to the grader's sealed copy of the reference (reverse_kl and the fit use it)",
        ("test_kl_quadrature", "test_fit_gaussian_kl")),
    "borrow_getsource": Mutation(
        "gmm", "return torch.logsumexp(torch.log(weights) + components.log_prob(x[:, None, :]), dim=1)",
        "import inspect, gencourse.mle\n    namespace = dict(vars(gencourse.mle))\n"
        "    exec(inspect.getsource(gencourse.mle.gmm_log_prob), namespace)\n"
        "    return namespace['gmm_log_prob'](x, weights, means, covs)",
        "copies the reference's source with inspect.getsource and executes it", ("test_gmm_log_prob", "test_fit_gmm")),
})
#: the mistakes tests/test_grading.py runs without nbgrader (the others loop, crash or attack the grader)
REALISTIC = ("unbiased_variance", "kl_log_ratio_flipped", "entropy_nan_at_zero", "em_old_means", "gmm_no_logsumexp",
             "fit_fixed_iterations", "fit_trace_before_step", "centre_in_place", "poisson_float32_total",
             "rectangle_rule", "gmm_squeeze", "em_ignores_reg_covar", "em_prob_space", "fit_ignores_reg_covar")
#: of those, the ones that pass every visible test: only a hidden check can catch them
HIDDEN_ONLY = ("centre_in_place", "poisson_float32_total", "rectangle_rule", "gmm_squeeze", "em_ignores_reg_covar",
               "em_prob_space", "fit_ignores_reg_covar")
#: the routes to the reference; each fails in the sandboxed kernel (the cases: tests/test_grading.py)
BORROW = ("borrow_import_alias", "borrow_importlib", "borrow_exec_source", "borrow_sealed_copy", "borrow_getsource")

DEMO = (
    Student("ada", "complete", "complete, correct solution"),
    Student("bob", "untouched", "submitted the release untouched"),
    Student("cy", "mutation", MUTATIONS["unbiased_variance"].note, ("unbiased_variance",),
            MUTATIONS["unbiased_variance"].lost),
    Student("dee", "mutation", MUTATIONS["infinite_loop"].note, ("infinite_loop",),
            MUTATIONS["infinite_loop"].lost),
)

# disabling the check function leaves every later hidden test unconfirmed
HIDDEN_AFTER_GAUSSIAN = ("test_gaussian_mle", "test_poisson_mle", "test_kl_quadrature", "test_fit_gaussian_kl",
                         "test_gmm_log_prob", "test_em_step", "test_fit_gmm")
M = MUTATIONS

E2E = {
    "complete": ("complete", (), ()),
    "complete_again": ("complete", (), ()),
    "untouched": ("untouched", (), "all"),
    "alternative": ("alternative", (), ()),
    # realistic mistakes, two or three per submission, each in a different test cell
    "bugs_a": ("mutation", ("unbiased_variance", "kl_log_ratio_flipped", "em_old_means"),
               M["unbiased_variance"].lost + M["kl_log_ratio_flipped"].lost + M["em_old_means"].lost),
    "bugs_b": ("mutation", ("entropy_nan_at_zero", "gmm_no_logsumexp", "em_prob_space", "fit_ignores_reg_covar"),
               M["entropy_nan_at_zero"].lost + M["gmm_no_logsumexp"].lost + M["em_prob_space"].lost
               + M["fit_ignores_reg_covar"].lost),
    # mistakes only the hidden checks catch: an input changed in place, a dtype, ignored reg_covar, edge cases
    "bugs_c": ("mutation", ("centre_in_place", "poisson_float32_total", "rectangle_rule", "gmm_squeeze",
                            "em_ignores_reg_covar"),
               sum((M[m].lost for m in ("centre_in_place", "poisson_float32_total", "rectangle_rule", "gmm_squeeze",
                                        "em_ignores_reg_covar")), ())),
    # the reference borrowed by every route, one per cell; kl_divergence and em_step stay honest
    "x_borrow_reference": ("mutation", BORROW, sum((M[m].lost for m in BORROW), ())),
    # code that loops, crashes, exhausts memory or floods the output; tricks against the grader
    **{f"x_{name}": ("mutation", (name,), M[name].lost) for name in
       ("infinite_loop", "exit_kernel", "segfault", "memory_bomb", "huge_output", "shadow_reference",
        "swallow_errors", "patch_allclose", "always_equal", "read_secrets")},
    "x_patch_check": ("mutation", ("patch_check",), HIDDEN_AFTER_GAUSSIAN),
    # code that reaches for the grader's processes, or leaves its own behind
    "x_kill_parent": ("mutation", ("kill_parent",), M["kill_parent"].lost),
    "x_background_process": ("mutation", ("background_process",), M["background_process"].lost),
    "x_ignore_interrupt": ("mutation", ("ignore_interrupt",), M["ignore_interrupt"].lost),
}


def _cells(nb, gid):
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid]


def _delete_tests(nb):
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in ("test_entropy", "test_em_step")]
    return nb


def _reorder(nb):
    moved = _cells(nb, "test_entropy")[0]
    nb.cells.remove(moved)
    nb.cells.append(moved)  # a test cell moved to the end still runs after its function is defined
    return nb


def _edit_tests(nb):
    _cells(nb, "test_gaussian_mle")[0].source = "pass  # tests removed"
    cell = _cells(nb, "gaussian_mle")[0]
    cell.source = cell.source.replace("return mean, ((x - mean) ** 2).mean(0)", "return mean, x.var(0)")
    return nb


FILE_CASES = {
    "invalid_json": (lambda nb, name: {name: "{ this is not json"}, "all", "not a valid notebook"),
    "empty_file": (lambda nb, name: {name: ""}, "all", "is empty"),
    "missing_notebook": (lambda nb, name: {}, "all", "no notebook"),
    "renamed_notebook": (lambda nb, name: {name.replace(".ipynb", " (1).ipynb"): nb}, (), "graded as"),
    "extra_files": (lambda nb, name: {name: nb, "notes.txt": "my notes", "scratch.ipynb": "{}"}, (), "extra files"),
    "deleted_tests": (lambda nb, name: {name: _delete_tests(nb)}, (), ""),
    "reordered_cells": (lambda nb, name: {name: _reorder(nb)}, (), ""),
    "edited_tests": (lambda nb, name: {name: _edit_tests(nb)}, ("test_gaussian_mle",), ""),
}
