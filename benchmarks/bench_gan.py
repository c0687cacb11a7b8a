"""Benchmark of the four GAN objectives on the 2-D toys (CPU, a fixed number of steps, 3 seeds).

Rows, for the saturating GAN, the non-saturating GAN, WGAN with weight clipping and WGAN-GP, on the
ring of 8 (std 0.2) and the 5x5 grid (std 0.1): modes covered (a mode holds at least 1/4 of its fair
share of the samples within 3 std), the share of samples within 3 std of a mode ("high quality"),
and MMD^2 to held-out data beside the floor (MMD^2 between two independent real samples of the
same size), each over 3 seeds, plus the training time.

Settings: MLP generator and critic (3 hidden layers of 128), 2-D noise, batch 256; GANs: Adam
lr 2e-4, betas (0.5, 0.999), k = 1; WGAN-clip: RMSprop lr 5e-5, c = 0.01, k = 5 (the paper's);
WGAN-GP: Adam lr 1e-4, betas (0.5, 0.9), lambda = 10, k = 5 (the paper's).

Run: ``python benchmarks/bench_gan.py`` or ``run(quick=True)`` (smoke run).
"""
from __future__ import annotations

import time

import torch

from gencourse import data, gan
from gencourse.metrics import mmd_to_data, modes_covered
from gencourse.train import seed_everything

STEPS, QUICK_STEPS = 1000, 30
SEEDS = (0, 1, 2)
OBJECTIVES = {
    "GAN (saturating)": dict(kind="gan", saturating=True, k=1, lr=2e-4, betas=(0.5, 0.999)),
    "GAN (non-saturating)": dict(kind="gan", saturating=False, k=1, lr=2e-4, betas=(0.5, 0.999)),
    "WGAN-clip": dict(kind="wgan-clip", k=5, lr=5e-5, betas=(0.5, 0.999)),
    "WGAN-GP": dict(kind="wgan-gp", k=5, lr=1e-4, betas=(0.5, 0.9)),
}


def _one(toy, objective: dict, seed: int, steps: int) -> tuple[int, float, float, float]:
    x, held = toy.sample(20_000, seed=100 + seed), toy.sample(2000, seed=200 + seed)
    seed_everything(seed)
    kw = {"saturating": objective["saturating"]} if objective["kind"] == "gan" else {}
    model = gan.mlp_gan(2, 2, 128, 3, kind=objective["kind"], **kw)
    start = time.perf_counter()
    model.fit(x, steps=steps, k=objective["k"], batch_size=256, lr_d=objective["lr"], lr_g=objective["lr"],
              betas=objective["betas"], seed=seed)
    seconds = time.perf_counter() - start
    samples = model.sample(2000, generator=torch.Generator().manual_seed(seed))
    modes, share = modes_covered(samples, toy, min_fraction=1 / (4 * len(toy.means)))
    return modes, share, mmd_to_data(samples, held), seconds


def run(quick: bool = False, toys: tuple[str, ...] = ("ring", "grid")) -> list[dict]:
    rows = []
    steps = QUICK_STEPS if quick else STEPS
    for name in toys:
        toy = getattr(data, name)()
        floor = mmd_to_data(toy.sample(2000, seed=7), toy.sample(2000, seed=8))
        for label, objective in OBJECTIVES.items():
            results = [_one(toy, objective, s, steps) for s in (SEEDS[:1] if quick else SEEDS)]
            modes = "/".join(str(r[0]) for r in results)
            rows += [
                dict(benchmark=f"gan_{name}", case=f"{label}: modes covered", value=modes,
                     unit=f"of {len(toy.means)} (per seed)",
                     note=f"{steps} generator steps, k = {objective['k']}, {sum(r[3] for r in results) / len(results):.0f} s per run"),
                dict(benchmark=f"gan_{name}", case=f"{label}: share within 3 std", value="/".join(f"{r[1]:.2f}" for r in results),
                     unit="per seed", note=""),
                dict(benchmark=f"gan_{name}", case=f"{label}: MMD^2 to held-out",
                     value="/".join(f"{r[2]:.4f}" for r in results), unit="per seed", note=f"floor {floor:.4f}"),
            ]
    return rows


if __name__ == "__main__":
    import sys

    torch.set_num_threads(1)
    for row in run(toys=tuple(sys.argv[1:]) or ("ring", "grid")):
        print(f"| {row['benchmark']} | {row['case']} | {row['value']} | {row['unit']} | {row['note']} |", flush=True)
