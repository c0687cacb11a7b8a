"""Benchmark of the autoregressive family on the 8x8 digits (17 levels, the course's fixed split).

For MADE, PixelCNN and Gated PixelCNN, each trained for a fixed CPU wall-clock budget (keeping the
weights that did best on validation): test NLL in nats per image and bits per dimension, training
wall time and epochs, and the time to sample 64 images with the naive and the fast sampler.

Reference: the causal-convolution ARM of Tomczak's *intro_dgm* reaches 86.4 nats per image on
this split after about 210-245 s; the target for Gated PixelCNN is <= 76 nats within 120 s (not
met: it overfits the 1000 training images; in the same 120 s the earlier setting, 32 channels and
dropout 0.3 at lr 3e-3, reaches 79.26, and Polyak-averaged weights, ``fit(ema=...)``, with a wider,
more dropped-out network at lr 1e-3 reach 77.97).

Usage: ``python benchmarks/bench_autoregressive.py [--quick]`` prints the table.
"""
from __future__ import annotations

import sys
import time

import torch

from gencourse.autoregressive import MADE
from gencourse.data import N_LEVELS, load_digits
from gencourse.metrics import bits_per_dim
from gencourse.pixelcnn import GatedPixelCNN, PixelCNN
from gencourse.train import evaluate, fit, seed_everything

#: Training budget per model in seconds (full run) and for the smoke run.
BUDGET_S, QUICK_BUDGET_S = 120.0, 2.0
N_SAMPLES = 64
D = 64
LR = 3e-3
BATCH = 64


def _models(quick: bool) -> dict:
    """Settings of the full run; the smoke run shrinks the widths."""
    if quick:
        return {
            "MADE": lambda: MADE(D, (64,), n_levels=N_LEVELS),
            "PixelCNN": lambda: PixelCNN(channels=16, n_layers=3),
            "GatedPixelCNN": lambda: GatedPixelCNN(channels=16, n_layers=3),
        }
    return {
        "MADE": lambda: MADE(D, (512,), n_levels=N_LEVELS),
        "PixelCNN": lambda: PixelCNN(channels=64, n_layers=5),
        "GatedPixelCNN": lambda: GatedPixelCNN(channels=64, n_layers=6, dropout=0.5),
    }


#: Optimiser settings that differ from the defaults (Adam lr LR, no averaging), per model: the
#: Gated PixelCNN overfits by epoch ~30 at lr 3e-3; a smaller step with averaged weights does better.
FIT = {"GatedPixelCNN": dict(lr=1e-3, ema=0.999)}


SETTINGS = {
    "MADE": "hidden (512,) (quick: 64), categorical 17 levels, natural order",
    "PixelCNN": "64 channels (quick: 16, 3 layers), 5x5 mask A + 4 residual 3x3 mask B, 17-way softmax",
    "GatedPixelCNN": "64 channels (quick: 16, 3 layers, no dropout), 5-wide first layer + 6 gated layers (k=3), dropout 0.5",
}


SAMPLER_NOTES = {
    ("PixelCNN", "naive"): "whole network on the whole image, per pixel",
    ("PixelCNN", "fast"): "only rows 0..i for the pixels of row i",
    ("GatedPixelCNN", "naive"): "whole network on the whole image, per pixel",
    ("GatedPixelCNN", "fast"): "vertical stack once per row, horizontal stack on one row per pixel",
}


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def run(quick: bool = False) -> list[dict]:
    """Train each model for the budget, then measure; returns the table rows."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models on shared cores: one thread is much faster than two
    try:
        return _run(quick)
    finally:
        torch.set_num_threads(threads)


def _run(quick: bool) -> list[dict]:
    budget = QUICK_BUDGET_S if quick else BUDGET_S
    n_samples = 8 if quick else N_SAMPLES
    x, _ = load_digits("train")
    x_val, _ = load_digits("val")
    x_test, _ = load_digits("test")
    rows = []
    for name, make in _models(quick).items():
        seed_everything(0)
        model = make()
        settings = dict(lr=LR, ema=None) | FIT.get(name, {})
        hist = fit(model, x, x_val=x_val, epochs=10_000, max_seconds=budget, batch_size=BATCH, progress=False,
                   **settings)
        nll = evaluate(model.loss, x_test)
        note = f"{SETTINGS[name]}; {hist.epochs} epochs, best val at epoch {hist.best_epoch + 1}"
        rows += [
            dict(benchmark="digits test NLL", case=name, value=round(nll, 2), unit="nats/image", note=note),
            dict(benchmark="digits test bits/dim", case=name, value=round(bits_per_dim(nll, D), 4), unit="bits/dim",
                 note="nats / (64 ln 2)"),
            dict(benchmark="training wall time", case=name, value=round(hist.seconds, 1), unit="s",
                 note=f"budget {budget:.0f} s, Adam lr {settings['lr']}, batch {BATCH}, 1 CPU thread"
                      + (f", weights averaged (EMA {settings['ema']})" if settings["ema"] else "")),
        ]
        if name == "MADE":
            t = _timed(lambda: model.sample(n_samples, generator=torch.Generator().manual_seed(0)))
            rows.append(dict(benchmark=f"sampling {n_samples} images", case=f"{name} (naive)", value=round(t, 3),
                             unit="s", note="64 sequential full passes"))
            continue
        for method in ("naive", "fast"):
            t = _timed(lambda: model.sample(n_samples, generator=torch.Generator().manual_seed(0), method=method))
            rows.append(dict(benchmark=f"sampling {n_samples} images", case=f"{name} ({method})", value=round(t, 3),
                             unit="s", note=SAMPLER_NOTES[name, method]))
    rows.append(dict(benchmark="digits test NLL", case="reference: intro_dgm causal-conv ARM", value=86.4,
                     unit="nats/image", note="Tomczak, ~210-245 s of training (not rerun here)"))
    return rows


def _print(rows: list[dict]) -> None:
    print("| benchmark | case | value | unit | note |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['benchmark']} | {r['case']} | {r['value']} | {r['unit']} | {r['note']} |")


if __name__ == "__main__":
    _print(run(quick="--quick" in sys.argv))
