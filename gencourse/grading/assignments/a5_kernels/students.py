"""Simulated students of a5_kernels: realistic mistakes, and the class graded by the tests.

* ``MUTATIONS``: each replaces one snippet of one solution cell of a complete submission; ``lost``
  names the test cells that must lose their points because of it. The parts build on each other
  (the MMD uses the student's kernel, the permutation test and the MMD-net step the student's MMD,
  the bandwidth selection the student's KDE), so a mistake in a building block also costs the cells
  that use it; a mistake that stops the MMD net from learning (or from training at all) also costs
  the training cell, whose visible asserts check its MMD² to held-out data.
* ``alternative.py`` (beside this file): a correct solution written differently, which must keep
  full marks; its permutation test draws its permutations another way (``argsort`` of uniforms).
* ``E2E``: the class graded end to end by the tests: student -> (kind, mutations, test cells that
  must lose their points, or ``"all"``).
"""
from ...simulate import Mutation, Student  # noqa: F401

DIST, KERNEL, KDE, SELECT = "test_distances", "test_gaussian_kernel", "test_kde", "test_select_bandwidth"
BIASED, UNBIASED, PERM = "test_mmd2_biased", "test_mmd2_unbiased", "test_permutation_test"
STEP, TRAINING = "test_mmd_net_step", "test_training"
UNBIASED_SUMS = ("xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))\n"
                 "        yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))")

MUTATIONS = {
    # Part 1: distances and the kernel
    "minkowski_no_root": Mutation(
        "distances", "return diff.abs().pow(p).sum(-1).pow(1.0 / p)", "return diff.abs().pow(p).sum(-1)",
        "Minkowski distance without the root 1/p (not a metric: the triangle inequality fails)", (DIST,)),
    "mahalanobis_covariance": Mutation(
        "distances", "precision = torch.linalg.inv(cov)", "precision = cov",
        "Mahalanobis distance with the covariance instead of its inverse", (DIST,)),
    "bandwidth_squared_twice": Mutation(
        "kernel", "k = k + torch.exp(-d2 / (2 * h ** 2))", "k = k + torch.exp(-d2 / (2 * (h ** 2) ** 2))",
        "Gaussian kernel with the bandwidth squared twice, exp(-d^2 / (2 h^4)) (the MMD net still learns with it)",
        (KERNEL, BIASED, UNBIASED, PERM, STEP)),
    "kernel_through_sqrt": Mutation(
        "kernel", "d2 = (x[:, None, :] - y[None, :, :]).pow(2).sum(-1)  # squared distances, (N, M)",
        "d2 = pairwise_distances(x, y) ** 2  # the Euclidean distances, squared",
        "kernel from the square of the Euclidean distances: NaN gradients where points coincide",
        (KERNEL, BIASED, UNBIASED, STEP, TRAINING)),
    "bandwidths_averaged": Mutation(
        "kernel", "return k", "return k / len(bandwidths)",
        "several bandwidths averaged instead of summed (the MMD net still learns: Adam ignores the scale)",
        (KERNEL, BIASED, UNBIASED, PERM, STEP)),
    # Part 2: the KDE and its bandwidth
    "kde_no_normaliser": Mutation(
        "kde", "return torch.logsumexp(-d2 / (2 * bandwidth ** 2), dim=1) + log_norm",
        "return torch.logsumexp(-d2 / (2 * bandwidth ** 2), dim=1)",
        "KDE log-density without -log N - D/2 log(2 pi h^2) (bandwidths cannot be compared)", (KDE, SELECT)),
    "kde_constant_without_d": Mutation(
        "kde", "- 0.5 * d * math.log(", "- 0.5 * math.log(",
        "KDE normalising constant of a 1-D Gaussian whatever the dimension", (KDE, SELECT)),
    "select_on_training_data": Mutation(
        "bandwidth", "kde_log_prob(val, train, h)", "kde_log_prob(train, train, h)",
        "bandwidth chosen by the likelihood of the training data (always the smallest)", (SELECT,)),
    "select_argmin": Mutation(
        "bandwidth", "scores.argmax()", "scores.argmin()",
        "bandwidth with the lowest held-out log-likelihood", (SELECT,)),
    # Part 3: the MMD
    "unbiased_keeps_diagonal": Mutation(
        "mmd", UNBIASED_SUMS,
        "xx = kxx.sum() / (n * (n - 1))\n        yy = kyy.sum() / (m * (m - 1))",
        "unbiased estimate keeping the diagonal terms k(x_i, x_i)", (UNBIASED, PERM)),
    "unbiased_n_squared": Mutation(
        "mmd", UNBIASED_SUMS,
        "xx = (kxx.sum() - kxx.diagonal().sum()) / n ** 2\n        yy = (kyy.sum() - kyy.diagonal().sum()) / m ** 2",
        "unbiased estimate dividing the sums over i != j by N^2 instead of N(N - 1)", (UNBIASED, PERM)),
    "cross_term_once": Mutation(
        "mmd", "return xx + yy - 2 * kxy.mean()", "return xx + yy - kxy.mean()",
        "MMD^2 with the cross term counted once instead of twice (the MMD net then spreads its samples out)",
        (BIASED, UNBIASED, PERM, STEP, TRAINING)),
    # Part 4: the permutation test
    "one_permutation_reused": Mutation(
        "permutation",
        "draws = []\n    for _ in range(n_permutations):\n"
        "        perm = torch.randperm(len(z), generator=generator).to(z.device)  # a new relabelling each time\n",
        "draws = []\n    perm = torch.randperm(len(z), generator=generator).to(z.device)  # drawn once\n"
        "    for _ in range(n_permutations):\n",
        "permutation test reusing one permutation for every null draw", (PERM,)),
    "p_without_plus_one": Mutation(
        "permutation", "p_value = (1 + int((null >= observed).sum())) / (1 + n_permutations)",
        "p_value = int((null >= observed).sum()) / n_permutations",
        "p-value without the +1 correction (0 when T exceeds every null draw)", (PERM,)),
    "statistic_always_biased": Mutation(
        "permutation", "observed = mmd2(x, y, bandwidth, unbiased=unbiased)", "observed = mmd2(x, y, bandwidth)",
        "observed statistic with the biased estimate, null draws with the unbiased one", (PERM,)),
    "p_counts_smaller": Mutation(
        "permutation", "(null >= observed)", "(null <= observed)",
        "p-value counting the null draws below the statistic (a valid level, but no power)", (PERM,)),
    # Part 5: the MMD net
    "step_detaches_samples": Mutation(
        "mmd_net", "fake = generator(noise)", "fake = generator(noise).detach()",
        "MMD-net step with the generated points detached (no gradient reaches the generator)", (STEP, TRAINING)),
    "step_without_zero_grad": Mutation(
        "mmd_net", "    optimizer.zero_grad()\n", "",
        "MMD-net step that never resets the gradients (each step adds to the last ones)", (STEP, TRAINING)),
    "step_before_backward": Mutation(
        "mmd_net", "loss.backward()\n    optimizer.step()", "optimizer.step()\n    loss.backward()",
        "MMD-net step taking the optimizer's step before back-propagating", (STEP, TRAINING)),
}

# Realistic mistakes that pass every visible test and that only the hidden checks catch: cancellation in
# float32 far from the origin, a KDE outside log space, one shift for every query, a dtype
MUTATIONS.update({
    "euclidean_expansion": Mutation(
        "distances", "return diff.pow(2).sum(-1).sqrt()",
        "return ((x ** 2).sum(1)[:, None] + (y ** 2).sum(1)[None, :] - 2 * x @ y.T).clamp_min(0).sqrt()",
        "Euclidean distances by |x|^2 + |y|^2 - 2 x.y (cancels for float32 points far from the origin)", (DIST,)),
    "kde_log_mean_exp": Mutation(
        "kde", "torch.logsumexp(-d2 / (2 * bandwidth ** 2), dim=1)",
        "torch.log(torch.exp(-d2 / (2 * bandwidth ** 2)).sum(1))",
        "KDE as the log of a sum of exponentials: -inf far from the data", (KDE,)),
    "kde_global_max": Mutation(
        "kde", "return torch.logsumexp(-d2 / (2 * bandwidth ** 2), dim=1) + log_norm",
        "a = -d2 / (2 * bandwidth ** 2)\n    top = a.max()  # one shift for every query\n"
        "    return top + torch.log(torch.exp(a - top).sum(1)) + log_norm",
        "KDE with one max over all queries instead of a logsumexp per query", (KDE,)),
    "scores_float32": Mutation(
        "bandwidth", "scores = torch.stack([kde_log_prob(val, train, h).mean() for h in candidates])",
        "scores = torch.tensor([float(kde_log_prob(val, train, h).mean()) for h in candidates])",
        "bandwidth scores collected in a new float32 tensor (wrong dtype for float64 data)", (SELECT,)),
})

# borrowing the reference: the library's distances, squared distances, KDE, MMD and permutation test, and
# the hidden check's own adapter; each is hidden while grading
MUTATIONS.update({
    "borrow_distances": Mutation(
        "distances", "diff = x[:, None, :] - y[None, :, :]  # (N, M, D)",
        "from gencourse.kernels import pairwise_distances as library\n"
        "    return library(x, y, metric, p=p, cov=cov)\n    diff = x[:, None, :] - y[None, :, :]  # (N, M, D)",
        "delegates pairwise_distances to gencourse.kernels", (DIST,)),
    "borrow_squared_distances": Mutation(
        "kernel", "d2 = (x[:, None, :] - y[None, :, :]).pow(2).sum(-1)  # squared distances, (N, M)",
        "from gencourse import kernels\n    d2 = kernels.squared_distances(x, y)  # the library's helper",
        "builds the kernel on gencourse.kernels.squared_distances", (KERNEL, BIASED, UNBIASED, PERM, STEP, TRAINING)),
    "borrow_kde": Mutation(
        "kde", "n, d = data.shape",
        "import importlib\n    return importlib.import_module('gencourse.kernels').kde_log_prob(x, data, bandwidth)\n"
        "    n, d = data.shape",
        "delegates kde_log_prob to gencourse.kernels through importlib", (KDE, SELECT)),
    "borrow_mmd2": Mutation(
        "mmd", "n, m = len(x), len(y)",
        "from gencourse.kernels import mmd2 as library\n    return library(x, y, bandwidth, unbiased=unbiased)\n"
        "    n, m = len(x), len(y)",
        "delegates mmd2 to gencourse.kernels", (BIASED, UNBIASED, PERM, STEP, TRAINING)),
    "borrow_permutation": Mutation(
        "permutation", "n = len(x)\n",
        "from gencourse.kernels import mmd_permutation_test as library\n"
        "    return library(x, y, bandwidth, n_permutations=n_permutations, unbiased=unbiased, generator=generator)\n"
        "    n = len(x)\n",
        "delegates the permutation test to gencourse.kernels", (PERM,)),
    "borrow_check_adapter": Mutation(
        "mmd_net", "    optimizer.zero_grad()\n",
        "    from gencourse.grading.assignments.a5_kernels.checks import mmd_net_step as reference\n"
        "    return reference(generator, optimizer, batch, noise, bandwidths)\n",
        "delegates mmd_net_step to the adapter the hidden check compares with", (STEP, TRAINING)),
})
#: the mistakes tests/test_grading.py runs without nbgrader
REALISTIC = tuple(n for n in MUTATIONS if not n.startswith("borrow_"))
#: of those, the ones that pass every visible test: only a hidden check can catch them
HIDDEN_ONLY = ("euclidean_expansion", "kde_log_mean_exp", "kde_global_max", "scores_float32")
BORROW = ("borrow_distances", "borrow_squared_distances", "borrow_kde", "borrow_mmd2", "borrow_permutation",
          "borrow_check_adapter")

E2E = {
    "complete": ("complete", (), ()),
    "untouched": ("untouched", (), "all"),
    "alternative": ("alternative", (), ()),
    "bugs_a": ("mutation", ("minkowski_no_root", "kde_no_normaliser", "unbiased_keeps_diagonal",
                            "one_permutation_reused", "step_detaches_samples"),
               (DIST, KDE, SELECT, UNBIASED, PERM, STEP, TRAINING)),
    # a kernel of the wrong width: every MMD is off, but the MMD net still learns
    "bugs_b": ("mutation", ("mahalanobis_covariance", "bandwidth_squared_twice", "select_argmin"),
               (DIST, KERNEL, BIASED, UNBIASED, PERM, STEP, SELECT)),
    "bugs_c": ("mutation", ("kde_constant_without_d", "unbiased_n_squared", "p_without_plus_one",
                            "step_without_zero_grad"),
               (KDE, SELECT, UNBIASED, PERM, STEP, TRAINING)),
    "bugs_d": ("mutation", ("cross_term_once", "select_on_training_data", "statistic_always_biased"),
               (BIASED, UNBIASED, PERM, STEP, TRAINING, SELECT)),
    "bugs_e": ("mutation", ("kernel_through_sqrt", "p_counts_smaller", "step_before_backward"),
               (KERNEL, BIASED, UNBIASED, PERM, STEP, TRAINING)),
    # mistakes only the hidden checks catch (float32 far from the origin, far queries, a dtype), and one
    # that the visible tests catch but that leaves the distances, the KDE and the training alone
    "bugs_hidden": ("mutation", ("euclidean_expansion", "kde_global_max", "scores_float32"), (DIST, KDE, SELECT)),
    "bugs_hidden_b": ("mutation", ("kde_log_mean_exp", "bandwidths_averaged"), (KDE, KERNEL, BIASED, UNBIASED, PERM, STEP)),
    # the library's distances, helper, KDE, MMD and permutation test, and a check's adapter, borrowed
    "x_borrow_reference": ("mutation", BORROW, sum((MUTATIONS[m].lost for m in BORROW), ())),
}
