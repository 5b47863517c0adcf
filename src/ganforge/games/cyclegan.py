"""CycleGAN (Zhu et al. 2017): translation between two domains from unpaired images.

Two generators (A -> B and B -> A, one module: :class:`CycleGenerators`, trained by G's optimizer) and two
discriminators (one per domain: :class:`DomainDiscriminators`, trained by D's) play two GAN games at once;
``cycle_weight`` (lambda = 10) ties them by cycle consistency, ``|F(G(a)) - a| + |G(F(b)) - b|``, and
``identity_weight`` (0.5 lambda in the paper's code, 0 to drop it) asks each generator to leave images of its
own output domain unchanged. The two games' losses add up on both sides, as in the paper's code: each D minimises
its own game's loss (the two D's share no parameter, so one backward pass of the sum gives each D its own game's
gradient), and G pays ``adversarial_weight`` x the sum of both games' ``g_loss``. The paper's G loss is the MSE of
each D's logits on the fakes against 1; LSGAN's ``g_loss`` (``loss=lsgan``) is half that, so the experiment
sets ``adversarial_weight=2`` to give the adversarial terms the paper's weight beside lambda. Each D judges a
fake drawn from an :class:`ImagePool` of the last 50 fakes half the time (Shrivastava et al. 2017), so it does
not chase G's latest outputs.

The batch is ``(b, a)``: an unpaired datamodule (``ganforge.data.unpaired``) yields domain B where images
stand and domain A where sources stand; which a goes with which b carries no meaning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.games import Judged, Round, SummedGames
from ganforge.games.translation import Translation

if TYPE_CHECKING:
    from ganforge.module import GANModule


class CycleGenerators(nn.Module):
    """G: A -> B (``ab``, what ``forward`` runs) and F: B -> A (``ba``, :meth:`inverse`)."""

    def __init__(self, ab: nn.Module, ba: nn.Module) -> None:
        super().__init__()
        self.ab, self.ba = ab, ba
        self.source_shape = tuple(ab.source_shape)  # type: ignore[arg-type]  # translation nets declare it
        self.target_shape = tuple(ba.source_shape)  # type: ignore[arg-type]

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        return self.ab(source)

    def inverse(self, target: torch.Tensor) -> torch.Tensor:
        return self.ba(target)


class DomainDiscriminators(nn.Module):
    """D_A and D_B: judges ``(images of A, images of B)``; their logits stacked, (N, 2, per-image logits), one row
    per game, so that :class:`CycleGAN` can score each game on its own (the domains share channels and
    resolution, so both PatchGANs give as many logits)."""

    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: Judged, y: torch.Tensor | None = None) -> torch.Tensor:
        assert isinstance(x, tuple), "DomainDiscriminators judge (a, b) pairs of batches"
        return torch.stack([self.a(x[0]).flatten(1), self.b(x[1]).flatten(1)], dim=1)


class ImagePool(nn.Module):
    """The last ``size`` fakes (buffers, so a checkpoint keeps them). :meth:`query` returns, for each image of
    a batch, the image itself while the pool fills; once full, with probability 0.5 a stored fake (replaced by
    the new one), else the new one. Draws come from torch's global generator, which checkpoints restore.

    Under DDP each rank's pool holds its own fakes (``per_rank``): DDP leaves the buffers out of its broadcast of
    rank 0's, and checkpoints keep every rank's (:func:`ganforge.distributed.per_rank_buffers`)."""

    images: torch.Tensor
    count: torch.Tensor
    per_rank = True

    def __init__(self, size: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, *shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for image in batch.detach():
            if self.count < self.size:
                self.images[self.count] = image
                self.count += 1
                out.append(image)
            elif torch.rand(()) < 0.5:
                slot = int(torch.randint(self.size, ()))
                out.append(self.images[slot].clone())
                self.images[slot] = image
            else:
                out.append(image)
        return torch.stack(out)


class CycleGAN(SummedGames, Translation):
    """Both games at once: D judges ``(a, b)`` against ``(F(b), G(a))`` (from the pools) and pays the sum of the two
    games' losses; G's side pays ``adversarial_weight`` x the sum of both games' adversarial losses,
    ``cycle_weight`` x the cycle L1 of both directions and ``identity_weight`` x the identity L1 of both
    generators."""

    judges_images = False
    judges_tensors = False

    def __init__(
        self,
        cycle_weight: float = 10.0,
        identity_weight: float = 5.0,
        pool_size: int = 50,
        adversarial_weight: float = 1.0,
        adversarial: bool = True,
    ) -> None:
        super().__init__(adversarial)
        if pool_size < 0:
            raise ConfigError(f"game.pool_size must be >= 0 (0: no pool), got {pool_size}")
        self.cycle_weight, self.identity_weight, self.pool_size = cycle_weight, identity_weight, pool_size
        self.adversarial_weight = adversarial_weight

    def bind(self, gan: GANModule) -> None:
        super().bind(gan)
        generators, discriminators = gan.generator, gan.discriminator
        if not isinstance(generators, CycleGenerators) or not isinstance(discriminators, DomainDiscriminators):
            raise ConfigError(
                f"game cyclegan needs two generators and two discriminators (model=cyclegan), got "
                f"{type(generators).__name__} and {type(discriminators).__name__}"
            )
        self.pool_a = ImagePool(self.pool_size, generators.source_shape)
        self.pool_b = ImagePool(self.pool_size, generators.target_shape)

    def play(self, gan: GANModule, real: torch.Tensor, labels: torch.Tensor) -> Round:
        generators = gan.generator
        assert isinstance(generators, CycleGenerators)  # bind checked it
        a, b = labels, real
        fake_b, fake_a = generators(a), generators.inverse(b)
        saved = {"a": a, "b": b, "cycled_a": generators.inverse(fake_b), "cycled_b": generators(fake_a)}
        if self.identity_weight:
            saved |= {"same_a": generators.inverse(a), "same_b": generators(b)}
        return Round(real=(a, b), fake=(fake_a, fake_b), saved=saved)

    def discriminator_round(self, round: Round) -> Round:
        detached = round.detached()
        fake_a, fake_b = detached.fake
        return Round(detached.real, (self.pool_a.query(fake_a), self.pool_b.query(fake_b)), detached.saved)

    def g_terms(self, gan: GANModule, round: Round) -> dict[str, torch.Tensor]:
        saved = round.saved
        cycle = (saved["cycled_a"] - saved["a"]).abs().mean() + (saved["cycled_b"] - saved["b"]).abs().mean()
        terms = {"cycle": self.cycle_weight * cycle}
        if self.identity_weight:
            same = (saved["same_a"] - saved["a"]).abs().mean() + (saved["same_b"] - saved["b"]).abs().mean()
            terms["identity"] = self.identity_weight * same
        return terms
