"""gencourse.ali against independent oracles: Monte Carlo for the joints' Jensen-Shannon divergence,
the known Gaussian joints of a linear toy for the pairs the discriminator sees, a step written out
with plain autograd, and the identity toy for "the encoder and decoder end up inverse"."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gencourse import ali
from gencourse.train import seed_everything

DT = torch.float64


def _mc_js(q, p, n=400_000, seed=0):
    """JSD(q || p) = 1/2 E_q log(2q / (q + p)) + 1/2 E_p log(2p / (q + p)), by Monte Carlo."""
    torch.manual_seed(seed)
    def half(a, b):
        x = a.sample((n,))
        la, lb = a.log_prob(x), b.log_prob(x)
        return (math.log(2) + la - torch.logaddexp(la, lb)).mean()
    return 0.5 * half(q, p) + 0.5 * half(p, q)


@pytest.mark.parametrize("a,s,b,t", [(0.6, 0.8, 0.6, 0.8), (0.9, 0.3, 0.2, 0.5), (0.0, 1.0, 1.0, 0.1), (-0.5, 0.5, 0.5, 0.5)])
def test_joint_js_matches_monte_carlo(a, s, b, t):
    q, p = ali.gaussian_joints(a, s, b, t)
    js = float(ali.joint_js(q, p))
    assert 0.0 <= js <= math.log(2) + 1e-6
    assert js == pytest.approx(float(_mc_js(q, p)), abs=4e-3)
    if (a, s) == (b, t) and a * a + s * s == pytest.approx(1.0):  # the encoder is the decoder's posterior
        assert js < 1e-6


def test_joint_covariances_are_the_stated_ones():
    q, p = ali.gaussian_joints(0.7, 0.4, -0.3, 0.6)
    torch.testing.assert_close(q.covariance_matrix, torch.tensor([[1, 0.7], [0.7, 0.49 + 0.16]], dtype=DT))
    torch.testing.assert_close(p.covariance_matrix, torch.tensor([[0.09 + 0.36, -0.3], [-0.3, 1]], dtype=DT))


class _Recorder(nn.Module):
    """A linear joint discriminator that keeps what it is shown."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)
        self.seen = []

    def forward(self, xz):
        self.seen.append(xz.detach().clone())
        return self.lin(xz)[:, 0]


def test_the_discriminator_sees_encoder_pairs_as_real_and_decoder_pairs_as_fake():
    """Linear encoder z = a x + s eps and decoder x = b z on x ~ N(0, 1), z ~ N(0, 1): the real side's
    pairs must have the encoder joint's covariance, the fake side's the (degenerate) decoder joint's."""
    a, s, b = 0.8, 0.5, -1.5
    enc, dec = nn.Linear(1, 2), nn.Linear(1, 1)
    with torch.no_grad():
        enc.weight.copy_(torch.tensor([[a], [0.0]]))
        enc.bias.copy_(torch.tensor([0.0, math.log(s)]))
        dec.weight.fill_(b)
        dec.bias.zero_()
    disc = _Recorder()
    model = ali.ALI(enc, dec, disc, 1)
    n = 50_000
    x = torch.randn(n, 1, generator=torch.Generator().manual_seed(0))
    opt_d = torch.optim.SGD(model.discriminator.parameters(), lr=0.0)
    opt_g = torch.optim.SGD(model.generator_parameters(), lr=0.0)
    model.train_step([x], opt_d, opt_g, generator=torch.Generator().manual_seed(1))
    real, fake = disc.seen[0], disc.seen[1]  # the discriminator step: real side first
    se = 4 * math.sqrt(2 / n) * 2  # a few standard errors of a covariance entry of order 1-2
    torch.testing.assert_close(torch.cov(real.T), torch.tensor([[1, a], [a, a * a + s * s]]), atol=se, rtol=0)
    torch.testing.assert_close(torch.cov(fake.T), torch.tensor([[b * b, b], [b, 1]]), atol=2 * se, rtol=0)
    assert torch.equal(fake[:, 0], b * fake[:, 1])  # x = G(z) exactly


def test_train_step_with_given_noise_equals_a_manual_step():
    """k = 2: two discriminator steps on detached encoder pairs [x, E(x)] (real) and decoder pairs
    [G(z), z] (fake), then one step of encoder and decoder on the swapped labels, through a frozen
    discriminator; written out with plain autograd and SGD, the encoder's noise replayed."""
    torch.manual_seed(0)
    model = ali.mlp_ali(2, 3, 8, 2).double()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    reals = [torch.randn(6, 2, dtype=DT) for _ in range(2)]
    noises = [torch.randn(6, 3, dtype=DT) for _ in range(3)]
    opt_d = torch.optim.SGD(model.discriminator.parameters(), lr=0.1)
    opt_g = torch.optim.SGD(model.generator_parameters(), lr=0.1)
    model.train_step(reals, opt_d, opt_g, noises=noises, generator=torch.Generator().manual_seed(5))

    clone = ali.mlp_ali(2, 3, 8, 2).double()
    clone.load_state_dict(start)
    gen = torch.Generator().manual_seed(5)

    def encode(x):
        mu, log_std = clone.encoder(x).chunk(2, dim=-1)
        return mu + log_std.exp() * torch.randn(mu.shape, generator=gen, dtype=DT)

    def bce(logits, label):
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))

    D = clone.discriminator
    d_params = list(D.parameters())
    g_params = [*clone.encoder.parameters(), *clone.generator.parameters()]
    for x, z in zip(reals, noises[:2]):
        real_pair = torch.cat([x, encode(x)], 1).detach()
        fake_pair = torch.cat([clone.generator(z), z], 1).detach()
        grads = torch.autograd.grad(bce(D(real_pair), 1.0) + bce(D(fake_pair), 0.0), d_params)
        with torch.no_grad():
            for p, g in zip(d_params, grads):
                p -= 0.1 * g
    x, z = reals[1], noises[2]
    loss = bce(D(torch.cat([x, encode(x)], 1)), 0.0) + bce(D(torch.cat([clone.generator(z), z], 1)), 1.0)
    grads = torch.autograd.grad(loss, g_params)
    with torch.no_grad():
        for p, g in zip(g_params, grads):
            p -= 0.1 * g
    for (name, p), q in zip(model.named_parameters(), clone.parameters()):
        torch.testing.assert_close(p, q, msg=name)


def test_players_loss_forms():
    torch.manual_seed(0)
    model = ali.mlp_ali(2, 2, 8, 1)
    r, f = torch.randn(5, 4), torch.randn(5, 4)
    lr, lf = model.discriminator(r), model.discriminator(f)
    swapped = (F.binary_cross_entropy_with_logits(lr, torch.zeros(5)) + F.binary_cross_entropy_with_logits(lf, torch.ones(5)))
    torch.testing.assert_close(model.players_loss(r, f), swapped)
    model.saturating = True
    minimax = -(F.binary_cross_entropy_with_logits(lr, torch.ones(5)) + F.binary_cross_entropy_with_logits(lf, torch.zeros(5)))
    torch.testing.assert_close(model.players_loss(r, f), minimax)


def test_encoder_draws_follow_q_and_the_mean_is_deterministic():
    torch.manual_seed(0)
    model = ali.mlp_ali(2, 3, 8, 1)
    x = torch.randn(1, 2).expand(20_000, 2)
    with torch.no_grad():
        mu, log_std = model.encoder(x[:1]).chunk(2, dim=-1)
        z = model.encode(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), mu[0], atol=5 * log_std.exp().max().item() / 141, rtol=0)
    torch.testing.assert_close(z.std(0), log_std.exp()[0], rtol=0.03, atol=0)
    torch.testing.assert_close(model.encode(x[:3], mean=True), mu.expand(3, 3))


def test_identity_toy_encoder_and_decoder_end_up_inverse():
    """x ~ N(0, 1), z ~ N(0, 1): ALI's encoder and decoder become (approximately) inverse maps."""
    seed_everything(0)
    x = torch.randn(10_000, 1, generator=torch.Generator().manual_seed(100))
    model = ali.mlp_ali(1, 1, 64, 2)
    model.fit(x, steps=1000, batch_size=256, lr_d=1e-3, lr_g=1e-3, seed=0)
    xs = torch.randn(2000, 1, generator=torch.Generator().manual_seed(6))
    z = torch.randn(2000, 1, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        x_rec, z_rec = model.reconstruct(xs), model.encode(model.generator(z), mean=True)
    corr = lambda a, b: float(torch.corrcoef(torch.cat([a, b], 1).T)[0, 1])  # noqa: E731
    assert corr(xs, x_rec) > 0.95 and corr(z, z_rec) > 0.95
    assert float((x_rec - xs).pow(2).mean().sqrt()) < 0.4
    assert 0.8 < float(model.sample(2000, generator=torch.Generator().manual_seed(0)).std()) < 1.25


def test_mlp_ali_rejects_an_unknown_output():
    with pytest.raises(ValueError, match="sigmoid"):
        ali.mlp_ali(2, 2, output="tanh")
