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
}

E2E = {
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
