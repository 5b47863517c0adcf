"""Drawing samples from a generator: in eval mode, in batches, from a seeded latent stream."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` in eval mode and without autograd, restoring its mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(was_training)


def generate_batches(
    generator: nn.Module, n: int, seed: int, batch_size: int = 500, device: torch.device | str | None = None
) -> Iterator[torch.Tensor]:
    """``n`` samples of ``generator`` (float32, on ``device``) in batches of ``batch_size``.

    Latents come from a CPU random stream seeded by ``seed`` (then moved to the device), so the
    same seed gives the same samples on any device, and the global random state is untouched.
    """
    device = device if device is not None else next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    with eval_mode(generator):
        for start in range(0, n, batch_size):
            z = torch.randn(min(batch_size, n - start), generator.latent_dim, generator=rng)
            yield generator(z.to(device)).float()
