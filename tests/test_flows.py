"""gencourse.flows as zuko tests its transforms: shapes, inverse(forward(z)) = z, and log|det J|
against torch.linalg.slogdet of the autograd Jacobian."""
import pytest
import torch

from gencourse.flows import IAFPosterior, IAFStep

DT = torch.float64

FLOWS = {
    "step": lambda c: IAFStep(4, hidden=12, context_dim=c),
    "posterior, 3 steps": lambda c: IAFPosterior(4, n_steps=3, hidden=12, context_dim=c),
}


def _flow(name, context_dim, seed=1):
    torch.manual_seed(seed)
    flow = FLOWS[name](context_dim).double()
    for p in flow.parameters():  # move away from the near-identity initialisation
        p.data.add_(0.3 * torch.randn_like(p))
    ctx = torch.randn(3, context_dim, dtype=DT) if context_dim else None
    return flow, ctx


@pytest.mark.parametrize("context_dim", [0, 4])
@pytest.mark.parametrize("name", list(FLOWS))
def test_iaf_log_det_vs_autograd_jacobian(name, context_dim):
    flow, ctx = _flow(name, context_dim)
    z = torch.randn(3, 4, dtype=DT)
    out, log_det = flow(z, ctx)
    assert out.shape == (3, 4) and log_det.shape == (3,)
    for i in range(3):
        c = None if ctx is None else ctx[i:i + 1]
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None], c)[0][0], z[i])
        torch.testing.assert_close(torch.linalg.slogdet(jac)[1], log_det[i], atol=1e-10, rtol=0)
        assert abs(float(torch.linalg.det(jac))) > 0


@pytest.mark.parametrize("context_dim", [0, 4])
@pytest.mark.parametrize("name", list(FLOWS))
def test_iaf_inverse_undoes_forward(name, context_dim):
    flow, ctx = _flow(name, context_dim, seed=2)
    z = torch.randn(3, 4, dtype=DT)
    out, log_det = flow(z, ctx)
    back, inv_log_det = flow.inverse(out, ctx)
    torch.testing.assert_close(back, z, atol=1e-10, rtol=0)
    torch.testing.assert_close(inv_log_det, -log_det, atol=1e-10, rtol=0)
    # the inverse's log-determinant, against its own Jacobian
    c = None if ctx is None else ctx[:1]
    jac = torch.autograd.functional.jacobian(lambda v: flow.inverse(v[None], c)[0][0], out[0])
    torch.testing.assert_close(torch.linalg.slogdet(jac)[1], inv_log_det[0], atol=1e-10, rtol=0)
