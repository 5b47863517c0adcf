"""A few test images a checkpoint keeps, so that its encoder or translator can be tried on real inputs (the
explorer's picks) with nothing read but the checkpoint: no dataset, no path outside the run."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from ganforge.errors import ConfigError

#: The checkpoint's key for them.
KEY = "test_images"
#: How many a checkpoint keeps.
COUNT = 8


def spread(split: Dataset[Any], translator: bool, n: int = COUNT) -> dict[str, torch.Tensor]:
    """``n`` items spread evenly over ``split`` (splits are often sorted by class), uint8 (n, C, H, W):
    ``inputs``, the images a player reads (a translator's sources, item 1 of a ``(target, source)`` pair; else
    the images, item 0), and for a translator ``targets`` (the inputs of CycleGAN's other direction)."""
    index = torch.linspace(0, len(split) - 1, min(n, len(split))).long().tolist()  # type: ignore[arg-type]
    items = [split[i] for i in index]
    kept = {"inputs": torch.stack([item[1] if translator else item[0] for item in items])}
    if translator:
        kept["targets"] = torch.stack([item[0] for item in items])
    return kept


def kept_images(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The test images ``checkpoint`` keeps, checked to be uint8 image batches; empty where it keeps none (it
    was saved before checkpoints kept them, or its players read noise only)."""
    kept = checkpoint.get(KEY, {})
    if not (isinstance(kept, dict) and set(kept) <= {"inputs", "targets"} and all(map(_images, kept.values()))):
        raise ConfigError(
            f"the checkpoint's {KEY!r} are not batches of at most {COUNT} uint8 images (N, 1 or 3, H, W), as "
            f"ganforge-train writes them: delete checkpoint[{KEY!r}] (uploads still work) or train the run again"
        )
    return kept


def _images(value: Any) -> bool:
    return (
        isinstance(value, torch.Tensor)
        and value.dtype == torch.uint8
        and value.dim() == 4
        and 0 < len(value) <= COUNT
        and value.shape[1] in (1, 3)
    )
