"""Oracle tests of gencourse.autoregressive: brute-force enumeration, torch.distributions,
autograd / perturbation dependence checks and chi-square tests of the samplers. (The output
densities are tested in test_distributions.py, MADE degrees and masks in test_nn.py.)"""
import itertools
import math

import pytest
import torch
from scipy import stats

from gencourse.autoregressive import (
    FVSBN, MADE, NADE, CausalConvAR, RecurrentAR, chain_rule_factors, chain_rule_log_likelihood,
    chain_rule_log_prob, output_log_prob,
)
from gencourse.train import fit, seed_everything



def all_configs(n_dims, n_levels):
    return torch.tensor(list(itertools.product(range(n_levels), repeat=n_dims)))


def random_joint(shape, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(shape, generator=g, dtype=torch.float64) ** 3  # uneven, with near-zero cells
    return p / p.sum()


# ---------------------------------------------------------------- chain rule
@pytest.mark.parametrize("shape", [(2, 3, 2), (2, 2, 2, 2), (3, 2, 2, 3)])
def test_chain_rule_any_ordering_is_exact(shape):
    joint = random_joint(shape, seed=len(shape))
    x = torch.tensor(list(itertools.product(*[range(k) for k in shape])))
    exact = torch.log(joint[tuple(x.T)])
    orders = list(itertools.permutations(range(len(shape))))
    assert len(orders) == math.factorial(len(shape))
    for order in orders:
        lp = chain_rule_log_prob(joint, x, order)
        torch.testing.assert_close(lp, exact, rtol=0, atol=1e-10)


def test_chain_rule_factors_are_conditionals():
    joint = random_joint((2, 3, 2), seed=3)
    order = (2, 0, 1)
    f = chain_rule_factors(joint, order)
    assert [t.shape for t in f] == [(2,), (2, 2), (2, 2, 3)]
    for t in f:
        torch.testing.assert_close(t.sum(-1), torch.ones_like(t.sum(-1)))
    # brute force: p(x1 = 2 | x2 = 1, x0 = 0) from the joint directly
    direct = joint[0, 2, 1] / joint[0, :, 1].sum()
    torch.testing.assert_close(f[2][1, 0, 2], direct)
    # the first factor is the marginal of x2
    torch.testing.assert_close(f[0], joint.sum((0, 1)))


def test_chain_rule_rejects_non_permutation():
    with pytest.raises(ValueError):
        chain_rule_factors(random_joint((2, 2), 0), (0, 0))


# ---------------------------------------------------------------- output distributions
def test_chain_rule_log_likelihood_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=g) * 30  # large logits: must stay finite (log space)
    x = (torch.rand(5, 7, generator=g) < 0.5).float()
    ref = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(chain_rule_log_likelihood(logits, x), ref)
    assert torch.isfinite(chain_rule_log_likelihood(torch.full((1, 3), 200.0), torch.zeros(1, 3))).all()
    logits = torch.randn(5, 7, 17, generator=g) * 10
    x = torch.randint(17, (5, 7), generator=g)
    ref = torch.distributions.Categorical(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(chain_rule_log_likelihood(logits, x), ref)


# ---------------------------------------------------------------- dependence through gradients
def jacobian_support(model, x):
    """(D_out, D_in) bool: does params[:, d] depend on input j, from autograd on float inputs."""
    x = x.float().requires_grad_(True)
    jac = torch.autograd.functional.jacobian(lambda t: model.params(t).sum(-1).sum(0), x)  # (D, B, D)
    return jac.abs().sum(1) > 0


def position(order):
    pos = torch.empty(len(order), dtype=torch.long)
    pos[torch.as_tensor(order)] = torch.arange(len(order))
    return pos


AR_MODELS = {
    "fvsbn": lambda: FVSBN(6, order=[5, 3, 1, 0, 2, 4]),
    "nade": lambda: NADE(6, 16, n_levels=3, order=[2, 0, 1, 5, 4, 3]),
    "made": lambda: MADE(6, (32, 32), n_levels=5),
    "made_agnostic": lambda: MADE(6, (32,), order_agnostic=True, num_masks=3, seed=4),
    "made_logistic": lambda: MADE(6, (32,), n_levels=5, output="logistic", order=[1, 3, 5, 0, 2, 4]),
    "causal_conv": lambda: CausalConvAR(6, n_levels=3, channels=8, kernel_size=2, dilations=(1, 2)),
}


@pytest.mark.parametrize("name", list(AR_MODELS))
def test_autoregressive_property_from_input_gradients(name):
    seed_everything(0)
    model = AR_MODELS[name]()
    for p in model.parameters():
        p.data.normal_()
    x = torch.rand(8, 6) * (model.n_levels - 1)
    for _ in range(getattr(model, "num_masks", 1)):
        pos = position(model.order)
        support = jacobian_support(model, x)
        allowed = pos[:, None] > pos[None, :]
        assert not support[~allowed].any(), f"{name}: an output depends on a later input"
        if name != "causal_conv":  # full-window models reach every earlier input
            assert support[allowed].all()
        if hasattr(model, "set_mask"):
            model.set_mask(model.mask_index + 1)


def test_causal_conv_window_is_local():
    model = CausalConvAR(12, channels=8, kernel_size=2, dilations=(1, 2))  # receptive field 2 + 2 = 4
    for p in model.parameters():
        p.data.normal_()
    support = jacobian_support(model, torch.rand(4, 12))
    d = torch.arange(12)
    lag = d[:, None] - d[None, :]
    assert model.receptive_field == 4
    torch.testing.assert_close(support, (lag >= 1) & (lag <= 4))


def test_recurrent_dependence_by_perturbation():
    torch.manual_seed(0)
    model = RecurrentAR(6, n_levels=3, hidden=16)
    x = torch.randint(3, (1, 6))
    base = model.params(x)
    for j in range(6):
        x2 = x.clone()
        x2[0, j] = (x2[0, j] + 1) % 3
        changed = (model.params(x2) - base).abs().amax(-1)[0] > 1e-7  # (D,)
        torch.testing.assert_close(changed, torch.arange(6) > j)


# ---------------------------------------------------------------- normalization by enumeration
NORM_MODELS = {
    "fvsbn": (lambda: FVSBN(4, order=[2, 0, 3, 1]), 2),
    "fvsbn_cat": (lambda: FVSBN(3, n_levels=3), 3),
    "nade": (lambda: NADE(4, 8, order=[3, 1, 0, 2]), 2),
    "nade_cat": (lambda: NADE(3, 8, n_levels=4), 4),
    "made": (lambda: MADE(4, (16, 16)), 2),
    "made_ensemble": (lambda: MADE(4, (16,), num_masks=4, order_agnostic=True), 2),
    "made_cat": (lambda: MADE(3, (16,), n_levels=5), 5),
    "made_logistic": (lambda: MADE(3, (16,), n_levels=6, output="logistic"), 6),
    "rnn": (lambda: RecurrentAR(4, hidden=8), 2),
    "lstm_cat": (lambda: RecurrentAR(3, n_levels=3, hidden=8, cell="lstm"), 3),
    "causal_conv": (lambda: CausalConvAR(4, n_levels=3, channels=8, kernel_size=2, dilations=(1,)), 3),
}


@pytest.mark.parametrize("name", list(NORM_MODELS))
def test_log_prob_normalizes_over_all_configurations(name):
    seed_everything(1)
    make, K = NORM_MODELS[name]
    model = make().eval()
    for p in model.parameters():
        p.data.normal_(0, 1.5)
    x = all_configs(model.n_dims, K)
    lp = model.log_prob(x)
    assert lp.shape == (len(x),)
    assert abs(torch.logsumexp(lp.double(), 0).item()) < 1e-4
    assert lp.std() > 0.1  # a non-trivial distribution, not uniform


def test_gaussian_output_matches_torch_normal():
    torch.manual_seed(0)
    model = MADE(5, (16,), n_levels=17, output="gaussian")
    x = torch.rand(7, 5) * 16
    p = model.params(x)
    ref = torch.distributions.Normal(p[..., 0], p[..., 1].exp()).log_prob(x).sum(-1)
    torch.testing.assert_close(model.log_prob(x), ref)
    torch.testing.assert_close(output_log_prob(p, x, "gaussian", 17).sum(-1), ref)


# ---------------------------------------------------------------- samplers against the model
def chi_square_pvalue(samples, log_prob, K, min_expected=5):
    n, D = samples.shape
    codes = (samples.long() * (K ** torch.arange(D - 1, -1, -1))).sum(1)
    observed = torch.bincount(codes, minlength=K ** D).double()
    expected = log_prob.double().exp() * n
    keep = expected >= min_expected  # pool the rare cells into one
    obs = torch.cat([observed[keep], observed[~keep].sum()[None]])
    exp = torch.cat([expected[keep], expected[~keep].sum()[None]])
    obs, exp = obs[exp > 0], exp[exp > 0]
    return stats.chisquare(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item()).pvalue


SAMPLE_MODELS = {
    "made": (lambda: MADE(4, (16,), order=[2, 3, 0, 1]), 2),
    "made_ensemble": (lambda: MADE(4, (16,), num_masks=2, order_agnostic=True), 2),
    "nade_cat": (lambda: NADE(3, 8, n_levels=3, order=[1, 2, 0]), 3),
    "made_logistic": (lambda: MADE(3, (16,), n_levels=4, output="logistic"), 4),
    "rnn": (lambda: RecurrentAR(4, hidden=8), 2),
}


@pytest.mark.parametrize("name", list(SAMPLE_MODELS))
def test_samples_follow_exp_log_prob(name):
    seed_everything(2)
    make, K = SAMPLE_MODELS[name]
    model = make().eval()
    for p in model.parameters():
        p.data.normal_(0, 2.0)  # strong dependencies between the variables
    x = all_configs(model.n_dims, K)
    with torch.no_grad():
        lp = model.log_prob(x)
    samples = model.sample(20000, generator=torch.Generator().manual_seed(3))
    assert samples.shape == (20000, model.n_dims) and samples.dtype == torch.long
    assert chi_square_pvalue(samples, lp, K) > 1e-4
    # negative control: shuffling each column independently keeps the marginals, breaks the joint
    g = torch.Generator().manual_seed(0)
    shuffled = torch.stack([c[torch.randperm(len(c), generator=g)] for c in samples.T], 1)
    assert chi_square_pvalue(shuffled, lp, K) < 1e-6


def test_gaussian_output_log_scale_is_clamped():
    """A collapsing scale is clamped at MIN_LOG_SCALE, in the density and in the sampler alike."""
    from gencourse.autoregressive import MIN_LOG_SCALE, output_sample

    params = torch.tensor([[[0.5, -50.0]]])  # mean 0.5, log-scale far below the clamp
    x = torch.tensor([[0.5]])
    ref = torch.distributions.Normal(0.5, math.exp(MIN_LOG_SCALE)).log_prob(x)
    torch.testing.assert_close(output_log_prob(params, x, "gaussian", 17), ref)
    draws = output_sample(params[0].expand(10_000, 2), "gaussian", 17, torch.Generator().manual_seed(0))
    assert draws.std().item() == pytest.approx(math.exp(MIN_LOG_SCALE), rel=0.05)


# ---------------------------------------------------------------- training by maximum likelihood
def test_made_learns_binary_digits_better_than_independent_pixels():
    from gencourse.data import load_digits

    seed_everything(0)
    x, _ = load_digits("train", kind="binary")
    xv, _ = load_digits("val", kind="binary")
    p = x.mean(0).clamp(1e-3, 1 - 1e-3)
    independent = -torch.distributions.Bernoulli(probs=p).log_prob(xv).sum(-1).mean().item()
    model = MADE(64, (128,))
    fit(model, x, x_val=xv, epochs=30, batch_size=100, max_seconds=30, lr=3e-3, progress=False)
    with torch.no_grad():
        nll = model.loss(xv).item()
    assert nll < independent - 3, (nll, independent)
