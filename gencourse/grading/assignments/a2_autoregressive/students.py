"""Simulated students of a2_autoregressive: realistic mistakes, and the classes graded by the demo and the tests.

* ``MUTATIONS``: each replaces one snippet of one solution cell of a complete submission; ``lost``
  names the test cells that must lose their points because of it.
* ``alternative.py`` (beside this file): a correct solution written differently, which must keep
  full marks.
* ``E2E``: the class graded end to end by the tests: student -> (kind, mutations, test cells that
  must lose their points, or ``"all"``).
"""
from ...simulate import Mutation, Student  # noqa: F401

MUTATIONS = {
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
        "gated activation with the filter and gate halves swapped (the block, the PixelCNN and the stacks use it)",
        ("test_gated_activation", "test_gated_block", "test_pixelcnn", "test_gated_stack")),
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
    "nade_cumsum_includes_self": Mutation(
        "nade", "a = c + torch.cumsum(contrib, dim=1) - contrib", "a = c + torch.cumsum(contrib, dim=1)",
        "NADE pre-activations from an inclusive cumsum: x_d leaks into its own conditional (the trained NADE, which "
        "uses it, learns to copy its input, and its log_prob is no likelihood)", ("test_nade", "test_nade_training")),
    "nade_loss_sign": Mutation(
        "nade_model", "return -self.log_prob(x).mean()", "return self.log_prob(x).mean()",
        "NADE loss with the wrong sign: training maximises the negative log-likelihood", ("test_nade_training",)),
    "nade_never_trained": Mutation(
        "nade_model", "    fit(model, x_train, epochs=20, batch_size=100, lr=1e-2, seed=seed, progress=False)\n", "",
        "train_nade builds the NADE but never calls fit: the untrained model misses the target",
        ("test_nade_training",)),
    "stack_vertical_looks_down": Mutation(
        "gated_stack", "v_feat = self.v_conv(F.pad(v, (c, c, c, 0)))", "v_feat = self.v_conv(F.pad(v, (c, c, 0, c)))",
        "vertical stack padded at the bottom instead of the top: it reads rows i..i+c, below the pixel (the future "
        "leaks into the horizontal stack)", ("test_gated_stack",)),
    "stack_vertical_left_only": Mutation(
        "gated_stack", "v_feat = self.v_conv(F.pad(v, (c, c, c, 0)))",
        "v_feat = self.v_conv(F.pad(v, (2 * c, 0, c, 0)))",
        "vertical stack padded on the left only, like the horizontal one: it reads columns j-2c..j, so the pixels "
        "above and to the right are never reached (a blind spot)", ("test_gated_stack",)),
    "stack_no_vertical_link": Mutation(
        "gated_stack", "h_feat = self.h_conv(F.pad(h, (c, 0, 0, 0))) + self.v_to_h(v_feat)",
        "h_feat = self.h_conv(F.pad(h, (c, 0, 0, 0)))",
        "horizontal stack without the vertical features: each pixel only sees its own row", ("test_gated_stack",)),
    "sampler_argmax": Mutation(
        "sample", "x[:, 0, i, j] = torch.multinomial(probs, 1, generator=generator)[:, 0].float()",
        "x[:, 0, i, j] = probs.argmax(-1).float()  # the most likely level",
        "sampler that takes the most likely level instead of drawing one (greedy decoding)", ("test_sample",)),
}

# Realistic mistakes that pass every visible test and that only the hidden checks catch: a wrong
# dtype, gradients cut off (.data, a stray detach()), edge cases (float32 overflow, per-example
# scales, binary data given as bool or int)
MUTATIONS.update({
    "made_masks_bool": Mutation(
        "made_masks", "masks.append(connect.float())", "masks.append(connect)",
        "MADE masks returned as bool tensors where float masks are specified", ("test_made_masks",)),
    "masked_conv_weight_data": Mutation(
        "masked_conv", "return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)",
        "return F.conv2d(x, self.weight.data * self.mask, self.bias, padding=self.padding)",
        "masks weight.data instead of the weight: right outputs, but no gradient reaches the weight (the block "
        "and the PixelCNN use it, so they never train either)", ("test_masked_conv", "test_gated_block", "test_pixelcnn")),
    "block_detached_residual": Mutation(
        "gated_block", "return h + self.proj(gated_activation(self.conv(h)))",
        "return h.detach() + self.proj(gated_activation(self.conv(h)))",
        "a stray detach() on the residual connection: no gradient flows through it (the PixelCNN uses the block)",
        ("test_gated_block", "test_pixelcnn")),
    "stack_no_residual": Mutation(
        "gated_stack", "return gated_activation(v_feat), h + self.h_out(gated_activation(h_feat))",
        "return gated_activation(v_feat), self.h_out(gated_activation(h_feat))",
        "horizontal stack without its residual connection: still causal, with the same receptive field, but not the "
        "specified layer", ("test_gated_stack",)),
    "stack_padding_for_3x3": Mutation(
        "gated_stack", "        c = self.c\n", "        c = 1  # the padding of a 3x3 kernel\n",
        "stack padding hard-coded for 3x3 kernels: with a 5x5 kernel the outputs lose a row and columns",
        ("test_gated_stack",)),
    "sampler_softmax_over_batch": Mutation(
        "sample", "probs = torch.softmax(logits, dim=-1)", "probs = torch.softmax(logits, dim=0)",
        "sampler that normalises the logits over the batch instead of over the levels (torch.multinomial renormalises "
        "each row, so the draws look plausible, but each image's probabilities depend on the other images)",
        ("test_sample",)),
    "naive_tanh": Mutation(
        "gated", "return torch.tanh(h_f) * torch.sigmoid(h_g)",
        "e = torch.exp(2 * h_f)\n    return (e - 1) / (e + 1) * torch.sigmoid(h_g)  # tanh written out",
        "tanh written out with exp: inf / inf = NaN for float32 pre-activations above 44", ("test_gated_activation",)),
    "log_softmax_global_max": Mutation(
        "log_likelihood",
        "log_cond = torch.log_softmax(logits, dim=-1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)",
        "shifted = logits - logits.max()  # subtract the max for stability\n"
        "        log_softmax = shifted - torch.log(torch.exp(shifted).sum(-1, keepdim=True))\n"
        "        log_cond = log_softmax.gather(-1, x.long().unsqueeze(-1)).squeeze(-1)",
        "log-softmax stabilised with the largest logit of the whole batch instead of each row's", ("test_log_likelihood",)),
    "bce_float_targets_only": Mutation(
        "log_likelihood", "log_cond = x * logits - F.softplus(logits)",
        'log_cond = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")',
        "Bernoulli log-likelihood with BCE, which fails for binary data given as bool or int64", ("test_log_likelihood",)),
    # borrowing the reference: the library, and the adapters of the hidden checks
    "borrow_library": Mutation(
        "chain_rule", "p = joint.permute(*order)  # axes in the order of the chain",
        "import gencourse.autoregressive as ar\n    return ar.chain_rule_factors(joint, order)",
        "delegates chain_rule_factors to the library", ("test_chain_rule",)),
    "borrow_check_adapter": Mutation(
        "made_degrees", "deg_in = torch.empty(n_dims, dtype=torch.long)",
        "from gencourse.grading.assignments.a2_autoregressive.checks import made_degrees_even\n"
        "    return made_degrees_even(n_dims, hidden_sizes, order)",
        "delegates made_degrees to the adapter the hidden check compares with", ("test_made_degrees",)),
    "borrow_reexport": Mutation(
        "bpd", "return nll_nats / (n_dims * math.log(2))",
        "from gencourse import pixelcnn  # re-exports metrics.bits_per_dim\n    return pixelcnn.bits_per_dim(nll_nats, n_dims)",
        "delegates bits_per_dim to the library's re-export", ("test_bits_per_dim",)),
    "borrow_sampler": Mutation(
        "sample", "    H, W = model.image_shape\n",
        "    from gencourse.grading.assignments.a2_autoregressive import checks\n"
        "    return checks.raster_sample(checks.LogitsOnly(model), n, generator)\n    H, W = model.image_shape\n",
        "delegates sample to the reference sampler of the hidden check", ("test_sample",)),
})
#: the mistakes tests/test_grading.py runs without nbgrader
REALISTIC = tuple(n for n in MUTATIONS if not n.startswith("borrow_"))
#: of those, the ones that pass every visible test: only a hidden check can catch them
# (naive_tanh is not among them: the visible test's unseeded draws near 0 expose its cancellation error
# in some runs and not in others, while it always loses the cell)
HIDDEN_ONLY = ("made_masks_bool", "masked_conv_weight_data", "block_detached_residual",
               "log_softmax_global_max", "bce_float_targets_only", "stack_no_residual",
               "stack_padding_for_3x3", "sampler_softmax_over_batch")
BORROW = ("borrow_library", "borrow_check_adapter", "borrow_reexport", "borrow_sampler")

E2E = {
    "complete": ("complete", (), ()),
    "untouched": ("untouched", (), "all"),
    "alternative": ("alternative", (), ()),
    "bugs_a": ("mutation", ("chain_rule_no_permute", "log_likelihood_prob_space", "made_degrees_from_zero",
                            "mask_b_first_layer", "bpd_in_nats", "sampler_reads_future", "nade_cumsum_includes_self",
                            "stack_vertical_left_only"),
               ("test_chain_rule", "test_log_likelihood", "test_made_degrees", "test_pixelcnn", "test_bits_per_dim",
                "test_sample", "test_nade", "test_nade_training", "test_gated_stack")),
    "bugs_b": ("mutation", ("made_output_ge", "causal_mask_full_row", "gated_halves_swapped", "sampler_stale_row",
                            "nade_loss_sign", "stack_vertical_looks_down"),
               ("test_made_masks", "test_causal_mask", "test_masked_conv", "test_gated_activation", "test_gated_block",
                "test_pixelcnn", "test_sample", "test_nade_training", "test_gated_stack")),
    # mistakes only the hidden checks catch: a dtype, weight.data, float32 overflow, a batch-wide max, a missing
    # residual connection
    "bugs_c": ("mutation", ("made_masks_bool", "masked_conv_weight_data", "naive_tanh", "log_softmax_global_max",
                            "stack_no_residual"),
               ("test_made_masks", "test_masked_conv", "test_gated_block", "test_pixelcnn", "test_gated_activation",
                "test_log_likelihood", "test_gated_stack")),
    "bugs_d": ("mutation", ("sampler_softmax_over_batch", "nade_never_trained", "stack_no_vertical_link"),
               ("test_sample", "test_nade_training", "test_gated_stack")),
    # the reference borrowed through the library and through the hidden checks' own adapters
    "x_borrow_reference": ("mutation", BORROW, sum((MUTATIONS[m].lost for m in BORROW), ())),
}
