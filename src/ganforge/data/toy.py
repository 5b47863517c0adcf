"""2-D Gaussian mixtures of the mode-collapse benchmark (the PacGAN protocol, Lin et al. 2018: README.md, "2-D
mixtures and mode collapse", and benchmarks/mode_collapse.py)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ganforge.data.datamodules import GANDataModule, TensorImages
from ganforge.errors import ConfigError

#: The mixtures :func:`mixture_centres` knows.
MIXTURES = ("ring", "grid")


def mixture_centres(kind: str) -> torch.Tensor:
    """Ring: 8 centres ``(cos 2πk/8, sin 2πk/8)``; grid: 25 centres ``{-4, -2, 0, 2, 4}^2``."""
    if kind == "ring":
        angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
        return torch.stack([angles.cos(), angles.sin()], dim=1).float()
    if kind == "grid":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis)
    raise ValueError(f"unknown mixture {kind!r}; use 'ring' or 'grid'")


class GaussianMixtureDataModule(GANDataModule):
    """Points drawn from an equal-weight mixture of isotropic Gaussians, generated at set-up from ``seed``.

    Labels are the index of the component each point came from.
    """

    def __init__(self, kind: str = "ring", std: float = 0.01, n_samples: int = 100_000, **kwargs: Any) -> None:
        if kind not in MIXTURES:
            raise ConfigError(
                f"data.kind={kind!r} is not a mixture; set data.kind=ring (8 modes on a circle) or data.kind=grid "
                "(25 modes on a 5x5 grid)"
            )
        kwargs.setdefault("channels", 2)
        kwargs.setdefault("resolution", None)
        super().__init__(**kwargs)
        self.name = f"{kind} mixture"
        self.kind = kind
        self.std = std
        self.n_samples = n_samples
        self.centres = mixture_centres(kind)

    def load_split(self, train: bool) -> TensorImages:
        rng = torch.Generator().manual_seed(self.seed + (0 if train else 1))
        labels = torch.randint(len(self.centres), (self.n_samples,), generator=rng)
        points = self.centres[labels] + self.std * torch.randn(self.n_samples, 2, generator=rng)
        return TensorImages(points, labels)
