"""Simulated students of a8_diffusion: realistic mistakes, and the class graded by the tests.

* ``MUTATIONS``: each replaces one snippet of one solution cell of a complete submission; ``lost``
  names the test cells that must lose their points because of it. The loss uses the student's
  ``q_sample``, and the ring test trains with the student's loss and samples with the student's
  step, so a mistake there can also cost the ring (measured: several wrong noise scales still train a
  model within the ring's target, and lose only the points of their own part).
* ``alternative.py`` (beside this file): a correct solution written differently, which must keep
  full marks.
* ``E2E``: the class graded end to end by the tests: student -> (kind, mutations, test cells that
  must lose their points, or ``"all"``).
"""
from ...simulate import Mutation, Student  # noqa: F401

QS, QP, LOSS, STEP, RING = "test_q_sample", "test_q_posterior", "test_loss", "test_step", "test_train_ring"

AB = "alpha_bar = torch.cumprod(1 - betas, dim=0)"
QS_RETURN = "return ab.sqrt() * x0 + (1 - ab).sqrt() * eps"
QP_MEAN = "mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * xt"
QP_VAR = "var = (1 - ab_prev) / (1 - ab) * beta"
QP_LINE = "beta, ab, ab_prev = betas[t].unsqueeze(1), alpha_bar[t].unsqueeze(1), alpha_bar[t - 1].unsqueeze(1)"
LOSS_RETURN = "return (eps - denoiser(xt, t)).pow(2).sum(dim=1).mean()"
STEP_EPS = "eps_hat = denoiser(xt, torch.full((len(xt),), t, dtype=torch.long, device=xt.device))"
STEP_MEAN = "mean = (xt - beta / (1 - ab).sqrt() * eps_hat) / (1 - beta).sqrt()"
STEP_NOISE = "return mean + beta.sqrt() * z"

MUTATIONS = {
    # Part 1: q_sample
    "alpha_for_alpha_bar": Mutation(
        "q_sample", AB, "alpha_bar = 1 - betas  # alpha_t, not the product",
        "alpha_t used where alpha_bar_t is asked", (QS, LOSS)),
    "noise_scale_no_sqrt": Mutation(
        "q_sample", QS_RETURN, "return ab.sqrt() * x0 + (1 - ab) * eps",
        "the noise scaled by 1 - alpha_bar_t instead of its square root", (QS, LOSS)),
    "sample_step_off_by_one": Mutation(
        "q_sample", "ab = alpha_bar[t].unsqueeze(1)", "ab = alpha_bar[t - 1].unsqueeze(1)",
        "alpha_bar of step t - 1 used for step t", (QS, LOSS)),
    # Part 2: the posterior
    "posterior_variance_beta": Mutation(
        "q_posterior", QP_VAR, "var = beta.clone()",
        "the posterior variance taken as beta_t", (QP,)),
    "posterior_alpha_bar_for_alpha": Mutation(
        "q_posterior", QP_MEAN,
        "mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + (ab.sqrt() * (1 - ab_prev) / (1 - ab)) * xt",
        "sqrt(alpha_bar_t) where sqrt(alpha_t) multiplies x_t", (QP,)),
    "posterior_coefficients_swapped": Mutation(
        "q_posterior", QP_MEAN,
        "mean = ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * x0 + (ab_prev.sqrt() * beta / (1 - ab)) * xt",
        "the coefficients of x_0 and x_t swapped", (QP,)),
    # Part 3: the loss
    "loss_mean_over_dimensions": Mutation(
        "loss", LOSS_RETURN, "return F.mse_loss(denoiser(xt, t), eps)",
        "the squared error averaged over the dimensions too (F.mse_loss)", (LOSS,)),
    "loss_predicts_data": Mutation(
        "loss", LOSS_RETURN, "return (x0 - denoiser(xt, t)).pow(2).sum(dim=1).mean()",
        "the denoiser trained to predict x_0 where the step reads its output as the noise", (LOSS, RING)),
    "loss_clean_input": Mutation(
        "loss", LOSS_RETURN, "return (eps - denoiser(x0, t)).pow(2).sum(dim=1).mean()",
        "the denoiser fed the clean data x_0 instead of x_t", (LOSS, RING)),
    # Part 4: the step
    "step_noise_at_last_step": Mutation(
        "step", "    if t == 1:\n        return mean\n", "",
        "noise added at the last step too", (STEP,)),
    "step_noise_scale_no_sqrt": Mutation(
        "step", STEP_NOISE, "return mean + beta * z",
        "the noise scaled by beta_t instead of sqrt(beta_t)", (STEP,)),
    "step_posterior_variance": Mutation(
        "step", STEP_NOISE, "return mean + ((1 - alpha_bar[t - 1]) / (1 - ab) * beta).sqrt() * z",
        "sigma_t^2 = beta~_t where beta_t is asked", (STEP,)),
    "step_alpha_bar_in_mean": Mutation(
        "step", STEP_MEAN, "mean = (xt - beta / (1 - ab).sqrt() * eps_hat) / ab.sqrt()",
        "the mean divided by sqrt(alpha_bar_t) instead of sqrt(alpha_t)", (STEP, RING)),
    "step_eps_coefficient_no_sqrt": Mutation(
        "step", STEP_MEAN, "mean = (xt - beta / (1 - ab) * eps_hat) / (1 - beta).sqrt()",
        "the predicted noise weighted by beta_t / (1 - alpha_bar_t) without the square root", (STEP,)),
}

# Realistic mistakes that pass every visible test and that only the hidden checks catch
MUTATIONS.update({
    "step_time_off_by_one": Mutation(
        "step", STEP_EPS, "eps_hat = denoiser(xt, torch.full((len(xt),), t - 1, dtype=torch.long, device=xt.device))",
        "the denoiser asked about step t - 1 while the chain is at step t", (STEP,)),
    "posterior_double_schedule": Mutation(
        "q_posterior", AB, "alpha_bar = torch.cumprod(1 - betas.double(), dim=0)  # double precision for accuracy\n"
        "    betas = betas.double()",
        "the schedule computed in float64 whatever the inputs: float32 inputs get float64 results", (QP,)),
    "posterior_index_wraps_at_step_1": Mutation(
        "q_posterior", f"{AB}\n    {QP_LINE}",
        "alpha_bar = torch.cumprod(1 - betas[1:], dim=0)  # alpha_bar[k] is step k + 1\n"
        "    beta, ab, ab_prev = betas[t].unsqueeze(1), alpha_bar[t - 1].unsqueeze(1), alpha_bar[t - 2].unsqueeze(1)",
        "alpha_bar without step 0: at t = 1, alpha_bar[t - 2] wraps round to step T", (QP,)),
})

# borrowing the reference: the library's functions, its model, the check's adapter
MUTATIONS.update({
    "borrow_library": Mutation(
        "q_sample", AB,
        "from gencourse.diffusion import q_sample as library\n    return library(x0, t, torch.cumprod(1 - betas, 0), eps)\n    "
        + AB,
        "delegates q_sample to gencourse.diffusion", (QS, LOSS, RING)),
    "borrow_importlib": Mutation(
        "step", STEP_EPS,
        "import importlib\n    diffusion = importlib.import_module('gencourse.diffusion')\n"
        "    steps = torch.full((len(xt),), t)\n"
        "    z = None if t == 1 else torch.randn(xt.shape, generator=generator, dtype=xt.dtype)\n"
        "    return diffusion.ddpm_step(xt, t, denoiser(xt, steps), betas, alpha_bar, betas, z)\n    " + STEP_EPS,
        "delegates ddpm_step to gencourse.diffusion through importlib", (STEP, RING)),
    "borrow_check_adapter": Mutation(
        "q_posterior", AB,
        "from gencourse.grading.assignments.a8_diffusion.checks import q_posterior as reference\n"
        "    return reference(x0, xt, t, betas)\n    " + AB,
        "delegates q_posterior to the adapter the hidden check compares with", (QP,)),
})
#: the mistakes tests/test_grading.py runs without nbgrader
REALISTIC = tuple(n for n in MUTATIONS if not n.startswith("borrow_"))
#: of those, the ones that pass every visible test: only a hidden check can catch them
HIDDEN_ONLY = ("step_time_off_by_one", "posterior_double_schedule", "posterior_index_wraps_at_step_1")
BORROW = ("borrow_library", "borrow_importlib", "borrow_check_adapter")

E2E = {
    "complete": ("complete", (), ()),
    "untouched": ("untouched", (), "all"),
    "alternative": ("alternative", (), ()),
    "bugs_a": ("mutation", ("alpha_for_alpha_bar", "posterior_variance_beta", "step_noise_at_last_step"),
               (QS, QP, LOSS, STEP)),
    "bugs_b": ("mutation", ("posterior_coefficients_swapped", "loss_mean_over_dimensions", "step_posterior_variance"),
               (QP, LOSS, STEP)),
    "bugs_c": ("mutation", ("sample_step_off_by_one", "step_noise_scale_no_sqrt"), (QS, LOSS, STEP)),
    "bugs_d": ("mutation", ("loss_clean_input", "step_alpha_bar_in_mean"), (LOSS, STEP, RING)),
    # mistakes only the hidden checks catch
    "bugs_hidden": ("mutation", ("step_time_off_by_one", "posterior_index_wraps_at_step_1"), (QP, STEP)),
    "bugs_hidden_b": ("mutation", ("posterior_double_schedule",), (QP,)),
    "x_borrow_reference": ("mutation", BORROW, sum((MUTATIONS[m].lost for m in BORROW), ())),
}
