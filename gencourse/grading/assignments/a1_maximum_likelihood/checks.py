"""Hidden checks of assignment 1 (maximum likelihood, KL divergences, Gaussian mixtures).

Besides typical inputs, each check's cases include the edge cases its specification allows: zero
probabilities, one point, counts given as integers, grids whose densities do not vanish at the ends
(where the trapezoidal rule and a rectangle rule differ), a non-default ``reg_covar``, and points so
far from every component that densities underflow unless the code stays in log space; for EM run to
convergence, a limit ``iters`` reached first, one component, 1-D points and float32 points. The cases run
inside the student's kernel while grading, where the graded functions of ``gencourse.mle`` are
hidden: they only use its helpers (``normal_log_pdf``, ``mixture_1d_log_pdf``).
"""
import torch

from ...spec import Case, Check

F64 = torch.float64


def _probs(gen, *shape, zeros=False):
    p = torch.softmax(2 * torch.randn(*shape, generator=gen, dtype=F64), -1)
    if zeros:  # a few exact zeros, where 0 log 0 = 0 must hold
        p = p * (torch.rand(*shape, generator=gen, dtype=F64) > 0.3)
        p[..., 0] += 1e-3
        p = p / p.sum(-1, keepdim=True)
    return p


def _entropy_cases(gen):
    return [Case((_probs(gen, 6),), label="one distribution"),
            Case((_probs(gen, 4, 5, zeros=True),), label="a batch with zero probabilities"),
            Case((torch.tensor([1.0, 0.0, 0.0], dtype=F64),), label="a point mass")]


def _kl_cases(gen):
    return [Case((_probs(gen, 6), _probs(gen, 6)), label="two distributions"),
            Case((_probs(gen, 3, 5, zeros=True), _probs(gen, 3, 5)), label="p with zeros"),
            Case((_probs(gen, 5),) * 2, label="p equal to q")]


def _gaussian_cases(gen):
    return [Case((torch.randn(5, generator=gen, dtype=F64) * 2 + 1,), label="5 scalars"),
            Case((torch.randn(7, 3, generator=gen, dtype=F64) * 3 - 2,), label="7 points in 3-D"),
            Case((torch.randn(400, 2, generator=gen, dtype=torch.float32),), label="400 float32 points"),
            Case((torch.randn(1, 3, generator=gen, dtype=F64),), label="a single point (N = 1)")]


def _poisson_cases(gen):
    return [Case((torch.poisson(torch.full((9,), 3.5, dtype=F64), generator=gen),), label="9 counts"),
            Case((torch.poisson(torch.rand(12, 4, generator=gen, dtype=F64) * 8, generator=gen),), label="12 x 4 counts"),
            Case((torch.randint(0, 9, (10, 3), generator=gen),), label="10 x 3 counts given as int64 (any float result)",
                 exact_dtype=False)]


_GRID = torch.linspace(-10, 10, 801, dtype=F64)


def _mixture(w, m, s):
    from ....mle import mixture_1d_log_pdf
    return mixture_1d_log_pdf(_GRID, w, m, s)


def _kl_grid_cases(gen):
    from ....mle import normal_log_pdf
    lp = _mixture([0.7, 0.3], [-2.0, 3.0], [0.8, 1.2])
    lq = normal_log_pdf(_GRID, 0.5, 2.0)
    mus = torch.linspace(-3, 3, 4, dtype=F64)[:, None]
    short = torch.linspace(-1, 2, 31, dtype=F64)
    return [Case((lp, lq, _GRID), label="a bimodal p and a Gaussian q"),
            Case((lq, lp, _GRID), label="roles swapped"),
            Case((lp, normal_log_pdf(_GRID, mus, 1.5), _GRID), label="p against a batch of 4 Gaussians (4, G)"),
            Case((normal_log_pdf(short, 0.5, 1.0), normal_log_pdf(short, 0.0, 2.0), short),
                 label="a short grid on [-1, 2] where neither density vanishes at the ends")]


def _fit_cases(gen):
    mus, sigmas = torch.linspace(-4, 4, 81, dtype=F64), torch.linspace(0.2, 4, 39, dtype=F64)
    lp = _mixture([0.6, 0.4], [-2.5, 2.0], [0.6, 0.9])
    lp2 = _mixture([0.3, 0.7], [-1.0, 2.5], [0.5, 0.5])
    return [Case((lp, _GRID, d, mus, sigmas), label=f"{d} KL") for d in ("forward", "reverse")] + \
           [Case((lp2, _GRID, "reverse", mus, sigmas), label="reverse KL, heavier right mode")]


def _gmm_params(gen, k, d):
    w = torch.softmax(torch.randn(k, generator=gen, dtype=F64), 0)
    m = torch.randn(k, d, generator=gen, dtype=F64) * 2
    a = torch.randn(k, d, d, generator=gen, dtype=F64)
    c = a @ a.transpose(1, 2) + 0.5 * torch.eye(d, dtype=F64)
    return w, m, c


def _gmm_cases(gen):
    x1 = torch.randn(20, 2, generator=gen, dtype=F64) * 2
    x2 = torch.randn(15, 3, generator=gen, dtype=F64) * 2
    return [Case((x1, *_gmm_params(gen, 3, 2)), label="20 points, 3 components in 2-D"),
            Case((x2, *_gmm_params(gen, 2, 3)), label="15 points, 2 components in 3-D"),
            Case((x1 * 30, *_gmm_params(gen, 2, 2)), label="far-away points (needs logsumexp)"),
            Case((x1[:1], *_gmm_params(gen, 1, 2)), label="one point, one component (N = K = 1)")]


def _em_cases(gen):
    x1 = torch.cat([torch.randn(30, 2, generator=gen, dtype=F64), torch.randn(20, 2, generator=gen, dtype=F64) + 3])
    x2 = torch.randn(40, 3, generator=gen, dtype=F64)
    far = torch.cat([torch.randn(12, 2, generator=gen, dtype=F64) - 40, torch.randn(8, 2, generator=gen, dtype=F64) + 40])
    far_params = (torch.tensor([0.5, 0.5], dtype=F64), torch.tensor([[-38.0, -38.0], [38.0, 38.0]], dtype=F64),
                  0.002 * torch.eye(2, dtype=F64).repeat(2, 1, 1))
    return [Case((x1, *_gmm_params(gen, 2, 2)), label="50 points, 2 components in 2-D"),
            Case((x2, *_gmm_params(gen, 3, 3)), label="40 points, 3 components in 3-D"),
            Case((x1, *_gmm_params(gen, 2, 2)), dict(reg_covar=0.1), label="reg_covar = 0.1"),
            Case((far, *far_params), label="narrow components far from every point (densities underflow: stay in log space)")]


def _blobs(gen, centres, scales, n, dtype=F64):
    """``n`` points around each centre ``(C, D)``, with one standard deviation per blob: ``(C * n, D)``."""
    centres, scales = torch.tensor(centres, dtype=dtype), torch.tensor(scales, dtype=dtype)
    noise = torch.randn(len(centres), n, centres.shape[1], generator=gen, dtype=dtype)
    return (centres[:, None] + scales[:, None, None] * noise).reshape(-1, centres.shape[1])


def _fit_gmm_cases(gen):
    # every case stops well away from the tolerance (the smallest |gain - tol| is over 1e-11 in float64,
    # 4e-5 in float32): rounding cannot change the step at which a correct implementation stops
    x3 = _blobs(gen, [[-3.0, 0.0], [3.0, 0.5], [0.0, 4.0]], [0.8, 1.3, 0.6], 60)
    overlapping = _blobs(gen, [[-1.0, 0.0], [1.0, 0.0], [0.0, 1.5]], [1.0, 1.0, 1.0], 50)
    x3d = _blobs(gen, [[0.0, 0.0, 0.0], [3.0, 3.0, 0.0]], [1.0, 0.5], 40)
    x1d = _blobs(gen, [[-2.0], [1.5]], [0.5, 1.0], 50)
    x32 = _blobs(gen, [[-3.0, 0.0], [3.0, 0.5]], [1.0, 0.7], 80, torch.float32)
    return [Case((x3, 3), dict(seed=1), label="180 points in 3 blobs, k = 3"),
            Case((overlapping, 4), dict(iters=8), label="overlapping blobs, k = 4: the limit iters = 8 comes first"),
            Case((x3d, 2), dict(seed=2, tol=1e-6, reg_covar=0.1), label="3-D points, reg_covar = 0.1"),
            Case((x1d, 2), dict(seed=3, iters=300), label="1-D points (D = 1)"),
            Case((x32, 2), dict(tol=1e-4), label="float32 points, tol = 1e-4"),
            Case((x3, 1), label="one component (k = 1): converged at the second step")]


def _fit_gmm_call(impl, case):
    """The fitted parameters and the trace as one float64 tensor (a trace of another length then says so)."""
    out = impl(*case.args, **case.kwargs)
    if not isinstance(out, (tuple, list)):  # the reference returns a GMMFit
        out = (out.weights, out.means, out.covs, out.log_likelihood)
    weights, means, covs, trace = out
    return weights, means, covs, torch.tensor([float(v) for v in trace], dtype=F64, device=case.args[0].device)


CHECKS = [
    Check("a1.entropy", "mle:entropy", _entropy_cases, what="entropy", atol=1e-8, rtol=1e-6),
    Check("a1.kl_divergence", "mle:kl_divergence", _kl_cases, what="kl_divergence", atol=1e-8, rtol=1e-6),
    Check("a1.gaussian_mle", "mle:gaussian_mle", _gaussian_cases, what="gaussian_mle", outputs=("mean", "variance")),
    Check("a1.poisson_mle", "mle:poisson_mle", _poisson_cases, what="poisson_mle", grad=()),  # counts are data
    # the grid x is not differentiated: a constant spacing is a correct way to use a uniform grid
    Check("a1.forward_kl", "mle:forward_kl", _kl_grid_cases, what="forward_kl", atol=1e-6, grad=(0, 1),
          hides=("mle:trapezoid",)),
    Check("a1.reverse_kl", "mle:reverse_kl", _kl_grid_cases, what="reverse_kl", atol=1e-6, grad=(0, 1),
          hides=("mle:trapezoid",)),
    # a search over a grid: the pair chosen is compared, not gradients; Python floats are fine
    Check("a1.fit_gaussian_kl", "mle:fit_gaussian_kl", _fit_cases, what="fit_gaussian_kl", atol=1e-9, grad=(),
          exact_dtype=False, outputs=("mean", "standard deviation")),
    # covariances are not differentiated: code reading one triangle (Cholesky) is as right as the reference
    Check("a1.gmm_log_prob", "mle:gmm_log_prob", _gmm_cases, what="gmm_log_prob", atol=1e-6, grad=(0, 1, 2),
          hides=("mle:_component_log_probs",)),
    Check("a1.em_step", "mle:em_step", _em_cases, what="em_step", atol=1e-6, grad=(),
          hides=("mle:gmm_responsibilities",), outputs=("weights", "means", "covariances")),
    # EM is not differentiated; the trace is compared entry by entry, so stopping one step early or late fails
    Check("a1.fit_gmm", "mle:fit_gmm", _fit_gmm_cases, call=_fit_gmm_call, what="fit_gmm", grad=(),
          outputs=("weights", "means", "covariances", "log-likelihood trace")),
]
