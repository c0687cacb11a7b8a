"""Small plotting helpers shared by the lectures (matplotlib only; nothing is shown at import).

Used by: lectures 01_generative_models (2-D densities and scatter plots), 02_autoregressive,
03_pixelcnn and 04_vae (image grids); assignments a2_autoregressive and a3_vae (image grids).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch

__all__ = ["image_grid", "show_images", "density_grid", "show_density_2d", "scatter_2d"]


def image_grid(x: torch.Tensor, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """Tile images ``(N, 64)``, ``(N, 8, 8)`` or ``(N, 1, H, W)`` into one 2-D array."""
    x = torch.as_tensor(x).detach().float().cpu()
    if x.dim() == 2:
        side = int(round(x.shape[1] ** 0.5))
        x = x.reshape(-1, side, side)
    elif x.dim() == 4:
        x = x[:, 0]
    n, h, w = x.shape
    ncol = min(nrow, n)
    rows = (n + ncol - 1) // ncol
    out = np.full((rows * (h + pad) + pad, ncol * (w + pad) + pad), np.nan)
    for i in range(n):
        r, c = divmod(i, ncol)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = x[i]
    return out


def show_images(x: torch.Tensor, nrow: int = 8, title: Optional[str] = None, ax=None, vmax=None):
    """Show a batch of digits as one grey-scale grid (white on black)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    ax.imshow(image_grid(x, nrow), cmap="gray", vmin=0, vmax=vmax)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def density_grid(log_prob: Callable[[torch.Tensor], torch.Tensor], bounds: Sequence[float],
                 n: int = 150) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate ``exp(log_prob)`` on an ``n x n`` grid over ``bounds = (x0, x1, y0, y1)``."""
    x0, x1, y0, y1 = bounds
    xs, ys = torch.linspace(x0, x1, n), torch.linspace(y0, y1, n)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    pts = torch.stack([gx, gy], -1).reshape(-1, 2)
    with torch.no_grad():
        dens = torch.exp(log_prob(pts)).reshape(n, n)
    return gx.numpy(), gy.numpy(), dens.double().numpy()


def show_density_2d(log_prob: Callable, bounds: Sequence[float], ax=None, title: Optional[str] = None, n: int = 150):
    """A filled contour plot of a 2-D density."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    gx, gy, dens = density_grid(log_prob, bounds, n)
    ax.contourf(gx, gy, dens, levels=30, cmap="viridis")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return ax


def scatter_2d(x: torch.Tensor, ax=None, title: Optional[str] = None, s: float = 2, **kw):
    """A scatter plot of 2-D samples."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    x = torch.as_tensor(x).detach().cpu()
    ax.scatter(x[:, 0], x[:, 1], s=s, **kw)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return ax
