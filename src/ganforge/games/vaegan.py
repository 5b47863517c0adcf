"""VAE-GAN (Larsen et al. 2016): a VAE whose decoder is also the GAN's generator, with the reconstruction
error measured in D's features (a learned similarity) instead of pixels.

The encoder gives a Gaussian posterior ``q(z | x)`` (mean and log-variance); G decodes a draw of it, and
the G side (encoder and decoder, one optimizer) adds the KL divergence to the standard normal prior and the
reconstruction error. D judges real images against ``G(z)`` for prior draws z, as in the plain game, and G
also plays that game, which is what sharpens the samples.

Two settings of the same game make its baselines: ``similarity=pixels`` measures reconstruction in pixels,
and ``adversarial=false`` drops D altogether (no D step, no adversarial loss): the plain VAE
(``experiment=fmnist_vae``), which therefore takes more steps at equal wall time.

Deviation from the paper, stated: D is shown prior samples only, not also the reconstructions, so that
real and generated batches pair up row by row as the penalties expect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.games import Round
from ganforge.games.aae import squared_error
from ganforge.games.encoders import EncoderGame

if TYPE_CHECKING:
    from ganforge.module import GANModule

SIMILARITIES = ("features", "pixels")


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, exp(log_var)) || N(0, I))`` per sample, summed over the latent, averaged over the batch."""
    return (0.5 * (mean.square() + log_var.exp() - 1 - log_var)).sum(dim=1).mean()


class VAEGAN(EncoderGame):
    """G's side: ``kl_weight * KL + reconstruction_weight * squared_error`` of ``G(z ~ q(z | x))`` against ``x``,
    in D's features or in pixels, plus (``adversarial=true``) the GAN loss of ``G(z ~ N(0, I))``."""

    def __init__(
        self,
        encoder: nn.Module,
        kl_weight: float = 1.0,
        reconstruction_weight: float = 1.0,
        similarity: str = "features",
        adversarial: bool = True,
    ) -> None:
        super().__init__(encoder)
        if similarity not in SIMILARITIES:
            raise ConfigError(f"game.similarity must be one of {SIMILARITIES}, got {similarity!r}")
        if similarity == "features" and not adversarial:
            raise ConfigError(
                "game.similarity=features measures reconstruction in D's features, but game.adversarial=false "
                "trains no D; use game.similarity=pixels for the VAE baseline"
            )
        self.kl_weight, self.reconstruction_weight = kl_weight, reconstruction_weight
        self.similarity, self.adversarial = similarity, adversarial

    def encoder_outputs(self, gan: GANModule) -> int:
        return 2 * gan.latent_dim  # mean and log-variance

    def bind(self, gan: GANModule) -> None:
        super().bind(gan)
        if self.similarity == "features" and not hasattr(gan.discriminator, "features"):
            raise ConfigError(
                f"game.similarity=features reads D's features(), which {type(gan.discriminator).__name__} does not "
                "have; use a DCGAN discriminator or game.similarity=pixels"
            )

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``q(z | x)``."""
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        return mean, log_var

    def encode(self, generator: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def play(self, gan: GANModule, real: torch.Tensor, labels: torch.Tensor) -> Round:
        mean, log_var = self.posterior(real)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()  # the reparameterization trick
        reconstruction = gan.generator(z)
        fake = gan.generator(gan.sample_latent(real.shape[0])) if self.adversarial else reconstruction
        saved = {"reconstruction": reconstruction, "mean": mean, "log_var": log_var}
        return Round(real=real, fake=fake, saved=saved)

    def g_terms(self, gan: GANModule, round: Round) -> dict[str, torch.Tensor]:
        assert isinstance(round.real, torch.Tensor)
        reconstruction, real = round.saved["reconstruction"], round.real
        if self.similarity == "features":
            features = gan.discriminator.features  # D's weights are frozen in the G step
            reconstruction, real = features(reconstruction), features(real).detach()  # type: ignore[operator]
        return {
            "kl": self.kl_weight * gaussian_kl(round.saved["mean"], round.saved["log_var"]),
            "reconstruction": self.reconstruction_weight * squared_error(reconstruction, real),
        }
