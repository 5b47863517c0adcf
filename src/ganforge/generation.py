"""Drawing samples from a generator: in eval mode, in batches, from a seeded latent stream."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch
from torch import nn

from ganforge.errors import ConfigError


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


def resolve_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU; any other name as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def class_major_labels(n: int, num_classes: int) -> torch.Tensor:
    """``n`` labels spread evenly over ``num_classes`` classes in class-major order (0, 0, ..., 1, 1, ...).

    When ``n`` is a multiple of ``num_classes``, a grid with ``n // num_classes`` columns shows one class per row.
    """
    return torch.arange(n) * num_classes // n


def samples_per_class(n: int, num_classes: int) -> int:
    """``n`` rounded up to whole classes, as a count per class: every class gets the same number of samples."""
    return -(-n // num_classes)


def shard_range(n: int, rank: int = 0, world_size: int = 1) -> range:
    """The indices of ``n`` items that ``rank`` of ``world_size`` handles: contiguous, ceil(n / world_size) each."""
    per_rank = -(-n // world_size)
    return range(min(n, rank * per_rank), min(n, (rank + 1) * per_rank))


def generate_batches(
    generator: nn.Module,
    n: int,
    seed: int,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    labels: torch.Tensor | None = None,
    rank: int = 0,
    world_size: int = 1,
    truncation: float | None = None,
) -> Iterator[torch.Tensor]:
    """``n`` samples of ``generator`` (float32, on ``device``) in batches of ``batch_size``.

    Latents come from a CPU random stream seeded by ``seed`` (then moved to the device), so the
    same seed gives the same samples on any device, and the global random state is untouched.
    A conditional generator (``num_classes`` set) draws sample ``i`` from class ``labels[i]``;
    without ``labels``, from :func:`class_major_labels`, so that every class is represented equally.
    The latents do not depend on the labels. A generator whose output is below its ``resolution``
    (a Progressive GAN before its last stage) is brought to it by nearest-neighbour upsampling, so
    samples, grids and metrics always compare at the full resolution.

    With ``truncation``, latents come from :func:`truncated_normal` (BigGAN's truncation trick).

    With ``world_size > 1`` only this ``rank``'s share (:func:`shard_range`) of the same ``n`` samples is
    generated: the ranks' shards, concatenated in rank order, are the single-process samples.
    """
    num_classes = getattr(generator, "num_classes", None)
    if labels is not None and num_classes is None:
        raise ValueError("labels were given, but the generator is unconditional (num_classes is None)")
    if labels is None and num_classes is not None:
        labels = class_major_labels(n, num_classes)
    if labels is not None and len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} samples")
    device = device if device is not None else next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    latent_dim = cast(int, generator.latent_dim)
    latents = torch.cat(
        [truncated_normal((min(batch_size, n - i), latent_dim), truncation, rng) for i in range(0, n, batch_size)]
    )
    mine = shard_range(n, rank, world_size)
    with eval_mode(generator):
        for start in range(mine.start, mine.stop, batch_size):
            stop = min(start + batch_size, mine.stop)
            y = labels[start:stop].to(device) if labels is not None else None
            yield at_full_resolution(
                generator(latents[start:stop].to(device), y).float(), getattr(generator, "resolution", None)
            )


def check_truncation(threshold: float | None) -> None:
    """The truncation threshold as ``ganforge-sample`` and ``ganforge-eval`` take it: positive, or None (none)."""
    if threshold is not None and not threshold > 0:
        raise ConfigError(f"truncation={threshold}: the threshold on |z_i| must be positive (e.g. 0.5); null: none")


def truncated_normal(shape: tuple[int, ...], threshold: float | None, rng: torch.Generator) -> torch.Tensor:
    """Standard normal values; with a ``threshold``, every value whose magnitude exceeds it is drawn again
    until none does (the truncation trick as BigGAN does it: a smaller threshold trades variety for fidelity).
    Without one, exactly ``torch.randn``'s draw, so untruncated samples are unchanged."""
    check_truncation(threshold)
    z = torch.randn(shape, generator=rng)
    if threshold is None:
        return z
    while (outside := z.abs() > threshold).any():
        z[outside] = torch.randn(int(outside.sum()), generator=rng)
    return z


def at_full_resolution(images: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """``images`` nearest-neighbour upsampled to ``resolution`` when they are smaller (else unchanged)."""
    if resolution is None or images.dim() != 4 or images.shape[-1] >= resolution:
        return images
    return nn.functional.interpolate(images, size=(resolution, resolution), mode="nearest")


class StyleMixing(nn.Module):
    """A style-based generator whose every sample takes its styles from two latents: the first ``c`` ws from one,
    the rest from the other, at a crossover ``c`` uniform in [1, num_ws) (style mixing as training does it; the
    paper's mixing FID scores such samples). Both latents and the crossover ride in one latent vector of
    ``2 * latent_dim + 1`` numbers (the last, a standard normal value, picks the crossover through its CDF), so
    seeded sampling and the metrics treat it as any generator."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        if not (hasattr(generator, "mapping") and hasattr(generator, "synthesis")):
            raise ConfigError(
                f"mixing=true mixes the styles of a style-based generator (model=stylegan or stylegan2); "
                f"{type(generator).__name__} has none"
            )
        self.generator = generator
        self.latent_dim = 2 * cast(int, generator.latent_dim) + 1
        self.num_classes = getattr(generator, "num_classes", None)
        self.resolution = getattr(generator, "resolution", None)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        style = cast(Any, self.generator)
        first, second, u = z.split([style.latent_dim, style.latent_dim, 1], dim=1)
        ws, other = style.mapping(first, y), style.mapping(second, y)
        num_ws = ws.shape[1]
        uniform = 0.5 * (1 + torch.erf(u[:, 0] / math.sqrt(2.0)))
        crossover = (1 + (uniform * (num_ws - 1)).floor()).clamp(1, num_ws - 1)
        from_first = torch.arange(num_ws, device=z.device)[None] < crossover[:, None]
        return style.synthesis(torch.where(from_first[..., None], ws, other))
