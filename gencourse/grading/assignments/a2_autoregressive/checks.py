r"""Hidden checks of assignment 2 (autoregressive models and PixelCNN).

The student-facing objects keep the signatures of the assignment. Where those differ from
:mod:`gencourse.autoregressive` and :mod:`gencourse.pixelcnn`, a thin adapter below expresses them
with the reference code (imported relatively, so the sealed copy stays sealed):

* :func:`made_degrees_even` is ``made_degrees(..., seed=None)``: hidden degrees spread evenly;
* :func:`causal_mask_2d` is ``causal_mask(k, type)[0, 0]``, one ``(k, k)`` kernel mask;
* :class:`GatedBlock` and :class:`TinyPixelCNN` are the assignment's small gated PixelCNN, built
  from the reference :class:`~gencourse.pixelcnn.MaskedConv2d` and
  :func:`~gencourse.pixelcnn.gated_activation`, with the sampler and ``log_prob`` of the reference;
* :func:`nade_logits` and :class:`NADEModel` are the library's :class:`~gencourse.autoregressive.NADE`
  (binary, natural order) with the assignment's parameter shapes ``W (D, H)``, ``c (H,)``, ``V (D, H)``, ``b (D,)``;
* ``GatedStackLayer`` is compared with :class:`gencourse.pixelcnn.GatedLayer` itself (same attribute names and
  cropped kernel shapes), and graded a second time by its receptive field: the input-gradient dependence map of
  a stack of several layers over a whole image must be exactly the raster-earlier pixels (no blind spot, no
  future);
* the sampler is graded by its distribution, never by the reference's random stream: :data:`SAMPLE_DRAWS`
  images are drawn from small :class:`CausalFixture` models whose joint is known exactly
  (:func:`joint_table`, by enumeration), with a seeded generator and the global generators seeded too, and a
  chi-square test (:func:`chi_square`) fails the sampler below p = :data:`FALSE_FAILURE`. What is compared
  with the reference (:func:`raster_sample` on a :class:`LogitsOnly` view) is then the exact joint itself.

The cases and call adapters run inside the student's kernel while grading, where these adapters and
the reference code behind them are hidden (``hides``): they never use them. The sampler's model is a
:class:`CausalFixture` (shifted copies of the image, not a masked convolution), the degrees of the
mask cases are written out or drawn here. Edge cases: binary data given as bool, int64 and float,
per-example logits thousands apart (a max over the whole batch underflows), float32
pre-activations of +-100 (a hand-written tanh overflows), a variable with a single value, one
dimension.
"""
import itertools
import math

import torch
from torch import nn

import torch.nn.functional as F

from ....autoregressive import NADE, chain_rule_log_likelihood, made_degrees
from ...spec import Case, Check, CheckFailed, fill_parameters, seeded
from ....pixelcnn import MaskedConv2d, ImageAutoregressiveModel, causal_mask, gated_activation

F64 = torch.float64

__all__ = ["CHECKS", "made_degrees_even", "causal_mask_2d", "nade_logits", "NADEModel", "GatedBlock", "TinyPixelCNN",
           "LogitsOnly", "CausalFixture", "raster_sample", "joint_table", "chi_square"]

#: images drawn in each distribution check of the sampler
SAMPLE_DRAWS = 20_000
#: a correct sampler fails the chi-square test of a case with this probability (at most)
FALSE_FAILURE = 1e-6


# --------------------------------------------------------------------------------------------
# Adapters: the assignment's signatures on top of the reference modules
# --------------------------------------------------------------------------------------------
def made_degrees_even(n_dims: int, hidden_sizes, order):
    r"""Degrees of a MADE with evenly spread hidden degrees: hidden unit ``k`` gets ``1 + k mod max(D-1, 1)``."""
    return made_degrees(n_dims, hidden_sizes, order, seed=None)


def causal_mask_2d(kernel_size: int, mask_type: str) -> torch.Tensor:
    """The ``(k, k)`` raster-order mask of type ``"A"`` or ``"B"``."""
    return causal_mask(kernel_size, mask_type)[0, 0]


def nade_logits(x: torch.Tensor, W: torch.Tensor, c: torch.Tensor, V: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""The logits ``(B, D)`` of a binary NADE in the natural order, from the library's
    :class:`~gencourse.autoregressive.NADE` with its parameters replaced by ``W (D, H)``, ``c (H,)``,
    ``V (D, H)`` and ``b (D,)`` (the library keeps one output per dimension in a last axis of size 1)."""
    D, H = W.shape
    with torch.random.fork_rng(devices=[]):  # the constructor draws weights: leave the caller's stream alone
        net = NADE(D, hidden=H).to(W.device)
    for name, value in (("W", W), ("c", c), ("V", V[..., None]), ("b", b[:, None])):
        delattr(net, name)  # a plain tensor in place of the parameter, so gradients reach the arguments
        setattr(net, name, value)
    return net.params(x.to(W.dtype))[..., 0]


class NADEModel(nn.Module):
    r"""The assignment's binary NADE: parameters ``W (D, H)``, ``c (H,)``, ``V (D, H)``, ``b (D,)``;
    ``log_prob`` sums the Bernoulli log conditionals of :func:`nade_logits`, ``loss`` is the mean NLL."""

    def __init__(self, n_dims: int = 64, hidden: int = 64):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(n_dims, hidden))
        self.c = nn.Parameter(torch.zeros(hidden))
        self.V = nn.Parameter(torch.zeros(n_dims, hidden))
        self.b = nn.Parameter(torch.zeros(n_dims))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return chain_rule_log_likelihood(nade_logits(x, self.W, self.c, self.V, self.b), x.to(self.W.dtype))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(x).mean()


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


def _shifted(v: torch.Tensor, di: int, dj: int) -> torch.Tensor:
    """``out[..., i, j] = v[..., i - di, j - dj]``, zero outside the image."""
    H, W = v.shape[-2:]
    left = max(dj, 0)
    p = F.pad(v, (left, max(-dj, 0), di, 0))
    return p[..., :H, left - dj:left - dj + W]


class CausalFixture(nn.Module):
    """The model the hidden sampler test draws from: raster-order causal, on images of any height.

    The logits of pixel ``(i, j)`` are a fixed random function of the pixels ``(i, j-1)``,
    ``(i, j-2)`` and ``(i-1, j-1..j+1)``, read from shifted copies of the image (so it never uses a
    masked convolution, a graded item). Weights come from ``seed``.
    """

    SHIFTS = ((0, 1), (0, 2), (1, -1), (1, 0), (1, 1))

    def __init__(self, n_levels: int, image_shape, seed: int, scale: float = 1.0):
        super().__init__()
        self.n_levels, self.image_shape = n_levels, tuple(image_shape)
        gen = torch.Generator().manual_seed(seed)
        f = len(self.SHIFTS)
        self.register_buffer("w_in", torch.randn(f, 2 * f, generator=gen) * scale)
        self.register_buffer("w_out", torch.randn(2 * f, n_levels, generator=gen) * scale)
        self.register_buffer("bias", torch.randn(n_levels, generator=gen) * 0.5)

    def logits(self, x: torch.Tensor, y=None) -> torch.Tensor:
        v = x.float() / (self.n_levels - 1)  # (n, 1, H, W)
        feats = torch.cat([_shifted(v, di, dj) for di, dj in self.SHIFTS], 1)  # (n, F, H, W)
        hidden = torch.tanh(torch.einsum("nfhw,fg->nghw", feats, self.w_in) - 0.5 * self.w_in.sum(0)[:, None, None])
        return torch.einsum("nghw,gk->nkhw", hidden, self.w_out) + self.bias[:, None, None]


def raster_sample(model, n: int, generator: torch.Generator) -> torch.Tensor:
    """The reference sampler (pixel by pixel, whole image each time) on a :class:`LogitsOnly` model."""
    return ImageAutoregressiveModel.sample(model, n, generator=generator, method="naive")


def joint_table(net: nn.Module) -> torch.Tensor:
    r"""The exact joint of a small causal model by brute force: ``(K^{HW},)`` float64 probabilities of
    every image, indexed by its pixels read in raster order as the digits of a base-``K`` number.

    Each image's logits come from one pass of the model on that image, and since the logits of pixel
    ``(i, j)`` only read earlier pixels, :math:`p(x) = \prod_{ij} \mathrm{softmax}(l_{ij}(x))_{x_{ij}}`."""
    K, (H, W) = net.n_levels, net.image_shape
    images = torch.tensor(list(itertools.product(range(K), repeat=H * W)), dtype=torch.float64).view(-1, 1, H, W)
    with torch.no_grad():
        log_cond = torch.log_softmax(net.logits(images).double(), dim=1)  # (K^HW, K, H, W)
    picked = log_cond.gather(1, images.long()).flatten(1).sum(1)  # (K^HW,): log p(image)
    return picked.exp()


def chi_square(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0):
    """Pearson's goodness-of-fit test of ``counts`` against ``probs``: ``(statistic, degrees of freedom,
    p-value)``. Cells expected fewer than ``min_expected`` times are pooled into one, so that the
    chi-square law of the statistic holds."""
    from scipy.stats import chi2

    n = float(counts.sum())
    expected = n * probs.double()
    small = expected < min_expected
    obs = torch.cat([counts[~small].double(), counts[small].double().sum().reshape(1)])
    exp = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    if not bool(small.any()):
        obs, exp = obs[:-1], exp[:-1]
    stat = float(((obs - exp) ** 2 / exp).sum())
    dof = len(exp) - 1
    return stat, dof, float(chi2.sf(stat, dof))


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
            Case((_joint(gen, 2, 2, 2, 2), [3, 1, 0, 2]), label="4 binary variables, order [3, 1, 0, 2]"),
            Case((_joint(gen, 3, 1, 2), [1, 2, 0]), label="a variable with a single value, order [1, 2, 0]")]


def _log_likelihood_cases(gen):
    xb = (torch.rand(5, 8, generator=gen) > 0.5).to(F64)
    xc = torch.randint(0, 5, (4, 6), generator=gen)
    xl = (torch.rand(3, 10, generator=gen) > 0.5).float()
    offsets = torch.tensor([-3000.0, 0.0, 2500.0], dtype=F64)[:, None, None]  # one scale per example
    return [Case((3 * torch.randn(5, 8, generator=gen, dtype=F64), xb), label="binary, logits (B, D) = (5, 8)"),
            Case((3 * torch.randn(5, 8, generator=gen, dtype=F64), xb.bool()), label="binary data given as bool"),
            Case((3 * torch.randn(5, 8, generator=gen), xb.long()), label="binary data given as int64, float32 logits"),
            Case((2 * torch.randn(3, 4, 6, generator=gen, dtype=F64) + offsets, torch.randint(0, 6, (3, 4), generator=gen)),
                 label="6 levels, the logits of each example offset by -3000, 0 and +2500 (normalise per example)"),
            Case((torch.randn(1, 1, generator=gen, dtype=F64), torch.ones(1, 1, dtype=F64)), label="B = D = 1"),
            Case((2 * torch.randn(4, 6, 5, generator=gen, dtype=F64), xc), label="5 levels, logits (B, D, K) = (4, 6, 5)"),
            Case((60 * torch.randn(3, 10, generator=gen), xl),
                 label="binary float32 logits as large as +-200 (stay in log space)"),
            Case((60 * torch.randn(2, 4, 3, generator=gen), torch.randint(0, 3, (2, 4), generator=gen)),
                 label="3 levels, float32 logits as large as +-200 (stay in log space)")]


def _degree_cases(gen):
    return [Case((4, [5], [0, 1, 2, 3]), label="D = 4, one hidden layer of 5, natural order"),
            Case((1, [3], [0]), label="D = 1, hidden [3]"),
            Case((5, [7, 3], [2, 0, 4, 1, 3]), label="D = 5, hidden [7, 3], order [2, 0, 4, 1, 3]"),
            Case((3, [], [1, 2, 0]), label="D = 3, no hidden layer, order [1, 2, 0]"),
            Case((2, [3], [1, 0]), label="D = 2, hidden [3] (every hidden degree is 1)")]


def _random_degrees(gen, d, hidden):
    """Degrees with a random order and hidden degrees drawn at random in ``1..D-1`` (not spread evenly)."""
    deg_in = torch.randperm(d, generator=gen) + 1
    return [deg_in] + [torch.randint(1, max(d - 1, 1) + 1, (h,), generator=gen) for h in hidden] + [deg_in.clone()]


def _mask_cases(gen):
    def t(*v):
        return torch.tensor(v, dtype=torch.int64)
    return [Case(([t(1, 2, 3, 4), t(1, 2, 3, 1, 2), t(1, 2, 3, 4)],), label="D = 4, hidden [5]"),
            Case(([t(2, 4, 1, 5, 3), t(1, 2, 3, 4, 1, 2, 3), t(1, 2, 3), t(2, 4, 1, 5, 3)],),
                 label="D = 5, hidden [7, 3], order [2, 0, 4, 1, 3]"),
            Case(([t(3, 1, 2), t(3, 1, 2)],), label="no hidden layer (FVSBN), order [1, 2, 0]"),
            Case((_random_degrees(gen, 6, [9, 8]),), label="D = 6, hidden [9, 8], random degrees and order")]


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
    return conv(x), buffers["mask"]


def _gated_cases(gen):
    return [Case((torch.randn(2, 6, 3, 4, generator=gen, dtype=F64) * 2,), label="(B, 2C, H, W) = (2, 6, 3, 4)"),
            Case((torch.randn(5, 8, generator=gen, dtype=F64) * 2,), label="(B, 2C) = (5, 8)"),
            Case((torch.randn(1, 4, 2, 2, generator=gen) * 20,), label="float32, large values"),
            Case((torch.tensor([[-100.0, 100.0, 60.0, -60.0], [3.0, -100.0, 100.0, 0.5]]),),
                 label="float32 pre-activations of +-100 (tanh and sigmoid must not overflow)")]


def _nade_cases(gen):
    def params(d, h, dtype=F64, scale=1.0):
        return tuple(scale * torch.randn(*shape, generator=gen, dtype=dtype) for shape in ((d, h), (h,), (d, h), (d,)))

    def bits(b, d, dtype=F64):
        return (torch.rand(b, d, generator=gen) > 0.5).to(dtype)
    return [Case((bits(5, 6),) + params(6, 4), label="B = 5, D = 6, H = 4"),
            Case((bits(3, 9, torch.float32),) + params(9, 7, torch.float32), label="float32, D = 9, H = 7"),
            Case((bits(4, 1),) + params(1, 3), label="D = 1: the only conditional sees c alone"),
            Case((bits(2, 5),) + params(5, 1, scale=3.0), label="H = 1, large weights"),
            Case((torch.ones(2, 8, dtype=F64),) + params(8, 5), label="all pixels on")]


def _nade_model_cases(gen):
    def bits(b, d):
        return (torch.rand(b, d, generator=gen) > 0.5).float()
    return [Case((bits(6, 10),), dict(n_dims=10, hidden=5), label="D = 10, H = 5"),
            Case((bits(3, 64),), dict(n_dims=64, hidden=16), label="D = 64, H = 16")]


def _call_nade_model(cls, case):
    (x,) = case.args
    model = fill_parameters(cls(**case.kwargs), seed=6, scale=0.5).to(x.device)
    return model.log_prob(x), model.loss(x)


def _stack_cases(gen):
    def x(c, h, w):
        return torch.randn(2, c, h, w, generator=gen, dtype=F64)
    return [Case((x(3, 5, 6), x(3, 5, 6)), dict(channels=3, kernel_size=3), label="C = 3, 3x3, 5x6 images"),
            Case((x(2, 4, 7), x(2, 4, 7)), dict(channels=2, kernel_size=5), label="C = 2, 5x5, 4x7 images"),
            Case((x(1, 1, 4), x(1, 1, 4)), dict(channels=1, kernel_size=3), label="C = 1, one row")]


def _call_stack(cls, case):
    v, h = case.args
    layer = fill_parameters(cls(case.kwargs["channels"], case.kwargs["kernel_size"]), seed=5, scale=0.4)
    return layer.double().to(v.device)(v, h)


def _field_cases(gen):
    return [Case((), dict(channels=2, kernel_size=3, n_layers=5, image_shape=(4, 5)),
                 label="5 layers (C = 2, 3x3) on 4x5 images, first layer: the image shifted down / right by one"),
            Case((), dict(channels=2, kernel_size=5, n_layers=3, image_shape=(5, 6)),
                 label="3 layers (C = 2, 5x5) on 5x6 images, first layer: the image shifted down / right by one")]


def _call_field(cls, case):
    """The dependence map of a stack of ``n_layers`` layers: ``(HW, HW)`` bool, entry ``(p, q)`` true when
    the horizontal output at pixel ``p`` (raster index) has a nonzero gradient with respect to input pixel ``q``.

    The first layer is strictly causal and built here without graded code: the vertical stack starts from
    the image shifted down by one row, the horizontal stack from the image shifted right by one column.
    A stack of correct layers this deep sees exactly the raster-earlier pixels: the map is strictly lower
    triangular and full below the diagonal, so a blind spot, a stack that sees no row above, or one that
    sees the future all change it."""
    kw = case.kwargs
    C, (H, W) = kw["channels"], kw["image_shape"]
    layers = [fill_parameters(cls(C, kw["kernel_size"]), seed=20 + n, scale=0.5).double()
              for n in range(kw["n_layers"])]
    spread = torch.linspace(0.5, 1.5, C, dtype=F64)[None, :, None, None]  # one input channel to C
    x = (torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(3), dtype=F64) + 0.5).requires_grad_(True)
    with torch.enable_grad():
        v = F.pad(x, (0, 0, 1, 0))[:, :, :H] * spread  # row i holds row i - 1 of the image
        h = F.pad(x, (1, 0, 0, 0))[:, :, :, :W] * spread  # column j holds column j - 1
        for layer in layers:
            v, h = layer(v, h)
        if not isinstance(h, torch.Tensor) or tuple(h.shape) != (1, C, H, W):
            raise CheckFailed(f"its horizontal output has shape {tuple(getattr(h, 'shape', ()))}; "
                              f"expected {(1, C, H, W)}")
        rows = []
        for p in range(H * W):
            (g,) = torch.autograd.grad(h[0, :, p // W, p % W].sum(), x, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros(H * W, dtype=torch.bool) if g is None else g.flatten() != 0)
    return torch.stack(rows)


def _block_cases(gen):
    return [Case((torch.randn(2, 3, 5, 5, generator=gen, dtype=F64),), dict(channels=3, kernel_size=3), label="C = 3, 3x3"),
            Case((torch.randn(1, 4, 6, 4, generator=gen, dtype=F64),), dict(channels=4, kernel_size=5), label="C = 4, 5x5")]


def _call_block(cls, case):
    (x,) = case.args
    block = fill_parameters(cls(case.kwargs["channels"], case.kwargs["kernel_size"]), seed=2, scale=0.4)
    block = block.double().to(x.device)
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
        return model.logits(x), model.log_prob(x)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


def _bpd_cases(gen):
    return [Case((torch.rand(6, generator=gen, dtype=F64) * 200 + 50, 64), label="nll of 6 images (B,), D = 64"),
            Case((123.4, 784), label="a Python float, D = 784"),
            Case((torch.rand(2, 3, generator=gen, dtype=F64) * 10, 1), label="(2, 3) tensor, D = 1")]


def _sample_cases(gen):
    return [Case((), dict(seed=11, n_levels=3, image_shape=(2, 2)), label="2x2 images with 3 levels (81 images)"),
            Case((), dict(seed=12, n_levels=2, image_shape=(1, 6)), label="1x6 binary images, one row (64 images)"),
            Case((), dict(seed=17, n_levels=2, image_shape=(3, 2)), label="3x2 binary images (64 images)"),
            Case((), dict(seed=15, n_levels=2, image_shape=(2, 3)), label="2x3 binary images (64 images)"),
            Case((), dict(seed=14, n_levels=4, image_shape=(1, 3)), label="1x3 images with 4 levels (64 images)")]


def _call_sample(impl, case):
    """The exact joint of the case's model, returned only when SAMPLE_DRAWS images drawn with the
    sampler pass a chi-square test against it (else CheckFailed). Every correct sampler passes, however it
    draws (its generator or the global one, torch.multinomial or an inverse CDF), at a rate of 1 - 1e-6;
    the seeds are fixed, so a submission always gets the same verdict. Always on the CPU."""
    kw = case.kwargs
    net = CausalFixture(kw["n_levels"], kw["image_shape"], seed=kw["seed"], scale=0.6)
    K, (H, W) = net.n_levels, net.image_shape
    with seeded(1000 + kw["seed"], torch.device("cpu")) as gen, torch.no_grad():
        out = impl(LogitsOnly(net), SAMPLE_DRAWS, gen)
    if type(out) is not torch.Tensor or tuple(out.shape) != (SAMPLE_DRAWS, 1, H, W):
        raise CheckFailed(f"it returned {tuple(getattr(out, 'shape', ())) or type(out).__name__}; expected a tensor "
                          f"(n, 1, H, W) = {(SAMPLE_DRAWS, 1, H, W)}")
    if out.dtype != torch.int64:
        raise CheckFailed(f"it returned a {str(out.dtype).replace('torch.', '')} tensor; expected int64 levels")
    levels = out.detach().cpu().flatten(1)  # (n, H W) in raster order
    if bool(((levels < 0) | (levels >= K)).any()):
        raise CheckFailed(f"it returned levels outside 0..{K - 1}")
    index = (levels * K ** torch.arange(H * W - 1, -1, -1)).sum(1)  # each image as a base-K number
    probs = joint_table(net)
    counts = torch.bincount(index, minlength=len(probs))
    stat, dof, p_value = chi_square(counts, probs)
    if p_value < FALSE_FAILURE:
        worst = int(((counts - SAMPLE_DRAWS * probs) ** 2 / (SAMPLE_DRAWS * probs)).argmax())
        image = [worst // K ** (H * W - 1 - q) % K for q in range(H * W)]
        raise CheckFailed(
            f"its {SAMPLE_DRAWS} images do not follow the model's distribution: chi-square = {stat:.1f} with {dof} "
            f"degrees of freedom, p = {p_value:.2g} (a correct sampler fails this test with probability "
            f"{FALSE_FAILURE:g}); e.g. the image {image} (raster order) came {int(counts[worst])} times, expected "
            f"{SAMPLE_DRAWS * float(probs[worst]):.1f}. Draw each pixel from the logits of the image as filled so far")
    return probs


CHECKS = [
    # the joint lies on the simplex, where dividing by its total (or not) changes the gradient but not the
    # values: only the values are specified
    Check("a2.chain_rule_factors", "autoregressive:chain_rule_factors", _factor_cases,
          what="chain_rule_factors", rtol=1e-8, atol=1e-12, grad=()),
    Check("a2.log_likelihood", "autoregressive:chain_rule_log_likelihood", _log_likelihood_cases,
          what="chain_rule_log_likelihood", rtol=1e-5, atol=1e-6, grad=(0,)),  # x is data, even as floats
    Check("a2.made_degrees", "grading.assignments.a2_autoregressive.checks:made_degrees_even", _degree_cases,
          what="made_degrees", rtol=0, atol=0, hides=("autoregressive:made_degrees",)),
    Check("a2.made_masks", "autoregressive:made_masks", _mask_cases, what="made_masks", rtol=0, atol=0),
    Check("a2.causal_mask", "grading.assignments.a2_autoregressive.checks:causal_mask_2d", _causal_mask_cases,
          what="causal_mask", rtol=0, atol=0, hides=("pixelcnn:causal_mask",)),
    Check("a2.masked_conv", "pixelcnn:MaskedConv2d", _masked_conv_cases, call=_call_masked_conv,
          what="MaskedConv2d (output and mask buffer)", rtol=1e-8, atol=1e-10),
    Check("a2.gated_activation", "pixelcnn:gated_activation", _gated_cases,
          what="gated_activation", rtol=1e-6, atol=1e-7),
    Check("a2.nade_logits", "grading.assignments.a2_autoregressive.checks:nade_logits", _nade_cases,
          what="nade_logits", rtol=1e-5, atol=1e-5, grad=(1, 2, 3, 4), hides=("autoregressive:NADE",)),
    Check("a2.nade_model", "grading.assignments.a2_autoregressive.checks:NADEModel", _nade_model_cases,
          call=_call_nade_model, what="NADE (log_prob and loss)", rtol=1e-5, atol=1e-5, outputs=("log_prob", "loss"),
          hides=("autoregressive:NADE",)),
    Check("a2.gated_block", "grading.assignments.a2_autoregressive.checks:GatedBlock", _block_cases, call=_call_block,
          what="GatedBlock", rtol=1e-8, atol=1e-10, hides=("pixelcnn:MaskedConv2d", "pixelcnn:gated_activation")),
    Check("a2.pixelcnn", "grading.assignments.a2_autoregressive.checks:TinyPixelCNN", _pixelcnn_cases, call=_call_pixelcnn,
          what="TinyPixelCNN (logits and log_prob)", rtol=1e-4, atol=1e-4,
          hides=("pixelcnn:ImageAutoregressiveModel", "pixelcnn:MaskedConv2d", "pixelcnn:gated_activation")),
    Check("a2.gated_stack_layer", "pixelcnn:GatedLayer", _stack_cases, call=_call_stack,
          what="GatedStackLayer", rtol=1e-8, atol=1e-10, outputs=("vertical output", "horizontal output"),
          hides=("pixelcnn:StackConv2d",)),
    Check("a2.gated_stack_field", "pixelcnn:GatedLayer", _field_cases, call=_call_field,
          what="a stack of your GatedStackLayer (receptive field)", rtol=0, atol=0, outputs=("dependence map",),
          hides=("pixelcnn:StackConv2d",)),
    Check("a2.bits_per_dim", "pixelcnn:bits_per_dim", _bpd_cases, what="bits_per_dim", rtol=1e-10, atol=1e-12),
    # graded by its distribution (a chi-square test inside the call); what is compared is the exact joint the
    # test used, the same for the reference and any sampler that passed
    Check("a2.sample", "grading.assignments.a2_autoregressive.checks:raster_sample", _sample_cases, call=_call_sample,
          what="sample", rtol=0, atol=0, grad=(), outputs=("joint probabilities of the test",),
          hides=("pixelcnn:ImageAutoregressiveModel",)),
]
