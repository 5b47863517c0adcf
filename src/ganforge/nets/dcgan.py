"""DCGAN generator and discriminator (Radford et al., 2015), sized by the data's resolution."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from itertools import pairwise

import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.nets.conditioning import label_code, label_maps
from ganforge.nets.layers import base_resolution, dcgan_init, spectral_normalize

#: The discriminator's normalization layers, by ``norm``: per batch, or per sample (one group of all channels).
NORMS: dict[str, Callable[[int], nn.Module]] = {"batch": nn.BatchNorm2d, "layer": partial(nn.GroupNorm, 1)}
NORMS_1D: dict[str, Callable[[int], nn.Module]] = {"batch": nn.BatchNorm1d, "layer": partial(nn.GroupNorm, 1)}


class DCGANGenerator(nn.Module):
    """Transposed convolutions with BatchNorm and ReLU, tanh output in [-1, 1].

    z is projected to ``base x base`` (see ``base_resolution``) and doubled until ``resolution``; channels halve
    at each doubling, from ``width * 2**(n-1)`` down to ``width``. With ``num_classes=K`` the
    one-hot label is appended to z before the first layer (conditional GAN, Mirza & Osindero 2014).
    ``hidden=H`` puts a fully connected layer of H units (BatchNorm, ReLU) before the projection, as the
    InfoGAN paper's MNIST generator (FC 1024, FC 7x7x128, two transposed convolutions) has.
    """

    def __init__(
        self,
        latent_dim: int = 100,
        channels: int = 1,
        resolution: int = 28,
        width: int = 64,
        spectral_norm: bool = False,
        num_classes: int | None = None,
        hidden: int = 0,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        base, doublings = base_resolution(resolution)
        widths = [width * 2 ** (doublings - 1 - i) for i in range(doublings)]
        inputs = latent_dim + (num_classes or 0)
        layers: list[nn.Module]
        if hidden:  # nn.Linear: on CPU a 7x7 transposed convolution of a 1x1 input is ~8x slower than the matmul
            layers = [nn.Flatten(), nn.Linear(inputs, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(True)]
            layers += [nn.Linear(hidden, widths[0] * base * base, bias=False), nn.BatchNorm1d(widths[0] * base * base)]
            layers += [nn.ReLU(True), nn.Unflatten(1, (widths[0], base, base))]
        else:
            layers = [
                nn.ConvTranspose2d(inputs, widths[0], base, 1, 0, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
            ]
        for c_in, c_out in pairwise(widths):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)
        if spectral_norm:
            spectral_normalize(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = z.reshape(z.shape[0], self.latent_dim)
        if self.num_classes:
            z = torch.cat([z, label_code(y, self.num_classes, z)], dim=1)
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """Strided convolutions with LeakyReLU(0.2) (normalization after the first), one logit per image.

    ``norm="batch"`` is DCGAN's BatchNorm; ``norm="layer"`` normalizes each sample over its channels and
    positions (``GroupNorm(1, C)``), so that a sample's logit depends on that sample only, as per-sample
    gradient penalties assume (WGAN-GP drops BatchNorm from the critic for this reason).

    With ``num_classes=K`` the one-hot label enters as K constant input channels, so the first
    convolution sees the label at every position.

    ``hidden=H`` adds a fully connected layer of H units (normalized, LeakyReLU) after the convolutions, whose
    activations are then the :meth:`features`: the InfoGAN paper's MNIST discriminator (conv 64, conv 128,
    FC 1024), with its Q head on that layer.

    ``outputs=K`` makes the last layer give K numbers per image instead of one logit: the conv encoder of the
    games that learn one (BiGAN, AAE, VAE-GAN). ``outputs=0`` keeps the trunk only, for a net that reads
    :meth:`features` alone (BiGAN's joint D), so that no parameter goes unused (DDP refuses those).

    ``depth=L`` sets the number of strided convolutions (default: one per halving down to the base resolution,
    e.g. 2 at 28x28); more keep halving past the base (28 -> 14 -> 7 -> 3), so that a narrow D can be as deep as
    PacGAN's stacked-MNIST D (2, 4 and 8 channels: ``width=2 depth=3``). The logit reads the last map whole.
    """

    def __init__(
        self,
        channels: int = 1,
        resolution: int = 28,
        width: int = 64,
        spectral_norm: bool = False,
        num_classes: int | None = None,
        norm: str = "batch",
        outputs: int = 1,
        hidden: int = 0,
        depth: int | None = None,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"model.discriminator.norm must be one of {sorted(NORMS)}, got {norm!r}")
        self.num_classes = num_classes
        base, doublings = base_resolution(resolution)
        if depth is not None:  # each 4x4 convolution of stride 2 and padding 1 halves the side, rounding down
            deepest = resolution.bit_length() - 1
            if not 1 <= depth <= deepest:
                raise ConfigError(
                    f"model.discriminator.depth={depth}: {resolution}x{resolution} images take 1 to {deepest} strided "
                    f"convolutions; set model.discriminator.depth between 1 and {deepest}, or null ({doublings})"
                )
            base, doublings = resolution >> depth, depth
        widths = [width * 2**i for i in range(doublings)]
        layers: list[nn.Module] = [
            nn.Conv2d(channels + (num_classes or 0), widths[0], 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for c_in, c_out in pairwise(widths):
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
                NORMS[norm](c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        features, self.base = widths[-1], base
        if hidden:
            layers += [nn.Flatten(), nn.Linear(features * base * base, hidden, bias=False)]
            layers += [NORMS_1D[norm](hidden), nn.LeakyReLU(0.2, inplace=True)]
            features, self.base = hidden, 1  # the logit: a 1x1 convolution of the hidden units
        self.trunk_layers = len(layers)
        layers += [nn.Conv2d(features, outputs, self.base, 1, 0)] if outputs else []
        self.net = nn.Sequential(*layers)
        self.num_features, self.outputs = features * self.base * self.base, outputs
        self.apply(dcgan_init)
        if spectral_norm:
            spectral_normalize(self)

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(N, num_features): the last hidden layer, flattened (what the logit reads; InfoGAN's Q head and
        VAE-GAN's learned similarity read it too)."""
        trunk = self.net[: self.trunk_layers]
        return trunk(label_maps(y, self.num_classes, x) if self.num_classes else x).flatten(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """One logit per image, (N,); with ``outputs=K > 1``, (N, K)."""
        if not self.outputs:
            raise ConfigError("this DCGANDiscriminator has outputs=0 (a trunk): read its features() instead")
        out = self.net[-1](self.features(x, y).view(x.shape[0], -1, self.base, self.base)).flatten(1)
        return out.flatten() if self.outputs == 1 else out
