"""Adversarial objectives: pure functions of discriminator logits.

An objective turns logits into the two players' losses. Penalties that need the
discriminator itself (gradient penalty, R1, ...) are separate terms in
:mod:`ganforge.penalties`, so any objective combines with any penalty.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Objective:
    """Base class: ``d_loss`` is minimised by D, ``g_loss`` by G."""

    #: Whether ``g_loss`` reads ``real_logits``; if not, the G step skips D(real).
    g_uses_real: bool = False

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def constrain(self, discriminator: nn.Module) -> None:
        """Called after every D step; objectives that constrain D's weights override it."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _Logistic(Objective):
    """D does logistic regression: ``-log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))``.

    ``softplus(-x) = -log sigmoid(x)`` and ``softplus(x) = -log(1 - sigmoid(x))``, so the
    losses are computed from logits without overflow.
    """

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


class Minimax(_Logistic):
    """The original saturating game (Goodfellow et al., 2014, eq. 1): G minimises log(1 - D(G(z))).

    Its gradient vanishes when D confidently rejects the fakes, i.e. early in training.
    """

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return -F.softplus(fake_logits).mean()


class NonSaturating(_Logistic):
    """Goodfellow et al. (2014), section 3: G maximises log D(G(z)) instead (strong early gradients)."""

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return F.softplus(-fake_logits).mean()


class MaximumLikelihood(_Logistic):
    """Goodfellow (2014, "On distinguishability criteria"; NIPS 2016 tutorial, 3.2.3): G minimises
    ``-1/2 E[exp(logit(G(z)))]``, where the logit is sigma^-1(D(G(z))).

    Why it exists: for the optimal D, ``exp(logit) = p_data / p_g``, so this G cost's expected gradient is
    that of maximum likelihood (of KL(p_data || p_g)), not of the Jensen-Shannon game. Its hazard is exp: the
    gradient for a sample is ``-exp(logit) / (2N)``, vanishing where D rejects fakes (as minimax's does) and
    dominated by the few fakes D takes most for real (high variance). It is computed in float32 (a float16 exp
    overflows above a logit of ~11.1) and not clamped: a logit above ~88.7 gives an infinite loss, which the
    training step reports as divergence instead of hiding it.
    """

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return -0.5 * torch.exp(fake_logits.float()).mean()


class Hinge(Objective):
    """Hinge loss (Lim & Ye, 2017; Miyato et al., 2018): D margins at ±1, G raises D's score of fakes."""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return -fake_logits.mean()


class LeastSquares(Objective):
    """LSGAN (Mao et al., 2017): D regresses real to ``b`` and fake to ``a``; G pushes fakes to ``c``.

    The defaults a=0, b=c=1 are the 0-1 coding of the paper's experiments; a=-1, b=1, c=0
    minimises the Pearson chi-squared divergence (its section 3.2.2).
    """

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 1.0) -> None:
        self.a, self.b, self.c = a, b, c

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((real_logits - self.b) ** 2).mean() + 0.5 * ((fake_logits - self.a) ** 2).mean()

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return 0.5 * ((fake_logits - self.c) ** 2).mean()

    def __repr__(self) -> str:
        return f"LeastSquares(a={self.a}, b={self.b}, c={self.c})"


class Wasserstein(Objective):
    """WGAN (Arjovsky et al., 2017): the critic maximises E[D(x)] - E[D(G(z))].

    With ``clip`` set, every critic weight is clipped to [-clip, clip] after each D step
    (the original Lipschitz constraint); with ``clip=None`` pair it with the gradient
    penalty instead (WGAN-GP, ``loss=wgan_gp``).
    """

    def __init__(self, clip: float | None = 0.01) -> None:
        self.clip = clip

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return -fake_logits.mean()

    @torch.no_grad()
    def constrain(self, discriminator: nn.Module) -> None:
        if self.clip is not None:
            for p in discriminator.parameters():
                p.clamp_(-self.clip, self.clip)

    def __repr__(self) -> str:
        return f"Wasserstein(clip={self.clip})"
