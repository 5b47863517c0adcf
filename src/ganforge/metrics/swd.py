"""Sliced Wasserstein distance (SWD) between sets of Laplacian-pyramid patches (Karras et al. 2018, Progressive GAN,
section 5 and appendix D): a multi-scale statistic of the images themselves, needing no network.

Each image is split into Laplacian bands (:class:`~ganforge.pyramid.Pyramid`: the coarsest band is the low-pass
image, the others band-pass); from each band, 7x7 neighbourhoods at random positions are the descriptors (7*7*C
values). A band's descriptor set is normalized per colour channel (its own mean and standard deviation: real and
generated sets each on their own, as ProGAN does), and the distance of two sets is the sliced Wasserstein
distance: both projected on random unit directions, each projection sorted, the mean absolute difference of the
sorted values, averaged over the directions. Values are reported x1e3, as ProGAN's tables do.

Differences to ProGAN's protocol (:func:`swd_protocol` states the settings beside every value): the bands come
from the project's pyramid (antialiased bilinear resizing, not a 5-tap Gaussian filter); the smallest level is
16 px only for images of 64 px and more (:func:`default_min_side`); and descriptors are drawn to a total count
per set (:data:`DESCRIPTORS` per level by default) rather than 128 per image of 16,384 images (2^21, a GPU's worth
of sorting), so a single training image (SinGAN) yields as many descriptors as many samples do. The estimate is
biased upwards by a sampling floor that shrinks with the count: compare values only at the same count (the real
split against the other, ``ganforge-eval floor=true``, gives the floor).

All randomness (positions, directions, subsets) comes from private generators seeded by ``seed``: the global
random stream is untouched and equal seeds give equal numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ganforge.errors import ConfigError
from ganforge.metrics.classifier import to_pixels, to_unit_range
from ganforge.pyramid import Pyramid, Size

#: Side of the square neighbourhoods the descriptors are taken from (ProGAN's).
PATCH = 7
#: ProGAN's smallest pyramid level, for images of :data:`LARGE` px and more.
MIN_SIDE = 16
#: Images smaller than this (shorter side) halve down to :data:`PATCH` instead of :data:`MIN_SIDE`.
LARGE = 64
#: Descriptors per level per set (ProGAN: 16,384 images x 128 = 2,097,152).
DESCRIPTORS = 2**16
#: Random directions per repeat and repeats (ProGAN's), the result averaged over all of them.
DIRECTIONS = 512
REPEATS = 4

# Independent random streams derived from the seed: the real set's, the generated set's, the directions'.
REAL, GENERATED, DIRECTION_STREAM = 0, 1, 2
_POSITIONS, _SUBSET = 0, 1  # the two uses of a set's stream (positions: one stream per level)
# Elements of a block of projections (directions x descriptors) sorted at once: bounds the memory of a distance.
_BLOCK = 2**24


def seeded(seed: int, *stream: int) -> torch.Generator:
    """A CPU generator for one use (``stream``) of ``seed``: streams are independent, and none is the global one nor
    ``torch.Generator().manual_seed(seed)`` (the latents' stream)."""
    state = np.random.SeedSequence([seed % 2**64, 0x5317D, *stream]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def default_min_side(size: Size) -> int:
    """ProGAN's 16 px for images of 64 px and more; :data:`PATCH` (7) below, so that small images still get
    band-pass levels (28 px: 28, 14, 7 rather than the single level 28 that 16 would leave), the coarsest being the
    smallest that holds a 7x7 neighbourhood."""
    return MIN_SIDE if min(size) >= LARGE else PATCH


def swd_pyramid(size: Size, min_side: int | None = None) -> Pyramid:
    """Halvings of ``size`` (rounded, so odd and rectangular sizes such as SinGAN's 85x128 halve too) down to the
    last level whose shorter side is at least ``min_side`` (:func:`default_min_side` when None)."""
    h, w = size
    if min(h, w) < PATCH:
        raise ConfigError(f"SWD takes {PATCH}x{PATCH} neighbourhoods; images of {h}x{w} are too small")
    min_side = default_min_side(size) if min_side is None else min_side
    if min_side < PATCH:
        raise ConfigError(f"metrics.scorer.swd_min_side={min_side}: levels must hold {PATCH}x{PATCH} neighbourhoods")
    sizes = [(h, w)]
    while min(round(sizes[-1][0] / 2), round(sizes[-1][1] / 2)) >= min_side:
        sizes.append((round(sizes[-1][0] / 2), round(sizes[-1][1] / 2)))
    return Pyramid(tuple(reversed(sizes)))


def level_name(size: Size) -> str:
    """``28`` for a 28x28 level, ``24x32`` for a rectangle: the suffix of its ``swd/<level>`` key."""
    return str(size[0]) if size[0] == size[1] else f"{size[0]}x{size[1]}"


def sample_patches(band: torch.Tensor, per_image: int, generator: torch.Generator) -> torch.Tensor:
    """``per_image`` :data:`PATCH` x :data:`PATCH` neighbourhoods of each image of ``band`` (N, C, h, w) at uniformly
    random positions (with replacement), as (N, per_image, 7, 7, C). Positions are drawn on the CPU from
    ``generator``, one number per neighbourhood, image after image: the same seed gives the same positions on any
    device and in batches of any size."""
    n, _, h, w = band.shape
    across = w - PATCH + 1
    index = torch.randint((h - PATCH + 1) * across, (n, per_image), generator=generator).to(band.device)
    ys, xs = index // across, index % across
    offsets = torch.arange(PATCH, device=band.device)
    rows = (ys[..., None] + offsets)[..., :, None]  # (N, k, 7, 1)
    cols = (xs[..., None] + offsets)[..., None, :]  # (N, k, 1, 7)
    image = torch.arange(n, device=band.device)[:, None, None, None]
    return band.permute(0, 2, 3, 1)[image, rows, cols]  # (N, k, 7, 7, C)


def normalize_descriptors(descriptors: torch.Tensor) -> torch.Tensor:
    """(M, 7, 7, C) -> (M, 7*7*C), each colour channel shifted and scaled to mean 0 and standard deviation 1 over the
    set (ProGAN's per-set normalization: it compares the structure of the bands, not their contrast)."""
    mean = descriptors.mean(dim=(0, 1, 2))
    std = descriptors.std(dim=(0, 1, 2), correction=0).clamp_min(1e-8)  # a flat band stays 0
    return ((descriptors - mean) / std).flatten(1)


def pixels(images: torch.Tensor) -> torch.Tensor:
    """Images of uint8 pixels or floats in [-1, 1] as floats in [-1, 1], read as the 8-bit pixels an image file
    holds, as the extractors read them (:func:`~ganforge.metrics.image_metrics.extract`)."""
    return to_unit_range(images if images.dtype == torch.uint8 else to_pixels(images))


class DescriptorSampler:
    """Draws the descriptors of a set of ``n_images`` images as their batches pass by (:meth:`add`, :meth:`watch`):
    ``ceil(total / n_images)`` per image and level, so the set has at least ``total`` per level whether it is one
    image (SinGAN's training image) or many, then ``total`` of them at random (:meth:`descriptors`). Memory is about
    ``total`` descriptors per level, whatever the images' count."""

    def __init__(
        self,
        n_images: int,
        total: int = DESCRIPTORS,
        min_side: int | None = None,
        seed: int = 0,
        stream: int = GENERATED,
        device: torch.device | str | None = None,
    ) -> None:
        if n_images < 1 or total < 1:
            raise ValueError(f"SWD draws descriptors from n_images >= 1 images, total >= 1; got {n_images}, {total}")
        self.n_images, self.total, self.min_side = n_images, total, min_side
        self.per_image = math.ceil(total / n_images)
        self.seed, self.stream, self.device = seed, stream, device
        self.generators: list[torch.Generator] = []
        self.pyramid: Pyramid | None = None
        self._drawn: list[list[torch.Tensor]] = []

    @torch.no_grad()
    def add(self, images: torch.Tensor) -> None:
        """Draw the descriptors of a batch (N, C, H, W) of uint8 pixels or floats in [-1, 1]."""
        x = pixels(images.to(self.device) if self.device is not None else images)
        size: Size = (x.shape[-2], x.shape[-1])
        if self.pyramid is None:
            self.pyramid = swd_pyramid(size, self.min_side)
            self._drawn = [[] for _ in self.pyramid.sizes]
            self.generators = [seeded(self.seed, self.stream, _POSITIONS, k) for k in range(self.pyramid.levels)]
        elif self.pyramid.sizes[-1] != size:
            raise ValueError(f"SWD set of {self.pyramid.sizes[-1]} images got a batch of {size}")
        for drawn, band, generator in zip(self._drawn, self.pyramid.laplacian(x), self.generators, strict=True):
            drawn.append(sample_patches(band, self.per_image, generator))

    def watch(self, batches: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """``batches`` unchanged, each drawn from on its way (images scored for FID are not produced twice)."""
        for images in batches:
            self.add(images)
            yield images

    def gather(self, join: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Join this process's per-image descriptors with the other ranks' (DDP: ``join`` gathers the shards of the
        images, as the features' are), so that every rank holds the whole set."""
        self._drawn = [[join(torch.cat(drawn))] for drawn in self._drawn]

    @torch.no_grad()
    def descriptors(self) -> list[torch.Tensor]:
        """Per level, coarsest first, ``total`` normalized descriptors (:func:`normalize_descriptors`) drawn without
        replacement from those of all the images (fewer only when fewer than ``n_images`` came), from a stream of
        their own: the same subset on every rank and at every call."""
        if self.pyramid is None:
            raise ValueError("SWD: no images were added to the descriptor set")
        subset, sets = seeded(self.seed, self.stream, _SUBSET), list[torch.Tensor]()
        for drawn in self._drawn:
            per_image = torch.cat(drawn)  # (N, k, 7, 7, C)
            if len(per_image) < self.n_images and not sets:
                warnings.warn(
                    f"SWD: {len(per_image)} of the {self.n_images} images announced came, so a set has "
                    f"{len(per_image) * self.per_image} descriptors per level rather than {self.total}",
                    stacklevel=2,
                )
            flat = per_image.flatten(0, 1)
            if len(flat) > self.total:
                flat = flat[torch.randperm(len(flat), generator=subset)[: self.total].to(flat.device)]
            sets.append(normalize_descriptors(flat))
        return sets


def random_directions(dim: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` directions uniformly on the unit sphere of ``dim`` dimensions, as the columns of a (dim, count)
    float32 CPU tensor (normalized Gaussian vectors)."""
    directions = torch.randn(dim, count, generator=generator)
    return directions / directions.norm(dim=0, keepdim=True)


@torch.no_grad()
def sliced_wasserstein(
    a: torch.Tensor,
    b: torch.Tensor,
    directions: int = DIRECTIONS,
    repeats: int = REPEATS,
    generator: torch.Generator | None = None,
) -> float:
    """The sliced Wasserstein-1 distance of two sets of vectors (rows): for each of ``repeats`` x ``directions``
    random unit directions (:func:`random_directions`, ``repeats`` draws of ``directions``), the mean absolute
    difference of the sorted projections of the two sets (the 1-D Wasserstein-1 distance of equal-size sets),
    averaged over all directions (ProGAN averages each repeat's mean, the same number). Sorted projections pair
    values one to one, so the larger set is first cut to the smaller's size by a random subset (without
    replacement, from ``generator``). Projections are sorted in blocks of directions, bounding memory."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"SWD compares two sets of vectors of one dimension, got {tuple(a.shape)}, {tuple(b.shape)}")
    generator = generator if generator is not None else seeded(0, DIRECTION_STREAM)
    n = min(len(a), len(b))
    if n == 0:
        raise ValueError("SWD of an empty set")
    a, b = (x if len(x) == n else x[torch.randperm(len(x), generator=generator)[:n].to(x.device)] for x in (a, b))
    block = max(1, _BLOCK // n)
    total = 0.0
    for _ in range(repeats):
        units = random_directions(a.shape[1], directions, generator).to(a)
        for chunk in units.split(block, dim=1):
            ours, theirs = (torch.sort(chunk.T @ x.T, dim=1).values for x in (a, b))
            total += (ours - theirs).abs().sum(dtype=torch.float64).item()
    return total / (repeats * directions * n)


def swd_levels(
    real: Sequence[torch.Tensor],
    fake: Sequence[torch.Tensor],
    sizes: Sequence[Size],
    directions: int = DIRECTIONS,
    repeats: int = REPEATS,
    seed: int = 0,
) -> dict[str, float]:
    """``swd/<level>`` (x1e3) of each level's normalized descriptor sets, coarsest first, and ``swd``, their mean.
    Directions come from one stream of ``seed`` drawn level by level, so every evaluation projects on the same."""
    if not len(real) == len(fake) == len(sizes):
        raise ValueError(f"SWD levels differ: {len(real)} real, {len(fake)} generated, {len(sizes)} sizes")
    generator = seeded(seed, DIRECTION_STREAM)
    values = {
        f"swd/{level_name(size)}": 1e3 * sliced_wasserstein(r, f, directions, repeats, generator)
        for r, f, size in zip(real, fake, sizes, strict=True)
    }
    return {"swd": sum(values.values()) / len(values), **values}


def swd_scores(
    real: torch.Tensor,
    fake: torch.Tensor,
    descriptors: int = DESCRIPTORS,
    min_side: int | None = None,
    directions: int = DIRECTIONS,
    repeats: int = REPEATS,
    seed: int = 0,
    batch_size: int = 500,
) -> dict[str, float]:
    """The SWD scores (:func:`swd_levels`) of two image sets (N, C, H, W) of uint8 pixels or floats in [-1, 1],
    ``descriptors`` per level drawn from each (either may be one image), in batches of ``batch_size``."""
    sets, pyramids = [], []
    for images, stream in ((real, REAL), (fake, GENERATED)):
        sampler = DescriptorSampler(len(images), descriptors, min_side, seed, stream)
        for batch in images.split(batch_size):
            sampler.add(batch)
        sets.append(sampler.descriptors())
        pyramids.append(sampler.pyramid)
    if pyramids[0] != pyramids[1]:
        raise ValueError(f"SWD compares images of one size, got {real.shape[-2:]} and {fake.shape[-2:]}")
    assert pyramids[0] is not None
    return swd_levels(sets[0], sets[1], pyramids[0].sizes, directions, repeats, seed)


def swd_protocol(
    sizes: Sequence[Size] | None,
    descriptors: int = DESCRIPTORS,
    directions: int = DIRECTIONS,
    repeats: int = REPEATS,
    seed: int = 0,
    min_side: int | None = None,
) -> dict[str, Any]:
    """What an SWD value means, for the scorer's protocol: its levels (``swd/<level>`` keys, coarsest first; None
    until images were seen), the smallest level side asked for (``auto``: :func:`default_min_side`), descriptors
    per level and set, directions and repeats, seed."""
    return {
        "levels": None if sizes is None else [level_name(size) for size in sizes],
        "min_side": "auto" if min_side is None else min_side,
        "patch": PATCH,
        "descriptors": descriptors,
        "directions": directions,
        "repeats": repeats,
        "seed": seed,
        "scale": 1e3,
    }
