"""Flow-GAN (Grover et al. 2018): G is a normalizing flow (``model=flow``), so the exact likelihood of the real
batch can join G's loss beside the adversarial game. The paper's three objectives are settings of this game:

- adversarial only (``likelihood_weight=0``, the default): a GAN whose G happens to be invertible;
- maximum likelihood only (``adversarial=false``): no D and no D step, G trained on the likelihood alone;
- hybrid: the adversarial loss plus ``likelihood_weight`` x the real batch's bits per dimension.

The likelihood term is in bits per dimension (``FlowGenerator.bits_per_dim``: the dequantized, logit-transformed
density as every flow paper reports it), so its weight does not change meaning with the image size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ganforge.errors import ConfigError
from ganforge.games import Game, Round

if TYPE_CHECKING:
    from ganforge.module import GANModule


class FlowGAN(Game):
    allows_conditional = False
    option = "flowgan"

    def __init__(self, likelihood_weight: float = 0.0, adversarial: bool = True) -> None:
        super().__init__()
        if likelihood_weight < 0:
            raise ConfigError(f"game.likelihood_weight must be >= 0, got {likelihood_weight}")
        if not adversarial and likelihood_weight == 0:
            raise ConfigError(
                "game.adversarial=false leaves only the likelihood to train on: set game.likelihood_weight > 0"
            )
        self.likelihood_weight, self.adversarial = likelihood_weight, adversarial

    def bind(self, gan: GANModule) -> None:
        super().bind(gan)
        if not hasattr(gan.generator, "bits_per_dim"):
            raise ConfigError(
                f"game=flowgan needs G's exact likelihood, which {type(gan.generator).__name__} has not: use model=flow"
            )

    def play(self, gan: GANModule, real: torch.Tensor, labels: torch.Tensor) -> Round:
        if self.adversarial:
            return super().play(gan, real, labels)
        return Round(real=real, fake=real)  # maximum likelihood: nothing is generated, nothing judged

    def g_terms(self, gan: GANModule, round: Round) -> dict[str, torch.Tensor]:
        if not self.likelihood_weight:
            return {}
        assert isinstance(round.real, torch.Tensor)
        bits = gan.generator.bits_per_dim(round.real)  # type: ignore[operator]  # bind checked it
        return {"nll": self.likelihood_weight * bits.mean()}
