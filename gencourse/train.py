"""The one training loop of the course, plus seeding and device helpers.

Every model of the course exposes ``loss(x)`` (or ``loss(x, y)`` when conditional) returning a
scalar to minimise; :func:`fit` trains any of them with Adam on minibatches, shows a progress bar,
stops at an epoch or wall-clock budget, and keeps the weights that did best on validation data.
:func:`devices` lists the devices tests and hidden checks run on (the CPU, and CUDA when present).

Used by: every lecture (01_generative_models, 02_autoregressive, 03_pixelcnn, 04_vae) and every
assignment (a1_maximum_likelihood, a2_autoregressive, a3_vae); the grading side imports ``devices``.
"""
from __future__ import annotations

import copy
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np
import torch

__all__ = ["seed_everything", "default_device", "devices", "minibatches", "History", "fit", "evaluate", "best_time",
           "ema_update", "swap_parameters"]


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) random number generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def default_device() -> torch.device:
    """CUDA when available, else the CPU (``GENCOURSE_DEVICE`` overrides)."""
    name = os.environ.get("GENCOURSE_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def devices() -> list[torch.device]:
    """Every device the course tests on: the CPU always, CUDA when present."""
    out = [torch.device("cpu")]
    if torch.cuda.is_available():
        out.append(torch.device("cuda"))
    return out


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches covering ``range(n)`` once."""
    perm = torch.randperm(n, generator=generator)
    yield from perm.split(batch_size)


@torch.no_grad()
def ema_update(average: list[torch.Tensor], params, decay: float) -> None:
    r"""One step of Polyak averaging: :math:`\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta`, in place."""
    for a, p in zip(average, params):
        a.lerp_(p.detach(), 1 - decay)


@torch.no_grad()
def swap_parameters(average: list[torch.Tensor], params) -> None:
    """Exchange the values of ``params`` and ``average`` in place (twice restores both)."""
    for a, p in zip(average, params):
        tmp = p.detach().clone()
        p.copy_(a)
        a.copy_(tmp)


@dataclass
class History:
    """What :func:`fit` measured: mean loss per epoch, validation loss per epoch, wall time."""

    train: list = field(default_factory=list)
    val: list = field(default_factory=list)
    seconds: float = 0.0
    best_epoch: int = -1

    @property
    def epochs(self) -> int:
        return len(self.train)


@torch.no_grad()
def evaluate(loss_fn: Callable, x: torch.Tensor, y: Optional[torch.Tensor] = None,
             batch_size: int = 500) -> float:
    """Mean of ``loss_fn`` over ``x`` in batches, weighted by batch size."""
    total, n = 0.0, len(x)
    for i in range(0, n, batch_size):
        xb = x[i:i + batch_size]
        args = (xb,) if y is None else (xb, y[i:i + batch_size])
        total += float(loss_fn(*args)) * len(xb)
    return total / n


def fit(model: torch.nn.Module, x: torch.Tensor, *, y: Optional[torch.Tensor] = None,
        x_val: Optional[torch.Tensor] = None, y_val: Optional[torch.Tensor] = None,
        loss_fn: Optional[Callable] = None, epochs: int = 100, max_seconds: float = math.inf,
        batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
        grad_clip: Optional[float] = None, seed: int = 0, progress: bool = True,
        keep_best: bool = True, desc: str = "training", ema: Optional[float] = None) -> History:
    r"""Train ``model`` by minibatch Adam on ``loss_fn`` (default ``model.loss``).

    Args:
        model: an ``nn.Module``; it is trained in place on the device of its parameters.
        x, y: training inputs ``(N, ...)`` and optional conditioning labels ``(N,)``.
        x_val, y_val: optional validation data; with ``keep_best`` the weights of the epoch with
            the lowest validation loss are restored at the end.
        epochs, max_seconds: stop at whichever budget runs out first (checked after each batch).
        seed: seeds the shuffling so that a run is reproducible.
        ema: when set, also keep an exponential moving average of the parameters (Polyak
            averaging), updated after step :math:`t = 1, 2, \dots` with decay
            :math:`\min(\text{ema}, (1 + t) / (10 + t))` so that the first steps do not keep the
            initial weights; validation, the kept best weights and the returned model are the
            average's. Buffers (e.g. batch-norm statistics) are not averaged: they are the last
            step's. ``None``: the iterates themselves.

    Returns:
        A :class:`History` of per-epoch mean losses and the wall time.
    """
    loss_fn = loss_fn or model.loss
    device = next(model.parameters()).device
    x = x.to(device)
    y = None if y is None else y.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    hist, best, best_state = History(), math.inf, None
    if ema is not None and (isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0.0 <= ema < 1.0):
        raise ValueError(f"ema must be a number in [0, 1) (the decay of the average), not {ema!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    average = [p.detach().clone() for p in params] if ema is not None else None
    step = 0
    start = time.perf_counter()
    bar = _progress(range(epochs), desc, progress)
    for epoch in bar:
        model.train()
        total = 0.0
        for idx in minibatches(len(x), batch_size, gen):
            idx = idx.to(device)
            args = (x[idx],) if y is None else (x[idx], y[idx])
            loss = loss_fn(*args)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            step += 1
            if average is not None:
                ema_update(average, params, min(ema, (1 + step) / (10 + step)))
            total += float(loss.detach()) * len(idx)
            if time.perf_counter() - start > max_seconds:
                break
        hist.train.append(total / len(x))
        if x_val is not None:
            model.eval()
            if average is not None:
                swap_parameters(average, params)  # validate (and keep) the average
            try:
                v = evaluate(loss_fn, x_val.to(device), None if y_val is None else y_val.to(device))
                hist.val.append(v)
                if v < best:
                    best, hist.best_epoch = v, epoch
                    if keep_best:
                        best_state = copy.deepcopy(model.state_dict())
            finally:
                if average is not None:
                    swap_parameters(average, params)  # back to the iterate, even if validation failed
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{hist.train[-1]:.3f}", **({"val": f"{hist.val[-1]:.3f}"} if hist.val else {}))
        if time.perf_counter() - start > max_seconds:
            break
    if average is not None:
        swap_parameters(average, params)  # the model ends as the average (unless best_state replaces it)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    hist.seconds = time.perf_counter() - start
    return hist


def best_time(fn: Callable[[], object], repeat: int = 3) -> float:
    """The shortest wall time in seconds of ``repeat`` calls of ``fn`` (the least disturbed by other
    work on a shared machine). For printing and plotting only: never assert a timing."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _progress(it, desc: str, enabled: bool):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, leave=False)
