"""Image pyramids: the scales that LAPGAN's and SinGAN's generator chains walk, and the bands SWD compares.

A :class:`Pyramid` is a list of sizes, coarsest first. Its Gaussian levels are the image resized to each size
(antialiased bilinear, from the full image each time); its Laplacian bands are the coarsest level followed by
what each finer level adds to the upsampled coarser one, so :meth:`Pyramid.reconstruct` replays the same
upsampling and gives the image back exactly (to float rounding). One resampling for both families: LAPGAN
halves (Denton et al. 2015), SinGAN scales by about 0.75 (Shaham et al. 2019), which kornia's factor-2
``pyrdown`` / ``pyrup`` cannot, so the levels come from ``torch.nn.functional.interpolate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F

from ganforge.errors import ConfigError

Size = tuple[int, int]


def resize(x: torch.Tensor, size: Size) -> torch.Tensor:
    """``x`` (N, C, H, W) at ``size``: bilinear, antialiased when it shrinks (a low-pass before subsampling)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrinks = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinks)


@dataclass(frozen=True)
class Pyramid:
    """Sizes ``(h, w)`` of a pyramid's levels, coarsest first; the last is the image's own."""

    sizes: tuple[Size, ...]

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ConfigError("a pyramid needs at least one level")
        for coarse, fine in pairwise(self.sizes):
            if coarse[0] > fine[0] or coarse[1] > fine[1]:
                raise ConfigError(f"pyramid sizes must grow from the coarsest level, got {list(self.sizes)}")

    @classmethod
    def halving(cls, size: Size, levels: int) -> Pyramid:
        """LAPGAN's: ``levels`` sizes, each half the next (28 -> 14 -> 7); every halving must stay whole."""
        if levels < 1:
            raise ConfigError(f"a pyramid needs levels >= 1, got {levels}")
        h, w = size
        if h % 2 ** (levels - 1) or w % 2 ** (levels - 1):
            raise ConfigError(
                f"{levels} levels halve {h}x{w} to a fraction; use at most "
                f"{1 + min(_twos(h), _twos(w))} levels for this size"
            )
        return cls(tuple((h >> k, w >> k) for k in reversed(range(levels))))

    @classmethod
    def geometric(cls, size: Size, scale: float, min_side: int) -> Pyramid:
        """SinGAN's: from ``size`` down by about ``scale`` per level until the shorter side is ``min_side``.

        The number of levels is what ``scale`` needs to reach ``min_side``; the factor is then adjusted so the
        coarsest level's shorter side is ``min_side`` exactly (the authors' code does the same)."""
        if not 0 < scale < 1:
            raise ConfigError(f"the pyramid's scale factor must be in (0, 1), got {scale}")
        short = min(size)
        if short <= min_side:
            return cls((tuple(size),))  # type: ignore[arg-type]  # a pair
        levels = math.ceil(math.log(min_side / short) / math.log(scale)) + 1
        factor = (min_side / short) ** (1 / (levels - 1))
        sizes = [_scaled(size, factor ** (levels - 1 - k)) for k in range(levels)]
        return cls(tuple(sizes))

    @property
    def levels(self) -> int:
        return len(self.sizes)

    def rescaled(self, size: Size) -> Pyramid:
        """The same relative scales for another final size (SinGAN's samples at another size or aspect ratio)."""
        final = self.sizes[-1]
        return Pyramid(
            tuple((max(1, round(h * size[0] / final[0])), max(1, round(w * size[1] / final[1]))) for h, w in self.sizes)
        )

    def up(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """``x`` resized to level ``level``'s size (what a finer level reads from the coarser one)."""
        return resize(x, self.sizes[level])

    def gaussian(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The image at every level, coarsest first, each resized from ``x`` itself."""
        return [resize(x, size) for size in self.sizes]

    def laplacian(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The coarsest level, then each finer level minus the coarser one upsampled to it (its band)."""
        levels = self.gaussian(x)
        return [levels[0]] + [fine - self.up(coarse, k) for k, (coarse, fine) in enumerate(pairwise(levels), start=1)]

    def reconstruct(self, bands: list[torch.Tensor]) -> torch.Tensor:
        """The image from its Laplacian bands: each band added to the coarser reconstruction, upsampled."""
        if len(bands) != self.levels:
            raise ValueError(f"{len(bands)} bands for a pyramid of {self.levels} levels")
        x = bands[0]
        for k, band in enumerate(bands[1:], start=1):
            x = self.up(x, k) + band
        return x


def _twos(n: int) -> int:
    """How many times ``n`` halves to a whole number."""
    return (n & -n).bit_length() - 1


def _scaled(size: Size, factor: float) -> Size:
    return (max(1, round(size[0] * factor)), max(1, round(size[1] * factor)))
