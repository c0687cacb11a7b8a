"""The leaderboard: every model of the course on the 8x8 digits split, in ONE table (CPU, one seed,
a fixed number of steps or epochs per model).

Models, with the settings the benchmarks and lectures already chose, each trained for a FIXED
length (about a minute of one CPU thread, measured) on the 1000 training digits:

* likelihood models on the 17-level integers: MADE and PixelCNN / Gated PixelCNN
  (``bench_autoregressive``), the categorical VAE and the PixelVAE (``bench_vae``, Gated PixelCNN
  decoder given z), the image RealNVP with uniform dequantization (``bench_flows``), the Gaussian
  KDE on the dequantized digits (``bench_kernels``, bandwidth chosen on validation);
* sample-only models on the floats in [0, 1]: the MMD net (``bench_kernels``), the DCGAN of lecture
  07 with the non-saturating GAN loss and with WGAN-GP (the same networks), and ALI (lecture 09's
  ``mlp_ali(64, 16, 128, 2, output="sigmoid")``);
* the diffusion model of lecture 10 (``bench_diffusion``'s digits DDPM): its variational bound on the
  discrete levels (a valid upper bound on the NLL, in expectation), and ancestral samples.

Scores. Test NLL in nats per image and bits/dim where a likelihood exists: exact for the
autoregressive models, -IWAE L_K for the VAEs, the importance-weighted dequantized bound (-D log L
included) for the flow and the KDE; all valid upper bounds on the discrete NLL (in expectation
for the stochastic ones). For every model that samples, as many samples as there are validation
digits (350), as floats in [0, 1] (integer levels / 16): inception score with the course's
``DigitClassifier`` (logistic regression on the training digits), Fréchet distance between its
logits on the samples and on the 447 test digits (``metrics.digit_features``) and unbiased MMD^2 to
the test digits (``metrics.mmd_to_data``). The validation digits scored the same way are the
real-data reference (beside them 350 training digits, to show how much the reference itself moves).
The peers' rows (Tomczak's intro_dgm on the same split) are quoted, not rerun.

Run: ``python benchmarks/bench_leaderboard.py --write`` (the full measurement, about 12 minutes;
writes ``benchmarks/results/leaderboard.md``), ``python benchmarks/run.py --only leaderboard``,
or ``run(quick=True)`` (smoke run, tiny models, well under a minute).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

from gencourse import ali, flows, gan, kernels
from gencourse.diffusion import DDPM, ConvDenoiser
from gencourse.autoregressive import MADE
from gencourse.data import N_LEVELS, load_digits
from gencourse.metrics import (
    DigitClassifier,
    bits_per_dim,
    digit_features,
    frechet_distance,
    inception_score,
    mmd_to_data,
)
from gencourse.pixelcnn import GatedPixelCNN, PixelCNN
from gencourse.train import evaluate, fit, seed_everything
from gencourse.vae import make_vae

RESULTS = Path(__file__).resolve().parent / "results" / "leaderboard.md"
D = 64
SAMPLE_SEED = 1

#: Fixed training lengths: (full run, quick run). Epochs of the 1000 training digits for the
#: likelihood models (best-validation weights kept, as in their benchmarks), generator steps for the
#: sample-only ones. Chosen so that each model trains for at most about 60-90 s on one loaded thread (the
#: DDPM about three times that: a diffusion model needs its epochs),
#: and the likelihood models for two to four times the epoch of their best validation loss.
LENGTHS = {
    "MADE": (120, 2), "PixelCNN": (60, 1), "Gated PixelCNN": (60, 1), "VAE": (120, 2), "VAE (logistic)": (300, 2),
    "PixelVAE": (70, 1),
    "RealNVP": ((50, 20), (1, 1)), "MMD net": (3000, 20), "DCGAN": (3000, 20), "WGAN-GP": (1500, 5), "ALI": (3000, 20),
    "DDPM": (60, 1),
}
#: Importance samples of the likelihood bounds: (full, quick).
VAE_K, PIXELVAE_K, FLOW_K, KDE_K = (1000, 10), (100, 5), (100, 2), (100, 2)
ELBO_SAMPLES = 10
N_SUBSETS = 10  # random sets of real training digits scored to show the scores' spread

#: bench_autoregressive's settings (Adam lr 3e-3, batch 64).
AR_LR, AR_BATCH = 3e-3, 64
#: bench_vae's CONFIG and PIXELCNN_CONFIG (Adam lr 1e-3, batch 64).
VAE_CONFIG = dict(decoder="categorical", latent_dim=16, hidden=(512,), dropout=0.0)
#: bench_vae's LOGISTIC_CONFIG: the factorised decoder with a mixture of 3 discretized logistics per pixel.
LOGISTIC_VAE_CONFIG = dict(decoder="logistic", latent_dim=16, hidden=(512,), dropout=0.3, n_mixtures=3)
PIXELVAE_CONFIG = dict(decoder="pixelcnn", latent_dim=16, hidden=(512,), dropout=0.0, pixelcnn_channels=32,
                       pixelcnn_layers=6, pixelcnn_dropout=0.3)
VAE_LR, VAE_BATCH = 1e-3, 64
#: bench_flows's DIGIT_CONFIG: Adam lr 1e-3 at batch 64, then lr 1e-4 at batch 128.
FLOW_CONFIG = dict(hidden=64, n_checkerboard=4, n_channel=4)
FLOW_LR, FLOW_BATCH = 1e-3, 64
#: bench_kernels's digit settings.
KDE_BANDWIDTHS = [0.05, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3]
MMD_NET = dict(noise_dim=16, hidden=(256, 256), bandwidths=(1.0, 2.0, 4.0, 8.0), output="sigmoid")
MMD_LR, MMD_BATCH = 1e-3, 200
#: The adversarial models: lecture 07's DCGAN optimizer (Adam 2e-3, betas (0.5, 0.999), batch 64, k = 1);
#: WGAN-GP as tuned in bench_gan (k = 5, Adam 1e-3, betas (0, 0.9)) with the image penalty weight 10;
#: ALI as lecture 09. Every one keeps bench_gan's generator EMA 0.995.
GAN_OPT = dict(k=1, batch_size=64, lr_d=2e-3, lr_g=2e-3, betas=(0.5, 0.999), ema=0.995)
WGAN_GP_OPT = dict(k=5, batch_size=64, lr_d=1e-3, lr_g=1e-3, betas=(0.0, 0.9), ema=0.995)
WGAN_GP_WEIGHT = 10.0

#: bench_diffusion's DIGITS: a DDPM with the convolutional denoiser, T = 100, sigma_t^2 = beta_t, the simplified loss.
DDPM_CONFIG = dict(T=100, schedule="cosine", channels=64, n_blocks=4)
DDPM_LR, DDPM_BATCH = 2e-3, 128

#: The peers: Tomczak's intro_dgm on the same split, as this project quotes them (not rerun).
PEERS = [
    dict(model="intro_dgm VAE", family="latent variable (VAE)", data="the same split, 17 levels", nll=93.0,
         seconds="~30", length="", note="plain VAE, categorical decoder, 16-d latent; importance sampling, K = 5000; "
                                        "their report (quoted in benchmarks/bench_vae.py)"),
    dict(model="intro_dgm RealNVP", family="flow", data="the same split, dequantized", nll=166.8, seconds="~60",
         length="", note="valid bound (162-197 over three seeds); its notebook prints a number 44.4 nats lower "
                         "(noise density left out); benchmarks/bench_flows.py"),
    dict(model="intro_dgm ARM (causal convolutions)", family="autoregressive", data="the same split, 17 levels",
         nll=86.4, seconds="~210-245", length="", note="benchmarks/bench_autoregressive.py"),
]


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _digits(quick: bool) -> dict:
    levels = {s: load_digits(s)[0] for s in ("train", "val", "test")}
    floats = {s: load_digits(s, "float")[0] for s in ("train", "val", "test")}
    if quick:
        levels["test"], floats["test"] = levels["test"][:100], floats["test"][:100]
    return dict(levels=levels, floats=floats, n_samples=100 if quick else len(floats["val"]))


def _unit(samples: torch.Tensor) -> torch.Tensor:
    """A model's samples as floats in [0, 1], ``(N, 64)``: integer levels / 16, floats as they are."""
    s = samples.detach().reshape(len(samples), -1).cpu()
    if not s.is_floating_point():
        s = s.float() / (N_LEVELS - 1)
    s = s.float()
    if s.shape[1] != D or not bool(((s >= 0) & (s <= 1)).all()):
        raise ValueError(f"samples must be (N, {D}) in [0, 1], got {tuple(s.shape)} in [{s.min():.3g}, {s.max():.3g}]")
    return s


def _sample(model, n: int) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    with torch.no_grad():
        s = model.sample(n, generator=torch.Generator().manual_seed(SAMPLE_SEED))
    return _unit(s), time.perf_counter() - start


def _entry(model, family, data, nll, nll_note, samples, seconds, length, note, sample_seconds=None) -> dict:
    return dict(model=model, family=family, data=data, nll=nll, nll_note=nll_note, samples=samples, seconds=seconds,
                length=length, note=note, sample_seconds=sample_seconds, load=_load())


# --------------------------------------------------------------------------------------------
# The models
# --------------------------------------------------------------------------------------------
def _autoregressive(name: str, quick: bool, d: dict) -> dict:
    x, xv, xt = d["levels"]["train"], d["levels"]["val"], d["levels"]["test"]
    epochs = LENGTHS[name][quick]
    seed_everything(0)
    if name == "MADE":
        model, settings = MADE(D, (64,) if quick else (512,), n_levels=N_LEVELS), "hidden (512,), natural order"
    elif name == "PixelCNN":
        model = PixelCNN(channels=16, n_layers=3) if quick else PixelCNN(channels=64, n_layers=5)
        settings = "64 channels, 5x5 mask A + 4 residual 3x3 mask B"
    else:
        model = GatedPixelCNN(channels=16, n_layers=3) if quick else GatedPixelCNN(channels=32, n_layers=6, dropout=0.3)
        settings = "32 channels, 6 gated layers, dropout 0.3"
    hist = fit(model, x, x_val=xv, epochs=epochs, batch_size=AR_BATCH, lr=AR_LR, progress=False)
    nll = evaluate(model.loss, xt)
    samples, t = _sample(model, d["n_samples"])
    # the Gated PixelCNN keeps the setting bench_autoregressive used before it went wider, with
    # averaged weights at a smaller learning rate
    source = "bench_autoregressive" + ("'s earlier setting" if name == "Gated PixelCNN" else "")
    return _entry(name, "autoregressive", "train, 17 levels", nll, "exact", samples, hist.seconds,
                  f"{hist.epochs} epochs (best val {hist.best_epoch + 1})",
                  f"{settings} ({source}); Adam lr {AR_LR:g}, batch {AR_BATCH}, best-val weights", t)


def _vae(name: str, quick: bool, d: dict) -> dict:
    x, xv, xt = d["levels"]["train"], d["levels"]["val"], d["levels"]["test"]
    config = dict({"VAE": VAE_CONFIG, "VAE (logistic)": LOGISTIC_VAE_CONFIG}.get(name, PIXELVAE_CONFIG))
    if quick:
        config["hidden"] = (64,)
        if name == "PixelVAE":
            config.update(pixelcnn_channels=8, pixelcnn_layers=2)
    k = (PIXELVAE_K if name == "PixelVAE" else VAE_K)[quick]
    seed_everything(0)
    model = make_vae(**config)
    hist = fit(model, x, x_val=xv, epochs=LENGTHS[name][quick], batch_size=VAE_BATCH, lr=VAE_LR, progress=False)
    torch.manual_seed(1)
    with torch.no_grad():
        nelbo = -torch.stack([model.elbo(xt) for _ in range(ELBO_SAMPLES)]).mean().item()
        torch.manual_seed(2)
        nll = -model.log_prob_estimate(xt, k).mean().item()
    samples, t = _sample(model, d["n_samples"])
    decoder = {"VAE": "categorical decoder",
               "VAE (logistic)": "decoder: a mixture of 3 discretized logistics per pixel, dropout 0.3"}.get(
        name, "Gated PixelCNN decoder given z (32 channels, 6 layers, dropout 0.3)")
    return _entry(name, "VAE + autoregressive decoder" if name == "PixelVAE" else "latent variable (VAE)",
                  "train, 17 levels", nll, f"-IWAE L_{k} (-ELBO {nelbo:.2f})", samples, hist.seconds,
                  f"{hist.epochs} epochs (best val {hist.best_epoch + 1})",
                  f"latent 16, encoder (512,), {decoder} (bench_vae); Adam lr {VAE_LR:g}, batch {VAE_BATCH}, "
                  f"best-val weights; samples x ~ p(x | z), z ~ N(0, I)", t)


def _flow(quick: bool, d: dict) -> dict:
    x, xv, xt = (d["levels"][s].reshape(-1, 1, 8, 8) for s in ("train", "val", "test"))
    e1, e2 = LENGTHS["RealNVP"][quick]
    config = dict(hidden=16, n_checkerboard=2, n_channel=2) if quick else FLOW_CONFIG
    seed_everything(0)
    model = flows.DequantizedFlow(flows.image_realnvp((1, 8, 8), **config), N_LEVELS)
    first = fit(model, x, x_val=xv, epochs=e1, batch_size=FLOW_BATCH, lr=FLOW_LR, progress=False)
    second = fit(model, x, x_val=xv, epochs=e2, batch_size=2 * FLOW_BATCH, lr=FLOW_LR / 10, progress=False)
    k = FLOW_K[quick]
    with torch.no_grad():
        torch.manual_seed(1)
        nll_1 = float(-model.log_prob(xt).mean())
        torch.manual_seed(1)
        nll = float(-model.log_prob(xt, n_samples=k).mean())
    samples, t = _sample(model, d["n_samples"])
    return _entry("RealNVP", "flow", "train, 17 levels, uniformly dequantized", nll,
                  f"dequantized bound, K = {k} (K = 1: {nll_1:.2f})", samples, first.seconds + second.seconds,
                  f"{e1} + {e2} epochs",
                  f"image RealNVP {config} (bench_flows); Adam lr {FLOW_LR:g} at batch {FLOW_BATCH}, "
                  f"then {FLOW_LR / 10:g} at {2 * FLOW_BATCH}, best-val weights of each phase; samples floor(17 y)", t)


def _kde(quick: bool, d: dict) -> dict:
    x, xv, xt = d["levels"]["train"], d["levels"]["val"], d["levels"]["test"]
    gen = torch.Generator().manual_seed(8)
    deq = lambda v: (v.double() + torch.rand(v.shape, generator=gen, dtype=torch.float64)) / N_LEVELS  # noqa: E731
    start = time.perf_counter()
    train, val = deq(x), deq(xv)
    h, _ = kernels.select_bandwidth(train, val, KDE_BANDWIDTHS)
    seconds = time.perf_counter() - start
    model = kernels.KernelDensity(train, h)
    k = KDE_K[quick]
    bounds = torch.stack([model.log_prob(deq(xt)) - D * math.log(N_LEVELS) for _ in range(k)])  # (K, N)
    nll = float(-(torch.logsumexp(bounds, 0) - math.log(k)).mean())
    nll_1 = float(-bounds[0].mean())
    start = time.perf_counter()
    y = model.sample(d["n_samples"], generator=torch.Generator().manual_seed(SAMPLE_SEED))
    samples = _unit(torch.floor(y * N_LEVELS).clamp(0, N_LEVELS - 1).long())
    return _entry("KDE", "kernel density", "train, 17 levels, uniformly dequantized", nll,
                  f"dequantized bound, K = {k} (K = 1: {nll_1:.2f})", samples, seconds,
                  f"h = {h:g} of {len(KDE_BANDWIDTHS)}", "Gaussian kernels on (x + u) / 17, h chosen on validation "
                  "(bench_kernels); training = dequantization and the choice of h; samples floor(17 y)",
                  time.perf_counter() - start)


def _mmd_net(quick: bool, d: dict) -> dict:
    x = d["floats"]["train"]
    steps = LENGTHS["MMD net"][quick]
    seed_everything(0)
    net = kernels.MMDNet(D, **MMD_NET)
    hist = fit(net, x, epochs=max(1, steps * MMD_BATCH // len(x)), batch_size=MMD_BATCH, lr=MMD_LR, progress=False)
    samples, t = _sample(net, d["n_samples"])
    return _entry("MMD net", "moment matching", "train, floats in [0, 1]", None, "", samples, hist.seconds,
                  f"{steps} steps", f"noise 16, MLP (256, 256), sigmoid output, kernel bandwidths (1, 2, 4, 8) "
                  f"(bench_kernels); Adam lr {MMD_LR:g}, batch {MMD_BATCH}", t)


def _adversarial(name: str, quick: bool, d: dict) -> dict:
    steps = LENGTHS[name][quick]
    channels = 4 if quick else 16
    seed_everything(0)
    if name == "DCGAN":
        model, x, opt = gan.dcgan(noise_dim=16, channels=channels), d["floats"]["train"].reshape(-1, 1, 8, 8), GAN_OPT
        family, settings = "adversarial (GAN)", "lecture 07's DCGAN, noise 16, 16 channels, non-saturating loss"
    elif name == "WGAN-GP":
        model = gan.dcgan(noise_dim=16, channels=channels, kind="wgan-gp", gp_weight=WGAN_GP_WEIGHT)
        x, opt = d["floats"]["train"].reshape(-1, 1, 8, 8), WGAN_GP_OPT
        family, settings = "adversarial (Wasserstein)", f"the same DCGAN networks, gradient penalty {WGAN_GP_WEIGHT:g}"
    else:
        model, x, opt = ali.mlp_ali(D, 16, 16 if quick else 128, 2, output="sigmoid"), d["floats"]["train"], GAN_OPT
        family, settings = "adversarial (ALI/BiGAN)", "lecture 09's mlp_ali(64, 16, 128, 2, output='sigmoid')"
    start = time.perf_counter()
    model.fit(x, steps=steps, seed=0, **opt)
    seconds = time.perf_counter() - start
    samples, t = _sample(model, d["n_samples"])
    return _entry(name, family, "train, floats in [0, 1]", None, "", samples, seconds,
                  f"{steps} steps" + (f" (k = {opt['k']})" if opt["k"] > 1 else ""),
                  f"{settings}; Adam lr {opt['lr_d']:g}, betas {opt['betas']}, batch {opt['batch_size']}, "
                  f"k = {opt['k']}, generator EMA {opt['ema']}", t)


def _diffusion(quick: bool, d: dict) -> dict:
    x, xv, xt = d["levels"]["train"], d["levels"]["val"], d["levels"]["test"]
    c = DDPM_CONFIG
    seed_everything(0)
    model = DDPM(ConvDenoiser(8, 8 if quick else c["channels"], 1 if quick else c["n_blocks"]), D, T=c["T"],
                 schedule=c["schedule"], n_levels=N_LEVELS)
    hist = fit(model, x, x_val=xv, epochs=LENGTHS["DDPM"][quick], batch_size=DDPM_BATCH, lr=DDPM_LR, progress=False)
    with torch.no_grad():
        nll = -model.elbo(xt, generator=torch.Generator().manual_seed(2)).mean().item()
    samples, t = _sample(model, d["n_samples"])
    return _entry("DDPM", "diffusion", "train, 17 levels (as [-1, 1])", nll,
                  "-bound (one draw of x_t per step; binned Gaussian decoder)", samples, hist.seconds,
                  f"{hist.epochs} epochs (best val {hist.best_epoch + 1})",
                  f"T = {c['T']}, {c['schedule']} schedule, conv denoiser {c['channels']} channels x {c['n_blocks']} "
                  f"blocks (bench_diffusion); simplified loss, Adam lr {DDPM_LR:g}, batch {DDPM_BATCH}, best-val "
                  f"weights; ancestral sampling, {c['T']} steps", t)


MODELS = {
    "MADE": lambda q, d: _autoregressive("MADE", q, d),
    "PixelCNN": lambda q, d: _autoregressive("PixelCNN", q, d),
    "Gated PixelCNN": lambda q, d: _autoregressive("Gated PixelCNN", q, d),
    "VAE": lambda q, d: _vae("VAE", q, d),
    "VAE (logistic)": lambda q, d: _vae("VAE (logistic)", q, d),
    "PixelVAE": lambda q, d: _vae("PixelVAE", q, d),
    "RealNVP": _flow,
    "KDE": _kde,
    "MMD net": _mmd_net,
    "DCGAN": lambda q, d: _adversarial("DCGAN", q, d),
    "WGAN-GP": lambda q, d: _adversarial("WGAN-GP", q, d),
    "ALI": lambda q, d: _adversarial("ALI", q, d),
    "DDPM": _diffusion,
}


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------
def measure(quick: bool = False, only=None) -> dict:
    """Train and score every model (``only``: a subset of :data:`MODELS`); returns the entries, the
    real-data references and the run's circumstances."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models on shared cores: one thread beats two contended ones
    start, loads = time.perf_counter(), [_load()]
    try:
        with threadpool_limits(1):
            d = _digits(quick)
            classifier = DigitClassifier("float")
            x_test = d["floats"]["test"]
            test_features = digit_features(classifier, x_test)

            def score(samples):
                return dict(IS=inception_score(classifier.predict_proba(samples)),
                            FD=frechet_distance(digit_features(classifier, samples), test_features),
                            MMD=mmd_to_data(samples, x_test))

            n = d["n_samples"]
            references = [
                dict(model="validation digits (real)", family="data", data=f"{n} validation digits", nll=None,
                     scores=score(d["floats"]["val"][:n]),
                     note="the real-data reference: held-out digits vs the test digits"),
                dict(model="training digits (real)", family="data", data=f"the first {n} training digits", nll=None,
                     scores=score(d["floats"]["train"][:n]),
                     note="what every model was trained on, scored the same way"),
            ]
            gen = torch.Generator().manual_seed(3)
            spread = [score(d["floats"]["train"][torch.randperm(len(d["floats"]["train"]), generator=gen)[:n]])
                      for _ in range(N_SUBSETS)]
            references[1]["note"] += "; over {} random sets of {} training digits: IS {}, FD {}, MMD² {}".format(
                N_SUBSETS, n, *(f"{min(s[m] for s in spread):{f}}-{max(s[m] for s in spread):{f}}"
                                for m, f in (("IS", ".2f"), ("FD", ".2f"), ("MMD", ".4f"))))
            entries = []
            for name, make in MODELS.items():
                if only and name not in only:
                    continue
                e = make(quick, d)
                e["scores"] = score(e.pop("samples"))
                entries.append(e)
                loads.append(e["load"])
    finally:
        torch.set_num_threads(threads)
    loads.append(_load())
    return dict(entries=entries, references=references, quick=quick, loads=loads,
                seconds=time.perf_counter() - start, n_samples=n, n_test=len(x_test),
                date=datetime.date.today().isoformat())


def rows(board: dict) -> list[dict]:
    """The leaderboard as the benchmarks' rows (one per measurement)."""
    out = []
    for e in board["entries"]:
        m = e["model"]
        if e["nll"] is not None:
            out += [dict(benchmark="leaderboard", case=f"{m}: test NLL", value=round(e["nll"], 2), unit="nats/image",
                         note=f"{e['nll_note']}; {e['data']}"),
                    dict(benchmark="leaderboard", case=f"{m}: test bits/dim", value=round(bits_per_dim(e["nll"], D), 3),
                         unit="bits/dim", note="nats / (64 ln 2)")]
        s = e["scores"]
        out += [dict(benchmark="leaderboard", case=f"{m}: IS / FD / MMD^2 to test",
                     value=f"{s['IS']:.2f} / {s['FD']:.2f} / {s['MMD']:.4f}", unit="IS (max 10) / FD / MMD^2",
                     note=f"{board['n_samples']} samples ({e['sample_seconds']:.1f} s) vs "
                          f"{board['n_test']} test digits"),
                dict(benchmark="leaderboard", case=f"{m}: training", value=round(e["seconds"], 1), unit="s",
                     note=f"{e['length']}; {e['note']}; 1 thread, load {e['load']:.1f}")]
    for r in board["references"]:
        s = r["scores"]
        out.append(dict(benchmark="leaderboard", case=f"{r['model']}: IS / FD / MMD^2 to test",
                        value=f"{s['IS']:.2f} / {s['FD']:.2f} / {s['MMD']:.4f}", unit="IS (max 10) / FD / MMD^2",
                        note=r["note"]))
    for p in PEERS:
        out.append(dict(benchmark="leaderboard", case=f"reference: {p['model']}: test NLL", value=p["nll"],
                        unit="nats/image", note=f"{p['note']}; {p['seconds']} s of training; not rerun"))
    return out


def run(quick: bool = False) -> list[dict]:
    """Train and score every model; ``quick`` shrinks models, lengths and the test set to a smoke run."""
    return rows(measure(quick))


# --------------------------------------------------------------------------------------------
# The results file
# --------------------------------------------------------------------------------------------
COLUMNS = ["model", "family", "data it is trained on", "test NLL (nats/image)", "bits/dim", "IS", "FD",
           "MMD² to test", "training (s)", "steps/epochs", "note"]


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} CPUs"


def markdown(board: dict) -> str:
    """The leaderboard as ONE markdown table with a header paragraph saying how it was measured."""
    def cell(v, fmt):
        return "—" if v is None else format(v, fmt)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for e in board["entries"]:
        s, nll = e["scores"], e["nll"]
        note = "; ".join(filter(None, [e["nll_note"], e["note"],
                                       f"sampling {board['n_samples']}: {e['sample_seconds']:.1f} s",
                                       f"load {e['load']:.1f}"]))
        lines.append("| " + " | ".join([
            f"**{e['model']}**", e["family"], e["data"], cell(nll, ".2f"),
            cell(None if nll is None else bits_per_dim(nll, D), ".3f"), f"{s['IS']:.2f}", f"{s['FD']:.2f}",
            f"{s['MMD']:.4f}", f"{e['seconds']:.0f}", e["length"], note]) + " |")
    for r in board["references"]:
        s = r["scores"]
        lines.append("| " + " | ".join([f"*{r['model']}*", r["family"], r["data"], "—", "—", f"{s['IS']:.2f}",
                                        f"{s['FD']:.2f}", f"{s['MMD']:.4f}", "—", "—", r["note"]]) + " |")
    for p in PEERS:
        lines.append("| " + " | ".join([f"*{p['model']}* (peer)", p["family"], p["data"], f"{p['nll']:.1f}",
                                        f"{bits_per_dim(p['nll'], D):.3f}", "—", "—", "—", p["seconds"], "—",
                                        f"quoted, not rerun: {p['note']}"]) + " |")
    loads = [v for v in board["loads"] if not math.isnan(v)]
    load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "unknown"
    header = [
        "# Leaderboard: every model of the course on the digits split (benchmarks/bench_leaderboard.py)",
        "",
        *(["**SMOKE RUN** (`--quick`): tiny models, a few steps, 100 test digits; not a measurement.", ""]
          if board["quick"] else []),
        (f"Measured {board['date']} on a shared machine ({_cpu()}), PyTorch {torch.__version__}, "
        f"1 thread per model (torch and BLAS), "
        f"nice {os.nice(0) if hasattr(os, 'nice') else 'n/a'}, while other work ran: load average {load} (sampled at "
        f"the start and after each model). Seconds are wall-clock on that shared machine: they compare only "
        f"within this table, and only roughly. One seed (0) per model; the whole run took "
        f"{board['seconds'] / 60:.1f} minutes. Written by `python benchmarks/bench_leaderboard.py --write`."),
        "",
        ("Every model is trained on the 1000 training digits for a fixed number of epochs or steps (one to "
        "three minutes each on one quiet thread, the DDPM the longest), with the settings its benchmark or lecture "
        "chose (the note says which); the "
        "likelihood models keep their best-validation weights. **Test NLL** is over the "
        f"{board['n_test']} test digits in nats per image (bits/dim = nats / (64 ln 2)): exact for the "
        "autoregressive models, -IWAE L_K for the VAEs, the importance-weighted dequantized bound with "
        "-D log 17 included for the flow and the KDE, the variational bound (binned decoder) for the DDPM; "
        "all are valid upper bounds on the discrete NLL (in "
        "expectation for the stochastic ones). The uniform distribution over 17 levels scores 181.3 nats "
        f"(4.087 bits/dim). **Samples**: {board['n_samples']} per model"
        f"{'' if board['quick'] else ' (the size of the validation split)'}, as "
        "floats in [0, 1] (integer levels / 16); **IS** is the inception score with the course's "
        "`DigitClassifier` (logistic regression on the training digits, max 10), **FD** the Fréchet distance "
        "between its logits on the samples and on the test digits, **MMD²** the unbiased MMD² to the test "
        "digits (Gaussian kernels at 0.5, 1 and 2 times their median distance; it can be negative). The "
        "validation digits scored the same way are the real-data reference; the training digits beside them "
        "show how much that reference moves with the choice of real sample (their note: the spread over "
        "random sets of real digits, the noise level of each score at this sample size). The peers' rows (Tomczak's "
        "intro_dgm on the same split) are quoted from this project's benchmarks, not rerun."),
        "",
    ]
    return "\n".join(header + lines) + "\n"


def write(board: dict | None = None, path: Path = RESULTS) -> Path:
    """Measure (unless ``board`` is given) and write the leaderboard to ``path``."""
    board = measure() if board is None else board
    if (board["quick"] or len(board["entries"]) < len(MODELS)) and Path(path).resolve() == RESULTS:
        raise ValueError("a quick run or a subset of the models is not the leaderboard: give another path")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(markdown(board))
    return Path(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run with tiny models")
    p.add_argument("--write", nargs="?", const=str(RESULTS), default=None, metavar="PATH",
                   help=f"write the markdown table (default {RESULTS.relative_to(RESULTS.parents[2])})")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(MODELS)}")
    args = p.parse_args(argv)
    board = measure(args.quick, set(filter(None, args.only.split(","))) or None)
    if args.write:
        print(f"wrote {write(board, Path(args.write))}", file=sys.stderr)
    print(markdown(board))
    return 0


if __name__ == "__main__":
    sys.exit(main())
