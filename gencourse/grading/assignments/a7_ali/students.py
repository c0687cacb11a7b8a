"""Simulated students of a7_ali: realistic mistakes, and the class graded by the tests.

* ``MUTATIONS``: each replaces one snippet of one solution cell of a complete submission; ``lost``
  names the test cells that must lose their points because of it. The training step uses the
  student's joint loss, and the identity toy the student's step, so a mistake in the loss also
  costs the step, and one that stops ALI from inverting also costs the toy.
* ``alternative.py`` (beside this file): a correct solution written differently, which must keep
  full marks.
* ``E2E``: the class graded end to end by the tests: student -> (kind, mutations, test cells that
  must lose their points, or ``"all"``).
"""
from ...simulate import Mutation, Student  # noqa: F401

JL, STEP, TOY = "test_joint_loss", "test_train_step", "test_identity_toy"
IS, FD = "test_inception_score", "test_frechet_distance"

ENC_PAIR = "encoder_logits = discriminator(torch.cat([x, z_hat], dim=1))"
DEC_PAIR = "decoder_logits = discriminator(torch.cat([x_tilde, z], dim=1))"
JL_RETURN = "return F.softplus(-encoder_logits).mean() + F.softplus(decoder_logits).mean()"
G_LOSS = "g_loss = joint_discriminator_loss(discriminator, x_tilde, z_g, x, z_hat)  # the roles swapped"
TRACE_ROOT = "trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()"

MUTATIONS = {
    # Part 1: the joint loss
    "pairs_mixed": Mutation(
        "joint_loss", f"{ENC_PAIR}\n    {DEC_PAIR}",
        "encoder_logits = discriminator(torch.cat([x, z], dim=1))\n"
        "    decoder_logits = discriminator(torch.cat([x_tilde, z_hat], dim=1))",
        "pairs mixed across the joints: [x, z] and [x_tilde, z_hat]", (JL, STEP, TOY)),
    "z_before_x": Mutation(
        "joint_loss", f"{ENC_PAIR}\n    {DEC_PAIR}",
        "encoder_logits = discriminator(torch.cat([z_hat, x], dim=1))\n"
        "    decoder_logits = discriminator(torch.cat([z, x_tilde], dim=1))",
        "pairs concatenated as [z, x] instead of [x, z]", (JL, STEP)),
    "joint_labels_swapped": Mutation(
        "joint_loss", JL_RETURN, "return F.softplus(encoder_logits).mean() + F.softplus(-decoder_logits).mean()",
        "joint loss with the labels swapped (encoder pairs 0, decoder pairs 1)", (JL, STEP)),
    # Part 2: the step
    "labels_not_swapped": Mutation(
        "step", G_LOSS, "g_loss = joint_discriminator_loss(discriminator, x, z_hat, x_tilde, z_g)",
        "encoder-decoder step minimising the discriminator's own loss (labels not swapped)", (STEP, TOY)),
    "saturating_players": Mutation(
        "step", G_LOSS, "g_loss = -joint_discriminator_loss(discriminator, x, z_hat, x_tilde, z_g)",
        "the minimax (saturating) form where the non-saturating one is asked", (STEP,)),
    "encoder_detached_in_g_step": Mutation(
        "step", "z_hat, x_tilde = encoder(x), decoder(z_g)", "z_hat, x_tilde = encoder(x).detach(), decoder(z_g)",
        "encoder's codes detached in the encoder-decoder step too: the encoder never learns", (STEP, TOY)),
    "same_noise_both_steps": Mutation(
        "step", f"z_hat, x_tilde = encoder(x), decoder(z_g)\n    opt_g.zero_grad()\n    {G_LOSS}",
        "z_hat, x_tilde = encoder(x), decoder(z_d)\n    opt_g.zero_grad()\n"
        "    g_loss = joint_discriminator_loss(discriminator, x_tilde, z_d, x, z_hat)",
        "the discriminator's noise z_d reused in the encoder-decoder step", (STEP,)),
    "g_step_updates_d": Mutation(
        "step", "    g_loss.backward()\n    opt_g.step()\n", "    g_loss.backward()\n    opt_g.step()\n    opt_d.step()\n",
        "encoder-decoder step that also steps the discriminator's optimizer", (STEP,)),
    "no_zero_grad_d": Mutation(
        "step", "    opt_d.zero_grad()\n", "",
        "discriminator step that never resets the discriminator's gradients (training then fails)", (STEP, TOY)),
    # Part 3: the scores
    "marginal_per_sample": Mutation(
        "inception", "marginal = p.mean(dim=0, keepdim=True)", "marginal = p  # p(y) of each sample",
        "inception score with the marginal computed per sample (always 1)", (IS,)),
    "exp_inside_mean": Mutation(
        "inception", "return float(torch.exp(terms.sum(dim=1).mean()))", "return float(torch.exp(terms.sum(dim=1)).mean())",
        "inception score as the mean of exp(KL) instead of exp of the mean KL", (IS,)),
    "kl_reversed": Mutation(
        "inception", "terms = torch.where(p > 0, p * (torch.log(p) - torch.log(marginal)), torch.zeros_like(p))",
        "terms = marginal * (torch.log(marginal) - torch.log(p.clamp_min(1e-300)))",
        "inception score with KL(p(y) || p(y | x)) instead of KL(p(y | x) || p(y))", (IS,)),
    "no_trace_term": Mutation(
        "frechet", "value = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * trace_root",
        "value = (mu_a - mu_b).pow(2).sum()",
        "Fréchet distance without the trace term (the means only)", (FD,)),
    "sqrtm_complex": Mutation(
        "frechet", TRACE_ROOT,
        "trace_root = np.trace(scipy.linalg.sqrtm((cov_a @ cov_b).numpy()))  # no real part taken",
        "Fréchet distance with SciPy's sqrtm and its complex result kept", (FD,)),
    "biased_covariance": Mutation(
        "frechet", "cov_a, cov_b = ca.T @ ca / (len(a) - 1), cb.T @ cb / (len(b) - 1)",
        "cov_a, cov_b = ca.T @ ca / len(a), cb.T @ cb / len(b)",
        "Fréchet distance with biased covariances (divided by N)", (FD,)),
    "product_of_roots": Mutation(
        "frechet", TRACE_ROOT,
        "w_b, v_b = torch.linalg.eigh(cov_b)\n    root_b = (v_b * w_b.clamp_min(0).sqrt()) @ v_b.T\n"
        "    trace_root = torch.trace(root_a @ root_b)",
        "Fréchet distance with Tr(S_a^(1/2) S_b^(1/2)) for Tr((S_a S_b)^(1/2))", (FD,)),
}

# Realistic mistakes that pass every visible test and that only the hidden checks catch
MUTATIONS.update({
    "joint_log_sigmoid": Mutation(
        "joint_loss", JL_RETURN,
        "return -torch.log(torch.sigmoid(encoder_logits)).mean() - torch.log(1 - torch.sigmoid(decoder_logits)).mean()",
        "joint loss as log(sigmoid): infinite at saturated logits", (JL,)),
    "codes_not_detached": Mutation(
        "step", "z_hat, x_tilde = encoder(x).detach(), decoder(z_d).detach()",
        "z_hat, x_tilde = encoder(x), decoder(z_d).detach()",
        "discriminator step on codes E(x) not detached (back-propagates into the encoder)", (STEP,)),
    "eigvals_unclipped": Mutation(
        "frechet", TRACE_ROOT, "trace_root = torch.linalg.eigvals(cov_a @ cov_b).real.sqrt().sum()",
        "Fréchet distance from the eigenvalues of S_a S_b without clipping round-off (NaN for singular covariances)",
        (FD,)),
})

# borrowing the reference: the library's metrics, its pieces of the loss, the check's adapter
MUTATIONS.update({
    "borrow_metrics": Mutation(
        "frechet", "a, b = a.detach().double().cpu(), b.detach().double().cpu()",
        "from gencourse.metrics import frechet_distance as library\n    return library(a, b)",
        "delegates frechet_distance to gencourse.metrics", (FD,)),
    "borrow_joint": Mutation(
        "joint_loss", ENC_PAIR,
        "import importlib\n    gan, ali = importlib.import_module('gencourse.gan'), importlib.import_module('gencourse.ali')\n"
        "    return gan.discriminator_loss(discriminator(ali.joint(x, z_hat)), discriminator(ali.joint(x_tilde, z)))\n"
        f"    {ENC_PAIR}",
        "delegates the joint loss to gencourse.gan and gencourse.ali through importlib", (JL, STEP, TOY)),
    "borrow_check_adapter": Mutation(
        "step", "z_hat, x_tilde = encoder(x).detach(), decoder(z_d).detach()",
        "from gencourse.grading.assignments.a7_ali.checks import train_step as reference\n"
        "    return reference(encoder, decoder, discriminator, x, z_d, z_g, opt_d, opt_g)",
        "delegates train_step to the adapter the hidden check compares with", (STEP, TOY)),
})
#: the mistakes tests/test_grading.py runs without nbgrader
REALISTIC = tuple(n for n in MUTATIONS if not n.startswith("borrow_"))
#: of those, the ones that pass every visible test: only a hidden check can catch them
HIDDEN_ONLY = ("joint_log_sigmoid", "codes_not_detached", "eigvals_unclipped")
BORROW = ("borrow_metrics", "borrow_joint", "borrow_check_adapter")

E2E = {
    "complete": ("complete", (), ()),
    "untouched": ("untouched", (), "all"),
    "alternative": ("alternative", (), ()),
    "bugs_a": ("mutation", ("pairs_mixed", "marginal_per_sample", "no_trace_term"), (JL, STEP, TOY, IS, FD)),
    "bugs_b": ("mutation", ("labels_not_swapped", "kl_reversed", "sqrtm_complex"), (STEP, TOY, IS, FD)),
    "bugs_c": ("mutation", ("z_before_x", "exp_inside_mean", "biased_covariance"), (JL, STEP, IS, FD)),
    "bugs_d": ("mutation", ("saturating_players", "product_of_roots"), (STEP, FD)),
    "bugs_e": ("mutation", ("encoder_detached_in_g_step",), (STEP, TOY)),
    # mistakes only the hidden checks catch
    "bugs_hidden": ("mutation", ("joint_log_sigmoid", "codes_not_detached", "eigvals_unclipped"), (JL, STEP, FD)),
    "x_borrow_reference": ("mutation", BORROW, sum((MUTATIONS[m].lost for m in BORROW), ())),
}
