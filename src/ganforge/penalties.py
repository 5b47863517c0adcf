"""Discriminator regularizers, each a separate term with its own weight and interval.

A penalty returns an unweighted scalar; GANModule adds ``weight * every * value`` to the D
loss on the steps where ``discriminator_steps % every == 0`` (lazy regularization,
Karras et al. 2020: the interval compensates for the skipped steps). Penalties are
computed in float32 even under mixed precision.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ganforge.errors import ConfigError

Critic = Callable[[torch.Tensor], torch.Tensor]


def input_gradient(critic: Critic, x: torch.Tensor) -> torch.Tensor:
    """d(sum of critic(x))/dx with the graph kept, flattened per sample: shape (N, features). Attention runs in
    PyTorch's math backend here: the fused CPU and GPU kernels have no second derivative (transformer Ds)."""
    x = x.detach().requires_grad_(True)
    with sdpa_kernel(SDPBackend.MATH):
        (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad.flatten(1)


class Penalty:
    """Base class: ``value(critic, real, fake, real_logits)`` is the unweighted term."""

    def __init__(self, weight: float, every: int = 1) -> None:
        if every < 1:
            raise ConfigError(f"every must be >= 1, got {every}")
        self.weight = weight
        self.every = every

    def value(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weight={self.weight}, every={self.every})"


class GradientPenalty(Penalty):
    """WGAN-GP (Gulrajani et al., 2017): ``(||grad D(x_hat)|| - target)^2`` at random
    interpolates of real and fake samples. ``one_sided`` penalises only norms above target."""

    def __init__(self, weight: float = 10.0, every: int = 1, target: float = 1.0, one_sided: bool = False) -> None:
        super().__init__(weight, every)
        self.target = target
        self.one_sided = one_sided

    def value(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
        eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
        excess = input_gradient(critic, eps * real + (1 - eps) * fake).norm(dim=1) - self.target
        return (excess.clamp(min=0) if self.one_sided else excess).pow(2).mean()


class R1(Penalty):
    """R1 (Mescheder et al., 2018): ``1/2 E||grad D(x)||^2`` on real data; ``weight`` is gamma."""

    def value(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * input_gradient(critic, real).pow(2).sum(dim=1).mean()


class R2(Penalty):
    """R2: the same penalty on generated samples."""

    def value(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * input_gradient(critic, fake).pow(2).sum(dim=1).mean()


class DRAGAN(Penalty):
    """DRAGAN (Kodali et al., 2017): gradient penalty at real data perturbed by
    ``c * std(x) * U[0, 1]`` noise, pulling the norm towards ``k``."""

    def __init__(self, weight: float = 10.0, every: int = 1, k: float = 1.0, c: float = 0.5) -> None:
        super().__init__(weight, every)
        self.k = k
        self.c = c

    def value(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
        perturbed = real + self.c * real.std() * torch.rand_like(real)
        return (input_gradient(critic, perturbed).norm(dim=1) - self.k).pow(2).mean()


class Drift(Penalty):
    """Progressive GAN's drift term (Karras et al., 2018): ``E[D(x)^2]`` keeps critic scores near 0."""

    def __init__(self, weight: float = 1e-3, every: int = 1) -> None:
        super().__init__(weight, every)

    def value(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
        return real_logits.float().pow(2).mean()
