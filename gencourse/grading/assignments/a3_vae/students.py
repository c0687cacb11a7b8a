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
        "reparameterisation with the log-variance used as the standard deviation (the VAE trains badly too)",
        ("test_reparameterize", "test_vae_training")),
    "variance_as_sigma": Mutation(
        "reparameterize", "return mu + torch.exp(0.5 * log_var) * eps", "return mu + torch.exp(log_var) * eps",
        "reparameterisation with exp(log_var), the variance, used as the standard deviation",
        ("test_reparameterize", "test_vae_training")),
    "kl_wrong_sign": Mutation(
        "kl_standard_normal", "return 0.5 * (mu ** 2 + torch.exp(log_var) - log_var - 1.0).sum(-1)",
        "return -0.5 * (mu ** 2 + torch.exp(log_var) - log_var - 1.0).sum(-1)",
        "KL to the prior with the wrong sign (the ELBO and the trained VAE use it, so they are wrong too)",
        ("test_kl_standard_normal", "test_elbo", "test_vae_training")),
    "kl_sigma_for_variance": Mutation(
        "kl_standard_normal", "mu ** 2 + torch.exp(log_var) - log_var - 1.0",
        "mu ** 2 + torch.exp(0.5 * log_var) - log_var - 1.0",
        "KL with sigma where sigma^2 belongs (the ELBO and the trained VAE use it, so they are wrong too)",
        ("test_kl_standard_normal", "test_elbo", "test_vae_training")),
    "elbo_plus_kl": Mutation(
        "elbo", "return log_px_z.mean(0) - kl_standard_normal(mu, log_var)",
        "return log_px_z.mean(0) + kl_standard_normal(mu, log_var)",
        "ELBO that adds the KL instead of subtracting it", ("test_elbo", "test_vae_training")),
    "elbo_pixel_mean": Mutation(
        "elbo", '.sum(-1)  # (S, B)', '.mean(-1)  # (S, B)',
        "ELBO with the log-likelihood averaged over pixels instead of summed (the KL weighs 64 times too much in training)",
        ("test_elbo", "test_vae_training")),
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
        "decoder returns probabilities instead of logits", ("test_vae", "test_vae_training")),
}

# the score-function estimator: a wrong score, a biased baseline
MUTATIONS.update({
    "sf_self_baseline": Mutation(
        "score_function_grad", "values - (values.sum(0) - values) / (n_samples - 1)", "values - values.mean(0)",
        "score-function baseline as the mean of f over all S samples, the sample's own included (biased by (S - 1) / S)",
        ("test_score_function",)),
    "sf_score_no_minus_one": Mutation(
        "score_function_grad", "0.5 * (eps ** 2 - 1.0)", "0.5 * eps ** 2",
        "score wrt the log-variance without the -1 of the normalising constant (biased without a baseline)",
        ("test_score_function",)),
    "sf_score_times_sigma": Mutation(
        "score_function_grad", "(weight * eps / sigma)", "(weight * eps * sigma)",
        "score wrt mu as z - mu = sigma eps, without the division by sigma^2", ("test_score_function",)),
    "elbo_no_kl": Mutation(
        "elbo", "return log_px_z.mean(0) - kl_standard_normal(mu, log_var)", "return log_px_z.mean(0)",
        "ELBO without the KL term: a better-looking reconstruction, but the trained VAE is judged by the true ELBO",
        ("test_elbo", "test_vae_training")),
})

# Realistic mistakes the hidden checks catch where the visible tests of their own cell do not: an input changed
# in place, gradients cut off by a stray detach() (the training test then fails too), a batch-wide max instead of a
# per-example one, a leave-one-out baseline divided by S
MUTATIONS.update({
    "reparam_in_place": Mutation(
        "reparameterize", "return mu + torch.exp(0.5 * log_var) * eps",
        "return eps.mul_(torch.exp(0.5 * log_var)).add_(mu)  # in place: no new tensor",
        "reparameterisation computed in place in the caller's eps: right values, the noise is destroyed",
        ("test_reparameterize",)),
    "elbo_detached_logits": Mutation(
        "elbo", "F.binary_cross_entropy_with_logits(logits, target", "F.binary_cross_entropy_with_logits(logits.detach(), target",
        "ELBO whose reconstruction term detaches the decoder's logits: right values, the decoder never trains",
        ("test_elbo", "test_vae_training")),
    "iwae_global_max": Mutation(
        "iwae_bound", "return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])",
        "top = log_w.max()  # the largest log-weight, for stability\n"
        "    return top + torch.log(torch.exp(log_w - top).mean(0))",
        "IWAE bound stabilised with the largest log-weight of the whole batch instead of each example's",
        ("test_iwae_bound",)),
    "sf_loo_over_s": Mutation(
        "score_function_grad", "/ (n_samples - 1)", "/ n_samples",
        "leave-one-out baseline summed over the S - 1 other samples but divided by S: unbiased, a larger variance",
        ("test_score_function",)),
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
HIDDEN_ONLY = ("vae_swapped_halves", "reparam_in_place", "iwae_global_max", "sf_loo_over_s")
BORROW = ("borrow_posterior", "borrow_kl_gaussians")

E2E = {
    "complete": ("complete", (), ()),
    "untouched": ("untouched", (), "all"),
    "alternative": ("alternative", (), ()),
    "bugs_a": ("mutation", ("log_var_as_sigma", "kl_wrong_sign", "iwae_mean", "posterior_no_prior", "vae_swapped_halves"),
               ("test_reparameterize", "test_kl_standard_normal", "test_elbo", "test_iwae_bound", "test_lg_posterior",
                "test_vae", "test_vae_training")),
    "bugs_b": ("mutation", ("variance_as_sigma", "elbo_pixel_mean", "iwae_no_log_k", "lg_elbo_no_trace", "vae_sigmoid_decoder"),
               ("test_reparameterize", "test_elbo", "test_iwae_bound", "test_lg_elbo", "test_vae", "test_vae_training")),
    # mistakes only the hidden checks catch: an input changed in place, a batch-wide max, a baseline divided by S
    "bugs_c": ("mutation", ("reparam_in_place", "iwae_global_max", "sf_loo_over_s"),
               ("test_reparameterize", "test_iwae_bound", "test_score_function")),
    # a biased score, and a VAE trained without its KL term
    "bugs_d": ("mutation", ("sf_score_no_minus_one", "elbo_no_kl"), ("test_score_function", "test_elbo", "test_vae_training")),
    # the library's posterior and Gaussian KL borrowed, one per cell
    "x_borrow_reference": ("mutation", BORROW, sum((MUTATIONS[m].lost for m in BORROW), ())),
}
