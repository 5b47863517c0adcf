"""Generator-side regularizers: terms added to G's loss, as penalties are to D's.

Each has a ``weight`` and an interval ``every`` (lazy regularization, Karras et al. 2020): on
generator steps where ``generator_steps % every == 0`` the loop adds ``weight * every * value``.
They are modules, so running statistics they keep (path length's mean) are buffers that travel in
the module's state dict, and with it in every checkpoint.
"""

from __future__ import annotations

import math
from typing import Protocol, cast

import torch
from torch import nn

from ganforge.errors import ConfigError


class StyleGenerator(Protocol):
    """What a style-based generator offers: ``z -> ws`` (B, num_ws, w_dim) and ``ws -> images``."""

    latent_dim: int

    def mapping(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor: ...

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor: ...


class GeneratorRegularizer(nn.Module):
    """Base class: ``value(generator, batch_size, y)`` is the unweighted term, computed on fresh latents."""

    def __init__(self, weight: float, every: int = 1) -> None:
        super().__init__()
        if every < 1:
            raise ConfigError(f"a generator regularizer's every must be >= 1 (generator steps), got {every}")
        self.weight = weight
        self.every = every

    def value(self, generator: nn.Module, batch_size: int, y: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class PathLength(GeneratorRegularizer):
    """StyleGAN2's path length regularization: the Jacobian of image w.r.t. the intermediate latent
    ``w``, projected on a random image direction, should have the same norm everywhere.

    ``|J_w^T u|`` (``u`` Gaussian, scaled by ``1/sqrt(H W)``, averaged over the ``w`` copies) is
    pulled towards its running mean ``a`` (``decay``: the mean's update rate); computed on
    ``batch_size // batch_shrink`` samples. Needs a style-based generator (``mapping`` and ``synthesis``).
    """

    mean: torch.Tensor

    def __init__(self, weight: float = 2.0, every: int = 4, decay: float = 0.01, batch_shrink: int = 2) -> None:
        super().__init__(weight, every)
        self.decay = decay
        self.batch_shrink = batch_shrink
        self.register_buffer("mean", torch.zeros(()))

    def value(self, generator: nn.Module, batch_size: int, y: torch.Tensor | None) -> torch.Tensor:
        if not (hasattr(generator, "mapping") and hasattr(generator, "synthesis")):
            raise ConfigError(
                f"loss.g_regularizers.path_length needs a style-based generator (mapping + synthesis, e.g. "
                f"model=stylegan2), not {type(generator).__name__}; remove it or change model"
            )
        style = cast(StyleGenerator, generator)
        n = max(1, batch_size // self.batch_shrink)
        z = torch.randn(n, style.latent_dim, device=self.mean.device, dtype=self.mean.dtype)
        ws = style.mapping(z, None if y is None else y[:n])
        images = style.synthesis(ws)
        direction = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        (grad,) = torch.autograd.grad((images * direction).sum(), ws, create_graph=True)
        lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()
        mean = self.mean.lerp(lengths.detach().mean(), self.decay)
        self.mean.copy_(mean)
        return (lengths - mean).square().mean()


class Orthogonal(GeneratorRegularizer):
    """BigGAN's orthogonal regularization (Brock et al., 2019, section 3.1): ``‖W Wᵀ ⊙ (1 − I)‖²_F`` summed
    over G's convolution and linear weights, each viewed as (filters, fan-in).

    Unlike full orthogonality it leaves the filters' norms free and only pushes distinct filters apart, which
    is what made the paper's generators amenable to the truncation trick (60 % of models against 16 %).
    Class embeddings are excluded, as in the paper; it acts on the trainable weights (before spectral
    normalization divides them by their largest singular value). ``weight`` is the paper's β (1e-4).
    """

    def __init__(self, weight: float = 1e-4, every: int = 1) -> None:
        super().__init__(weight, every)

    def value(self, generator: nn.Module, batch_size: int, y: torch.Tensor | None) -> torch.Tensor:
        return torch.stack([off_diagonal_gram(w) for w in penalised_weights(generator)]).sum()


def penalised_weights(generator: nn.Module) -> list[torch.Tensor]:
    """G's trainable matrices and filter banks (parameters of two or more dimensions), embeddings excluded."""
    embedded = {id(p) for m in generator.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    return [p for p in generator.parameters() if p.dim() >= 2 and p.requires_grad and id(p) not in embedded]


def off_diagonal_gram(weight: torch.Tensor) -> torch.Tensor:
    """``‖W Wᵀ ⊙ (1 − I)‖²_F`` for ``W`` = ``weight`` viewed as (filters, fan-in)."""
    w = weight.flatten(1)
    gram = w @ w.T
    return (gram - torch.diag_embed(gram.diagonal())).square().sum()
