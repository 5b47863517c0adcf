"""BiGAN's / ALI's discriminator: one logit for an (image, latent code) pair."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from ganforge.errors import ConfigError


def _block(n_in: int, n_out: int, dropout: float) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2, inplace=True), nn.Dropout(dropout)]


class JointDiscriminator(nn.Module):
    """D(x, z) (Donahue et al. 2017; Dumoulin et al. 2017): the image through a conv trunk's ``features``, the
    code through an MLP, and an MLP on both joined. Dropout in the joint layers, as in ALI, keeps D from
    memorizing the pairs.

    ``image`` is any discriminator with ``features(x)`` and ``num_features`` (a DCGAN D with ``outputs=0``).
    """

    def __init__(self, image: nn.Module, latent_dim: int, hidden: int = 512, dropout: float = 0.2) -> None:
        super().__init__()
        if not hasattr(image, "features") or not hasattr(image, "num_features"):
            raise ConfigError(
                f"JointDiscriminator reads its image net's features(), which {type(image).__name__} does not have; "
                "use a DCGANDiscriminator (outputs: 0)"
            )
        self.image = image
        self.latent = nn.Sequential(*_block(latent_dim, hidden, dropout))
        self.joint = nn.Sequential(
            *_block(cast(int, image.num_features) + hidden, hidden, dropout), nn.Linear(hidden, 1)
        )
        self.num_features = hidden

    def features(self, pair: tuple[torch.Tensor, torch.Tensor], y: torch.Tensor | None = None) -> torch.Tensor:
        x, z = pair
        image = self.image.features(x)  # type: ignore[operator]  # checked in __init__
        return self.joint[:-1](torch.cat([image, self.latent(z.flatten(1))], dim=1))

    def forward(self, pair: tuple[torch.Tensor, torch.Tensor], y: torch.Tensor | None = None) -> torch.Tensor:
        return self.joint[-1](self.features(pair)).flatten()
