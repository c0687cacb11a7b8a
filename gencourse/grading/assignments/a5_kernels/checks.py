r"""Hidden checks of assignment 5 (kernels, kernel density estimation, the MMD and MMD nets).

The distances, the kernel, the KDE, the bandwidth selection and both MMD estimates keep the
signatures of :mod:`gencourse.kernels` and are compared with it directly. Two items need more:

* **The permutation test** draws random permutations, and a correct implementation may draw them in
  any order (``randperm``, ``argsort`` of uniforms, on another device), so it is never compared
  with the reference's random stream. Its two checks compare what every correct implementation
  shares, with every generator seeded (the generator passed to it and, in case it draws from the
  global one, the global generators, restored afterwards), so that a submission graded twice gets
  the same score:

  - ``permutation_statistic``: the statistic equals the MMD² estimate asked for (biased or
    unbiased), there are ``B`` null draws, they vary (a new permutation for each), and the p-value
    is :math:`(1 + \#\{b: T_b \ge T\}) / (1 + B)` computed from the submission's own draws;
  - ``permutation_calibration``: over 200 data sets drawn under :math:`H_0` the number of rejections
    at :math:`\alpha` lies in the binomial interval of the test's exact level
    :math:`\lfloor \alpha (B + 1)\rfloor / (B + 1)` (tails :math:`10^{-6}`), so does the number of
    p-values at most 1/2, and no p-value is below :math:`1/(B + 1)`; over 20 data sets with a clear
    shift the test rejects at least 17 times (the reference rejects all 20, and its power there is
    above 0.999).

  Their ``call`` adapters reduce the runs to these numbers (Python numbers only, so no gradient is
  taken), and raise :class:`~gencourse.grading.spec.CheckFailed` with a message saying which
  property failed.
* **The MMD-net step** is compared with :func:`mmd_net_step` below (the library's biased
  :func:`~gencourse.kernels.mmd2` on given noise, as in :meth:`gencourse.kernels.MMDNet.loss`): the
  same small generator, filled with :func:`~gencourse.grading.spec.fill_parameters`, the same
  optimizer and two steps on given batches and noise; the losses and the parameters after the two
  steps must match. The parameters start with gradients left over from an earlier backward pass, so
  a step that does not reset them takes a different step.

The cases and call adapters run inside the student's kernel while grading, where the references
(and the library's ``squared_distances``, ``_mmd2_from_gram`` and ``MMDNet.loss``) are hidden: they
never use them. Edge cases: one point, one dimension, float32 and float64, points near
(1000, -1000) in float32 (expanding |x - y|^2 cancels), coinciding points (the gradient of the
kernel there is 0, not NaN), queries 60 bandwidths away from every data point next to near ones
(stay in log space, per query), N = M = 2 for the unbiased estimate, sizes N != M.
"""
import math

import torch
from torch import nn

from ...spec import Case, Check, CheckFailed, fill_parameters, seeded

from ....kernels import mmd2

F64 = torch.float64

__all__ = ["CHECKS", "mmd_net_step"]


# --------------------------------------------------------------------------------------------
# Adapter: the assignment's training step on top of gencourse.kernels
# --------------------------------------------------------------------------------------------
def mmd_net_step(generator: nn.Module, optimizer, batch: torch.Tensor, noise: torch.Tensor, bandwidths) -> float:
    """One step of an MMD net: the biased MMD^2 between ``generator(noise)`` and ``batch``, back-propagated
    from zeroed gradients, then the optimizer's step; returns the loss before the step."""
    optimizer.zero_grad()
    loss = mmd2(generator(noise), batch, bandwidths)
    loss.backward()
    optimizer.step()
    return loss.item()


# --------------------------------------------------------------------------------------------
# Cases: distances, kernel, KDE, bandwidth, MMD
# --------------------------------------------------------------------------------------------
def _randn(gen, *shape, dtype=F64, scale=1.0, shift=0.0):
    return (torch.randn(*shape, generator=gen, dtype=F64) * scale + shift).to(dtype)


def _spd(gen, d, dtype=F64):
    a = torch.randn(d, d, generator=gen, dtype=F64) * 0.6
    return (a @ a.T + 0.3 * torch.eye(d, dtype=F64)).to(dtype)


def _far32(gen, n):
    """float32 points near (1000, -1000), about a unit apart."""
    return (torch.tensor([1000.0, -1000.0], dtype=F64) + torch.randn(n, 2, generator=gen, dtype=F64)).float()


def _distance_cases(gen):
    x, y = _randn(gen, 6, 3, scale=1.5), _randn(gen, 5, 3, shift=0.5)
    x1, y1 = _randn(gen, 1, 1), _randn(gen, 4, 1, scale=2.0)
    x32, y32 = _randn(gen, 7, 4, dtype=torch.float32), _randn(gen, 3, 4, dtype=torch.float32, scale=2.0)
    return [Case((x, y, "euclidean"), label="Euclidean, D = 3"),
            Case((x, y, "minkowski"), dict(p=1.0), label="Minkowski p = 1 (city block)"),
            Case((x, y, "minkowski"), dict(p=3.0), label="Minkowski p = 3"),
            Case((x, y, "minkowski"), dict(p=2.0), label="Minkowski p = 2 (the Euclidean distance)"),
            Case((x, y, "mahalanobis"), dict(cov=_spd(gen, 3)), label="Mahalanobis with a full covariance"),
            Case((x1, y1, "euclidean"), label="one point against four, D = 1"),
            Case((x1, y1, "mahalanobis"), dict(cov=torch.tensor([[2.5]], dtype=F64)),
                 label="Mahalanobis in 1-D: |x - y| / sigma"),
            Case((x32, y32, "minkowski"), dict(p=1.5), label="float32, Minkowski p = 1.5"),
            Case((x32, y32, "mahalanobis"), dict(cov=_spd(gen, 4, torch.float32)), label="float32 Mahalanobis"),
            Case((_far32(gen, 6), _far32(gen, 5), "euclidean"),
                 label="float32 points near (1000, -1000), about a unit apart (expanding |x|^2 + |y|^2 - 2 x.y "
                       "cancels: use the differences)")]


def _kernel_cases(gen):
    x, y = _randn(gen, 6, 3), _randn(gen, 5, 3, scale=1.5)
    x32, y32 = _randn(gen, 8, 2, dtype=torch.float32), _randn(gen, 6, 2, dtype=torch.float32)
    return [Case((x, y, 0.8), label="one bandwidth"),
            Case((x, y, [0.3, 1.0, 3.0]), label="three bandwidths (the sum of their kernels)"),
            Case((x, x.clone(), 1.5), label="y = x: zero distances on the diagonal, where the gradient is 0 (not NaN)"),
            Case((_randn(gen, 1, 1), _randn(gen, 4, 1), 2.0), label="one point, D = 1"),
            Case((x32, y32, [0.5, 2.0]), label="float32, two bandwidths"),
            Case((_randn(gen, 3, 2), _randn(gen, 4, 2, shift=20.0), [0.5]),
                 label="points 40 bandwidths apart (the kernel underflows to 0), a list of one bandwidth")]


def _kde_cases(gen):
    data = _randn(gen, 50, 2)
    mixed = torch.tensor([[30.0, 0.0], [0.1, 0.2], [-25.0, 31.0]], dtype=F64)
    data32 = _randn(gen, 40, 3, dtype=torch.float32)
    far32 = torch.tensor([[4.5, 0.0, 0.0], [0.2, -0.1, 0.3]], dtype=torch.float32)
    return [Case((_randn(gen, 7, 2, scale=1.5), data, 0.4), label="D = 2"),
            Case((_randn(gen, 1, 1), _randn(gen, 30, 1), 0.25), label="one query, D = 1"),
            Case((_randn(gen, 4, 5), _randn(gen, 40, 5), 0.9), label="D = 5"),
            Case((_randn(gen, 3, 2), _randn(gen, 1, 2), 0.5), label="one data point: log N(x; x_1, h^2 I)"),
            Case((mixed, data[:20], 0.5),
                 label="queries 60 bandwidths away from every data point next to a near one (exp underflows: "
                       "logsumexp per query)"),
            Case((_randn(gen, 6, 3, dtype=torch.float32), data32, 0.3), label="float32, D = 3"),
            Case((far32, data32, 0.2),
                 label="float32 queries 15 bandwidths away next to a near one (exp(-112) underflows in float32)")]


def _bandwidth_cases(gen):
    centres = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]], dtype=F64)
    def mixture(n, dtype=F64):
        idx = torch.randint(3, (n,), generator=gen)
        return (centres[idx] + 0.3 * torch.randn(n, 2, generator=gen, dtype=F64)).to(dtype)
    train, val = mixture(60), mixture(40)
    return [Case((train, val, [0.05, 0.1, 0.2, 0.4, 0.8, 1.6]), label="six candidates"),
            Case((train, val, [0.8, 0.05, 0.4, 0.1]), label="candidates not in order"),
            Case((train, val[:1], [0.1, 0.3, 1.0]), label="one validation point"),
            Case((train, val, [2.0, 4.0, 8.0]), label="every candidate too large: the best is the smallest"),
            Case((mixture(50, torch.float32), mixture(30, torch.float32), [0.1, 0.3, 1.0]), label="float32"),
            Case((_randn(gen, 40, 1), _randn(gen, 25, 1), [0.1, 0.3, 1.0]), label="D = 1")]


def _mmd_cases(unbiased):
    def cases(gen):
        x, y = _randn(gen, 8, 3), _randn(gen, 6, 3, shift=0.5)
        x32, y32 = _randn(gen, 10, 2, dtype=torch.float32), _randn(gen, 12, 2, dtype=torch.float32, scale=1.3)
        out = [Case((x, y, [0.5, 1.0, 3.0]), dict(unbiased=unbiased), label="N = 8, M = 6, three bandwidths"),
               Case((x, _randn(gen, 8, 3), 1.0), dict(unbiased=unbiased),
                    label="both samples from N(0, I), one bandwidth"),
               Case((_randn(gen, 5, 1), _randn(gen, 7, 1, scale=2.0), 0.3), dict(unbiased=unbiased), label="D = 1"),
               Case((x32, y32, [0.2, 2.0]), dict(unbiased=unbiased), label="float32"),
               Case((x, x.clone(), 0.7), dict(unbiased=unbiased), label="y = x (coinciding points)"),
               Case((_randn(gen, 4, 2), _randn(gen, 5, 2, shift=100.0), [1.0]), dict(unbiased=unbiased),
                    label="samples 100 apart: k(x, y) = 0")]
        if unbiased:
            out.append(Case((_randn(gen, 2, 2), _randn(gen, 2, 2), 1.0), dict(unbiased=True),
                            label="N = M = 2, the smallest samples the unbiased estimate allows"))
        else:
            out.append(Case((_randn(gen, 1, 2), _randn(gen, 3, 2), 1.0), dict(unbiased=False), label="N = 1"))
        return out
    return cases


# --------------------------------------------------------------------------------------------
# The permutation test: seeded runs reduced to what every correct implementation shares
# --------------------------------------------------------------------------------------------
def _run_test(impl, x, y, bandwidth, n_permutations, unbiased, generator):
    out = impl(x, y, bandwidth, n_permutations=n_permutations, unbiased=unbiased, generator=generator)
    if not (isinstance(out, (tuple, list)) and len(out) == 3):
        raise CheckFailed(f"it returned {type(out).__name__}; expected a tuple (statistic, p_value, null)")
    t, p, null = out
    null = torch.as_tensor(null).detach().reshape(-1).to("cpu", F64)
    return float(t), float(p), null


def _binomial_interval(n: int, q: float, tail: float = 1e-6) -> tuple:
    """The smallest and largest counts k with P(K <= k) and P(K >= k) above ``tail``, K ~ Bin(n, q)."""
    pmf = [math.comb(n, k) * q ** k * (1 - q) ** (n - k) for k in range(n + 1)]
    lo = next(k for k in range(n + 1) if sum(pmf[:k + 1]) > tail)
    hi = next(k for k in range(n, -1, -1) if sum(pmf[k:]) > tail)
    return lo, hi


def _statistic_cases(gen):
    x, y = _randn(gen, 10, 2), _randn(gen, 12, 2, shift=0.3)
    return [Case((x, y, 0.8), dict(n_permutations=50, unbiased=True, seed=1), label="unbiased, N = 10, M = 12, B = 50"),
            Case((x, y + 0.7, [0.5, 2.0]), dict(n_permutations=30, unbiased=False, seed=2),
                 label="biased, two bandwidths, B = 30"),
            Case((_randn(gen, 8, 1), _randn(gen, 8, 1, scale=1.5), 0.5), dict(n_permutations=40, unbiased=True, seed=3),
                 label="D = 1, N = M = 8, B = 40"),
            Case((_randn(gen, 9, 3, dtype=torch.float32), _randn(gen, 7, 3, dtype=torch.float32, shift=0.5), 1.0),
                 dict(n_permutations=40, unbiased=True, seed=4), label="float32, B = 40")]


def _call_statistic(impl, case):
    x, y, bandwidth = case.args
    b = case.kwargs["n_permutations"]
    with seeded(case.kwargs["seed"], x.device) as generator:
        t, p, null = _run_test(impl, x, y, bandwidth, b, case.kwargs["unbiased"], generator)
    if null.numel() != b:
        raise CheckFailed(f"it returned {null.numel()} null draws; expected n_permutations = {b}")
    count = int((null >= t).sum())
    if abs(p - (1 + count) / (1 + b)) > 1e-9:
        raise CheckFailed(f"{count} of its {b} null draws T_b are >= its statistic T = {t:.6g}, so the p-value is "
                          f"(1 + {count}) / (1 + {b}) = {(1 + count) / (1 + b):.6g}; it returned {p:.6g}")
    distinct = len(torch.unique(torch.round(null * 1e9)))
    if distinct <= b // 2:
        raise CheckFailed(f"only {distinct} distinct values among its {b} null draws: draw a new random permutation "
                          "of the pooled sample for every draw")
    return t, null.numel()


def _calibration_cases(gen):
    null_x, null_y = _randn(gen, 200, 15, 2), _randn(gen, 200, 15, 2)
    shift = torch.tensor([2.5, 0.0], dtype=F64)
    alt_x, alt_y = _randn(gen, 20, 20, 2), _randn(gen, 20, 20, 2) + shift
    return [Case((null_x, null_y, 1.0), dict(n_permutations=49, alpha=0.1, seed=11, kind="null"),
                 label="200 data sets under H0 (N = M = 15, D = 2), B = 49, alpha = 0.1"),
            Case((alt_x, alt_y, 1.0), dict(n_permutations=49, alpha=0.05, seed=12, kind="shift", least=17),
                 label="20 data sets with y shifted by 2.5 standard deviations (N = M = 20), B = 49, alpha = 0.05")]


def _call_calibration(impl, case):
    xs, ys, bandwidth = case.args
    kw = case.kwargs
    b, alpha, r = kw["n_permutations"], kw["alpha"], len(xs)
    with seeded(kw["seed"], xs.device) as generator:
        p_values = [_run_test(impl, xs[i], ys[i], bandwidth, b, True, generator)[1] for i in range(r)]
    p = torch.tensor(p_values, dtype=F64)
    rejected = int((p <= alpha + 1e-12).sum())
    if kw["kind"] == "shift":
        if rejected < kw["least"]:
            raise CheckFailed(f"against a clear shift it rejected only {rejected} of {r} data sets at alpha = {alpha} "
                              f"(a correct test rejects at least {kw['least']}); does it count the null draws T_b >= T?")
        return rejected >= kw["least"]
    smallest = float(p.min())
    if smallest < 1 / (b + 1) - 1e-12:
        raise CheckFailed(f"a p-value of {smallest:.4g} is below 1 / (B + 1) = {1 / (b + 1):.4g}, the smallest "
                          "possible: count the observed statistic as one of the draws (the +1)")
    level = math.floor(alpha * (b + 1)) / (b + 1)
    lo, hi = _binomial_interval(r, level)
    if not lo <= rejected <= hi:
        raise CheckFailed(f"under H0 it rejected {rejected} of {r} data sets at alpha = {alpha}; a test of level "
                          f"{level:.3g} rejects between {lo} and {hi} of them (binomial interval): is every null draw a "
                          "new permutation, computed with the same estimator as the statistic?")
    half = int((p <= 0.5 + 1e-12).sum())
    lo2, hi2 = _binomial_interval(r, math.floor(0.5 * (b + 1)) / (b + 1))
    if not lo2 <= half <= hi2:
        raise CheckFailed(f"under H0, {half} of its {r} p-values are at most 0.5; p-values of a valid test are spread "
                          f"evenly over (0, 1], and between {lo2} and {hi2} of them are at most 0.5")
    return True, True, True


# --------------------------------------------------------------------------------------------
# The MMD-net step: the same generator, optimizer, batches and noise, stale gradients first
# --------------------------------------------------------------------------------------------
def _step_cases(gen):
    def batches(n_data, n_noise, d, noise_dim, dtype=F64):
        return (_randn(gen, n_data, d, dtype=dtype, shift=0.5), _randn(gen, n_noise, noise_dim, dtype=dtype),
                _randn(gen, n_data, d, dtype=dtype, shift=0.5), _randn(gen, n_noise, noise_dim, dtype=dtype))
    return [Case(batches(16, 16, 2, 3), dict(hidden=8, bandwidths=[0.3, 1.0, 3.0], optimizer="sgd", lr=0.1, seed=1),
                 label="SGD, two steps, float64, three bandwidths"),
            Case(batches(20, 12, 2, 4), dict(hidden=8, bandwidths=1.0, optimizer="sgd", lr=0.2, seed=2),
                 label="12 generated points against batches of 20, one bandwidth"),
            Case(batches(10, 10, 1, 2), dict(hidden=6, bandwidths=[0.5, 2.0], optimizer="adam", lr=0.01, seed=3),
                 label="Adam, D = 1"),
            Case(batches(16, 16, 3, 3, torch.float32), dict(hidden=8, bandwidths=[0.5, 2.0], optimizer="adam", lr=0.01,
                                                            seed=4), label="Adam, float32, D = 3")]


def _call_step(impl, case):
    batch1, noise1, batch2, noise2 = case.args
    kw = case.kwargs
    net = nn.Sequential(nn.Linear(noise1.shape[1], kw["hidden"]), nn.Tanh(), nn.Linear(kw["hidden"], batch1.shape[1]))
    net = fill_parameters(net, seed=kw["seed"], scale=0.5).to(device=batch1.device, dtype=batch1.dtype)
    if kw["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(net.parameters(), lr=kw["lr"])
    else:
        optimizer = torch.optim.Adam(net.parameters(), lr=kw["lr"])
    for p in net.parameters():  # left over from an earlier backward pass
        p.grad = torch.full_like(p, 0.25)
    losses = [impl(net, optimizer, batch, noise, kw["bandwidths"])
              for batch, noise in ((batch1, noise1), (batch2, noise2))]
    losses = [v.detach() if isinstance(v, torch.Tensor) else v for v in losses]
    return losses, [p.detach().clone() for p in net.parameters()]


CHECKS = [
    Check("a5.pairwise_distances", "kernels:pairwise_distances", _distance_cases, what="pairwise_distances",
          rtol=1e-5, atol=1e-6, grad=(0, 1)),  # the metric's parameters (p, cov) are not differentiated
    Check("a5.gaussian_kernel", "kernels:gaussian_kernel", _kernel_cases, what="gaussian_kernel",
          rtol=1e-5, atol=1e-7, grad=(0, 1), hides=("kernels:squared_distances",)),
    Check("a5.kde_log_prob", "kernels:kde_log_prob", _kde_cases, what="kde_log_prob", rtol=1e-5, atol=1e-5,
          grad=(0, 1), hides=("kernels:KernelDensity.log_prob",)),
    Check("a5.select_bandwidth", "kernels:select_bandwidth", _bandwidth_cases, what="select_bandwidth", outputs=("chosen bandwidth", "scores"),
          rtol=1e-6, atol=1e-6, grad=()),  # a selection: nothing to differentiate
    Check("a5.mmd2_biased", "kernels:mmd2", _mmd_cases(False), what="mmd2 (biased)", rtol=1e-5, atol=1e-6,
          grad=(0, 1), hides=("kernels:_mmd2_from_gram",)),
    Check("a5.mmd2_unbiased", "kernels:mmd2", _mmd_cases(True), what="mmd2 (unbiased)", rtol=1e-5, atol=1e-6,
          grad=(0, 1), hides=("kernels:_mmd2_from_gram",)),
    Check("a5.permutation_statistic", "kernels:mmd_permutation_test", _statistic_cases, call=_call_statistic,
          what="mmd_permutation_test", outputs=("statistic", "number of null draws"), rtol=1e-5, atol=1e-6, grad=()),
    Check("a5.permutation_calibration", "kernels:mmd_permutation_test", _calibration_cases, call=_call_calibration,
          what="mmd_permutation_test", grad=()),
    Check("a5.mmd_net_step", "grading.assignments.a5_kernels.checks:mmd_net_step", _step_cases, call=_call_step,
          what="mmd_net_step", outputs=("loss values", "parameters after the steps"), rtol=1e-5, atol=1e-6, grad=(), hides=("kernels:MMDNet.loss",)),
]
