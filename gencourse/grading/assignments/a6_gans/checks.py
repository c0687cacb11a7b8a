r"""Hidden checks of assignment 6 (GANs and Wasserstein GANs).

The losses, the optimal discriminator and the Jensen-Shannon divergence keep the signatures of
:mod:`gencourse.gan` and are compared with it directly. Two items need more:

* **The gradient penalty** draws its interpolation weights at random, and a correct implementation
  may draw them in any way (one ``rand`` of shape ``(B,)`` or ``(B, 1, ...)``, on another device), so
  it is never compared with the reference's random stream. Two checks compare what every correct
  implementation shares, with every generator seeded (the one passed and, in case it draws from the
  global one, the global generators, restored afterwards), so that grading is deterministic:

  - ``gradient_penalty_exact``: where the penalty does not depend on the weights it must be exact,
    with its gradient with respect to the critic's parameters (the gradient of the critic must be
    kept in the graph, ``create_graph=True``): a linear critic (gradient norm \|w\| everywhere, so
    the penalty is (\|w\| - 1)^2 for vectors and images), and real = fake (every interpolate is
    the real sample) under the critic a |x|^2 / 2;
  - ``gradient_penalty_distribution``: under the critic a |x|^2 / 2 on fixed pairs of real and
    generated points, the penalty's expectation over uniform weights is computed by Gauss-Legendre
    quadrature per pair; each of four seeded calls must lie within six Monte Carlo standard errors
    of it. A penalty on the real or the generated samples only, one weight for the whole batch, or a
    norm over the batch lands far outside.

  Their ``call`` adapters reduce the runs to exact numbers (the exact check) or to ``True``
  (the distribution check, which raises :class:`~gencourse.grading.spec.CheckFailed` with a
  message saying what is off).
* **The training step** is compared with :func:`train_step` below (:meth:`gencourse.gan.GAN.train_step`
  on the given noise): the same small generator and discriminator, filled with
  :func:`~gencourse.grading.spec.fill_parameters`, the same optimizers, two steps on given batches and
  noise, the parameters starting with stale gradients. The losses, both players' parameters after the
  two steps, and how many times a gradient reached the generator's parameters in each step (once:
  the discriminator steps must not back-propagate into the generator) must match.

The cases and call adapters run inside the student's kernel while grading, where the references are
hidden: they never use them.
"""
import math

import torch
from torch import nn

from ...spec import Case, Check, CheckFailed, fill_parameters, seeded

from ....gan import GAN

F64 = torch.float64

__all__ = ["CHECKS", "train_step"]


# --------------------------------------------------------------------------------------------
# Adapter: the assignment's training step on top of gencourse.gan
# --------------------------------------------------------------------------------------------
def train_step(generator: nn.Module, discriminator: nn.Module, reals, noises, opt_g, opt_d) -> tuple:
    """``k = len(reals)`` discriminator steps and one non-saturating generator step on the given
    noise batches (:meth:`gencourse.gan.GAN.train_step`); the last discriminator loss and the
    generator loss, each before its update."""
    model = GAN(generator, discriminator, noises[0].shape[1], kind="gan")
    return model.train_step(list(reals), opt_d, opt_g, noises=list(noises))


# --------------------------------------------------------------------------------------------
# Cases: losses, D*, JS
# --------------------------------------------------------------------------------------------
def _randn(gen, *shape, dtype=F64, scale=1.0, shift=0.0):
    return (torch.randn(*shape, generator=gen, dtype=F64) * scale + shift).to(dtype)


def _d_loss_cases(gen):
    return [Case((_randn(gen, 7, scale=3.0), _randn(gen, 5, scale=3.0)), label="7 real and 5 fake logits"),
            Case((_randn(gen, 1), _randn(gen, 1)), label="one sample each"),
            Case((_randn(gen, 9, dtype=torch.float32, scale=2.0), _randn(gen, 9, dtype=torch.float32, scale=2.0)),
                 label="float32"),
            Case((torch.tensor([-200.0, 3.0, 150.0]), torch.tensor([200.0, -180.0])),
                 label="float32 logits of +-200 (sigmoid is exactly 0 or 1: use softplus, not log(sigmoid))"),
            Case((torch.tensor([-800.0, 0.5], dtype=F64), torch.tensor([900.0, -1.0, 2.0], dtype=F64)),
                 label="float64 logits of +-800")]


def _g_loss_cases(saturating):
    def cases(gen):
        kw = dict(saturating=saturating)
        out = [Case((_randn(gen, 6, scale=3.0),), kw, label="6 logits"),
               Case((_randn(gen, 1),), kw, label="one logit"),
               Case((_randn(gen, 8, dtype=torch.float32, scale=2.0),), kw, label="float32"),
               Case((torch.tensor([-200.0, 1.0, 150.0]),), kw, label="float32 logits of +-200 (use softplus)")]
        if not saturating:
            out.append(Case((_randn(gen, 5, scale=2.0),), label="saturating not given: the non-saturating loss"))
        return out
    return cases


def _d_star_cases(gen):
    log_p, log_q = _randn(gen, 40, scale=3.0, shift=-2.0), _randn(gen, 40, scale=3.0, shift=-2.0)
    return [Case((log_p, log_q), label="40 points, log-densities around -2"),
            Case((_randn(gen, 5, 4), _randn(gen, 5, 4)), label="a (5, 4) grid: elementwise"),
            Case((torch.tensor([-800.0, -1000.0, -750.0], dtype=F64), torch.tensor([-801.5, -999.0, -760.0], dtype=F64)),
                 label="far tails: both densities underflow to 0 (0 / 0), their log-ratio does not"),
            Case((torch.tensor([-120.0, -3.0]), torch.tensor([-121.0, -3.0])),
                 label="float32, log-densities of -120 (exp underflows in float32)"),
            Case((log_p[:3].clone(), log_p[:3].clone()), label="equal densities: D* = 1/2")]


def _gaussian_grid(lo, hi, n, mu, sigma, dtype=F64):
    u = torch.linspace(lo, hi, n, dtype=F64)
    log = -0.5 * ((u - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)
    return u, log.to(dtype)


def _js_cases(gen):
    u, log_p = _gaussian_grid(-8.0, 9.0, 1701, 0.0, 1.0)
    _, log_q = _gaussian_grid(-8.0, 9.0, 1701, 1.5, 0.8)
    cell = float(u[1] - u[0])
    uniform = torch.where((u >= -1.0) & (u < 1.0), torch.full_like(u, -math.log(2.0)), torch.full_like(u, -math.inf))
    shifted = torch.where((u >= 3.0) & (u < 5.0), torch.full_like(u, -math.log(2.0)), torch.full_like(u, -math.inf))
    v, log_a = _gaussian_grid(-6.0, 6.0, 121, 0.0, 1.0)
    _, log_b = _gaussian_grid(-6.0, 6.0, 121, 0.8, 1.3)
    plane_p = log_a[:, None] + log_a[None, :]  # N(0, I) on a 121 x 121 grid
    plane_q = log_b[:, None] + log_a[None, :]
    cell2 = float(v[1] - v[0]) ** 2
    _, log_p32 = _gaussian_grid(-8.0, 9.0, 1701, 0.0, 1.0, torch.float32)
    _, log_q32 = _gaussian_grid(-8.0, 9.0, 1701, 2.0, 1.0, torch.float32)
    return [Case((log_p, log_q, cell), label="N(0, 1) against N(1.5, 0.8^2) on 1701 points"),
            Case((log_p, log_p.clone(), cell), label="equal densities: 0"),
            Case((uniform, shifted, cell),
                 label="uniform densities with disjoint supports (log 0 = -inf outside them): log 2, no NaN"),
            Case((uniform, log_q, cell), label="a uniform density (0 outside [-1, 1]) against a Gaussian"),
            Case((plane_p, plane_q, cell2), label="two Gaussians on a 121 x 121 grid of the plane (sum over every cell)"),
            Case((log_p32, log_q32, cell), label="float32")]


# --------------------------------------------------------------------------------------------
# The gradient penalty: exact where the weights do not matter, by its distribution where they do
# --------------------------------------------------------------------------------------------
def _exact_cases(gen):
    w = torch.tensor([[2.0, -1.0, 2.0, 0.5]], dtype=F64)
    w_img = _randn(gen, 1, 9, scale=0.4)
    return [Case((_randn(gen, 12, 4), _randn(gen, 12, 4, shift=1.0), w), dict(critic="linear", seed=1),
                 label="linear critic, |w| = 3.04: the penalty is (|w| - 1)^2 whatever the weights"),
            Case((_randn(gen, 1, 4), _randn(gen, 1, 4), w * 0.2), dict(critic="linear", seed=2),
                 label="linear critic with |w| < 1, one sample"),
            Case((_randn(gen, 6, 1, 3, 3), _randn(gen, 6, 1, 3, 3), w_img), dict(critic="linear", seed=3),
                 label="images (6, 1, 3, 3) under a linear critic: one weight per image, the norm over all its pixels"),
            Case((_randn(gen, 10, 3, dtype=torch.float32), _randn(gen, 10, 3, dtype=torch.float32),
                  w[:, :3].float()), dict(critic="linear", seed=4), label="float32, linear critic"),
            Case((_randn(gen, 8, 3, scale=1.5), None, torch.tensor([1.3], dtype=F64)), dict(critic="bowl", seed=5),
                 label="real = fake under f(x) = a |x|^2 / 2: every interpolate is the real sample (norm per sample)"),
            Case((_randn(gen, 5, 1, 2, 2), None, torch.tensor([0.7], dtype=F64)), dict(critic="bowl", seed=6),
                 label="images with real = fake under f(x) = a |x|^2 / 2")]


def _critic(kind: str, param: torch.Tensor):
    if kind == "linear":
        return lambda x: (x.flatten(1) @ param.T).squeeze(1)
    return lambda x: 0.5 * param * (x ** 2).flatten(1).sum(1)


def _call_exact(impl, case):
    real, fake, param = case.args
    fake = real.clone() if fake is None else fake
    param = param.detach().clone().requires_grad_(True)
    with seeded(case.kwargs["seed"], real.device) as generator:
        value = impl(_critic(case.kwargs["critic"], param), real, fake, generator=generator)
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise CheckFailed(f"it returned {type(value).__name__}; expected a 0-d tensor")
    if not value.requires_grad:
        raise CheckFailed("the penalty carries no gradient to the critic's parameters: keep the critic's gradient in "
                          "the graph (torch.autograd.grad(..., create_graph=True))")
    grad, = torch.autograd.grad(value.sum(), param)
    return value.detach().reshape(()), grad


def _distribution_cases(gen):
    n = 3000
    real = _randn(gen, n, 3, scale=0.3) + torch.tensor([1.5, 0.0, 0.0], dtype=F64)
    fake = _randn(gen, n, 3, scale=0.3) + torch.tensor([-0.5, 1.0, 0.5], dtype=F64)
    img_real = _randn(gen, 2000, 1, 2, 2, scale=0.3, shift=0.6)
    img_fake = _randn(gen, 2000, 1, 2, 2, scale=0.3, shift=-0.4)
    return [Case((real, fake, torch.tensor([1.3], dtype=F64)), dict(seeds=(11, 12, 13, 14)),
                 label="3000 fixed pairs of points, f(x) = 1.3 |x|^2 / 2: four draws of the penalty against its "
                       "expectation over uniform weights"),
            Case((img_real, img_fake, torch.tensor([0.8], dtype=F64)), dict(seeds=(21, 22, 23, 24)),
                 label="2000 fixed pairs of images (1, 2, 2), f(x) = 0.8 |x|^2 / 2")]


def _expectation(real: torch.Tensor, fake: torch.Tensor, a: float, n_nodes: int = 64) -> tuple:
    """Per pair, E and Var over eps ~ U[0, 1] of (a |eps r + (1 - eps) f| - 1)^2 (Gauss-Legendre)."""
    import numpy as np

    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
    eps = torch.tensor((nodes + 1) / 2, dtype=F64)  # on [0, 1]
    w = torch.tensor(weights / 2, dtype=F64)
    r, f = real.detach().to("cpu", F64).flatten(1), fake.detach().to("cpu", F64).flatten(1)
    x = eps[:, None, None] * r[None] + (1 - eps[:, None, None]) * f[None]  # (nodes, B, D)
    g = (a * x.norm(dim=2) - 1) ** 2  # (nodes, B)
    mean = (w[:, None] * g).sum(0)
    second = (w[:, None] * g ** 2).sum(0)
    return mean, second - mean ** 2


def _call_distribution(impl, case):
    real, fake, a = case.args
    mean, var = _expectation(real, fake, float(a))
    expected = float(mean.mean())
    se = math.sqrt(float(var.sum())) / len(real)  # the standard error of a mean over the batch
    on_real = float(((float(a) * real.detach().flatten(1).norm(dim=1) - 1) ** 2).mean())
    draws = []
    for seed in case.kwargs["seeds"]:
        with seeded(seed, real.device) as generator:
            value = impl(_critic("bowl", a), real, fake, generator=generator)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise CheckFailed(f"it returned {type(value).__name__}; expected a 0-d tensor")
        draws.append(float(value.detach()))
    off = [v for v in draws if abs(v - expected) > 6 * se]
    if off:
        hint = (" (that is the penalty at the real samples: interpolate between real and fake)"
                if any(abs(v - on_real) < 1e-6 * max(1.0, abs(on_real)) for v in off) else
                " (a new uniform weight for every pair? the norm of each sample's gradient, not of the batch's?)")
        raise CheckFailed(f"over uniform interpolation weights the penalty averages {expected:.5f} here (Monte Carlo "
                          f"standard error of a batch {se:.5f}); four seeded draws gave "
                          f"{', '.join(f'{v:.5f}' for v in draws)}{hint}")
    return (True,)


# --------------------------------------------------------------------------------------------
# The training step: the same players, optimizers, batches and noise, stale gradients first
# --------------------------------------------------------------------------------------------
def _step_cases(gen):
    def batches(n, d, noise_dim, k, dtype=F64):
        reals = [[_randn(gen, n, d, dtype=dtype, shift=0.5) for _ in range(k)] for _ in range(2)]
        noises = [[_randn(gen, n, noise_dim, dtype=dtype) for _ in range(k + 1)] for _ in range(2)]
        return reals, noises
    out = []
    for label, (n, d, nd, k, dtype), kw in (
            ("SGD, k = 1, two steps, float64", (8, 2, 3, 1, F64), dict(optimizer="sgd", lr=0.1, seed=1)),
            ("SGD, k = 3: three discriminator steps on three batches", (6, 2, 2, 3, F64),
             dict(optimizer="sgd", lr=0.1, seed=2)),
            ("Adam, k = 2, D = 3", (10, 3, 4, 2, F64), dict(optimizer="adam", lr=0.01, seed=3)),
            ("Adam, float32, k = 1", (8, 2, 2, 1, torch.float32), dict(optimizer="adam", lr=0.01, seed=4))):
        reals, noises = batches(n, d, nd, k, dtype)
        out.append(Case((reals, noises), dict(hidden=6, **kw), label=label))
    return out


def _call_step(impl, case):
    reals, noises = case.args
    kw = case.kwargs
    dtype, device = reals[0][0].dtype, reals[0][0].device
    d, noise_dim = reals[0][0].shape[1], noises[0][0].shape[1]
    g = nn.Sequential(nn.Linear(noise_dim, kw["hidden"]), nn.Tanh(), nn.Linear(kw["hidden"], d))
    dis = nn.Sequential(nn.Linear(d, kw["hidden"]), nn.Tanh(), nn.Linear(kw["hidden"], 1), nn.Flatten(0))
    g = fill_parameters(g, seed=kw["seed"], scale=0.5).to(device=device, dtype=dtype)
    dis = fill_parameters(dis, seed=kw["seed"] + 100, scale=0.5).to(device=device, dtype=dtype)
    make = (lambda ps: torch.optim.SGD(ps, lr=kw["lr"])) if kw["optimizer"] == "sgd" else \
        (lambda ps: torch.optim.Adam(ps, lr=kw["lr"], betas=(0.5, 0.999)))
    opt_g, opt_d = make(g.parameters()), make(dis.parameters())
    for p in list(g.parameters()) + list(dis.parameters()):  # left over from an earlier backward pass
        p.grad = torch.full_like(p, 0.25)
    reached = []
    hooks = [p.register_hook(lambda grad: reached.append(1)) for p in g.parameters()]
    n_params = len(list(g.parameters()))
    losses, reaches = [], []
    try:
        for real_batches, noise_batches in zip(reals, noises):
            reached.clear()
            out = impl(g, dis, list(real_batches), list(noise_batches), opt_g, opt_d)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise CheckFailed(f"it returned {type(out).__name__}; expected a pair (d_loss, g_loss)")
            losses.append([float(v) for v in out])
            reaches.append(len(reached) // n_params)
    finally:
        for h in hooks:
            h.remove()
    if reaches[0] != 1:
        raise CheckFailed(f"in one step a gradient reached the generator's parameters {reaches[0]} times; once is "
                          "right (the generator step): the discriminator steps must use detached fakes")
    return (losses, [p.detach().clone() for p in g.parameters()], [p.detach().clone() for p in dis.parameters()],
            reaches)


CHECKS = [
    Check("a6.discriminator_loss", "gan:discriminator_loss", _d_loss_cases, what="discriminator_loss",
          rtol=1e-6, atol=1e-7, grad=(0, 1)),
    Check("a6.generator_loss_nonsaturating", "gan:generator_loss", _g_loss_cases(False),
          what="generator_loss (non-saturating)", rtol=1e-6, atol=1e-7, grad=(0,)),
    Check("a6.generator_loss_saturating", "gan:generator_loss", _g_loss_cases(True),
          what="generator_loss (saturating)", rtol=1e-6, atol=1e-7, grad=(0,)),
    Check("a6.optimal_discriminator", "gan:optimal_discriminator", _d_star_cases, what="optimal_discriminator",
          rtol=2e-5, atol=1e-8, grad=(0, 1)),  # float32 log-densities of -120 keep ~1e-5 relative precision
    Check("a6.js_divergence", "gan:js_divergence", _js_cases, what="js_divergence", rtol=1e-5, atol=1e-7,
          grad=()),  # a measurement on a grid: nothing is trained through it
    Check("a6.gradient_penalty_exact", "gan:gradient_penalty", _exact_cases, call=_call_exact,
          what="gradient_penalty", outputs=("penalty", "gradient of the penalty"), rtol=1e-5, atol=1e-7, grad=()),
    Check("a6.gradient_penalty_distribution", "gan:gradient_penalty", _distribution_cases, call=_call_distribution,
          what="gradient_penalty", grad=()),
    Check("a6.train_step", "grading.assignments.a6_gans.checks:train_step", _step_cases, call=_call_step,
          what="train_step", rtol=1e-5, atol=1e-6, grad=(), hides=("gan:GAN.train_step",),
          outputs=("loss values", "generator's parameters", "discriminator's parameters", "gradient counts")),
]
