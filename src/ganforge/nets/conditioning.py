"""Class conditioning by label concatenation (Mirza & Osindero, 2014), shared by the MLP and DCGAN nets."""

from __future__ import annotations

import torch
from torch import nn


def label_code(y: torch.Tensor | None, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """One-hot codes ``(N, num_classes)`` of the labels ``y``, in ``like``'s dtype and device.

    A conditional net cannot guess a label, so a missing ``y`` is an error rather than a silent default.
    """
    if y is None:
        raise ValueError(f"this net is conditional (num_classes={num_classes}): call it with labels y")
    return nn.functional.one_hot(y.long(), num_classes).to(like)


def label_maps(y: torch.Tensor | None, num_classes: int, x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) with ``num_classes`` constant one-hot channels appended (N, C + num_classes, H, W)."""
    maps = label_code(y, num_classes, x)[:, :, None, None].expand(-1, -1, *x.shape[2:])
    return torch.cat([x, maps], dim=1)
