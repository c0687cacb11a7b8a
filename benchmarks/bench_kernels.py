"""Benchmark of the kernel methods: KDE, the MMD two-sample test and MMD nets (CPU, fixed steps).

Rows:

* 2-D toys with an exact density (ring of 8, std 0.2; 5x5 grid, std 0.1): the KDE's test NLL minus
  the toy's entropy at the bandwidth chosen on held-out data (1000 training points); an MMD net's
  MMD^2 to held-out data beside the floor (MMD^2 between two independent real samples of the same
  size), modes covered (a mode holds > 1/4 of its fair share of the samples within 3 std) and the
  share of samples within 3 std of a mode.
* The permutation two-sample test (unbiased MMD^2, Gaussian kernel at the median distance,
  B = 199): its level and power at a fixed shift over repeated draws.
* Digits (17 levels, dequantized): the KDE's test NLL in nats/image as a valid bound (one draw of
  the noise per image, -D log L included), beside lecture 05's flow; an MMD net's samples judged
  by the course's digit classifier (mean confidence) and by MMD^2 to held-out digits.

Run: ``python benchmarks/bench_kernels.py`` (about 3 minutes) or ``run(quick=True)`` (smoke run).
"""
from __future__ import annotations

import math
import time

import torch

from gencourse import data, kernels
from gencourse.data import N_LEVELS, load_digits
from gencourse.metrics import DigitClassifier, bits_per_dim, mmd_to_data, modes_covered
from gencourse.train import fit, seed_everything

BANDWIDTHS = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0]
NET_STEPS, QUICK_STEPS = 3000, 100
TEST_REPS, SHIFT, SAMPLE_SIZE, PERMUTATIONS = 200, 0.5, 50, 199


def _toy_rows(name: str, quick: bool) -> list[dict]:
    toy = getattr(data, name)()
    x, x_val, x_test = toy.sample(1000, 0).double(), toy.sample(1000, 1).double(), toy.sample(5000, 2).double()
    h, _ = kernels.select_bandwidth(x, x_val, BANDWIDTHS)
    nll = float(-kernels.kde_log_prob(x_test, x, h).mean())
    entropy = toy.entropy()
    rows = [dict(benchmark=f"kernels_{name}", case="KDE: test NLL - entropy", value=round(nll - entropy, 4), unit="nats",
                 note=f"h = {h} chosen on 1000 held-out points from {BANDWIDTHS}; NLL {nll:.4f}, entropy {entropy:.4f}")]
    seed_everything(0)
    net = kernels.MMDNet(2, noise_dim=4, hidden=(128, 128), bandwidths=(0.05, 0.1, 0.3, 1.0, 3.0))
    train = toy.sample(20_000, 3)
    steps = QUICK_STEPS if quick else NET_STEPS
    start = time.perf_counter()
    fit(net, train, epochs=max(1, steps * 256 // len(train)), batch_size=256, lr=2e-3, progress=False)
    seconds = time.perf_counter() - start
    held = toy.sample(2000, 4)
    samples = net.sample(2000, generator=torch.Generator().manual_seed(5))
    floor = mmd_to_data(toy.sample(2000, 6), held)
    modes, share = modes_covered(samples, toy, min_fraction=1 / (4 * len(toy.means)))
    rows += [
        dict(benchmark=f"kernels_{name}", case="MMD net: MMD^2 to held-out", value=round(mmd_to_data(samples, held), 5),
             unit="", note=f"floor (real vs real) {floor:.5f}; {steps} steps of 256, {seconds:.0f} s"),
        dict(benchmark=f"kernels_{name}", case="MMD net: modes covered", value=modes, unit=f"of {len(toy.means)}",
             note=f"{100 * share:.1f} % of samples within 3 std of a mode"),
    ]
    return rows


def _test_rows(quick: bool) -> list[dict]:
    reps = 20 if quick else TEST_REPS
    gen = torch.Generator().manual_seed(7)
    rejections = {0.0: 0, SHIFT: 0}
    for shift in rejections:
        for _ in range(reps):
            a = torch.randn(SAMPLE_SIZE, 2, generator=gen, dtype=torch.float64)
            b = torch.randn(SAMPLE_SIZE, 2, generator=gen, dtype=torch.float64) + torch.tensor([shift, 0.0], dtype=torch.float64)
            h = kernels.median_bandwidth(a, b)
            _, p, _ = kernels.mmd_permutation_test(a, b, h, n_permutations=PERMUTATIONS, generator=gen)
            rejections[shift] += p <= 0.05
    return [dict(benchmark="kernels_two_sample_test", case=f"rejection rate, shift {s}", value=round(r / reps, 3), unit="",
                 note=f"{'level' if s == 0 else 'power'} at alpha 0.05: N = M = {SAMPLE_SIZE}, B = {PERMUTATIONS}, "
                      f"{reps} repetitions (s.e. {math.sqrt(max(r, 1) / reps * (1 - r / reps) / reps):.3f})")
            for s, r in rejections.items()]


def _digit_rows(quick: bool) -> list[dict]:
    x, _ = load_digits("train")
    x_val, _ = load_digits("val")
    x_test, _ = load_digits("test")
    gen = torch.Generator().manual_seed(8)
    deq = lambda v: (v.double() + torch.rand(v.shape, generator=gen, dtype=torch.float64)) / N_LEVELS  # noqa: E731
    train, val, test = deq(x), deq(x_val), deq(x_test)
    h, _ = kernels.select_bandwidth(train, val, [0.05, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3])
    nll = float(-(kernels.kde_log_prob(test, train, h) - 64 * math.log(N_LEVELS)).mean())
    rows = [dict(benchmark="kernels_digits", case="KDE: test NLL bound", value=round(nll, 2), unit="nats/image",
                 note=f"{bits_per_dim(nll, 64):.3f} bits/dim, h = {h} (on (x + u) / 17), one draw of u per image; "
                      "a valid bound; lecture 05's flow about 87 nats")]
    xf, _ = load_digits("train", "float")
    xf_test, _ = load_digits("test", "float")
    seed_everything(0)
    net = kernels.MMDNet(64, noise_dim=16, hidden=(256, 256), bandwidths=(1.0, 2.0, 4.0, 8.0), output="sigmoid")
    steps = QUICK_STEPS if quick else NET_STEPS
    start = time.perf_counter()
    fit(net, xf, epochs=max(1, steps * 200 // len(xf)), batch_size=200, lr=1e-3, progress=False)
    seconds = time.perf_counter() - start
    samples = net.sample(447, generator=torch.Generator().manual_seed(9))
    clf = DigitClassifier()
    rows += [
        dict(benchmark="kernels_digits", case="MMD net: classifier confidence", value=round(float(clf.confidence(samples).mean()), 3),
             unit="", note=f"held-out real digits {float(clf.confidence(xf_test).mean()):.3f}; {steps} steps, {seconds:.0f} s"),
        dict(benchmark="kernels_digits", case="MMD net: MMD^2 to test digits", value=round(mmd_to_data(samples, xf_test), 5),
             unit="", note=f"validation digits vs test digits {mmd_to_data(load_digits('val', 'float')[0], xf_test):.5f}"),
    ]
    return rows


def run(quick: bool = False) -> list[dict]:
    return _toy_rows("ring", quick) + _toy_rows("grid", quick) + _test_rows(quick) + _digit_rows(quick)


if __name__ == "__main__":
    torch.set_num_threads(1)
    for row in run():
        print(f"| {row['benchmark']} | {row['case']} | {row['value']} | {row['unit']} | {row['note']} |", flush=True)
