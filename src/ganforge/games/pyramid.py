"""Pyramid games: LAPGAN (Denton et al. 2015) and SinGAN (Shaham et al. 2019) as one game with two settings.

The nets are :class:`~ganforge.nets.pyramid.PyramidGenerator` and :class:`PyramidDiscriminator`: one G and one
D per level of an image pyramid. The game decides two things:

- **What a level reads** (``condition``): ``real``, the real image one level coarser (LAPGAN: every level is its
  own conditional GAN on the Laplacian pyramid of the data, so levels are independent), or ``generated``, the
  chain's own output from the coarser levels (SinGAN: a level learns to refine what the frozen levels below
  draw).
- **When a level trains** (``steps_per_level``): null, every level in every step (LAPGAN: D judges all levels at
  once, one column of logits per level, and the levels' losses add up as independent games); or N, one level
  after the other, N generator steps each, coarsest first (SinGAN: the coarser levels frozen, in eval mode,
  their outputs drawn without gradients; a new level starts from the weights of the one below where the shapes
  match, ``inherit``). One level at a time, D judges one tensor, so the penalties (SinGAN's WGAN-GP) apply.

SinGAN's reconstruction term (``reconstruction_weight``, alpha = 10) asks the chain to redraw the training image
from one fixed noise ``z*`` at the coarsest level and zeros above (the generator's ``reconstruction_noise``, a
buffer drawn with its weights, so checkpoints keep it); when level k starts, its noise amplitude becomes
``noise_amp`` x the RMSE between the real level-k image and the upsampled reconstruction of level k-1 (the
coarsest: 1), which is how much detail level k has left to invent. Levels start at the first batch of their
turn, so a resumed run passes the same points; which levels have started is a buffer too (``started``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ganforge.errors import ConfigError
from ganforge.games import Round, SummedGames
from ganforge.nets.pyramid import PyramidDiscriminator, PyramidGenerator

if TYPE_CHECKING:
    from ganforge.module import GANModule

CONDITIONS = ("real", "generated")


class PyramidGame(SummedGames):
    """Coarse-to-fine generator chains (see the module's docstring)."""

    allows_conditional = False
    option = "pyramid"
    started: torch.Tensor

    def __init__(
        self,
        condition: str = "real",
        steps_per_level: int | None = None,
        reconstruction_weight: float = 0.0,
        noise_amp: float = 0.1,
        inherit: bool = False,
    ) -> None:
        super().__init__()
        if condition not in CONDITIONS:
            raise ConfigError(f"game.condition must be one of {CONDITIONS}, got {condition!r}")
        if steps_per_level is not None and steps_per_level < 1:
            raise ConfigError(f"game.steps_per_level must be >= 1 or null (every level at once), got {steps_per_level}")
        if steps_per_level is None and (condition == "generated" or reconstruction_weight or inherit):
            raise ConfigError(
                "game.condition=generated, game.reconstruction_weight and game.inherit train each level on the "
                "trained levels below it, so the levels must train one after the other: set game.steps_per_level"
            )
        self.condition_on, self.steps_per_level = condition, steps_per_level
        self.reconstruction_weight, self.noise_amp, self.inherit = reconstruction_weight, noise_amp, inherit
        # Every level at once: D judges a tuple of every level's images. One level at a time: D judges a tensor.
        self.judges_images = self.judges_tensors = steps_per_level is not None
        self._frozen: tuple[int, torch.Tensor] | None = None

    def bind(self, gan: GANModule) -> None:
        super().bind(gan)
        generator, discriminator = gan.generator, gan.discriminator
        if not isinstance(generator, PyramidGenerator) or not isinstance(discriminator, PyramidDiscriminator):
            raise ConfigError(
                "game pyramid needs a pyramid of generators and discriminators (model=lapgan or model=singan), got "
                f"{type(generator).__name__} and {type(discriminator).__name__}"
            )
        if generator.pyramid != discriminator.pyramid:
            raise ConfigError(
                f"the generator's pyramid {list(generator.pyramid.sizes)} and the discriminator's "
                f"{list(discriminator.pyramid.sizes)} differ; give both the same size, levels, scale and min_side"
            )
        if gan.pack > 1:
            raise ConfigError("game pyramid: D judges one image per level's game; set model.pack=1")
        if discriminator.conditional and self.condition_on == "generated":
            raise ConfigError("a conditional pyramid D reads real coarse images; set game.condition=real")
        self.register_buffer("started", torch.zeros((), dtype=torch.long))

    def active_level(self, gan: GANModule) -> int | None:
        """The level training now; None when every level trains at once."""
        if self.steps_per_level is None:
            return None
        levels = cast(PyramidGenerator, gan.generator).levels
        return min(gan.generator_steps // self.steps_per_level, levels - 1)

    def play(self, gan: GANModule, real: torch.Tensor, labels: torch.Tensor) -> Round:
        generator = gan.generator
        assert isinstance(generator, PyramidGenerator)  # bind checked it
        reals = generator.pyramid.gaussian(real)
        noises = cast(list[torch.Tensor], generator.split_latent(gan.sample_latent(real.shape[0])))  # every level's
        level = self.active_level(gan)
        if level is None:
            return self._every_level(generator, reals, noises)
        return self._one_level(gan, generator, level, reals, noises)

    def _every_level(self, generator: PyramidGenerator, reals: list[torch.Tensor], noises: list[torch.Tensor]) -> Round:
        """LAPGAN: each finer level draws its residual on the real coarser image; D judges every level."""
        up = generator.pyramid.up
        conditions = [up(reals[k - 1], k) for k in range(1, generator.levels)]
        fakes = [generator.coarsest(noises[0])]
        fakes += [generator.level(k, c, noises[k]) for k, c in enumerate(conditions, start=1)]
        return Round(real=(*reals, *conditions), fake=(*fakes, *conditions))

    def _one_level(
        self,
        gan: GANModule,
        generator: PyramidGenerator,
        level: int,
        reals: list[torch.Tensor],
        noises: list[torch.Tensor],
    ) -> Round:
        """SinGAN: level ``level`` draws on the frozen chain below it (or the real coarser image)."""
        discriminator = gan.discriminator
        assert isinstance(discriminator, PyramidDiscriminator)
        discriminator.active = level
        for k, block in enumerate(generator.blocks):  # the frozen levels draw in eval mode
            block.train(gan.training and k == level)
        if int(self.started) <= level:
            self._start(generator, discriminator, level, reals)
        if level == 0:
            fake = generator.coarsest(noises[0])
        else:
            with torch.no_grad():
                below = (
                    reals[level - 1]
                    if self.condition_on == "real"
                    else generator.chain(noises, stop_level=level - 1)[-1]
                )
            fake = generator.level(level, generator.pyramid.up(below, level), noises[level])
        saved = {"target": reals[level]}
        if self.reconstruction_weight:
            saved["reconstruction"] = self.reconstruct(generator, level, with_grad=True)
        return Round(real=reals[level], fake=fake, saved=saved)

    def reconstruct(self, generator: PyramidGenerator, level: int, with_grad: bool = False) -> torch.Tensor:
        """The chain's reconstruction of the training image at ``level`` (gradients into that level only)."""
        noises = generator.reconstruction_noises()
        with torch.no_grad():
            below = self._frozen_reconstruction(generator, level - 1) if level else None
        with torch.set_grad_enabled(with_grad and torch.is_grad_enabled()):
            return generator.chain(noises, start=below, start_level=level, stop_level=level)[-1]

    def _frozen_reconstruction(self, generator: PyramidGenerator, level: int) -> torch.Tensor:
        """The frozen chain's reconstruction at ``level``: fixed while the level above it trains, so drawn once
        per level, not every step (a plain attribute, not state: a resumed run redraws it from the same
        weights, bit for bit)."""
        if self._frozen is None or self._frozen[0] != level:
            self._frozen = (level, generator.reconstruction(level))
        return self._frozen[1]

    def _start(
        self, generator: PyramidGenerator, discriminator: PyramidDiscriminator, level: int, reals: list[torch.Tensor]
    ) -> None:
        """A level's first batch: its weights from the level below (``inherit``, where the shapes match) and its
        noise amplitude from what the chain below still misses of the real image."""
        if self.inherit and level > 0:
            for blocks in (generator.blocks, discriminator.blocks):
                below, this = blocks[level - 1].state_dict(), blocks[level].state_dict()
                if all(below[key].shape == value.shape for key, value in this.items() if key in below):
                    blocks[level].load_state_dict(below)
        if level > 0 and self.reconstruction_weight:
            with torch.no_grad():
                coarse = generator.pyramid.up(self.reconstruct(generator, level - 1), level)
                rmse = F.mse_loss(coarse, reals[level][:1]).sqrt()
            generator.noise_amp[level] = self.noise_amp * rmse
        self.started.fill_(level + 1)

    def g_terms(self, gan: GANModule, round: Round) -> dict[str, torch.Tensor]:
        if "reconstruction" not in round.saved:
            return {}
        target = round.saved["target"][:1]
        return {"reconstruction": self.reconstruction_weight * F.mse_loss(round.saved["reconstruction"], target)}


class LevelStepLR(LRScheduler):
    """SinGAN's learning-rate schedule, restarted with every level: the base rates for the first ``milestone`` part
    of a level's ``steps_per_level`` generator steps, times ``gamma`` for the rest (the paper's code: x0.1 after
    1,600 of 2,000). Stepped once per generator step (``optim.scheduler``), so it follows the game's levels."""

    def __init__(
        self,
        optimizer: Optimizer,
        steps_per_level: int,
        milestone: float = 0.8,
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        if steps_per_level < 1 or not 0 < milestone <= 1:
            raise ConfigError(
                f"LevelStepLR needs steps_per_level >= 1 and a milestone in (0, 1], got {steps_per_level}, {milestone}"
            )
        self.steps_per_level, self.milestone, self.gamma = steps_per_level, milestone, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:  # type: ignore[override]  # torch's stub types it as list[float | Tensor]
        within = self.last_epoch % self.steps_per_level
        factor = self.gamma if within >= self.milestone * self.steps_per_level else 1.0
        return [float(base) * factor for base in self.base_lrs]
