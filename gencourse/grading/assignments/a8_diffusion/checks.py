r"""Hidden checks of assignment 8 (diffusion models).

Every item takes the schedule as ``betas`` (``(T + 1,)``, ``betas[0] = 0``) and computes
:math:`\alpha_t` and :math:`\bar\alpha_t` itself, so that :math:`\alpha` for :math:`\bar\alpha`, a
missing square root and a step index off by one all change the numbers.

* **The forward sample** ``q_sample(x0, t, betas, eps)`` and **the posterior** ``q_posterior(x0, xt,
  t, betas)`` are compared with :mod:`gencourse.diffusion` (behind adapters that take ``betas``) on
  schedules whose :math:`\beta_t` differ from step to step, steps 1 and T included, float32 and
  float64; the posterior's variance may come as ``(B, 1)``, ``(B,)`` or ``(B, D)``.
* **The loss** ``diffusion_loss(denoiser, x0, t, eps, betas)`` is compared with the simplified loss
  on a denoiser filled with :func:`~gencourse.grading.spec.fill_parameters`: the value and the
  gradients with respect to ``x0`` and the denoiser's parameters.
* **The ancestral step** ``ddpm_step(denoiser, xt, t, betas, generator)`` is random: it is graded by
  its distribution. Each row of ``xt`` is repeated 100 000 times, the step is run once on them with a
  seeded generator (the global generators seeded too), and the mean and standard deviation of the
  copies of each row are compared with the reference's own (tolerance: about six standard errors of
  the difference of two such estimates), so any correct way of drawing the noise passes, while a
  wrong mean, a wrong or missing noise scale, or noise at the last step do not.

The cases and call adapters run inside the student's kernel while grading, where the references are
hidden: they never use them.
"""
import torch
from torch import nn

from ...spec import Case, Check, CheckFailed, fill_parameters, seeded

from ....diffusion import MLPDenoiser, ddpm_step as _library_step, q_posterior as _posterior, q_sample as _sample
from ....diffusion import simple_loss

F64 = torch.float64
COPIES = 100_000  # copies of each row in the distribution check of ddpm_step

__all__ = ["CHECKS", "q_sample", "q_posterior", "diffusion_loss", "ddpm_step"]


# --------------------------------------------------------------------------------------------
# Adapters: the assignment's signatures (betas in, alpha_bar computed) on top of gencourse.diffusion
# --------------------------------------------------------------------------------------------
def _alpha_bar(betas: torch.Tensor) -> torch.Tensor:
    return torch.cumprod(1 - betas, 0)


def q_sample(x0, t, betas, eps):
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps for steps t (B,)."""
    return _sample(x0, t, _alpha_bar(betas), eps)


def q_posterior(x0, xt, t, betas):
    """Mean (B, D) and variance (B, 1) of q(x_{t-1} | x_t, x_0)."""
    return _posterior(x0, xt, t, betas, _alpha_bar(betas))


def diffusion_loss(denoiser, x0, t, eps, betas):
    """The simplified loss at the given steps and noise: mean over the batch of |eps - eps_theta(x_t, t)|^2."""
    return simple_loss(eps, denoiser(q_sample(x0, t, betas, eps), t))


def ddpm_step(denoiser, xt, t, betas, generator=None):
    """One ancestral step from x_t (all rows at step t) with sigma_t^2 = beta_t, no noise at t = 1."""
    steps = torch.full((len(xt),), t, dtype=torch.long, device=xt.device)
    z = None if t == 1 else torch.randn(xt.shape, generator=generator, dtype=xt.dtype, device=xt.device)
    return _library_step(xt, t, denoiser(xt, steps), betas, _alpha_bar(betas), betas, z)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
def _randn(gen, *shape, dtype=F64, scale=1.0, shift=0.0):
    return (torch.randn(*shape, generator=gen, dtype=F64) * scale + shift).to(dtype)


def _betas(T: int, low: float, high: float, dtype=F64) -> torch.Tensor:
    """A schedule whose betas differ at every step (linear, with a bend), betas[0] = 0."""
    ramp = torch.linspace(0, 1, T, dtype=F64)
    return torch.cat([torch.zeros(1, dtype=F64), low + (high - low) * ramp ** 1.5]).to(dtype)


def _steps(gen, n, T):
    t = torch.randint(1, T + 1, (n,), generator=gen)
    t[0], t[-1] = 1, T  # the first and the last step always among them
    return t


def _sample_cases(gen):
    out = []
    for label, (n, d, T, dtype, lo, hi) in (("B = 6, D = 2, T = 10", (6, 2, 10, F64, 0.02, 0.3)),
                                             ("B = 9, D = 3, T = 50, steps 1 and T included", (9, 3, 50, F64, 1e-3, 0.2)),
                                             ("one example, D = 5", (1, 5, 20, F64, 0.01, 0.1)),
                                             ("float32", (7, 4, 30, torch.float32, 0.01, 0.25))):
        t = _steps(gen, n, T) if n > 1 else torch.tensor([T // 2])
        out.append(Case((_randn(gen, n, d, dtype=dtype, shift=0.3), t, _betas(T, lo, hi, dtype),
                         _randn(gen, n, d, dtype=dtype)), label=label))
    return out


def _posterior_cases(gen):
    out = []
    for label, (n, d, T, dtype, lo, hi) in (("B = 6, D = 2, T = 10, step 1 (variance 0) and T included", (6, 2, 10, F64, 0.02, 0.3)),
                                             ("B = 8, D = 3, T = 40", (8, 3, 40, F64, 1e-3, 0.2)),
                                             ("float32", (5, 2, 25, torch.float32, 0.01, 0.25))):
        out.append(Case((_randn(gen, n, d, dtype=dtype), _randn(gen, n, d, dtype=dtype, scale=1.2),
                         _steps(gen, n, T), _betas(T, lo, hi, dtype)), label=label))
    return out


def _call_posterior(impl, case):
    out = impl(*case.args)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise CheckFailed(f"it returned {type(out).__name__}; expected a pair (mean, variance)")
    mean, var = out
    var = torch.as_tensor(var)
    if var.dim() == 1:  # one variance per example, as (B,)
        var = var[:, None]
    try:
        var = var.expand_as(mean)
    except RuntimeError:
        raise CheckFailed(f"its variance has shape {tuple(var.shape)}; expected (B, 1), (B,) or (B, D) "
                          f"for a mean of shape {tuple(mean.shape)}") from None
    return mean, var


class _Denoiser(nn.Module):
    """The library's MLP noise predictor, which also accepts the step as a Python int."""

    def __init__(self, data_dim: int, hidden: int = 8):
        super().__init__()
        self.net = MLPDenoiser(data_dim, (hidden, hidden), emb_dim=4)

    def forward(self, xt, t):
        t = torch.as_tensor(t, device=xt.device).long().reshape(-1).expand(len(xt))
        return self.net(xt, t)


def _denoiser(d: int, seed: int, like: torch.Tensor) -> nn.Module:
    return fill_parameters(_Denoiser(d), seed=seed, scale=0.4).to(device=like.device, dtype=like.dtype)


def _loss_cases(gen):
    out = []
    for label, (n, d, T, dtype, seed) in (("B = 8, D = 2, T = 20", (8, 2, 20, F64, 1)),
                                           ("B = 5, D = 3, T = 100", (5, 3, 100, F64, 2)),
                                           ("float32", (6, 2, 30, torch.float32, 3))):
        out.append(Case((_randn(gen, n, d, dtype=dtype, shift=0.2), _steps(gen, n, T), _randn(gen, n, d, dtype=dtype),
                         _betas(T, 1e-3, 0.25, dtype)), dict(seed=seed), label=label))
    return out


def _call_loss(impl, case):
    x0, t, eps, betas = case.args
    value = impl(_denoiser(x0.shape[1], case.kwargs["seed"], x0), x0, t, eps, betas)
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise CheckFailed(f"it returned {type(value).__name__}; expected a 0-d tensor")
    return value.reshape(())


def _step_cases(gen):
    out = []
    for label, (rows, d, T, t, seed) in (("step t = 5 of 10", (3, 2, 10, 5, 1)),
                                          ("step t = 2 of 10: beta_2 and the posterior variance differ most", (2, 2, 10, 2, 2)),
                                          ("the last step, t = 1: no noise", (3, 2, 10, 1, 3)),
                                          ("the first step, t = T = 20", (2, 3, 20, 20, 4))):
        out.append(Case((_randn(gen, rows, d, scale=1.3), t, _betas(T, 0.01, 0.3)), dict(seed=seed), label=label))
    return out


def _call_step(impl, case):
    """The mean and the standard deviation of COPIES draws of the step from each row: what every
    correct implementation shares, however it draws its noise."""
    xt, t, betas = case.args
    rows, d = xt.shape
    many = xt.repeat_interleave(COPIES, 0)
    with seeded(1000 + case.kwargs["seed"], many.device) as cpu_gen:
        gen = cpu_gen if many.device.type == "cpu" else torch.Generator(many.device).manual_seed(1001 + case.kwargs["seed"])
        with torch.no_grad():
            out = impl(_denoiser(d, case.kwargs["seed"], many), many, t, betas, gen)
    if not isinstance(out, torch.Tensor) or out.shape != many.shape:
        raise CheckFailed(f"it returned {getattr(out, 'shape', type(out).__name__)}; expected x_(t-1) of the shape of "
                          f"xt, {tuple(many.shape)}")
    draws = out.reshape(rows, COPIES, d)
    return draws.mean(1), draws.std(1)


CHECKS = [
    Check("a8.q_sample", "grading.assignments.a8_diffusion.checks:q_sample", _sample_cases, what="q_sample",
          rtol=1e-6, atol=1e-7, grad=(0, 3), hides=("diffusion:q_sample",)),
    Check("a8.q_posterior", "grading.assignments.a8_diffusion.checks:q_posterior", _posterior_cases,
          call=_call_posterior, what="q_posterior", outputs=("mean", "variance"), rtol=1e-6, atol=1e-7, grad=(0, 1), hides=("diffusion:q_posterior",)),
    Check("a8.diffusion_loss", "grading.assignments.a8_diffusion.checks:diffusion_loss", _loss_cases, call=_call_loss,
          what="diffusion_loss", rtol=1e-6, atol=1e-7, grad=(0,),
          hides=("diffusion:simple_loss", "diffusion:DDPM.loss")),
    # the mean of 100 000 draws has a standard error of at most sigma_t / 316 (sigma_t <= 0.55 here), the
    # difference of two such means sqrt(2) times that: atol 0.015 is about six of those
    Check("a8.ddpm_step", "grading.assignments.a8_diffusion.checks:ddpm_step", _step_cases, call=_call_step,
          what="ddpm_step", outputs=("mean of the draws", "spread of the draws"), rtol=0.0, atol=0.015, grad=(), exact_dtype=False,
          hides=("diffusion:ddpm_step", "diffusion:reverse_mean", "diffusion:predicted_x0", "diffusion:DDPM.sample")),
]
