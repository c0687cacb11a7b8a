r"""Normalizing flows: invertible maps with a tractable Jacobian determinant.

**Direction, stated once.** Every transform has

* ``forward(x) -> (y, log_det)`` with ``log_det`` :math:`= \log|\det \partial y / \partial x|`, and
* ``inverse(y) -> (x, log_det)`` with ``log_det`` :math:`= \log|\det \partial x / \partial y|`
  (so the two ``log_det`` of a round trip are negatives of each other);

``log_det`` is ``(...)`` for inputs ``(..., *event_shape)`` (vectors ``(..., D)``, images
``(..., C, H, W)``). A **density model** (:class:`Flow`) runs ``forward`` from **data to noise**,

.. math:: z = f(x), \qquad \log p(x) = \log p_Z(f(x)) + \log\left|\det \frac{\partial f}{\partial x}\right|,

and samples with ``inverse``. Chaining :math:`z_k = f_k(z_{k-1})` adds the log-determinants,
:math:`\log p(x) = \log p_Z(z_K) + \sum_k \log|\det \partial z_k / \partial z_{k-1}|` (the Jacobian
of step ``k`` is taken with respect to **its input** :math:`z_{k-1}`).

A **variational posterior** (:class:`VariationalFlow`, :class:`IAFPosterior`) runs the same
``forward`` the other way, from a base draw :math:`z_0 \sim q_0` to a sample :math:`z_K`, because
that is the direction it must sample in, and

.. math:: \log q_K(z_K) = \log q_0(z_0) - \sum_{k=1}^K \log\left|\det \frac{\partial z_k}{\partial z_{k-1}}\right|.

The transforms:

* :class:`AffineCoupling` (RealNVP): ``y = m x + (1 - m)(x e^{s(m x)} + t(m x))`` for a binary mask
  ``m`` (:func:`alternating_mask` for vectors, :func:`checkerboard_mask` and :func:`channel_mask`
  for images); triangular Jacobian, ``log_det = sum (1 - m) s(m x)``: it depends on the
  **conditioning** part ``m x`` only. The log-scale is bounded, ``s = e^{g} tanh(\tilde s)``.
* :class:`RationalQuadraticCoupling` (neural spline flow): the same coupling with a monotone
  rational-quadratic spline per variable instead of the affine map (:func:`spline_flow`).
* :class:`MaskedAffineAutoregressive`: ``y_i = x_i e^{s_i(x_{<i})} + t_i(x_{<i})`` from a MADE, one
  pass forward and ``D`` passes inverse; used data -> noise it is a **MAF** (fast density), used
  noise -> sample an **IAF** (fast sampling, the VAE posterior of :class:`IAFPosterior`).
* :class:`PlanarFlow` (``y = x + \hat u \tanh(w^T x + b)`` with :math:`w^T \hat u \ge -1`, invertible),
  :class:`ActNorm`, :class:`InvertibleLinear` (Glow's 1x1 mixing), :class:`Permutation`,
  :class:`Squeeze`, :class:`Logit`, :class:`Affine`, and :class:`Compose` to chain them.

Models: :class:`Flow` (``log_prob``, ``sample``, ``loss``), :func:`realnvp`, :func:`maf`,
:func:`image_realnvp`; dequantization of discrete data by :class:`DequantizedFlow` (uniform, or
variational with :class:`VariationalDequantizer`) whose ``log_prob`` is a valid lower bound on the
discrete log-likelihood. :func:`jacobian_log_det` is the general O(D^3) baseline.

Used by: :func:`gencourse.vae.make_vae` (``iaf_steps > 0``: the IAF posterior), lecture 05_flows,
assignment a4_flows and ``benchmarks/bench_flows.py``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .distributions import standard_normal_log_prob
from .nn import MADENet, mlp

__all__ = [
    "Transform", "Compose", "Affine", "alternating_mask", "checkerboard_mask", "channel_mask",
    "AffineCoupling", "ActNorm", "InvertibleLinear", "Permutation", "Squeeze", "Logit",
    "MaskedAffineAutoregressive", "PlanarFlow", "Flow", "realnvp", "maf", "image_realnvp",
    "VariationalFlow", "IAFPosterior", "VariationalDequantizer", "DequantizedFlow",
    "uniform_dequantize", "jacobian_log_det", "rational_quadratic_spline", "RationalQuadraticCoupling",
    "spline_flow",
]


def _event_sum(values: torch.Tensor, event_rank: int) -> torch.Tensor:
    """Sum over the last ``event_rank`` dimensions: ``(..., *event) -> (...)``."""
    return values.sum(dim=tuple(range(-event_rank, 0))) if event_rank else values


def _soft_bound(raw: torch.Tensor, log_gain: torch.Tensor) -> torch.Tensor:
    r"""A log-scale bounded by a learnable gain, s = e^{g} tanh(raw): |s| < e^g keeps e^s finite."""
    return torch.exp(log_gain) * torch.tanh(raw)


class Transform(nn.Module):
    """An invertible map with both log-determinants (the convention of the module docstring).

    ``event_rank``: how many trailing dimensions form one event (1 for vectors, 3 for images).
    """

    event_rank: int = 1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


class Compose(Transform):
    r"""``f_K \circ \dots \circ f_1``: forward applies ``f_1`` first and sums the log-determinants;
    inverse undoes ``f_K`` first."""

    def __init__(self, *transforms: Transform):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        self.event_rank = max((t.event_rank for t in transforms), default=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = 0.0
        for t in self.transforms:
            x, ld = t(x)
            log_det = log_det + ld  # \sum_k \log|\det dz_k / dz_{k-1}|
        return x, _full(log_det, x, self.event_rank)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = 0.0
        for t in reversed(self.transforms):
            y, ld = t.inverse(y)
            log_det = log_det + ld
        return y, _full(log_det, y, self.event_rank)


def _full(log_det, like: torch.Tensor, event_rank: int) -> torch.Tensor:
    """A log-determinant as a tensor of the batch shape (an empty chain gives zeros)."""
    shape = like.shape[:like.dim() - event_rank]
    if isinstance(log_det, torch.Tensor):
        return log_det.expand(shape)
    return torch.full(shape, float(log_det), dtype=like.dtype, device=like.device)


class Affine(Transform):
    r"""Elementwise ``y = a x + b`` with fixed or learnable ``a != 0``: ``log_det = \sum \log|a|``.

    The 1-D worked example of the lecture: x ~ U(0, 1), y = 2x + 1 has density 1/2 on [1, 3].

    Args:
        scale, shift: ``a`` and ``b`` (numbers or tensors of the event shape).
        learnable: make them parameters (``a`` as ``log|a|``, so it stays positive).
    """

    def __init__(self, scale=1.0, shift=0.0, learnable: bool = False, event_rank: int = 1):
        super().__init__()
        log_scale = torch.log(torch.as_tensor(scale, dtype=torch.get_default_dtype()).abs())
        shift = torch.as_tensor(shift, dtype=torch.get_default_dtype())
        sign = torch.sign(torch.as_tensor(scale, dtype=torch.get_default_dtype()))
        self.event_rank = event_rank
        self.register_buffer("sign", sign)
        if learnable:
            self.log_scale, self.shift = nn.Parameter(log_scale), nn.Parameter(shift)
        else:
            self.register_buffer("log_scale", log_scale)
            self.register_buffer("shift", shift)

    def _log_det(self, x: torch.Tensor) -> torch.Tensor:
        return _event_sum(self.log_scale.expand(x.shape[x.dim() - self.event_rank:]).expand_as(x), self.event_rank)

    def forward(self, x):
        return self.sign * torch.exp(self.log_scale) * x + self.shift, self._log_det(x)

    def inverse(self, y):
        return (y - self.shift) * torch.exp(-self.log_scale) * self.sign, -self._log_det(y)


# --------------------------------------------------------------------------------------------
# Coupling layers (RealNVP)
# --------------------------------------------------------------------------------------------
def alternating_mask(dim: int, parity: int = 0) -> torch.Tensor:
    """``(dim,)`` float mask 1, 0, 1, 0, ... (``parity=0``) or 0, 1, 0, 1, ... (``parity=1``)."""
    return ((torch.arange(dim) + parity) % 2 == 0).float()


def checkerboard_mask(height: int, width: int, parity: int = 0) -> torch.Tensor:
    """``(1, H, W)`` float checkerboard: 1 where ``(row + col + parity)`` is even."""
    rows, cols = torch.arange(height)[:, None], torch.arange(width)[None, :]
    return ((rows + cols + parity) % 2 == 0).float()[None]


def channel_mask(channels: int, parity: int = 0) -> torch.Tensor:
    """``(C, 1, 1)`` float mask: the first half of the channels (``parity=0``) or the second."""
    first = (torch.arange(channels) < channels // 2).float()
    return (first if parity == 0 else 1 - first)[:, None, None]


def _conv_net(channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """3x3 convolutions that keep the spatial size: the conditioner of image couplings."""
    return nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(hidden, out_channels, 3, padding=1))


class AffineCoupling(Transform):
    r"""RealNVP's affine coupling layer (Dinh et al., 2017) with a binary mask ``m``.

    .. math::
        y = m \odot x + (1 - m) \odot \big(x \odot e^{s(m \odot x)} + t(m \odot x)\big), \qquad
        \log\left|\det \frac{\partial y}{\partial x}\right| = \sum_i (1 - m_i)\, s_i(m \odot x),

    .. math:: x = m \odot y + (1 - m) \odot \big(y - t(m \odot y)\big) \odot e^{-s(m \odot y)}

    (``m \odot y = m \odot x``: the conditioning part passes through unchanged, which is why the
    inverse needs no network inversion). The Jacobian is triangular in an order that lists the
    masked variables first; its diagonal is 1 on the conditioning part and ``e^{s}`` elsewhere.

    Args:
        mask: ``(D,)`` for vectors, ``(1, H, W)`` or ``(C, 1, 1)`` for images ``(C, H, W)``.
        hidden: width of the conditioner (MLP hidden units, or conv channels for images).
        channels: ``C`` for images (default ``mask.shape[0]`` when the mask is ``(C, 1, 1)``).
        n_hidden_layers: depth of the MLP conditioner (vectors).

    The conditioner's last layer starts at zero, so a new coupling is the identity.
    """

    def __init__(self, mask: torch.Tensor, hidden: int = 64, channels: Optional[int] = None, n_hidden_layers: int = 2):
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.event_rank = mask.dim()
        if self.event_rank == 1:
            dim = mask.numel()
            self.net = mlp([dim, *[hidden] * n_hidden_layers, 2 * dim])
            last = self.net[-1]
            self.log_gain = nn.Parameter(torch.zeros(dim))
        else:
            channels = channels or mask.shape[0]
            self.net = _conv_net(channels, hidden, 2 * channels)
            last = self.net[-1]
            self.log_gain = nn.Parameter(torch.zeros(channels, 1, 1))
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def scale_and_shift(self, x_cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s, t)`` from the conditioning part ``m * x``, both already multiplied by ``1 - m``."""
        raw_s, t = self.net(x_cond).chunk(2, dim=-self.event_rank)
        free = 1 - self.mask
        return free * _soft_bound(raw_s, self.log_gain), free * t

    def forward(self, x):
        x_cond = self.mask * x  # the conditioning part z_1
        s, t = self.scale_and_shift(x_cond)
        y = x_cond + (1 - self.mask) * (x * torch.exp(s) + t)
        return y, _event_sum(s, self.event_rank)

    def inverse(self, y):
        y_cond = self.mask * y  # unchanged by the forward pass
        s, t = self.scale_and_shift(y_cond)
        x = y_cond + (1 - self.mask) * ((y - t) * torch.exp(-s))
        return x, -_event_sum(s, self.event_rank)


def rational_quadratic_spline(x: torch.Tensor, params: torch.Tensor, bound: float,
                              inverse: bool = False, min_size: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A monotonic rational-quadratic spline on [-B, B], the identity outside (Durkan et al., 2019).

    ``params (..., 3K - 1)``: unnormalised bin widths (K), heights (K) and the derivatives at the
    K - 1 inner knots (the outer ones are 1, so the tails join smoothly). In bin ``k`` with
    :math:`\xi = (x - x_k) / w_k`, :math:`s_k = h_k / w_k` and knot derivatives :math:`d_k, d_{k+1}`,

    .. math::
        y = y_k + \frac{h_k\,[s_k \xi^2 + d_k \xi(1-\xi)]}{s_k + (d_{k+1} + d_k - 2 s_k)\,\xi(1-\xi)}, \qquad
        \frac{dy}{dx} = \frac{s_k^2\,[d_{k+1}\xi^2 + 2 s_k \xi(1-\xi) + d_k (1-\xi)^2]}{[s_k + (d_{k+1} + d_k - 2 s_k)\,\xi(1-\xi)]^2};

    the inverse solves the quadratic in :math:`\xi` in its stable form. Returns the image of ``x``
    (elementwise, ``x``'s shape) and the elementwise :math:`\log|dy/dx|` (or :math:`\log|dx/dy|`).
    """
    n_bins = (params.shape[-1] + 1) // 3
    w_raw, h_raw, d_raw = params[..., :n_bins], params[..., n_bins:2 * n_bins], params[..., 2 * n_bins:]
    inside = (x > -bound) & (x < bound)
    xc = x.clamp(-bound, bound)

    def knots(raw):  # (..., K) sizes and (..., K + 1) positions on [-B, B]
        size = min_size + (1 - min_size * n_bins) * torch.softmax(raw, -1)
        pos = F.pad(torch.cumsum(size, -1), (1, 0)) * 2 * bound - bound
        pos = torch.cat([pos[..., :1].clamp(max=-bound), pos[..., 1:-1], pos[..., -1:].clamp(min=bound)], -1)
        return pos[..., 1:] - pos[..., :-1], pos

    widths, cum_w = knots(w_raw)
    heights, cum_h = knots(h_raw)
    inner = min_size + F.softplus(d_raw + _IDENTITY_DERIVATIVE)  # softplus(0 + c) = 1 - min_size: identity start
    ones = torch.ones_like(inner[..., :1])
    derivs = torch.cat([ones, inner, ones], -1)  # (..., K + 1)

    edges = cum_h if inverse else cum_w
    k = (torch.searchsorted(edges[..., 1:-1].contiguous(), xc[..., None].contiguous()))  # bin index (..., 1)
    pick = lambda t: t.gather(-1, k)[..., 0]  # noqa: E731
    x_k, w_k, y_k, h_k = pick(cum_w), pick(widths), pick(cum_h), pick(heights)
    d_k, d_k1 = pick(derivs), derivs[..., 1:].gather(-1, k)[..., 0]
    s_k = h_k / w_k
    if inverse:
        dy = xc - y_k
        a = h_k * (s_k - d_k) + dy * (d_k1 + d_k - 2 * s_k)
        b = h_k * d_k - dy * (d_k1 + d_k - 2 * s_k)
        c = -s_k * dy
        xi = (2 * c) / (-b - torch.sqrt((b * b - 4 * a * c).clamp_min(0)))
        out = x_k + xi * w_k
    else:
        xi = (xc - x_k) / w_k
        out = y_k + h_k * (s_k * xi ** 2 + d_k * xi * (1 - xi)) / (s_k + (d_k1 + d_k - 2 * s_k) * xi * (1 - xi))
    denom = s_k + (d_k1 + d_k - 2 * s_k) * xi * (1 - xi)
    log_deriv = (2 * torch.log(s_k) + torch.log(d_k1 * xi ** 2 + 2 * s_k * xi * (1 - xi) + d_k * (1 - xi) ** 2)
                 - 2 * torch.log(denom))  # log dy/dx
    log_det = -log_deriv if inverse else log_deriv
    return torch.where(inside, out, x), torch.where(inside, log_det, torch.zeros_like(log_det))


_IDENTITY_DERIVATIVE = math.log(math.expm1(1 - 1e-3))


class RationalQuadraticCoupling(Transform):
    r"""A coupling layer whose elementwise map is a rational-quadratic spline (neural spline flow,
    Durkan et al., 2019) instead of an affine map: for a binary mask ``m`` (vectors),

    .. math:: y = m \odot x + (1 - m) \odot \mathrm{RQS}_{\theta(m \odot x)}(x), \qquad
              \log\left|\det \frac{\partial y}{\partial x}\right| = \sum_i (1 - m_i) \log \mathrm{RQS}'_{\theta_i}(x_i)

    with :func:`rational_quadratic_spline` on [-``bound``, ``bound``] (identity outside). Far more
    flexible per layer than :class:`AffineCoupling` (a monotone map with ``n_bins`` pieces), it
    fits thin, many-mode densities that affine couplings smear. Starts as the identity.

    Args:
        mask: ``(D,)``; hidden: MLP width; n_bins: ``K``; bound: ``B``; n_hidden_layers: MLP depth.
    """

    def __init__(self, mask: torch.Tensor, hidden: int = 64, n_bins: int = 8, bound: float = 4.0,
                 n_hidden_layers: int = 2):
        super().__init__()
        dim = mask.numel()
        self.register_buffer("mask", mask.float())
        self.n_params, self.bound = 3 * n_bins - 1, bound
        self.net = mlp([dim, *[hidden] * n_hidden_layers, dim * self.n_params])
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _apply_spline(self, v: torch.Tensor, inverse: bool):
        params = self.net(self.mask * v).unflatten(-1, (-1, self.n_params))  # (..., D, 3K - 1)
        out, log_det = rational_quadratic_spline(v, params, self.bound, inverse=inverse)
        free = 1 - self.mask
        return self.mask * v + free * out, (free * log_det).sum(-1)

    def forward(self, x):
        return self._apply_spline(x, inverse=False)

    def inverse(self, y):
        return self._apply_spline(y, inverse=True)


def spline_flow(dim: int = 2, n_couplings: int = 6, hidden: int = 64, n_bins: int = 8, bound: float = 4.0, *,
                actnorm: bool = True) -> Flow:
    """A neural spline flow for vectors: rational-quadratic couplings with alternating masks, each
    preceded by an :class:`ActNorm` and an :class:`InvertibleLinear` mixing."""
    layers: list[Transform] = []
    for k in range(n_couplings):
        if actnorm:
            layers.append(ActNorm(dim))
        layers += [InvertibleLinear(dim, seed=k),
                   RationalQuadraticCoupling(alternating_mask(dim, k % 2), hidden, n_bins, bound)]
    return Flow(Compose(*layers), (dim,))


# --------------------------------------------------------------------------------------------
# Normalisation and mixing layers
# --------------------------------------------------------------------------------------------
class ActNorm(Transform):
    r"""Per-feature affine ``y = (x + b) e^{\ell}`` (Glow), initialised from the first batch so that
    ``y`` has zero mean and unit variance per feature; ``log_det = (\text{positions}) \sum \ell``.

    Args:
        features: ``D`` for vectors or ``C`` for images.
        image: inputs are ``(..., C, H, W)`` (statistics over batch and positions).
    """

    def __init__(self, features: int, image: bool = False):
        super().__init__()
        shape = (features, 1, 1) if image else (features,)
        self.event_rank = 3 if image else 1
        self.bias = nn.Parameter(torch.zeros(shape))
        self.log_scale = nn.Parameter(torch.zeros(shape))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        dims = [d for d in range(x.dim()) if d != x.dim() - self.event_rank]  # all but the feature axis
        mean = x.mean(dim=dims).reshape(self.bias.shape)
        std = x.std(dim=dims).reshape(self.bias.shape) if x[..., 0].numel() > 1 else torch.ones_like(mean)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std.clamp_min(1e-6)))
        self.initialized.fill_(True)

    def _log_det(self, x: torch.Tensor) -> torch.Tensor:
        positions = x.shape[-2] * x.shape[-1] if self.event_rank == 3 else 1
        return (positions * self.log_scale.sum()).expand(x.shape[:x.dim() - self.event_rank])

    def forward(self, x):
        if self.training and not bool(self.initialized):
            self._initialize(x)
        return (x + self.bias) * torch.exp(self.log_scale), self._log_det(x)

    def inverse(self, y):
        return y * torch.exp(-self.log_scale) - self.bias, -self._log_det(y)


class InvertibleLinear(Transform):
    r"""A learned invertible mixing of the features, ``y = W x`` (Glow's 1x1 convolution for
    images: the same ``W`` at every position). ``log_det = (\text{positions}) \log|\det W|``, and
    ``W`` starts as a random rotation.

    Args:
        features: ``D`` or ``C``; image: inputs ``(..., C, H, W)``; seed: of the initial rotation.
    """

    def __init__(self, features: int, image: bool = False, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(features, features, generator=gen))
        self.weight = nn.Parameter(q)
        self.event_rank = 3 if image else 1

    def _mix(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.event_rank == 3:
            return torch.einsum("ij,...jhw->...ihw", w, x)
        return x @ w.T

    def _log_det(self, x: torch.Tensor) -> torch.Tensor:
        positions = x.shape[-2] * x.shape[-1] if self.event_rank == 3 else 1
        return (positions * torch.linalg.slogdet(self.weight)[1]).expand(x.shape[:x.dim() - self.event_rank])

    def forward(self, x):
        return self._mix(x, self.weight), self._log_det(x)

    def inverse(self, y):
        return self._mix(y, torch.linalg.inv(self.weight)), -self._log_det(y)


class Permutation(Transform):
    """A fixed reordering of the features (``|det| = 1``): reversed, or random with ``seed``.

    Args:
        features: ``D`` or ``C``; image: permute the channels of ``(..., C, H, W)``.
    """

    def __init__(self, features: int, seed: Optional[int] = None, image: bool = False):
        super().__init__()
        perm = (torch.arange(features - 1, -1, -1) if seed is None
                else torch.randperm(features, generator=torch.Generator().manual_seed(seed)))
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))
        self.event_rank = 3 if image else 1

    def _take(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return x.index_select(x.dim() - self.event_rank, index)

    def forward(self, x):
        return self._take(x, self.perm), x.new_zeros(x.shape[:x.dim() - self.event_rank])

    def inverse(self, y):
        return self._take(y, self.inv_perm), y.new_zeros(y.shape[:y.dim() - self.event_rank])


class Squeeze(Transform):
    """``(..., C, H, W) -> (..., 4C, H/2, W/2)``: each 2x2 block becomes 4 channels (``|det| = 1``).
    ``undo=True`` gives the opposite map (so that a flow can end in its data's shape)."""

    event_rank = 3

    def __init__(self, undo: bool = False):
        super().__init__()
        self.undo = undo

    @staticmethod
    def _squeeze(x):
        *lead, c, h, w = x.shape
        n = len(lead)
        x = x.reshape(*lead, c, h // 2, 2, w // 2, 2)  # (..., c, h', a, w', b)
        x = x.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)  # (..., c, a, b, h', w')
        return x.reshape(*lead, 4 * c, h // 2, w // 2)

    @staticmethod
    def _unsqueeze(x):
        *lead, c4, h, w = x.shape
        n = len(lead)
        x = x.reshape(*lead, c4 // 4, 2, 2, h, w)  # (..., c, a, b, h', w')
        x = x.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)  # (..., c, h', a, w', b)
        return x.reshape(*lead, c4 // 4, 2 * h, 2 * w)

    def forward(self, x):
        y = self._unsqueeze(x) if self.undo else self._squeeze(x)
        return y, x.new_zeros(x.shape[:-3])

    def inverse(self, y):
        x = self._squeeze(y) if self.undo else self._unsqueeze(y)
        return x, y.new_zeros(y.shape[:-3])


class Logit(Transform):
    r"""``y = \mathrm{logit}(\alpha + (1 - 2\alpha) x)`` for ``x`` in [0, 1] (RealNVP's pre-processing
    of dequantized images): maps the unit cube to the whole space.

    .. math:: \log\left|\frac{dy}{dx}\right| = \log(1 - 2\alpha) - \log p - \log(1 - p),\quad p = \alpha + (1 - 2\alpha) x.
    """

    def __init__(self, alpha: float = 0.05, event_rank: int = 1):
        super().__init__()
        self.alpha, self.event_rank = alpha, event_rank

    def forward(self, x):
        p = self.alpha + (1 - 2 * self.alpha) * x
        y = torch.log(p) - torch.log1p(-p)
        log_det = math.log(1 - 2 * self.alpha) + F.softplus(-y) + F.softplus(y)  # log(1-2a) - log p - log(1-p)
        return y, _event_sum(log_det, self.event_rank)

    def inverse(self, y):
        x = (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)
        log_det = -math.log(1 - 2 * self.alpha) - F.softplus(-y) - F.softplus(y)
        return x, _event_sum(log_det, self.event_rank)


# --------------------------------------------------------------------------------------------
# Autoregressive (MAF / IAF) and planar transforms
# --------------------------------------------------------------------------------------------
class MaskedAffineAutoregressive(Transform):
    r"""y_i = x_i e^{s_i(x_{<i})} + t_i(x_{<i}), (s, t) from a MADE (Germain et al., 2015):
    \log|\det \partial y / \partial x| = \sum_i s_i (triangular Jacobian).

    One network pass forward; the inverse solves variable ``i`` once ``x_{<i}`` is known (``D``
    passes). Data -> noise it is a MAF layer (Papamakarios et al., 2017: exact density in one
    pass, sequential sampling); noise -> sample it is an IAF step (Kingma et al., 2016: sampling
    in one pass, the density only of its own samples cheaply). ``s`` is bounded as in
    :class:`AffineCoupling` and the MADE's output layer starts at zero (identity).

    Args:
        dim: ``D``; hidden: MADE hidden widths (an int for one layer); context_dim: size of an
            optional context c entering every output (e.g. encoder features of a VAE).
        order: the autoregressive order (default natural).

    Forward/inverse take an optional ``context (..., C)``.
    """

    def __init__(self, dim: int, hidden: int | Sequence[int] = 64, context_dim: int = 0,
                 order: Optional[Sequence[int]] = None):
        super().__init__()
        hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        self.made = MADENet(dim, hidden, n_params=2, order=order, context_dim=context_dim, activation=nn.ELU)
        nn.init.zeros_(self.made.head.weight)
        nn.init.zeros_(self.made.head.bias)
        self.log_gain = nn.Parameter(torch.zeros(dim))
        self.order = list(range(dim)) if order is None else list(order)

    def scale_and_shift(self, x: torch.Tensor, context: Optional[torch.Tensor] = None):
        out = self.made(x, context)  # (..., D, 2)
        return _soft_bound(out[..., 0], self.log_gain), out[..., 1]

    def forward(self, x, context: Optional[torch.Tensor] = None):
        s, t = self.scale_and_shift(x, context)
        return x * torch.exp(s) + t, s.sum(-1)

    def inverse(self, y, context: Optional[torch.Tensor] = None):
        x = torch.zeros_like(y)
        for i in self.order:  # once x_{<i} is final, s_i and t_i are too
            s, t = self.scale_and_shift(x, context)
            x = x.clone()
            x[..., i] = (y[..., i] - t[..., i]) * torch.exp(-s[..., i])
        s, _ = self.scale_and_shift(x, context)
        return x, -s.sum(-1)


class PlanarFlow(Transform):
    r"""Planar flow (Rezende & Mohamed, 2015): y = x + \hat u \tanh(w^T x + b),

    .. math:: \log\left|\det \frac{\partial y}{\partial x}\right| = \log\left|1 + \hat u^T w\,(1 - \tanh^2(w^T x + b))\right|.

    Invertibility needs :math:`w^T \hat u \ge -1`; it is enforced by the paper's reparameterisation
    :math:`\hat u = u + (m(w^T u) - w^T u)\, w / \|w\|^2` with :math:`m(a) = -1 + \mathrm{softplus}(a)`
    (so :math:`w^T \hat u = m(w^T u) > -1`). There is no closed-form inverse: :meth:`inverse`
    solves the scalar equation :math:`w^T y + b = a + w^T \hat u \tanh(a)` for :math:`a = w^T x + b`
    by bisection (it is increasing in ``a``) and returns :math:`x = y - \hat u \tanh(a)`.

    Args:
        dim: ``D``; seed: of the initial ``u``, ``w`` (small random values).
    """

    BISECTION_STEPS = 100

    def __init__(self, dim: int, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.u = nn.Parameter(0.1 * torch.randn(dim, generator=gen))
        self.w = nn.Parameter(0.1 * torch.randn(dim, generator=gen))
        self.b = nn.Parameter(torch.zeros(()))

    def u_hat(self) -> torch.Tensor:
        wu = self.w @ self.u
        return self.u + (F.softplus(wu) - 1 - wu) * self.w / (self.w @ self.w)

    def forward(self, x):
        u = self.u_hat()
        a = x @ self.w + self.b  # (...)
        y = x + u * torch.tanh(a)[..., None]
        psi = (1 - torch.tanh(a) ** 2)[..., None] * self.w  # h'(a) w: (..., D)
        return y, torch.log(torch.abs(1 + psi @ u))

    def inverse(self, y):
        u = self.u_hat()
        wu, target = self.w @ u, y @ self.w + self.b  # solve a + wu tanh(a) = target
        bound = float(wu.detach().abs()) + 1.0  # |wu tanh(a)| <= |wu|: the root lies within target +- bound
        with torch.no_grad():
            lo, hi = target - bound, target + bound
            for _ in range(self.BISECTION_STEPS):
                mid = (lo + hi) / 2
                below = mid + wu * torch.tanh(mid) < target
                lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
            a0 = (lo + hi) / 2
        # one Newton step with gradients: at the root it changes nothing, and it carries the
        # implicit derivative da/dtarget = 1 / (1 + wu (1 - tanh^2 a)) to autograd
        a = a0 - (a0 + wu * torch.tanh(a0) - target) / (1 + wu * (1 - torch.tanh(a0) ** 2))
        x = y - u * torch.tanh(a)[..., None]
        _, log_det = self.forward(x)
        return x, -log_det


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------
class Flow(nn.Module):
    r"""A density model :math:`p(x) = p_Z(f(x)) |\det \partial f / \partial x|` with a standard normal :math:`p_Z`
    (or another base), f a :class:`Transform` run data -> noise.

    Args:
        transform: ``f``.
        event_shape: the shape of one data point (and of ``z``), e.g. ``(2,)`` or ``(1, 8, 8)``.
        base: a ``torch.distributions.Distribution`` over one event with an inverse CDF (``icdf``;
            e.g. a uniform or a normal, wrapped in ``Independent``), default the standard normal,
            computed without one so that it follows the model's device and dtype.

    ``log_prob(x) -> (B,)`` in nats; ``sample(n, *, generator=None)`` draws z ~ p_Z and returns
    f^{-1}(z); ``loss(x)`` is the mean negative log-likelihood.
    """

    def __init__(self, transform: Transform, event_shape: Sequence[int], base=None):
        super().__init__()
        self.transform, self.event_shape, self.base = transform, tuple(event_shape), base
        self.register_buffer("_anchor", torch.zeros(()))  # the device and dtype of a parameterless flow

    def _ref(self) -> torch.Tensor:
        return next(iter(self.parameters()), self._anchor)

    def base_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        if self.base is None:
            return standard_normal_log_prob(z, event_dims=len(self.event_shape))
        return self.base.log_prob(z)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        ref = self._ref()
        z, log_det = self.transform(x.to(ref.dtype))
        return self.base_log_prob(z) + log_det

    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        ref = self._ref()
        if self.base is None:
            z = torch.randn(n, *self.event_shape, generator=generator, dtype=ref.dtype, device=ref.device)
        else:  # by the inverse CDF of the base, so that the generator decides the draw
            u = torch.rand(n, *self.event_shape, generator=generator, dtype=ref.dtype, device=ref.device)
            base = self.base.base_dist if isinstance(self.base, torch.distributions.Independent) else self.base
            try:
                z = base.icdf(u).to(ref)
            except NotImplementedError:
                raise ValueError(f"Flow.sample draws a custom base through its inverse CDF, which "
                                 f"{type(base).__name__} does not have") from None
        with torch.no_grad():
            return self.transform.inverse(z)[0]

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(x).mean()


def realnvp(dim: int = 2, n_couplings: int = 8, hidden: int = 64, *, actnorm: bool = True,
            mixing: str = "none", n_hidden_layers: int = 2) -> Flow:
    """A RealNVP for vectors: ``n_couplings`` affine couplings with alternating masks, each preceded
    by an :class:`ActNorm` (``actnorm``) and, with ``mixing="linear"``, an :class:`InvertibleLinear`
    (``"permutation"``: a random fixed permutation; ``"none"``: the alternating masks alone)."""
    layers: list[Transform] = []
    for k in range(n_couplings):
        if actnorm:
            layers.append(ActNorm(dim))
        if mixing == "linear":
            layers.append(InvertibleLinear(dim, seed=k))
        elif mixing == "permutation":
            layers.append(Permutation(dim, seed=k))
        elif mixing != "none":
            raise ValueError(f"mixing must be 'none', 'permutation' or 'linear', got {mixing!r}")
        layers.append(AffineCoupling(alternating_mask(dim, k % 2), hidden, n_hidden_layers=n_hidden_layers))
    return Flow(Compose(*layers), (dim,))


def maf(dim: int = 2, n_layers: int = 5, hidden: int | Sequence[int] = 64, *, actnorm: bool = True) -> Flow:
    """A masked autoregressive flow: ``n_layers`` MAF layers, the order reversed between layers."""
    layers: list[Transform] = []
    for k in range(n_layers):
        if actnorm:
            layers.append(ActNorm(dim))
        layers.append(MaskedAffineAutoregressive(dim, hidden))
        if k < n_layers - 1:
            layers.append(Permutation(dim))
    return Flow(Compose(*layers), (dim,))


def image_realnvp(shape: Sequence[int] = (1, 8, 8), hidden: int = 64, n_checkerboard: int = 4,
                  n_channel: int = 4, *, alpha: float = 0.05) -> Flow:
    """A RealNVP for images in [0, 1] (dequantized): :class:`Logit`, then checkerboard couplings at
    full resolution, a :class:`Squeeze` and channel couplings with :class:`InvertibleLinear` mixing
    at half resolution, and back to the image's shape. Every coupling is preceded by an ActNorm."""
    c, h, w = shape
    layers: list[Transform] = [Logit(alpha, event_rank=3)]
    for k in range(n_checkerboard):
        layers += [ActNorm(c, image=True), AffineCoupling(checkerboard_mask(h, w, k % 2), hidden, channels=c)]
    layers.append(Squeeze())
    for k in range(n_channel):
        layers += [ActNorm(4 * c, image=True), InvertibleLinear(4 * c, image=True, seed=k),
                   AffineCoupling(channel_mask(4 * c, k % 2), hidden)]
    layers.append(Squeeze(undo=True))
    return Flow(Compose(*layers), shape)


class VariationalFlow(nn.Module):
    r"""q_K(z_K): a base draw z_0 ~ N(\mu, diag \sigma^2) (learned) pushed through transforms run
    noise -> sample, \log q_K(z_K) = \log q_0(z_0) - \sum_k \log|\det \partial z_k/\partial z_{k-1}|.

    Fitted to an unnormalised target \log \tilde p(z) by maximising the flow ELBO
    :math:`E_{q_0}[\log \tilde p(z_K) - \log q_0(z_0) + \sum_k \log|\det \partial z_k / \partial z_{k-1}|]`
    (:meth:`elbo`), i.e. minimising KL(q_K || p) up to \log Z.

    Args:
        transforms: the steps (e.g. :class:`PlanarFlow`s); dim: ``D``.
    """

    def __init__(self, transforms: Sequence[Transform], dim: int):
        super().__init__()
        self.transform, self.dim = Compose(*transforms), dim
        self.mean = nn.Parameter(torch.zeros(dim))
        self.log_var = nn.Parameter(torch.zeros(dim))

    def sample_and_log_prob(self, n: int, *, generator: Optional[torch.Generator] = None):
        """Reparameterised ``z_K (n, D)`` and ``log q_K(z_K) (n,)``."""
        eps = torch.randn(n, self.dim, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        z0 = self.mean + torch.exp(0.5 * self.log_var) * eps
        log_q0 = standard_normal_log_prob(eps) - 0.5 * self.log_var.sum()  # N(z0; mu, sigma^2)
        z, log_det = self.transform(z0)
        return z, log_q0 - log_det

    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        with torch.no_grad():
            return self.sample_and_log_prob(n, generator=generator)[0]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q_K at any ``z (B, D)`` (through the inverse: bisection for planar steps)."""
        z0, log_det = self.transform.inverse(z.to(self.mean.dtype))  # log|det dz_0/dz_K|
        eps = (z0 - self.mean) * torch.exp(-0.5 * self.log_var)
        return standard_normal_log_prob(eps) - 0.5 * self.log_var.sum() + log_det

    def elbo(self, log_target, n_samples: int = 256, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Monte Carlo flow ELBO ``E_q[log p~(z_K) - log q_K(z_K)]`` (a scalar) for a callable
        ``log_target: (n, D) -> (n,)``."""
        z, log_q = self.sample_and_log_prob(n_samples, generator=generator)
        return (log_target(z) - log_q).mean()


class IAFPosterior(nn.Module):
    r"""q(z_T | x): z_0 ~ N(\mu(x), diag \sigma^2(x)), then T IAF steps z_t = f_t(z_{t-1}; h(x))
    (:class:`MaskedAffineAutoregressive` with the encoder's features h(x) as context), run
    noise -> sample, the order reversed between steps so that every variable depends on every other:

    .. math:: \log q(z_T | x) = \log N(z_0; \mu, \sigma^2) - \sum_t \log|\det \partial z_t / \partial z_{t-1}|.

    ``forward(z_0, h) -> (z_T, \sum_t \log|\det|)``; ``inverse(z_T, h) -> (z_0, \log|\det \partial z_0 / \partial z_T|)``
    (``D`` sequential passes per step).

    Args:
        dim: H; n_steps: T; hidden: MADE width; context_dim: size of h(x).
    """

    def __init__(self, dim: int, n_steps: int = 2, hidden: int = 64, context_dim: int = 0):
        super().__init__()
        self.steps = nn.ModuleList(MaskedAffineAutoregressive(dim, hidden, context_dim) for _ in range(n_steps))

    def forward(self, z: torch.Tensor, context: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for i, step in enumerate(self.steps):
            if i > 0:
                z = z.flip(-1)
            z, ld = step(z, context)
            log_det = log_det + ld
        return z, log_det

    def inverse(self, z: torch.Tensor, context: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for i in reversed(range(len(self.steps))):
            z, ld = self.steps[i].inverse(z, context)
            log_det = log_det + ld
            if i > 0:
                z = z.flip(-1)
        return z, log_det


# --------------------------------------------------------------------------------------------
# Dequantization
# --------------------------------------------------------------------------------------------
def uniform_dequantize(x: torch.Tensor, n_levels: int, *, generator: Optional[torch.Generator] = None,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer levels ``x`` in ``0..L-1`` -> ``(x + u) / L`` in [0, 1) with u ~ U[0, 1) per entry."""
    u = torch.rand(x.shape, generator=generator, dtype=dtype, device=x.device)
    return (x.to(dtype) + u) / n_levels


class VariationalDequantizer(nn.Module):
    r"""q(u | x) on [0, 1)^D (Ho et al., 2019, Flow++): u = \sigma(\mu(x) + e^{\ell(x)} \epsilon),
    \epsilon ~ N(0, I), with \mu, \ell from an MLP of x / (L - 1):

    .. math:: \log q(u|x) = \log N(\epsilon; 0, I) - \sum_i \ell_i(x) - \sum_i \log\big(u_i (1 - u_i)\big).

    Args:
        dim: ``D`` (entries per data point, flattened); n_levels: ``L``; hidden: MLP width.
    """

    def __init__(self, dim: int, n_levels: int, hidden: int = 64):
        super().__init__()
        self.n_levels = n_levels
        self.net = mlp([dim, hidden, hidden, 2 * dim])
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor, *, generator: Optional[torch.Generator] = None):
        """``(u, log q(u | x))`` with ``u`` of ``x``'s shape and ``log q`` ``(B,)``."""
        flat = x.reshape(len(x), -1).to(self.net[0].weight.dtype)
        mean, log_std = self.net(flat / (self.n_levels - 1)).chunk(2, dim=-1)
        eps = torch.randn(flat.shape, generator=generator, dtype=flat.dtype, device=flat.device)
        a = mean + torch.exp(log_std) * eps
        u = torch.sigmoid(a)
        log_q = standard_normal_log_prob(eps) - log_std.sum(-1) + (F.softplus(-a) + F.softplus(a)).sum(-1)
        return u.reshape(x.shape), log_q


class DequantizedFlow(nn.Module):
    r"""A flow on dequantized levels: a valid lower bound on the **discrete** log-likelihood.

    With y = (x + u) / L in [0, 1)^D and the flow's density p(y),

    .. math:: \log P(x) = \log \int_{[0,1)^D} p\big(\tfrac{x+u}{L}\big) L^{-D} du
              \;\ge\; E_{q(u|x)}\big[\log p(y) - D \log L - \log q(u|x)\big]

    (Jensen; ``q`` uniform gives ``\log q = 0``). :meth:`log_prob` returns this bound, estimated
    with ``n_samples`` draws of ``u`` combined by log-mean-exp (still a lower bound in
    expectation, and tighter as ``n_samples`` grows).

    Args:
        flow: a :class:`Flow` on ``[0, 1)`` values of the data's shape.
        n_levels: ``L``; dequantizer: a :class:`VariationalDequantizer` (``None``: uniform).

    ``sample`` returns integer levels ``floor(L y)`` (int64) like the data.
    """

    def __init__(self, flow: Flow, n_levels: int, dequantizer: Optional[VariationalDequantizer] = None):
        super().__init__()
        self.flow, self.n_levels, self.dequantizer = flow, n_levels, dequantizer

    def _one_bound(self, x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        dtype = self.flow._ref().dtype
        n_dims = x[0].numel()
        if self.dequantizer is None:
            y, log_q = uniform_dequantize(x, self.n_levels, generator=generator, dtype=dtype), 0.0
        else:
            u, log_q = self.dequantizer(x, generator=generator)
            y = (x.to(dtype) + u) / self.n_levels
        return self.flow.log_prob(y) - n_dims * math.log(self.n_levels) - log_q

    def log_prob(self, x: torch.Tensor, n_samples: int = 1, *,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """A stochastic lower bound on ``log P(x)`` in nats, ``(B,)``."""
        bounds = torch.stack([self._one_bound(x, generator) for _ in range(n_samples)])  # (K, B)
        return torch.logsumexp(bounds, 0) - math.log(n_samples)

    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        y = self.flow.sample(n, generator=generator)
        return torch.clamp(torch.floor(y * self.n_levels), 0, self.n_levels - 1).long()

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(x).mean()


# --------------------------------------------------------------------------------------------
# The general baseline
# --------------------------------------------------------------------------------------------
def jacobian_log_det(fn, x: torch.Tensor) -> torch.Tensor:
    r"""\log|\det \partial fn(x) / \partial x| for one point ``x (D,)`` of any map ``fn: (D,) -> (D,)``
    by building the full ``D x D`` Jacobian with autograd and an LU-based ``slogdet``: O(D^3) time
    (and D backward passes), the cost a triangular Jacobian avoids (O(D): the sum of its diagonal's logs)."""
    jac = torch.autograd.functional.jacobian(fn, x)  # (D, D)
    return torch.linalg.slogdet(jac)[1]
