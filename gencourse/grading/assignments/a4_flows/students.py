"""Simulated students of a4_flows: realistic mistakes, and the classes graded by the demo and the tests.

* ``MUTATIONS``: each replaces one snippet of one solution cell of a complete submission; ``lost``
  names the test cells that must lose their points because of it. A mistake that breaks the model
  (a wrong log-determinant, a wrong inverse) also costs the training cell, whose visible asserts
  check the trained RealNVP's test NLL, its normalisation and its samples.
* ``alternative.py`` (beside this file): a correct solution written differently, which must keep
  full marks.
* ``E2E``: the class graded end to end by the tests: student -> (kind, mutations, test cells that
  must lose their points, or ``"all"``).
"""
from ...simulate import Mutation, Student  # noqa: F401

TRAINING = "test_training"

MUTATIONS = {
    # Part 1: the 1-D change of variables
    "affine_density_times_a": Mutation(
        "uniform_affine", "torch.full_like(y, -math.log(abs(a)))", "torch.full_like(y, math.log(abs(a)))",
        "1-D change of variables multiplying the density by |a| instead of dividing by it", ("test_uniform_affine",)),
    # Part 2: the log-density of a flow
    "no_base_density": Mutation(
        "flow_log_prob", "return log_pz + log_det", "return log_det",
        "flow log-density without the base density log N(f(x); 0, I)", ("test_flow_log_prob", TRAINING)),
    "flow_minus_log_det": Mutation(
        "flow_log_prob", "return log_pz + log_det", "return log_pz - log_det",
        "flow log-density subtracting the log-determinant (the sign of the sampling direction)",
        ("test_flow_log_prob", TRAINING)),
    "base_summed_over_batch": Mutation(
        "flow_log_prob", "log_pz = -0.5 * (z ** 2 + math.log(2 * math.pi)).sum(-1)",
        "log_pz = -0.5 * (z ** 2 + math.log(2 * math.pi)).sum()",
        "base log-density summed over the whole batch instead of per example", ("test_flow_log_prob", TRAINING)),
    # Part 3: the coupling layer, forward
    "coupling_log_det_sign": Mutation(
        "coupling", "log_det = (free * s).sum(-1)", "log_det = -(free * s).sum(-1)",
        "coupling log-determinant with the sign flipped", ("test_coupling_forward", TRAINING)),
    "scale_not_masked": Mutation(
        "coupling", "log_det = (free * s).sum(-1)", "log_det = s.sum(-1)",
        "coupling log-determinant summing the log-scales of the conditioning coordinates too (mask not applied)",
        ("test_coupling_forward", TRAINING)),
    "conditioner_sees_all": Mutation(
        "coupling", "s, t = self.scale_and_shift(x_cond)", "s, t = self.scale_and_shift(x)",
        "coupling whose networks see the whole x (the Jacobian is no longer triangular)",
        ("test_coupling_forward", TRAINING)),
    "log_det_not_summed": Mutation(
        "coupling", "log_det = (free * s).sum(-1)", "log_det = free * s",
        "coupling log-determinant not summed over the dimensions, (B, D) instead of (B,)",
        ("test_coupling_forward", TRAINING)),
    # Part 3: the coupling layer, inverse
    "inverse_wrong_half": Mutation(
        "coupling", "s, t = self.scale_and_shift(y_cond)", "s, t = self.scale_and_shift(free * y)",
        "coupling inverse computing s and t from the transformed half instead of the conditioning one",
        ("test_coupling_inverse", TRAINING)),
    "inverse_exp_plus": Mutation(
        "coupling", "x = y_cond + free * ((y - t) * torch.exp(-s))", "x = y_cond + free * ((y - t) * torch.exp(s))",
        "coupling inverse multiplying by exp(+s) instead of exp(-s)", ("test_coupling_inverse", TRAINING)),
    "inverse_log_det_sign": Mutation(
        "coupling", "return x, -(free * s).sum(-1)", "return x, (free * s).sum(-1)",
        "coupling inverse returning the forward's log-determinant (the sign not flipped)", ("test_coupling_inverse",)),
    # Part 4: chains
    "chain_batch_sum": Mutation(
        "chain", "log_det = log_det + ld  # log|det dz_k/dz_{k-1}|, per example",
        "log_det = log_det + ld.sum()  # log|det dz_k/dz_{k-1}|",
        "chain log-determinant summed over the batch instead of per example", ("test_chain", TRAINING)),
    "chain_inverse_wrong_order": Mutation(
        "chain", "for f in reversed(transforms):  # the last step is undone first", "for f in transforms:",
        "chain inverse undoing the first transform first instead of the last", ("test_chain", TRAINING)),
    # Part 5: the model
    "sample_forward": Mutation(
        "realnvp", "return self.inverse(z)[0]", "return self(z)[0]",
        "samples mapped through the forward (data -> noise) instead of the inverse", (TRAINING,)),
}

# Realistic mistakes that pass every visible test and that only the hidden checks catch: a negative
# slope, a dtype, a density computed outside log space, a determinant as the log of a product, an
# empty chain
MUTATIONS.update({
    "affine_no_abs": Mutation(
        "uniform_affine", "-math.log(abs(a))", "-math.log(a)",
        "1-D density 1/a without the absolute value (fails for a decreasing map, a < 0)", ("test_uniform_affine",)),
    "affine_default_dtype": Mutation(
        "uniform_affine",
        "torch.where(inside, torch.full_like(y, -math.log(abs(a))), torch.full_like(y, -math.inf))",
        "torch.where(inside, torch.tensor(-math.log(abs(a))), torch.tensor(-math.inf))",
        "1-D log-density built from new float32 tensors: float32 returned for float64 y", ("test_uniform_affine",)),
    "base_exp_underflow": Mutation(
        "flow_log_prob", "log_pz = -0.5 * (z ** 2 + math.log(2 * math.pi)).sum(-1)",
        "log_pz = torch.log(torch.exp(-0.5 * z ** 2) / math.sqrt(2 * math.pi)).sum(-1)",
        "base density computed with exp and then log: -inf once exp(-z^2/2) underflows", ("test_flow_log_prob",)),
    "log_of_product": Mutation(
        "coupling", "log_det = (free * s).sum(-1)", "log_det = torch.log(torch.exp(free * s).prod(-1))",
        "coupling log-determinant as the log of the product of the scales (overflows in float32)",
        ("test_coupling_forward",)),
    "chain_default_dtype": Mutation(
        "chain", "log_det = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)", "log_det = torch.zeros(x.shape[0])",
        "chain_forward starting its sum from float32 zeros on the CPU (wrong dtype for an empty float64 chain)",
        ("test_chain",)),
})

# borrowing the reference: the library's affine map, flow density, coupling and chain, and the hidden
# checks' own adapter; each is hidden while grading, and a model built from them cannot train either
MUTATIONS.update({
    "borrow_affine": Mutation(
        "uniform_affine", "x = (y - b) / a  # f^{-1}(y)",
        "from gencourse.flows import Affine\n    x = Affine(a, b).inverse(y[..., None])[0][..., 0]  # the library's map",
        "inverts the affine map with gencourse.flows.Affine", ("test_uniform_affine",)),
    "borrow_flow": Mutation(
        "flow_log_prob", "z, log_det = transform(x)",
        "from gencourse.flows import Flow\n    return Flow(transform, (x.shape[-1],)).log_prob(x)\n    z, log_det = transform(x)",
        "delegates flow_log_prob to gencourse.flows.Flow.log_prob", ("test_flow_log_prob", TRAINING)),
    "borrow_coupling": Mutation(
        "coupling", "        free = 1 - self.mask  # the transformed coordinates\n",
        "        from gencourse import flows\n"
        "        reference = flows.AffineCoupling(self.mask, self.net[0].out_features)\n"
        "        reference.load_state_dict(self.state_dict())\n"
        "        return reference(x)\n"
        "        free = 1 - self.mask  # the transformed coordinates\n",
        "runs the forward pass of gencourse.flows.AffineCoupling on its own weights", ("test_coupling_forward", TRAINING)),
    "borrow_compose": Mutation(
        "chain", '    """z = f_K(...f_1(x)) and sum_k log|det dz_k/dz_{k-1}|, (B,)."""\n',
        '    """z = f_K(...f_1(x)) and sum_k log|det dz_k/dz_{k-1}|, (B,)."""\n'
        "    from gencourse.flows import Compose\n    return Compose(*transforms)(x)\n",
        "delegates chain_forward to gencourse.flows.Compose", ("test_chain", TRAINING)),
    "borrow_check_adapter": Mutation(
        "chain", '    """x = f_1^{-1}(...f_K^{-1}(z)) and log|det dx/dz|, (B,)."""\n',
        '    """x = f_1^{-1}(...f_K^{-1}(z)) and log|det dx/dz|, (B,)."""\n'
        "    from gencourse.grading.assignments.a4_flows.checks import chain_inverse as reference\n"
        "    return reference(transforms, z)\n",
        "delegates chain_inverse to the adapter the hidden check compares with", ("test_chain", TRAINING)),
})
#: the mistakes tests/test_grading.py runs without nbgrader
REALISTIC = tuple(n for n in MUTATIONS if not n.startswith("borrow_"))
#: of those, the ones that pass every visible test: only a hidden check can catch them
HIDDEN_ONLY = ("affine_no_abs", "affine_default_dtype", "base_exp_underflow", "log_of_product", "chain_default_dtype")
BORROW = ("borrow_affine", "borrow_flow", "borrow_coupling", "borrow_compose", "borrow_check_adapter")

E2E = {
    "complete": ("complete", (), ()),
    "untouched": ("untouched", (), "all"),
    "alternative": ("alternative", (), ()),
    "bugs_a": ("mutation", ("affine_density_times_a", "no_base_density", "coupling_log_det_sign", "inverse_wrong_half",
                            "chain_inverse_wrong_order"),
               ("test_uniform_affine", "test_flow_log_prob", "test_coupling_forward", "test_coupling_inverse",
                "test_chain", TRAINING)),
    "bugs_b": ("mutation", ("base_summed_over_batch", "scale_not_masked", "inverse_exp_plus", "chain_batch_sum"),
               ("test_flow_log_prob", "test_coupling_forward", "test_coupling_inverse", "test_chain", TRAINING)),
    "bugs_c": ("mutation", ("flow_minus_log_det", "conditioner_sees_all", "log_det_not_summed", "sample_forward"),
               ("test_flow_log_prob", "test_coupling_forward", TRAINING)),
    # a wrong inverse log-determinant (sampling does not use it) and a dtype: the model still trains
    "bugs_d": ("mutation", ("inverse_log_det_sign", "affine_default_dtype"), ("test_coupling_inverse", "test_uniform_affine")),
    # mistakes only the hidden checks catch: a negative slope, |z| far in the tail, float32 overflow, an empty
    # chain; the model still trains, so the training cell keeps its points
    "bugs_hidden": ("mutation", ("affine_no_abs", "base_exp_underflow", "log_of_product", "chain_default_dtype"),
                    ("test_uniform_affine", "test_flow_log_prob", "test_coupling_forward", "test_chain")),
    # the library's affine map, flow density, coupling and chain, and a check's adapter, borrowed
    "x_borrow_reference": ("mutation", BORROW, sum((MUTATIONS[m].lost for m in BORROW), ())),
}
