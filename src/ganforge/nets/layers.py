"""Building blocks shared by the architectures."""

from __future__ import annotations

from torch import nn


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. (2015): conv weights ~ N(0, 0.02); BatchNorm scale ~ N(1, 0.02), shift 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def base_resolution(resolution: int | None) -> tuple[int, int]:
    """Split ``resolution`` into ``(base, n_doublings)`` with ``base * 2**n_doublings == resolution``.

    Halves while the result stays an integer of at least 4, so 28 -> (7, 2), 32 -> (4, 3),
    64 -> (4, 4), 36 -> (9, 2): the nets work at MNIST's native 28x28 as well as at powers of two.
    """
    if resolution is None:
        raise ValueError("convolutional nets need image data, but data.resolution is null (vector data); use model=mlp")
    if resolution < 4:
        raise ValueError(f"resolution must be at least 4, got {resolution}")
    base, doublings = resolution, 0
    while base % 2 == 0 and base // 2 >= 4:
        base //= 2
        doublings += 1
    if doublings == 0:
        raise ValueError(f"resolution {resolution} cannot be halved to a base of at least 4; use e.g. 28, 32 or 64")
    return base, doublings


def spectral_normalize(module: nn.Module) -> nn.Module:
    """Spectral normalization (Miyato et al., 2018) on every conv and linear layer, via torch's parametrization."""
    for child in list(module.modules()):
        if isinstance(child, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.utils.parametrizations.spectral_norm(child)
    return module


def sample_shape(channels: int, resolution: int | None) -> tuple[int, ...]:
    """Shape of one sample: ``(channels, resolution, resolution)`` for images, ``(channels,)`` for vectors."""
    return (channels,) if resolution is None else (channels, resolution, resolution)
