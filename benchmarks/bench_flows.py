"""Benchmark of the reference normalizing flows (CPU, fixed wall-clock training budget per model).

Rows:

* 2-D toys with an exact density (the ring of 8 modes with std 0.2, the 5x5 grid with std 0.1):
  test NLL minus the toy's differential entropy, i.e. KL(p_data || p_model) >= 0, the part of the
  NLL a model can still remove, after ``TOY_SECONDS`` of training; for an affine RealNVP, a MAF and
  a neural spline flow (rational-quadratic couplings). Training data: 200 000 fresh draws of the
  toy (the toy is a known distribution, so the model never sees a point twice in the budget);
  validation 5 000, test 20 000 draws.
* Digits (the course split, 17 levels, dequantized): the test negative log-likelihood in nats per
  image as a VALID upper bound on the discrete NLL (the dequantized bound of
  :class:`gencourse.flows.DequantizedFlow`, -D log L included), one-draw and importance-weighted
  over K draws of the noise, bits/dim, training time and epochs.

Peer: the RealNVP of Tomczak's intro_dgm reaches 166.8 nats/image on this split as a valid bound
(162-197 over three seeds) after about 60 s here; its notebook prints a number 44.4 nats lower
because it leaves the noise density out.

Run: ``python benchmarks/bench_flows.py`` (the full measurement, about 8 minutes) or
``run(quick=True)`` (smoke run).
"""
from __future__ import annotations

import math

import torch

from gencourse import data, flows
from gencourse.data import N_LEVELS, load_digits
from gencourse.metrics import bits_per_dim
from gencourse.train import fit, seed_everything

TOY_SECONDS, DIGIT_SECONDS, QUICK_SECONDS = 60.0, 120.0, 3.0
TOY_MODELS = {
    "realnvp": (lambda: flows.realnvp(2, 8, 128, mixing="linear"), 2e-3),
    "maf": (lambda: flows.maf(2, 8, (128, 128)), 2e-3),
    "spline": (lambda: flows.spline_flow(2, 6, 64, n_bins=8, bound=4.0), 3e-3),
}
TOY_BATCH = 512
DIGIT_CONFIG = dict(hidden=64, n_checkerboard=4, n_channel=4)
DIGIT_LR, DIGIT_BATCH = 1e-3, 64
KS = (1, 100)
INTRO_DGM_REALNVP_NATS = 166.8


def _train(model, x, x_val, seconds: float, lr: float, batch_size: int):
    """Adam for 70 % of the budget at ``lr``, then 30 % at ``lr / 10`` with twice the batch (a step
    decay: the last nats of a thin-moded density need small steps). Returns (seconds, epochs, best epoch)."""
    first = fit(model, x, x_val=x_val, epochs=100_000, max_seconds=0.7 * seconds, batch_size=batch_size, lr=lr,
                progress=False)
    second = fit(model, x, x_val=x_val, epochs=100_000, max_seconds=0.3 * seconds, batch_size=2 * batch_size,
                 lr=lr / 10, progress=False)
    best = second.best_epoch + first.epochs if min(second.val) <= min(first.val) else first.best_epoch
    return first.seconds + second.seconds, first.epochs + second.epochs, best


def _toy_rows(name: str, quick: bool) -> list[dict]:
    toy = getattr(data, name)()
    entropy = toy.entropy()
    n = 20_000 if quick else 200_000
    x, x_val, x_test = toy.sample(n, seed=0), toy.sample(5_000, seed=1), toy.sample(20_000, seed=2)
    rows = []
    for model_name, (make, lr) in TOY_MODELS.items():
        seed_everything(0)
        model = make()
        seconds, epochs, _ = _train(model, x, x_val, QUICK_SECONDS if quick else TOY_SECONDS, lr, TOY_BATCH)
        with torch.no_grad():
            log_p = model.log_prob(x_test)
        nll, se = float(-log_p.mean()), float(log_p.std()) / len(x_test) ** 0.5
        rows.append(dict(benchmark=f"flow_{name}", case=f"{model_name}: test NLL - entropy", value=round(nll - entropy, 4),
                         unit="nats", note=f"NLL {nll:.4f}, entropy {entropy:.4f} (test s.e. {se:.3f}); {seconds:.0f} s, "
                                           f"{epochs} epochs of {len(x)} draws, batch {TOY_BATCH} then {2 * TOY_BATCH}, "
                                           f"lr {lr:g} then {lr / 10:g}"))
    return rows


def _digit_rows(quick: bool, variational: bool = False) -> list[dict]:
    x, _ = load_digits("train", image=True)
    x_val, _ = load_digits("val", image=True)
    x_test, _ = load_digits("test", image=True)
    if quick:
        x_test = x_test[:100]
    seed_everything(0)
    deq = flows.VariationalDequantizer(64, N_LEVELS, 64) if variational else None
    model = flows.DequantizedFlow(flows.image_realnvp((1, 8, 8), **DIGIT_CONFIG), N_LEVELS, deq)
    seconds = QUICK_SECONDS if quick else DIGIT_SECONDS
    spent, epochs, best = _train(model, x, x_val, seconds, DIGIT_LR, DIGIT_BATCH)
    name = "flow_digits_" + ("variational" if variational else "uniform")
    rows = [dict(benchmark=name, case="training", value=round(spent, 1), unit="s",
                 note=f"image RealNVP {DIGIT_CONFIG}, {'variational' if variational else 'uniform'} dequantization, "
                      f"Adam lr {DIGIT_LR:g} then {DIGIT_LR / 10:g}, batch {DIGIT_BATCH}, best-val weights of each phase "
                      f"(best epoch {best + 1} of {epochs}), {torch.get_num_threads()} thread(s)")]
    for k in KS:
        torch.manual_seed(1)
        with torch.no_grad():
            nll = float(-model.log_prob(x_test, n_samples=k).mean())
        rows.append(dict(benchmark=name, case=f"test NLL bound, K={k}", value=round(nll, 2), unit="nats/image",
                         note=f"{bits_per_dim(nll, 64):.3f} bits/dim; a valid bound (-D log L included); "
                              f"intro_dgm RealNVP {INTRO_DGM_REALNVP_NATS}"))
    return rows


def run(quick: bool = False) -> list[dict]:
    rows = _toy_rows("ring", quick) + _toy_rows("grid", quick)
    rows += _digit_rows(quick) + _digit_rows(quick, variational=True)
    return rows


if __name__ == "__main__":
    torch.set_num_threads(1)
    for row in run():
        print(f"| {row['benchmark']} | {row['case']} | {row['value']} | {row['unit']} | {row['note']} |", flush=True)
    print(f"(log 17 = {math.log(17):.3f} nats per pixel is the uniform model's NLL)")
