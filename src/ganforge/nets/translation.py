"""Nets that take an image instead of noise: pix2pix's U-Net and PatchGAN (Isola et al. 2017), SRGAN's
residual generator (Ledig et al. 2017).

A translation generator is called ``G(source)``; its ``source_shape`` says what it reads. A PatchGAN gives
one logit per overlapping patch, (N, h, w); the objectives average over every logit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.nets.layers import dcgan_init, spectral_normalize

NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm2d,
    "instance": partial(nn.InstanceNorm2d, affine=True),
    "none": lambda _: nn.Identity(),
}


def norm_layer(norm: str, channels: int) -> nn.Module:
    if norm not in NORMS:
        raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return NORMS[norm](channels)


class UNetGenerator(nn.Module):
    """pix2pix's U-Net: 4x4 stride-2 convolutions down to the bottleneck and transposed ones back up, each
    decoder layer also reading the encoder layer of its size (skip connections, so that detail the input
    holds need not squeeze through the bottleneck). As in the paper: LeakyReLU 0.2 down, ReLU up, no norm on
    the outermost and innermost encoder layers, dropout (the paper's only noise) on the decoder layers
    nearest the bottleneck (``dropout_layers`` of them), tanh output.

    The encoder halves the resolution ``depth`` times, or until it would turn odd (28 -> 14 -> 7 stops at 7);
    channels double from ``width`` up to ``max_width``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 1,
        resolution: int = 32,
        width: int = 64,
        max_width: int = 512,
        depth: int = 8,
        dropout: float = 0.5,
        dropout_layers: int = 3,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        sizes = [resolution]
        while len(sizes) <= depth and sizes[-1] % 2 == 0 and sizes[-1] >= 2:
            sizes.append(sizes[-1] // 2)
        levels = len(sizes) - 1
        if levels < 1:
            raise ConfigError(f"UNetGenerator: resolution {resolution} cannot be halved; use an even resolution")
        widths = [min(width * 2**i, max_width) for i in range(levels)]
        self.source_shape = (in_channels, resolution, resolution)
        self.downs = nn.ModuleList()
        for i, c_out in enumerate(widths):
            c_in = in_channels if i == 0 else widths[i - 1]
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i in (0, levels - 1) or norm == "none"))
            if 0 < i < levels - 1:
                layers.append(norm_layer(norm, c_out))
            self.downs.append(nn.Sequential(*layers))
        self.ups = nn.ModuleList()
        for i in reversed(range(levels)):  # the decoder layer that undoes encoder layer i
            c_in = widths[i] if i == levels - 1 else 2 * widths[i]  # below the bottleneck it also reads a skip
            if i == 0:
                self.ups.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(c_in, channels, 4, 2, 1), nn.Tanh()))
                continue
            layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, widths[i - 1], 4, 2, 1, bias=norm == "none")]
            layers.append(norm_layer(norm, widths[i - 1]))
            if dropout > 0 and 1 <= levels - 1 - i <= dropout_layers:  # not the innermost, as in the paper
                layers.append(nn.Dropout(dropout))
            self.ups.append(nn.Sequential(*layers))
        self.apply(dcgan_init)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        skips = []
        h = source
        for down in self.downs:
            h = down(h)
            skips.append(h)
        h = skips.pop()
        for up in self.ups[:-1]:
            h = torch.cat([up(h), skips.pop()], dim=1)
        return self.ups[-1](h)


class PatchDiscriminator(nn.Module):
    """pix2pix's PatchGAN: ``layers`` 4x4 stride-2 convolutions, one at stride 1, and a 4x4 convolution to
    one logit per position; each logit judges one ``receptive_field``-pixel patch (70 for ``layers=3``, the
    paper's default; 16 for 1). ``condition_channels=C`` judges pairs: the source image (C channels, same
    size) is stacked on the judged image, as pix2pix's D sees (input, output)."""

    def __init__(
        self,
        channels: int = 1,
        condition_channels: int = 0,
        width: int = 64,
        layers: int = 3,
        max_width: int = 512,
        norm: str = "batch",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ConfigError(f"PatchDiscriminator: layers must be >= 1, got {layers}")
        self.condition_channels = condition_channels
        widths = [min(width * 2**i, max_width) for i in range(layers + 1)]
        body: list[nn.Module] = [nn.Conv2d(channels + condition_channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for i in range(1, layers + 1):
            stride = 2 if i < layers else 1
            body += [
                nn.Conv2d(widths[i - 1], widths[i], 4, stride, 1, bias=norm == "none"),
                norm_layer(norm, widths[i]),
                nn.LeakyReLU(0.2),
            ]
        body.append(nn.Conv2d(widths[-1], 1, 4, 1, 1))
        self.net = nn.Sequential(*body)
        self.apply(dcgan_init)
        if spectral_norm:
            spectral_normalize(self)

    @property
    def receptive_field(self) -> int:
        """Side of the input patch one logit sees: back through the convolutions, ``r -> (r - 1) s + k``."""
        field = 1
        for layer in reversed([m for m in self.net if isinstance(m, nn.Conv2d)]):
            kernel, stride = layer.kernel_size[0], layer.stride[0]
            field = (field - 1) * stride + kernel
        return field

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, h, w); ``y`` is the source image when the D judges pairs."""
        if self.condition_channels:
            if y is None or y.shape[1] != self.condition_channels:
                raise ConfigError(
                    f"this PatchGAN judges (source, image) pairs and needs a {self.condition_channels}-channel source"
                )
            x = torch.cat([y, x], dim=1)
        return self.net(x)[:, 0]


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with norm, an activation between them, plus the input: SRGAN's block (BatchNorm,
    PReLU, zero padding) and CycleGAN's (instance norm, ReLU, ``padding_mode="reflect"``)."""

    def __init__(
        self,
        channels: int,
        norm: str = "batch",
        prelu: bool = True,
        padding_mode: Literal["zeros", "reflect"] = "zeros",
    ) -> None:
        super().__init__()
        conv = partial(nn.Conv2d, channels, channels, 3, 1, 1, padding_mode=padding_mode)
        self.body = nn.Sequential(
            conv(), norm_layer(norm, channels), nn.PReLU(channels) if prelu else nn.ReLU(), conv(),
            norm_layer(norm, channels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNetGenerator(nn.Module):
    """SRGAN's generator (SRResNet): a 9x9 convolution, ``blocks`` residual blocks with a long skip around
    them, then ``log2(scale)`` sub-pixel upsampling steps (conv to 4x channels, PixelShuffle(2), PReLU) and a
    9x9 convolution to the image (tanh: images live in [-1, 1] here). The same net trains as SRResNet (pixel
    loss only, ``game.adversarial=false``) or as SRGAN's generator."""

    def __init__(
        self, channels: int = 1, resolution: int = 28, scale: int = 4, width: int = 64, blocks: int = 16,
        norm: str = "batch",
    ) -> None:  # fmt: skip
        super().__init__()
        steps = int(math.log2(scale))
        if scale < 2 or 2**steps != scale or resolution % scale:
            raise ConfigError(f"SRResNetGenerator: scale={scale} must be a power of 2 dividing resolution {resolution}")
        self.source_shape = (channels, resolution // scale, resolution // scale)
        self.head = nn.Sequential(nn.Conv2d(channels, width, 9, 1, 4), nn.PReLU(width))
        self.body = nn.Sequential(
            *(ResidualBlock(width, norm) for _ in range(blocks)),
            nn.Conv2d(width, width, 3, 1, 1),
            norm_layer(norm, width),
        )
        upsample: list[nn.Module] = []
        for _ in range(steps):
            upsample += [nn.Conv2d(width, 4 * width, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU(width)]
        self.tail = nn.Sequential(*upsample, nn.Conv2d(width, channels, 9, 1, 4), nn.Tanh())

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        h = self.head(source)
        return self.tail(h + self.body(h))


class ResnetGenerator(nn.Module):
    """CycleGAN's generator (Zhu et al. 2017, after Johnson et al. 2016): a 7x7 convolution, ``downsamplings``
    stride-2 convolutions, ``blocks`` residual blocks, as many transposed convolutions back up and a 7x7
    convolution to the image; reflection padding, instance norm, ReLU, tanh output (the paper's
    c7s1-64, d128, d256, R256 x 9, u128, u64, c7s1-3 for ``width=64``, ``blocks=9``)."""

    def __init__(
        self, in_channels: int = 1, channels: int = 1, resolution: int = 28, width: int = 64, blocks: int = 9,
        downsamplings: int = 2, norm: str = "instance",
    ) -> None:  # fmt: skip
        super().__init__()
        if resolution % 2**downsamplings:
            raise ConfigError(f"ResnetGenerator: resolution {resolution} does not halve {downsamplings} times")
        self.source_shape = (in_channels, resolution, resolution)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 7, 1, 3, padding_mode="reflect"), norm_layer(norm, width), nn.ReLU(),
        ]  # fmt: skip
        for i in range(downsamplings):
            c = width * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, 2, 1), norm_layer(norm, 2 * c), nn.ReLU()]
        inner = width * 2**downsamplings
        layers += [ResidualBlock(inner, norm, prelu=False, padding_mode="reflect") for _ in range(blocks)]
        for i in reversed(range(downsamplings)):
            c = width * 2**i
            layers += [nn.ConvTranspose2d(2 * c, c, 3, 2, 1, output_padding=1), norm_layer(norm, c), nn.ReLU()]
        layers += [nn.Conv2d(width, channels, 7, 1, 3, padding_mode="reflect"), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        return self.net(source)
