"""Figures: saving any matplotlib figure (PNG, atomically), and pictures of samples — a scatter for
2-D data, a grid for images (matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .files import write_result  # noqa: E402


def save_figure(fig, path: Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG via :func:`write_result` and close it."""
    try:
        return write_result(path, lambda p: fig.savefig(p, dpi=dpi, format="png"))
    finally:
        plt.close(fig)


def image_grid(x: torch.Tensor, nrow: int | None = None) -> np.ndarray:
    """(N, C, H, W) in [−1, 1] → an (rows·H, nrow·W, C) uint8 mosaic with 1-pixel gaps."""
    x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / nrow))
    out = np.zeros((rows * (h + 1) + 1, nrow * (w + 1) + 1, c), np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        out[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w] = (
            x[i].permute(1, 2, 0).numpy())
    return out


def save_samples_png(x: torch.Tensor, path: str | Path, title: str = "",
                     reference: torch.Tensor | None = None) -> Path:
    """Save samples as a picture: 2-D → scatter (over ``reference`` in grey), images → a grid."""
    path = Path(path)
    if x.ndim == 2 and x.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        if reference is not None:
            ax.scatter(*reference[:, :2].T.numpy(), s=2, c="0.75", label="data")
        ax.scatter(*x.T.numpy(), s=2, c="C0", label="samples")
        ax.set_aspect("equal")
        ax.legend(loc="upper right", markerscale=4)
    else:
        grid = image_grid(x[:100] if x.ndim == 4 else x[:100, None, None, :])
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", interpolation="nearest")
        ax.axis("off")
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)
