"""Figures rendered to image tensors (for loggers) and PNG files."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_png


def scatter_png(samples: torch.Tensor, centres: torch.Tensor | None, path: Path, title: str = "") -> torch.Tensor:
    """Scatter 2-D ``samples`` over the mixture ``centres``; write a PNG and return it as (3, H, W) in [0, 1]."""
    png = scatter_plot(samples, centres, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return decode_png(torch.frombuffer(bytearray(png), dtype=torch.uint8), mode=ImageReadMode.RGB).float() / 255.0


def scatter_plot(samples: torch.Tensor, centres: torch.Tensor | None = None, title: str = "") -> bytes:
    """2-D ``samples`` scattered over the mixture ``centres`` (when given), as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    points = samples.detach().float().cpu()
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color="tab:blue", label="generated")
    if centres is not None:
        ax.scatter(centres[:, 0], centres[:, 1], s=30, marker="x", color="tab:red", label="mode centres")
        pad = 0.5 * float(centres.abs().max())
        lim = float(centres.abs().max()) + pad
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
