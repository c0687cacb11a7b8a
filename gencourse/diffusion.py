r"""Diffusion models: a fixed noising chain, a learned denoising chain, and the bound that ties them.

Notation (lecture 10), with the arrays of a schedule indexed by the step ``t`` itself (index 0 is
:math:`t = 0`, where nothing has been added):

* **Forward process** (fixed, no parameters): :math:`q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{\alpha_t}\,x_{t-1}, \beta_t I)`
  for :math:`t = 1..T`, with the variance schedule :math:`\beta_t` (:func:`linear_schedule`,
  :func:`cosine_schedule`), :math:`\alpha_t = 1 - \beta_t` and :math:`\bar\alpha_t = \prod_{s \le t} \alpha_s`
  (:math:`\bar\alpha_0 = 1`). In closed form (:func:`q_sample`):
  :math:`q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0, (1 - \bar\alpha_t) I)`, i.e.
  :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\varepsilon`, :math:`\varepsilon \sim \mathcal N(0, I)`.
* **Posterior** of one step back given the data (:func:`q_posterior`):
  :math:`q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)` with
  :math:`\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t} x_0 + \frac{\sqrt{\alpha_t}(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t} x_t`
  and :math:`\tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\beta_t` (zero at :math:`t = 1`).
* **Reverse process** (learned): :math:`p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta(x_t, t), \sigma_t^2 I)`,
  where a denoiser :math:`\varepsilon_\theta(x_t, t)` predicts the noise and
  :math:`\mu_\theta = \big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\varepsilon_\theta\big)/\sqrt{\alpha_t}`
  (:func:`reverse_mean`); :math:`\sigma_t^2 = \beta_t` by default (:math:`\tilde\beta_t` with
  ``reverse_var="posterior"``). On continuous data :math:`\beta_t` makes the bound tight as ``T``
  grows, while :math:`\tilde\beta_t`, the right variance only when :math:`x_0` is known, is far too
  small near the data and leaves a gap that does not close (0.40 nats at T = 1000 on a 1-D Gaussian).
  On data with ``K`` levels (the digits), the last step is a Gaussian binned to the levels,
  :math:`p_\theta(x_0 \mid x_1)`, of width :math:`\sigma_1 = \sqrt{\beta_1}`.
* **The bound** (:meth:`DDPM.bound_terms`): :math:`-\log p_\theta(x_0) \le L_T + \sum_{t=2}^T L_{t-1} + L_0` with
  :math:`L_T = \mathrm{KL}(q(x_T \mid x_0) \,\|\, \mathcal N(0, I))`,
  :math:`L_{t-1} = \mathrm{KL}(q(x_{t-1} \mid x_t, x_0) \,\|\, p_\theta(x_{t-1} \mid x_t))` and
  :math:`L_0 = -\log p_\theta(x_0 \mid x_1)`: lecture 04's ELBO with :math:`x_{1:T}` as the latents and
  :math:`q` fixed. On discrete data it bounds the probability of the levels, in nats per example.
  :math:`L_{t-1} = \frac{\beta_t^2}{2 \sigma_t^2 \alpha_t (1 - \bar\alpha_t)} \|\varepsilon - \varepsilon_\theta\|^2`:
  the **simplified loss** (:func:`simple_loss`, Ho et al. 2020) drops the weights.
* **Sampling**: ancestral (DDPM, :meth:`DDPM.sample`), one step :func:`ddpm_step`; and DDIM
  (Song et al. 2021, :func:`ddim_step`) on a subsequence of the steps,
  :math:`x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1 - \bar\alpha_s - \sigma^2}\,\varepsilon_\theta + \sigma z`,
  :math:`\sigma = \eta \sqrt{\frac{1 - \bar\alpha_s}{1 - \bar\alpha_t}\big(1 - \frac{\bar\alpha_t}{\bar\alpha_s}\big)}`:
  deterministic at :math:`\eta = 0`, and DDPM itself at :math:`\eta = 1` with every step.

Denoisers: :class:`MLPDenoiser` (2-D toys) and :class:`ConvDenoiser` (8x8 images), both fed the
step through :func:`time_embedding`.

Used by: lecture 10_diffusion, assignment a8_diffusion, ``benchmarks/bench_diffusion.py``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from .distributions import discretized_gaussian_log_prob, gaussian_log_prob, kl_diag_gaussians
from .nn import mlp

__all__ = [
    "linear_schedule", "cosine_schedule", "q_sample", "q_posterior", "predicted_x0", "reverse_mean",
    "simple_loss", "ddpm_step", "ddim_step", "ddim_steps", "time_embedding", "MLPDenoiser", "ConvDenoiser", "DDPM",
]


# --------------------------------------------------------------------------------------------
# Schedules: beta_t for t = 0..T (beta_0 = 0)
# --------------------------------------------------------------------------------------------
def linear_schedule(T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    r""":math:`\beta_t` rising linearly from ``beta_1`` to ``beta_T`` (Ho et al. 2020, for T = 1000):
    float64 ``(T + 1,)`` with ``[0] = 0``."""
    return torch.cat([torch.zeros(1, dtype=torch.float64), torch.linspace(beta_1, beta_T, T, dtype=torch.float64)])


def cosine_schedule(T: int, s: float = 0.008, max_beta: float = 0.2) -> torch.Tensor:
    r""":math:`\bar\alpha_t = f(t)/f(0)`, :math:`f(t) = \cos^2\big(\frac{t/T + s}{1 + s}\frac{\pi}{2}\big)`
    (Nichol & Dhariwal 2021): the same process for every ``T``, only cut into more steps;
    :math:`\beta_t = 1 - \bar\alpha_t/\bar\alpha_{t-1}`, clipped at ``max_beta``. float64 ``(T + 1,)`` with ``[0] = 0``.

    Unclipped, :math:`\beta_T = 1`: the last step destroys everything at once. Nichol & Dhariwal clip
    at 0.999 (with T = 4000); with the course's short chains that leaves :math:`\alpha_T = 0.001`, so
    the first reverse step divides by :math:`\sqrt{\alpha_T} \approx 0.03` and DDIM's first
    prediction of the data by :math:`\sqrt{\bar\alpha_T} \approx 5 \cdot 10^{-4}`, blowing up
    the network's errors (measured on the ring, T = 100: DDIM with 20 deterministic steps reaches
    MMD² 0.40 and 1 mode at 0.999, 0.0085 and all 8 at 0.2). Clipped at 0.2, :math:`\bar\alpha_T`
    is still small for chains of 100 steps or more (0.0026 for T = 100, 2.6e-5 for T = 1000), so
    :math:`L_T` stays near 0; shorter chains keep more of the data (0.17 for T = 10): raise ``max_beta``
    for them."""
    f = torch.cos((torch.arange(T + 1, dtype=torch.float64) / T + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cat([torch.zeros(1, dtype=torch.float64), betas])


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[t]`` for a step per example ``t (B,)``, shaped to broadcast over ``like (B, ...)``."""
    return values.to(like.device)[t].to(like.dtype).reshape(-1, *[1] * (like.dim() - 1))


# --------------------------------------------------------------------------------------------
# The forward process and its posterior
# --------------------------------------------------------------------------------------------
def q_sample(x0: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    r""":math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\varepsilon`: a draw of
    :math:`q(x_t \mid x_0)` for data ``x0 (B, ...)``, steps ``t (B,)`` and noise ``eps`` like ``x0``."""
    ab = _at(alpha_bar, t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def q_posterior(x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, betas: torch.Tensor,
                alpha_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean :math:`\tilde\mu_t` ``(B, ...)`` and variance :math:`\tilde\beta_t` ``(B, 1, ...)`` of
    :math:`q(x_{t-1} \mid x_t, x_0)` for steps ``t (B,)`` in ``1..T``."""
    beta, ab, ab_prev = _at(betas, t, xt), _at(alpha_bar, t, xt), _at(alpha_bar, t - 1, xt)
    mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * xt
    return mean, (1 - ab_prev) / (1 - ab) * beta


def predicted_x0(xt: torch.Tensor, t: torch.Tensor, eps_hat: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    r""":math:`\hat x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\hat\varepsilon)/\sqrt{\bar\alpha_t}`: :func:`q_sample` solved for the data."""
    ab = _at(alpha_bar, t, xt)
    return (xt - (1 - ab).sqrt() * eps_hat) / ab.sqrt()


def reverse_mean(xt: torch.Tensor, t: torch.Tensor, eps_hat: torch.Tensor, betas: torch.Tensor,
                 alpha_bar: torch.Tensor) -> torch.Tensor:
    r""":math:`\mu_\theta = \big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\hat\varepsilon\big)/\sqrt{\alpha_t}`:
    the posterior mean :math:`\tilde\mu_t` with :math:`\hat x_0` (:func:`predicted_x0`) in place of :math:`x_0`."""
    beta, ab = _at(betas, t, xt), _at(alpha_bar, t, xt)
    return (xt - beta / (1 - ab).sqrt() * eps_hat) / (1 - beta).sqrt()


def simple_loss(eps: torch.Tensor, eps_hat: torch.Tensor) -> torch.Tensor:
    r""":math:`\frac{1}{B}\sum_b \|\varepsilon_b - \hat\varepsilon_b\|^2` (summed over the data's dimensions, averaged over the batch)."""
    return (eps - eps_hat).pow(2).flatten(1).sum(1).mean()


# --------------------------------------------------------------------------------------------
# Sampling steps
# --------------------------------------------------------------------------------------------
def ddpm_step(xt: torch.Tensor, t: int, eps_hat: torch.Tensor, betas: torch.Tensor, alpha_bar: torch.Tensor,
              reverse_var: torch.Tensor, z: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""One ancestral step :math:`x_{t-1} = \mu_\theta(x_t, t) + \sigma_t z` (Ho et al.'s Algorithm 2):
    ``reverse_var`` holds :math:`\sigma_t^2` for ``t = 0..T``; at :math:`t = 1` no noise is added (``z`` unused)."""
    steps = torch.full((len(xt),), t, dtype=torch.long, device=xt.device)
    mean = reverse_mean(xt, steps, eps_hat, betas, alpha_bar)
    if t == 1:
        return mean
    return mean + _at(reverse_var, steps, xt).sqrt() * z


def ddim_steps(T: int, n_steps: int) -> list[int]:
    """``n_steps`` steps of ``1..T`` evenly spaced from ``T`` down (to 1 when ``n_steps >= 2``; all of
    them when ``n_steps >= T``); the sampler's last step goes from the last of them to 0."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if n_steps >= T:
        return list(range(T, 0, -1))
    if n_steps == 1:
        return [T]
    return sorted({int(round(v)) for v in torch.linspace(1, T, n_steps, dtype=torch.float64).tolist()}, reverse=True)


def ddim_step(xt: torch.Tensor, t: int, s: int, eps_hat: torch.Tensor, alpha_bar: torch.Tensor, eta: float,
              z: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""One DDIM step from step ``t`` to an earlier step ``s`` (``0 <= s < t``):
    :math:`x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1 - \bar\alpha_s - \sigma^2}\,\hat\varepsilon + \sigma z`,
    :math:`\sigma = \eta \sqrt{\frac{1 - \bar\alpha_s}{1 - \bar\alpha_t}(1 - \frac{\bar\alpha_t}{\bar\alpha_s})}`
    (``z`` is needed only when :math:`\sigma > 0`)."""
    ab_t, ab_s = float(alpha_bar[t]), float(alpha_bar[s])
    sigma = eta * math.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))
    x0_hat = (xt - math.sqrt(1 - ab_t) * eps_hat) / math.sqrt(ab_t)
    out = math.sqrt(ab_s) * x0_hat + math.sqrt(max(1 - ab_s - sigma ** 2, 0.0)) * eps_hat
    return out + sigma * z if sigma > 0 else out


# --------------------------------------------------------------------------------------------
# Denoisers
# --------------------------------------------------------------------------------------------
def time_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    r"""Sinusoidal features of the step (Vaswani et al. 2017): :math:`(\sin(t\omega_k), \cos(t\omega_k))_k`
    with frequencies :math:`\omega_k` geometric from 1 down to ``1/max_period``: ``(B, dim)`` for ``t (B,)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], 1)


class MLPDenoiser(nn.Module):
    r""":math:`\varepsilon_\theta(x_t, t)` for vectors: an MLP on the data concatenated with :func:`time_embedding`."""

    def __init__(self, data_dim: int, hidden: Sequence[int] = (128, 128, 128), emb_dim: int = 32):
        super().__init__()
        self.emb_dim = emb_dim
        self.net = mlp([data_dim + emb_dim, *hidden, data_dim], activation=nn.SiLU)

    def forward(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([xt, time_embedding(t, self.emb_dim).to(xt.dtype)], 1))


class _ResBlock(nn.Module):
    def __init__(self, channels: int, emb_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = nn.GroupNorm(8, channels)
        self.norm2 = nn.GroupNorm(8, channels)
        self.time = nn.Linear(emb_dim, channels)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        u = self.conv1(nn.functional.silu(self.norm1(h))) + self.time(emb)[:, :, None, None]
        return h + self.conv2(nn.functional.silu(self.norm2(u)))


class ConvDenoiser(nn.Module):
    r""":math:`\varepsilon_\theta(x_t, t)` for ``side x side`` images given as vectors ``(B, side * side)``:
    a 3x3 convolution in, residual blocks (GroupNorm, SiLU, 3x3 convolutions, the step's embedding
    added to every channel) at full resolution, and a 3x3 convolution out."""

    def __init__(self, side: int = 8, channels: int = 64, n_blocks: int = 4, emb_dim: int = 64):
        super().__init__()
        self.side, self.emb_dim = side, emb_dim
        self.embed = mlp([emb_dim, emb_dim, emb_dim], activation=nn.SiLU)
        self.inp = nn.Conv2d(1, channels, 3, padding=1)
        self.blocks = nn.ModuleList([_ResBlock(channels, emb_dim) for _ in range(n_blocks)])
        self.out = nn.Sequential(nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.embed(time_embedding(t, self.emb_dim).to(xt.dtype))
        h = self.inp(xt.reshape(-1, 1, self.side, self.side))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h).reshape(xt.shape)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
class DDPM(nn.Module):
    r"""A denoising diffusion probabilistic model (Ho et al. 2020) on vectors ``(B, D)``.

    Args:
        denoiser: a module :math:`\varepsilon_\theta(x_t, t)`, ``(B, D), (B,) -> (B, D)``.
        T: number of steps.
        schedule: ``"cosine"`` (:func:`cosine_schedule`), ``"linear"`` (:func:`linear_schedule`,
            Ho et al.'s endpoints for T = 1000 rescaled by ``1000 / T``) or a tensor of
            :math:`\beta_t`, ``(T + 1,)`` with ``[0] = 0``.
        n_levels: ``None`` for continuous data (the toys); ``K`` for integer levels ``0..K-1``
            (the digits), mapped to :math:`[-1, 1]` inside and decoded by a binned Gaussian, so that
            :meth:`elbo` bounds the probability of the levels.
        reverse_var: :math:`\sigma_t^2` of the reverse steps: ``"beta"`` (:math:`\beta_t`) or ``"posterior"`` (:math:`\tilde\beta_t`).

    ``sample(n, generator=)`` draws by the ancestral chain (``method="ddim"`` with ``n_steps`` and
    ``eta`` for DDIM); ``loss(x)`` is the simplified loss; ``elbo(x)`` the variational bound on
    :math:`\log p(x)` in nats per example (a lower bound, not the log-likelihood).
    """

    def __init__(self, denoiser: nn.Module, data_dim: int, T: int = 1000, schedule="cosine",
                 n_levels: Optional[int] = None, reverse_var: str = "beta"):
        super().__init__()
        if isinstance(schedule, torch.Tensor):
            betas = schedule.double()
        elif schedule == "cosine":
            betas = cosine_schedule(T)
        elif schedule == "linear":
            betas = linear_schedule(T, 1e-4 * 1000 / T, min(0.02 * 1000 / T, 0.999))
        else:
            raise ValueError(f"schedule must be 'cosine', 'linear' or a tensor of betas, got {schedule!r}")
        if betas.shape != (T + 1,) or betas[0] != 0 or not ((betas[1:] > 0) & (betas[1:] < 1)).all():
            raise ValueError(f"betas must have shape ({T + 1},), betas[0] = 0 and 0 < beta_t < 1 for t >= 1")
        if reverse_var not in ("posterior", "beta"):
            raise ValueError(f"reverse_var must be 'posterior' or 'beta', got {reverse_var!r}")
        self.denoiser, self.data_dim, self.T, self.n_levels = denoiser, data_dim, T, n_levels
        alpha_bar = torch.cumprod(1 - betas, 0)
        posterior_var = torch.cat([torch.zeros(1, dtype=torch.float64), (1 - alpha_bar[:-1]) / (1 - alpha_bar[1:]) * betas[1:]])
        self.register_buffer("betas", betas.float())
        self.register_buffer("alpha_bar", alpha_bar.float())
        self.register_buffer("reverse_var", (posterior_var if reverse_var == "posterior" else betas).float())
        self._alpha_bar64 = alpha_bar  # DDIM's square roots of 1 - alpha_bar near 0 need double precision

    # ----------------------------------------------------------------------- data <-> [-1, 1]
    def to_continuous(self, x: torch.Tensor) -> torch.Tensor:
        """Levels ``0..K-1`` to :math:`[-1, 1]` (continuous data unchanged)."""
        if self.n_levels is None:
            return x
        return x.to(self.betas.dtype) * (2.0 / (self.n_levels - 1)) - 1.0

    def to_levels(self, y: torch.Tensor) -> torch.Tensor:
        """The nearest level of values in :math:`[-1, 1]`, clamped to ``0..K-1`` (continuous data unchanged)."""
        if self.n_levels is None:
            return y
        return torch.round((y + 1.0) * ((self.n_levels - 1) / 2.0)).clamp(0, self.n_levels - 1).long()

    def _steps(self, t, like: torch.Tensor) -> torch.Tensor:
        return torch.full((len(like),), t, dtype=torch.long, device=like.device) if isinstance(t, int) else t

    # ----------------------------------------------------------------------- training
    def loss(self, x: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        r""":func:`simple_loss` at a step :math:`t \sim U\{1..T\}` and noise per example."""
        x0 = self.to_continuous(x)
        t = torch.randint(1, self.T + 1, (len(x0),), generator=generator, device=x0.device)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        return simple_loss(eps, self.denoiser(q_sample(x0, t, self.alpha_bar, eps), t))

    # ----------------------------------------------------------------------- the bound
    def decoder_log_prob(self, x: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p_\theta(x_0 \mid x_1)` ``(B,)``: a Gaussian of mean :math:`\mu_\theta(x_1, 1)`
        and variance :math:`\beta_1`, binned to the levels on discrete data."""
        one = self._steps(1, x1)
        mean = reverse_mean(x1, one, self.denoiser(x1, one), self.betas, self.alpha_bar)
        log_var = torch.log(self.betas[1]).to(mean.dtype)
        if self.n_levels is None:
            return gaussian_log_prob(x, mean, log_var)
        half = (self.n_levels - 1) / 2.0  # [-1, 1] -> level units
        return discretized_gaussian_log_prob(x, (mean + 1.0) * half, 0.5 * log_var + math.log(half), self.n_levels)

    def bound_terms(self, x: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        r"""The terms of the negative bound in nats, ``(B, T + 1)``: column 0 is
        :math:`L_0 = -\log p_\theta(x_0 \mid x_1)`, column :math:`t - 1` for :math:`t = 2..T` is
        :math:`L_{t-1}`, column ``T`` is the prior term :math:`L_T`. Each uses its own draw of
        :math:`x_t \sim q(x_t \mid x_0)` (one denoiser pass per step)."""
        x0 = self.to_continuous(x)
        terms = []
        for t in range(1, self.T + 1):
            steps = self._steps(t, x0)
            eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
            xt = q_sample(x0, steps, self.alpha_bar, eps)
            if t == 1:
                terms.append(-self.decoder_log_prob(x, xt))
                continue
            mean_q, var_q = q_posterior(x0, xt, steps, self.betas, self.alpha_bar)
            mean_p = reverse_mean(xt, steps, self.denoiser(xt, steps), self.betas, self.alpha_bar)
            var_p = _at(self.reverse_var, steps, xt)
            terms.append(kl_diag_gaussians(mean_q, var_q.log(), mean_p, var_p.log()))
        ab_T = self.alpha_bar[self.T].to(x0.dtype)
        terms.append(kl_diag_gaussians(ab_T.sqrt() * x0, (1 - ab_T).log(), 0.0, 0.0))
        return torch.stack(terms, 1)

    def elbo(self, x: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        r"""The variational lower bound on :math:`\log p_\theta(x)` ``(B,)`` in nats (one Monte Carlo draw
        per step); on discrete data a bound on the log-probability of the levels."""
        return -self.bound_terms(x, generator=generator).sum(1)

    # ----------------------------------------------------------------------- sampling
    def _noise(self, like: torch.Tensor, generator) -> torch.Tensor:
        return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)

    @torch.no_grad()
    def sample(self, n: int, *, generator: Optional[torch.Generator] = None, method: str = "ddpm",
               n_steps: Optional[int] = None, eta: float = 0.0, x_T: Optional[torch.Tensor] = None,
               return_chain: bool = False):
        r"""``n`` samples: :math:`x_T \sim \mathcal N(0, I)` (or the given ``x_T``), then the reverse chain.

        ``method="ddpm"``: every step by :func:`ddpm_step`. ``method="ddim"``: ``n_steps`` steps
        (:func:`ddim_steps`, default all) by :func:`ddim_step` with ``eta``. Discrete data end at
        the nearest level. With ``return_chain`` also the list of :math:`x_t` visited (continuous),
        :math:`x_T` first.
        """
        device = self.betas.device
        x = (self._noise(torch.empty(n, self.data_dim, device=device, dtype=self.betas.dtype), generator)
             if x_T is None else x_T.to(device))
        chain = [x]
        if method == "ddpm":
            for t in range(self.T, 0, -1):
                eps_hat = self.denoiser(x, self._steps(t, x))
                z = self._noise(x, generator) if t > 1 else None
                x = ddpm_step(x, t, eps_hat, self.betas, self.alpha_bar, self.reverse_var, z)
                chain.append(x)
        elif method == "ddim":
            steps = ddim_steps(self.T, n_steps or self.T)
            for t, s in zip(steps, steps[1:] + [0]):
                eps_hat = self.denoiser(x, self._steps(t, x))
                z = self._noise(x, generator) if eta > 0 and s > 0 else None
                x = ddim_step(x, t, s, eps_hat, self._alpha_bar64, eta, z)
                chain.append(x)
        else:
            raise ValueError(f"method must be 'ddpm' or 'ddim', got {method!r}")
        out = self.to_levels(x)
        return (out, chain) if return_chain else out
