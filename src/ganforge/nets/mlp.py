"""Multilayer perceptrons (Goodfellow et al., 2014), the nets of the 2-D mode-collapse benchmark.

They work on vectors (``resolution=None``: 2-D toy mixtures) and on flattened images.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.nets.conditioning import label_code
from ganforge.nets.layers import sample_shape, spectral_normalize


class Maxout(nn.Module):
    """Maxout unit (Goodfellow et al., 2013): the max over ``pieces`` linear maps."""

    def __init__(self, in_features: int, out_features: int, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], -1, self.pieces).amax(dim=-1)


class MLPGenerator(nn.Module):
    """``depth`` hidden ReLU layers of ``width`` units (BatchNorm optional); linear output for
    vectors, tanh for images.

    ``latent_categories=K`` turns the first latent coordinate into a one-hot code of K equally
    likely values (:func:`categorical_code`), a discrete mixture prior: a net fed only a connected
    latent must join separate modes by a bridge of samples, a discrete code lets it jump
    (DeLiGAN, Gurumurthy et al. 2017; Khayatkhoei et al. 2018).

    ``num_classes=K`` makes it class-conditional: the one-hot label is appended to the input
    vector (after the categorical code), so ``forward(z, y)`` draws from class ``y``.
    """

    def __init__(
        self,
        latent_dim: int = 2,
        channels: int = 2,
        resolution: int | None = None,
        width: int = 400,
        depth: int = 4,
        batch_norm: bool = True,
        spectral_norm: bool = False,
        latent_categories: int = 0,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.latent_categories = latent_categories
        self.num_classes = num_classes
        self.shape = sample_shape(channels, resolution)
        n_in = latent_dim - 1 + latent_categories if latent_categories else latent_dim
        n_in += num_classes or 0
        if latent_categories and latent_dim < 1:
            raise ConfigError(
                f"model.generator.latent_categories={latent_categories} needs model.generator.latent_dim >= 1 (its "
                f"first coordinate becomes the code), got {latent_dim}; raise latent_dim or set latent_categories=0"
            )
        layers: list[nn.Module] = []
        for i in range(depth):
            layers.append(nn.Linear(n_in if i == 0 else width, width))
            layers += [nn.BatchNorm1d(width)] if batch_norm else []
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Linear(width if depth else n_in, math.prod(self.shape)))
        layers += [nn.Tanh()] if resolution is not None else []
        self.net = nn.Sequential(*layers)
        if spectral_norm:
            spectral_normalize(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = z.flatten(1)
        if self.latent_categories:
            z = torch.cat([categorical_code(z[:, 0], self.latent_categories), z[:, 1:]], dim=1)
        if self.num_classes:
            z = torch.cat([z, label_code(y, self.num_classes, z)], dim=1)
        return self.net(z).view(z.shape[0], *self.shape)


def categorical_code(z0: torch.Tensor, categories: int) -> torch.Tensor:
    """One-hot codes from standard-normal values: the normal CDF of ``z0`` cut into ``categories``
    equal bins, so the codes are uniform and a seeded latent still fixes the sample."""
    index = (torch.special.ndtr(z0) * categories).long().clamp_(0, categories - 1)
    return nn.functional.one_hot(index, categories).to(z0.dtype)


class MLPDiscriminator(nn.Module):
    """``depth`` hidden layers of ``width`` units: maxout with ``maxout`` pieces, or
    LeakyReLU(0.2) when ``maxout=1``; one logit per sample. With ``num_classes=K`` the one-hot
    label is appended to the flattened input, so D judges (sample, label) pairs."""

    def __init__(
        self,
        channels: int = 2,
        resolution: int | None = None,
        width: int = 200,
        depth: int = 3,
        maxout: int = 5,
        batch_norm: bool = False,
        spectral_norm: bool = False,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        in_features = math.prod(sample_shape(channels, resolution)) + (num_classes or 0)
        layers: list[nn.Module] = []
        for i in range(depth):
            n_in = in_features if i == 0 else width
            if maxout > 1:
                layers.append(Maxout(n_in, width, maxout))
            else:
                layers += [nn.Linear(n_in, width), nn.LeakyReLU(0.2, inplace=True)]
            layers += [nn.BatchNorm1d(width)] if batch_norm else []
        layers.append(nn.Linear(width if depth else in_features, 1))
        self.net = nn.Sequential(*layers)
        if spectral_norm:
            spectral_normalize(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = x.flatten(1)
        if self.num_classes:
            x = torch.cat([x, label_code(y, self.num_classes, x)], dim=1)
        return self.net(x).flatten()
