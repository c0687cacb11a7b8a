r"""Hidden checks of assignment 4 (normalizing flows).

The student-facing objects keep the signatures of the assignment. Where those differ from
:mod:`gencourse.flows`, a thin adapter below expresses them with the reference code (imported
relatively, so the sealed copy stays sealed):

* :func:`uniform_affine_log_prob` is the density of ``y = a x + b``, ``x ~ U(0, 1)``, through the
  inverse of the library's :class:`~gencourse.flows.Affine`;
* :func:`flow_log_prob` is :meth:`gencourse.flows.Flow.log_prob` of a given transform with the
  standard normal base;
* :func:`chain_forward` and :func:`chain_inverse` are :class:`~gencourse.flows.Compose` of a list;
* the coupling layer is compared with :class:`gencourse.flows.AffineCoupling` itself: the
  notebook's class keeps its parameter names (``net.0``, ``net.2``, ``net.4``, ``log_gain``), so
  :func:`~gencourse.grading.spec.fill_parameters` gives both the same weights.

The cases and call adapters run inside the student's kernel while grading, where these adapters and
the reference code behind them are hidden (``hides``): they never use them. The transforms given
to ``flow_log_prob`` and to the chains are the small fixtures below (a scale-and-shift, an
invertible linear mixing, a sinh warp whose log-determinant differs between examples), with
parameters filled by ``fill_parameters`` so that their gradients are compared too. Edge cases: one
example, one dimension, float32 and float64, masks of both parities and a non-alternating one,
negative slopes, a base density far in the tail (|z| up to 60: ``exp(-z^2/2)`` underflows), scales
up to e^12 over 16 dimensions (the exponential of the total log-scale overflows float32), an empty
chain (the identity: log|det| zeros of shape (B,) in the input's dtype).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ...spec import Case, Check, fill_parameters

from ....flows import Affine, Compose, Flow

F64 = torch.float64

__all__ = ["CHECKS", "uniform_affine_log_prob", "flow_log_prob", "chain_forward", "chain_inverse",
           "ScaleShift", "Mixing", "SinhWarp", "MixThenWarp"]


# --------------------------------------------------------------------------------------------
# Adapters: the assignment's signatures on top of gencourse.flows
# --------------------------------------------------------------------------------------------
def uniform_affine_log_prob(y: torch.Tensor, a: float, b: float) -> torch.Tensor:
    r"""\log p_Y(y) for Y = a X + b, X ~ U(0, 1): -\log|a| on the image of [0, 1], -inf elsewhere."""
    step = Affine(a, b).to(device=y.device, dtype=y.dtype)
    x, log_det = step.inverse(y[..., None])  # x = (y - b) / a and log|dx/dy| = -log|a|
    inside = (x >= 0) & (x <= 1)
    return torch.where(inside, log_det[..., None], torch.full_like(x, -math.inf))[..., 0]


def flow_log_prob(transform, x: torch.Tensor) -> torch.Tensor:
    r"""\log p(x) = \log N(f(x); 0, I) + \log|\det \partial f / \partial x| for ``transform(x) -> (z, log_det)``."""
    return Flow(transform, x.shape[-1:]).log_prob(x)


def chain_forward(transforms, x: torch.Tensor):
    """``f_K o ... o f_1`` (f_1 first) and the summed log-determinants ``(B,)``."""
    return Compose(*transforms)(x)


def chain_inverse(transforms, z: torch.Tensor):
    """The inverse of :func:`chain_forward` (f_K undone first) and its log-determinant ``(B,)``."""
    return Compose(*transforms).inverse(z)


# --------------------------------------------------------------------------------------------
# Fixtures: transforms with known log-determinants, run in the student's kernel
# --------------------------------------------------------------------------------------------
class ScaleShift(nn.Module):
    r"""z = x e^{a} + b elementwise: \log|\det| = \sum_i a_i, the same for every example."""

    event_rank = 1

    def __init__(self, dim: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return x * torch.exp(self.log_scale) + self.shift, x.new_zeros(x.shape[:-1]) + self.log_scale.sum()

    def inverse(self, z):
        return (z - self.shift) * torch.exp(-self.log_scale), z.new_zeros(z.shape[:-1]) - self.log_scale.sum()


class Mixing(nn.Module):
    r"""z = W x with W = I + A: \log|\det| = \log|\det W| (A is filled with small values, so W is invertible)."""

    event_rank = 1

    def __init__(self, dim: int):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(dim, dim))

    def weight(self):
        return torch.eye(self.a.shape[0], dtype=self.a.dtype, device=self.a.device) + self.a

    def forward(self, x):
        w = self.weight()
        return x @ w.T, x.new_zeros(x.shape[:-1]) + torch.linalg.slogdet(w)[1]

    def inverse(self, z):
        w = self.weight()
        return torch.linalg.solve(w, z.T).T, z.new_zeros(z.shape[:-1]) - torch.linalg.slogdet(w)[1]


def _log_cosh(x):
    return x.abs() + F.softplus(-2 * x.abs()) - math.log(2.0)


class SinhWarp(nn.Module):
    r"""z = e^{a} \sinh(x) + b elementwise: \log|\det| = \sum_i (a_i + \log\cosh x_i), different for every example."""

    event_rank = 1

    def __init__(self, dim: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return torch.exp(self.log_scale) * torch.sinh(x) + self.shift, (self.log_scale + _log_cosh(x)).sum(-1)

    def inverse(self, z):
        x = torch.asinh((z - self.shift) * torch.exp(-self.log_scale))
        return x, -(self.log_scale + _log_cosh(x)).sum(-1)


class MixThenWarp(nn.Module):
    """A mixing and then a sinh warp in one forward pass (no inverse): a nonlinear map of all coordinates."""

    event_rank = 1

    def __init__(self, dim: int):
        super().__init__()
        self.mix, self.warp = Mixing(dim), SinhWarp(dim)

    def forward(self, x):
        h, ld1 = self.mix(x)
        z, ld2 = self.warp(h)
        return z, ld1 + ld2


FIXTURES = {"scale_shift": ScaleShift, "mix": Mixing, "warp": SinhWarp, "mix_warp": MixThenWarp}


def _fixture(name: str, dim: int, seed: int, like: torch.Tensor) -> nn.Module:
    return fill_parameters(FIXTURES[name](dim), seed=seed, scale=0.4).to(device=like.device, dtype=like.dtype)


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------
def _uniform_cases(gen):
    # no point lies on the boundary of a support, where < and <= would legitimately differ
    y1 = torch.tensor([0.5, 1.01, 1.7, 2.5, 2.99, 3.4], dtype=F64)
    y2 = torch.tensor([[2.0, 2.51, 2.7, 2.99], [3.2, 0.0, 2.6, -1.0], [2.9, 2.55, 4.0, 2.8]], dtype=F64)
    y3 = torch.rand(9, generator=gen) * 1.5  # float32; support [0.5, 0.75]
    y3[0], y3[1] = 0.6, 0.7
    y4 = torch.tensor([-1003.0, -1000.5, -500.0, -0.5, 1.0], dtype=F64)  # support [-1000, 0]
    return [Case((y1, 2.0, 1.0), label="y = 2x + 1 (support [1, 3], density 1/2)"),
            Case((y2, -0.5, 3.0), label="a = -0.5 < 0: support [2.5, 3], density 1/|a| = 2; y of shape (3, 4)"),
            Case((y3, 0.25, 0.5), label="float32 y, a = 0.25"),
            Case((y4, -1000.0, 0.0), label="a = -1000 (support [-1000, 0], density 1/1000)")]


def _flow_cases(gen):
    tail = torch.tensor([[50.0, -3.0], [0.5, 60.0], [-45.0, -55.0]], dtype=F64)
    tail32 = torch.tensor([[20.0, -0.3], [0.1, -25.0]])
    return [Case((torch.randn(5, 3, generator=gen, dtype=F64) * 1.5,), dict(transform="warp", seed=1),
                 label="a sinh warp, D = 3 (log|det| differs between examples)"),
            Case((torch.randn(4, 4, generator=gen, dtype=F64),), dict(transform="mix_warp", seed=2),
                 label="a linear mixing then a sinh warp, D = 4"),
            Case((torch.randn(1, 1, generator=gen),), dict(transform="scale_shift", seed=3),
                 label="one example, D = 1, float32"),
            Case((torch.randn(6, 2, generator=gen) * 2,), dict(transform="mix_warp", seed=4), label="float32, D = 2"),
            Case((tail,), dict(transform="scale_shift", seed=5),
                 label="x far in the tail, |z| up to 60 (exp(-z^2/2) underflows: stay in log space)"),
            Case((tail32,), dict(transform="scale_shift", seed=6),
                 label="float32, |z| up to 25 (exp(-z^2/2) underflows in float32)")]


def _call_flow_log_prob(impl, case):
    (x,) = case.args
    transform = _fixture(case.kwargs["transform"], x.shape[-1], case.kwargs["seed"], x)
    return impl(transform, x)


def _mask(*bits):
    return torch.tensor(bits, dtype=torch.float32)


def _coupling_cases(gen):
    wide = (torch.arange(32) % 2 == 0).float()  # 16 conditioning, 16 transformed dimensions
    return [Case((torch.randn(5, 2, generator=gen, dtype=F64),), dict(mask=_mask(1, 0), hidden=8, seed=1),
                 label="D = 2, mask (1, 0)"),
            Case((torch.randn(1, 2, generator=gen),), dict(mask=_mask(0, 1), hidden=8, seed=2),
                 label="one example, mask (0, 1), float32"),
            Case((torch.randn(4, 5, generator=gen, dtype=F64) * 2,), dict(mask=_mask(0, 1, 0, 1, 0), hidden=16, seed=3),
                 label="D = 5, mask (0, 1, 0, 1, 0)"),
            Case((torch.randn(3, 6, generator=gen, dtype=F64),), dict(mask=_mask(1, 1, 1, 0, 0, 0), hidden=12, seed=4),
                 label="D = 6, mask (1, 1, 1, 0, 0, 0) (not alternating)"),
            Case((torch.randn(3, 32, generator=gen) * 0.5,), dict(mask=wide, hidden=8, seed=5, log_gain=2.5, raw_bias=3.0),
                 label="float32, D = 32, log-scales near e^2.5 = 12 on 16 dimensions (|log det| near 190: "
                       "sum the log-scales, their exponentials' product overflows)")]


def _coupling(cls, case, like):
    kw = case.kwargs
    layer = fill_parameters(cls(kw["mask"], kw["hidden"]), seed=kw["seed"], scale=0.5)
    with torch.no_grad():
        params = dict(layer.named_parameters())
        if "log_gain" in kw:
            params["log_gain"].fill_(kw["log_gain"])
        if "raw_bias" in kw:  # the first D outputs of the last layer are the raw log-scales
            params["net.4.bias"][:kw["mask"].numel()] += kw["raw_bias"]
    return layer.to(device=like.device, dtype=like.dtype)


def _call_coupling_forward(cls, case):
    (x,) = case.args
    return _coupling(cls, case, x)(x)


def _call_coupling_inverse(cls, case):
    (y,) = case.args
    return _coupling(cls, case, y).inverse(y)


def _chain_cases(gen):
    return [Case((torch.randn(5, 3, generator=gen, dtype=F64),), dict(steps=("scale_shift", "mix", "warp"), seed=1),
                 label="scale-shift, mixing, sinh warp (D = 3)"),
            Case((torch.randn(4, 4, generator=gen, dtype=F64),), dict(steps=("warp", "mix", "warp", "scale_shift"), seed=2),
                 label="four steps, D = 4"),
            Case((torch.randn(1, 2, generator=gen),), dict(steps=("mix", "warp"), seed=3), label="one example, float32"),
            Case((torch.randn(3, 2, generator=gen, dtype=F64),), dict(steps=("warp",), seed=4), label="one step"),
            Case((torch.randn(3, 2, generator=gen, dtype=F64),), dict(steps=(), seed=5),
                 label="no steps: the identity, log|det| zeros of shape (B,) in the input's dtype")]


def _transforms(case, like):
    return [_fixture(name, like.shape[-1], case.kwargs["seed"] + 10 * i, like) for i, name in enumerate(case.kwargs["steps"])]


def _call_chain_forward(impl, case):
    (x,) = case.args
    return impl(_transforms(case, x), x)


def _call_chain_inverse(impl, case):
    (z,) = case.args
    return impl(_transforms(case, z), z)


CHECKS = [
    # y is data: the density is constant on its support, so only the values are specified
    Check("a4.uniform_affine", "grading.assignments.a4_flows.checks:uniform_affine_log_prob", _uniform_cases,
          what="uniform_affine_log_prob", rtol=1e-6, atol=1e-7, grad=(), hides=("flows:Affine",)),
    Check("a4.flow_log_prob", "grading.assignments.a4_flows.checks:flow_log_prob", _flow_cases, call=_call_flow_log_prob,
          what="flow_log_prob", rtol=1e-5, atol=1e-5, grad=(0,),
          hides=("flows:Flow.log_prob", "flows:Flow.base_log_prob")),
    Check("a4.coupling_forward", "flows:AffineCoupling", _coupling_cases, call=_call_coupling_forward,
          what="AffineCoupling.forward", outputs=("transformed points", "log-determinant"), rtol=1e-4, atol=1e-5, grad=(0,)),  # the mask is not differentiated
    Check("a4.coupling_inverse", "flows:AffineCoupling", _coupling_cases, call=_call_coupling_inverse,
          what="AffineCoupling.inverse", outputs=("inverted points", "log-determinant"), rtol=1e-4, atol=1e-5, grad=(0,)),
    Check("a4.chain_forward", "grading.assignments.a4_flows.checks:chain_forward", _chain_cases, call=_call_chain_forward,
          what="chain_forward", outputs=("transformed points", "log-determinant"), rtol=1e-5, atol=1e-6, grad=(0,), hides=("flows:Compose",)),
    Check("a4.chain_inverse", "grading.assignments.a4_flows.checks:chain_inverse", _chain_cases, call=_call_chain_inverse,
          what="chain_inverse", outputs=("inverted points", "log-determinant"), rtol=1e-5, atol=1e-6, grad=(0,), hides=("flows:Compose",)),
]
