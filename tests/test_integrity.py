"""Copy detection in the integrity report (gencourse.grading.integrity), on submissions built in memory.

A renamed and reformatted copy of the reference, or of another student, is flagged as a likely
copy; independently written correct solutions (the instructor's, ``alternative.py``, and a third
variant written here, each checked to be correct) are not, and neither is the code the notebook
gives every student.
"""
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from gencourse import grading
from gencourse.grading import integrity, simulate

ROOT = Path(__file__).resolve().parent.parent
A1, A3 = "a1_maximum_likelihood", "a3_vae"

# A third correct solution of a1's larger cells, written independently of the instructor's and of alternative.py
THIRD = {
    "kl_fit": '''
def forward_kl(log_p, log_q, x):
    integrand = log_p.exp() * (log_p - log_q)
    return ((integrand[..., :-1] + integrand[..., 1:]) * torch.diff(x)).sum(-1) / 2


def reverse_kl(log_p, log_q, x):
    return forward_kl(log_q, log_p, x)


def fit_gaussian_kl(log_p, x, direction, mus, sigmas):
    grid_mu, grid_sigma = torch.meshgrid(mus, sigmas, indexing="ij")  # (M, S)
    log_q = normal_log_pdf(x, grid_mu[..., None], grid_sigma[..., None])  # (M, S, G)
    if direction == "forward":
        table = forward_kl(log_p, log_q, x)
    else:
        table = reverse_kl(log_p, log_q, x)
    best = int(table.flatten().argmin())
    return grid_mu.flatten()[best], grid_sigma.flatten()[best]
''',
    "gmm": '''
def component_log_density(x, means, covs):
    d = x.shape[1]
    diff = x[:, None, :] - means[None]  # (N, K, D)
    maha = torch.einsum("nki,kij,nkj->nk", diff, torch.linalg.inv(covs), diff)
    logdet = torch.linalg.slogdet(covs)[1]  # (K,)
    return -0.5 * (maha + logdet + d * math.log(2 * math.pi))


def gmm_log_prob(x, weights, means, covs):
    return torch.logsumexp(component_log_density(x, means, covs) + weights.log(), dim=-1)


def em_step(x, weights, means, covs, reg_covar=1e-6):
    log_r = component_log_density(x, means, covs) + weights.log()
    r = (log_r - torch.logsumexp(log_r, dim=1, keepdim=True)).exp()  # (N, K)
    counts = r.sum(dim=0)
    centres = torch.einsum("nk,nd->kd", r, x) / counts[:, None]
    dev = x[:, None, :] - centres[None]  # (N, K, D)
    scatter = torch.einsum("nk,nki,nkj->kij", r, dev, dev) / counts[:, None, None]
    return counts / x.shape[0], centres, scatter + reg_covar * torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
''',
    "fit_gmm": '''
def fit_gmm(x, k, iters=100, seed=0, tol=1e-8, reg_covar=1e-6):
    state = gmm_init(x, k, seed, reg_covar)
    history = []
    for it in range(iters):
        state = em_step(x, *state, reg_covar=reg_covar)
        history.append(gmm_log_prob(x, *state).mean().item())
        if it > 0 and history[it] - history[it - 1] < tol:  # converged
            break
    weights, means, covs = state
    return weights, means, covs, history
''',
}

# The library's em_step and its helper, renamed, reformatted and commented by a student
COPY_OF_REFERENCE = '''
def gmm_log_prob(x, weights, means, covs):
    components = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
    return torch.logsumexp(torch.log(weights) + components.log_prob(x[:, None, :]), dim=1)


def responsibilities(pts, w, mu, sig):
    # E step
    return torch.softmax(torch.log(w) + torch.distributions.MultivariateNormal(mu, covariance_matrix=sig)
                         .log_prob(pts[:, None, :]), dim=1)


def em_step(data, pi, centers, sigmas, reg_covar=1e-6):
    R = responsibilities(data, pi, centers, sigmas)   # my E step
    Nk = R.sum(0)
    pi_new = Nk / data.shape[0]
    centers_new = (R.T @ data) / Nk[:, None]  # weighted means
    d = data[None] - centers_new[:, None]
    sigmas_new = torch.einsum("nk,kni,knj->kij", R, d, d) / Nk[:, None, None]
    sigmas_new = sigmas_new + reg_covar * torch.eye(data.shape[1],
                                                    dtype=data.dtype,
                                                    device=data.device)
    return pi_new, centers_new, sigmas_new
'''

# The third student's cells, renamed and reformatted by another student
COPY_OF_STUDENT = {
    "kl_fit": '''
def forward_kl(lp, lq, grid):
    # trapezoid
    vals = lp.exp() * (lp - lq)
    return ((vals[..., :-1] + vals[..., 1:]) * torch.diff(grid)).sum(-1) / 2


def reverse_kl(lp, lq, grid):
    return forward_kl(lq, lp, grid)


def fit_gaussian_kl(target, grid, which, m_list, s_list):
    M, S = torch.meshgrid(m_list, s_list, indexing="ij")
    cand = normal_log_pdf(grid, M[..., None], S[..., None])
    if which == "forward":
        kls = forward_kl(target, cand, grid)
    else:
        kls = reverse_kl(target, cand, grid)
    i = int(kls.flatten().argmin())
    return (M.flatten()[i],
            S.flatten()[i])
''',
}


def _submission(assignment, cells: dict):
    """A complete submission of ``assignment`` whose solution cells ``cells`` (grade id -> source) are replaced."""
    source = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    release = nbformat.read(ROOT / "assignments" / assignment / f"{assignment}.ipynb", as_version=4)
    nb = simulate.build_submission(release, source, "complete", assignment)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in cells:
            cell.source = cells[gid].strip("\n")
    return nb


def _course(tmp_path, assignment, submissions: dict) -> Path:
    course = tmp_path / "course"
    shutil.copytree(ROOT / "solutions" / assignment, course / "solutions" / assignment)
    for student, nb in submissions.items():
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{assignment}.ipynb")
    return course


def _likely(rows):
    return [r for r in rows if r.similarity >= integrity.LIKELY_COPY]


def test_the_third_variant_is_a_correct_solution():
    namespace = {}
    exec("import math\nimport torch\nfrom gencourse.mle import normal_log_pdf\n" + THIRD["kl_fit"] + THIRD["gmm"], namespace)
    for name in ("forward_kl", "reverse_kl", "fit_gaussian_kl", "gmm_log_prob", "em_step"):
        grading.check(f"a1.{name}", namespace[name])


def test_renaming_and_reformatting_leave_the_normalised_code_unchanged():
    third = integrity.definitions(THIRD["kl_fit"])["fit_gaussian_kl"]
    copy = integrity.definitions(COPY_OF_STUDENT["kl_fit"])["fit_gaussian_kl"]
    assert integrity.normalized_tokens(third) == integrity.normalized_tokens(copy)
    alt = integrity.definitions(simulate.alternative_cells(A1)["kl_fit"])["fit_gaussian_kl"]
    assert integrity.normalized_tokens(third) != integrity.normalized_tokens(alt)


def test_copies_are_flagged_and_independent_solutions_are_not(tmp_path):
    course = _course(tmp_path, A1, {
        "alt": _submission(A1, simulate.alternative_cells(A1)),
        "third": _submission(A1, THIRD),
        "copies_reference": _submission(A1, {"gmm": COPY_OF_REFERENCE}),
        "copies_third": _submission(A1, {**THIRD, **COPY_OF_STUDENT}),
    })
    rows = integrity.copy_table(course, A1, ["alt", "third", "copies_reference", "copies_third"])
    assert [r.similarity for r in rows] == sorted((r.similarity for r in rows), reverse=True)  # most similar first
    likely = _likely(rows)
    pairs = {(r.student, r.name, r.other) for r in likely}
    # a renamed, reformatted, commented copy of the reference
    assert ("copies_reference", "em_step", "the reference gencourse.mle.em_step") in pairs, rows
    # a renamed, reformatted copy of another student
    assert ("copies_third", "fit_gaussian_kl", "third's fit_gaussian_kl") in pairs, rows
    # independent correct solutions: not against each other, the references or the instructor's solution
    honest = {"alt", "third"}
    for r in likely:
        involved = {r.student} | {s for s in honest if r.other.startswith(f"{s}'s")}
        assert not (involved <= honest), f"independent solutions flagged: {r}"
    # the report shows the table, most similar first, and says which pairs are likely copies
    report = integrity.write_report(course, A1, ["alt", "third", "copies_reference", "copies_third"]).read_text()
    table = [line for line in report.splitlines() if re.match(r"^\| \d+%", line)]
    assert table and "likely copy" in table[0] and "copies_" in table[0]
    assert not re.search(r"^## (alt|third)\b", report, re.M)


def test_code_the_notebook_gives_everyone_is_not_a_copy(tmp_path):
    # a3's VAE cell gives the constructor and two methods: two independent VAEs share them
    course = _course(tmp_path, A3, {"alt": _submission(A3, simulate.alternative_cells(A3))})
    rows = integrity.copy_table(course, A3, ["alt"])
    assert not _likely(rows), rows
    # while the instructor's own solution, submitted as is, is a copy of it
    course = _course(tmp_path / "again", A3, {"complete": _submission(A3, {})})
    assert any(r.other.startswith("the instructor's solution") for r in _likely(integrity.copy_table(course, A3, ["complete"])))


@pytest.mark.parametrize("assignment", [A1, "a2_autoregressive", A3, "a4_flows", "a5_kernels", "a6_gans", "a7_ali",
                                        "a8_diffusion"])
def test_the_alternative_solution_is_never_a_likely_copy(tmp_path, assignment):
    course = _course(tmp_path, assignment, {"alt": _submission(assignment, simulate.alternative_cells(assignment))})
    assert not _likely(integrity.copy_table(course, assignment, ["alt"]))
