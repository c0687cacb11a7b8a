"""gencourse.flows as zuko tests its transforms: one table of transforms, and for each the shapes,
inverse(forward(x)) = x, and log|det J| against torch.linalg.slogdet of the autograd Jacobian (for
both directions); then the models against independent oracles: densities that integrate to one on a
grid, a trained flow's samples against the toy's exact samples, the dequantized bound against the
exact discrete likelihood of a tiny model, planar flows invertible at constrained parameters."""
import math

import pytest
import torch

from gencourse import data, flows
from gencourse.train import fit

DT = torch.float64
B = 3


def _vec(d):
    return lambda g: torch.randn(B, d, generator=g, dtype=DT)


def _img(c, h, w, unit=False):
    if unit:
        return lambda g: torch.rand(B, c, h, w, generator=g, dtype=DT) * 0.9 + 0.05
    return lambda g: torch.randn(B, c, h, w, generator=g, dtype=DT)


#: name -> (factory, input sampler, takes a context of this size (0: none))
TRANSFORMS = {
    "Affine": (lambda: flows.Affine(torch.tensor([2.0, -0.5, 3.0]), torch.tensor([1.0, 0.0, -2.0]), learnable=True),
               _vec(3), 0),
    "AffineCoupling-alternating": (lambda: flows.AffineCoupling(flows.alternating_mask(5, 1), 16), _vec(5), 0),
    "AffineCoupling-checkerboard": (lambda: flows.AffineCoupling(flows.checkerboard_mask(4, 4), 8, channels=2),
                                    _img(2, 4, 4), 0),
    "AffineCoupling-channel": (lambda: flows.AffineCoupling(flows.channel_mask(4, 1), 8), _img(4, 2, 2), 0),
    "RationalQuadraticCoupling": (lambda: flows.RationalQuadraticCoupling(flows.alternating_mask(5), 16, 6, 3.0),
                                  lambda g: 2.5 * torch.randn(B, 5, generator=g, dtype=DT), 0),  # inside and outside
    "ActNorm": (lambda: flows.ActNorm(4), _vec(4), 0),
    "ActNorm-image": (lambda: flows.ActNorm(2, image=True), _img(2, 2, 3), 0),
    "InvertibleLinear": (lambda: flows.InvertibleLinear(4, seed=3), _vec(4), 0),
    "InvertibleLinear-image": (lambda: flows.InvertibleLinear(3, image=True), _img(3, 2, 2), 0),
    "Permutation": (lambda: flows.Permutation(5, seed=1), _vec(5), 0),
    "Permutation-image": (lambda: flows.Permutation(3, image=True), _img(3, 2, 2), 0),
    "Squeeze": (lambda: flows.Squeeze(), _img(2, 4, 4), 0),
    "Squeeze-undo": (lambda: flows.Squeeze(undo=True), _img(8, 2, 2), 0),
    "Logit": (lambda: flows.Logit(0.05, event_rank=3), _img(1, 2, 3, unit=True), 0),
    "MaskedAffineAutoregressive": (lambda: flows.MaskedAffineAutoregressive(4, 12), _vec(4), 0),
    "MaskedAffineAutoregressive-order": (lambda: flows.MaskedAffineAutoregressive(4, (12, 10), order=[2, 0, 3, 1]),
                                         _vec(4), 0),
    "MaskedAffineAutoregressive-context": (lambda: flows.MaskedAffineAutoregressive(4, 12, context_dim=3), _vec(4), 3),
    "PlanarFlow": (lambda: flows.PlanarFlow(3, seed=2), _vec(3), 0),
    "IAFPosterior": (lambda: flows.IAFPosterior(4, n_steps=3, hidden=12), _vec(4), 0),
    "IAFPosterior-context": (lambda: flows.IAFPosterior(4, n_steps=2, hidden=12, context_dim=3), _vec(4), 3),
    "Compose-realnvp": (lambda: flows.realnvp(4, 3, 16, mixing="linear").transform, _vec(4), 0),
    "Compose-spline": (lambda: flows.spline_flow(3, 2, 16, 5).transform, _vec(3), 0),
    "Compose-maf": (lambda: flows.maf(3, 2, 12).transform, _vec(3), 0),
    "Compose-image-realnvp": (lambda: flows.image_realnvp((1, 4, 4), 8, 2, 2).transform, _img(1, 4, 4, unit=True), 0),
}


def _build(name, seed=0):
    """The transform in float64, moved away from its identity start, with its inputs and context."""
    make, inputs, ctx_dim = TRANSFORMS[name]
    torch.manual_seed(seed)
    t = make().double()
    gen = torch.Generator().manual_seed(seed + 10)
    x = inputs(gen)
    t.train()
    t(x) if not ctx_dim else t(x, torch.randn(B, ctx_dim, dtype=DT))  # ActNorm: data-dependent init
    with torch.no_grad():
        for p in t.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=DT))
    t.eval()
    ctx = torch.randn(B, ctx_dim, generator=gen, dtype=DT) if ctx_dim else None
    return t, x, ctx


def _call(t, method, v, ctx):
    fn = getattr(t, method)
    return fn(v) if ctx is None else fn(v, ctx)


def _jacobian_log_det(t, method, point, ctx):
    """slogdet of the autograd Jacobian of one example, flattened to (D, D)."""
    c = None if ctx is None else ctx[:1]
    shape = point.shape

    def f(flat):
        out = _call(t, method, flat.reshape(1, *shape), c)[0]
        return out.reshape(-1)

    jac = torch.autograd.functional.jacobian(f, point.reshape(-1))
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign != 0
    return logabs


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_shapes_and_round_trip(name):
    t, x, ctx = _build(name)
    y, log_det = _call(t, "forward", x, ctx)
    assert log_det.shape == (B,), f"{name}: log_det {tuple(log_det.shape)}"
    assert y.dtype == x.dtype and torch.isfinite(y).all()
    back, inv_log_det = _call(t, "inverse", y, ctx)
    assert back.shape == x.shape
    torch.testing.assert_close(back, x, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(inv_log_det, -log_det, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_log_det_equals_slogdet_of_autograd_jacobian(name):
    t, x, ctx = _build(name, seed=1)
    y, log_det = _call(t, "forward", x, ctx)
    _, inv_log_det = _call(t, "inverse", y, ctx)
    for i in range(B):
        c = None if ctx is None else ctx[i:i + 1]
        torch.testing.assert_close(_jacobian_log_det(t, "forward", x[i], c), log_det[i], atol=1e-8, rtol=1e-8)
        torch.testing.assert_close(_jacobian_log_det(t, "inverse", y[i], c), inv_log_det[i], atol=1e-7, rtol=1e-7)


def test_every_transform_class_is_in_the_table():
    covered = set()
    for name in TRANSFORMS:
        t, _, _ = _build(name)
        covered |= {type(m) for m in t.modules()}
    classes = {c for c in vars(flows).values()
               if isinstance(c, type) and issubclass(c, torch.nn.Module) and c.__module__ == flows.__name__
               and hasattr(c, "inverse") and c is not flows.Transform}
    assert classes - covered == set(), f"transforms without a test: {classes - covered}"


def test_coupling_log_det_depends_on_the_conditioning_half_only():
    """The seeds' erratum: the log-determinant is a function of z_1 = m x, not of the transformed half."""
    t, x, _ = _build("AffineCoupling-alternating")
    mask = t.mask.bool()
    x2 = x.clone()
    x2[:, ~mask] += 5.0  # change only the transformed half
    torch.testing.assert_close(t(x)[1], t(x2)[1])
    x3 = x.clone()
    x3[:, mask] += 0.5  # change the conditioning half
    assert not torch.allclose(t(x)[1], t(x3)[1])


def test_jacobian_log_det_baseline_matches_a_triangular_jacobian():
    t, x, _ = _build("MaskedAffineAutoregressive")
    torch.testing.assert_close(flows.jacobian_log_det(lambda v: t(v[None])[0][0], x[0]), t(x)[1][0])


# ---------------------------------------------------------------- planar flows
def test_planar_flow_is_invertible_at_the_constrained_parameters():
    """u chosen so that w^T u = -5: the raw map would fold space, u_hat keeps det > 0 everywhere."""
    pf = flows.PlanarFlow(2).double()
    with torch.no_grad():
        pf.w.copy_(torch.tensor([1.0, 0.5], dtype=DT))
        pf.u.copy_(-5.0 * pf.w / (pf.w @ pf.w))
        pf.b.fill_(0.3)
    assert float(pf.w @ pf.u) == pytest.approx(-5.0)
    assert float(pf.w @ pf.u_hat()) > -1.0
    grid = torch.stack(torch.meshgrid(torch.linspace(-4, 4, 81, dtype=DT), torch.linspace(-4, 4, 81, dtype=DT),
                                      indexing="xy"), -1).reshape(-1, 2)
    y, log_det = pf(grid)
    assert torch.isfinite(log_det).all()
    for i in range(0, len(grid), 400):  # det of the autograd Jacobian is positive: no folding
        jac = torch.autograd.functional.jacobian(lambda v: pf(v[None])[0][0], grid[i])
        assert torch.linalg.det(jac) > 0
    back, _ = pf.inverse(y)
    torch.testing.assert_close(back, grid, atol=1e-8, rtol=0)
    # the unconstrained map with the same u does fold: its Jacobian determinant changes sign
    a = grid @ pf.w + pf.b
    raw_det = 1 + (1 - torch.tanh(a) ** 2) * (pf.w @ pf.u)
    assert (raw_det < 0).any() and (raw_det > 0).any()


# ---------------------------------------------------------------- densities
def _grid_mass(log_prob, lim=7.0, n=401):
    xs = torch.linspace(-lim, lim, n, dtype=DT)
    pts = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
    h = float(xs[1] - xs[0])
    with torch.no_grad():
        return float(torch.exp(log_prob(pts)).sum() * h * h)


@pytest.mark.parametrize("make", [lambda: flows.realnvp(2, 4, 16, mixing="linear"), lambda: flows.maf(2, 3, 16),
                                  lambda: flows.spline_flow(2, 3, 16)], ids=["realnvp", "maf", "spline"])
def test_random_2d_flow_density_integrates_to_one(make):
    torch.manual_seed(0)
    flow = make().double()
    gen = torch.Generator().manual_seed(0)
    flow.train()
    flow.log_prob(torch.randn(64, 2, generator=gen, dtype=DT))  # ActNorm init
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=DT))
    flow.eval()
    assert _grid_mass(flow.log_prob, lim=12.0, n=1201) == pytest.approx(1.0, abs=2e-3)  # splines need a fine grid


def test_one_dimensional_worked_example():
    """x ~ U(0, 1), y = 2x + 1: the data -> noise map is x = (y - 1) / 2, p(y) = 1/2 on [1, 3]."""
    base = torch.distributions.Independent(torch.distributions.Uniform(torch.zeros(1, dtype=DT),
                                                                       torch.ones(1, dtype=DT)), 1)
    flow = flows.Flow(flows.Affine(0.5, -0.5).double(), (1,), base=base)
    y = torch.tensor([[1.2], [2.0], [2.9]], dtype=DT)
    torch.testing.assert_close(flow.log_prob(y), torch.full((3,), math.log(0.5), dtype=DT))
    s = flow.sample(2000, generator=torch.Generator().manual_seed(0))
    assert s.min() >= 1.0 and s.max() <= 3.0 and abs(float(s.mean()) - 2.0) < 0.05
    assert torch.equal(s, flow.sample(2000, generator=torch.Generator().manual_seed(0)))  # the generator decides


def test_planar_variational_flow_log_prob_matches_its_samples():
    """log q_K from the forward pass (samples) equals log q_K through the inverse (bisection)."""
    torch.manual_seed(0)
    vf = flows.VariationalFlow([flows.PlanarFlow(2, seed=k) for k in range(4)], 2).double()
    with torch.no_grad():
        for p in vf.parameters():
            p.add_(0.8 * torch.randn_like(p))
    z, log_q = vf.sample_and_log_prob(50, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(vf.log_prob(z), log_q, atol=1e-7, rtol=0)
    assert _grid_mass(vf.log_prob, lim=10.0, n=301) == pytest.approx(1.0, abs=5e-3)


def test_flow_elbo_reaches_log_normaliser_of_a_gaussian_target():
    """Target N(m, diag s^2) times Z = 7: the flow ELBO's optimum is log Z, reached when q = target."""
    m, s, log_z = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0]), math.log(7.0)
    target = torch.distributions.Independent(torch.distributions.Normal(m, s), 1)
    vf = flows.VariationalFlow([flows.PlanarFlow(2, seed=k) for k in range(2)], 2)
    opt = torch.optim.Adam(vf.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    for _ in range(400):
        loss = -vf.elbo(lambda z: target.log_prob(z) + log_z, 128, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    elbo = float(vf.elbo(lambda z: target.log_prob(z) + log_z, 20000, generator=gen))
    assert elbo <= log_z + 0.01 and elbo == pytest.approx(log_z, abs=0.03)


def _mmd2(x, y, bandwidths=(0.2, 0.5, 1.0, 2.0)):
    """Biased MMD^2 with a sum of Gaussian kernels (an independent yardstick for samples)."""
    def k(a, b):
        d2 = torch.cdist(a, b) ** 2
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)

    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def test_trained_realnvp_matches_the_toy():
    """A RealNVP trained on the 8-mode ring: test NLL within 0.5 nats of the toy's entropy (the
    irreducible limit), every mode holding 1/8 of the samples, samples nearly as close to their modes
    as the toy's own, and an MMD to held-out data far below the untrained flow's."""
    toy = data.ring()
    x, x_test = toy.sample(4000, seed=0), toy.sample(2000, seed=1)
    torch.manual_seed(0)
    flow = flows.realnvp(2, 6, 64)
    with torch.no_grad():
        before = flow.sample(2000, generator=torch.Generator().manual_seed(2))
    fit(flow, x, epochs=80, batch_size=128, lr=3e-3, progress=False)
    with torch.no_grad():
        nll = float(-flow.log_prob(x_test).mean())
        samples = flow.sample(4000, generator=torch.Generator().manual_seed(3))
    entropy = toy.entropy()
    assert entropy <= nll < entropy + 0.5, (nll, entropy)
    dist = torch.cdist(samples.double(), toy.means)  # (N, 8)
    share = torch.bincount(dist.argmin(1), minlength=8) / len(samples)
    assert (share - 1 / 8).abs().max() < 0.03, share
    exact = torch.cdist(toy.sample(4000, seed=4).double(), toy.means).min(1).values
    assert float(dist.min(1).values.median()) < 1.6 * float(exact.median())  # 1.36 here: flows blur thin modes
    assert _mmd2(samples[:2000], x_test) < 0.15 * _mmd2(before, x_test)


# ---------------------------------------------------------------- dequantization
def _cell_log_prob(flow, levels, n_levels, n=200):
    """log P(x) = log of the integral of p(y) over the cell [x/L, (x+1)/L)^2, midpoint rule (2-D)."""
    out = []
    for x in levels:
        u = (torch.arange(n, dtype=DT) + 0.5) / n
        pts = torch.stack(torch.meshgrid(u, u, indexing="xy"), -1).reshape(-1, 2)
        y = (x.to(DT) + pts) / n_levels
        with torch.no_grad():
            out.append(float(torch.logsumexp(flow.log_prob(y), 0) - 2 * math.log(n) - 2 * math.log(n_levels)))
    return torch.tensor(out, dtype=DT)


@pytest.mark.parametrize("variational", [False, True])
def test_dequantized_bound_is_below_the_exact_discrete_log_likelihood(variational):
    """On 2 pixels with 3 levels, P(x) for all 9 configurations by quadrature: they sum to at most 1,
    and the dequantized bound (one or many draws, uniform or variational q) never exceeds log P(x)."""
    L = 3
    torch.manual_seed(0)
    inner = flows.Flow(flows.Compose(flows.Logit(0.05), *flows.realnvp(2, 3, 16).transform.transforms), (2,)).double()
    deq = flows.VariationalDequantizer(2, L, 16).double() if variational else None
    model = flows.DequantizedFlow(inner, L, deq)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=DT))
    model.eval()
    levels = torch.cartesian_prod(torch.arange(L), torch.arange(L))
    exact = _cell_log_prob(inner, levels, L)
    assert float(torch.exp(exact).sum()) <= 1.0 + 1e-6
    with torch.no_grad():
        one = torch.stack([model.log_prob(levels, generator=gen) for _ in range(400)])  # (400, 9) single draws
        many = model.log_prob(levels, n_samples=400, generator=gen)  # importance-weighted, K = 400
    mean, se = one.mean(0), one.std(0) / math.sqrt(len(one))
    assert (mean <= exact + 3 * se + 1e-3).all(), (mean, exact)  # E[bound] <= log P(x), up to Monte Carlo error
    assert (many >= mean - 3 * se).all()  # more draws: a tighter bound
    if not variational:  # uniform q covers each cell evenly: with K = 400 the bound is nearly tight
        torch.testing.assert_close(many, exact, atol=0.05, rtol=0)
    else:
        assert (exact - mean > 0.05).any()  # an untrained q leaves a visible gap (the test can fail)


def test_dequantized_flow_samples_levels():
    model = flows.DequantizedFlow(flows.image_realnvp((1, 4, 4), 8, 2, 2), 17)
    s = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.dtype == torch.int64 and s.shape == (5, 1, 4, 4) and s.min() >= 0 and s.max() <= 16
