"""Games with an encoder E: x -> z beside the generator: BiGAN/ALI, the adversarial autoencoder, VAE-GAN.

The encoder is a player on G's side (it trains with G's optimizer, in the G step) and a net the config
builds (``game.encoder``, usually a DCGAN discriminator with ``outputs`` numbers per image), so that
``ganforge-encode`` can rebuild it from a checkpoint alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.games import Game

if TYPE_CHECKING:
    from ganforge.module import GANModule


class EncoderGame(Game):
    """A game whose encoder maps images to the generator's codes: :meth:`encode` and :meth:`reconstruct`."""

    allows_conditional = False

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def generator_side(self) -> list[nn.Module]:
        return [self.encoder]

    def encoder_outputs(self, gan: GANModule) -> int:
        """How many numbers per image the encoder must give for the module's generator."""
        return gan.latent_dim

    def bind(self, gan: GANModule) -> None:
        super().bind(gan)
        expected, got = self.encoder_outputs(gan), getattr(self.encoder, "outputs", None)
        if got is not None and got != expected:
            raise ConfigError(
                f"game {type(self).__name__}: the encoder gives {got} numbers per image, but this generator needs "
                f"{expected}; set game.encoder.outputs={expected}"
            )

    def encode(self, generator: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The code of each image (deterministic), as ``generator`` reads it."""
        return self.encoder(x)

    def decode(self, generator: nn.Module, code: torch.Tensor) -> torch.Tensor:
        """The images ``generator`` draws for codes as :meth:`encode` gives them."""
        return generator(code)

    def reconstruct(self, generator: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``G(E(x))``: the images as the generator redraws them from their codes."""
        return self.decode(generator, self.encode(generator, x))
