"""SAGAN generator and discriminator (Zhang et al., 2019): residual blocks, self-attention,
spectral normalization on both nets, orthogonal initialisation; class-conditional through
conditional BatchNorm in G and a projection discriminator (Miyato & Koyama, 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn
from torch.nn.functional import avg_pool2d, interpolate, relu

from ganforge.nets.layers import (
    ConditionalBatchNorm2d,
    SelfAttention,
    base_resolution,
    level_widths,
    spectral_normalize,
)


def orthogonal_init(module: nn.Module) -> None:
    """Orthogonal weights and zero biases for convolutions and linear layers (as in SAGAN and BigGAN)."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.orthogonal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class GeneratorBlock(nn.Module):
    """BN-ReLU-upsample-conv3x3-BN-ReLU-conv3x3, plus an upsampled 1x1-conv shortcut; the
    BatchNorms are conditional when ``num_classes`` is set."""

    def __init__(self, c_in: int, c_out: int, num_classes: int | None) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(c_in, num_classes)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn2 = ConditionalBatchNorm2d(c_out, num_classes)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = interpolate(relu(self.bn1(x, y)), scale_factor=2)
        h = self.conv2(relu(self.bn2(self.conv1(h), y)))
        return h + self.shortcut(interpolate(x, scale_factor=2))


class DiscriminatorBlock(nn.Module):
    """(ReLU)-conv3x3-ReLU-conv3x3-(avg-pool), plus a 1x1-conv shortcut; the first block of D
    has no leading ReLU (it sees images, not features)."""

    def __init__(self, c_in: int, c_out: int, downsample: bool, preactivation: bool = True) -> None:
        super().__init__()
        self.downsample = downsample
        self.preactivation = preactivation
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out or downsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(relu(self.conv1(relu(x) if self.preactivation else x)))
        shortcut = self.shortcut(x)
        if self.downsample:
            h, shortcut = avg_pool2d(h, 2), avg_pool2d(shortcut, 2)
        return h + shortcut


class SAGANGenerator(nn.Module):
    """z -> linear -> ``base x base`` features -> one residual up-block per doubling -> BN-ReLU-conv3x3-tanh.

    Self-attention follows the block whose output resolution is in ``attention_at``.
    """

    def __init__(
        self,
        latent_dim: int = 128,
        channels: int = 3,
        resolution: int = 32,
        width: int = 64,
        num_classes: int | None = None,
        attention_at: Sequence[int] = (16,),
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.base, doublings = base_resolution(resolution)
        widths = level_widths(width, doublings)
        self.linear = nn.Linear(latent_dim, widths[0] * self.base**2)
        self.blocks = nn.ModuleList(GeneratorBlock(a, b, num_classes) for a, b in pairwise(widths))
        self.attention = nn.ModuleDict(
            {str(i): SelfAttention(widths[i + 1]) for i in range(doublings) if self.base * 2 ** (i + 1) in attention_at}
        )
        self.out = nn.Sequential(
            nn.BatchNorm2d(widths[-1]), nn.ReLU(), nn.Conv2d(widths[-1], channels, 3, padding=1), nn.Tanh()
        )
        self.apply(orthogonal_init)
        if spectral_norm:
            spectral_normalize(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.linear(z).view(z.shape[0], -1, self.base, self.base)
        for i, block in enumerate(self.blocks):
            h = block(h, y)
            if str(i) in self.attention:
                h = self.attention[str(i)](h)
        return self.out(h)


class SAGANDiscriminator(nn.Module):
    """One residual down-block per halving to ``base x base``, one more block at that size,
    ReLU, sum over positions, a linear logit; with ``num_classes``, plus the projection term
    ``<embed(y), features>`` (Miyato & Koyama 2018). Self-attention follows the block whose
    input resolution is in ``attention_at``."""

    def __init__(
        self,
        channels: int = 3,
        resolution: int = 32,
        width: int = 64,
        num_classes: int | None = None,
        attention_at: Sequence[int] = (16,),
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        _, doublings = base_resolution(resolution)
        widths = level_widths(width, doublings)[::-1]  # finest first
        blocks: list[nn.Module] = []
        size = resolution
        for i, c_out in enumerate(widths):
            c_in = channels if i == 0 else widths[i - 1]
            if size in attention_at and i > 0:
                blocks.append(SelfAttention(c_in))
            blocks.append(DiscriminatorBlock(c_in, c_out, downsample=i < doublings, preactivation=i > 0))
            size //= 2 if i < doublings else 1
        self.blocks = nn.Sequential(*blocks)
        self.num_features = widths[-1]
        self.linear = nn.Linear(self.num_features, 1)
        self.embed = nn.Embedding(num_classes, self.num_features) if num_classes is not None else None
        self.apply(orthogonal_init)
        if self.embed is not None:
            nn.init.orthogonal_(self.embed.weight)
        if spectral_norm:
            spectral_normalize(self)
            if self.embed is not None:
                nn.utils.parametrizations.spectral_norm(self.embed)

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(N, num_features): ReLU'd last block, summed over positions (what the logit reads). The same for
        every label: the projection reads ``y`` after them (``y`` is taken so that every D's features are
        called alike, as InfoGAN's Q head does)."""
        return relu(self.blocks(x)).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        logits = self.linear(h).flatten()
        if self.embed is not None:
            if y is None:
                raise ValueError("a projection discriminator needs the labels y")
            logits = logits + (self.embed(y) * h).sum(dim=1)
        return logits
