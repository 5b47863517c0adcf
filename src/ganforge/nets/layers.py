"""Building blocks shared by the architectures."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from ganforge.errors import ConfigError


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. (2015): conv weights ~ N(0, 0.02); BatchNorm scale ~ N(1, 0.02), shift 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def level_widths(width: int, doublings: int, max_width: int | None = None) -> list[int]:
    """Channels per resolution level, coarsest first: ``width`` at full resolution, doubled per halving over
    ``doublings`` halvings, at most ``max_width`` (StyleGAN2 and ProGAN: ``min(512, 32768 / resolution)``)."""
    widths = [width * 2 ** (doublings - i) for i in range(doublings + 1)]
    return widths if max_width is None else [min(max_width, w) for w in widths]


def base_resolution(resolution: int | None) -> tuple[int, int]:
    """Split ``resolution`` into ``(base, n_doublings)`` with ``base * 2**n_doublings == resolution``.

    Halves while the result stays an integer of at least 4, so 28 -> (7, 2), 32 -> (4, 3),
    64 -> (4, 4), 36 -> (9, 2): the nets work at MNIST's native 28x28 as well as at powers of two.
    """
    if resolution is None:
        raise ConfigError(
            "convolutional nets need image data, but data.resolution is null (vector data such as data=ring); "
            "use model=mlp, or image data"
        )
    base, doublings = resolution, 0
    while base % 2 == 0 and base // 2 >= 4:
        base //= 2
        doublings += 1
    if doublings == 0:
        raise ConfigError(
            f"data.resolution={resolution} cannot be built by the convolutional nets, which double a base of at "
            "least 4 pixels at least once: use an even resolution of 8 or more, e.g. 28, 32 or 64"
        )
    return base, doublings


def spectral_normalize(module: nn.Module) -> nn.Module:
    """Spectral normalization (Miyato et al., 2018) on every conv and linear layer, via torch's parametrization."""
    for child in list(module.modules()):
        if isinstance(child, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.utils.parametrizations.spectral_norm(child)
    return module


@torch.no_grad()
def refresh_parametrized_weights(module: nn.Module) -> None:
    """Compute once, in training mode, every parametrized weight of ``module`` whose parametrization
    keeps estimates in buffers: for spectral norm, one power-iteration step, so that its singular-vector
    estimates follow the current weights. Stateless parametrizations (equalized lr) are skipped.

    A copy whose weights are set from outside, such as the EMA generator (averaged weights, never run
    in a training forward pass), would otherwise keep averaged estimates: no longer unit vectors, they
    understate the largest singular value in eval mode and the normalized weights come out too large.
    """
    for child in module.modules():
        if nn.utils.parametrize.is_parametrized(child, "weight") and any(
            True for _ in cast(nn.ModuleDict, child.parametrizations)["weight"].buffers()
        ):
            was_training = child.training
            child.train()
            child.weight  # noqa: B018 - evaluating the parametrization runs the power iteration
            child.train(was_training)


def sample_shape(channels: int, resolution: int | None) -> tuple[int, ...]:
    """Shape of one sample: ``(channels, resolution, resolution)`` for images, ``(channels,)`` for vectors."""
    return (channels,) if resolution is None else (channels, resolution, resolution)


class SelfAttention(nn.Module):
    """Self-attention over feature-map positions (SAGAN, Zhang et al. 2019).

    Query and key are 1x1 convolutions to ``channels // 8``, the value a 1x1 convolution to
    ``channels``; each position attends to all positions (softmax over keys), and the result
    is added to the input scaled by a learned gate ``gamma`` that starts at 0, so a new block
    begins as the identity and the net learns how much non-local evidence to use.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, max(channels // 8, 1), 1, bias=False)
        self.key = nn.Conv2d(channels, max(channels // 8, 1), 1, bias=False)
        self.value = nn.Conv2d(channels, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(N, HW, HW) weights: row i is position i's distribution over the positions it attends to."""
        q = self.query(x).flatten(2).transpose(1, 2)  # N, HW, C/8
        k = self.key(x).flatten(2)  # N, C/8, HW
        return torch.softmax(q @ k, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.value(x).flatten(2)  # N, C, HW
        out = (v @ self.attention(x).transpose(1, 2)).view_as(x)
        return x + self.gamma * out


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift depend on a condition (de Vries et al. 2017; Miyato & Koyama 2018).

    Two kinds of condition: class labels, with a scale and a shift looked up per class (``num_classes``,
    SAGAN); or a vector per sample, linearly projected to the scale and the shift (``condition_dim``,
    BigGAN: a shared class embedding concatenated with a chunk of z). With neither it is a plain affine
    BatchNorm. Scales start at 1 and shifts at 0 (the projections around them), so every class begins
    with the unconditional normalisation.
    """

    def __init__(self, num_features: int, num_classes: int | None = None, condition_dim: int | None = None) -> None:
        super().__init__()
        if num_classes is not None and condition_dim is not None:
            raise ValueError("a conditional BatchNorm takes labels (num_classes) or vectors (condition_dim), not both")
        self.conditional = num_classes is not None or condition_dim is not None
        self.norm = nn.BatchNorm2d(num_features, affine=not self.conditional)
        self.scale: nn.Module
        self.shift: nn.Module
        if num_classes is not None:
            self.scale = nn.Embedding(num_classes, num_features)
            self.shift = nn.Embedding(num_classes, num_features)
            nn.init.ones_(self.scale.weight)
            nn.init.zeros_(self.shift.weight)
        elif condition_dim is not None:
            self.scale = nn.Linear(condition_dim, num_features, bias=False)
            self.shift = nn.Linear(condition_dim, num_features, bias=False)
        self.projected = condition_dim is not None

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(x)
        if not self.conditional:
            return x
        if condition is None:
            raise ValueError("a conditional BatchNorm needs its condition (the labels y, or BigGAN's vectors)")
        scale = self.scale(condition) + (1.0 if self.projected else 0.0)
        return x * scale[:, :, None, None] + self.shift(condition)[:, :, None, None]
