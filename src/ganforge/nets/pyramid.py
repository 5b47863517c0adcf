"""Pyramids of generators and discriminators: LAPGAN (Denton et al. 2015) and SinGAN (Shaham et al. 2019).

Both generate coarse to fine over a :class:`~ganforge.pyramid.Pyramid`: the coarsest level draws an image (from
a latent vector, or from a noise plane on a blank canvas), and every finer level k reads the coarser image
upsampled to its size plus a noise plane and adds a residual: ``x_k = up(x_{k-1}) + G_k(up(x_{k-1}), z_k)``.
LAPGAN feeds the noise as an extra input channel; SinGAN adds it, scaled by the level's noise amplitude, to the
upsampled image. One flat latent carries every level's noise (the coarsest vector or plane first, then each
finer level's plane), so seeded sampling, truncation and the metrics treat a pyramid like any generator.

How the levels are trained (all at once on real coarse images, or one after another on the chain's own output)
is the game's decision (:class:`ganforge.games.pyramid.PyramidGame`), not the nets'.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.pyramid import Pyramid, resize

NOISE_MODES = ("concat", "add")


def conv_block(c_in: int, c_out: int, norm: bool = True) -> list[nn.Module]:
    """SinGAN's block: a 3x3 convolution that keeps the size, BatchNorm, LeakyReLU(0.2)."""
    return [nn.Conv2d(c_in, c_out, 3, 1, 1), *([nn.BatchNorm2d(c_out)] if norm else []), nn.LeakyReLU(0.2, True)]


class LevelGenerator(nn.Module):
    """One level's G: ``blocks`` conv blocks of ``width`` channels that map the upsampled coarser image and a
    noise plane to a residual (tanh-bounded with ``tanh``, SinGAN's; unbounded otherwise, LAPGAN's)."""

    def __init__(self, channels: int, width: int = 32, blocks: int = 5, noise: str = "add", tanh: bool = True) -> None:
        super().__init__()
        if noise not in NOISE_MODES:
            raise ConfigError(f"model.generator.level.noise must be one of {NOISE_MODES}, got {noise!r}")
        if blocks < 2:
            raise ConfigError(f"model.generator.level.blocks must be >= 2 (a head and a tail), got {blocks}")
        self.noise, self.width = noise, width
        #: Channels of this level's noise plane: one extra input channel, or one per image channel.
        self.noise_channels = 1 if noise == "concat" else channels
        c_in = channels + (1 if noise == "concat" else 0)
        layers = conv_block(c_in, width)
        for _ in range(blocks - 2):
            layers += conv_block(width, width)
        layers += [nn.Conv2d(width, channels, 3, 1, 1), *([nn.Tanh()] if tanh else [])]
        self.net = nn.Sequential(*layers)

    def forward(self, coarse: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The residual this level adds to ``coarse`` (the coarser image at this level's size)."""
        x = torch.cat([coarse, noise], dim=1) if self.noise == "concat" else coarse + noise
        return self.net(x)


class LevelDiscriminator(nn.Module):
    """SinGAN's patch D: ``blocks`` conv blocks (3x3, stride 1: an 11x11 receptive field with 5), a map of patch
    scores averaged to one logit per image. ``condition_channels`` are stacked on the judged image (LAPGAN's
    D_k sees the coarse image it was conditioned on)."""

    def __init__(self, channels: int, width: int = 32, blocks: int = 5, condition_channels: int = 0) -> None:
        super().__init__()
        layers = conv_block(channels + condition_channels, width, norm=False)
        for _ in range(blocks - 2):
            layers += conv_block(width, width)
        layers.append(nn.Conv2d(width, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if condition is not None:
            x = torch.cat([x, condition], dim=1)
        return self.net(x).mean(dim=(1, 2, 3))


GeneratorFactory = Callable[..., nn.Module]


def level_width(width: int, level: int, doubling_every: int, max_width: int) -> int:
    """SinGAN's channel schedule: ``width`` doubled every ``doubling_every`` levels, at most ``max_width``."""
    return min(width * 2 ** (level // doubling_every), max_width) if doubling_every else width


class LevelNets(nn.Module):
    """A net per level of a pyramid, the part generators and discriminators share: the pyramid (LAPGAN's halving
    one of ``levels`` levels when that is given, else SinGAN's geometric one from ``size`` down by about ``scale``
    to a shorter side of ``min_side``) and each level's width (``width`` doubled every ``width_doubling_every``
    levels, at most ``max_width``; 0: never)."""

    def __init__(
        self,
        size: Sequence[int],
        levels: int | None = None,
        scale: float = 0.75,
        min_side: int = 25,
        width: int = 32,
        width_doubling_every: int = 0,
        max_width: int = 128,
    ) -> None:
        super().__init__()
        h, w = (int(size[0]), int(size[-1]))
        self.pyramid = (
            Pyramid.halving((h, w), levels) if levels is not None else Pyramid.geometric((h, w), scale, min_side)
        )
        self.widths = [level_width(width, k, width_doubling_every, max_width) for k in range(self.pyramid.levels)]
        self.num_classes = None
        self.blocks = nn.ModuleList()

    @property
    def levels(self) -> int:
        return self.pyramid.levels


class PyramidGenerator(LevelNets):
    """A chain of generators, coarsest first (see the module's docstring), over the pyramid ``pyramid`` describes
    (:class:`LevelNets`: ``size``, ``levels`` or ``scale`` and ``min_side``, and the widths).

    ``coarsest`` (a factory called with ``channels`` and ``resolution``, e.g. a partial ``MLPGenerator``) draws
    the coarsest level from a latent vector of its ``latent_dim``; without it the coarsest level is a
    :class:`LevelGenerator` on a blank canvas (SinGAN). ``level`` builds every other level's G (called with
    ``channels`` and ``width``). ``noise_amp`` holds each level's noise amplitude (1 until a game sets it;
    SinGAN's are set from the reconstruction error when a level starts training).
    """

    noise_amp: torch.Tensor
    reconstruction_noise: torch.Tensor
    required_game = "pyramid"

    def __init__(
        self, channels: int, level: GeneratorFactory, coarsest: GeneratorFactory | None = None, **pyramid: Any
    ) -> None:
        super().__init__(**pyramid)
        self.channels = channels
        self.resolution = None  # its images come at the pyramid's size, (h, w), never to be resized to a square
        if coarsest is not None:
            side = self.pyramid.sizes[0]
            if side[0] != side[1]:
                raise ConfigError(f"a latent-vector coarsest level needs a square coarsest size, got {side}")
            self.blocks.append(coarsest(channels=channels, resolution=side[0]))
        for k in range(len(self.blocks), self.levels):
            self.blocks.append(level(channels=channels, width=self.widths[k]))
        self.vector_latent = int(getattr(self.blocks[0], "latent_dim", 0)) if coarsest is not None else 0
        self.register_buffer("noise_amp", torch.ones(self.levels))
        # SinGAN's z*: the fixed coarsest noise from which the chain redraws the training image (zeros above).
        self.register_buffer("reconstruction_noise", torch.randn(1, *self.noise_shape(0)))

    def noise_shape(self, level: int, pyramid: Pyramid | None = None) -> tuple[int, ...]:
        """The shape of one sample's noise at ``level``: the coarsest latent vector, or a plane."""
        if level == 0 and self.vector_latent:
            return (self.vector_latent,)
        block = self.blocks[level]
        assert isinstance(block, LevelGenerator)  # every level but a latent-vector coarsest one
        return (block.noise_channels, *(pyramid or self.pyramid).sizes[level])

    def latent_dims(self, pyramid: Pyramid | None = None, start_level: int = 0) -> list[int]:
        return [math.prod(self.noise_shape(k, pyramid)) for k in range(start_level, self.levels)]

    @property
    def latent_dim(self) -> int:
        """One flat latent holds every level's noise, coarsest first."""
        return sum(self.latent_dims())

    def split_latent(
        self, z: torch.Tensor, pyramid: Pyramid | None = None, start_level: int = 0
    ) -> list[torch.Tensor | None]:
        """``z`` (N, latent_dim) cut into each level's noise, shaped; None for the levels below ``start_level``
        (whose noise ``z`` then does not hold)."""
        chunks = z.reshape(len(z), -1).split(self.latent_dims(pyramid, start_level), dim=1)
        shaped = [c.reshape(len(z), *self.noise_shape(k, pyramid)) for k, c in enumerate(chunks, start=start_level)]
        return [None] * start_level + shaped

    def reconstruction_noises(self) -> list[torch.Tensor | None]:
        """``z*`` at the coarsest level, zeros above: the noise that redraws the training image."""
        zeros = [self.reconstruction_noise.new_zeros(1, *self.noise_shape(k)) for k in range(1, self.levels)]
        return [self.reconstruction_noise, *zeros]

    def reconstruction(self, level: int) -> torch.Tensor:
        """The chain's reconstruction of the training image at ``level``."""
        return self.chain(self.reconstruction_noises(), stop_level=level)[-1]

    def coarsest(self, noise: torch.Tensor) -> torch.Tensor:
        """The coarsest level's image from its noise."""
        if self.vector_latent:
            return self.blocks[0](noise)
        return self.level(0, torch.zeros_like(noise[:, :1]).expand(-1, self.channels, -1, -1), noise)

    def level(self, k: int, coarse: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Level ``k``'s image: ``coarse`` (already at its size) plus the residual its G draws with ``noise``."""
        if k == 0 and self.vector_latent:
            raise ValueError("level 0 draws from a latent vector; call coarsest()")
        return coarse + self.blocks[k](coarse, self.noise_amp[k] * noise)

    def chain(
        self,
        noises: Sequence[torch.Tensor | None],
        start: torch.Tensor | None = None,
        start_level: int = 0,
        stop_level: int | None = None,
        pyramid: Pyramid | None = None,
    ) -> list[torch.Tensor]:
        """Every level's image from ``start_level`` to ``stop_level`` (inclusive; the finest by default), each
        level reading the one below upsampled. ``start`` is the image at ``start_level - 1`` (SinGAN's
        generation from scale n, injection of an image); without it the chain starts at the coarsest level."""
        pyramid = pyramid or self.pyramid
        stop = self.levels - 1 if stop_level is None else stop_level
        images: list[torch.Tensor] = []
        x = start
        for k in range(start_level, stop + 1):
            noise = noises[k]
            assert noise is not None, f"no noise for level {k}"
            x = self.coarsest(noise) if x is None else self.level(k, pyramid.up(x, k), noise)
            images.append(x)
        return images

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.chain(self.split_latent(z))[-1]


class PyramidSampler(nn.Module):
    """A pyramid generator drawn the other ways SinGAN uses it (``ganforge-sample size= start_scale= inject=``):
    at another ``size`` (the same relative scales; the nets are fully convolutional), and from ``start_level``
    on, the level below it given: the chain's reconstruction of the training image there (generation from scale
    n: the coarse structure kept, the finer levels drawn anew), or ``start``, an image injected at that level
    (editing, harmonization, paint-to-image). Its latent holds the noise of the levels it draws only."""

    def __init__(
        self,
        generator: PyramidGenerator,
        size: Sequence[int] | None = None,
        start_level: int = 0,
        start: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        levels = generator.levels
        if not 0 <= start_level < levels:
            raise ConfigError(f"start_scale={start_level}: this pyramid has levels 0..{levels - 1} (0: the coarsest)")
        if start is not None and start_level == 0:
            raise ConfigError("inject= puts an image below the level generation starts at; set start_scale=1 or more")
        if size is not None and start_level == 0 and generator.vector_latent:
            raise ConfigError("the coarsest level draws from a latent vector at its own size only; drop size=")
        if size is not None and start_level > 0 and start is None:
            raise ConfigError(
                "start_scale=n keeps the training image's reconstruction below level n, which has the training "
                "image's size; drop size=, or inject= an image to start from"
            )
        self.generator, self.start_level, self.start = generator, start_level, start
        self.pyramid = generator.pyramid.rescaled((int(size[0]), int(size[-1]))) if size else generator.pyramid
        self.latent_dim = sum(generator.latent_dims(self.pyramid, start_level))
        self.num_classes = None
        self.resolution = None

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        generator, level = self.generator, self.start_level
        below = None
        if level:
            if self.start is not None:
                below = resize(self.start.to(z.device), self.pyramid.sizes[level - 1])
            else:
                below = generator.reconstruction(level - 1)
            below = below.expand(len(z), *below.shape[1:])
        noises = generator.split_latent(z, self.pyramid, level)
        return generator.chain(noises, start=below, start_level=level, pyramid=self.pyramid)[-1]


DiscriminatorFactory = Callable[..., nn.Module]


class PyramidDiscriminator(LevelNets):
    """One D per level, judging that level's images, over the pyramid ``pyramid`` describes (:class:`LevelNets`).
    ``coarsest`` (called with ``channels`` and ``resolution``) judges the coarsest level when given, else ``level``
    does (called with ``channels``, ``width`` and ``condition_channels``: the coarser image stacked on the judged
    one when ``conditional``, LAPGAN's D).

    A tuple ``(x_0, ..., x_L, c_1, ..., c_L)`` (every level's images, then the finer levels' conditions) is
    judged by every level at once: logits (N, levels), one column per level's game. A tensor is judged by the
    ``active`` level alone (SinGAN trains one level at a time)."""

    def __init__(
        self,
        channels: int,
        level: DiscriminatorFactory,
        coarsest: DiscriminatorFactory | None = None,
        conditional: bool = False,
        **pyramid: Any,
    ) -> None:
        super().__init__(**pyramid)
        self.conditional = conditional
        self.active = self.levels - 1
        if coarsest is not None:
            self.blocks.append(coarsest(channels=channels, resolution=self.pyramid.sizes[0][0]))
        for k in range(len(self.blocks), self.levels):
            condition = channels if conditional and k > 0 else 0
            self.blocks.append(level(channels=channels, width=self.widths[k], condition_channels=condition))

    def judge(self, k: int, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        block = self.blocks[k]
        return block(x, condition) if isinstance(block, LevelDiscriminator) else block(x)

    def forward(self, x: torch.Tensor | tuple[torch.Tensor, ...], y: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            return self.judge(self.active, x)
        levels = self.pyramid.levels
        images, conditions = x[:levels], (None, *x[levels:]) if self.conditional else (None,) * levels
        return torch.stack([self.judge(k, images[k], conditions[k]) for k in range(levels)], dim=1)
