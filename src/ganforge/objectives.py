"""Adversarial objectives: pure functions of discriminator logits.

An objective turns logits into the two players' losses. Penalties that need the
discriminator itself (gradient penalty, R1, ...) are separate terms, so any objective
combines with any penalty.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Objective:
    """Base class: ``d_loss`` is minimised by D, ``g_loss`` by G."""

    #: Whether ``g_loss`` reads ``real_logits``; if not, the G step skips D(real).
    g_uses_real: bool = False

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NonSaturating(Objective):
    """Goodfellow et al. (2014), section 3: D does logistic regression; G maximises log D(G(z)).

    ``softplus(-x) = -log sigmoid(x)``, so both losses are computed from logits without
    overflow.
    """

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return F.softplus(-fake_logits).mean()
