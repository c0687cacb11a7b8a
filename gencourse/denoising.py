r"""Generalized denoising autoencoders as generative models, and walkback training
(Bengio, Yao, Alain & Vincent, 2013; the generative stochastic network view of Bengio et al., 2014).

A **corruption process** :math:`C(\tilde x \mid x)` (here Gaussian, :math:`\tilde x = x + \sigma\epsilon`,
or salt-and-pepper for binary data) and a **learned reconstruction distribution**
:math:`P_\theta(x \mid \tilde x)` (a diagonal Gaussian whose mean and log-variance an MLP computes from
:math:`\tilde x`; a Bernoulli for binary data) are trained by maximum likelihood on the pairs
(clean point, its corruption):

.. math::
   \mathcal L(\theta) = -\,\mathbb E_{x \sim \mathcal P(x)}\,
       \mathbb E_{\tilde x \sim C(\tilde x \mid x)} \log P_\theta(x \mid \tilde x).

The optimum is the true posterior of the clean point given its corruption,
:math:`P_\theta(x \mid \tilde x) = \mathcal P(x \mid \tilde x) \propto \mathcal P(x)\, C(\tilde x \mid x)`.

**The GSN view: the autoencoder is a Markov transition operator.** Alternate corruption and
denoising,

.. math::
   \tilde x_t \sim C(\tilde x \mid x_t), \qquad x_{t+1} \sim P_\theta(x \mid \tilde x_t).

With the optimal :math:`P_\theta` this is exactly Gibbs sampling of the joint
:math:`\mathcal P(x)\, C(\tilde x \mid x)` (its two conditionals, one after the other), so the data
distribution :math:`\mathcal P(x)` is a stationary distribution of the chain. Bengio et al. (2013,
Theorem 1) show the converse in the form a learner needs: if :math:`P_\theta(x \mid \tilde x)` is a
consistent estimator of :math:`\mathcal P(x \mid \tilde x)` and the chain is ergodic (the noise
must be "big enough" for the chain to mix between modes), the stationary distribution
:math:`\pi_\theta` of the learned chain is a consistent estimator of :math:`\mathcal P(x)`. The
autoencoder never writes down a density: it learns a *local*, nearly unimodal conditional (easy)
whose stationary distribution is the complicated global one (hard).

**Why plain training leaves spurious modes.** The loss only ever evaluates
:math:`P_\theta(\cdot \mid \tilde x)` at corruptions :math:`\tilde x` of training points, i.e. within
a few :math:`\sigma` of the data. Far from the data (between the modes, or far outside them, where
a chain started from a broad distribution begins) no training pair exists, so the learned operator
is arbitrary there: its mean may point anywhere, even at itself, and the chain can get stuck in
such a *spurious mode* that holds probability mass under :math:`\pi_\theta` but none under
:math:`\mathcal P`, or drift that piles the chains into a few of the data's modes. With a finite
network and finite data this is what happens in practice. On the 2-D ring of 8 modes
(``data.ring(std=0.1)``, :math:`\sigma = 0.2`), the midpoints between modes are :math:`3.8\sigma` from
every mode; the plain chain keeps finding the ring from a broad start, but the untrained operator
between the modes funnels the chains into one or two modes (one of them collects up to 2/3 of them,
stably from step 300 to 1500): a stationary distribution with spurious mode weights.

**Walkback** (Bengio et al., 2013, Algorithm 2) trains the operator *where the chain itself goes*:
from the corruption :math:`\tilde x^{(0)}` of a training point :math:`x`, walk the chain,

.. math::
   x^{*(j)} \sim P_\theta(x \mid \tilde x^{(j-1)})\ \text{(no gradient through the draw)}, \qquad
   \tilde x^{(j)} \sim C(\tilde x \mid x^{*(j)}), \qquad j = 1, 2, \dots

and use every visited :math:`(x, \tilde x^{(j)})` as one more training pair: reconstruct the
ORIGINAL :math:`x`. The points the chain wanders to, including the beginnings of spurious
attractors, then learn to lead back to the data. The paper continues the walk with probability
:math:`p` after each step (a geometric number of steps, :math:`p = 1/2` in its experiments); the
released GSN code (yaoli/GSN) walks a fixed number of steps and adds up the reconstruction costs
of every step. :class:`GeneralizedDAE` does both: at most
``walkback`` extra steps, each taken with probability ``walkback_prob`` (per example; ``1.0`` gives
the fixed number). All the pairs of a batch are then averaged, each counted once:

.. math::
   \mathcal L_{\text{walkback}} = -\frac{1}{\sum_b (1 + K_b)} \sum_b \sum_{j=0}^{K_b}
       \log P_\theta\big(x_b \mid \tilde x_b^{(j)}\big), \qquad K_b \le k \text{ extra steps of example } b.

The paper's argument that walkback keeps the chain consistent assumes that :math:`P_\theta` can
represent the posterior of :math:`x` given a *walked* corruption: a walk that crosses between modes makes that posterior multimodal, and the
unimodal Gaussian then blurs the samples (on the ring above walkback evens out the mode weights but
widens each mode; with :math:`\sigma` comparable to the mode spacing it does more harm than good).
Keep :math:`\sigma` and the number of walkback steps small compared with the gaps between modes.

Functions return per-example values ``(B,)``; only ``loss`` averages over the batch.

Used by: lecture 06 (denoising chains with and without walkback, spurious modes, trajectories from
:meth:`GeneralizedDAE.chain`); the diffusion lecture (to come) starts from these chains.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

from .distributions import bernoulli_log_prob, bernoulli_sample, gaussian_log_prob, gaussian_sample
from .nn import mlp

__all__ = ["gaussian_corruption", "salt_and_pepper_corruption", "GeneralizedDAE", "BinaryGeneralizedDAE",
           "LOG_VAR_MIN", "LOG_VAR_MAX"]

#: Bounds of the reconstruction log-variance (std from 0.0067 to 7.4, for data of unit scale): far
#: from the data the network extrapolates linearly and an unbounded variance would let a chain
#: explode numerically. Inside the bounds the model is the paper's.
LOG_VAR_MIN, LOG_VAR_MAX = -10.0, 4.0


# --------------------------------------------------------------------------------------------
# Corruption processes C(x_tilde | x)
# --------------------------------------------------------------------------------------------
def gaussian_corruption(x: torch.Tensor, sigma: float, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""\tilde x = x + \sigma \epsilon, \epsilon ~ N(0, I): C(\tilde x | x) = N(\tilde x; x, \sigma^2 I).

    Args:
        x: ``(..., D)`` clean points; sigma: the noise standard deviation (data units).

    Returns:
        ``(..., D)`` corrupted points, drawn with ``generator``.
    """
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)  # (..., D)
    return x + sigma * eps


def salt_and_pepper_corruption(x: torch.Tensor, p: float, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""Binary corruption: each component is, with probability ``p``, replaced by a fair coin flip.

    .. math:: \tilde x_d = (1 - m_d)\, x_d + m_d\, c_d, \quad m_d \sim \mathrm{Bern}(p),\ c_d \sim \mathrm{Bern}(1/2),

    so a component is flipped with probability ``p / 2`` (the "salt-and-pepper" noise of the GSN
    experiments on binarized MNIST, ``p = 0.4`` there).

    Args:
        x: ``(..., D)`` 0/1 floats.

    Returns:
        ``(..., D)`` 0/1 floats of ``x``'s dtype.
    """
    mask = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) < p  # m
    coin = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) < 0.5  # c
    return torch.where(mask, coin.to(x.dtype), x)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
class GeneralizedDAE(nn.Module):
    r"""A generalized denoising autoencoder: :math:`C(\tilde x \mid x) = N(x, \sigma^2 I)` and a learned
    :math:`P_\theta(x \mid \tilde x) = N(x; \mu_\theta(\tilde x), \operatorname{diag} \exp(\log\sigma^2_\theta(\tilde x)))`.

    .. math::
       \text{loss} = -\operatorname{mean}_{\text{pairs}} \log P_\theta(x \mid \tilde x^{(j)}),\quad
       \tilde x^{(0)} \sim C(\cdot \mid x),\quad
       \tilde x^{(j)} \sim C(\cdot \mid x^{*(j)}),\ x^{*(j)} \sim P_\theta(\cdot \mid \tilde x^{(j-1)}).

    Sampling runs the chain :math:`x_{t+1} \sim P_\theta(x \mid \tilde x_t),\ \tilde x_t \sim C(\tilde x \mid x_t)`
    from a broad initial distribution :math:`x_0 \sim N(m, \mathrm{diag}(s\, v)^2)`: ``m`` and ``v``
    are the per-dimension mean and standard deviation of the data, ``s = init_spread`` (default 2:
    wider than the data, so chains must *find* the data, and spurious modes show).

    Args:
        data_dim: ``D``.
        hidden: hidden widths of the MLP :math:`\tilde x \mapsto (\mu, \log\sigma^2)`.
        sigma: the corruption's standard deviation.
        walkback: ``k``, the most extra walkback steps per training point (0: plain training).
        walkback_prob: ``p``, the probability of taking each further step (the paper's geometric
            walk, ``p = 1/2``); ``1.0`` always takes ``k`` steps (the GSN code).
        data_mean, data_std: the data's location and scale (numbers or ``(D,)``) for the initial
            distribution of the chain. ``None``: measured on the FIRST batch :meth:`loss` sees in
            training mode and frozen afterwards (deterministic: :func:`gencourse.train.fit`
            shuffles with a seeded generator); until then 0 and 1.
        init_spread: ``s`` above.
        n_steps: the default length of the chain in :meth:`sample`.
        activation: the MLP's nonlinearity. SiLU (smooth, as in the denoisers of diffusion models) by
            default: on the 2-D ring, walkback repaired the plain chain's mode weights on every seed
            tried with SiLU, on 2 of 6 with ReLU (numbers in tests/test_denoising.py).

    Departures from the paper: the reconstruction log-variance is clamped to
    ``[LOG_VAR_MIN, LOG_VAR_MAX]``; nothing else.
    """

    def __init__(self, data_dim: int, hidden: Sequence[int] = (128, 128), sigma: float = 0.5,
                 walkback: int = 0, walkback_prob: float = 0.5,
                 data_mean: Union[float, torch.Tensor, None] = None, data_std: Union[float, torch.Tensor, None] = None,
                 init_spread: float = 2.0, n_steps: int = 100, activation: Callable[[], nn.Module] = nn.SiLU):
        super().__init__()
        if walkback < 0 or not 0.0 <= walkback_prob <= 1.0:
            raise ValueError(f"need walkback >= 0 and 0 <= walkback_prob <= 1, got {walkback}, {walkback_prob}")
        self.data_dim, self.sigma = data_dim, float(sigma)
        self.walkback, self.walkback_prob = int(walkback), float(walkback_prob)
        self.init_spread, self.n_steps = float(init_spread), int(n_steps)
        self.net = self._make_net(data_dim, list(hidden), activation)
        given = data_mean is not None or data_std is not None
        mean = torch.zeros(data_dim) + torch.as_tensor(0.0 if data_mean is None else data_mean, dtype=torch.float32)
        std = torch.zeros(data_dim) + torch.as_tensor(1.0 if data_std is None else data_std, dtype=torch.float32)
        self.register_buffer("data_mean", mean)  # (D,)
        self.register_buffer("data_std", std)  # (D,)
        self.register_buffer("scale_set", torch.tensor(given))  # measured (or given) yet?

    # ---------------------------------------------------------------- the two conditionals
    def _make_net(self, data_dim: int, hidden: list, activation: Callable[[], nn.Module]) -> nn.Module:
        return mlp([data_dim, *hidden, 2 * data_dim], activation)  # x~ -> (mu, log sigma^2)

    def corrupt(self, x: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        r"""\tilde x ~ C(\tilde x | x), ``(B, D) -> (B, D)``."""
        return gaussian_corruption(x, self.sigma, generator=generator)

    def reconstruction_params(self, x_tilde: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The mean and log-variance of :math:`P_\theta(x \mid \tilde x)`, each ``(B, D)``."""
        mean, log_var = self.net(x_tilde).chunk(2, dim=-1)  # (B, D), (B, D)
        return mean, log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX)

    def log_prob_reconstruction(self, x: torch.Tensor, x_tilde: torch.Tensor) -> torch.Tensor:
        r""":math:`\log P_\theta(x \mid \tilde x)` in nats, ``(B,)``."""
        mean, log_var = self.reconstruction_params(x_tilde)
        return gaussian_log_prob(x, mean, log_var)  # sum over the D dimensions

    def sample_reconstruction(self, x_tilde: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        r""":math:`x \sim P_\theta(x \mid \tilde x)`, ``(B, D)``."""
        mean, log_var = self.reconstruction_params(x_tilde)
        return gaussian_sample(mean, log_var, generator=generator)

    def initial_sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        r"""x_0 ~ N(m, diag(s v)^2), the chain's broad starting distribution, ``(n, D)``."""
        eps = torch.randn(n, self.data_dim, generator=generator, dtype=self.data_mean.dtype,
                          device=self.data_mean.device)  # (n, D)
        return self.data_mean + self.init_spread * self.data_std * eps

    # ---------------------------------------------------------------- training
    @torch.no_grad()
    def _measure_scale(self, x: torch.Tensor) -> None:
        """Store the first training batch's per-dimension mean and std (once)."""
        if bool(self.scale_set) or not self.training:
            return
        self.data_mean.copy_(x.mean(0))
        self.data_std.copy_(x.std(0, unbiased=False).clamp_min(1e-3) if len(x) > 1 else torch.ones_like(self.data_std))
        self.scale_set.fill_(True)

    def loss(self, x: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        r"""-mean over all training pairs of :math:`\log P_\theta(x \mid \tilde x^{(j)})`: plain (j = 0) and walkback.

        Args:
            x: ``(B, D)`` clean training points.
            generator: for the corruptions, the walkback draws and the continuation coins.

        Returns:
            A scalar (nats per pair).
        """
        self._measure_scale(x)
        x_tilde = self.corrupt(x, generator=generator)  # \tilde x^{(0)} ~ C(. | x), (B, D)
        total = -self.log_prob_reconstruction(x, x_tilde).sum()  # the ordinary DAE pairs
        count = x.new_tensor(float(len(x)))
        alive = torch.ones(len(x), dtype=torch.bool, device=x.device)  # (B,) still walking
        for _ in range(self.walkback):
            coin = torch.rand(len(x), generator=generator, dtype=x.dtype, device=x.device)  # (B,)
            alive = alive & (coin < self.walkback_prob)  # continue with probability p
            if not bool(alive.any()):
                break
            with torch.no_grad():
                x_star = self.sample_reconstruction(x_tilde, generator=generator)  # x* ~ P(x | x~), no gradient
            x_tilde = self.corrupt(x_star, generator=generator)  # \tilde x^{(j)} ~ C(. | x*)
            nll = -self.log_prob_reconstruction(x, x_tilde)  # reconstruct the ORIGINAL x, (B,)
            total = total + (nll * alive).sum()
            count = count + alive.sum()
        return total / count

    # ---------------------------------------------------------------- the Markov chain
    @torch.no_grad()
    def chain(self, x0: torch.Tensor, n_steps: int, *, generator: Optional[torch.Generator] = None,
              return_corrupted: bool = False):
        r"""The trajectory :math:`x_0, x_1, \dots, x_T` of :math:`x_{t+1} \sim P_\theta(x \mid \tilde x_t),\ \tilde x_t \sim C(\tilde x \mid x_t)`.

        Args:
            x0: ``(n, D)`` starting points.
            n_steps: ``T``.
            return_corrupted: also return the corrupted points \tilde x_0 .. \tilde x_{T-1}.

        Returns:
            ``(T + 1, n, D)`` with ``x0`` first (and ``(T, n, D)`` corrupted points when asked):
            ``traj[:, i]`` is the path of chain ``i``, ready for ``plt.plot(traj[:, i, 0], traj[:, i, 1])``.
        """
        xs, x_tildes, x = [x0], [], x0
        for _ in range(n_steps):
            x_tilde = self.corrupt(x, generator=generator)  # (n, D)
            x = self.sample_reconstruction(x_tilde, generator=generator)  # (n, D)
            xs.append(x)
            x_tildes.append(x_tilde)
        traj = torch.stack(xs)  # (T + 1, n, D)
        if return_corrupted:
            return traj, (torch.stack(x_tildes) if x_tildes else x0.new_empty(0, *x0.shape))
        return traj

    @torch.no_grad()
    def sample(self, n: int, *, generator: Optional[torch.Generator] = None, n_steps: Optional[int] = None,
               init: Optional[torch.Tensor] = None) -> torch.Tensor:
        r"""``n`` draws ``(n, D)``: the last state of the chain after ``n_steps`` steps (default
        ``self.n_steps``), started from ``init (n, D)`` or from :meth:`initial_sample`."""
        x0 = self.initial_sample(n, generator=generator) if init is None else init
        n_steps = self.n_steps if n_steps is None else n_steps
        x = x0
        for _ in range(n_steps):  # the same chain as :meth:`chain`, without storing the path
            x = self.sample_reconstruction(self.corrupt(x, generator=generator), generator=generator)
        return x


class BinaryGeneralizedDAE(GeneralizedDAE):
    r"""The binary-data version: salt-and-pepper :math:`C(\tilde x \mid x)` and a factorised Bernoulli
    :math:`P_\theta(x \mid \tilde x) = \prod_d \mathrm{Bern}(x_d; \sigma(l_\theta(\tilde x)_d))`.

    ``sigma`` is the salt-and-pepper probability ``p`` of :func:`salt_and_pepper_corruption`; the
    chain starts from fair coin flips (``data_mean``, ``data_std`` and ``init_spread`` are unused).
    Everything else (walkback, the chain) is inherited from :class:`GeneralizedDAE`.
    """

    def __init__(self, data_dim: int, hidden: Sequence[int] = (128, 128), sigma: float = 0.4,
                 walkback: int = 0, walkback_prob: float = 0.5, n_steps: int = 100,
                 activation: Callable[[], nn.Module] = nn.SiLU):
        super().__init__(data_dim, hidden, sigma, walkback, walkback_prob, data_mean=0.5, data_std=0.5,
                         n_steps=n_steps, activation=activation)

    def _make_net(self, data_dim: int, hidden: list, activation: Callable[[], nn.Module]) -> nn.Module:
        return mlp([data_dim, *hidden, data_dim], activation)  # x~ -> logits

    def corrupt(self, x: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return salt_and_pepper_corruption(x, self.sigma, generator=generator)

    def reconstruction_logits(self, x_tilde: torch.Tensor) -> torch.Tensor:
        r"""The logits of :math:`P_\theta(x \mid \tilde x)`, ``(B, D)``."""
        return self.net(x_tilde)

    def reconstruction_params(self, x_tilde: torch.Tensor):
        raise NotImplementedError("a Bernoulli reconstruction has logits: use reconstruction_logits")

    def log_prob_reconstruction(self, x: torch.Tensor, x_tilde: torch.Tensor) -> torch.Tensor:
        return bernoulli_log_prob(x, self.reconstruction_logits(x_tilde))

    def sample_reconstruction(self, x_tilde: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return bernoulli_sample(self.reconstruction_logits(x_tilde), generator=generator)

    def initial_sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        u = torch.rand(n, self.data_dim, generator=generator, dtype=self.data_mean.dtype, device=self.data_mean.device)
        return (u < 0.5).to(u.dtype)  # (n, D) fair coins
