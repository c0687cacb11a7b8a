"""Benchmark of the reference VAEs on the 8x8 digits (fixed course split, CPU, fixed time budget).

Rows: test -ELBO and importance-weighted estimates -L_K of -log p(x) (K = 1, 10, 100, 1000) in
nats per image, for a VAE with a 17-level categorical decoder on the integer digits, the same VAE
with a factorised decoder whose pixels are mixtures of discretized logistics (``vae_logistic17``),
with an autoregressive (MADE) decoder p(x | z) = \prod_d p(x_d | x_{<d}, z) (``vae_made17``), a
PixelVAE whose decoder is a Gated PixelCNN given z (``vae_pixelcnn17``; Gulrajani et al., 2017), and a
VAE with a Bernoulli decoder on the binarised digits, plus their training time, epochs and active
latent units. Settings were chosen on the validation split (best-val weights); test is reported once.

Reference: the plain VAE of Tomczak's intro_dgm (categorical decoder, 16-d latent) reports about
93.0 nats/image (importance sampling, K = 5000) after about 30 s of training.

Run: ``python benchmarks/bench_vae.py`` (the full measurement) or ``run(quick=True)`` (smoke run).
"""
from __future__ import annotations

import time

import torch

from gencourse.data import load_digits
from gencourse.train import fit, seed_everything
from gencourse.vae import make_vae

#: The reference configuration (one wide hidden layer: the best of a small sweep on validation).
CONFIG = dict(latent_dim=16, hidden=(512,), dropout=0.0)
#: The factorised decoder with a mixture of 3 discretized logistics per pixel (``make_vae("logistic")``):
#: three numbers per component instead of 17 logits per pixel, smooth over neighbouring levels, so it
#: overfits the 1000 training digits far less (best validation epoch ~120 against ~30); dropout 0.3
#: and 3 components chosen among dropout 0.3/0.5, latent 16/32 and 3/5 components on validation IWAE_100.
LOGISTIC_CONFIG = dict(decoder="logistic", latent_dim=16, hidden=(512,), dropout=0.3, n_mixtures=3)
#: The autoregressive-decoder VAE (chosen on validation IWAE_100 among MADE widths 128-512,
#: dropout 0-0.5, latent 8/16, direct-connection windows 1/2/all, N(0, I) vs VampPrior).
MADE_CONFIG = dict(decoder="made", latent_dim=16, hidden=(512,), made_hidden=(128,), made_window=2, dropout=0.5)
#: The PixelVAE: a Gated PixelCNN decoder (the autoregressive benchmark's 60-s setting, 32 channels,
#: 6 layers, dropout 0.3) with z as a per-layer bias; one validation run (60 s): -IWAE_100 85.9.
PIXELCNN_CONFIG = dict(decoder="pixelcnn", latent_dim=16, hidden=(512,), dropout=0.0, pixelcnn_channels=32,
                       pixelcnn_layers=6, pixelcnn_dropout=0.3)
LR = 1e-3
BATCH_SIZE = 64
TRAIN_SECONDS = 60.0  # the full run's wall-clock training budget per model
QUICK_SECONDS = 3.0
KS = (1, 10, 100, 1000)
QUICK_KS = (1, 10)
ELBO_SAMPLES = 10  # samples averaged for the test -ELBO (it is an expectation)
TOMCZAK_VAE_NATS = 93.0


def _bench_one(decoder: str, kind: str, quick: bool, seed: int = 0, config: dict | None = None) -> list[dict]:
    x, _ = load_digits("train", kind)
    xv, _ = load_digits("val", kind)
    xt, _ = load_digits("test", kind)
    if quick:
        xt = xt[:100]
    seed_everything(seed)
    config = dict(CONFIG, decoder=decoder) if config is None else config
    model = make_vae(**config)
    seconds = QUICK_SECONDS if quick else TRAIN_SECONDS
    hist = fit(model, x, x_val=xv, epochs=100_000, max_seconds=seconds, lr=LR, batch_size=BATCH_SIZE,
               seed=seed, progress=False)
    name = f"vae_{decoder}" + ("17" if decoder in ("categorical", "logistic", "made", "pixelcnn") else "")
    extra = "".join(f", {k} {config[k]}" for k in ("n_mixtures", "made_hidden", "made_window", "pixelcnn_channels",
                                                   "pixelcnn_layers", "pixelcnn_dropout") if k in config)
    settings = (f"latent {config['latent_dim']}, hidden {config['hidden']}{extra}, dropout {config['dropout']}, "
                f"Adam lr {LR}, batch {BATCH_SIZE}, best-val weights (epoch {hist.best_epoch + 1} of {hist.epochs})")
    rows = [
        dict(benchmark=name, case="training time", value=round(hist.seconds, 1), unit="s",
             note=f"wall clock, shared 2-core CPU, budget {seconds:.0f} s, {torch.get_num_threads()} thread(s)"),
        dict(benchmark=name, case="epochs", value=hist.epochs, unit="epochs", note=settings),
    ]
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        nelbo = -torch.stack([model.elbo(xt) for _ in range(ELBO_SAMPLES)]).mean().item()
    rows.append(dict(benchmark=name, case="test -ELBO", value=round(nelbo, 2), unit="nats/image",
                     note=f"{len(xt)} test images, mean of {ELBO_SAMPLES} one-sample estimates"))
    for k in (QUICK_KS if quick else KS):
        torch.manual_seed(seed + 2)
        start = time.perf_counter()
        with torch.no_grad():
            value = -model.log_prob_estimate(xt, k).mean().item()
        rows.append(dict(benchmark=name, case=f"test -IWAE K={k}", value=round(value, 2), unit="nats/image",
                         note=f"estimate of -log p(x) (an upper bound in expectation); {time.perf_counter() - start:.1f} s"))
    rows.append(dict(benchmark=name, case="active units", value=model.active_units(xt), unit="of "
                     f"{config['latent_dim']}", note="Cov_x E_q[z_j | x] > 0.01 on the test images (Burda et al.)"))
    return rows


def run(quick: bool = False) -> list[dict]:
    """Train and evaluate the four reference VAEs; ``quick`` shrinks budgets to a smoke run (< 30 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small MLPs: one thread is faster than two on a shared CPU
    try:
        rows = _bench_one("categorical", "levels", quick)
        rows.append(dict(benchmark="vae_categorical17", case="reference: intro_dgm VAE", value=TOMCZAK_VAE_NATS,
                         unit="nats/image", note="Tomczak's plain VAE, K = 5000, ~30 s training (their report)"))
        rows += _bench_one("logistic", "levels", quick, config=LOGISTIC_CONFIG)
        rows += _bench_one("made", "levels", quick, config=MADE_CONFIG)
        rows += _bench_one("pixelcnn", "levels", quick, config=PIXELCNN_CONFIG)
        rows += _bench_one("bernoulli", "binary", quick)
    finally:
        torch.set_num_threads(threads)
    return rows


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(f"{row['benchmark']:<20} {row['case']:<26} {row['value']!s:>8} {row['unit']:<11} {row['note']}")
