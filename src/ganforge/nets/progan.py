"""Progressive GAN generator and discriminator (Karras et al., 2018): grown from 4x4 to full resolution.

Both nets are built at full size up front; which blocks take part is set by :meth:`set_progress`
(``stage`` 0 is the base resolution, each further stage doubles it; ``alpha`` in [0, 1] fades the
newest block in). Stage and alpha travel in the nets' state dict (``get_extra_state``), so a
checkpointed generator samples at the stage it was trained to. What sets them during training is
the schedule in :mod:`ganforge.progressive`.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ganforge.errors import ConfigError
from ganforge.nets.layers import base_resolution, level_widths


class HeScale(nn.Module):
    """Weight parametrization of the equalized learning rate: the stored weight is N(0, 1) and is scaled
    by He's constant ``gain / sqrt(fan_in)`` at every use, so Adam's step size is the same for every layer.

    A learning-rate multiplier ``lr_mul`` (StyleGAN's mapping network, Karras et al. 2019) stores the
    weight as N(0, 1 / lr_mul) and scales it by ``lr_mul`` more: the same weight at initialisation,
    but an optimizer step on the stored value moves the used one ``lr_mul`` times as far.
    """

    def __init__(self, fan_in: int, gain: float = math.sqrt(2.0), lr_mul: float = 1.0) -> None:
        super().__init__()
        self.scale = gain * lr_mul / math.sqrt(fan_in)  # gain * 1.0 is gain: unchanged scale when lr_mul=1

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.scale


Layer = TypeVar("Layer", nn.Conv2d, nn.Linear)


def equalized(layer: Layer, gain: float = math.sqrt(2.0), lr_mul: float = 1.0) -> Layer:
    """``layer`` with N(0, 1) weights, zero bias and the equalized-learning-rate parametrization.

    With ``lr_mul != 1`` the stored weights are N(0, 1 / lr_mul) and the bias is scaled by ``lr_mul`` at
    every use as well (:class:`HeScale`); ``lr_mul=1`` leaves the bias plain, as ProGAN's checkpoints hold it.
    """
    nn.init.normal_(layer.weight, std=1.0 / lr_mul)  # std 1.0 exactly when lr_mul=1: the same draws as before
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
        if lr_mul != 1.0:
            # fan-in 1 and gain 1: the stored bias times lr_mul
            parametrize.register_parametrization(layer, "bias", HeScale(1, gain=1.0, lr_mul=lr_mul))
    parametrize.register_parametrization(layer, "weight", HeScale(layer.weight[0].numel(), gain, lr_mul))
    return layer


def conv(c_in: int, c_out: int, kernel: int, gain: float = math.sqrt(2.0)) -> nn.Conv2d:
    return equalized(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2), gain)


class PixelNorm(nn.Module):
    """Pixelwise feature normalization: each position's feature vector scaled to unit mean square."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class MinibatchStdDev(nn.Module):
    """Appends one feature map: the standard deviation of each feature over a group of ``group_size``
    samples, averaged over features and positions, so D can see how varied a batch is.

    Sample ``i`` belongs to group ``i % (N / group_size)`` (the original's reshape); a batch smaller
    than ``group_size`` is one group.
    """

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        if n % g:
            raise ValueError(f"the minibatch-stddev layer needs a batch divisible by {g}, got {n}")
        groups = x.reshape(g, n // g, c, h, w)
        std = (groups.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # one value per group
        return torch.cat([x, std.repeat(g).reshape(n, 1, 1, 1).expand(n, 1, h, w)], dim=1)


class Growing(nn.Module):
    """Stage and fade-in state shared by the progressive nets (keyword arguments it does not take go on to the
    next class of a subclass's bases: StyleGAN's generator is also a style-based generator)."""

    def __init__(self, resolution: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolution = resolution
        self.base, self.max_stage = base_resolution(resolution)
        self.stage = self.max_stage
        self.alpha = 1.0

    def set_progress(self, stage: int, alpha: float) -> None:
        if not 0 <= stage <= self.max_stage:
            raise ValueError(f"stage must be in [0, {self.max_stage}], got {stage}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.stage, self.alpha = stage, float(alpha)

    @property
    def output_resolution(self) -> int:
        """The resolution of the current stage: ``base * 2**stage``."""
        return self.base * 2**self.stage

    def fading(self) -> bool:
        return self.stage > 0 and self.alpha < 1.0

    def get_extra_state(self) -> dict[str, Any]:
        return {"stage": self.stage, "alpha": self.alpha}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.set_progress(state["stage"], state["alpha"])


def _refuse_labels(num_classes: int | None) -> None:
    if num_classes is not None:
        raise ConfigError(
            "model=progan is unconditional; set model.conditional=false, or use model=sagan or model=dcgan "
            "for a class-conditional GAN"
        )


class ProGANGenerator(Growing):
    """z -> pixel norm -> ``base x base`` block, then one block per stage (nearest 2x upsampling and two
    3x3 convolutions, LeakyReLU(0.2), pixel norm after each), with a 1x1 toRGB per stage; linear output.

    While a stage fades in, the output is ``lerp(upsample(toRGB_prev(h_prev)), toRGB(block(h_prev)), alpha)``,
    so at ``alpha=0`` it equals the previous stage's output upsampled. Output is at
    :attr:`output_resolution`; :func:`ganforge.generation.generate_batches` brings it to the full resolution.
    """

    def __init__(
        self,
        latent_dim: int = 128,
        channels: int = 1,
        resolution: int = 32,
        width: int = 32,
        max_width: int = 256,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(resolution)
        _refuse_labels(num_classes)
        self.latent_dim = latent_dim
        widths = level_widths(width, self.max_stage, max_width)
        act = [nn.LeakyReLU(0.2), PixelNorm()]
        first = equalized(nn.Linear(latent_dim, widths[0] * self.base**2), gain=math.sqrt(2.0) / 4)
        blocks = [nn.Sequential(PixelNorm(), first, nn.Unflatten(1, (widths[0], self.base, self.base)), *act)] + [
            nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), conv(c_in, c_out, 3), *act)
            for c_in, c_out in pairwise(widths)
        ]
        for block, c in zip(blocks, widths, strict=True):
            block.extend([conv(c, c, 3), nn.LeakyReLU(0.2), PixelNorm()])
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = nn.ModuleList(conv(c, channels, 1, gain=1.0) for c in widths)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = z.reshape(z.shape[0], self.latent_dim)
        for block in self.blocks[: self.stage]:
            h = block(h)
        out = self.to_rgb[self.stage](self.blocks[self.stage](h))
        if self.fading():
            previous = F.interpolate(self.to_rgb[self.stage - 1](h), scale_factor=2.0, mode="nearest")
            out = torch.lerp(previous, out, self.alpha)
        return out


class ProGANDiscriminator(Growing):
    """A 1x1 fromRGB per stage, one block per stage (two 3x3 convolutions, LeakyReLU(0.2), 2x average
    pooling) from the current resolution down, then minibatch standard deviation, a 3x3 and a
    ``base x base`` convolution and a linear layer to one logit.

    While a stage fades in, the new block's output is blended with ``fromRGB_prev(avgpool(x))``; at
    ``alpha=0`` D is the previous stage's D applied to ``x`` downsampled. :meth:`prepare_real` brings
    full-resolution real images to the input D expects now.
    """

    def __init__(
        self,
        channels: int = 1,
        resolution: int = 32,
        width: int = 32,
        max_width: int = 256,
        group_size: int = 4,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(resolution)
        _refuse_labels(num_classes)
        widths = level_widths(width, self.max_stage, max_width)
        self.from_rgb = nn.ModuleList(nn.Sequential(conv(channels, c, 1), nn.LeakyReLU(0.2)) for c in widths)
        c0 = widths[0]
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(
                    MinibatchStdDev(group_size),
                    conv(c0 + 1, c0, 3),
                    nn.LeakyReLU(0.2),
                    equalized(nn.Conv2d(c0, c0, self.base)),
                    nn.LeakyReLU(0.2),
                    nn.Flatten(),
                    equalized(nn.Linear(c0, 1), gain=1.0),
                )
            ]
            + [
                nn.Sequential(conv(c, c, 3), nn.LeakyReLU(0.2), conv(c, c_out, 3), nn.LeakyReLU(0.2), nn.AvgPool2d(2))
                for c_out, c in pairwise(widths)
            ]
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.blocks[self.stage](self.from_rgb[self.stage](x))
        if self.fading():
            h = torch.lerp(self.from_rgb[self.stage - 1](F.avg_pool2d(x, 2)), h, self.alpha)
        for block in reversed(self.blocks[: self.stage]):
            h = block(h)
        return h.flatten()

    def prepare_real(self, real: torch.Tensor) -> torch.Tensor:
        """Full-resolution reals as the current stage sees them: average-pooled to :attr:`output_resolution`
        and, while fading, blended with their half-resolution version upsampled (as G's output is)."""
        factor = real.shape[-1] // self.output_resolution
        if real.shape[-1] != factor * self.output_resolution:
            raise ValueError(f"real images of size {real.shape[-1]} do not reduce to {self.output_resolution}")
        real = F.avg_pool2d(real, factor) if factor > 1 else real
        if self.fading():
            coarse = F.interpolate(F.avg_pool2d(real, 2), scale_factor=2.0, mode="nearest")
            real = torch.lerp(coarse, real, self.alpha)
        return real
