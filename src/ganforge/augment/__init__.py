"""Augmentations of what the discriminator sees (``augment=`` config group).

The GAN loop passes every batch D judges, real and generated, in the D and the G step, through
one :class:`Augmentation` before D, so a differentiable augmentation changes what D learns from
without leaking into G's samples (Zhao et al. 2020, Karras et al. 2020). D's penalties augment
afresh inside their critic: R1's gradient is w.r.t. the real images through the augmentation, as
in both papers' code. After each D step the augmentation observes D's logits on the real batch,
which is what an adaptive one (ADA) steers its strength by.
"""

from __future__ import annotations

import torch
from torch import nn


class Augmentation(nn.Module):
    """The identity, and the interface: ``forward(images)`` augments a batch differentiably;
    :meth:`observe` sees D's logits on each real batch and returns values to log."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def observe(self, real_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}


# After the base class: the implementations import it from here.
from ganforge.augment.ada import ADA  # noqa: E402
from ganforge.augment.blur import FadingBlur  # noqa: E402
from ganforge.augment.diffaugment import DiffAugment  # noqa: E402

__all__ = ["ADA", "Augmentation", "DiffAugment", "FadingBlur"]
