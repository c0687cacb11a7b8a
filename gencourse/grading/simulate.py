"""Simulated students: submissions built from an assignment's release and its solutions.

Every submission starts from the released notebook. ``complete`` fills each solution cell with
the instructor's solution; the others change that complete submission in one place:

* a :class:`Mutation` replaces one snippet of one solution cell (a realistic bug, an infinite
  loop, a hostile trick); ``lost`` names the test cells that must lose their points because of it,
  so the autograder tests can check that exactly those points go;
* an alternative solution (``ALTERNATIVES``) rewrites cells in a different but correct way, which
  must keep full marks.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import nbformat

SOLUTION_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` by ``new`` in the solution cell ``cell`` of a complete submission."""

    cell: str
    old: str
    new: str
    note: str
    lost: tuple = field(default_factory=tuple)


@dataclass(frozen=True)
class Student:
    """A simulated student: a name, how the submission is built, and what it should score."""

    name: str
    kind: str  # "complete", "untouched", "mutation", "alternative"
    note: str
    mutations: tuple = ()
    lost: tuple = ()


A1 = "a1_maximum_likelihood"

# Realistic mistakes students make in assignment 1, and the test cells each must fail.
MUTATIONS = {
    A1: {
        "unbiased_variance": Mutation(
            "gaussian_mle", "return mean, ((x - mean) ** 2).mean(0)", "return mean, x.var(0)",
            "variance with torch.var, which divides by N - 1", ("test_gaussian_mle",)),
        "kl_log_ratio_flipped": Mutation(
            "entropy_kl", "return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)",
            "return (torch.xlogy(p, q) - torch.xlogy(p, p)).sum(-1)",
            "KL with log q - log p (wrong sign)", ("test_kl",)),
        "entropy_nan_at_zero": Mutation(
            "entropy_kl", "return -torch.xlogy(p, p).sum(-1)", "return -(p * torch.log(p)).sum(-1)",
            "entropy with p log p, which is NaN where p = 0", ("test_entropy",)),
        "em_old_means": Mutation(
            "gmm", "diff = x[None] - new_means[:, None]  # (K, N, D)", "diff = x[None] - means[:, None]  # (K, N, D)",
            "EM covariance around the old means", ("test_em_step",)),
        "gmm_no_logsumexp": Mutation(
            "gmm", "return torch.logsumexp(torch.log(weights) + components.log_prob(x[:, None, :]), dim=1)",
            "return torch.log((weights * components.log_prob(x[:, None, :]).exp()).sum(1))",
            "mixture density summed outside log space (underflows far from the data)", ("test_gmm_log_prob",)),
        "infinite_loop": Mutation(
            "poisson_mle", "return k.double().mean(0)",
            "rate = 1.0\n    while True:  # 'iterate until converged', with no way out\n        rate = k.double().mean(0)",
            "a loop that never ends", ("test_poisson_mle",)),
        "shadow_reference": Mutation(
            "gaussian_mle", "return mean, ((x - mean) ** 2).mean(0)",
            "return mean, x.var(0)\n\nimport gencourse.mle\ngencourse.mle.gaussian_mle = gaussian_mle  # replace the reference",
            "a wrong answer that also replaces the reference gencourse.mle.gaussian_mle", ("test_gaussian_mle",)),
        "patch_check": Mutation(
            "gaussian_mle", "return mean, ((x - mean) ** 2).mean(0)",
            "return mean, ((x - mean) ** 2).sum(0) / len(x)\n\nimport gencourse.grading\n"
            "gencourse.grading.check = lambda *args, **kwargs: None  # disable the hidden tests\n"
            "def _wrong_variance(x):\n    mean = x.mean(0)\n    return mean, ((x - mean) ** 2).sum(0) / (len(x) + 1)\n"
            "gaussian_mle = _wrong_variance",
            "a wrong answer that also disables gencourse.grading.check", ("test_gaussian_mle",)),
        "swallow_errors": Mutation(
            "entropy_kl", "return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)",
            "return (torch.xlogy(p, q) - torch.xlogy(p, p)).sum(-1)\n\n"
            "get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)  # hide every error",
            "a wrong KL that also hides every exception from the grader", ("test_kl",)),
        "patch_allclose": Mutation(
            "gaussian_mle", "return mean, ((x - mean) ** 2).mean(0)",
            "return mean, x.var(0)\n\ntorch.allclose = lambda *args, **kwargs: True  # every comparison passes",
            "a wrong variance that also replaces torch.allclose", ("test_gaussian_mle",)),
        "always_equal": Mutation(
            "gaussian_mle", "return mean, ((x - mean) ** 2).mean(0)",
            "class _Anything(torch.Tensor):\n        def __eq__(self, other):\n            return True\n"
            "    return mean, (((x - mean) ** 2).sum(0) / (len(x) - 1)).as_subclass(_Anything)",
            "a wrong variance returned as a tensor subclass whose == is always true", ("test_gaussian_mle",)),
        "exit_kernel": Mutation(
            "poisson_mle", "return k.double().mean(0)", "import os\n    os._exit(1)",
            "calls os._exit, killing the kernel", ("test_poisson_mle",)),
        "segfault": Mutation(
            "gmm", "r = torch.softmax(", "import ctypes\n    ctypes.string_at(0)  # reads address 0: a crash\n    r = torch.softmax(",
            "crashes the interpreter (segmentation fault) in em_step", ("test_em_step",)),
        "memory_bomb": Mutation(
            "gmm", "components = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)\n    return",
            "hog = [bytearray(2 ** 28) for _ in range(256)]  # 64 GB, 256 MB at a time\n"
            "    components = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)\n    return",
            "allocates memory without bound in gmm_log_prob", ("test_gmm_log_prob",)),
        "huge_output": Mutation(
            "gaussian_mle", "return mean, ((x - mean) ** 2).mean(0)",
            "print('spam ' * 10_000_000)  # 50 MB of output\n    return mean, ((x - mean) ** 2).mean(0)",
            "prints 50 MB every time gaussian_mle is called", ()),
        "read_secrets": Mutation(
            "entropy_kl", "return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)",
            "return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)\n\n"
            "import glob, os\n"
            "_found = {'solutions': glob.glob('../../../solutions/**/*.ipynb', recursive=True),\n"
            "          'others': sorted(os.listdir('../../../submitted')) if os.path.isdir('../../../submitted') else [],\n"
            "          'gradebook_bytes': os.path.getsize('../../../gradebook.db') if os.path.exists('../../../gradebook.db') else -1}\n"
            "try:\n    open('../../../hacked.txt', 'w').write('x')\n    _found['write_outside'] = 'written'\n"
            "except OSError as e:\n    _found['write_outside'] = type(e).__name__\n"
            "open('leak.txt', 'w').write(repr(_found))",
            "tries to read the hidden tests, the gradebook and other submissions, and to write outside its folder", ()),
    },
    "a3_vae": {
        "log_var_as_sigma": Mutation(
            "reparameterize", "return mu + torch.exp(0.5 * log_var) * eps", "return mu + log_var * eps",
            "reparameterisation with the log-variance used as the standard deviation", ("test_reparameterize",)),
        "variance_as_sigma": Mutation(
            "reparameterize", "return mu + torch.exp(0.5 * log_var) * eps", "return mu + torch.exp(log_var) * eps",
            "reparameterisation with exp(log_var), the variance, used as the standard deviation",
            ("test_reparameterize",)),
        "kl_wrong_sign": Mutation(
            "kl_standard_normal", "return 0.5 * (mu ** 2 + torch.exp(log_var) - log_var - 1.0).sum(-1)",
            "return -0.5 * (mu ** 2 + torch.exp(log_var) - log_var - 1.0).sum(-1)",
            "KL to the prior with the wrong sign (the ELBO uses it, so it is wrong too)",
            ("test_kl_standard_normal", "test_elbo")),
        "kl_sigma_for_variance": Mutation(
            "kl_standard_normal", "mu ** 2 + torch.exp(log_var) - log_var - 1.0",
            "mu ** 2 + torch.exp(0.5 * log_var) - log_var - 1.0",
            "KL with sigma where sigma^2 belongs (the ELBO uses it, so it is wrong too)",
            ("test_kl_standard_normal", "test_elbo")),
        "elbo_plus_kl": Mutation(
            "elbo", "return log_px_z.mean(0) - kl_standard_normal(mu, log_var)",
            "return log_px_z.mean(0) + kl_standard_normal(mu, log_var)",
            "ELBO that adds the KL instead of subtracting it", ("test_elbo",)),
        "elbo_pixel_mean": Mutation(
            "elbo", '.sum(-1)  # (S, B)', '.mean(-1)  # (S, B)',
            "ELBO with the log-likelihood averaged over pixels instead of summed", ("test_elbo",)),
        "posterior_no_prior": Mutation(
            "lg_posterior", "cov = torch.linalg.inv(eye + W.T @ W / sigma ** 2)",
            "cov = torch.linalg.inv(W.T @ W / sigma ** 2)",
            "linear-Gaussian posterior covariance without the prior's precision I", ("test_lg_posterior",)),
        "lg_elbo_no_trace": Mutation(
            "lg_elbo", "((resid ** 2).sum(-1) + spread)", "(resid ** 2).sum(-1)",
            "linear-Gaussian ELBO without the trace term tr(W S W^T)", ("test_lg_elbo",)),
        "iwae_mean": Mutation(
            "iwae_bound", "return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])", "return log_w.mean(0)",
            "IWAE bound as the mean of the log-weights (the ELBO) instead of logsumexp - log K", ("test_iwae_bound",)),
        "iwae_no_log_k": Mutation(
            "iwae_bound", "return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])",
            "return torch.logsumexp(log_w, dim=0)",
            "IWAE bound without the - log K", ("test_iwae_bound",)),
        "iwae_outside_log_space": Mutation(
            "iwae_bound", "return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])",
            "return torch.log(torch.exp(log_w).mean(0))",
            "IWAE bound computed outside log space (underflows to -inf)", ("test_iwae_bound",)),
        "vae_swapped_halves": Mutation(
            "vae", "mu, log_var = self.enc_out(self.encoder(x)).chunk(2, dim=-1)",
            "log_var, mu = self.enc_out(self.encoder(x)).chunk(2, dim=-1)",
            "encoder output halves swapped (log-variances first)", ("test_vae",)),
        "vae_sigmoid_decoder": Mutation(
            "vae", "return self.decoder(z)", "return torch.sigmoid(self.decoder(z))",
            "decoder returns probabilities instead of logits", ("test_vae",)),
    },
    "a2_autoregressive": {
        "chain_rule_no_permute": Mutation(
            "chain_rule", "p = joint.permute(*order)  # axes in the order of the chain",
            "p = joint  # axes left in the natural order",
            "chain-rule factors that ignore the ordering (the joint's axes are never permuted)",
            ("test_chain_rule",)),
        "log_likelihood_prob_space": Mutation(
            "log_likelihood", "log_cond = x * logits - F.softplus(logits)",
            "log_cond = torch.log(torch.where(x > 0, torch.sigmoid(logits), 1 - torch.sigmoid(logits)))",
            "Bernoulli log-likelihood as log(sigmoid), outside log space (-inf for large logits)",
            ("test_log_likelihood",)),
        "made_degrees_from_zero": Mutation(
            "made_degrees", "torch.arange(1, n_dims + 1)", "torch.arange(n_dims)",
            "MADE input degrees starting at 0 instead of 1 (off by one)", ("test_made_degrees",)),
        "made_output_ge": Mutation(
            "made_masks", "connect = d_out[:, None] > d_in[None, :]", "connect = d_out[:, None] >= d_in[None, :]",
            "MADE output mask with >= instead of > (x_d leaks into its own conditional)", ("test_made_masks",)),
        "causal_mask_full_row": Mutation(
            "causal_mask", "mask[c, :c] = 1  # the centre row, left of the centre",
            "mask[c, :] = 1  # the whole centre row",
            "causal mask that keeps the whole centre row, pixels to the right included (the masked convolution, "
            "the gated block and the PixelCNN use it, so they are wrong too)",
            ("test_causal_mask", "test_masked_conv", "test_gated_block", "test_pixelcnn")),
        "mask_applied_once": Mutation(
            "masked_conv",
            'self.register_buffer("mask", mask.clone())\n\n    def forward(self, x):\n'
            "        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)",
            'self.register_buffer("mask", mask.clone())\n        with torch.no_grad():\n'
            "            self.weight.mul_(self.mask)  # masked once, at construction\n\n    def forward(self, x):\n"
            "        return super().forward(x)",
            "weights masked once in __init__ instead of in every forward pass (new weights see the future; "
            "the gated block and the PixelCNN use it, so they are wrong too)",
            ("test_masked_conv", "test_gated_block", "test_pixelcnn")),
        "gated_halves_swapped": Mutation(
            "gated", "return torch.tanh(h_f) * torch.sigmoid(h_g)", "return torch.sigmoid(h_f) * torch.tanh(h_g)",
            "gated activation with the filter and gate halves swapped (the block and the PixelCNN use it)",
            ("test_gated_activation", "test_gated_block", "test_pixelcnn")),
        "mask_b_first_layer": Mutation(
            "pixelcnn", 'self.first = MaskedConv2d(1, channels, first_kernel, "A")',
            'self.first = MaskedConv2d(1, channels, first_kernel, "B")',
            "mask B in the first layer (mask types A and B swapped): each pixel sees itself", ("test_pixelcnn",)),
        "bpd_in_nats": Mutation(
            "bpd", "return nll_nats / (n_dims * math.log(2))", "return nll_nats / n_dims",
            "bits per dimension left in nats (no division by ln 2)", ("test_bits_per_dim",)),
        "sampler_reads_future": Mutation(
            "sample",
            "    for i in range(H):\n        for j in range(W):\n            logits = model.logits(x)[:, :, i, j]",
            "    all_logits = model.logits(x)  # once, before any pixel is drawn\n    for i in range(H):\n"
            "        for j in range(W):\n            logits = all_logits[:, :, i, j]",
            "sampler that computes all logits once, on the blank image: every pixel is drawn from logits that read "
            "pixels not yet generated", ("test_sample",)),
        "sampler_stale_row": Mutation(
            "sample",
            "    for i in range(H):\n        for j in range(W):\n            logits = model.logits(x)[:, :, i, j]",
            "    for i in range(H):\n        row_logits = model.logits(x)[:, :, i]  # once per row\n"
            "        for j in range(W):\n            logits = row_logits[:, :, j]",
            "sampler that runs the model once per row: later pixels of a row are drawn from logits that read "
            "pixels of that row not yet generated", ("test_sample",)),
    },
}

# Correct solutions written differently from the instructor's: they must keep full marks.
ALTERNATIVES = {
    A1: {
        "entropy_kl": '''
def entropy(p):
    logp = torch.where(p > 0, torch.log(p), torch.zeros_like(p))
    return -(p * logp).sum(dim=-1)


def kl_divergence(p, q):
    ratio = torch.where(p > 0, torch.log(p) - torch.log(q), torch.zeros_like(p))
    return torch.sum(p * ratio, dim=-1)
''',
        "gaussian_mle": '''
def gaussian_mle(x):
    var, mean = torch.var_mean(x, dim=0, correction=0)
    return mean, var
''',
        "poisson_mle": '''
def poisson_mle(k):
    return k.sum(0) / k.shape[0]
''',
        "kl_fit": '''
def _trapz(f, x):
    return torch.trapezoid(f, x, dim=-1)


def forward_kl(log_p, log_q, x):
    return _trapz(log_p.exp() * (log_p - log_q), x)


def reverse_kl(log_p, log_q, x):
    return _trapz(log_q.exp() * (log_q - log_p), x)


def fit_gaussian_kl(log_p, x, direction, mus, sigmas):
    best, best_pair = float("inf"), None
    kl = forward_kl if direction == "forward" else reverse_kl
    for mu in mus:
        for sigma in sigmas:
            value = float(kl(log_p, normal_log_pdf(x, mu, sigma), x))
            if value < best:
                best, best_pair = value, (mu, sigma)
    return best_pair
''',
        "gmm": '''
def _log_normal(x, mean, cov):
    L = torch.linalg.cholesky(cov)
    z = torch.linalg.solve_triangular(L, (x - mean).T, upper=False)  # (D, N)
    half_log_det = torch.log(torch.diagonal(L)).sum()
    return -0.5 * (z ** 2).sum(0) - half_log_det - 0.5 * x.shape[1] * math.log(2 * math.pi)


def _joint(x, weights, means, covs):
    return torch.stack([torch.log(weights[k]) + _log_normal(x, means[k], covs[k]) for k in range(len(weights))], dim=1)


def gmm_log_prob(x, weights, means, covs):
    return torch.logsumexp(_joint(x, weights, means, covs), dim=1)


def em_step(x, weights, means, covs, reg_covar=1e-6):
    joint = _joint(x, weights, means, covs)
    r = torch.exp(joint - torch.logsumexp(joint, dim=1, keepdim=True))
    new_w, new_m, new_c = [], [], []
    for k in range(len(weights)):
        nk = r[:, k].sum()
        mu = (r[:, k:k + 1] * x).sum(0) / nk
        d = x - mu
        cov = (r[:, k, None] * d).T @ d / nk + reg_covar * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        new_w.append(nk / x.shape[0]); new_m.append(mu); new_c.append(cov)
    return torch.stack(new_w), torch.stack(new_m), torch.stack(new_c)
''',
    },
    "a3_vae": {
        "reparameterize": '''
def reparameterize(mu, log_var, eps):
    std = torch.sqrt(torch.exp(log_var))
    return torch.addcmul(mu, std, eps)
''',
        "kl_standard_normal": '''
def kl_standard_normal(mu, log_var):
    var = log_var.exp()
    return torch.sum(mu.pow(2) + var - 1 - log_var, dim=-1) / 2
''',
        "elbo": '''
def elbo(x, logits, mu, log_var):
    log_lik = x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)  # (S, B, D)
    reconstruction = log_lik.sum(dim=2).mean(dim=0)
    kl = 0.5 * torch.sum(mu * mu + torch.exp(log_var) - 1 - log_var, dim=1)
    return reconstruction - kl
''',
        "lg_posterior": '''
def linear_gaussian_posterior(x, W, b, sigma):
    h = W.shape[1]
    precision = torch.eye(h, dtype=W.dtype, device=W.device) + W.T @ W / sigma ** 2
    chol = torch.linalg.cholesky(precision)
    cov = torch.cholesky_inverse(chol)
    mean = torch.cholesky_solve(W.T @ (x - b).T / sigma ** 2, chol).T
    return mean, cov
''',
        "lg_elbo": '''
def linear_gaussian_elbo(x, W, b, sigma, q_mean, q_cov):
    D, H = W.shape
    mean_x = torch.einsum("dh,bh->bd", W, q_mean) + b
    sq_err = ((x - mean_x) ** 2).sum(1) + (q_cov * (W.T @ W)).sum((-2, -1))  # tr(S W^T W), S symmetric
    rec = -sq_err / (2 * sigma ** 2) - D / 2 * (math.log(2 * math.pi) + 2 * math.log(sigma))
    logdet = torch.linalg.slogdet(q_cov)[1]
    tr = torch.einsum("...ii->...", q_cov)
    kl = (tr + (q_mean * q_mean).sum(1) - H - logdet) / 2
    return rec - kl
''',
        "iwae_bound": '''
def iwae_bound(log_p_x_given_z, log_p_z, log_q_z):
    log_w = log_p_x_given_z + log_p_z - log_q_z
    top = log_w.max(dim=0).values
    return top + torch.log(torch.exp(log_w - top).mean(dim=0))
''',
        "vae": '''
class VAE(nn.Module):
    def __init__(self, data_dim=64, latent_dim=8, hidden=128):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(nn.Linear(data_dim, hidden), nn.LeakyReLU(0.1))
        self.enc_out = nn.Linear(hidden, 2 * latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.1), nn.Linear(hidden, data_dim))

    def encode(self, x):
        out = self.enc_out(self.encoder(x))
        return out[:, :self.latent_dim], out[:, self.latent_dim:]

    def decode(self, z):
        hidden = F.leaky_relu(self.decoder[0](z), negative_slope=0.1)
        return self.decoder[2](hidden)

    def elbo(self, x, n_samples=1):
        mu, log_var = self.encode(x)
        eps = torch.randn(n_samples, *mu.shape, dtype=mu.dtype, device=mu.device)
        return elbo(x, self.decode(reparameterize(mu, log_var, eps)), mu, log_var)

    def loss(self, x):
        return -self.elbo(x).mean()
''',
    },
    "a2_autoregressive": {
        "chain_rule": '''
def chain_rule_factors(joint, order):
    n = joint.dim()
    factors = []
    for i in range(1, n + 1):
        kept = list(order[:i])
        dropped = [a for a in range(n) if a not in kept]
        marginal = joint.sum(dim=dropped) if dropped else joint  # axes kept, in increasing order
        perm = [sorted(kept).index(a) for a in kept]  # from increasing axis order to the chain's order
        marginal = marginal.permute(*perm)
        cond = torch.exp(torch.log(marginal) - torch.logsumexp(torch.log(marginal), dim=-1, keepdim=True))
        factors.append(cond)
    return factors
''',
        "log_likelihood": '''
def chain_rule_log_likelihood(logits, x):
    if logits.shape == x.shape:
        x = x.to(logits.dtype)
        per_dim = x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)
    else:
        logz = torch.logsumexp(logits, dim=-1)
        picked = torch.take_along_dim(logits, x.long()[..., None], dim=-1)[..., 0]
        per_dim = picked - logz
    return torch.sum(per_dim, dim=1)
''',
        "made_degrees": '''
def made_degrees(n_dims, hidden_sizes, order):
    position = {v: p for p, v in enumerate(order)}
    inputs = torch.tensor([position[d] + 1 for d in range(n_dims)], dtype=torch.int64)
    period = n_dims - 1 if n_dims > 1 else 1
    hidden = [torch.tensor([k % period + 1 for k in range(h)], dtype=torch.int64) for h in hidden_sizes]
    return [inputs] + hidden + [inputs.clone()]
''',
        "made_masks": '''
def made_masks(degrees):
    n = len(degrees)
    out = []
    for l in range(n - 1):
        strict = 1 if l == n - 2 else 0
        diff = degrees[l + 1].unsqueeze(1) - degrees[l].unsqueeze(0)  # (out, in)
        out.append((diff >= strict).to(torch.float32))
    return out
''',
        "causal_mask": '''
def causal_mask(kernel_size, mask_type):
    k = kernel_size
    flat = torch.arange(k * k).reshape(k, k)
    centre = (k * k) // 2
    keep = flat <= centre if mask_type == "B" else flat < centre
    return keep.float()
''',
        "masked_conv": '''
class MaskedConv2d(nn.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size, mask_type):
        super().__init__(in_channels, out_channels, (kernel_size, kernel_size),
                         padding=(kernel_size // 2, kernel_size // 2), bias=True)
        full = causal_mask(kernel_size, mask_type)[None, None].repeat(out_channels, in_channels, 1, 1)
        self.register_buffer("mask", full)

    def forward(self, x):
        return self._conv_forward(x, self.mask * self.weight, self.bias)
''',
        "gated": '''
def gated_activation(h):
    c = h.shape[1] // 2
    filt, gate = h[:, :c], h[:, c:]
    return filt.tanh() * gate.sigmoid()
''',
        "gated_block": '''
class GatedBlock(nn.Module):
    def __init__(self, channels, kernel_size=3):
        super().__init__()
        self.conv = MaskedConv2d(channels, channels * 2, kernel_size, mask_type="B")
        self.proj = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, h):
        g = gated_activation(self.conv(h))
        return self.proj(g) + h
''',
        "pixelcnn": '''
class TinyPixelCNN(nn.Module):
    def __init__(self, n_levels=17, channels=32, n_blocks=3, kernel_size=3, first_kernel=5, image_shape=(8, 8)):
        super().__init__()
        self.n_levels, self.image_shape = n_levels, tuple(image_shape)
        self.first = MaskedConv2d(1, channels, first_kernel, "A")
        self.blocks = nn.ModuleList()
        for _ in range(n_blocks):
            self.blocks.append(GatedBlock(channels, kernel_size))
        self.head = nn.Conv2d(channels, n_levels, 1)

    def logits(self, x):
        h = self.first(x.to(torch.float32) * (1.0 / (self.n_levels - 1)))
        return self.head(nn.Sequential(*self.blocks)(h)) if len(self.blocks) else self.head(h)

    def log_prob(self, x):
        nll = F.cross_entropy(self.logits(x), x[:, 0].long(), reduction="none")  # (B, H, W)
        return -nll.sum(dim=(1, 2))

    def loss(self, x):
        return -self.log_prob(x).mean()
''',
        "bpd": '''
def bits_per_dim(nll_nats, n_dims):
    return nll_nats / n_dims / math.log(2.0)
''',
        "sample": '''
def sample(model, n, generator):
    H, W = model.image_shape
    x = torch.zeros(n, 1, H, W)
    with torch.no_grad():
        for p in range(H * W):
            i, j = divmod(p, W)
            rows = x[:, :, : i + 1]  # causal: rows below i cannot matter
            probs = F.softmax(model.logits(rows)[:, :, i, j], dim=1)
            x[:, 0, i, j] = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1).to(x.dtype)
    return x.to(torch.int64)
''',
    },
}

# The simulated class of ``gencourse demo``.
DEMO_CLASS = {
    A1: (
        Student("ada", "complete", "complete, correct solution"),
        Student("bob", "untouched", "submitted the release untouched"),
        Student("cy", "mutation", MUTATIONS[A1]["unbiased_variance"].note, ("unbiased_variance",),
                MUTATIONS[A1]["unbiased_variance"].lost),
        Student("dee", "mutation", MUTATIONS[A1]["infinite_loop"].note, ("infinite_loop",),
                MUTATIONS[A1]["infinite_loop"].lost),
    ),
}


def _cells(nb, gid):
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid]


# Broken or hostile submission *files*: name -> (how to build the folder's files from a complete
# notebook, the test cells that must lose their points ("all" = every autograded cell), a phrase the
# grading report must contain for the student, or "").
def _delete_tests(nb):
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in ("test_entropy", "test_em_step")]
    return nb


def _reorder(nb):
    moved = _cells(nb, "test_entropy")[0]
    nb.cells.remove(moved)
    nb.cells.append(moved)  # a test cell moved to the end still runs after its function is defined
    return nb


def _edit_tests(nb):
    _cells(nb, "test_gaussian_mle")[0].source = "pass  # tests removed"
    cell = _cells(nb, "gaussian_mle")[0]
    cell.source = cell.source.replace("return mean, ((x - mean) ** 2).mean(0)", "return mean, x.var(0)")
    return nb


FILE_CASES = {
    "invalid_json": (lambda nb, name: {name: "{ this is not json"}, "all", "not a valid notebook"),
    "empty_file": (lambda nb, name: {name: ""}, "all", "is empty"),
    "missing_notebook": (lambda nb, name: {}, "all", "no notebook"),
    "renamed_notebook": (lambda nb, name: {name.replace(".ipynb", " (1).ipynb"): nb}, (), "graded as"),
    "extra_files": (lambda nb, name: {name: nb, "notes.txt": "my notes", "scratch.ipynb": "{}"}, (), "extra files"),
    "deleted_tests": (lambda nb, name: {name: _delete_tests(nb)}, (), ""),
    "reordered_cells": (lambda nb, name: {name: _reorder(nb)}, (), ""),
    "edited_tests": (lambda nb, name: {name: _edit_tests(nb)}, ("test_gaussian_mle",), ""),
}


def solution_sources(source_nb) -> dict:
    """The instructor's code of every solution cell, by grade id, with the markers removed."""
    out = {}
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            out[meta["grade_id"]] = SOLUTION_MARKERS.sub("", cell.source)
    return out


def build_submission(release_nb, source_nb, kind: str, assignment: str, mutations=()) -> nbformat.NotebookNode:
    """A simulated submission (a new notebook) of the given kind; see :class:`Student`."""
    nb = copy.deepcopy(release_nb)
    if kind == "untouched":
        return nb
    solutions = solution_sources(source_nb)
    if kind == "alternative":
        solutions.update({k: v.strip("\n") for k, v in ALTERNATIVES[assignment].items()})
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "code" and gid in solutions and cell.metadata["nbgrader"].get("solution"):
            cell.source = solutions[gid]
        elif cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = "A simulated student's answer: maximum likelihood minimises the forward KL."
    for name in mutations:
        m = MUTATIONS[assignment][name]
        cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == m.cell]
        if not cells or m.old not in cells[0].source:
            raise ValueError(f"mutation {name!r}: {m.old!r} is not in cell {m.cell!r}; update gencourse.simulate")
        cells[0].source = cells[0].source.replace(m.old, m.new)
    return nb


# The simulated class of each assignment's end-to-end test (tests/test_assignments.py):
# student -> (kind, mutations, test cells that must lose their points or "all").
# Assignment 1 has its own, larger test with broken and hostile submissions (tests/test_autograder.py).
E2E_CLASS: dict = {}

E2E_CLASS["a3_vae"] = {
    "complete": ("complete", (), ()),
    "untouched": ("untouched", (), "all"),
    "alternative": ("alternative", (), ()),
    "bugs_a": ("mutation", ("log_var_as_sigma", "kl_wrong_sign", "iwae_mean", "posterior_no_prior", "vae_swapped_halves"),
               ("test_reparameterize", "test_kl_standard_normal", "test_elbo", "test_iwae_bound", "test_lg_posterior",
                "test_vae")),
    "bugs_b": ("mutation", ("variance_as_sigma", "elbo_pixel_mean", "iwae_no_log_k", "lg_elbo_no_trace", "vae_sigmoid_decoder"),
               ("test_reparameterize", "test_elbo", "test_iwae_bound", "test_lg_elbo", "test_vae")),
}

E2E_CLASS["a2_autoregressive"] = {
    "complete": ("complete", (), ()),
    "untouched": ("untouched", (), "all"),
    "alternative": ("alternative", (), ()),
    "bugs_a": ("mutation", ("chain_rule_no_permute", "log_likelihood_prob_space", "made_degrees_from_zero",
                            "mask_b_first_layer", "bpd_in_nats", "sampler_reads_future"),
               ("test_chain_rule", "test_log_likelihood", "test_made_degrees", "test_pixelcnn", "test_bits_per_dim",
                "test_sample")),
    "bugs_b": ("mutation", ("made_output_ge", "causal_mask_full_row", "gated_halves_swapped", "sampler_stale_row"),
               ("test_made_masks", "test_causal_mask", "test_masked_conv", "test_gated_activation", "test_gated_block",
                "test_pixelcnn", "test_sample")),
}
