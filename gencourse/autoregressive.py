r"""Autoregressive models: the chain rule of probability, made into neural networks.

Any joint distribution over :math:`D` variables factorises, for ANY ordering :math:`\pi`, as

.. math::  p(x) = \prod_{i=1}^{D} p\big(x_{\pi(i)} \mid x_{\pi(1)}, \dots, x_{\pi(i-1)}\big),

so :math:`\log p(x) = \sum_i \log p(x_{\pi(i)} \mid x_{\pi(<i)})`. An autoregressive model
parametrises every conditional with a network that may only look at the earlier variables; the
likelihood is then exact and maximum likelihood is plain minimisation of :math:`-\log p(x)`.

This module holds

* exact chain-rule factors of a small tabulated joint (:func:`chain_rule_factors`,
  :func:`chain_rule_log_prob`);
* per-dimension output distributions, all in log space: Bernoulli, categorical, Gaussian and
  discretized logistic (:func:`discretized_logistic_log_prob`), and
  :func:`chain_rule_log_likelihood` that sums the conditionals;
* MADE masks from degrees (:func:`made_degrees`, :func:`made_masks`);
* models sharing one interface (``log_prob(x) -> (B,)`` in nats, ``loss(x)`` = mean NLL,
  ``sample(n, seed)``): :class:`FVSBN` (logistic-regression conditionals), :class:`NADE`
  (shared weights), :class:`MADE` (masked MLP, several orderings), :class:`RecurrentAR` (a GRU or
  LSTM trained with teacher forcing) and :class:`CausalConvAR` (WaveNet-style causal 1-D
  convolutions over a local window).

Data conventions: ``x`` is ``(B, D)``; with ``n_levels = K`` the entries are integers
``0..K-1`` (floats 0/1 are fine for ``K = 2``). Networks see ``x / (K - 1)`` in [0, 1].
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "OUTPUTS", "n_params_per_dim",
    "chain_rule_factors", "chain_rule_log_prob",
    "bernoulli_log_prob", "categorical_log_prob", "gaussian_log_prob",
    "discretized_logistic_log_prob", "output_log_prob", "output_sample",
    "chain_rule_log_likelihood",
    "made_degrees", "made_masks", "MaskedLinear",
    "AutoregressiveModel", "FVSBN", "NADE", "MADE", "RecurrentAR", "CausalConvAR",
]

#: Output distributions of one dimension given its parameters.
OUTPUTS = ("bernoulli", "categorical", "gaussian", "logistic")
#: A log-scale is clamped below at this value so that a scale never collapses to 0.
MIN_LOG_SCALE = -7.0


# --------------------------------------------------------------------------------------------
# The chain rule on a small tabulated joint
# --------------------------------------------------------------------------------------------
def chain_rule_factors(joint: torch.Tensor, order: Sequence[int]) -> list[torch.Tensor]:
    r"""Conditional tables :math:`p(x_{\pi(i)} \mid x_{\pi(<i)})` of a tabulated joint.

    .. math:: p(x_{\pi(i)} \mid x_{\pi(<i)}) = \frac{p(x_{\pi(1)},\dots,x_{\pi(i)})}
              {p(x_{\pi(1)},\dots,x_{\pi(i-1)})}, \quad \text{marginals by summing the rest out.}

    Args:
        joint: probabilities ``(K_0, ..., K_{D-1})`` summing to 1, one axis per variable.
        order: a permutation ``pi`` of ``range(D)``.

    Returns:
        ``D`` tables; table ``i`` has shape ``(K_{pi[0]}, ..., K_{pi[i]})`` (axes in the order
        ``pi``) and sums to 1 over its last axis wherever the conditioning event has mass
        (where it has none the table is set to uniform, a convention: any choice is valid).
    """
    order = list(order)
    d = joint.dim()
    if sorted(order) != list(range(d)):
        raise ValueError(f"order must be a permutation of range({d}), got {order}")
    p = joint.double().permute(order)  # axes now in the order pi
    factors, prev = [], None
    for i in range(d):
        marg = p.sum(dim=tuple(range(i + 1, d))) if i + 1 < d else p  # (K_pi0, ..., K_pii)
        if prev is None:
            cond = marg
        else:
            denom = prev.unsqueeze(-1)
            cond = torch.where(denom > 0, marg / denom.clamp_min(1e-300),
                               torch.full_like(marg, 1.0 / marg.shape[-1]))
        factors.append(cond)
        prev = marg
    return factors


def chain_rule_log_prob(joint: torch.Tensor, x: torch.Tensor, order: Sequence[int]) -> torch.Tensor:
    r"""Log-probability of ``x`` as a SUM of log conditionals along ``order``.

    .. math:: \log p(x) = \sum_i \log p(x_{\pi(i)} \mid x_{\pi(<i)})

    Args:
        joint: probabilities ``(K_0, ..., K_{D-1})``.
        x: integer configurations ``(B, D)`` (column ``j`` indexes axis ``j`` of ``joint``).
        order: a permutation of ``range(D)``.

    Returns:
        ``(B,)`` log-probabilities in nats (float64).
    """
    order = list(order)
    x = torch.as_tensor(x).long()
    xs = x[:, order]  # (B, D), columns in the order pi
    total = torch.zeros(len(x), dtype=torch.float64)
    for i, table in enumerate(chain_rule_factors(joint, order)):
        total = total + torch.log(table[tuple(xs[:, : i + 1].T)])  # log p(x_pi(i) | x_pi(<i))
    return total


# --------------------------------------------------------------------------------------------
# Output distributions of one dimension (all return per-dimension log-probabilities)
# --------------------------------------------------------------------------------------------
def n_params_per_dim(output: str, n_levels: int) -> int:
    """How many numbers the network emits per dimension for an output distribution."""
    return {"bernoulli": 1, "categorical": n_levels, "gaussian": 2, "logistic": 2}[output]


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r"""``log Bernoulli(x; sigmoid(l)) = x l - softplus(l)`` elementwise (log space, stable)."""
    x = x.to(logits.dtype)
    return x * logits - F.softplus(logits)


def categorical_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r"""``log softmax(l)[x]``: logits ``(..., K)``, integer ``x`` ``(...)`` -> ``(...)``."""
    return torch.log_softmax(logits, dim=-1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    r"""``log N(x; mu, s^2) = -(x-mu)^2 / (2 s^2) - log s - log(2 pi) / 2`` elementwise (a DENSITY)."""
    log_scale = log_scale.clamp_min(MIN_LOG_SCALE)
    z = (x - mean) * torch.exp(-log_scale)
    return -0.5 * z ** 2 - log_scale - 0.5 * math.log(2 * math.pi)


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(a))`` for ``a <= 0``, accurate everywhere (Maechler's two branches)."""
    a = a.clamp_max(-1e-30)
    return torch.where(a > -math.log(2), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                                  n_levels: int) -> torch.Tensor:
    r"""Probability of integer level ``x`` under a logistic binned to ``n_levels`` levels.

    .. math:: P(x = k) = \sigma\!\left(\tfrac{k + 1/2 - \mu}{s}\right)
                        - \sigma\!\left(\tfrac{k - 1/2 - \mu}{s}\right),

    with the first bin extended to :math:`-\infty` and the last to :math:`+\infty`, so the
    probabilities of the levels ``0..K-1`` sum to exactly 1 (the sum telescopes).

    Args:
        x: integer levels in ``0..n_levels-1`` (any shape).
        mean, log_scale: logistic location and log-scale in LEVEL units, broadcastable to ``x``.
        n_levels: ``K``.

    Returns:
        log-probabilities in nats, shape of ``x``. The difference of sigmoids is taken in log
        space on the side of the mean where it does not cancel.
    """
    x = x.to(mean.dtype)
    log_scale = log_scale.clamp_min(MIN_LOG_SCALE)
    inv_s = torch.exp(-log_scale)
    upper = (x + 0.5 - mean) * inv_s  # standardised upper bin edge
    lower = (x - 0.5 - mean) * inv_s  # standardised lower bin edge
    # Interior bins: log(sigmoid(u) - sigmoid(l)). Left of the mean use log sigmoid(u) +
    # log(1 - sigmoid(l)/sigmoid(u)); right of it the mirror image sigmoid(-l) - sigmoid(-u).
    right = (upper + lower) > 0
    a_hi = torch.where(right, -lower, upper)
    a_lo = torch.where(right, -upper, lower)
    ls_hi, ls_lo = F.logsigmoid(a_hi), F.logsigmoid(a_lo)
    log_mid = ls_hi + _log1mexp(ls_lo - ls_hi)
    log_first = F.logsigmoid(upper)  # P(x <= 0.5)
    log_last = F.logsigmoid(-lower)  # P(x > K - 1.5)
    out = torch.where(x <= 0, log_first, torch.where(x >= n_levels - 1, log_last, log_mid))
    return out


def output_log_prob(params: torch.Tensor, x: torch.Tensor, output: str, n_levels: int) -> torch.Tensor:
    r"""Per-dimension ``log p(x_d | params_d)``: params ``(B, D, P)``, x ``(B, D)`` -> ``(B, D)``.

    ``gaussian`` is a density over real ``x`` (use dequantised data); the three others are exact
    probabilities of the discrete value.
    """
    if output == "bernoulli":
        return bernoulli_log_prob(params[..., 0], x)
    if output == "categorical":
        return categorical_log_prob(params, x)
    if output == "gaussian":
        return gaussian_log_prob(x.to(params.dtype), params[..., 0], params[..., 1])
    if output == "logistic":
        return discretized_logistic_log_prob(x, params[..., 0], params[..., 1], n_levels)
    raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")


def output_sample(params: torch.Tensor, output: str, n_levels: int,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One draw per row from the output distribution: params ``(B, P)`` -> values ``(B,)`` (float)."""
    if output == "bernoulli":
        u = torch.rand(params.shape[:-1], generator=generator, device=params.device)
        return (u < torch.sigmoid(params[..., 0])).float()
    if output == "categorical":
        probs = torch.softmax(params.float(), dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1).float()
    mean, log_scale = params[..., 0], params[..., 1].clamp_min(MIN_LOG_SCALE)
    if output == "gaussian":
        eps = torch.randn(mean.shape, generator=generator, device=params.device)
        return mean + torch.exp(log_scale) * eps
    if output == "logistic":  # inverse CDF, then the bin: exactly the discretized logistic
        u = torch.rand(mean.shape, generator=generator, device=params.device).clamp(1e-6, 1 - 1e-6)
        z = mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
        return z.round().clamp(0, n_levels - 1)
    raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")


def chain_rule_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r"""Sum of the log conditionals, :math:`\log p(x) = \sum_d \log p(x_d \mid x_{<d})`.

    Args:
        logits: per-dimension conditional logits, already computed from the earlier dimensions:
            ``(B, D)`` for binary data (Bernoulli, ``log p = x l - softplus(l)``) or
            ``(B, D, K)`` for ``K`` levels (categorical, ``log_softmax`` picked at ``x``).
        x: ``(B, D)`` values, 0/1 or integers ``0..K-1``.

    Returns:
        ``(B,)`` log-likelihoods in nats (no exp or log of a probability is ever taken).
    """
    if logits.dim() == x.dim():
        return bernoulli_log_prob(logits, x).sum(-1)
    return categorical_log_prob(logits, x).sum(-1)


# --------------------------------------------------------------------------------------------
# MADE masks
# --------------------------------------------------------------------------------------------
def made_degrees(n_dims: int, hidden_sizes: Sequence[int], order: Optional[Sequence[int]] = None,
                 seed: Optional[int] = None) -> list[torch.Tensor]:
    r"""Degrees of every layer of a MADE.

    The input unit of variable ``d`` gets degree ``m(d)`` = its 1-based position in the
    ordering; a hidden unit gets a degree drawn uniformly from ``{min of previous layer, ..., D-1}``
    (with ``seed=None``: spread evenly, deterministic); the outputs copy the input degrees.

    Returns:
        ``[deg_in (D,), deg_h1 (H1,), ..., deg_out (D,)]`` int64 tensors.
    """
    order = list(range(n_dims)) if order is None else list(order)
    deg_in = torch.empty(n_dims, dtype=torch.long)
    deg_in[torch.tensor(order)] = torch.arange(1, n_dims + 1)
    degrees, low = [deg_in], 1
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    for h in hidden_sizes:
        top = max(n_dims - 1, low)
        if gen is None:
            deg = low + torch.arange(h) % (top - low + 1)
        else:
            deg = torch.randint(low, top + 1, (h,), generator=gen)
        degrees.append(deg)
        low = int(deg.min())
    degrees.append(deg_in.clone())
    return degrees


def made_masks(degrees: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    r"""Connectivity masks of a MADE from the degrees of its layers.

    .. math:: M^{(l)}_{kj} = [\,m_l(k) \ge m_{l-1}(j)\,] \ \text{(hidden layers)}, \qquad
              M^{\text{out}}_{dj} = [\,m_{\text{out}}(d) > m_L(j)\,] \ \text{(output layer)}.

    Output ``d`` can then only be reached from inputs of degree ``< m(d)``: the earlier variables.

    Args:
        degrees: ``[deg_in (D,), deg_h1 (H1,), ..., deg_hL (HL,), deg_out (D_out,)]``.

    Returns:
        ``len(degrees) - 1`` float masks; mask ``l`` has shape ``(len(degrees[l+1]), len(degrees[l]))``
        = (out, in) like ``nn.Linear.weight``.
    """
    masks = []
    for l in range(len(degrees) - 1):
        d_in, d_out = degrees[l], degrees[l + 1]
        last = l == len(degrees) - 2
        m = d_out[:, None] > d_in[None, :] if last else d_out[:, None] >= d_in[None, :]  # (out, in)
        masks.append(m.float())
    return masks


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed (out, in) mask buffer."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", torch.ones(out_features, in_features))

    def set_mask(self, mask: torch.Tensor) -> None:
        self.mask.data.copy_(mask.to(self.mask))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


# --------------------------------------------------------------------------------------------
# The shared interface
# --------------------------------------------------------------------------------------------
class AutoregressiveModel(nn.Module):
    r"""Base class: ``params(x) -> (B, D, P)`` gives the conditional of each dimension.

    ``log_prob(x) = \sum_d log p(x_d | params_d)``, ``loss(x) = -mean log_prob(x)``; the default
    :meth:`sample` fills the dimensions one at a time along ``self.order`` and recomputes the whole
    network each step: ``D`` forward passes (the sequential cost of the family).
    """

    def __init__(self, n_dims: int, n_levels: int = 2, output: Optional[str] = None,
                 order: Optional[Sequence[int]] = None):
        super().__init__()
        self.n_dims, self.n_levels = n_dims, n_levels
        self.output = output or ("bernoulli" if n_levels == 2 else "categorical")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        self.n_out = n_params_per_dim(self.output, n_levels)
        self.register_buffer("order", torch.arange(n_dims) if order is None else torch.as_tensor(order).long())

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the networks see: ``x / (K - 1)`` as float, ``(B, D)``."""
        return x.float() / (self.n_levels - 1)

    def params(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``(B,)`` log-likelihood in nats of ``x`` ``(B, D)``."""
        return output_log_prob(self.params(x), x, self.output, self.n_levels).sum(-1)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood (nats per example)."""
        return -self.log_prob(x).mean()

    @property
    def device(self) -> torch.device:
        return self.order.device

    @torch.no_grad()
    def sample(self, n: int, seed: Optional[int] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` samples ``(n, D)`` drawn one dimension at a time (``D`` network evaluations)."""
        gen = _generator(seed, generator, self.device)
        x = torch.zeros(n, self.n_dims, device=self.device)
        for d in self.order.tolist():
            x[:, d] = output_sample(self.params(x)[:, d], self.output, self.n_levels, gen)
        return x if self.output == "gaussian" else x.long()


def _generator(seed: Optional[int], generator: Optional[torch.Generator], device) -> Optional[torch.Generator]:
    if generator is not None:
        return generator
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------
class FVSBN(AutoregressiveModel):
    r"""Fully visible sigmoid belief net: one logistic regression per conditional.

    .. math:: p(x_{\pi(i)} = 1 \mid x_{\pi(<i)}) = \sigma\big(b_i + \textstyle\sum_{j<i} W_{ij} x_{\pi(j)}\big)

    (softmax regression with ``K`` logits per dimension when ``n_levels = K > 2``). It is a MADE
    without hidden layer: one masked linear map, ``O(D^2)`` parameters.
    """

    def __init__(self, n_dims: int, n_levels: int = 2, output: Optional[str] = None,
                 order: Optional[Sequence[int]] = None):
        super().__init__(n_dims, n_levels, output, order)
        self.linear = MaskedLinear(n_dims, n_dims * self.n_out)
        nn.init.zeros_(self.linear.weight)
        deg = made_degrees(n_dims, [], self.order.tolist())
        self.linear.set_mask(made_masks([deg[0], deg[-1].repeat(self.n_out)])[0])

    def params(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(self._inputs(x))  # (B, P*D)
        return out.view(len(x), self.n_out, self.n_dims).transpose(1, 2)  # (B, D, P)


class NADE(AutoregressiveModel):
    r"""Neural autoregressive density estimator (Larochelle & Murray, 2011).

    .. math:: h_i = \sigma\big(c + W_{:,<i}\, x_{<i}\big), \qquad
              p(x_i \mid x_{<i}) = \mathrm{Cat/Bern}\big(b_i + V_i h_i\big)

    The hidden weights ``W`` are SHARED by all conditionals, so all ``D`` pre-activations are a
    cumulative sum, ``a_{i+1} = a_i + W_{:,i} x_i``: ``O(DH)`` for all of them at once.
    """

    def __init__(self, n_dims: int, hidden: int = 64, n_levels: int = 2, output: Optional[str] = None,
                 order: Optional[Sequence[int]] = None):
        super().__init__(n_dims, n_levels, output, order)
        self.W = nn.Parameter(torch.randn(n_dims, hidden) / math.sqrt(n_dims))  # (D, H)
        self.c = nn.Parameter(torch.zeros(hidden))  # (H,)
        self.V = nn.Parameter(torch.randn(n_dims, hidden, self.n_out) / math.sqrt(hidden))  # (D, H, P)
        self.b = nn.Parameter(torch.zeros(n_dims, self.n_out))  # (D, P)

    def params(self, x: torch.Tensor) -> torch.Tensor:
        xo = self._inputs(x)[:, self.order]  # (B, D) in the model's order
        contrib = xo[:, :, None] * self.W[self.order][None]  # (B, D, H): W_{:,i} x_i
        a = self.c + torch.cumsum(contrib, dim=1) - contrib  # (B, D, H): only x_{<i}
        h = torch.sigmoid(a)
        out_o = torch.einsum("bdh,dhp->bdp", h, self.V[self.order]) + self.b[self.order]  # (B, D, P)
        out = torch.empty_like(out_o)
        out[:, self.order] = out_o  # back to the natural order of the dimensions
        return out


class MADE(AutoregressiveModel):
    r"""Masked autoencoder for distribution estimation (Germain et al., 2015).

    An MLP whose weight matrices are multiplied by masks built from degrees
    (:func:`made_degrees`, :func:`made_masks`), so that output ``d`` depends only on the inputs that
    come before ``d`` in the ordering: all ``D`` conditionals in ONE forward pass.

    Args:
        n_dims, n_levels, output: data size, number of levels, output distribution.
        hidden_sizes: widths of the hidden layers.
        num_masks: number of connectivities (orderings and/or hidden degrees) cycled through during
            training; each call of :meth:`loss` in training mode moves to the next. With
            ``num_masks > 1`` :meth:`log_prob` in eval mode is the ensemble (mixture)
            ``log (1/M) sum_m p_m(x)``; in training mode it uses the current mask.
        order_agnostic: draw a random ordering for each connectivity (else the natural order,
            or ``order``).
        seed: seeds the degrees; ``num_masks = 1`` and ``seed=None`` gives evenly spread degrees.
    """

    def __init__(self, n_dims: int, hidden_sizes: Sequence[int] = (128,), n_levels: int = 2,
                 output: Optional[str] = None, order: Optional[Sequence[int]] = None,
                 num_masks: int = 1, order_agnostic: bool = False, seed: Optional[int] = 0):
        super().__init__(n_dims, n_levels, output, order)
        self.hidden_sizes = list(hidden_sizes)
        self.num_masks, self.order_agnostic, self.seed = num_masks, order_agnostic, seed
        sizes = [n_dims] + self.hidden_sizes
        self.hidden = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = MaskedLinear(sizes[-1], n_dims * self.n_out)
        self.mask_index = 0
        self.resample_masks(self._mask_seed(0))

    def _mask_seed(self, m: int) -> Optional[int]:
        return None if self.seed is None else self.seed + m

    def resample_masks(self, seed: Optional[int] = None) -> None:
        """Install a connectivity drawn from ``seed``: hidden degrees and (if order-agnostic) ordering."""
        if self.order_agnostic:
            g = torch.Generator().manual_seed(0 if seed is None else seed)
            self.order.copy_(torch.randperm(self.n_dims, generator=g))
        degrees = made_degrees(self.n_dims, self.hidden_sizes, self.order.tolist(), seed)
        degrees[-1] = degrees[-1].repeat(self.n_out)  # output unit (p, d) has the degree of d
        for layer, mask in zip(list(self.hidden) + [self.head], made_masks(degrees)):
            layer.set_mask(mask)

    def set_mask(self, m: int) -> None:
        """Switch to connectivity ``m`` of ``0..num_masks-1``."""
        self.mask_index = m % self.num_masks
        self.resample_masks(self._mask_seed(self.mask_index))

    def params(self, x: torch.Tensor) -> torch.Tensor:
        h = self._inputs(x)  # (B, D)
        for layer in self.hidden:
            h = torch.relu(layer(h))  # (B, H)
        out = self.head(h)  # (B, P*D)
        return out.view(len(x), self.n_out, self.n_dims).transpose(1, 2)  # (B, D, P)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_masks == 1 or self.training:
            return super().log_prob(x)
        current, lps = self.mask_index, []
        for m in range(self.num_masks):
            self.set_mask(m)
            lps.append(super().log_prob(x))
        self.set_mask(current)
        return torch.logsumexp(torch.stack(lps), 0) - math.log(self.num_masks)  # mixture of M models

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        out = -self.log_prob(x).mean()
        if self.training and self.num_masks > 1:
            self.set_mask(self.mask_index + 1)  # next connectivity for the next minibatch
        return out

    @torch.no_grad()
    def sample(self, n: int, seed: Optional[int] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` samples; with several masks each sample picks a connectivity uniformly (the mixture)."""
        if self.num_masks == 1:
            return super().sample(n, seed, generator)
        gen = _generator(seed, generator, self.device)
        pick = torch.randint(self.num_masks, (n,), generator=gen, device=self.device)
        current = self.mask_index
        x = torch.zeros(n, self.n_dims, dtype=torch.float if self.output == "gaussian" else torch.long,
                        device=self.device)
        for m in range(self.num_masks):
            idx = (pick == m).nonzero().squeeze(-1)
            if len(idx):
                self.set_mask(m)
                x[idx] = super().sample(len(idx), generator=gen).to(x.dtype)
        self.set_mask(current)
        return x


class RecurrentAR(AutoregressiveModel):
    r"""Recurrent conditionals: a GRU (or LSTM) reads :math:`x_{<d}` and emits :math:`p(x_d \mid x_{<d})`.

    .. math:: h_d = \mathrm{RNN}(h_{d-1}, e(x_{d-1})), \qquad p(x_d \mid x_{<d}) = \mathrm{out}(h_d)

    with a learned start token in place of :math:`x_0`. Training uses **teacher forcing**: the
    TRUE previous values are fed at every step, so all ``D`` conditionals come from one pass over
    the sequence. Sampling feeds the model's own draws back, one step at a time, carrying the
    hidden state (``D`` cheap steps). Always the natural order.
    """

    def __init__(self, n_dims: int, n_levels: int = 2, hidden: int = 128, cell: str = "gru",
                 output: Optional[str] = None):
        super().__init__(n_dims, n_levels, output)
        self.embed = nn.Embedding(n_levels + 1, hidden)  # levels + the start token
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = rnn(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, self.n_out)
        self.start = n_levels

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        return x.round().long().clamp(0, self.n_levels - 1)

    def params(self, x: torch.Tensor) -> torch.Tensor:
        start = torch.full((len(x), 1), self.start, dtype=torch.long, device=x.device)
        inp = torch.cat([start, self._tokens(x)[:, :-1]], 1)  # (B, D): teacher forcing, shifted by one
        h, _ = self.rnn(self.embed(inp))  # (B, D, H)
        return self.head(h)  # (B, D, P)

    @torch.no_grad()
    def sample(self, n: int, seed: Optional[int] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        gen = _generator(seed, generator, self.device)
        tok = torch.full((n, 1), self.start, dtype=torch.long, device=self.device)
        state, out = None, []
        for _ in range(self.n_dims):
            h, state = self.rnn(self.embed(tok), state)  # one step, (n, 1, H)
            v = output_sample(self.head(h[:, 0]), self.output, self.n_levels, gen)  # (n,)
            out.append(v)
            tok = self._tokens(v)[:, None]
        x = torch.stack(out, 1)
        return x if self.output == "gaussian" else x.long()


class CausalConv1d(nn.Conv1d):
    r"""1-D convolution padded on the left only, so output ``t`` sees inputs ``t - (k-1)d .. t``
    (``shift=True``: ``t - k d .. t - 1``, excluding ``t`` itself, for the first layer)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dilation: int = 1, shift: bool = False):
        super().__init__(in_ch, out_ch, kernel_size, dilation=dilation)
        self.shift = shift
        self.left = (kernel_size - 1) * dilation + (1 if shift else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, T)
        x = F.pad(x, (self.left, 0))
        out = super().forward(x)
        return out[..., :-1] if self.shift else out


class CausalConvAR(AutoregressiveModel):
    r"""WaveNet-style conditionals: stacked causal 1-D convolutions over the flattened image.

    .. math:: p(x_d \mid x_{<d}) \approx p(x_d \mid x_{d-R}, \dots, x_{d-1})

    Each conditional sees only a local window of the ``R`` previous values (the receptive field
    :attr:`receptive_field`), with weights shared across positions; dilations grow ``R``
    exponentially with depth.
    """

    def __init__(self, n_dims: int, n_levels: int = 2, channels: int = 64, kernel_size: int = 3,
                 dilations: Sequence[int] = (1, 2, 4, 8), output: Optional[str] = None):
        super().__init__(n_dims, n_levels, output)
        layers = [CausalConv1d(1, channels, kernel_size, dilations[0], shift=True)]
        layers += [CausalConv1d(channels, channels, kernel_size, d) for d in dilations[1:]]
        self.convs = nn.ModuleList(layers)
        self.head = nn.Conv1d(channels, self.n_out, 1)
        self.receptive_field = kernel_size * dilations[0] + sum((kernel_size - 1) * d for d in dilations[1:])

    def params(self, x: torch.Tensor) -> torch.Tensor:
        h = self._inputs(x)[:, None]  # (B, 1, D)
        for i, conv in enumerate(self.convs):
            z = torch.relu(conv(h))  # (B, C, D)
            h = z if i == 0 else h + z  # residual after the first layer
        return self.head(h).transpose(1, 2)  # (B, D, P)
