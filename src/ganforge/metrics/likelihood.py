"""Test-set likelihood of a flow generator (``model=flow``) in bits per dimension, the figure every flow paper
reports: each 8-bit test image dequantized once by uniform noise from a seeded stream, its exact log-density
under the flow (``FlowGenerator.bits_per_dim``), averaged over the images."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.metrics.image_metrics import split_images


@torch.no_grad()
def bits_per_dim(generator: nn.Module, batches: Iterable[torch.Tensor], seed: int, device: torch.device | str) -> float:
    """Mean bits/dim of the images in ``batches`` (uint8, or floats in [-1, 1]) under ``generator``."""
    flow = getattr(generator, "bits_per_dim", None)
    if flow is None:
        raise ConfigError(f"bits per dimension need an exact likelihood, which {type(generator).__name__} has not")
    rng = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for images in batches:
        x = images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images.float()
        noise = torch.rand(x.shape, generator=rng)
        total += float(flow(x.to(device), noise.to(device)).sum())
        count += len(x)
    return total / count


def test_bits_per_dim(
    generator: nn.Module, datamodule: Any, metrics: Any, device: torch.device | str
) -> tuple[float, dict[str, Any]]:
    """Bits/dim of ``metrics.bits_per_dim_n`` test images (seeded subset and noise, ``metrics.seed``), and its
    protocol."""
    n, seed = metrics.bits_per_dim_n, metrics.seed
    value = bits_per_dim(generator, split_images(datamodule, "test", n, seed, metrics.batch_size), seed, device)
    protocol = {"split": "test", "n": n, "seed": seed, "dequantization": "uniform noise on the 8-bit levels, one draw"}
    return value, protocol
