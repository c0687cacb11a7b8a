r"""Normalizing flows: invertible maps with a tractable Jacobian determinant.

Direction convention of the course: a transform maps **data to noise**,

.. math:: z = f(x), \qquad \log p(x) = \log p_Z(f(x)) + \log\left|\det \frac{\partial f}{\partial x}\right|,

``forward(x) -> (z, log_det)`` with ``log_det`` :math:`= \log|\det \partial z / \partial x|`, and
``inverse(z) -> (x, log_det)`` with ``log_det`` :math:`= \log|\det \partial x / \partial z|`;
both ``log_det`` are ``(...)`` for inputs ``(..., D)``.

**The exception, stated once: an inverse autoregressive flow used as a VAE posterior.** IAF
(Kingma et al., 2016) is cheap in the direction noise -> sample (one pass) and sequential in the
other, so a posterior q(z | x) only ever runs that direction: :meth:`IAFPosterior.forward` maps a
base draw :math:`z_0 \sim \mathcal N(\mu(x), \sigma^2(x))` to the posterior sample :math:`z_T` and
returns :math:`\log|\det \partial z_T / \partial z_0|`, so that

.. math:: \log q(z_T \mid x) = \log \mathcal N(z_0; \mu, \sigma^2) - \log\left|\det \frac{\partial z_T}{\partial z_0}\right|.

Its :meth:`IAFPosterior.inverse` (posterior sample -> base draw, ``D`` sequential passes per step)
is the data -> noise direction of the convention above; it evaluates :math:`\log q(z \mid x)` at
any given ``z``.

Used by: lecture 04_vae (the IAF posterior, :func:`gencourse.vae.make_vae` with ``iaf_steps > 0``);
flows: lecture 05 / assignment a4_flows (to come; they extend this module).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .nn import MADENet

__all__ = ["IAFStep", "IAFPosterior"]


class IAFStep(nn.Module):
    r"""One IAF step z' = g \odot z + (1 - g) \odot m,  g = sigmoid(s + GATE_BIAS), (m, s) = MADE(z, c).

    Because m_i and s_i depend on z_{<i} only (a :class:`gencourse.nn.MADENet` in the natural
    order), the Jacobian dz'/dz is triangular with diagonal g, so \log|\det dz'/dz| = \sum_i \log g_i.
    This is the numerically stable "LSTM-type" update of Kingma et al. (2016); the gate bias starts
    the step close to the identity.

    Direction (see the module docstring): :meth:`forward` is noise -> sample, ``z (..., H)`` ->
    ``(z', \log|\det dz'/dz| (...))``; :meth:`inverse` undoes it one variable at a time.

    Args:
        dim: H; hidden: width of the MADE's hidden layer; context_dim: size of the context c
            (e.g. encoder features; 0 for none).
    """

    GATE_BIAS = 2.0

    def __init__(self, dim: int, hidden: int = 64, context_dim: int = 0):
        super().__init__()
        self.made = MADENet(dim, (hidden,), n_params=2, context_dim=context_dim, activation=nn.ELU)

    def _shift_and_log_gate(self, z: torch.Tensor, context: Optional[torch.Tensor]):
        out = self.made(z, context)  # (..., H, 2)
        return out[..., 0], F.logsigmoid(out[..., 1] + self.GATE_BIAS)  # m, log g: (..., H) each

    def forward(self, z: torch.Tensor, context: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        m, log_gate = self._shift_and_log_gate(z, context)
        gate = torch.exp(log_gate)
        return gate * z + (1 - gate) * m, log_gate.sum(-1)

    def inverse(self, z_new: torch.Tensor, context: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``z' -> (z, \log|\det dz/dz'|)``: variable ``i`` solved once ``z_{<i}`` are known (H passes)."""
        z = torch.zeros_like(z_new)
        for i in range(z.shape[-1]):
            m, log_gate = self._shift_and_log_gate(z, context)  # entries <= i depend on z_{<i} only: final
            gate = torch.exp(log_gate[..., i])
            z = z.clone()
            z[..., i] = (z_new[..., i] - (1 - gate) * m[..., i]) / gate
        return z, -self._shift_and_log_gate(z, context)[1].sum(-1)


class IAFPosterior(nn.Module):
    r"""q(z_T | x): z_0 ~ N(\mu(x), diag \sigma^2(x)), z_t = f_t(z_{t-1}; h(x)),
    \log q(z_T | x) = \log N(z_0; \mu, \sigma^2) - \sum_t \log|\det dz_t / dz_{t-1}|.

    The order of the variables is reversed between steps (a permutation, |det| = 1), so that
    every variable gets to depend on every other one.

    Args:
        dim: H; n_steps: T; hidden: MADE width; context_dim: size of h(x).
    """

    def __init__(self, dim: int, n_steps: int = 2, hidden: int = 64, context_dim: int = 0):
        super().__init__()
        self.steps = nn.ModuleList(IAFStep(dim, hidden, context_dim) for _ in range(n_steps))

    def forward(self, z: torch.Tensor, context: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``z_0 (..., H)`` -> ``(z_T (..., H), log_det (...))`` with log_det = \\sum_t \\log|\\det dz_t/dz_{t-1}|."""
        log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for i, step in enumerate(self.steps):
            if i > 0:
                z = z.flip(-1)
            z, ld = step(z, context)
            log_det = log_det + ld
        return z, log_det

    def inverse(self, z: torch.Tensor, context: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``z_T (..., H)`` -> ``(z_0 (..., H), log_det (...))`` with log_det = \\log|\\det dz_0/dz_T|."""
        log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for i in reversed(range(len(self.steps))):
            z, ld = self.steps[i].inverse(z, context)
            log_det = log_det + ld
            if i > 0:
                z = z.flip(-1)
        return z, log_det
