"""Image-to-image games: G maps a source image (the batch's second part, ``ganforge.data.paired``) to an image
of the target domain, and D judges its outputs against the targets.

- :class:`Pix2Pix` (Isola et al. 2017): D judges (source, image) pairs; G adds ``l1_weight * |G(x) - y|``.
- :class:`SRGAN` (Ledig et al. 2017): D judges images alone; G adds a content loss (pixels, or a fixed
  feature network's features) and weighs the adversarial loss by ``adversarial_weight`` (1e-3 in the paper).

``adversarial=false`` drops D (no D step, no adversarial loss) and leaves each game's baseline: the L1-only
U-Net of pix2pix's ablation, and SRResNet. Each baseline is the same net trained by the same loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.augment import Augmentation
from ganforge.errors import ConfigError
from ganforge.games import Game, Judge, Round
from ganforge.objectives import Objective

if TYPE_CHECKING:
    from ganforge.module import GANModule

CONTENTS = ("pixels", "features")


class Translation(Game):
    """A game whose generator reads a source image, ``G(source)``, instead of noise."""

    allows_conditional = False

    def __init__(self, adversarial: bool = True) -> None:
        super().__init__()
        self.adversarial = adversarial

    def bind(self, gan: GANModule) -> None:
        super().bind(gan)
        name = type(self).__name__
        if not hasattr(gan.generator, "source_shape"):
            raise ConfigError(
                f"game {name} needs a generator that reads images (model=pix2pix or model=srgan), got "
                f"{type(gan.generator).__name__}"
            )
        if len(gan.g_regularizers):
            raise ConfigError(
                f"game {name}: G regularizers draw latents, which G does not read; set loss.g_regularizers={{}}"
            )

    def play(self, gan: GANModule, real: torch.Tensor, labels: torch.Tensor) -> Round:
        return Round(real=real, fake=gan.generator(labels), saved={"source": labels})


class Pix2Pix(Translation):
    """D judges ``(source, target)`` against ``(source, G(source))``; G also pays ``l1_weight`` times the mean
    absolute error to the target (100 in the paper)."""

    def __init__(self, l1_weight: float = 100.0, adversarial: bool = True) -> None:
        super().__init__(adversarial)
        self.l1_weight = l1_weight

    def condition(self, gan: GANModule, labels: torch.Tensor) -> torch.Tensor | None:
        return labels  # the source image: a conditional D

    def bind(self, gan: GANModule) -> None:
        super().bind(gan)
        if type(gan.augment) is not Augmentation:
            raise ConfigError(
                "game pix2pix: D judges (source, image) pairs, and augmenting the image alone would break the pair; "
                "set augment=null"
            )
        if gan.pack > 1:
            raise ConfigError("game pix2pix: D judges one pair at a time; set model.pack=1")
        wanted = gan.generator.source_shape[0]  # type: ignore[index]  # Translation.bind checked it
        given = getattr(gan.discriminator, "condition_channels", None)
        if self.adversarial and given != wanted:
            raise ConfigError(
                f"game pix2pix: D must judge (source, image) pairs of {wanted}-channel sources, but "
                f"{type(gan.discriminator).__name__} reads {given}; set model.discriminator.condition_channels={wanted}"
            )

    def g_terms(self, gan: GANModule, round: Round) -> dict[str, torch.Tensor]:
        assert isinstance(round.fake, torch.Tensor) and isinstance(round.real, torch.Tensor)
        return {"l1": self.l1_weight * (round.fake - round.real).abs().mean()}


class SRGAN(Translation):
    """G pays ``content_weight`` times the mean squared error between its output and the target, in pixels
    (SRGAN-MSE) or in ``features`` of a fixed network (the paper's VGG loss; here any ganforge feature
    extractor, such as the domain classifier), plus ``adversarial_weight`` times the adversarial loss."""

    def __init__(
        self,
        content: str = "pixels",
        content_weight: float = 1.0,
        adversarial_weight: float = 1e-3,
        features: nn.Module | None = None,
        adversarial: bool = True,
    ) -> None:
        super().__init__(adversarial)
        if content not in CONTENTS:
            raise ConfigError(f"game.content must be one of {', '.join(CONTENTS)}, got {content!r}")
        if content == "features" and not getattr(features, "differentiable", False):
            found = "none is set" if features is None else f"{type(features).__name__} passes no gradient to G"
            raise ConfigError(
                f"game.content=features needs a differentiable feature extractor as game.features, but {found} "
                "(Inception quantizes images to 8 bits, as the FID protocol does); name a domain classifier, e.g. "
                "game.features={_target_: ganforge.metrics.DomainFeatures, domain: mnist}"
            )
        self.content, self.content_weight, self.adversarial_weight = content, content_weight, adversarial_weight
        self.features = features.requires_grad_(False) if content == "features" and features is not None else None

    def g_adversarial(self, objective: Objective, judge: Judge, round: Round) -> torch.Tensor:
        return self.adversarial_weight * super().g_adversarial(objective, judge, round)

    def g_terms(self, gan: GANModule, round: Round) -> dict[str, torch.Tensor]:
        assert isinstance(round.fake, torch.Tensor) and isinstance(round.real, torch.Tensor)
        fake, real = round.fake, round.real
        if self.features is not None:
            fake, real = self.features(fake)[0], self.features(real)[0]
        return {"content": self.content_weight * F.mse_loss(fake, real)}
