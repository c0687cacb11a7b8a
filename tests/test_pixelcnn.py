"""Oracle tests of gencourse.pixelcnn: masks against raster indices, dependence through input
gradients and perturbations, exact normalization over all 3x3 binary images, and chi-square
tests of both samplers against exp(log_prob)."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from gencourse.pixelcnn import (
    GatedPixelCNN, MaskedConv2d, PixelCNN, causal_mask, gated_activation, raster_earlier, receptive_field,
)
from gencourse.train import seed_everything



ALL_3x3 = torch.tensor(list(itertools.product([0, 1], repeat=9))).view(-1, 1, 3, 3)  # (512, 1, 3, 3)


# ---------------------------------------------------------------- masks
@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_causal_mask_is_raster_order(k, mask_type):
    m = causal_mask(k, mask_type, in_channels=2, out_channels=3)
    assert m.shape == (3, 2, k, k)
    raster = torch.arange(k * k).view(k, k)  # position of each kernel cell in raster order
    centre = (k * k) // 2
    expected = (raster < centre) if mask_type == "A" else (raster <= centre)
    torch.testing.assert_close(m, expected.float().expand(3, 2, k, k))


def test_causal_mask_rejects_even_kernels():
    with pytest.raises(ValueError):
        causal_mask(4, "A")


def test_masked_conv_equals_conv_with_zeroed_weights_and_masked_grads_vanish():
    torch.manual_seed(0)
    conv = MaskedConv2d(2, 4, 5, "A")
    x = torch.randn(3, 2, 8, 8)
    ref = F.conv2d(x, conv.weight * causal_mask(5, "A", 2, 4), conv.bias, padding=2)
    out = conv(x)
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert (conv.weight.grad[conv.mask == 0] == 0).all()
    assert (conv.weight.grad[conv.mask == 1] != 0).any()
    assert isinstance(conv, torch.nn.Conv2d)


def test_gated_activation():
    h = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(gated_activation(h), torch.tanh(h[:, :3]) * torch.sigmoid(h[:, 3:]))


# ---------------------------------------------------------------- dependence structure
MODELS = {
    "pixelcnn": lambda: PixelCNN(n_levels=5, channels=16, n_layers=4, first_kernel=5, image_shape=(6, 6)),
    "pixelcnn_cond": lambda: PixelCNN(n_levels=5, channels=16, n_layers=3, num_classes=3, image_shape=(6, 6)),
    "gated": lambda: GatedPixelCNN(n_levels=5, channels=16, n_layers=5, image_shape=(6, 6)),
    "gated_cond": lambda: GatedPixelCNN(n_levels=5, channels=16, n_layers=5, num_classes=3, image_shape=(6, 6)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_autoregressive_property_from_input_gradients(name):
    seed_everything(0)
    model = MODELS[name]()
    for i, j in itertools.product(range(6), range(6)):
        field = receptive_field(model, (6, 6), (i, j))
        assert field.shape == (6, 6)
        assert not (field & ~raster_earlier((6, 6), (i, j))).any(), f"{name}: pixel {(i, j)} sees the future"


@pytest.mark.parametrize("name", ["gated", "gated_cond"])
def test_gated_pixelcnn_sees_every_earlier_pixel(name):
    seed_everything(0)
    model = MODELS[name]()  # first 5x5 + 5 layers: a vertical reach of 7 rows > 6
    for i, j in itertools.product(range(6), range(6)):
        torch.testing.assert_close(receptive_field(model, (6, 6), (i, j)), raster_earlier((6, 6), (i, j)))


def test_plain_pixelcnn_has_a_blind_spot():
    seed_everything(0)
    model = MODELS["pixelcnn"]()  # reaches 2 + 3 = 5 rows up: the whole 6x6 image is in range
    field = receptive_field(model, (6, 6), (5, 2))
    missed = raster_earlier((6, 6), (5, 2)) & ~field
    assert missed.any()
    # the blind spot is up and to the right of the pixel, never on its left in the same row
    assert not missed[5].any()
    rows, cols = missed.nonzero(as_tuple=True)
    assert (cols > 2).all()


def test_dependence_by_perturbation_matches_gradients():
    seed_everything(1)
    model = GatedPixelCNN(n_levels=3, channels=8, n_layers=2, image_shape=(4, 4))
    x = torch.randint(3, (1, 1, 4, 4))
    base = model.logits(x)
    for p in range(16):
        x2 = x.clone()
        x2.view(-1)[p] = (x2.view(-1)[p] + 1) % 3
        changed = (model.logits(x2) - base).abs().amax(1)[0].view(-1) > 1e-6  # (16,)
        assert not changed[: p + 1].any()  # pixel p and earlier never react to x_p


def test_class_conditioning_changes_the_distribution():
    seed_everything(0)
    for model in (MODELS["pixelcnn_cond"](), MODELS["gated_cond"]()):
        x = torch.randint(5, (4, 36))
        lp0 = model.log_prob(x, torch.zeros(4, dtype=torch.long))
        lp1 = model.log_prob(x, torch.ones(4, dtype=torch.long))
        assert (lp0 - lp1).abs().max() > 1e-4
        with pytest.raises(ValueError):
            model.log_prob(x)


# ---------------------------------------------------------------- exact normalization
TINY = {
    "pixelcnn": lambda: PixelCNN(n_levels=2, channels=8, n_layers=3, first_kernel=3, image_shape=(3, 3)),
    "gated": lambda: GatedPixelCNN(n_levels=2, channels=8, n_layers=2, first_kernel=3, image_shape=(3, 3)),
    "gated_cond": lambda: GatedPixelCNN(n_levels=2, channels=8, n_layers=2, first_kernel=3, num_classes=2,
                                        image_shape=(3, 3)),
}


def strong(model, std=0.8):
    """Random weights large enough for strong dependencies between pixels."""
    for p in model.parameters():
        p.data.normal_(0, std)
    return model.eval()


@pytest.mark.parametrize("name", list(TINY))
def test_log_prob_sums_to_one_over_all_binary_3x3_images(name):
    seed_everything(0)
    model = strong(TINY[name]())
    for y in ([None] if model.num_classes is None else [0, 1]):
        yy = None if y is None else torch.full((512,), y)
        with torch.no_grad():
            lp = model.log_prob(ALL_3x3, yy)
        assert lp.shape == (512,)
        assert abs(torch.logsumexp(lp.double(), 0).item()) < 1e-4
        assert lp.std() > 0.5
        torch.testing.assert_close(model.log_prob(ALL_3x3.view(512, 9), yy), lp)  # flat input too


# ---------------------------------------------------------------- samplers
def chi_square_pvalue(samples, lp, min_expected=5):
    codes = (samples.view(len(samples), -1) * (2 ** torch.arange(8, -1, -1))).sum(1)
    observed = torch.bincount(codes, minlength=512).double()
    expected = lp.double().exp() * len(samples)
    keep = expected >= min_expected
    obs = torch.cat([observed[keep], observed[~keep].sum()[None]])
    exp = torch.cat([expected[keep], expected[~keep].sum()[None]])
    obs, exp = obs[exp > 0], exp[exp > 0]
    return stats.chisquare(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item()).pvalue


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("method", ["naive", "fast"])
def test_samplers_follow_exp_log_prob(name, method):
    seed_everything(0)
    model = strong(TINY[name]())
    y = None if model.num_classes is None else torch.tensor(1)
    with torch.no_grad():
        lp = model.log_prob(ALL_3x3, None if y is None else y.expand(512))
    samples = model.sample(20000, y=y, generator=torch.Generator().manual_seed(5), method=method)
    assert samples.shape == (20000, 1, 3, 3) and samples.dtype == torch.long
    assert chi_square_pvalue(samples, lp) > 1e-4
    # negative control: each pixel shuffled across samples keeps the marginals, breaks the joint
    g = torch.Generator().manual_seed(0)
    flat = samples.view(20000, 9)
    shuffled = torch.stack([c[torch.randperm(20000, generator=g)] for c in flat.T], 1)
    assert chi_square_pvalue(shuffled, lp) < 1e-6


def test_fast_and_naive_samplers_agree_draw_for_draw():
    seed_everything(0)
    model = PixelCNN(n_levels=17, channels=16, n_layers=3).eval()
    a = model.sample(8, generator=torch.Generator().manual_seed(1), method="naive")
    b = model.sample(8, generator=torch.Generator().manual_seed(1), method="fast")
    assert (a == b).float().mean() > 0.95  # same random numbers, same logits up to float rounding


def test_gated_fast_sampler_agrees_draw_for_draw_with_naive():
    seed_everything(0)
    model = GatedPixelCNN(n_levels=17, channels=16, n_layers=3, num_classes=10).eval()
    y = torch.arange(8) % 10
    a = model.sample(8, y=y, generator=torch.Generator().manual_seed(1), method="naive")
    b = model.sample(8, y=y, generator=torch.Generator().manual_seed(1), method="fast")
    assert (a == b).float().mean() > 0.95


def test_blind_spot_helper():
    from gencourse.pixelcnn import blind_spot

    field = torch.zeros(4, 4, dtype=torch.bool)
    field[1, :3] = True  # seen: row 1, columns 0..2
    field[2, :1] = True
    spot = blind_spot(field, (2, 1))
    expected = torch.zeros(4, 4, dtype=torch.bool)  # the box is rows 1..2, columns 0..2
    assert torch.equal(spot, expected)  # everything earlier in the box is seen; row 0 is only out of reach
    field[1, 3] = True
    field[1, 2] = False  # now column 2 of row 1 is a hole inside the box
    assert blind_spot(field, (2, 1)).nonzero().tolist() == [[1, 2]]


def test_stack_convs_equal_masked_convs():
    """A cropped stack kernel is a masked full kernel: copy the weights and compare outputs."""
    from gencourse.pixelcnn import StackConv2d

    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6)
    k, c = 5, 2
    for include in (True, False):
        vert = StackConv2d(3, 4, k, "vertical", include_centre=include)
        full = torch.zeros(4, 3, k, k)
        rows = c + 1 if include else c
        full[:, :, :rows] = vert.weight
        torch.testing.assert_close(vert(x), F.conv2d(x, full, vert.bias, padding=c))
        hor = StackConv2d(3, 4, k, "horizontal", include_centre=include)
        full = torch.zeros(4, 3, 1, k)
        full[..., : (c + 1 if include else c)] = hor.weight
        torch.testing.assert_close(hor(x), F.conv2d(x, full, hor.bias, padding=(0, c)))
