"""Simulated students of a3_vae: realistic mistakes, and the classes graded by the demo and the tests.

* ``MUTATIONS``: each replaces one snippet of one solution cell of a complete submission; ``lost``
  names the test cells that must lose their points because of it.
* ``alternative.py`` (beside this file): a correct solution written differently, which must keep
  full marks.
* ``E2E``: the class graded end to end by the tests: student -> (kind, mutations, test cells that
  must lose their points, or ``"all"``).
"""
from ...simulate import Mutation, Student  # noqa: F401

MUTATIONS = {
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
}

# Realistic mistakes that pass every visible test and that only the hidden checks catch: an input
# changed in place, gradients cut off by a stray detach(), a batch-wide max instead of a per-example one
MUTATIONS.update({
    "reparam_in_place": Mutation(
        "reparameterize", "return mu + torch.exp(0.5 * log_var) * eps",
        "return eps.mul_(torch.exp(0.5 * log_var)).add_(mu)  # in place: no new tensor",
        "reparameterisation computed in place in the caller's eps: right values, the noise is destroyed",
        ("test_reparameterize",)),
    "elbo_detached_logits": Mutation(
        "elbo", "F.binary_cross_entropy_with_logits(logits, target", "F.binary_cross_entropy_with_logits(logits.detach(), target",
        "ELBO whose reconstruction term detaches the decoder's logits: right values, the decoder never trains",
        ("test_elbo",)),
    "iwae_global_max": Mutation(
        "iwae_bound", "return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])",
        "top = log_w.max()  # the largest log-weight, for stability\n"
        "    return top + torch.log(torch.exp(log_w - top).mean(0))",
        "IWAE bound stabilised with the largest log-weight of the whole batch instead of each example's",
        ("test_iwae_bound",)),
})
# borrowing the reference: the library's linear-Gaussian posterior and Gaussian KL (the oracles of the visible
# tests are computed with torch.distributions, so these are hidden while grading like every other reference)
MUTATIONS.update({
    "borrow_posterior": Mutation(
        "lg_posterior", "eye = torch.eye(W.shape[1], dtype=W.dtype, device=W.device)",
        "return LinearGaussianModel(W, b, sigma).posterior(x)  # the library's exact posterior\n"
        "    eye = torch.eye(W.shape[1], dtype=W.dtype, device=W.device)",
        "delegates linear_gaussian_posterior to gencourse.vae.LinearGaussianModel.posterior", ("test_lg_posterior",)),
    "borrow_kl_gaussians": Mutation(
        "lg_elbo", "kl = 0.5 * (trace_s + (q_mean ** 2).sum(-1) - h - torch.logdet(q_cov))",
        "from gencourse.vae import kl_gaussians\n"
        "    kl = kl_gaussians(q_mean, q_cov, torch.zeros_like(q_mean), torch.eye(h, dtype=W.dtype))",
        "computes the KL term of linear_gaussian_elbo with gencourse.vae.kl_gaussians", ("test_lg_elbo",)),
})
#: the mistakes tests/test_grading.py runs without nbgrader
REALISTIC = tuple(n for n in MUTATIONS if not n.startswith("borrow_"))
#: of those, the ones that pass every visible test: only a hidden check can catch them
HIDDEN_ONLY = ("elbo_plus_kl", "vae_swapped_halves", "reparam_in_place", "elbo_detached_logits", "iwae_global_max")
BORROW = ("borrow_posterior", "borrow_kl_gaussians")

E2E = {
    "complete": ("complete", (), ()),
    "untouched": ("untouched", (), "all"),
    "alternative": ("alternative", (), ()),
    "bugs_a": ("mutation", ("log_var_as_sigma", "kl_wrong_sign", "iwae_mean", "posterior_no_prior", "vae_swapped_halves"),
               ("test_reparameterize", "test_kl_standard_normal", "test_elbo", "test_iwae_bound", "test_lg_posterior",
                "test_vae")),
    "bugs_b": ("mutation", ("variance_as_sigma", "elbo_pixel_mean", "iwae_no_log_k", "lg_elbo_no_trace", "vae_sigmoid_decoder"),
               ("test_reparameterize", "test_elbo", "test_iwae_bound", "test_lg_elbo", "test_vae")),
    # mistakes only the hidden checks catch: an input changed in place, a stray detach(), a batch-wide max
    "bugs_c": ("mutation", ("reparam_in_place", "elbo_detached_logits", "iwae_global_max"),
               ("test_reparameterize", "test_elbo", "test_iwae_bound")),
    # the library's posterior and Gaussian KL borrowed, one per cell
    "x_borrow_reference": ("mutation", BORROW, sum((MUTATIONS[m].lost for m in BORROW), ())),
}
