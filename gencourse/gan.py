r"""Generative adversarial networks and Wasserstein GANs.

**The GAN game** (Goodfellow et al., 2014). A generator x = G(z), z ~ N(0, I), and a discriminator
D(x) = \sigma(\ell(x)) \in (0, 1) (``\ell`` its logit) play

.. math:: \min_G \max_D V(D, G) = E_{x \sim p_{data}}[\log D(x)] + E_{z}[\log(1 - D(G(z)))];

the discriminator **ascends** V, i.e. minimises the binary cross-entropy
:func:`discriminator_loss` (real labelled 1, fake 0). For a fixed G the optimum is
:math:`D^*(x) = p_{data}(x) / (p_{data}(x) + p_G(x))` (:func:`optimal_discriminator`), a density
ratio estimator, and there :math:`V(D^*, G) = -\log 4 + 2\,\mathrm{JSD}(p_{data} \| p_G)` with
:math:`\mathrm{JSD}(p \| q) = \tfrac12 \mathrm{KL}(p \| m) + \tfrac12 \mathrm{KL}(q \| m)`, :math:`m = \tfrac12(p + q)`
(:func:`js_divergence`, :func:`value_at_optimum`). The generator minimises
:math:`E \log(1 - D(G(z)))` (**saturating**: its gradient vanishes when D confidently rejects the
fakes) or, in practice, the **non-saturating** :math:`-E \log D(G(z))` (:func:`generator_loss`).

**Wasserstein GANs** (Arjovsky et al., 2017; Gulrajani et al., 2017). By Kantorovich-Rubinstein
duality :math:`W_1(p, q) = \sup_{\|f\|_L \le 1} E_p f - E_q f`; a critic f (unbounded scores)
maximises :math:`E f(x) - E f(G(z))` (:func:`critic_loss_wgan` is its negative) under a Lipschitz
constraint enforced by **weight clipping** (:func:`clip_weights_`) or by the **gradient penalty**
:math:`\lambda\, E_{\hat x}[(\|\nabla_{\hat x} f(\hat x)\|_2 - 1)^2]` on random interpolates
:math:`\hat x = \epsilon x + (1 - \epsilon) G(z)`, :math:`\epsilon \sim U[0, 1]` per sample
(:func:`gradient_penalty`), because the optimal critic has gradient norm 1 on the segments between
coupled points. The generator minimises :math:`-E f(G(z))`.

**One training step** (:meth:`GAN.train_step`, the only place that decides what is detached and which
optimizer steps): ``k`` critic/discriminator updates on fakes drawn without a graph to the
generator, then one generator update through a frozen discriminator.

Models: :class:`GAN` with :func:`mlp_gan` (2-D toys) and :func:`dcgan` (8x8 digits); helpers for the
parallel-lines example (:func:`parallel_lines`, :func:`earth_movers_distance` with POT) and latent
interpolation.

Used by: lectures 07_gans and 08_wgan, assignment a6_gans, ``benchmarks/bench_gan.py``.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import ot  # POT, Python Optimal Transport
import torch
import torch.nn.functional as F
from torch import nn

from .nn import mlp
from .train import ema_update, swap_parameters

__all__ = [
    "discriminator_loss", "generator_loss", "critic_loss_wgan", "generator_loss_wgan", "optimal_discriminator",
    "js_divergence", "value_at_optimum", "gradient_penalty", "clip_weights_", "GAN", "mlp_gan", "dcgan",
    "DCGenerator", "DCDiscriminator", "interpolate", "parallel_lines", "earth_movers_distance", "KINDS",
]

KINDS = ("gan", "wgan-clip", "wgan-gp")


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""-V = -E[\log D(x)] - E[\log(1 - D(G(z)))] from logits: the binary cross-entropy with real
    labelled 1 and fake 0, with \log\sigma(\ell) = -\mathrm{softplus}(-\ell) and
    \log(1 - \sigma(\ell)) = -\mathrm{softplus}(\ell) (stable for any logit). A scalar."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, saturating: bool = False) -> torch.Tensor:
    r"""Non-saturating: -E[\log D(G(z))] = E[\mathrm{softplus}(-\ell)]; saturating (the minimax
    objective itself): E[\log(1 - D(G(z)))] = -E[\mathrm{softplus}(\ell)]. A scalar."""
    if saturating:
        return -F.softplus(fake_logits).mean()
    return F.softplus(-fake_logits).mean()


def critic_loss_wgan(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    r"""-(E f(x) - E f(G(z))): the critic minimises it (ascends the dual objective of W_1)."""
    return fake_scores.mean() - real_scores.mean()


def generator_loss_wgan(fake_scores: torch.Tensor) -> torch.Tensor:
    r"""-E f(G(z))."""
    return -fake_scores.mean()


def optimal_discriminator(log_p_data: torch.Tensor, log_p_model: torch.Tensor) -> torch.Tensor:
    r"""D^*(x) = p_{data}(x) / (p_{data}(x) + p_G(x)) = \sigma(\log p_{data}(x) - \log p_G(x)), from
    log-densities (stable where both are tiny)."""
    return torch.sigmoid(log_p_data - log_p_model)


def js_divergence(log_p: torch.Tensor, log_q: torch.Tensor, cell: float) -> torch.Tensor:
    r"""JSD(p || q) = \tfrac12 KL(p || m) + \tfrac12 KL(q || m), m = \tfrac12 (p + q), in nats, by the
    rectangle rule from log-densities on a regular grid with cells of volume ``cell`` (0 log 0 = 0).
    Between 0 and \log 2."""
    log_m = torch.logaddexp(log_p, log_q) - math.log(2)
    kl_pm = torch.where(log_p > -math.inf, torch.exp(log_p) * (log_p - log_m), torch.zeros_like(log_p))
    kl_qm = torch.where(log_q > -math.inf, torch.exp(log_q) * (log_q - log_m), torch.zeros_like(log_q))
    return 0.5 * (kl_pm.sum() + kl_qm.sum()) * cell


def value_at_optimum(log_p_data: torch.Tensor, log_p_model: torch.Tensor, cell: float) -> torch.Tensor:
    r"""C(G) = V(D^*, G) = E_{data}[\log D^*] + E_{G}[\log(1 - D^*)] by the rectangle rule (equals
    -\log 4 + 2\,JSD)."""
    log_d = F.logsigmoid(log_p_data - log_p_model)
    log_1md = F.logsigmoid(log_p_model - log_p_data)
    terms = (torch.where(log_p_data > -math.inf, torch.exp(log_p_data) * log_d, torch.zeros_like(log_d))
             + torch.where(log_p_model > -math.inf, torch.exp(log_p_model) * log_1md, torch.zeros_like(log_d)))
    return terms.sum() * cell


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor, *,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""E_{\hat x}[(\|\nabla_{\hat x} f(\hat x)\|_2 - 1)^2] on interpolates
    \hat x = \epsilon x + (1 - \epsilon) \tilde x, one \epsilon \sim U[0, 1] per sample; the norm is
    per sample, over all of its dimensions. ``create_graph`` so the penalty trains the critic.
    ``generator`` (on any device) draws the weights."""
    shape = (len(real),) + (1,) * (real.dim() - 1)
    where = generator.device if generator is not None else real.device  # a CPU generator serves data anywhere
    eps = torch.rand(shape, generator=generator, dtype=real.dtype, device=where).to(real.device)
    x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).norm(dim=1)  # (B,): one norm per interpolate
    return ((norms - 1) ** 2).mean()


@torch.no_grad()
def clip_weights_(module: nn.Module, c: float) -> None:
    """Clamp every parameter of ``module`` into [-c, c] in place (WGAN's crude Lipschitz constraint)."""
    for p in module.parameters():
        p.clamp_(-c, c)


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------
class DCGenerator(nn.Module):
    """z (B, Z) -> images (B, 1, 8, 8) in [0, 1]: a linear map to (4C, 2, 2), then two transposed
    convolutions with batch norm (2 -> 4 -> 8), sigmoid output (DCGAN at 8x8)."""

    def __init__(self, noise_dim: int = 16, channels: int = 32):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(noise_dim, 4 * channels * 4), nn.BatchNorm1d(4 * channels * 4), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(4 * channels, 2 * channels, 4, 2, 1), nn.BatchNorm2d(2 * channels), nn.ReLU(),  # 4x4
            nn.ConvTranspose2d(2 * channels, 1, 4, 2, 1))  # 8x8
        self.channels = channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(len(z), 4 * self.channels, 2, 2)
        return torch.sigmoid(self.up(h))


class DCDiscriminator(nn.Module):
    """images (B, 1, 8, 8) -> logits (B,): strided convolutions with leaky ReLUs (8 -> 4 -> 2), a
    linear head. No batch norm, so that the gradient penalty (per sample) stays well defined."""

    def __init__(self, channels: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 4, 2, 1), nn.LeakyReLU(0.2),  # 4x4
            nn.Conv2d(channels, 2 * channels, 4, 2, 1), nn.LeakyReLU(0.2),  # 2x2
            nn.Flatten(), nn.Linear(2 * channels * 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(len(x), 1, 8, 8))[:, 0]


class _Squeeze(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[..., 0]


class GAN(nn.Module):
    r"""A generator, a discriminator (critic) and the objective that binds them.

    Args:
        generator: ``z (B, Z) -> x (B, ...)``; discriminator: ``x -> (B,)`` logits (``"gan"``) or
            scores (WGANs).
        noise_dim: ``Z``.
        kind: ``"gan"`` (binary cross-entropy), ``"wgan-clip"`` (weight clipping at ``clip``) or
            ``"wgan-gp"`` (gradient penalty with weight ``gp_weight``).
        saturating: the generator loss of a ``"gan"``: the minimax one (True) or the non-saturating
            one (False, the default).

    ``sample(n, *, generator=None)`` draws x = G(z) in eval mode; :meth:`critic_loss` and
    :meth:`generator_loss` are the two players' objectives; :meth:`train_step` does one round.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, noise_dim: int, kind: str = "gan", *,
                 saturating: bool = False, clip: float = 0.01, gp_weight: float = 10.0):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.generator, self.discriminator = generator, discriminator
        self.noise_dim, self.kind, self.saturating, self.clip, self.gp_weight = noise_dim, kind, saturating, clip, gp_weight

    def _ref(self) -> torch.Tensor:
        return next(self.generator.parameters())

    def noise(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        ref = self._ref()
        return torch.randn(n, self.noise_dim, generator=generator, dtype=ref.dtype, device=ref.device)

    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        was_training = self.generator.training
        self.generator.eval()
        with torch.no_grad():
            x = self.generator(self.noise(n, generator))
        self.generator.train(was_training)
        return x

    def critic_loss(self, real: torch.Tensor, fake: torch.Tensor, *,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The discriminator's (critic's) loss on a real batch and a fake batch (fakes as given: the
        caller decides whether they carry a graph to the generator); ``generator`` draws the
        penalty's interpolation weights (WGAN-GP)."""
        real_out, fake_out = self.discriminator(real), self.discriminator(fake)
        if self.kind == "gan":
            return discriminator_loss(real_out, fake_out)
        loss = critic_loss_wgan(real_out, fake_out)
        if self.kind == "wgan-gp":
            loss = loss + self.gp_weight * gradient_penalty(self.discriminator, real, fake, generator=generator)
        return loss

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        out = self.discriminator(fake)
        if self.kind == "gan":
            return generator_loss(out, self.saturating)
        return generator_loss_wgan(out)

    # The three hooks a model with more players than G and D overrides (gencourse.ali.ALI):
    def discriminator_inputs(self, real: torch.Tensor, z: torch.Tensor, *,
                             generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """What the discriminator tells apart: ``(x, G(z))``."""
        return real, self.generator(z)

    def players_loss(self, real_in: torch.Tensor, fake_in: torch.Tensor) -> torch.Tensor:
        """The loss of the generator's side (the real inputs carry no parameter of G: unused)."""
        return self.generator_loss(fake_in)

    def generator_parameters(self):
        """What the generator's optimizer steps."""
        return self.generator.parameters()

    def train_step(self, reals: Sequence[torch.Tensor], opt_d: torch.optim.Optimizer, opt_g: torch.optim.Optimizer,
                   *, noises: Optional[Sequence[torch.Tensor]] = None,
                   generator: Optional[torch.Generator] = None) -> tuple[float, float]:
        """``k = len(reals)`` discriminator steps (one per real batch, on fakes drawn without a graph to
        G), then one generator step through the discriminator with its gradients discarded (only
        ``opt_g`` steps). ``noises``: the ``k + 1`` noise batches to use (the last for the generator
        step); else they are drawn from ``generator`` (as is the penalty's interpolation weight).
        Returns the last discriminator loss and the generator loss."""
        k = len(reals)
        if noises is not None and len(noises) != k + 1:
            raise ValueError(f"noises: expected k + 1 = {k + 1} batches (k discriminator steps, one generator step), "
                             f"got {len(noises)}")
        def noise(i: int, n: int) -> torch.Tensor:
            return noises[i] if noises is not None else self.noise(n, generator)
        self.discriminator.requires_grad_(True)
        for i, real in enumerate(reals):
            with torch.no_grad():  # the discriminator step must not reach the generator
                real_in, fake_in = self.discriminator_inputs(real, noise(i, len(real)), generator=generator)
            d_loss = self.critic_loss(real_in, fake_in, generator=generator)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            if self.kind == "wgan-clip":
                clip_weights_(self.discriminator, self.clip)
        self.discriminator.requires_grad_(False)  # the generator step must not change the discriminator
        real_in, fake_in = self.discriminator_inputs(reals[-1], noise(k, len(reals[-1])), generator=generator)
        g_loss = self.players_loss(real_in, fake_in)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        self.discriminator.requires_grad_(True)
        return float(d_loss.detach()), float(g_loss.detach())

    def fit(self, x: torch.Tensor, *, steps: int = 1000, k: int = 1, batch_size: int = 128, lr_d: float = 2e-4,
            lr_g: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), seed: int = 0, ema: Optional[float] = None,
            callback: Optional[Callable[[int, "GAN"], None]] = None) -> dict:
        """Train for a fixed number of generator ``steps`` (each after ``k`` discriminator steps) with
        Adam (WGAN-clip: RMSprop, as in the paper). ``seed`` fixes the batches, the noise and the
        penalty's interpolation weights (the parameters are the caller's: seed before building the
        model). Returns the per-step losses ``{"d": [...], "g": [...]}``;
        ``callback(step, model)`` runs after every step (snapshots for pictures).

        ``ema``: keep an exponential moving average of the generator's parameters,
        ``avg <- ema * avg + (1 - ema) * theta`` after every step, and end with the generator holding
        it (Polyak averaging: the iterates of the game circle around a good point; their average sits
        closer to it). ``None``: the last iterate. The callback sees the iterates, not the average."""
        if self.kind == "wgan-clip":
            opt_d = torch.optim.RMSprop(self.discriminator.parameters(), lr=lr_d)
            opt_g = torch.optim.RMSprop(self.generator_parameters(), lr=lr_g)
        else:
            opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr_d, betas=betas)
            opt_g = torch.optim.Adam(self.generator_parameters(), lr=lr_g, betas=betas)
        gen = torch.Generator().manual_seed(seed)  # the batches
        device = self._ref().device
        noise_gen = torch.Generator(device).manual_seed(seed + 1)  # the noise and the penalty's weights
        x = x.to(device)
        history = {"d": [], "g": []}
        params = list(self.generator_parameters())
        average = [p.detach().clone() for p in params] if ema is not None else None
        self.train()
        for step in range(steps):
            reals = [x[torch.randint(len(x), (batch_size,), generator=gen)] for _ in range(k)]
            d, g = self.train_step(reals, opt_d, opt_g, generator=noise_gen)
            history["d"].append(d)
            history["g"].append(g)
            if average is not None:
                ema_update(average, params, ema)
            if callback is not None:
                callback(step, self)
        if average is not None:
            swap_parameters(average, params)
        self.eval()
        return history


def mlp_gan(data_dim: int = 2, noise_dim: int = 2, hidden: int = 128, depth: int = 3, kind: str = "gan",
            **kwargs) -> GAN:
    """An MLP generator and discriminator (ReLU and leaky ReLU, ``depth`` hidden layers) for 2-D toys."""
    g = mlp([noise_dim, *[hidden] * depth, data_dim])
    d = _Squeeze(mlp([data_dim, *[hidden] * depth, 1], activation=lambda: nn.LeakyReLU(0.2)))
    return GAN(g, d, noise_dim, kind, **kwargs)


def dcgan(noise_dim: int = 16, channels: int = 32, kind: str = "gan", **kwargs) -> GAN:
    """The DCGAN-style pair for 8x8 digits in [0, 1] (``load_digits(kind="float", image=True)``)."""
    return GAN(DCGenerator(noise_dim, channels), DCDiscriminator(channels), noise_dim, kind, **kwargs)


# --------------------------------------------------------------------------------------------
# Latent space and optimal transport
# --------------------------------------------------------------------------------------------
def interpolate(z0: torch.Tensor, z1: torch.Tensor, n: int, spherical: bool = False) -> torch.Tensor:
    r"""``n`` points from ``z0`` to ``z1`` (each ``(Z,)``): linear, or along the great circle
    (slerp, which keeps the norm typical of a Gaussian draw): ``(n, Z)``."""
    t = torch.linspace(0, 1, n, dtype=z0.dtype, device=z0.device)[:, None]
    if not spherical:
        return (1 - t) * z0 + t * z1
    omega = torch.arccos(torch.clamp(F.cosine_similarity(z0, z1, dim=0), -1 + 1e-7, 1 - 1e-7))
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def parallel_lines(theta: float, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``n`` points of P_theta: (theta, u), u ~ U[0, 1] (Arjovsky et al.'s parallel lines): ``(n, 2)``."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.stack([torch.full_like(u, theta), u], 1)


def earth_movers_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    r"""The exact W_1 between two empirical distributions with uniform weights (Euclidean ground cost),
    :math:`\min_{\gamma \in \Pi} \sum_{ij} \gamma_{ij} \|x_i - y_j\|`, solved by POT's network simplex
    (``ot.emd2``)."""
    a = torch.full((len(x),), 1.0 / len(x), dtype=torch.float64).numpy()
    b = torch.full((len(y),), 1.0 / len(y), dtype=torch.float64).numpy()
    cost = torch.cdist(x.double(), y.double()).numpy()
    return float(ot.emd2(a, b, cost))
