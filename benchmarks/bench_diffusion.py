"""Benchmark of diffusion models (DDPM, sampled by DDPM and by DDIM) on the 2-D toys and the 8x8 digits
(CPU, a fixed number of epochs).

Toys: for the ring of 8 (std 0.2) and the 5x5 grid (std 0.1), a DDPM with the MLP denoiser trained
on 20 000 points, then 2000 samples by the ancestral chain (all T steps) and by deterministic DDIM
(eta = 0) with 10, 50 and all T steps: modes covered (a mode holds at least 1/4 of its fair share of
the samples within 3 std), the share of samples within 3 std of a mode, and MMD^2 to 2000 held-out
points beside the floor (two real samples; and the largest |MMD^2| over 10 such pairs, the noise of
the estimate), over 3 seeds, with the training time. ``benchmarks/results/gan.md`` has WGAN-GP's row
on the same protocol.

Digits: a DDPM with the convolutional denoiser on the 1000 training digits (17 levels mapped to
[-1, 1]): its variational bound on the 447 test digits in nats per image (a valid bound on the
probability of the discrete levels: the decoder p(x_0 | x_1) is a binned Gaussian; one Monte Carlo
draw of x_t per step and image), and the inception score and Fréchet distance of 350 samples (DDPM,
and DDIM with 50 and 10 steps) against the test digits with the course's digit classifier, beside
the validation digits' own scores and the sampling times.

Run: ``python benchmarks/bench_diffusion.py [ring] [grid] [digits]`` or ``run(quick=True)`` (smoke run).
"""
from __future__ import annotations

import time

import torch

from gencourse import data
from gencourse.diffusion import DDPM, ConvDenoiser, MLPDenoiser
from gencourse.metrics import (DigitClassifier, digit_features, frechet_distance, inception_score, mmd_to_data,
                               modes_covered)
from gencourse.train import fit, seed_everything

SEEDS = (0, 1, 2)
TOY = dict(T=100, hidden=(128, 128, 128), epochs=40, quick_epochs=1, batch_size=256, lr=2e-3, n_train=20_000)
TOY_SAMPLERS = (("DDPM", "ddpm", None), ("DDIM, 10 steps", "ddim", 10), ("DDIM, 50 steps", "ddim", 50),
                ("DDIM, all steps", "ddim", None))
DIGITS = dict(T=100, schedule="cosine", channels=64, n_blocks=4, epochs=60, quick_epochs=1, batch_size=128, lr=2e-3)
DIGIT_SAMPLERS = (("DDPM", "ddpm", None), ("DDIM, 50 steps", "ddim", 50), ("DDIM, 10 steps", "ddim", 10))


def _floor(toy, pairs: int) -> tuple[float, float]:
    values = [mmd_to_data(toy.sample(2000, seed=7 + 2 * i), toy.sample(2000, seed=8 + 2 * i)) for i in range(pairs)]
    return values[0], max(abs(v) for v in values)


def _toy_run(toy, seed: int, epochs: int) -> tuple[dict, float]:
    x, held = toy.sample(TOY["n_train"], seed=100 + seed), toy.sample(2000, seed=200 + seed)
    seed_everything(seed)
    model = DDPM(MLPDenoiser(2, TOY["hidden"]), 2, T=TOY["T"])
    start = time.perf_counter()
    fit(model, x, epochs=epochs, batch_size=TOY["batch_size"], lr=TOY["lr"], seed=seed, progress=False)
    seconds = time.perf_counter() - start
    scores = {}
    for label, method, n_steps in TOY_SAMPLERS:
        samples = model.sample(2000, generator=torch.Generator().manual_seed(seed), method=method, n_steps=n_steps)
        modes, share = modes_covered(samples, toy, min_fraction=1 / (4 * len(toy.means)))
        scores[label] = (modes, share, mmd_to_data(samples, held))
    return scores, seconds


def toy_rows(quick: bool = False, toys: tuple[str, ...] = ("ring", "grid")) -> list[dict]:
    rows = []
    epochs = TOY["quick_epochs"] if quick else TOY["epochs"]
    steps = epochs * -(-TOY["n_train"] // TOY["batch_size"])
    for name in toys:
        toy = getattr(data, name)()
        floor, noise = _floor(toy, 2 if quick else 10)
        runs = [_toy_run(toy, s, epochs) for s in (SEEDS[:1] if quick else SEEDS)]
        note = (f"T = {TOY['T']}, cosine schedule, sigma_t^2 = beta_t, MLP denoiser {TOY['hidden']}, {epochs} epochs of "
                f"{TOY['n_train']} ({steps} steps), batch {TOY['batch_size']}, Adam lr {TOY['lr']:g}; "
                f"{sum(r[1] for r in runs) / len(runs):.0f} s per training run")
        for label, _, _ in TOY_SAMPLERS:
            per_seed = [r[0][label] for r in runs]
            rows += [
                dict(benchmark=f"diffusion_{name}", case=f"{label}: modes covered", unit=f"of {len(toy.means)} (per seed)",
                     value="/".join(str(s[0]) for s in per_seed), note=note if label == "DDPM" else ""),
                dict(benchmark=f"diffusion_{name}", case=f"{label}: share within 3 std", unit="per seed",
                     value="/".join(f"{s[1]:.2f}" for s in per_seed), note=""),
                dict(benchmark=f"diffusion_{name}", case=f"{label}: MMD^2 to held-out", unit="per seed",
                     value="/".join(f"{s[2]:.4f}" for s in per_seed),
                     note=f"floor {floor:.4f} (max |MMD^2| of {2 if quick else 10} real pairs {noise:.4f})"),
            ]
    return rows


def digit_model() -> DDPM:
    return DDPM(ConvDenoiser(8, DIGITS["channels"], DIGITS["n_blocks"]), 64, T=DIGITS["T"],
                schedule=DIGITS["schedule"], n_levels=data.N_LEVELS)


def train_digits(quick: bool = False, seed: int = 0) -> tuple[DDPM, float, object]:
    """The digits DDPM of the benchmark (and of the leaderboard): trained, with its seconds and history."""
    x, _ = data.load_digits("train")
    x_val, _ = data.load_digits("val")
    seed_everything(seed)
    model = digit_model()
    start = time.perf_counter()
    hist = fit(model, x, x_val=x_val, epochs=DIGITS["quick_epochs"] if quick else DIGITS["epochs"],
               batch_size=DIGITS["batch_size"], lr=DIGITS["lr"], seed=seed, progress=False)
    return model, time.perf_counter() - start, hist


def digit_rows(quick: bool = False) -> list[dict]:
    x_val, _ = data.load_digits("val")
    x_test, _ = data.load_digits("test")
    classifier = DigitClassifier("float")
    test_features = digit_features(classifier, x_test.float() / 16)

    def scores(levels):
        flat = levels.float() / 16
        return inception_score(classifier.predict_proba(flat)), frechet_distance(digit_features(classifier, flat), test_features)

    real_is, real_fd = scores(x_val)
    model, seconds, hist = train_digits(quick)
    start = time.perf_counter()
    with torch.no_grad():
        terms = model.bound_terms(x_test[:50] if quick else x_test, generator=torch.Generator().manual_seed(0))
    bound_seconds = time.perf_counter() - start
    per_image = terms.sum(1)
    mean_terms = terms.mean(0)
    settings = (f"T = {DIGITS['T']}, {DIGITS['schedule']} schedule, sigma_t^2 = beta_t, conv denoiser "
                f"{DIGITS['channels']} channels x {DIGITS['n_blocks']} residual blocks, {hist.epochs} epochs "
                f"(best val at {hist.best_epoch + 1}), batch {DIGITS['batch_size']}, Adam lr {DIGITS['lr']:g}, "
                f"simplified loss; {seconds:.0f} s of training")
    rows = [
        dict(benchmark="diffusion_digits", case="bound on the test NLL", unit="nats/image",
             value=f"{float(per_image.mean()):.2f} ± {float(per_image.std() / len(per_image) ** 0.5):.2f}",
             note=f"{settings}; bound evaluated in {bound_seconds:.0f} s"),
        dict(benchmark="diffusion_digits", case="its terms: L_0 / sum of L_(t-1) / L_T", unit="nats/image",
             value=f"{float(mean_terms[0]):.2f} / {float(mean_terms[1:-1].sum()):.2f} / {float(mean_terms[-1]):.4f}",
             note="L_(t-1) for t = 2..5: " + ", ".join(f"{float(v):.1f}" for v in mean_terms[1:5])),
        dict(benchmark="diffusion_digits", case="validation digits (real): IS / FD to test", unit="IS (max 10) / FD",
             value=f"{real_is:.2f} / {real_fd:.2f}", note=f"{len(x_val)} digits vs {len(x_test)} test"),
    ]
    for label, method, n_steps in DIGIT_SAMPLERS:
        start = time.perf_counter()
        samples = model.sample(len(x_val), generator=torch.Generator().manual_seed(0), method=method, n_steps=n_steps)
        t = time.perf_counter() - start
        is_, fd = scores(samples)
        rows.append(dict(benchmark="diffusion_digits", case=f"{label}: IS / FD to test", unit="IS / FD",
                         value=f"{is_:.2f} / {fd:.2f}", note=f"{len(x_val)} samples in {t:.1f} s"))
    return rows


def run(quick: bool = False, toys: tuple[str, ...] = ("ring", "grid"), digits: bool = True) -> list[dict]:
    rows = toy_rows(quick, toys)
    if digits:
        rows += digit_rows(quick)
    return rows


if __name__ == "__main__":
    import sys

    torch.set_num_threads(1)
    args = tuple(sys.argv[1:]) or ("ring", "grid", "digits")
    for row in run(toys=tuple(a for a in args if a != "digits"), digits="digits" in args):
        print(f"| {row['benchmark']} | {row['case']} | {row['value']} | {row['unit']} | {row['note']} |", flush=True)
