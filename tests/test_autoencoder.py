"""Tests of gencourse.autoencoder against independent oracles (scikit-learn PCA, scipy's
subspace angles). (The digit classifier and nearest neighbours are tested in test_metrics.py.)"""
import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

from gencourse.autoencoder import (Autoencoder, DenoisingAutoencoder, pca_basis, principal_angles,
                                   random_latents)
from gencourse.data import load_digits
from gencourse.train import fit, seed_everything



def test_principal_angles_vs_scipy():
    g = np.random.default_rng(0)
    a, b = g.normal(size=(10, 3)), g.normal(size=(10, 4))
    ours = principal_angles(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert np.allclose(np.sort(ours), np.sort(subspace_angles(a, b)), atol=1e-7)
    mix = torch.from_numpy(a @ g.normal(size=(3, 3)))  # same span, different basis
    assert torch.all(principal_angles(torch.from_numpy(a), mix) < 1e-6)


def test_pca_basis_vs_sklearn():
    x, _ = load_digits("train", "float")
    basis, mean = pca_basis(x.double(), 6)
    pca = PCA(6).fit(x.numpy())
    assert np.allclose(mean.numpy(), pca.mean_, atol=1e-6)
    assert torch.all(principal_angles(basis, torch.from_numpy(pca.components_.T)) < 1e-4)


def test_linear_autoencoder_spans_the_pca_subspace():
    """Baldi & Hornik: the optimum of a linear AE with squared error spans the top-k PCA subspace."""
    seed_everything(0)
    x, _ = load_digits("train", "float")
    k = 4
    model = Autoencoder(latent_dim=k, hidden=(), linear=True)
    fit(model, x, epochs=150, batch_size=100, lr=1e-2, progress=False)
    pca = PCA(k).fit(x.numpy())
    pca_err = ((x.numpy() - pca.inverse_transform(pca.transform(x.numpy()))) ** 2).sum(1).mean()
    with torch.no_grad():
        ae_err = float(model.reconstruction_error(x).mean())
        angles = principal_angles(model.decoder[0].weight, torch.from_numpy(pca.components_.T))
        random_angles = principal_angles(torch.randn(64, k), torch.from_numpy(pca.components_.T))
    assert ae_err == pytest.approx(pca_err, rel=0.02)  # PCA is the optimum: nearly reached
    assert ae_err >= pca_err * (1 - 1e-3)  # and never beaten
    # the leading directions agree closely; the last one converges slowest (small eigen-gap)
    assert angles[:k - 1].max() < 0.05
    assert angles.max() < 0.4
    assert random_angles.max() > 1.0  # while a random subspace is far off


def test_shapes_and_loss_reductions():
    torch.manual_seed(0)
    x, _ = load_digits("val", "float")
    ae = Autoencoder(latent_dim=3, hidden=(16,))
    assert ae.encode(x).shape == (350, 3) and ae(x).shape == (350, 64)
    err = ae.reconstruction_error(x)
    assert err.shape == (350,)
    assert torch.allclose(err, ((x - ae(x)) ** 2).sum(1))
    assert torch.allclose(ae.loss(x), err.mean())
    dae = DenoisingAutoencoder(latent_dim=3, hidden=(16,), noise_std=0.5)
    g = torch.Generator().manual_seed(0)
    noisy = dae.corrupt(x, g)
    assert (noisy - x).std().item() == pytest.approx(0.5, rel=0.02)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.allclose(dae.denoising_error(x, g1), ((x - dae(dae.corrupt(x, g2))) ** 2).sum(1))


def test_denoising_autoencoder_removes_noise():
    seed_everything(0)
    x, _ = load_digits("train", "float")
    xv, _ = load_digits("val", "float")
    dae = DenoisingAutoencoder(latent_dim=16, hidden=(64,), noise_std=0.3)
    fit(dae, x, epochs=25, batch_size=100, lr=3e-3, progress=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        noisy = dae.corrupt(xv, g)
        before = ((noisy - xv) ** 2).sum(1).mean()
        after = ((dae(noisy) - xv) ** 2).sum(1).mean()
    assert after < 0.5 * before


def test_random_latents():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5]) + 3
    box = random_latents(z, 1000, g, how="box")
    assert box.shape == (1000, 3)
    assert torch.all(box >= z.min(0).values) and torch.all(box <= z.max(0).values)
    gauss = random_latents(z, 20000, g, how="gaussian")
    assert torch.allclose(gauss.mean(0), z.mean(0), atol=0.05)
    assert torch.allclose(gauss.std(0), z.std(0), rtol=0.03)
