"""Generators that are normalizing flows (for Flow-GAN, Grover et al. 2018): G is invertible with an exact
log-determinant, so the likelihood of real images is exact and can be trained on and reported.

- NICE (Dinh et al. 2015), ``architecture=nice``: the image as one vector, additive couplings (MLP conditioners)
  on alternating odd and even pixels, a diagonal scaling, a logistic prior.
- RealNVP (Dinh et al. 2017), ``architecture=realnvp``: affine couplings with checkerboard and channel masks, a
  squeeze between them, and a multi-scale structure that factors out half of the channels per level; a Gaussian
  prior. Log-scales are bounded as in the paper: ``scale * tanh(s(x))``.

The coupling layers, squeeze, scaling and conditioner nets are normflows' (``MaskedAffineFlow``, ``Squeeze``,
``AffineConstFlow``, ``MLP``, ``ConvNet2d``); written here: the composition with the factor-out (normflows'
``MultiscaleFlow`` draws its own latents, while ganforge's loop hands G one z), the logistic prior, which it lacks,
and the data's preprocessing.

The density is of images as the standard quantity every flow paper reports: 8-bit pixels (from the [-1, 1]
tensors the datamodules give) dequantized by uniform noise to ``u`` in [0, 1), then ``logit(alpha + (1 - 2
alpha) u)``, each step's log-determinant counted; :meth:`FlowGenerator.bits_per_dim` is ``-log2 p(x)`` per
dimension of the discrete image, ``(-log p(u) + D log 256) / (D log 2)``. The loop draws z from N(0, I); a
logistic prior is reached through the logistic quantile of the normal CDF, an exact change of variables.
"""

from __future__ import annotations

import math
from typing import cast

import normflows as nf
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import ConfigError

ARCHITECTURES = ("nice", "realnvp")


def checkerboard(shape: tuple[int, int, int], parity: int) -> torch.Tensor:
    """A (C, H, W) mask of ones where ``(y + x) % 2 == parity``."""
    c, h, w = shape
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((yy + xx) % 2 == parity).float().expand(c, h, w).clone()


def channel_mask(shape: tuple[int, int, int], first: bool) -> torch.Tensor:
    """A (C, H, W) mask of ones on the first half of the channels (or the second)."""
    mask = torch.zeros(shape)
    mask[: shape[0] // 2] = 1.0
    return mask if first else 1.0 - mask


class ScaledTanh(nn.Module):
    """RealNVP's bounded log-scale: a learned per-channel ``scale * tanh(x)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(x)


def affine_coupling(mask: torch.Tensor, width: int) -> nf.flows.MaskedAffineFlow:
    """A RealNVP coupling on ``mask``'s shape: shift and bounded log-scale from 3-layer conv nets (3x3, 1x1, 3x3,
    ``width`` hidden channels), the last layer zero-initialised, so the coupling starts as the identity."""
    c = mask.shape[0]

    def net() -> nn.Module:
        return nf.nets.ConvNet2d([c, width, width, c], [3, 1, 3], leaky=0.01, init_zeros=True)

    return nf.flows.MaskedAffineFlow(mask, t=net(), s=nn.Sequential(net(), ScaledTanh(c)))


class FlowGenerator(nn.Module):
    """z (N, C*H*W) -> an image, through an invertible flow; :meth:`log_prob` and :meth:`bits_per_dim` of images.

    ``width``: hidden units (NICE) or channels (RealNVP) of the conditioners; ``depth``: NICE's hidden layers
    per conditioner; ``couplings``: NICE's number of couplings, RealNVP's per mask type and level (the paper:
    3, and one more on the last level); ``levels``: RealNVP's squeezes (each halves the image's side);
    ``alpha``: the logit transform's margin (RealNVP: 0.05 on CIFAR-10, 1e-6 on MNIST)."""

    def __init__(
        self,
        architecture: str = "realnvp",
        width: int = 64,
        depth: int = 4,
        couplings: int = 3,
        levels: int = 2,
        alpha: float = 0.05,
        channels: int = 1,
        resolution: int = 28,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ConfigError(f"model.generator.architecture={architecture!r}: choose one of {ARCHITECTURES}")
        if num_classes:
            raise ConfigError("a flow generator is unconditional here: set model.conditional=false")
        if not 0 <= alpha < 0.5:
            raise ConfigError(f"model.generator.alpha={alpha} must be in [0, 0.5)")
        if architecture == "realnvp" and resolution % 2**levels:
            raise ConfigError(
                f"RealNVP squeezes the image {levels} times (model.generator.levels), so data.resolution "
                f"({resolution}) must divide by {2**levels}"
            )
        self.architecture, self.alpha, self.num_classes = architecture, alpha, None
        self.shape = (channels, resolution, resolution)
        self.latent_dim = channels * resolution * resolution
        self.levels = nn.ModuleList()
        self.factored: list[tuple[int, ...]] = []  # shapes of each level's latent (the last: what remains)
        if architecture == "nice":
            self._build_nice(width, depth, couplings)
        else:
            self._build_realnvp(width, couplings, levels)

    def _build_nice(self, width: int, depth: int, couplings: int) -> None:
        d = self.latent_dim
        odd = (torch.arange(d) % 2).float()
        flows: list[nn.Module] = [
            nf.flows.MaskedAffineFlow(
                odd if i % 2 else 1 - odd, t=nf.nets.MLP([d, *[width] * depth, d], init_zeros=True)
            )
            for i in range(couplings)
        ]
        flows.append(nf.flows.AffineConstFlow((d,), shift=False))  # the diagonal scaling
        self.levels.append(nn.ModuleList(flows))
        self.factored.append((d,))

    def _build_realnvp(self, width: int, couplings: int, levels: int) -> None:
        c, h, w = self.shape
        for _ in range(levels):
            flows: list[nn.Module] = [affine_coupling(checkerboard((c, h, w), i % 2), width) for i in range(couplings)]
            flows.append(nf.flows.Squeeze())  # its inverse, the density direction: 2x2 pixels -> 4 channels
            c, h, w = 4 * c, h // 2, w // 2
            flows += [affine_coupling(channel_mask((c, h, w), i % 2 == 0), width) for i in range(couplings)]
            self.levels.append(nn.ModuleList(flows))
            self.factored.append((c - c // 2, h, w))
            c = c // 2
        last = [affine_coupling(checkerboard((c, h, w), i % 2), width) for i in range(couplings + 1)]
        self.levels.append(nn.ModuleList(last))
        self.factored.append((c, h, w))

    # The flow itself: y (the logit-space image) <-> z (N, D).
    def _flows(self, level: int) -> list[nf.flows.Flow]:
        return list(cast(nn.ModuleList, self.levels[level]))

    def to_latent(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The density direction: ``y`` -> z, and log |det dz/dy| per sample. Each level but the last factors out
        its first channels (RealNVP's multi-scale structure); NICE's one level sees the image as a vector."""
        h = y.reshape(-1, *self.factored[0]) if self.architecture == "nice" else y
        log_det = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        latents = []
        for i in range(len(self.levels)):
            for flow in self._flows(i):
                h, step = flow.inverse(h)  # normflows: forward samples, inverse evaluates the density
                log_det = log_det + step
            if i < len(self.levels) - 1:
                out, h = h.split([self.factored[i][0], h.shape[1] - self.factored[i][0]], dim=1)
                latents.append(out.flatten(1))
        latents.append(h.flatten(1))
        return torch.cat(latents, dim=1), log_det

    def from_latent(self, z: torch.Tensor) -> torch.Tensor:
        """The sampling direction: z (N, D) -> ``y``, the inverse of :meth:`to_latent`."""
        parts = z.split([math.prod(s) for s in self.factored], dim=1)
        h = parts[-1].reshape(-1, *self.factored[-1])
        for i in reversed(range(len(self.levels))):
            if i < len(self.levels) - 1:
                h = torch.cat([parts[i].reshape(-1, *self.factored[i]), h], dim=1)
            for flow in reversed(self._flows(i)):
                h, _ = flow(h)
        return h.reshape(-1, *self.shape)

    # The prior: logistic for NICE, Gaussian for RealNVP.
    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        if self.architecture == "nice":
            return -(F.softplus(z) + F.softplus(-z)).sum(dim=1)
        return -0.5 * (z.square() + math.log(2 * math.pi)).sum(dim=1)

    def from_normal(self, z: torch.Tensor) -> torch.Tensor:
        """A draw of the prior from a standard normal draw (the logistic quantile of the normal CDF for NICE)."""
        if self.architecture == "nice":
            return torch.special.logit(torch.special.ndtr(z), eps=1e-7)
        return z

    # The data's preprocessing: [-1, 1] images <-> the logit space the flow models.
    def dequantize(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``u`` in [0, 1): the 8-bit level of each pixel of ``x`` (in [-1, 1]) plus uniform ``noise`` (drawn here
        when not given), over 256."""
        levels = ((x + 1) * 127.5).round().clamp(0, 255)
        return (levels + (torch.rand_like(x) if noise is None else noise)) / 256

    def logit(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``y = logit(alpha + (1 - 2 alpha) u)`` and log |det dy/du| per sample."""
        v = self.alpha + (1 - 2 * self.alpha) * u
        log_det = (math.log(1 - 2 * self.alpha) - torch.log(v) - torch.log1p(-v)).flatten(1).sum(dim=1)
        return torch.log(v) - torch.log1p(-v), log_det

    def log_prob(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """log p(u) per image, u the dequantized ``x`` (nats; a density on [0, 1)^D)."""
        y, log_det_logit = self.logit(self.dequantize(x, noise))
        z, log_det_flow = self.to_latent(y)
        return self.prior_log_prob(z) + log_det_flow + log_det_logit

    def bits_per_dim(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """-log2 P(x) per dimension of each 8-bit image (its dequantized density's bound), shape (N,)."""
        return (-self.log_prob(x, noise) / self.latent_dim + math.log(256)) / math.log(2)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        v = torch.sigmoid(self.from_latent(self.from_normal(z.reshape(z.shape[0], self.latent_dim))))
        return ((v - self.alpha) / (1 - 2 * self.alpha) * 2 - 1).clamp(-1, 1)
