"""The adversarial autoencoder (Makhzani et al. 2016): an autoencoder whose codes a D matches to a prior.

The encoder E and the decoder (the module's generator) minimize the reconstruction error of ``G(E(x))``;
a D on codes tells draws of the prior ("real") from codes ``E(x)`` ("generated"), and E also plays G's
adversarial side against it, so that the codes of the data fill the prior and ``G(z)``, z from the prior,
draws new images (the module's samples and metrics, unchanged).

With a :class:`~ganforge.games.infogan.CodedGenerator` the code is its net's input, ``[style, one-hot
categories]``: E's categorical part goes through a softmax, the prior is the generator's own (a standard
normal style and a uniform one-hot category), and D judges both parts jointly, which makes the category
an unsupervised clustering of the data (the paper's section 5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.games import Round
from ganforge.games.encoders import EncoderGame
from ganforge.games.infogan import CodedGenerator

if TYPE_CHECKING:
    from ganforge.module import GANModule


def squared_error(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample sum of squared errors, averaged over the batch: ``-log`` of a unit Gaussian likelihood, x2,
    up to a constant; the reconstruction terms' weight sets the Gaussian's variance."""
    return (x - target).square().flatten(1).sum(dim=1).mean()


class AdversarialAutoencoder(EncoderGame):
    """D judges codes: draws of the prior as real, ``E(x)`` as generated; G's side adds
    ``reconstruction_weight * squared_error(G(E(x)), x)``."""

    judges_images = False

    def __init__(self, encoder: nn.Module, reconstruction_weight: float = 1.0) -> None:
        super().__init__(encoder)
        self.reconstruction_weight = reconstruction_weight

    def encoder_outputs(self, gan: GANModule) -> int:
        generator = gan.generator
        return generator.net_input_dim if isinstance(generator, CodedGenerator) else gan.latent_dim

    def bind(self, gan: GANModule) -> None:
        super().bind(gan)
        if isinstance(gan.generator, CodedGenerator) and gan.generator.continuous:
            raise ConfigError(
                "game=aae takes categorical codes only (a softmax per code), got continuous codes; set "
                "model.generator.continuous=0"
            )

    def encode(self, generator: nn.Module, x: torch.Tensor) -> torch.Tensor:
        code = self.encoder(x)
        if not isinstance(generator, CodedGenerator):
            return code
        style, categories = code.split([generator.noise_dim, sum(generator.categorical)], dim=1)
        return torch.cat([style, *(c.softmax(dim=1) for c in categories.split(generator.categorical, dim=1))], 1)

    def clusters(self, generator: CodedGenerator, x: torch.Tensor) -> torch.Tensor:
        """Each image's most likely value of categorical code 0: its unsupervised cluster."""
        first = generator.noise_dim
        return self.encode(generator, x)[:, first : first + generator.categorical[0]].argmax(dim=1)

    def decode(self, generator: nn.Module, code: torch.Tensor) -> torch.Tensor:
        return generator.net(code) if isinstance(generator, CodedGenerator) else generator(code)

    def play(self, gan: GANModule, real: torch.Tensor, labels: torch.Tensor) -> Round:
        generator, z = gan.generator, gan.sample_latent(real.shape[0])
        prior = generator.net_input(z) if isinstance(generator, CodedGenerator) else z
        code = self.encode(generator, real)
        return Round(real=prior, fake=code, saved={"x": real, "reconstruction": self.decode(generator, code)})

    def g_terms(self, gan: GANModule, round: Round) -> dict[str, torch.Tensor]:
        error = squared_error(round.saved["reconstruction"], round.saved["x"])
        return {"reconstruction": self.reconstruction_weight * error}
