r"""Hidden checks of assignment 7 (ALI/BiGAN and sample-based scores).

* **The joint discriminator's loss** is compared with :func:`joint_discriminator_loss` below
  (:func:`gencourse.gan.discriminator_loss` on the logits of :func:`gencourse.ali.joint` pairs): the
  same discriminator (an MLP filled with :func:`~gencourse.grading.spec.fill_parameters`, or a linear
  one with large weights whose logits reach +-200), the value and the gradients with respect to the
  four inputs and the discriminator's parameters. Pairs mixed across the joints, z before x, or
  ``log(sigmoid)`` at saturated logits all differ.
* **The training step** is compared with :func:`train_step` below (:meth:`gencourse.ali.ALI.train_step`,
  a deterministic encoder, on the given noise): the same small encoder, decoder and discriminator,
  the same optimizers, two steps, the parameters starting with stale gradients. The losses, the three
  networks' parameters after the two steps, and how many times a gradient reached the encoder's and
  the decoder's parameters in each step (once each: the discriminator step must use detached codes
  and decodings) must match.
* **The inception score** and **the Fréchet distance** keep the signatures of
  :mod:`gencourse.metrics` and are compared with it directly, on edge cases: exact zeros and one
  sample (IS); one feature, two rows, more features than rows (singular covariances, where a general
  matrix square root is least accurate), identical sets and float32 features (FD).

The cases and call adapters run inside the student's kernel while grading, where the references are
hidden: they never use them.
"""
import torch
from torch import nn

from ...spec import Case, Check, CheckFailed, fill_parameters

from ....ali import ALI, joint
from ....gan import discriminator_loss

F64 = torch.float64

__all__ = ["CHECKS", "joint_discriminator_loss", "train_step"]


# --------------------------------------------------------------------------------------------
# Adapters: the assignment's signatures on top of gencourse.ali
# --------------------------------------------------------------------------------------------
def joint_discriminator_loss(discriminator, x: torch.Tensor, z_hat: torch.Tensor, x_tilde: torch.Tensor,
                             z: torch.Tensor) -> torch.Tensor:
    """The binary cross-entropy of a joint discriminator: encoder pairs ``[x, z_hat]`` labelled 1,
    decoder pairs ``[x_tilde, z]`` labelled 0."""
    return discriminator_loss(discriminator(joint(x, z_hat)), discriminator(joint(x_tilde, z)))


def train_step(encoder: nn.Module, decoder: nn.Module, discriminator: nn.Module, x, z_d, z_g, opt_d, opt_g) -> tuple:
    """One discriminator step and one encoder-decoder step of ALI with a deterministic encoder
    (:meth:`gencourse.ali.ALI.train_step` on the noise batches ``z_d`` and ``z_g``)."""
    model = ALI(encoder, decoder, discriminator, z_d.shape[1], stochastic=False)
    return model.train_step([x], opt_d, opt_g, noises=[z_d, z_g])


def _randn(gen, *shape, dtype=F64, scale=1.0, shift=0.0):
    return (torch.randn(*shape, generator=gen, dtype=F64) * scale + shift).to(dtype)


# --------------------------------------------------------------------------------------------
# The joint discriminator's loss
# --------------------------------------------------------------------------------------------
def _mlp(d_in: int, hidden: int, d_out: int, flatten: bool = False) -> nn.Sequential:
    layers = [nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, d_out)]
    return nn.Sequential(*layers, nn.Flatten(0)) if flatten else nn.Sequential(*layers)


def _loss_cases(gen):
    def case(n, m, d, z, label, dtype=F64, disc="mlp", seed=1, scale=1.0):
        return Case((_randn(gen, n, d, dtype=dtype, scale=scale), _randn(gen, n, z, dtype=dtype, scale=scale),
                     _randn(gen, m, d, dtype=dtype, scale=scale, shift=0.5), _randn(gen, m, z, dtype=dtype, scale=scale)),
                    dict(disc=disc, seed=seed), label=label)
    return [case(7, 5, 2, 1, "7 encoder pairs, 5 decoder pairs, D = 2, Z = 1"),
            case(6, 6, 3, 4, "D = 3, Z = 4: the discriminator reads [x, z] in that order", seed=2),
            case(1, 1, 2, 2, "one pair of each", seed=3),
            case(8, 4, 2, 3, "float32", dtype=torch.float32, seed=4),
            case(5, 3, 2, 2, "a linear discriminator with large weights: logits of about +-200 (use softplus)",
                 dtype=torch.float32, disc="steep", seed=5, scale=1.0)]


def _call_loss(impl, case):
    x, z_hat, x_tilde, z = case.args
    d_in = x.shape[1] + z.shape[1]
    if case.kwargs["disc"] == "mlp":
        disc = fill_parameters(_mlp(d_in, 5, 1, flatten=True), seed=case.kwargs["seed"], scale=0.6)
    else:  # logit = 200 * (sign pattern) . [x, z] / |[x, z]|-ish: saturated on most pairs
        disc = fill_parameters(nn.Sequential(nn.Linear(d_in, 1), nn.Flatten(0)), seed=case.kwargs["seed"], scale=80.0)
    disc = disc.to(device=x.device, dtype=x.dtype)
    value = impl(disc, x, z_hat, x_tilde, z)
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise CheckFailed(f"it returned {type(value).__name__}; expected a 0-d tensor")
    return value


# --------------------------------------------------------------------------------------------
# The training step: the same networks, optimizers, batches and noise, stale gradients first
# --------------------------------------------------------------------------------------------
def _step_cases(gen):
    out = []
    for label, (n, d, z, dtype), kw in (
            ("SGD, D = 2, Z = 1, two steps, float64", (8, 2, 1, F64), dict(optimizer="sgd", lr=0.1, seed=1)),
            ("SGD, D = 3, Z = 2, batches of 5", (5, 3, 2, F64), dict(optimizer="sgd", lr=0.2, seed=2)),
            ("Adam, D = 2, Z = 3", (10, 2, 3, F64), dict(optimizer="adam", lr=0.01, seed=3)),
            ("Adam, float32", (8, 2, 2, torch.float32), dict(optimizer="adam", lr=0.01, seed=4))):
        batches = [(_randn(gen, n, d, dtype=dtype, shift=0.5), _randn(gen, n, z, dtype=dtype), _randn(gen, n, z, dtype=dtype))
                   for _ in range(2)]
        out.append(Case((batches,), dict(hidden=6, **kw), label=label))
    return out


def _call_step(impl, case):
    batches, = case.args
    kw = case.kwargs
    x0, z0, _ = batches[0]
    dtype, device, d, z = x0.dtype, x0.device, x0.shape[1], z0.shape[1]
    enc = fill_parameters(_mlp(d, kw["hidden"], z), seed=kw["seed"], scale=0.5).to(device=device, dtype=dtype)
    dec = fill_parameters(_mlp(z, kw["hidden"], d), seed=kw["seed"] + 50, scale=0.5).to(device=device, dtype=dtype)
    dis = fill_parameters(_mlp(d + z, kw["hidden"], 1, flatten=True), seed=kw["seed"] + 100,
                          scale=0.5).to(device=device, dtype=dtype)
    make = (lambda ps: torch.optim.SGD(ps, lr=kw["lr"])) if kw["optimizer"] == "sgd" else \
        (lambda ps: torch.optim.Adam(ps, lr=kw["lr"], betas=(0.5, 0.999)))
    opt_d, opt_g = make(dis.parameters()), make([*enc.parameters(), *dec.parameters()])
    for p in [*enc.parameters(), *dec.parameters(), *dis.parameters()]:  # left over from an earlier backward pass
        p.grad = torch.full_like(p, 0.25)
    reached = {"encoder": [], "decoder": []}
    hooks = [p.register_hook(lambda grad, part=part: reached[part].append(1))
             for part, net in (("encoder", enc), ("decoder", dec)) for p in net.parameters()]
    sizes = {"encoder": len(list(enc.parameters())), "decoder": len(list(dec.parameters()))}
    losses, reaches = [], []
    try:
        for x, z_d, z_g in batches:
            for r in reached.values():
                r.clear()
            out = impl(enc, dec, dis, x, z_d, z_g, opt_d, opt_g)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise CheckFailed(f"it returned {type(out).__name__}; expected a pair (d_loss, g_loss)")
            losses.append([float(v) for v in out])
            reaches.append([len(reached[p]) // sizes[p] for p in ("encoder", "decoder")])
    finally:
        for h in hooks:
            h.remove()
    if reaches[0] != [1, 1]:
        raise CheckFailed(f"in one step a gradient reached the encoder's parameters {reaches[0][0]} times and the "
                          f"decoder's {reaches[0][1]} times; once each is right (the encoder-decoder step): the "
                          "discriminator step must use detached codes E(x) and decodings G(z)")
    return (losses, [p.detach().clone() for p in enc.parameters()], [p.detach().clone() for p in dec.parameters()],
            [p.detach().clone() for p in dis.parameters()], reaches)


# --------------------------------------------------------------------------------------------
# The inception score and the Fréchet distance
# --------------------------------------------------------------------------------------------
def _softmax(gen, n, c, scale=2.0, dtype=F64):
    return torch.softmax(_randn(gen, n, c, scale=scale), dim=1).to(dtype)


def _is_cases(gen):
    one_hot = torch.zeros(12, 4, dtype=F64)
    one_hot[torch.arange(12), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 0, 1, 2])] = 1.0
    mixed = _softmax(gen, 9, 5)
    mixed[::3, 1:] = 0.0
    mixed[::3, 0] = 1.0
    return [Case((_softmax(gen, 40, 10),), label="40 samples, 10 classes"),
            Case((_softmax(gen, 25, 3, scale=4.0),), label="3 classes, confident rows"),
            Case((one_hot,), label="one-hot rows, uneven classes (exact zeros: 0 log 0 = 0)"),
            Case((mixed,), label="some rows one-hot, others soft"),
            Case((_softmax(gen, 1, 6),), label="one sample: the marginal is that sample, IS = 1"),
            Case((_softmax(gen, 30, 10, dtype=torch.float32),), label="float32 probabilities")]


def _fd_cases(gen):
    a = _randn(gen, 60, 4)
    mix = torch.tensor([[1.0, 0.3, 0.0, 0.2], [0.0, 0.8, 0.4, 0.0], [0.1, 0.0, 1.3, 0.0], [0.0, 0.2, 0.0, 0.6]], dtype=F64)
    return [Case((a, _randn(gen, 45, 4) @ mix + 0.4), label="60 and 45 rows of 4 features"),
            Case((a, a.clone()), label="identical sets: 0 (round-off clipped, never negative)"),
            Case((_randn(gen, 30, 1), _randn(gen, 20, 1, scale=2.0, shift=1.0)), label="one feature"),
            Case((_randn(gen, 2, 3), _randn(gen, 2, 3, shift=0.5)), label="two rows each (rank-1 covariances)"),
            Case((_randn(gen, 6, 10), _randn(gen, 8, 10, scale=1.5)),
                 label="10 features, 6 and 8 rows: singular covariances"),
            Case((_randn(gen, 50, 5, dtype=torch.float32), _randn(gen, 40, 5, dtype=torch.float32, shift=0.2)),
                 label="float32 features (compute in float64)")]


CHECKS = [
    Check("a7.joint_discriminator_loss", "grading.assignments.a7_ali.checks:joint_discriminator_loss", _loss_cases,
          call=_call_loss, what="joint_discriminator_loss", rtol=1e-6, atol=1e-7, grad=(0, 1, 2, 3),
          hides=("gan:discriminator_loss", "ali:joint")),
    Check("a7.train_step", "grading.assignments.a7_ali.checks:train_step", _step_cases, call=_call_step,
          what="train_step", rtol=1e-5, atol=1e-6, grad=(),
          hides=("gan:GAN.train_step", "ali:ALI.discriminator_inputs", "ali:ALI.players_loss"),
          outputs=("loss values", "encoder's parameters", "decoder's parameters", "discriminator's parameters",
                   "gradient counts")),
    Check("a7.inception_score", "metrics:inception_score", _is_cases, what="inception_score", rtol=1e-6, atol=1e-9,
          grad=()),
    Check("a7.frechet_distance", "metrics:frechet_distance", _fd_cases, what="frechet_distance", rtol=1e-6,
          atol=1e-7, grad=()),
]
