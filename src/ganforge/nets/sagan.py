"""SAGAN generator and discriminator (Zhang et al., 2019): residual blocks, self-attention,
spectral normalization on both nets, orthogonal initialisation; class-conditional through
conditional BatchNorm in G and a projection discriminator (Miyato & Koyama, 2018).

BigGAN (Brock et al., 2019) is the same pair with two generator options: a shared class embedding
(``shared_dim``) and hierarchical latents (``hierarchical``); ``model=biggan`` sets them."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn
from torch.nn.functional import avg_pool2d, interpolate, relu

from ganforge.errors import ConfigError
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
    BatchNorms are conditional on the labels (``num_classes``) or on a vector (``condition_dim``)."""

    def __init__(self, c_in: int, c_out: int, num_classes: int | None, condition_dim: int | None = None) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(c_in, num_classes, condition_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn2 = ConditionalBatchNorm2d(c_out, num_classes, condition_dim)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        h = interpolate(relu(self.bn1(x, condition)), scale_factor=2)
        h = self.conv2(relu(self.bn2(self.conv1(h), condition)))
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

    Self-attention follows the block whose output resolution is in ``attention_at``. Channels halve per
    doubling from ``width * 2**doublings`` (at most ``max_width``). BigGAN's options:

    - ``shared_dim``: one class embedding shared by all blocks; each conditional BatchNorm projects it
      linearly to its scale and shift (instead of a table per block), so classes share what they learn.
    - ``hierarchical``: z is split into one chunk for the linear input and one per block; each block's
      BatchNorms see their chunk (concatenated with the shared embedding), so noise reaches every scale.
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
        max_width: int | None = None,
        shared_dim: int | None = None,
        hierarchical: bool = False,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.base, doublings = base_resolution(resolution)
        widths = level_widths(width, doublings, max_width)
        if hierarchical and latent_dim % (doublings + 1):
            raise ConfigError(
                f"hierarchical latents split z into {doublings + 1} equal chunks (the input and {doublings} blocks), "
                f"but latent_dim={latent_dim} is not divisible by {doublings + 1}; set model.generator.latent_dim "
                f"to a multiple of {doublings + 1}"
            )
        if hierarchical and num_classes is not None and not shared_dim:
            raise ConfigError(
                "a conditional generator with hierarchical latents reads the class through the shared embedding: "
                "set model.generator.shared_dim (BigGAN: 128)"
            )
        self.chunk = latent_dim // (doublings + 1) if hierarchical else 0
        self.shared = nn.Embedding(num_classes, shared_dim) if shared_dim and num_classes is not None else None
        condition_dim = self.chunk + (self.shared.embedding_dim if self.shared is not None else 0) or None
        labels = num_classes if condition_dim is None else None  # per-class tables only without a vector condition
        self.linear = nn.Linear(latent_dim - doublings * self.chunk, widths[0] * self.base**2)
        self.blocks = nn.ModuleList(GeneratorBlock(a, b, labels, condition_dim) for a, b in pairwise(widths))
        self.attention = nn.ModuleDict(
            {str(i): SelfAttention(widths[i + 1]) for i in range(doublings) if self.base * 2 ** (i + 1) in attention_at}
        )
        self.out = nn.Sequential(
            nn.BatchNorm2d(widths[-1]), nn.ReLU(), nn.Conv2d(widths[-1], channels, 3, padding=1), nn.Tanh()
        )
        self.apply(orthogonal_init)
        if self.shared is not None:
            nn.init.orthogonal_(self.shared.weight)
        if spectral_norm:
            spectral_normalize(self)

    def conditions(self, z: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """The linear layer's input, and what each block's BatchNorms are conditioned on."""
        if self.shared is None and not self.chunk:
            return z, [y] * len(self.blocks)
        shared = [] if self.shared is None else [self.shared(self._labels(y))]
        first, *chunks = z.split([z.shape[1] - len(self.blocks) * self.chunk] + [self.chunk] * len(self.blocks), 1)
        return first, [torch.cat([*shared, chunk], dim=1) for chunk in chunks]

    def _labels(self, y: torch.Tensor | None) -> torch.Tensor:
        if y is None:
            raise ValueError(f"this generator is conditional (num_classes={self.num_classes}): call it with labels y")
        return y

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        first, conditions = self.conditions(z, y)
        h = self.linear(first).view(z.shape[0], -1, self.base, self.base)
        for i, (block, condition) in enumerate(zip(self.blocks, conditions, strict=True)):
            h = block(h, condition)
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
        max_width: int | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        _, doublings = base_resolution(resolution)
        widths = level_widths(width, doublings, max_width)[::-1]  # finest first
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
