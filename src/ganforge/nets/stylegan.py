"""StyleGAN's generator (Karras et al., 2019, "A Style-Based Generator Architecture for Generative Adversarial
Networks"); its discriminator is Progressive GAN's (:class:`~ganforge.nets.progan.ProGANDiscriminator`).

StyleGAN2's generator (:mod:`.stylegan2`) is this one with three things changed, and the code keeps the rest in
one place: the mapping network (8 layers, learning rate x0.01), ``w_avg`` and truncation in W (``psi`` on the first
``truncation_cutoff`` ws), style mixing and the noise modes are :class:`~.stylegan2.StyleBasedGenerator`'s; a layer
is :class:`~.stylegan2.SynthesisLayer` with the ``adain`` style block (a plain convolution, noise with a learned
strength per channel, bias, LeakyReLU, then :class:`~.stylegan2.AdaIN`) where StyleGAN2 modulates and demodulates
the weights. What is StyleGAN's own here: progressive growing (ProGAN's schedule, :mod:`ganforge.progressive`: a
1x1 toRGB per resolution, the new one faded in over the old one's output upsampled, as ProGAN's generator does),
no skip connections, and the learned constant input initialised to ones.

Resampling: the paper upsamples by nearest neighbour and blurs with [1, 2, 1] after the convolution; that is
bilinear interpolation, the same linear map as StyleGAN2's upsampling (zeros between the pixels and the [1, 3, 3,
1] filter, :func:`~.stylegan2.upsample2`) before the convolution, up to the border, and is computed that way. One
simplification: the first layer on the 4x4 constant has a 3x3 convolution (as in StyleGAN2), where the paper's has
only noise, bias and AdaIN.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import ConfigError
from ganforge.nets.layers import base_resolution, level_widths
from ganforge.nets.progan import Growing, equalized
from ganforge.nets.stylegan2 import StyleBasedGenerator, SynthesisLayer


class StyleGANGenerator(Growing, StyleBasedGenerator):
    """Mapping ``z -> w`` (:class:`StyleBasedGenerator`, which takes the ``mapping`` keywords), then a synthesis
    network that grows from the ``base x base`` constant: two AdaIN-styled layers per resolution (the first of each
    later resolution upsamples), so ``num_ws`` is 2 per resolution. The output, linear, is at the current stage's
    resolution; :func:`ganforge.generation.generate_batches` brings it to the full one. Unconditional, as its ProGAN
    D is."""

    def __init__(
        self, width: int = 32, max_width: int = 128, channels: int = 3, resolution: int = 32, **mapping: Any
    ) -> None:
        if mapping.get("num_classes") is not None:
            raise ConfigError(
                "model=stylegan is unconditional (its D is Progressive GAN's); set model.conditional=false, or use "
                "model=stylegan2 for a class-conditional style-based GAN"
            )
        base, doublings = base_resolution(resolution)
        super().__init__(resolution=resolution, num_ws=2 * (doublings + 1), **mapping)
        w_dim = self.w_dim
        self.channels = channels
        widths = level_widths(width, doublings, max_width)
        self.const = nn.Parameter(torch.ones(widths[0], base, base))
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                [
                    SynthesisLayer(c_in, c_out, w_dim, base * 2**k, up=k > 0, style="adain"),
                    SynthesisLayer(c_out, c_out, w_dim, base * 2**k, up=False, style="adain"),
                ]
            )
            for k, (c_in, c_out) in enumerate(pairwise([widths[0], *widths]))
        )
        self.to_rgb = nn.ModuleList(equalized(nn.Conv2d(c, channels, 1), gain=1.0) for c in widths)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """``(N, channels, r, r)`` images at the current stage's resolution ``r`` from ``ws`` of shape
        ``(N, num_ws, w_dim)`` (the ws of the resolutions not grown yet are not read)."""
        self.check_ws(ws)
        noise_mode = self._noise_mode()
        x = previous = self.const[None].expand(ws.shape[0], -1, -1, -1)
        for k, block in enumerate(self.blocks[: self.stage + 1]):
            previous = x
            for i, layer in enumerate(cast(nn.ModuleList, block)):
                x = layer(x, ws[:, 2 * k + i], noise_mode)
        image = self.to_rgb[self.stage](x)
        if self.fading():
            coarse = F.interpolate(self.to_rgb[self.stage - 1](previous), scale_factor=2.0, mode="nearest")
            image = torch.lerp(coarse, image, self.alpha)
        return image
