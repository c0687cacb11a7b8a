"""gencourse.nn: the MLP, the masked linear layer and the MADE core, against hand-built masks and
the autoregressive property read off autograd Jacobians (pytorch-made's check, as an assert)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gencourse.nn import MADENet, MaskedLinear, made_degrees, made_masks, mlp

DT = torch.float64


def test_mlp_layout():
    net = mlp([5, 7, 3], nn.Tanh, dropout=0.5)
    assert [type(m) for m in net] == [nn.Linear, nn.Tanh, nn.Dropout, nn.Linear]
    feats = mlp([5, 7, 3], nn.Tanh, final_activation=True)
    assert [type(m) for m in feats] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh]
    lin = mlp([4, 2, 4], None)
    assert all(isinstance(m, nn.Linear) for m in lin)
    x = torch.randn(3, 4)
    torch.testing.assert_close(lin(x), lin[1](lin[0](x)))


def test_masked_linear_equals_linear_with_zeroed_weights_and_masked_grads_vanish():
    torch.manual_seed(0)
    mask = (torch.rand(4, 6) > 0.5).float()
    layer = MaskedLinear(6, 4, mask=mask)
    x = torch.randn(3, 6)
    out = layer(x)
    torch.testing.assert_close(out, F.linear(x, layer.weight * mask, layer.bias))
    out.sum().backward()
    assert (layer.weight.grad[mask == 0] == 0).all() and (layer.weight.grad[mask == 1] != 0).any()
    layer.set_mask(torch.ones(4, 6))
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    assert "mask" in dict(layer.named_buffers())
    # a new mask set between forward and backward leaves the pending gradient masked by the old one
    layer.weight.grad = None
    out = layer(x)
    layer.set_mask(mask)
    out.sum().backward()
    assert (layer.weight.grad != 0).all()


# ---------------------------------------------------------------- MADE degrees and masks
def test_made_masks_small_example_by_hand():
    degrees = [torch.tensor([1, 2, 3]), torch.tensor([1, 2, 2, 1]), torch.tensor([1, 2, 3])]
    m1, m2 = made_masks(degrees)
    assert m1.shape == (4, 3) and m2.shape == (3, 4)
    torch.testing.assert_close(m1, torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 0], [1, 0, 0]]).float())
    torch.testing.assert_close(m2, torch.tensor([[0, 0, 0, 0], [1, 0, 0, 1], [1, 1, 1, 1]]).float())


@pytest.mark.parametrize("seed", [None, 0, 1])
def test_made_mask_product_is_strictly_autoregressive(seed):
    D = 6
    order = [3, 0, 5, 1, 4, 2]
    masks = made_masks(made_degrees(D, [20, 15], order, seed))
    conn = masks[0]
    for m in masks[1:]:
        conn = m @ conn  # (D, D): number of paths from input j to output d
    pos = torch.empty(D, dtype=torch.long)
    pos[torch.tensor(order)] = torch.arange(D)
    allowed = pos[:, None] > pos[None, :]
    assert (conn[~allowed] == 0).all()
    assert (conn[allowed] > 0).all()  # wide enough layers connect every allowed pair


# ---------------------------------------------------------------- the MADE network
MADES = {
    "fvsbn (no hidden layer)": dict(n_dims=5, hidden_sizes=(), n_params=2, order=[4, 2, 0, 1, 3]),
    "one layer, 3 params": dict(n_dims=5, hidden_sizes=(32,), n_params=3),
    "two layers, order, seeded": dict(n_dims=5, hidden_sizes=(24, 24), n_params=2, order=[2, 4, 0, 3, 1], seed=3),
    "with context (IAF-like)": dict(n_dims=5, hidden_sizes=(16, 16), n_params=2, context_dim=3, activation=nn.ELU),
}


@pytest.mark.parametrize("name", list(MADES))
def test_made_net_is_autoregressive_by_input_gradients(name):
    kw = MADES[name]
    torch.manual_seed(0)
    net = MADENet(**kw).double()
    for p in net.parameters():
        p.data.normal_()
    ctx = torch.randn(kw.get("context_dim", 0), dtype=DT) if kw.get("context_dim") else None
    x = torch.randn(5, dtype=DT)
    out = net(x, ctx)
    assert out.shape == (5, kw["n_params"])
    jac = torch.autograd.functional.jacobian(lambda t: net(t, ctx), x)  # (D, P, D)
    dep = jac.abs().sum(1) > 0  # (d, j): does output d depend on input j?
    order = kw.get("order", list(range(5)))
    pos = torch.empty(5, dtype=torch.long)
    pos[torch.tensor(order)] = torch.arange(5)
    allowed = pos[:, None] > pos[None, :]
    assert not dep[~allowed].any()
    assert dep[allowed].all()  # these widths connect every allowed pair
    if ctx is not None:  # the context enters through the hidden units: it reaches every variable but the
        jc = torch.autograd.functional.jacobian(lambda c: net(x, c), ctx)  # first, whose outputs are biases
        reached = jc.abs().sum((1, 2)) > 0  # (D,)
        assert reached[pos > 0].all() and not reached[pos == 0].any()


def test_made_net_context_broadcasts_and_is_required():
    net = MADENet(4, (8,), 2, context_dim=3)
    x, ctx = torch.randn(6, 4), torch.randn(5, 6, 3)  # one x, five contexts each
    assert net(x, ctx).shape == (5, 6, 4, 2)
    with pytest.raises(ValueError):
        net(x)
    with pytest.raises(ValueError):
        MADENet(4, (8,), 2)(x, ctx)


def test_made_net_set_masks_switches_the_ordering():
    net = MADENet(4, (16,), 1)
    degrees = net.set_masks([3, 2, 1, 0])
    assert degrees[0].tolist() == [4, 3, 2, 1]
    x = torch.randn(4, requires_grad=True)
    net(x)[0, 0].backward()  # output of variable 0, now the last one: sees the three others
    assert (x.grad[1:] != 0).all() and x.grad[0] == 0


def test_randomize_moves_every_parameter_reproducibly_and_freezes():
    from gencourse.nn import randomize_

    torch.manual_seed(0)
    a = randomize_(mlp([3, 4, 2]), 0.5, seed=1)
    torch.manual_seed(0)
    b = randomize_(mlp([3, 4, 2]), 0.5, seed=1)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb) and not pa.requires_grad
    assert not a.training
    c = torch.nn.Linear(2, 2)
    torch.nn.init.zeros_(c.weight)
    randomize_(c, 0.5)
    assert (c.weight != 0).all()


def test_best_time_is_the_minimum_of_the_calls():
    from gencourse.train import best_time

    calls = []
    t = best_time(lambda: calls.append(1), repeat=4)
    assert len(calls) == 4 and t >= 0.0


def _ema_run(ema, *, epochs=3, lr=0.05, val=False, keep_best=True):
    """A linear regression fitted by ``fit`` from zero weights; returns the model, its history and
    the iterates the loss saw while training (theta_0 .. theta_{T-1}). With ``val`` the validation
    targets lie a third of the way to the training ones, so the validation loss falls, then rises."""
    from gencourse.train import fit

    torch.manual_seed(0)
    x, x_val = torch.randn(40, 3, dtype=DT), torch.randn(20, 3, dtype=DT)
    w = torch.tensor([[1.0], [-2.0], [0.5]], dtype=DT)
    model = nn.Linear(3, 1).to(DT)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    iterates = []

    def loss(xb, yb):
        if model.training:
            iterates.append([p.detach().clone() for p in model.parameters()])
        return ((model(xb) - yb) ** 2).mean()

    hist = fit(model, x, y=x @ w, x_val=x_val if val else None, y_val=x_val @ w / 3 if val else None, loss_fn=loss,
               epochs=epochs, batch_size=8, lr=lr, progress=False, ema=ema, keep_best=keep_best)
    return model, hist, iterates, (x_val, x_val @ w / 3)


def _averages(thetas, ema, warmup=True):
    """a_0 = theta_0, a_t = d_t a_{t-1} + (1 - d_t) theta_t with d_t = min(ema, (1+t)/(10+t)) (or
    d_t = ema without the warm-up), by hand."""
    avg, out = [p.clone() for p in thetas[0]], []
    for t, theta in enumerate(thetas[1:], start=1):
        d = min(ema, (1 + t) / (10 + t)) if warmup else ema
        avg = [d * a + (1 - d) * p for a, p in zip(avg, theta)]
        out.append(avg)
    return out  # after steps 1 .. T


def test_fit_with_ema_ends_with_the_warmed_up_average_of_the_iterates():
    """ema = 0.5, reached at step 8 of 15: the model ends as the recursion above over the same
    iterates as a run without averaging (averaging never steers), warm-up and cap both exercised."""
    plain, _, plain_iterates, _ = _ema_run(None)
    averaged, _, iterates, _ = _ema_run(0.5)
    assert len(iterates) == 15  # 3 epochs of 5 batches
    for a, b in zip(plain_iterates, iterates):
        for p, q in zip(a, b):
            assert torch.equal(p, q)
    thetas = iterates + [[p.detach() for p in plain.parameters()]]  # theta_0 .. theta_T
    for a, p in zip(_averages(thetas, 0.5)[-1], averaged.parameters()):
        torch.testing.assert_close(p.detach(), a, rtol=1e-12, atol=1e-12)
    # neither the last iterate nor an average without the cap or without the warm-up
    assert not torch.allclose(averaged.weight, plain.weight, atol=1e-4)
    for wrong in (_averages(thetas, 0.999)[-1], _averages(thetas, 0.5, warmup=False)[-1]):
        assert not torch.allclose(averaged.weight, wrong[0], atol=1e-6)


def test_fit_with_ema_validates_and_keeps_the_average():
    """With validation data the recorded losses are the average's at each epoch's end; keep_best
    returns the average of the best epoch (here not the last), keep_best=False the last one; the
    iterates are those of a plain run with the same validation."""
    from gencourse.train import evaluate

    epochs = 8
    _, plain_hist, plain_iterates, _ = _ema_run(None, epochs=epochs, lr=0.1, val=True)
    for keep_best in (True, False):
        model, hist, iterates, (x_val, y_val) = _ema_run(0.5, epochs=epochs, lr=0.1, val=True, keep_best=keep_best)
        assert len(iterates) == len(plain_iterates) == 5 * epochs
        for a, b in zip(plain_iterates, iterates):
            for p, q in zip(a, b):
                assert torch.equal(p, q)
        averages = _averages(iterates, 0.5)  # by hand, after steps 1 .. T-1
        assert len(hist.val) == epochs
        model.eval()
        with torch.no_grad():
            v = evaluate(lambda xb, yb: ((model(xb) - yb) ** 2).mean(), x_val, y_val)
        if keep_best:
            assert hist.best_epoch < epochs - 1, hist.val  # the validation loss rose again
            assert v == pytest.approx(min(hist.val), rel=1e-12)
            best = averages[5 * (hist.best_epoch + 1) - 1]
            for a, p in zip(best, model.parameters()):
                torch.testing.assert_close(p.detach(), a, rtol=1e-12, atol=1e-12)
        else:
            assert v == pytest.approx(hist.val[-1], rel=1e-12) and v > min(hist.val)
    assert plain_hist.val != hist.val  # the plain run validates its iterates, not an average


@pytest.mark.parametrize("ema", [1.0, -0.1, True, "0.9"])
def test_fit_refuses_a_decay_outside_0_1(ema):
    from gencourse.train import fit

    with pytest.raises(ValueError, match="ema must be a number in"):
        fit(nn.Linear(2, 1), torch.randn(4, 2), loss_fn=lambda xb: xb.sum(), epochs=1, progress=False, ema=ema)
