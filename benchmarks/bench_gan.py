"""Benchmark of the four GAN objectives on the 2-D toys, and of two GANs on the 8x8 digits (CPU, a
fixed number of steps).

Toys: rows, for the saturating GAN, the non-saturating GAN, WGAN with weight clipping and WGAN-GP,
on the ring of 8 (std 0.2) and the 5x5 grid (std 0.1): modes covered (a mode holds at least 1/4 of
its fair share of the samples within 3 std), the share of samples within 3 std of a mode ("high
quality"), and MMD^2 to held-out data beside the floor (MMD^2 between two independent real samples of
the same size, and the largest |MMD^2| over 10 such pairs: the noise level of the estimate), each
over 3 seeds, plus the training time.

Toy settings: MLP generator and critic (3 hidden layers of 128), 2-D noise, batch 256, 3000
generator steps, the generator's weights averaged over the steps (``fit(ema=0.995)``; every
objective gets the same); GANs: Adam lr 2e-4, betas (0.5, 0.999), k = 1; WGAN-clip: RMSprop lr 5e-5,
c = 0.01, k = 5 (the paper's). WGAN-GP, tuned for this budget: k = 5, Adam betas (0, 0.9), lr 1e-3,
lambda = 0.1 (the value of the authors' toy code; the paper's 10 with lr 1e-4 covered 2 to 11 modes
of the grid in 1000 steps), 8-D noise.

Digits (``gan_digits``): the DCGAN of lecture 07 (``gan.dcgan(noise_dim=16, channels=16)``, 4000
steps, batch 64, Adam lr 2e-3, betas (0.5, 0.999), k = 1, the generator's weights averaged with
``ema=0.999``) and a textbook MLP GAN (non-saturating,
MLP generator 16 -> 256 -> 256 -> 64 with a sigmoid output, leaky-ReLU MLP discriminator, the same
budget) on the 1000 training digits; inception score (the course's logistic-regression
``DigitClassifier``) and Fréchet distance on its logits (``metrics.digit_features``) to the test
digits, of as many samples as there are validation digits, beside the same scores of the
validation digits themselves.

Run: ``python benchmarks/bench_gan.py [ring] [grid] [digits]`` or ``run(quick=True)`` (smoke run).
"""
from __future__ import annotations

import time

import torch
from torch import nn

from gencourse import data, gan
from gencourse.metrics import (DigitClassifier, digit_features, frechet_distance, inception_score, mmd_to_data,
                               modes_covered)
from gencourse.train import seed_everything

STEPS, QUICK_STEPS = 3000, 30
SEEDS = (0, 1, 2)
MODEL = dict(noise_dim=2, hidden=128, depth=3, batch_size=256, ema=0.995)  # shared by the objectives unless they say otherwise
OBJECTIVES = {
    "GAN (saturating)": dict(kind="gan", saturating=True, k=1, lr=2e-4, betas=(0.5, 0.999)),
    "GAN (non-saturating)": dict(kind="gan", saturating=False, k=1, lr=2e-4, betas=(0.5, 0.999)),
    "WGAN-clip": dict(kind="wgan-clip", k=5, lr=5e-5, betas=(0.5, 0.999)),
    # tuned (benchmarks/results/gan.md): lambda 0.1 as in the WGAN-GP authors' own toy code (10, the image
    # setting, keeps the critic too smooth for modes of std 0.1-0.2), Adam with beta1 = 0 and lr 1e-3,
    # 8-D noise (a 2-D noise must tear one sheet into 25 pieces)
    "WGAN-GP": dict(kind="wgan-gp", k=5, lr=1e-3, betas=(0.0, 0.9), gp_weight=0.1, noise_dim=8),
}
DIGIT_STEPS, DIGIT_QUICK_STEPS = 4000, 20
DIGIT_MODELS = {
    "DCGAN": dict(lr=2e-3, batch_size=64, ema=0.999),
    "MLP GAN": dict(lr=2e-3, batch_size=64, ema=0.999),
}


def _settings(objective: dict) -> dict:
    return {**MODEL, **objective}


def _one(toy, objective: dict, seed: int, steps: int) -> tuple[int, float, float, float]:
    o = _settings(objective)
    x, held = toy.sample(20_000, seed=100 + seed), toy.sample(2000, seed=200 + seed)
    seed_everything(seed)
    kw = {"saturating": o["saturating"]} if o["kind"] == "gan" else {}
    if "gp_weight" in o:
        kw["gp_weight"] = o["gp_weight"]
    model = gan.mlp_gan(2, o["noise_dim"], o["hidden"], o["depth"], kind=o["kind"], **kw)
    start = time.perf_counter()
    model.fit(x, steps=steps, k=o["k"], batch_size=o["batch_size"], lr_d=o["lr"], lr_g=o.get("lr_g", o["lr"]),
              betas=o["betas"], seed=seed, ema=o["ema"])
    seconds = time.perf_counter() - start
    samples = model.sample(2000, generator=torch.Generator().manual_seed(seed))
    modes, share = modes_covered(samples, toy, min_fraction=1 / (4 * len(toy.means)))
    return modes, share, mmd_to_data(samples, held), seconds


def _floor(toy, pairs: int) -> tuple[float, float]:
    """MMD^2 between two real samples of 2000 (the benchmark's sizes), and max |MMD^2| over ``pairs``."""
    values = [mmd_to_data(toy.sample(2000, seed=7 + 2 * i), toy.sample(2000, seed=8 + 2 * i)) for i in range(pairs)]
    return values[0], max(abs(v) for v in values)


def _note(o: dict, steps: int) -> str:
    lr = f"lr {o['lr']:g}" if "lr_g" not in o else f"lr critic {o['lr']:g}, generator {o['lr_g']:g}"
    gp = f", lambda {o['gp_weight']:g}" if "gp_weight" in o else ""
    return (f"{steps} generator steps, k = {o['k']}, {lr}, betas {o['betas']}{gp}, noise {o['noise_dim']}-D, "
            f"{o['depth']}x{o['hidden']}, batch {o['batch_size']}, generator EMA {o['ema']}")


def toy_rows(quick: bool = False, toys: tuple[str, ...] = ("ring", "grid"), objectives=None) -> list[dict]:
    rows = []
    for name in toys:
        toy = getattr(data, name)()
        floor, noise = _floor(toy, 2 if quick else 10)
        for label, objective in OBJECTIVES.items():
            if objectives is not None and label not in objectives:
                continue
            o = _settings(objective)
            steps = QUICK_STEPS if quick else o.get("steps", STEPS)
            results = [_one(toy, objective, s, steps) for s in (SEEDS[:1] if quick else SEEDS)]
            rows += [
                dict(benchmark=f"gan_{name}", case=f"{label}: modes covered", value="/".join(str(r[0]) for r in results),
                     unit=f"of {len(toy.means)} (per seed)",
                     note=f"{_note(o, steps)}; {sum(r[3] for r in results) / len(results):.0f} s per run"),
                dict(benchmark=f"gan_{name}", case=f"{label}: share within 3 std", value="/".join(f"{r[1]:.2f}" for r in results),
                     unit="per seed", note=""),
                dict(benchmark=f"gan_{name}", case=f"{label}: MMD^2 to held-out",
                     value="/".join(f"{r[2]:.4f}" for r in results), unit="per seed",
                     note=f"floor {floor:.4f} (max |MMD^2| of {2 if quick else 10} real pairs {noise:.4f})"),
            ]
    return rows


def mlp_digit_gan(noise_dim: int = 16, hidden: int = 256) -> gan.GAN:
    """The textbook MLP GAN for flat digits in [0, 1]: two hidden layers each, a sigmoid on the
    generator's output, the non-saturating loss."""
    model = gan.mlp_gan(64, noise_dim, hidden, 2, kind="gan")
    model.generator = nn.Sequential(model.generator, nn.Sigmoid())
    return model


def _digit_scores(classifier, samples: torch.Tensor, test_features: torch.Tensor) -> tuple[float, float]:
    flat = samples.reshape(len(samples), 64)
    return (inception_score(classifier.predict_proba(flat)),
            frechet_distance(digit_features(classifier, flat), test_features))


def digit_rows(quick: bool = False) -> list[dict]:
    x_img, _ = data.load_digits("train", "float", image=True)  # (1000, 1, 8, 8), as lecture 07 trains the DCGAN
    x_val, _ = data.load_digits("val", "float")
    x_test, _ = data.load_digits("test", "float")
    classifier = DigitClassifier("float")
    test_features = digit_features(classifier, x_test)
    real_is, real_fd = _digit_scores(classifier, x_val, test_features)
    steps = DIGIT_QUICK_STEPS if quick else DIGIT_STEPS
    rows = [dict(benchmark="gan_digits", case="validation digits (real): IS / FD to test",
                 value=f"{real_is:.2f} / {real_fd:.2f}", unit="IS (max 10) / FD", note=f"{len(x_val)} digits vs {len(x_test)} test")]
    for label, settings in DIGIT_MODELS.items():
        results = []
        for seed in SEEDS[:1] if quick else SEEDS:
            seed_everything(seed)
            model = gan.dcgan(noise_dim=16, channels=16) if label == "DCGAN" else mlp_digit_gan()
            x = x_img if label == "DCGAN" else x_img.reshape(len(x_img), 64)
            start = time.perf_counter()
            model.fit(x, steps=steps, k=1, batch_size=settings["batch_size"], lr_d=settings["lr"], lr_g=settings["lr"],
                      betas=(0.5, 0.999), seed=seed, ema=settings["ema"])
            seconds = time.perf_counter() - start
            samples = model.sample(len(x_val), generator=torch.Generator().manual_seed(seed))
            results.append((*_digit_scores(classifier, samples, test_features), seconds))
        rows.append(dict(benchmark="gan_digits", case=f"{label}: IS / FD to test",
                         value="; ".join(f"{r[0]:.2f} / {r[1]:.2f}" for r in results), unit="per seed",
                         note=f"{steps} steps, batch {settings['batch_size']}, Adam lr {settings['lr']:g}, k = 1, "
                              f"generator EMA {settings['ema']}; "
                              f"{sum(r[2] for r in results) / len(results):.0f} s per run"))
    return rows


def run(quick: bool = False, toys: tuple[str, ...] = ("ring", "grid"), digits: bool = True, objectives=None) -> list[dict]:
    rows = toy_rows(quick, toys, objectives)
    if digits:
        rows += digit_rows(quick)
    return rows


if __name__ == "__main__":
    import sys

    torch.set_num_threads(1)
    args = tuple(sys.argv[1:]) or ("ring", "grid", "digits")
    for row in run(toys=tuple(a for a in args if a != "digits"), digits="digits" in args):
        print(f"| {row['benchmark']} | {row['case']} | {row['value']} | {row['unit']} | {row['note']} |", flush=True)
