"""Simulated students: submissions built from an assignment's release and its solutions.

Every submission starts from the released notebook. ``complete`` fills each solution cell with
the instructor's solution; the others change that complete submission in one place:

* a :class:`Mutation` replaces one snippet of one solution cell (a realistic bug, an infinite
  loop, a hostile trick); ``lost`` names the test cells that must lose their points because of it,
  so the autograder tests can check that exactly those points go;
* an alternative solution (``ALTERNATIVES``) rewrites cells in a different but correct way, which
  must keep full marks.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import nbformat

SOLUTION_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` by ``new`` in the solution cell ``cell`` of a complete submission."""

    cell: str
    old: str
    new: str
    note: str
    lost: tuple = field(default_factory=tuple)


@dataclass(frozen=True)
class Student:
    """A simulated student: a name, how the submission is built, and what it should score."""

    name: str
    kind: str  # "complete", "untouched", "mutation", "alternative"
    note: str
    mutations: tuple = ()
    lost: tuple = ()


A1 = "a1_maximum_likelihood"

# Realistic mistakes students make in assignment 1, and the test cells each must fail.
MUTATIONS = {
    A1: {
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
            "EM covariance around the old means", ("test_em_step",)),
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
    },
}

# Correct solutions written differently from the instructor's: they must keep full marks.
ALTERNATIVES = {
    A1: {
        "entropy_kl": '''
def entropy(p):
    logp = torch.where(p > 0, torch.log(p), torch.zeros_like(p))
    return -(p * logp).sum(dim=-1)


def kl_divergence(p, q):
    ratio = torch.where(p > 0, torch.log(p) - torch.log(q), torch.zeros_like(p))
    return torch.sum(p * ratio, dim=-1)
''',
        "gaussian_mle": '''
def gaussian_mle(x):
    var, mean = torch.var_mean(x, dim=0, correction=0)
    return mean, var
''',
        "poisson_mle": '''
def poisson_mle(k):
    return k.sum(0) / k.shape[0]
''',
        "kl_fit": '''
def _trapz(f, x):
    return torch.trapezoid(f, x, dim=-1)


def forward_kl(log_p, log_q, x):
    return _trapz(log_p.exp() * (log_p - log_q), x)


def reverse_kl(log_p, log_q, x):
    return _trapz(log_q.exp() * (log_q - log_p), x)


def fit_gaussian_kl(log_p, x, direction, mus, sigmas):
    best, best_pair = float("inf"), None
    kl = forward_kl if direction == "forward" else reverse_kl
    for mu in mus:
        for sigma in sigmas:
            value = float(kl(log_p, normal_log_pdf(x, mu, sigma), x))
            if value < best:
                best, best_pair = value, (mu, sigma)
    return best_pair
''',
        "gmm": '''
def _log_normal(x, mean, cov):
    L = torch.linalg.cholesky(cov)
    z = torch.linalg.solve_triangular(L, (x - mean).T, upper=False)  # (D, N)
    half_log_det = torch.log(torch.diagonal(L)).sum()
    return -0.5 * (z ** 2).sum(0) - half_log_det - 0.5 * x.shape[1] * math.log(2 * math.pi)


def _joint(x, weights, means, covs):
    return torch.stack([torch.log(weights[k]) + _log_normal(x, means[k], covs[k]) for k in range(len(weights))], dim=1)


def gmm_log_prob(x, weights, means, covs):
    return torch.logsumexp(_joint(x, weights, means, covs), dim=1)


def em_step(x, weights, means, covs, reg_covar=1e-6):
    joint = _joint(x, weights, means, covs)
    r = torch.exp(joint - torch.logsumexp(joint, dim=1, keepdim=True))
    new_w, new_m, new_c = [], [], []
    for k in range(len(weights)):
        nk = r[:, k].sum()
        mu = (r[:, k:k + 1] * x).sum(0) / nk
        d = x - mu
        cov = (r[:, k, None] * d).T @ d / nk + reg_covar * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        new_w.append(nk / x.shape[0]); new_m.append(mu); new_c.append(cov)
    return torch.stack(new_w), torch.stack(new_m), torch.stack(new_c)
''',
    },
}

# The simulated class of ``gencourse demo``.
DEMO_CLASS = {
    A1: (
        Student("ada", "complete", "complete, correct solution"),
        Student("bob", "untouched", "submitted the release untouched"),
        Student("cy", "mutation", MUTATIONS[A1]["unbiased_variance"].note, ("unbiased_variance",),
                MUTATIONS[A1]["unbiased_variance"].lost),
        Student("dee", "mutation", MUTATIONS[A1]["infinite_loop"].note, ("infinite_loop",),
                MUTATIONS[A1]["infinite_loop"].lost),
    ),
}


def solution_sources(source_nb) -> dict:
    """The instructor's code of every solution cell, by grade id, with the markers removed."""
    out = {}
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            out[meta["grade_id"]] = SOLUTION_MARKERS.sub("", cell.source)
    return out


def build_submission(release_nb, source_nb, kind: str, assignment: str, mutations=()) -> nbformat.NotebookNode:
    """A simulated submission (a new notebook) of the given kind; see :class:`Student`."""
    nb = copy.deepcopy(release_nb)
    if kind == "untouched":
        return nb
    solutions = solution_sources(source_nb)
    if kind == "alternative":
        solutions.update({k: v.strip("\n") for k, v in ALTERNATIVES[assignment].items()})
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "code" and gid in solutions and cell.metadata["nbgrader"].get("solution"):
            cell.source = solutions[gid]
        elif cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = "A simulated student's answer: maximum likelihood minimises the forward KL."
    for name in mutations:
        m = MUTATIONS[assignment][name]
        cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == m.cell]
        if not cells or m.old not in cells[0].source:
            raise ValueError(f"mutation {name!r}: {m.old!r} is not in cell {m.cell!r}; update gencourse.simulate")
        cells[0].source = cells[0].source.replace(m.old, m.new)
    return nb
