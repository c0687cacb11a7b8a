r"""Hidden checks of assignment 2 (autoregressive models and PixelCNN).

The student-facing objects keep the signatures of the assignment. Where those differ from
:mod:`gencourse.autoregressive` and :mod:`gencourse.pixelcnn`, a thin adapter below expresses them
with the reference code (imported relatively, so the sealed copy stays sealed):

* :func:`made_degrees_even` is ``made_degrees(..., seed=None)``: hidden degrees spread evenly;
* :func:`causal_mask_2d` is ``causal_mask(k, type)[0, 0]``, one ``(k, k)`` kernel mask;
* :class:`GatedBlock` and :class:`TinyPixelCNN` are the assignment's small gated PixelCNN, built
  from the reference :class:`~gencourse.pixelcnn.MaskedConv2d` and
  :func:`~gencourse.pixelcnn.gated_activation`, with the sampler and ``log_prob`` of the reference;
* :func:`raster_sample` runs the reference sampler (``method="naive"``) on a :class:`LogitsOnly`
  view of a model, which is all the student's ``sample`` is given.
"""
import math

import torch
from torch import nn

from ....autoregressive import made_degrees
from ...spec import Case, Check, fill_parameters
from ....pixelcnn import MaskedConv2d, ImageAutoregressiveModel, causal_mask, gated_activation

F64 = torch.float64

__all__ = ["CHECKS", "made_degrees_even", "causal_mask_2d", "GatedBlock", "TinyPixelCNN", "LogitsOnly",
           "raster_sample"]


# --------------------------------------------------------------------------------------------
# Adapters: the assignment's signatures on top of the reference modules
# --------------------------------------------------------------------------------------------
def made_degrees_even(n_dims: int, hidden_sizes, order):
    r"""Degrees of a MADE with evenly spread hidden degrees: hidden unit ``k`` gets ``1 + k mod max(D-1, 1)``."""
    return made_degrees(n_dims, hidden_sizes, order, seed=None)


def causal_mask_2d(kernel_size: int, mask_type: str) -> torch.Tensor:
    """The ``(k, k)`` raster-order mask of type ``"A"`` or ``"B"``."""
    return causal_mask(kernel_size, mask_type)[0, 0]


class GatedBlock(nn.Module):
    r"""``h + proj(tanh(W_f * h) * sigmoid(W_g * h))`` with ``(W_f; W_g)`` one mask-B convolution to ``2C`` channels."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = MaskedConv2d(channels, 2 * channels, kernel_size, "B")
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.proj(gated_activation(self.conv(h)))


class TinyPixelCNN(ImageAutoregressiveModel):
    r"""Mask-A convolution, ``n_blocks`` gated mask-B blocks, a 1x1 convolution to ``n_levels`` logits."""

    def __init__(self, n_levels: int = 17, channels: int = 32, n_blocks: int = 3, kernel_size: int = 3,
                 first_kernel: int = 5, image_shape=(8, 8)):
        super().__init__(n_levels, image_shape, None)
        self.first = MaskedConv2d(1, channels, first_kernel, "A")
        self.blocks = nn.ModuleList(GatedBlock(channels, kernel_size) for _ in range(n_blocks))
        self.head = nn.Conv2d(channels, n_levels, 1)

    def logits(self, x: torch.Tensor, y=None) -> torch.Tensor:
        h = self.first(self._inputs(x))  # (B, C, H, W)
        for block in self.blocks:
            h = block(h)
        return self.head(h)  # (B, K, H, W)


class LogitsOnly:
    """What a sampler is given: ``logits(x)`` ``(n, 1, H, W) -> (n, K, H, W)``, ``n_levels``, ``image_shape``.

    It also carries what the reference sampler of :class:`gencourse.pixelcnn.ImageAutoregressiveModel` reads
    (``device``, ``_check_y``), so that sampler runs on it unchanged.
    """

    num_classes = None

    def __init__(self, net: nn.Module):
        self.n_levels, self.image_shape = net.n_levels, tuple(net.image_shape)
        self._net = net
        self.device = torch.device("cpu")

    def logits(self, x: torch.Tensor, y=None) -> torch.Tensor:
        return self._net.logits(x)

    def _check_y(self, y):
        return y


def raster_sample(model, n: int, generator: torch.Generator) -> torch.Tensor:
    """The reference sampler (pixel by pixel, whole image each time) on a :class:`LogitsOnly` model."""
    return ImageAutoregressiveModel.sample(model, n, generator=generator, method="naive")


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------
def _joint(gen, *shape):
    return torch.softmax(1.5 * torch.randn(math.prod(shape), generator=gen, dtype=F64), 0).reshape(shape)


def _factor_cases(gen):
    j3 = _joint(gen, 2, 3, 4)
    return [Case((j3, [0, 1, 2]), label="3 variables with 2, 3, 4 values, natural order"),
            Case((j3, [2, 0, 1]), label="same joint, order [2, 0, 1]"),
            Case((_joint(gen, 3, 3), [1, 0]), label="2 variables, reversed order"),
            Case((_joint(gen, 2, 2, 2, 2), [3, 1, 0, 2]), label="4 binary variables, order [3, 1, 0, 2]")]


def _log_likelihood_cases(gen):
    xb = (torch.rand(5, 8, generator=gen) > 0.5).to(F64)
    xc = torch.randint(0, 5, (4, 6), generator=gen)
    xl = (torch.rand(3, 10, generator=gen) > 0.5).float()
    return [Case((3 * torch.randn(5, 8, generator=gen, dtype=F64), xb), label="binary, logits (B, D) = (5, 8)"),
            Case((2 * torch.randn(4, 6, 5, generator=gen, dtype=F64), xc), label="5 levels, logits (B, D, K) = (4, 6, 5)"),
            Case((60 * torch.randn(3, 10, generator=gen), xl),
                 label="binary float32 logits as large as +-200 (stay in log space)"),
            Case((60 * torch.randn(2, 4, 3, generator=gen), torch.randint(0, 3, (2, 4), generator=gen)),
                 label="3 levels, float32 logits as large as +-200 (stay in log space)")]


def _degree_cases(gen):
    return [Case((4, [5], [0, 1, 2, 3]), label="D = 4, one hidden layer of 5, natural order"),
            Case((5, [7, 3], [2, 0, 4, 1, 3]), label="D = 5, hidden [7, 3], order [2, 0, 4, 1, 3]"),
            Case((3, [], [1, 2, 0]), label="D = 3, no hidden layer, order [1, 2, 0]"),
            Case((2, [3], [1, 0]), label="D = 2, hidden [3] (every hidden degree is 1)")]


def _mask_cases(gen):
    def degrees(d, hidden, order):
        return made_degrees_even(d, hidden, order)
    rand = made_degrees(6, [9, 8], torch.randperm(6, generator=gen).tolist(), seed=3)
    return [Case((degrees(4, [5], [0, 1, 2, 3]),), label="D = 4, hidden [5]"),
            Case((degrees(5, [7, 3], [2, 0, 4, 1, 3]),), label="D = 5, hidden [7, 3], order [2, 0, 4, 1, 3]"),
            Case((degrees(3, [], [1, 2, 0]),), label="no hidden layer (FVSBN), order [1, 2, 0]"),
            Case((rand,), label="D = 6, hidden [9, 8], random degrees and order")]


def _causal_mask_cases(gen):
    return [Case((k, t), label=f"{k}x{k}, type {t}") for k in (1, 3, 5, 7) for t in ("A", "B")]


def _masked_conv_cases(gen):
    def x(c, h, w):
        return torch.randn(2, c, h, w, generator=gen, dtype=F64)
    return [Case((x(2, 5, 6),), dict(in_channels=2, out_channels=3, kernel_size=3, mask_type="A"), label="2 -> 3 channels, 3x3, type A"),
            Case((x(2, 5, 6),), dict(in_channels=2, out_channels=3, kernel_size=3, mask_type="B"), label="2 -> 3 channels, 3x3, type B"),
            Case((x(1, 7, 7),), dict(in_channels=1, out_channels=4, kernel_size=5, mask_type="A"), label="1 -> 4 channels, 5x5, type A"),
            Case((x(3, 4, 5),), dict(in_channels=3, out_channels=2, kernel_size=7, mask_type="B"), label="3 -> 2 channels, 7x7, type B"),
            Case((x(3, 4, 4),), dict(in_channels=3, out_channels=2, kernel_size=1, mask_type="B"), label="1x1, type B")]


def _call_masked_conv(cls, case):
    (x,) = case.args
    kw = case.kwargs
    conv = cls(kw["in_channels"], kw["out_channels"], kw["kernel_size"], kw["mask_type"])
    conv = fill_parameters(conv, seed=1, scale=0.5).double().to(x.device)
    buffers = dict(conv.named_buffers())
    if "mask" not in buffers:
        raise ValueError("MaskedConv2d has no buffer named 'mask'; use self.register_buffer('mask', ...)")
    with torch.no_grad():
        return conv(x), buffers["mask"]


def _gated_cases(gen):
    return [Case((torch.randn(2, 6, 3, 4, generator=gen, dtype=F64) * 2,), label="(B, 2C, H, W) = (2, 6, 3, 4)"),
            Case((torch.randn(5, 8, generator=gen, dtype=F64) * 2,), label="(B, 2C) = (5, 8)"),
            Case((torch.randn(1, 4, 2, 2, generator=gen) * 20,), label="float32, large values")]


def _block_cases(gen):
    return [Case((torch.randn(2, 3, 5, 5, generator=gen, dtype=F64),), dict(channels=3, kernel_size=3), label="C = 3, 3x3"),
            Case((torch.randn(1, 4, 6, 4, generator=gen, dtype=F64),), dict(channels=4, kernel_size=5), label="C = 4, 5x5")]


def _call_block(cls, case):
    (x,) = case.args
    block = fill_parameters(cls(case.kwargs["channels"], case.kwargs["kernel_size"]), seed=2, scale=0.4)
    block = block.double().to(x.device)
    with torch.no_grad():
        return block(x)


def _pixelcnn_cases(gen):
    k1 = dict(n_levels=4, channels=6, n_blocks=2, kernel_size=3, first_kernel=5, image_shape=(5, 6))
    k2 = dict(n_levels=17, channels=8, n_blocks=1, kernel_size=3, first_kernel=3, image_shape=(8, 8))
    return [Case((torch.randint(0, 4, (3, 1, 5, 6), generator=gen),), k1, label="4 levels, 5x6 images, 2 blocks"),
            Case((torch.randint(0, 17, (2, 1, 8, 8), generator=gen),), k2, label="17 levels, 8x8 images, 1 block")]


def _call_pixelcnn(cls, case):
    # float32 (the model converts its input with x.float()); TF32 convolutions, cuDNN's default on recent
    # GPUs, would round to about 1e-3, so they are switched off for the comparison.
    (x,) = case.args
    model = fill_parameters(cls(**case.kwargs), seed=4, scale=0.3).to(x.device)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            return model.logits(x), model.log_prob(x)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


def _bpd_cases(gen):
    return [Case((torch.rand(6, generator=gen, dtype=F64) * 200 + 50, 64), label="nll of 6 images (B,), D = 64"),
            Case((123.4, 784), label="a Python float, D = 784"),
            Case((torch.rand(2, 3, generator=gen, dtype=F64) * 10, 1), label="(2, 3) tensor, D = 1")]


def _sample_cases(gen):
    return [Case((), dict(n=5, seed=11, net=dict(n_levels=4, channels=6, n_blocks=2, first_kernel=3, image_shape=(4, 5))),
                 label="5 images of 4x5 with 4 levels"),
            Case((), dict(n=3, seed=12, net=dict(n_levels=17, channels=8, n_blocks=1, first_kernel=5, image_shape=(8, 8))),
                 label="3 digits-sized images with 17 levels")]


def _call_sample(impl, case):
    # Sampling always runs on the CPU: CPU and CUDA generators give different random numbers.
    kw = case.kwargs
    net = fill_parameters(TinyPixelCNN(**kw["net"]), seed=kw["seed"], scale=0.6)
    gen = torch.Generator().manual_seed(kw["seed"])
    with torch.no_grad():
        out = impl(LogitsOnly(net), kw["n"], gen)
    return out


CHECKS = [
    Check("a2.chain_rule_factors", "autoregressive:chain_rule_factors", _factor_cases,
          what="chain_rule_factors", rtol=1e-8, atol=1e-12),
    Check("a2.log_likelihood", "autoregressive:chain_rule_log_likelihood", _log_likelihood_cases,
          what="chain_rule_log_likelihood", rtol=1e-5, atol=1e-6),
    Check("a2.made_degrees", "grading.assignments.a2_autoregressive.checks:made_degrees_even", _degree_cases,
          what="made_degrees", rtol=0, atol=0),
    Check("a2.made_masks", "autoregressive:made_masks", _mask_cases, what="made_masks", rtol=0, atol=0),
    Check("a2.causal_mask", "grading.assignments.a2_autoregressive.checks:causal_mask_2d", _causal_mask_cases,
          what="causal_mask", rtol=0, atol=0),
    Check("a2.masked_conv", "pixelcnn:MaskedConv2d", _masked_conv_cases, call=_call_masked_conv,
          what="MaskedConv2d (output and mask buffer)", rtol=1e-8, atol=1e-10),
    Check("a2.gated_activation", "pixelcnn:gated_activation", _gated_cases,
          what="gated_activation", rtol=1e-6, atol=1e-7),
    Check("a2.gated_block", "grading.assignments.a2_autoregressive.checks:GatedBlock", _block_cases, call=_call_block,
          what="GatedBlock", rtol=1e-8, atol=1e-10),
    Check("a2.pixelcnn", "grading.assignments.a2_autoregressive.checks:TinyPixelCNN", _pixelcnn_cases, call=_call_pixelcnn,
          what="TinyPixelCNN (logits and log_prob)", rtol=1e-4, atol=1e-4),
    Check("a2.bits_per_dim", "pixelcnn:bits_per_dim", _bpd_cases, what="bits_per_dim", rtol=1e-10, atol=1e-12),
    Check("a2.sample", "grading.assignments.a2_autoregressive.checks:raster_sample", _sample_cases, call=_call_sample,
          what="sample", rtol=0, atol=0),
]
