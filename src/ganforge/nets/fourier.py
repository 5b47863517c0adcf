"""Fourier-feature inputs (Karras et al. 2021, StyleGAN3, section 3.1; Tancik et al. 2020): the first layer of a
synthesis network as sinusoids of a continuous plane, sampled on a grid, whose coordinates a transform can move
exactly. StyleGAN3 starts from one (:mod:`.stylegan3`), and StyleGAN2 can (``input=fourier``), the paper's baseline
for what the rest of StyleGAN3 adds to equivariance."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.nets.progan import equalized


class FourierInput(nn.Module):
    """``channels`` Fourier features on a ``size x size`` grid that spans ``size / sampling_rate`` units of the
    continuous plane: frequencies drawn uniformly inside the disc of radius ``bandwidth``, random phases, a learned
    mixing of the channels. The first w's affine map (initialised to the identity) gives a rotation and a
    translation of the coordinates; ``transform`` (a buffer, the identity) is one more, set from outside."""

    transform: torch.Tensor
    freqs: torch.Tensor
    phases: torch.Tensor

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float) -> None:
        super().__init__()
        self.channels, self.size, self.sampling_rate, self.bandwidth = channels, size, sampling_rate, bandwidth
        freqs = torch.randn(channels, 2)
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)  # uniform in the unit disc
        self.register_buffer("freqs", freqs * bandwidth)
        self.register_buffer("phases", torch.rand(channels) - 0.5)
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = equalized(nn.Linear(w_dim, 4), gain=1.0)
        with torch.no_grad():  # the identity transform at first: no rotation, no translation
            self.affine.parametrizations.weight.original.zero_()  # type: ignore[union-attr,operator]
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        t = self.affine(w)  # (N, 4): cos, sin of a rotation; a translation
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        n = len(w)
        rotation = torch.eye(3, device=w.device).repeat(n, 1, 1)
        rotation[:, 0, 0], rotation[:, 0, 1], rotation[:, 1, 0], rotation[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        translation = torch.eye(3, device=w.device).repeat(n, 1, 1)
        translation[:, 0, 2], translation[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = rotation @ translation @ self.transform[None]
        phases = self.phases[None] + (self.freqs[None] @ transforms[:, :2, 2:]).squeeze(2)
        freqs = self.freqs[None] @ transforms[:, :2, :2]
        # Frequencies the transform pushed above the band fade out before they alias.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        half = 0.5 * self.size / self.sampling_rate
        theta = torch.tensor([[half, 0.0, 0.0], [0.0, half, 0.0]], device=w.device)[None]
        grid = F.affine_grid(theta, [1, 1, self.size, self.size], align_corners=False)  # (1, H, W, 2)
        x = torch.einsum("hwd,ncd->nhwc", grid[0], freqs) + phases[:, None, None]
        x = torch.sin(x * (2 * math.pi)) * amplitudes[:, None, None]
        x = x @ (self.weight / math.sqrt(self.channels)).T
        return x.permute(0, 3, 1, 2)
