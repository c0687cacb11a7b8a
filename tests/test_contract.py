"""ONE contract for every model of the library, checked the way zuko checks its flows: one table of
models, one parametrised test per clause, on the CPU and (when present) on CUDA.

The contract (DEVELOPERS.md): ``sample(n, *, generator=None)`` returns ``n`` samples on the model's
device, with the dtype and the per-example shape of the data, identical for the same generator seed
and different for different seeds; ``log_prob(x) -> (B,)`` in nats where it exists (VAEs:
``elbo(x) -> (B,)``); ``loss(x)`` a finite scalar that back-propagates to the parameters.
Conditional parts (the VAE's encoder and decoders) follow the same rules given their condition.

:func:`test_every_model_class_is_covered` finds every ``nn.Module`` of the library with ``sample``,
``log_prob`` or ``loss``: a new model family cannot forget to join the table.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Callable, Optional

import pytest
import torch
from torch import nn

import gencourse
from gencourse import ali, autoencoder, autoregressive as ar, flows, gan, kernels, mle, pixelcnn, vae
from gencourse import denoising, diffusion

B, N = 4, 5  # batch of data, number of samples
D, SIDE, LEVELS, H = 16, 4, 3, 2  # tiny data: 4x4 images with 3 levels, 2 latent dimensions
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def _levels(shape, k=LEVELS):
    return lambda dev: torch.randint(0, k, shape, generator=torch.Generator().manual_seed(0)).to(dev)


def _floats(shape, dtype=torch.float32):
    return lambda dev: torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=dtype).to(dev)


def _binary(shape):
    return lambda dev: (_floats(shape)(dev) > 0.5).float()


def _labels(n, dev):
    return {"y": torch.arange(n, device=dev) % 3}


@dataclass
class Case:
    make: Callable  # device -> the model on that device
    data: Callable  # device -> a batch (B, ...) of the model's data
    cond: Optional[Callable] = None  # (n, device) -> extra keywords of sample / log_prob / loss (labels)
    score: str = "log_prob"  # the per-example score: log_prob, or elbo for a VAE
    kw: dict = field(default_factory=dict)

    def build(self, dev):
        return self.make(dev)

    def extra(self, n, dev):
        return {} if self.cond is None else self.cond(n, dev)


def _module(factory):
    return lambda dev: factory().to(dev)


def _vae(decoder, prior, **kw):
    data = {"bernoulli": _binary((B, D)), "gaussian": _floats((B, D))}.get(decoder, _levels((B, D)))
    opts = {} if decoder in ("bernoulli", "gaussian") else {"n_levels": LEVELS}
    opts.update({"made": {"made_hidden": (12,)}, "pixelcnn": {"pixelcnn_channels": 4, "pixelcnn_layers": 2}}.get(decoder, {}))
    if prior == "vamp":
        opts["n_pseudo"] = 3
    return Case(_module(lambda: vae.make_vae(decoder, data_dim=D, latent_dim=H, hidden=(8,), prior=prior, **opts, **kw)),
                data, score="elbo")


def _gmm(dev):
    x = torch.cat([torch.randn(50, 2, generator=torch.Generator().manual_seed(0)) + c for c in (-3.0, 3.0)])
    return mle.fit_gmm(x.to(dev), 2, iters=5)


MODELS = {
    "FVSBN": Case(_module(lambda: ar.FVSBN(6)), _levels((B, 6), 2)),
    "FVSBN-categorical": Case(_module(lambda: ar.FVSBN(6, n_levels=LEVELS, order=[5, 3, 1, 0, 2, 4])), _levels((B, 6))),
    "NADE": Case(_module(lambda: ar.NADE(6, 8, n_levels=LEVELS)), _levels((B, 6))),
    "MADE": Case(_module(lambda: ar.MADE(6, (16,), n_levels=LEVELS)), _levels((B, 6))),
    "MADE-ensemble": Case(_module(lambda: ar.MADE(6, (16,), num_masks=2, order_agnostic=True)), _levels((B, 6), 2)),
    "MADE-gaussian": Case(_module(lambda: ar.MADE(6, (16,), n_levels=LEVELS, output="gaussian")), _floats((B, 6))),
    "MADE-logistic": Case(_module(lambda: ar.MADE(6, (16,), n_levels=LEVELS, output="logistic")), _levels((B, 6))),
    "RecurrentAR": Case(_module(lambda: ar.RecurrentAR(6, n_levels=LEVELS, hidden=8)), _levels((B, 6))),
    "RecurrentAR-lstm": Case(_module(lambda: ar.RecurrentAR(6, hidden=8, cell="lstm")), _levels((B, 6), 2)),
    "CausalConvAR": Case(_module(lambda: ar.CausalConvAR(6, n_levels=LEVELS, channels=8, dilations=(1, 2))),
                         _levels((B, 6))),
    "PixelCNN": Case(_module(lambda: pixelcnn.PixelCNN(LEVELS, 8, 2, image_shape=(SIDE, SIDE))),
                     _levels((B, 1, SIDE, SIDE))),
    "PixelCNN-class-conditional": Case(_module(lambda: pixelcnn.PixelCNN(LEVELS, 8, 2, num_classes=3,
                                                                         image_shape=(SIDE, SIDE))),
                                       _levels((B, 1, SIDE, SIDE)), cond=_labels),
    "GatedPixelCNN": Case(_module(lambda: pixelcnn.GatedPixelCNN(LEVELS, 8, 2, image_shape=(SIDE, SIDE))),
                          _levels((B, 1, SIDE, SIDE))),
    "GatedPixelCNN-class-conditional": Case(_module(lambda: pixelcnn.GatedPixelCNN(LEVELS, 8, 2, num_classes=3,
                                                                                   image_shape=(SIDE, SIDE))),
                                            _levels((B, 1, SIDE, SIDE)), cond=_labels),
    **{f"VAE-{d}-{p}": _vae(d, p) for d in vae.DECODERS for p in vae.PRIORS},
    "VAE-iaf": _vae("bernoulli", "standard", iaf_steps=2, iaf_hidden=8),
    "VAE-iwae-loss": _vae("categorical", "standard", train_k=3),
    "LinearGaussianModel": Case(_module(lambda: vae.LinearGaussianModel.random(5, 2)), _floats((B, 5), torch.float64)),
    "GMMFit": Case(_gmm, _floats((B, 2))),
    "StandardNormalPrior": Case(_module(lambda: vae.StandardNormalPrior(H)), _floats((B, H))),
    "VampPrior": Case(_module(lambda: vae.VampPrior(vae.GaussianEncoder(D, H, (8,)), n_pseudo=3)), _floats((B, H))),
    "Flow-realnvp": Case(_module(lambda: flows.realnvp(D, 2, 8, mixing="linear")), _floats((B, D))),
    "Flow-maf": Case(_module(lambda: flows.maf(D, 2, 8)), _floats((B, D))),
    "Flow-image-realnvp": Case(_module(lambda: flows.image_realnvp((1, SIDE, SIDE), 4, 2, 2)),
                               _floats((B, 1, SIDE, SIDE))),
    "DequantizedFlow": Case(_module(lambda: flows.DequantizedFlow(flows.image_realnvp((1, SIDE, SIDE), 4, 2, 2), LEVELS)),
                            _levels((B, 1, SIDE, SIDE))),
    "DequantizedFlow-variational": Case(_module(lambda: flows.DequantizedFlow(
        flows.image_realnvp((1, SIDE, SIDE), 4, 2, 2), LEVELS, flows.VariationalDequantizer(SIDE * SIDE, LEVELS, 8))),
        _levels((B, 1, SIDE, SIDE))),
    "VariationalFlow-planar": Case(_module(lambda: flows.VariationalFlow([flows.PlanarFlow(H, seed=k) for k in range(2)], H)),
                                   _floats((B, H))),
    **{f"GAN-{kind}": Case(_module(lambda kind=kind: gan.mlp_gan(2, 2, 8, 1, kind=kind)), _floats((B, 2)), score="")
       for kind in gan.KINDS},
    "GAN-dcgan": Case(_module(lambda: gan.dcgan(4, 4)), _floats((B, 1, 8, 8)), score=""),
    "ALI": Case(_module(lambda: ali.mlp_ali(D, H, 8, 1, output="sigmoid")), _floats((B, D)), score=""),
    "KernelDensity": Case(lambda dev: kernels.KernelDensity(_floats((20, 2))(dev), 0.3), _floats((B, 2))),
    "MMDNet": Case(_module(lambda: kernels.MMDNet(D, 3, (8,))), _floats((B, D)), score=""),
    "MMDNet-sigmoid": Case(_module(lambda: kernels.MMDNet(D, 3, (8,), output="sigmoid")), _floats((B, D)), score=""),
    "Autoencoder": Case(_module(lambda: autoencoder.Autoencoder(D, H, (8,))), _floats((B, D)), score=""),
    "DenoisingAutoencoder": Case(_module(lambda: autoencoder.DenoisingAutoencoder(D, H, (8,))), _floats((B, D)),
                                 score=""),
    "GeneralizedDAE-walkback": Case(_module(lambda: denoising.GeneralizedDAE(D, (8,), walkback=2)), _floats((B, D)), score=""),
    "DDPM-toy": Case(_module(lambda: diffusion.DDPM(diffusion.MLPDenoiser(2, (8,), emb_dim=4), 2, T=5)),
                     _floats((B, 2)), score="elbo"),
    "DDPM-levels": Case(_module(lambda: diffusion.DDPM(diffusion.ConvDenoiser(SIDE, 8, 1, emb_dim=8), D, T=5,
                                                       n_levels=LEVELS)), _levels((B, D)), score="elbo"),
    "BinaryGeneralizedDAE": Case(_module(lambda: denoising.BinaryGeneralizedDAE(D, (8,), walkback=1)), _binary((B, D)), score=""),
}

#: Conditional parts of a VAE: (part, its data x, the condition), each a function of the device.
ENCODER = lambda **kw: vae.GaussianEncoder(D, H, (8,), **kw)  # noqa: E731
CONDITIONAL = {
    "GaussianEncoder": (ENCODER, _floats((B, D))),
    "GaussianEncoder-iaf": (lambda: ENCODER(iaf_steps=2, iaf_hidden=8), _floats((B, D))),
    "BernoulliDecoder": (lambda: vae.BernoulliDecoder(D, H, (8,)), _binary((B, D))),
    "CategoricalDecoder": (lambda: vae.CategoricalDecoder(D, H, LEVELS, (8,)), _levels((B, D))),
    "LogisticMixtureDecoder": (lambda: vae.LogisticMixtureDecoder(D, H, LEVELS, 2, (8,)), _levels((B, D))),
    "GaussianDecoder": (lambda: vae.GaussianDecoder(D, H, (8,)), _floats((B, D))),
    "MADEDecoder": (lambda: vae.MADEDecoder(D, H, LEVELS, (12,), (8,), direct_window=1), _levels((B, D))),
    "PixelCNNDecoder": (lambda: vae.PixelCNNDecoder(D, H, LEVELS, 4, 2), _levels((B, D))),
}

#: Bases that only ever run through a subclass (each must be the base of a covered class).
ABSTRACT = {ar.AutoregressiveModel, pixelcnn.ImageAutoregressiveModel}


def _gen(dev, seed):
    return torch.Generator(device=dev).manual_seed(seed)


def _param_dtype(model, data):
    params = list(model.parameters()) if isinstance(model, nn.Module) else []
    floating = [p.dtype for p in params if p.is_floating_point()]
    return floating[0] if floating else data.dtype


# ---------------------------------------------------------------- the contract
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", [n for n in MODELS if n not in ("Autoencoder", "DenoisingAutoencoder")])
def test_sample(name, device):
    case = MODELS[name]
    model, x = case.build(device), case.data(device)
    if isinstance(model, nn.Module):
        model.eval()
    draw = lambda seed: model.sample(N, generator=_gen(device, seed), **case.extra(N, device))  # noqa: E731
    a, b, c = draw(0), draw(0), draw(1)
    assert a.shape == (N, *x.shape[1:]), f"{name}: samples {tuple(a.shape)} for data {tuple(x.shape)}"
    assert a.device.type == torch.device(device).type
    assert a.dtype == x.dtype, f"{name}: samples are {a.dtype}, the data {x.dtype}"
    assert torch.isfinite(a.double()).all()
    assert torch.equal(a, b), f"{name}: the same generator seed must give the same samples"
    assert not torch.equal(a, c), f"{name}: different seeds gave identical samples"
    if case.score:  # samples are valid data for the model's own score
        with torch.no_grad():
            assert torch.isfinite(getattr(model, case.score)(a, **case.extra(N, device))).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", [n for n, c in MODELS.items() if c.score])
def test_log_prob(name, device):
    case = MODELS[name]
    model, x = case.build(device), case.data(device)
    with torch.no_grad():
        lp = getattr(model, case.score)(x, **case.extra(B, device))
    assert lp.shape == (B,), f"{name}.{case.score}: expected ({B},), got {tuple(lp.shape)}"
    assert lp.device.type == torch.device(device).type
    assert lp.dtype == _param_dtype(model, x) and torch.isfinite(lp).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", [n for n, c in MODELS.items() if hasattr(c.build("cpu"), "loss")])
def test_loss(name, device):
    case = MODELS[name]
    model, x = case.build(device), case.data(device)
    loss = model.loss(x, **case.extra(B, device))
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.device.type == torch.device(device).type
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, f"{name}: the loss reaches no parameter"
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(CONDITIONAL))
def test_conditional_parts(name, device):
    """Encoders: z ~ q(z | x) with log q; decoders: x ~ p(x | z) and log p(x | z), for one or S latents."""
    make, data = CONDITIONAL[name]
    part, x = make().to(device).eval(), data(device)
    if isinstance(part, vae.GaussianEncoder):
        z, log_q = part.sample(x, 3, generator=_gen(device, 0))
        assert z.shape == (3, B, H) and log_q.shape == (3, B) and torch.isfinite(log_q).all()
        assert torch.equal(z, part.sample(x, 3, generator=_gen(device, 0))[0])
        assert not torch.equal(z, part.sample(x, 3, generator=_gen(device, 1))[0])
        with torch.no_grad():
            torch.testing.assert_close(part.log_prob(z, x), log_q, atol=1e-4, rtol=1e-4)
        return
    z = torch.randn(3, B, H, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        assert part.log_prob(x, z[0]).shape == (B,) and part.log_prob(x, z).shape == (3, B)
        assert torch.isfinite(part.log_prob(x, z)).all()
    s = part.sample(z[0], generator=_gen(device, 0))
    assert s.shape == x.shape and s.dtype == x.dtype and s.device.type == torch.device(device).type
    assert torch.equal(s, part.sample(z[0], generator=_gen(device, 0)))
    assert not torch.equal(s, part.sample(z[0], generator=_gen(device, 1)))


# ---------------------------------------------------------------- nothing escapes the table
def _library_models() -> set:
    """Every nn.Module class defined in a gencourse module that has sample, log_prob or loss."""
    found = set()
    for info in pkgutil.iter_modules(gencourse.__path__):
        if info.ispkg:  # gencourse.grading: the grading side, no models
            continue
        module = importlib.import_module(f"gencourse.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (cls.__module__ == module.__name__ and issubclass(cls, nn.Module)
                    and any(hasattr(cls, m) for m in ("sample", "log_prob", "loss"))):
                found.add(cls)
    return found


def test_every_model_class_is_covered():
    covered = {type(case.build("cpu")) for case in MODELS.values()}
    covered |= {type(make()) for make, _ in CONDITIONAL.values()}
    missing = _library_models() - covered - ABSTRACT
    assert not missing, f"add to MODELS (or CONDITIONAL) in tests/test_contract.py: {sorted(c.__name__ for c in missing)}"
    for base in ABSTRACT:
        assert any(issubclass(c, base) for c in covered), f"{base.__name__} has no covered subclass"
    assert mle.GMMFit in covered  # not an nn.Module, but a fitted model that samples
