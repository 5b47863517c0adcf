"""Games: what GANModule plays on each batch (``game=`` config group).

GANModule owns the mechanics of the adversarial loop: the D and G steps and their optimizers, lazy
penalties and G regularizers, augmentation, EMA, logging, checkpoints. A :class:`Game` owns what varies
between GAN families: the extra players (an encoder, a code head), the forward pass of a batch (what D
judges as real and as generated), each side's adversarial loss and the extra loss terms on either side.
The plain GAN is the base class; a family is a subclass plus a config, never a branch in the loop.

A game's players are its submodules: those it lists in :meth:`Game.generator_side` train with G's
optimizer in the G step, those in :meth:`Game.discriminator_side` with D's in the D step. Being
submodules of the LightningModule, they are checkpointed and resumed with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from ganforge.augment import Augmentation
from ganforge.errors import ConfigError
from ganforge.objectives import Objective

if TYPE_CHECKING:
    from ganforge.module import GANModule

#: What D judges on one side: images, codes, or a tuple of both (BiGAN's (x, z) pairs).
Judged = torch.Tensor | tuple[torch.Tensor, ...]
Judge = Callable[[Judged], torch.Tensor]


@dataclass
class Round:
    """One batch's forward pass: what D judges as real and as generated, and what the game's terms read.

    Built once per batch; the D step sees it :meth:`detached`, the G step (when one follows) as built.
    """

    real: Judged
    fake: Judged
    saved: dict[str, torch.Tensor] = field(default_factory=dict)

    def detached(self) -> Round:
        return Round(detach(self.real), detach(self.fake), {k: v.detach() for k, v in self.saved.items()})


def detach(judged: Judged) -> Judged:
    return judged.detach() if isinstance(judged, torch.Tensor) else tuple(t.detach() for t in judged)


def batch_size(judged: Judged) -> int:
    return len(judged if isinstance(judged, torch.Tensor) else judged[0])


class Game(nn.Module):
    """The two-player game (Goodfellow et al. 2014): D judges real images against ``G(z, y)``."""

    #: D judges images, one per sample: augmentation, packing and progressive growing apply.
    judges_images: bool = True
    #: D judges one tensor per side (not a tuple): the penalties apply.
    judges_tensors: bool = True
    #: The conditional nets (``model.conditional=true``) work in this game.
    allows_conditional: bool = True
    #: D takes part. False for a baseline trained by its own terms alone (the VAE): no D step is run and G's
    #: loss has no adversarial part, so the baseline pays for no D at equal wall time.
    adversarial: bool = True
    #: The game's option in the ``game`` config group; nets that only one game can play name it in their
    #: ``required_game`` (a pyramid of generators: ``pyramid``), and the others refuse them.
    option: str | None = None

    def critic_steps(self, n_critic: int) -> int:
        """D steps per G step: ``n_critic``, or none in a game without D (the loop then runs no D step and no
        adversarial loss, one batch per G step)."""
        return n_critic if self.adversarial else 0

    def generator_side(self) -> list[nn.Module]:
        """Players trained with G's optimizer, in the G step, besides G."""
        return []

    def discriminator_side(self) -> list[nn.Module]:
        """Players trained with D's optimizer, in the D step, besides D."""
        return []

    def bind(self, gan: GANModule) -> None:
        """Called once by the module, before its optimizers exist: build the players that depend on its nets
        (their sizes), and refuse, with the fix, what this game cannot be combined with."""
        name = type(self).__name__
        required = getattr(gan.generator, "required_game", None)
        if required is not None and required != self.option:
            raise ConfigError(
                f"model's {type(gan.generator).__name__} is played by game={required}; set game={required}"
            )
        if not self.allows_conditional and gan.num_classes is not None:
            raise ConfigError(f"game {name} has no conditional variant; set model.conditional=false")
        if not self.adversarial and (gan.n_critic != 1 or gan.penalties):
            raise ConfigError(
                f"game {name} trains no D, so D steps and penalties do nothing; set n_critic=1 and loss.penalties={{}}"
            )
        if self.judges_images:
            return
        if type(gan.augment) is not Augmentation:
            raise ConfigError(f"game {name}: D does not judge images, so there is nothing to augment; set augment=null")
        if gan.pack > 1:
            raise ConfigError(f"game {name}: D does not judge images one per sample; set model.pack=1")
        if gan.penalties and not self.judges_tensors:
            raise ConfigError(f"game {name}: D judges tuples, which the penalties do not take; set loss.penalties={{}}")

    def condition(self, gan: GANModule, labels: torch.Tensor) -> torch.Tensor | None:
        """What D (and its penalties) read beside each image they judge: the class labels when the nets are
        conditional, nothing otherwise (pix2pix: the source image)."""
        return labels if gan.num_classes is not None else None

    def play(self, gan: GANModule, real: torch.Tensor, labels: torch.Tensor) -> Round:
        """The batch's forward pass (with autograd on when a G step follows). ``labels`` is the batch's second
        part: class labels, or a translation task's source images."""
        return Round(real=real, fake=gan.generator(gan.sample_latent(real.shape[0]), self.condition(gan, labels)))

    def discriminator_round(self, round: Round) -> Round:
        """What D's step judges: the round without its graph (CycleGAN swaps in fakes from its image pools)."""
        return round.detached()

    def d_adversarial(self, objective: Objective, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """D's side of the adversarial loss, from D's logits (the loop computes them once: penalties and the
        augmentation read the real ones too)."""
        return objective.d_loss(real_logits, fake_logits)

    def g_adversarial(self, objective: Objective, judge: Judge, round: Round) -> torch.Tensor:
        """G's side of the adversarial loss (``judge`` gives D's logits, augmentation included)."""
        real_logits = judge(round.real) if objective.g_uses_real else None
        return objective.g_loss(judge(round.fake), real_logits)

    def d_terms(self, gan: GANModule, round: Round) -> dict[str, torch.Tensor]:
        """Weighted terms added to D's loss, by name (logged as ``loss/<name>``)."""
        return {}

    def g_terms(self, gan: GANModule, round: Round) -> dict[str, torch.Tensor]:
        """Weighted terms added to G's loss, by name (logged as ``loss/<name>``)."""
        return {}


class SummedGames(Game):
    """Several games at once, one D per game (CycleGAN's two domains, a pyramid's levels): D's logits hold one
    column per game, (N, games, ...). Each game is scored on its own and the losses summed, not averaged: the D's
    share no parameter, so one backward pass of the sum gives each D its own game's gradient. G pays
    ``adversarial_weight`` x the sum of the games' G losses. Logits of one game, (N,), are scored as one game."""

    adversarial_weight: float = 1.0

    def d_adversarial(self, objective: Objective, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        if real_logits.dim() == 1:
            return objective.d_loss(real_logits, fake_logits)
        games = zip(real_logits.unbind(1), fake_logits.unbind(1), strict=True)
        return torch.stack([objective.d_loss(real, fake) for real, fake in games]).sum()

    def g_adversarial(self, objective: Objective, judge: Judge, round: Round) -> torch.Tensor:
        fake_logits = judge(round.fake)
        real_logits = judge(round.real) if objective.g_uses_real else None
        if fake_logits.dim() == 1:
            return self.adversarial_weight * objective.g_loss(fake_logits, real_logits)
        reals = real_logits.unbind(1) if real_logits is not None else (None,) * fake_logits.shape[1]
        games = zip(fake_logits.unbind(1), reals, strict=True)
        return self.adversarial_weight * torch.stack([objective.g_loss(fake, real) for fake, real in games]).sum()


__all__ = ["Game", "Judge", "Judged", "Round", "SummedGames", "batch_size"]
