"""Simulated students of a6_gans: realistic mistakes, and the class graded by the tests.

* ``MUTATIONS``: each replaces one snippet of one solution cell of a complete submission; ``lost``
  names the test cells that must lose their points because of it. The training step uses the
  student's two losses and the training loop the student's step, so a mistake in a loss also costs
  the step, and one that stops the GAN from covering the ring also costs the training cell.
* ``alternative.py`` (beside this file): a correct solution written differently, which must keep
  full marks; its penalty draws its weights in another shape and order, and its step detaches the
  fakes with ``torch.no_grad`` and freezes the discriminator in the generator step.
* ``E2E``: the class graded end to end by the tests: student -> (kind, mutations, test cells that
  must lose their points, or ``"all"``).
"""
from ...simulate import Mutation, Student  # noqa: F401

DLOSS, GLOSS, DSTAR, JS = "test_discriminator_loss", "test_generator_loss", "test_optimal_discriminator", "test_js_divergence"
GP, STEP, TRAINING = "test_gradient_penalty", "test_train_step", "test_training"

MUTATIONS = {
    # Part 1: the losses
    "labels_swapped": Mutation(
        "d_loss", "return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()",
        "return F.softplus(real_logits).mean() + F.softplus(-fake_logits).mean()",
        "discriminator loss with the labels swapped (real 0, fake 1)", (DLOSS, STEP, TRAINING)),
    "d_loss_one_mean": Mutation(
        "d_loss", "return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()",
        "return torch.cat([F.softplus(-real_logits), F.softplus(fake_logits)]).mean()",
        "discriminator loss averaged over the pooled batch (half of -V when the batches have equal sizes)",
        (DLOSS, STEP)),
    "saturating_where_nonsaturating": Mutation(
        "g_loss", "if saturating:\n        return -F.softplus(fake_logits).mean()\n    return F.softplus(-fake_logits).mean()",
        "return -F.softplus(fake_logits).mean()  # E log(1 - D), whichever form is asked",
        "the saturating generator loss where the non-saturating one is asked (on the ring it still trains)",
        (GLOSS, STEP)),
    "nonsaturating_sign": Mutation(
        "g_loss", "return F.softplus(-fake_logits).mean()", "return -F.softplus(-fake_logits).mean()",
        "non-saturating loss with the wrong sign (E log D, which the generator then minimises)",
        (GLOSS, STEP, TRAINING)),
    # Part 2: D* and JS
    "d_star_inverted": Mutation(
        "d_star", "return torch.sigmoid(log_p_data - log_p_model)", "return torch.sigmoid(log_p_model - log_p_data)",
        "optimal discriminator p_model / (p_data + p_model)", (DSTAR, JS)),
    "js_without_halves": Mutation(
        "js", "return 0.5 * (kl_pm.sum() + kl_qm.sum()) * cell", "return (kl_pm.sum() + kl_qm.sum()) * cell",
        "JS divergence without the 1/2 factors (the slides' erratum: up to 2 log 2)", (JS,)),
    "js_mixture_sum": Mutation(
        "js", "log_m = torch.logaddexp(log_p, log_q) - math.log(2)", "log_m = torch.logaddexp(log_p, log_q)",
        "JS divergence against m = p + q instead of (p + q) / 2", (JS,)),
    # Part 3: the penalty
    "penalty_on_real": Mutation(
        "penalty", "x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)",
        "x_hat = real.detach().clone().requires_grad_(True)  # at the data",
        "gradient penalty at the real samples instead of random interpolates", (GP,)),
    "penalty_norm_over_batch": Mutation(
        "penalty", "norms = grad.flatten(1).norm(dim=1)  # one norm per sample", "norms = grad.norm()  # the batch's",
        "gradient penalty with one norm over the whole batch instead of one per sample", (GP,)),
    "penalty_one_weight": Mutation(
        "penalty", "eps = torch.rand(len(real), generator=generator)", "eps = torch.rand(1, generator=generator)",
        "gradient penalty with one interpolation weight for the whole batch", (GP,)),
    "penalty_no_create_graph": Mutation(
        "penalty", "x_hat, create_graph=True)", "x_hat)",
        "gradient penalty without create_graph: it cannot train the critic", (GP,)),
    # Part 4: the step
    "fakes_not_detached": Mutation(
        "training", "fake = generator(noise).detach()", "fake = generator(noise)",
        "discriminator step on fakes not detached (back-propagates into the generator)", (STEP,)),
    "generator_step_updates_d": Mutation(
        "training", "    g_loss.backward()\n    opt_g.step()\n", "    g_loss.backward()\n    opt_g.step()\n    opt_d.step()\n",
        "generator step that also steps the discriminator's optimizer (on the ring it still trains)", (STEP,)),
    "no_zero_grad_d": Mutation(
        "training", "        opt_d.zero_grad()\n", "",
        "discriminator step that never resets the discriminator's gradients (those of the generator step "
        "and of the last step add up; training then fails)", (STEP, TRAINING)),
    "one_batch_for_k_steps": Mutation(
        "training", "for real, noise in zip(reals, noises[:k]):", "for noise in noises[:k]:\n        real = reals[0]",
        "k discriminator steps all on the first real batch", (STEP,)),
}

# Realistic mistakes that pass every visible test and that only the hidden checks catch: log(sigmoid)
# at saturated logits, 0 / 0 in the tails, 0 log 0, a sum over one axis of a 2-D grid
MUTATIONS.update({
    "d_loss_log_sigmoid": Mutation(
        "d_loss", "return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()",
        "return -torch.log(torch.sigmoid(real_logits)).mean() - torch.log(1 - torch.sigmoid(fake_logits)).mean()",
        "discriminator loss as log(sigmoid): infinite at saturated logits", (DLOSS,)),
    "d_star_from_densities": Mutation(
        "d_star", "return torch.sigmoid(log_p_data - log_p_model)",
        "p, q = log_p_data.exp(), log_p_model.exp()\n    return p / (p + q)",
        "optimal discriminator from the densities themselves: 0 / 0 where both underflow", (DSTAR,)),
    "js_zero_log_zero": Mutation(
        "js", "kl_pm = torch.where(log_p > -math.inf, log_p.exp() * (log_p - log_m), torch.zeros_like(log_p))\n"
              "    kl_qm = torch.where(log_q > -math.inf, log_q.exp() * (log_q - log_m), torch.zeros_like(log_q))",
        "kl_pm = log_p.exp() * (log_p - log_m)\n    kl_qm = log_q.exp() * (log_q - log_m)",
        "JS divergence computing 0 log 0 as NaN where a density is 0", (JS,)),
})

# borrowing the reference: the library's losses, penalty and step, and the hidden check's own adapter
MUTATIONS.update({
    "borrow_losses": Mutation(
        "d_loss", "return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()",
        "from gencourse.gan import discriminator_loss as library\n    return library(real_logits, fake_logits)",
        "delegates discriminator_loss to gencourse.gan", (DLOSS, STEP, TRAINING)),
    "borrow_penalty": Mutation(
        "penalty", "eps = torch.rand(len(real), generator=generator)",
        "import importlib\n    return importlib.import_module('gencourse.gan').gradient_penalty(critic, real, fake)\n"
        "    eps = torch.rand(len(real), generator=generator)",
        "delegates gradient_penalty to gencourse.gan through importlib", (GP,)),
    "borrow_check_adapter": Mutation(
        "training", "    k = len(reals)\n",
        "    from gencourse.grading.assignments.a6_gans.checks import train_step as reference\n"
        "    return reference(generator, discriminator, reals, noises, opt_g, opt_d)\n    k = len(reals)\n",
        "delegates train_step to the adapter the hidden check compares with", (STEP, TRAINING)),
})
#: the mistakes tests/test_grading.py runs without nbgrader
REALISTIC = tuple(n for n in MUTATIONS if not n.startswith("borrow_"))
#: of those, the ones that pass every visible test: only a hidden check can catch them
HIDDEN_ONLY = ("d_loss_log_sigmoid", "d_star_from_densities", "js_zero_log_zero", "fakes_not_detached")
BORROW = ("borrow_losses", "borrow_penalty", "borrow_check_adapter")

E2E = {
    "complete": ("complete", (), ()),
    "untouched": ("untouched", (), "all"),
    "alternative": ("alternative", (), ()),
    "bugs_a": ("mutation", ("labels_swapped", "js_without_halves", "penalty_on_real"), (DLOSS, STEP, TRAINING, JS, GP)),
    "bugs_b": ("mutation", ("saturating_where_nonsaturating", "d_star_inverted", "penalty_norm_over_batch"),
               (GLOSS, STEP, DSTAR, JS, GP)),
    "bugs_c": ("mutation", ("nonsaturating_sign", "js_mixture_sum", "penalty_one_weight", "generator_step_updates_d"),
               (GLOSS, STEP, TRAINING, JS, GP)),
    "bugs_d": ("mutation", ("fakes_not_detached", "penalty_no_create_graph"), (STEP, GP)),
    "bugs_e": ("mutation", ("no_zero_grad_d",), (STEP, TRAINING)),
    # mistakes only the hidden checks catch
    "bugs_hidden": ("mutation", ("d_loss_log_sigmoid", "d_star_from_densities", "js_zero_log_zero",
                                 "one_batch_for_k_steps"), (DLOSS, DSTAR, JS, STEP)),
    "x_borrow_reference": ("mutation", BORROW, sum((MUTATIONS[m].lost for m in BORROW), ())),
}
