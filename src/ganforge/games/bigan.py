"""BiGAN (Donahue et al. 2017) / ALI (Dumoulin et al. 2017): D tells (x, E(x)) from (G(z), z).

The encoder and the generator play together against a D on (image, code) pairs; at the optimum E inverts G.
G's side flips D's labels (the pair of real images is called generated, and the other way round), the
non-saturating form both papers train with; with ``loss=nonsaturating`` that is D's own loss, swapped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ganforge.games import Judge, Round
from ganforge.games.encoders import EncoderGame
from ganforge.objectives import Objective

if TYPE_CHECKING:
    from ganforge.module import GANModule


class BiGAN(EncoderGame):
    """Real pairs ``(x, E(x))`` against generated ``(G(z), z)``, judged by a joint D (``model=bigan``)."""

    judges_images = False
    judges_tensors = False

    def play(self, gan: GANModule, real: torch.Tensor, labels: torch.Tensor) -> Round:
        z = gan.sample_latent(real.shape[0])
        return Round(real=(real, self.encoder(real)), fake=(gan.generator(z), z))

    def g_adversarial(self, objective: Objective, judge: Judge, round: Round) -> torch.Tensor:
        return objective.d_loss(judge(round.fake), judge(round.real))
