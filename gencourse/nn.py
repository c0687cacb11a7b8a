r"""Shared network building blocks: an MLP, a masked linear layer and the MADE network core.

A MADE (Germain et al., 2015) is an MLP whose weight matrices are multiplied by 0/1 masks built
from *degrees*: input ``d`` gets degree :math:`m(d)`, its 1-based position in the ordering; hidden
unit ``k`` of layer ``l`` gets a degree :math:`m_l(k) \in \{1, \dots, D-1\}`; and

.. math:: M^{(l)}_{kj} = [\,m_l(k) \ge m_{l-1}(j)\,], \qquad
          M^{\text{out}}_{dj} = [\,m(d) > m_L(j)\,],

so that output ``d`` can only be reached from the inputs that come before ``d``: every conditional
:math:`p(x_d \mid x_{<d})` from ONE forward pass. :class:`MADENet` is that network, written once
and shared by the autoregressive :class:`gencourse.autoregressive.MADE` (and its hidden-layer-free
special case, the FVSBN), the VAE's autoregressive decoder :class:`gencourse.vae.MADEDecoder` and
the IAF conditioner :class:`gencourse.flows.IAFStep`.

Used by: lecture 02_autoregressive (MADE degrees and masks), lecture 04_vae (the VAE's MLPs, its
MADE decoder and IAF posterior); assignment a2_autoregressive (``made_degrees``, ``made_masks``
are graded), a3_vae (the reference VAE's MLPs); flows (lecture 05 / a4_flows, to come).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["mlp", "MaskedLinear", "made_degrees", "made_masks", "MADENet", "randomize_"]


def mlp(sizes: Sequence[int], activation: Optional[Callable[[], nn.Module]] = nn.ReLU, dropout: float = 0.0,
        final_activation: bool = False) -> nn.Sequential:
    """``Linear(sizes[0], sizes[1])``, activation, dropout, ..., ``Linear(sizes[-2], sizes[-1])``.

    Args:
        sizes: widths, input first.
        activation: a factory of the nonlinearity placed after every hidden layer (``None``: a
            purely linear network).
        dropout: dropout rate after each hidden activation (never after the last layer).
        final_activation: also apply the nonlinearity after the last layer (a feature extractor).
    """
    layers: list[nn.Module] = []
    n = len(sizes) - 1
    for i in range(n):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        last = i == n - 1
        if activation is not None and (not last or final_activation):
            layers.append(activation())
        if dropout > 0 and not last:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MaskedLinear(nn.Linear):
    r"""``y = (M \odot W) x + b``: ``nn.Linear`` whose weight is multiplied by an ``(out, in)`` mask buffer.

    The mask starts as all ones (or ``mask``) and can be replaced with :meth:`set_mask`, e.g. to
    switch a MADE to another ordering.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 mask: Optional[torch.Tensor] = None):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", torch.ones(out_features, in_features))
        if mask is not None:
            self.set_mask(mask)

    def set_mask(self, mask: torch.Tensor) -> None:
        """Install ``mask`` ``(out, in)`` (in the buffer's dtype and on its device).

        The buffer is replaced, not overwritten in place: a graph built with the previous mask (a
        MADE switches connectivity between computing a loss and back-propagating it) keeps it.
        """
        self.mask = mask.to(self.mask).clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


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


class MADENet(nn.Module):
    r"""The MADE network: ``P`` numbers per variable, each depending only on the earlier variables.

    .. math:: h^{(1)} = a\big((M^{(1)} \odot W^{(1)})\, x + V c\big), \quad
              h^{(l)} = a\big((M^{(l)} \odot W^{(l)})\, h^{(l-1)}\big), \quad
              o = (M^{\text{out}} \odot W^{\text{out}})\, h^{(L)} + b

    with masks from :func:`made_degrees` and :func:`made_masks`; output unit ``p D + d`` has the
    degree of variable ``d``. The optional context ``c`` (e.g. a VAE latent or encoder features)
    enters the first hidden layer unmasked: it may influence every output. Without hidden layers
    the network is one masked linear map (an FVSBN).

    Args:
        n_dims: ``D`` autoregressive variables.
        hidden_sizes: widths of the masked hidden layers (``()`` for none).
        n_params: ``P`` outputs per variable.
        order: the ordering of the variables (default: natural).
        seed: seeds the hidden degrees; ``None`` spreads them evenly (deterministic).
        context_dim: size of ``c`` (0: no context).
        activation: factory of the hidden nonlinearity; dropout: rate after each hidden layer.
        head_bias: whether the output layer has a bias ``b``.

    Forward: ``x (..., D)`` and ``context (..., C)`` (broadcastable with ``x``'s leading dims) ->
    ``(..., D, P)``.
    """

    def __init__(self, n_dims: int, hidden_sizes: Sequence[int] = (), n_params: int = 1,
                 order: Optional[Sequence[int]] = None, seed: Optional[int] = None, context_dim: int = 0,
                 activation: Callable[[], nn.Module] = nn.ReLU, dropout: float = 0.0, head_bias: bool = True):
        super().__init__()
        self.n_dims, self.n_params, self.hidden_sizes = n_dims, n_params, list(hidden_sizes)
        if context_dim > 0 and not self.hidden_sizes:
            raise ValueError("a context needs at least one hidden layer to enter")
        self.context = nn.Linear(context_dim, self.hidden_sizes[0], bias=False) if context_dim > 0 else None  # V c
        sizes = [n_dims, *self.hidden_sizes]
        self.hidden = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = MaskedLinear(sizes[-1], n_params * n_dims, bias=head_bias)
        self.act, self.drop = activation(), nn.Dropout(dropout)
        self.set_masks(order, seed)

    def set_masks(self, order: Optional[Sequence[int]] = None, seed: Optional[int] = None) -> list[torch.Tensor]:
        """Install the connectivity of ``order`` and hidden degrees from ``seed``; returns the degrees
        (the output degrees repeated ``P`` times)."""
        degrees = made_degrees(self.n_dims, self.hidden_sizes, order, seed)
        degrees[-1] = degrees[-1].repeat(self.n_params)  # output unit p * D + d has the degree of d
        for layer, mask in zip([*self.hidden, self.head], made_masks(degrees)):
            layer.set_mask(mask)
        return degrees

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        if (self.context is None) != (context is None):
            raise ValueError("pass a context exactly when the network was built with context_dim > 0")
        h = x
        for i, layer in enumerate(self.hidden):
            h = layer(h)  # (..., H_l)
            if i == 0 and context is not None:
                h = h + self.context(context)  # the context's part, unmasked
            h = self.drop(self.act(h))
        out = self.head(h)  # (..., P * D)
        return out.unflatten(-1, (self.n_params, self.n_dims)).transpose(-1, -2)  # (..., D, P)


def randomize_(module: nn.Module, std: float = 0.3, seed: int = 0) -> nn.Module:
    """A fixed random module for checks: N(0, std^2) noise added to every parameter (layers that
    start as the identity, such as flow couplings, move away from it), gradients off, eval mode
    (so that a data-initialised layer such as an ActNorm does not initialise itself). In place;
    returns ``module``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device))
    return module.requires_grad_(False).eval()
