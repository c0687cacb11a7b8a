r"""Autoregressive models: the chain rule of probability, made into neural networks.

Any joint distribution over :math:`D` variables factorises, for ANY ordering :math:`\pi`, as

.. math::  p(x) = \prod_{i=1}^{D} p\big(x_{\pi(i)} \mid x_{\pi(1)}, \dots, x_{\pi(i-1)}\big),

so :math:`\log p(x) = \sum_i \log p(x_{\pi(i)} \mid x_{\pi(<i)})`. An autoregressive model
parametrises every conditional with a network that may only look at the earlier variables; the
likelihood is then exact and maximum likelihood is plain minimisation of :math:`-\log p(x)`.

This module holds

* exact chain-rule factors of a small tabulated joint (:func:`chain_rule_factors`,
  :func:`chain_rule_log_prob`);
* per-dimension output distributions (Bernoulli, categorical, Gaussian, discretized logistic;
  the densities themselves live in :mod:`gencourse.distributions`) and
  :func:`chain_rule_log_likelihood` that sums the conditionals;
* models sharing one interface (``log_prob(x) -> (B,)`` in nats, ``loss(x)`` = mean NLL,
  ``sample(n, *, generator=None)``): :class:`FVSBN` (logistic-regression conditionals),
  :class:`NADE` (shared weights), :class:`MADE` (masked MLP, several orderings; the network is
  :class:`gencourse.nn.MADENet`), :class:`RecurrentAR` (a GRU or LSTM trained with teacher
  forcing) and :class:`CausalConvAR` (WaveNet-style causal 1-D convolutions over a local window).

Data conventions: ``x`` is ``(B, D)``; with ``n_levels = K`` the entries are integers
``0..K-1`` (floats 0/1 are fine for ``K = 2``). Networks see ``x / (K - 1)`` in [0, 1].

Used by: lecture 02_autoregressive; assignment a2_autoregressive (``chain_rule_factors`` and
``chain_rule_log_likelihood`` are graded; ``made_degrees`` and ``made_masks``, defined in
:mod:`gencourse.nn`, are re-exported here for its hidden checks).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .distributions import (bernoulli_log_prob, bernoulli_sample, categorical_log_prob, categorical_sample,
                            discretized_logistic_log_prob, discretized_logistic_sample, gaussian_log_prob,
                            gaussian_sample)
from .nn import MADENet, made_degrees, made_masks

__all__ = [
    "OUTPUTS", "n_params_per_dim",
    "chain_rule_factors", "chain_rule_log_prob", "output_log_prob", "output_sample", "chain_rule_log_likelihood",
    "made_degrees", "made_masks",
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
# Output distributions of one dimension (per-dimension log-probabilities)
# --------------------------------------------------------------------------------------------
def n_params_per_dim(output: str, n_levels: int) -> int:
    """How many numbers the network emits per dimension for an output distribution."""
    return {"bernoulli": 1, "categorical": n_levels, "gaussian": 2, "logistic": 2}[output]


def _location_scale(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, log_scale)`` of the Gaussian and logistic outputs, the log-scale clamped at :data:`MIN_LOG_SCALE`."""
    return params[..., 0], params[..., 1].clamp_min(MIN_LOG_SCALE)


def output_log_prob(params: torch.Tensor, x: torch.Tensor, output: str, n_levels: int) -> torch.Tensor:
    r"""Per-dimension ``log p(x_d | params_d)``: params ``(B, D, P)``, x ``(B, D)`` -> ``(B, D)``.

    ``gaussian`` (params: mean and log standard deviation) is a density over real ``x`` (use
    dequantised data); the three others are exact probabilities of the discrete value.
    """
    if output == "bernoulli":
        return bernoulli_log_prob(x, params[..., 0], event_dims=0)
    if output == "categorical":
        return categorical_log_prob(x, params, event_dims=0)
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    mean, log_scale = _location_scale(params)
    if output == "gaussian":
        return gaussian_log_prob(x.to(params.dtype), mean, 2 * log_scale, event_dims=0)
    return discretized_logistic_log_prob(x, mean, log_scale, n_levels, event_dims=0)


def output_sample(params: torch.Tensor, output: str, n_levels: int,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One draw per row from the output distribution: params ``(B, P)`` -> values ``(B,)`` (float)."""
    if output == "bernoulli":
        return bernoulli_sample(params[..., 0], generator).float()
    if output == "categorical":
        return categorical_sample(params, generator).float()
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    mean, log_scale = _location_scale(params)
    if output == "gaussian":
        return gaussian_sample(mean, 2 * log_scale, generator=generator)
    return discretized_logistic_sample(mean, log_scale, n_levels, generator).float()


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
        return bernoulli_log_prob(x, logits)
    return categorical_log_prob(x, logits)


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
    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` samples ``(n, D)`` on the model's device, drawn one dimension at a time (``D`` network
        evaluations): int64 levels, or floats for the ``"gaussian"`` output."""
        x = torch.zeros(n, self.n_dims, device=self.device)
        for d in self.order.tolist():
            x[:, d] = output_sample(self.params(x)[:, d], self.output, self.n_levels, generator)
        return x if self.output == "gaussian" else x.long()


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
        self.net = MADENet(n_dims, (), self.n_out, order=self.order.tolist())  # one masked linear map
        nn.init.zeros_(self.net.head.weight)

    def params(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._inputs(x))  # (B, D, P)


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
    (:func:`gencourse.nn.made_degrees`, :func:`gencourse.nn.made_masks`; the network is
    :class:`gencourse.nn.MADENet`), so that output ``d`` depends only on the inputs that come before
    ``d`` in the ordering: all ``D`` conditionals in ONE forward pass.

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
        self.num_masks, self.order_agnostic, self.seed = num_masks, order_agnostic, seed
        self.net = MADENet(n_dims, hidden_sizes, self.n_out)
        self.mask_index = 0
        self.resample_masks(self._mask_seed(0))

    def _mask_seed(self, m: int) -> Optional[int]:
        return None if self.seed is None else self.seed + m

    def resample_masks(self, seed: Optional[int] = None) -> None:
        """Install a connectivity drawn from ``seed``: hidden degrees and (if order-agnostic) ordering."""
        if self.order_agnostic:
            g = torch.Generator().manual_seed(0 if seed is None else seed)
            self.order.copy_(torch.randperm(self.n_dims, generator=g))
        self.net.set_masks(self.order.tolist(), seed)

    def set_mask(self, m: int) -> None:
        """Switch to connectivity ``m`` of ``0..num_masks-1``."""
        self.mask_index = m % self.num_masks
        self.resample_masks(self._mask_seed(self.mask_index))

    def params(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._inputs(x))  # (B, D, P)

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
    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` samples; with several masks each sample picks a connectivity uniformly (the mixture)."""
        if self.num_masks == 1:
            return super().sample(n, generator=generator)
        pick = torch.randint(self.num_masks, (n,), generator=generator, device=self.device)
        current = self.mask_index
        x = torch.zeros(n, self.n_dims, dtype=torch.float if self.output == "gaussian" else torch.long,
                        device=self.device)
        for m in range(self.num_masks):
            idx = (pick == m).nonzero().squeeze(-1)
            if len(idx):
                self.set_mask(m)
                x[idx] = super().sample(len(idx), generator=generator).to(x.dtype)
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
    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` samples ``(n, D)``: one RNN step per dimension, feeding each draw back in."""
        tok = torch.full((n, 1), self.start, dtype=torch.long, device=self.device)
        state, out = None, []
        for _ in range(self.n_dims):
            h, state = self.rnn(self.embed(tok), state)  # one step, (n, 1, H)
            v = output_sample(self.head(h[:, 0]), self.output, self.n_levels, generator)  # (n,)
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
