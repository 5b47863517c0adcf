"""Equivariance of a generator to translations and rotations of its input (Karras et al. 2021, section 3 and
appendix E): how close G applied to a transformed input is to the transform applied to G's output.

    EQ = 10 log10(I^2 / MSE),  MSE over the valid pixels of every sample,  I = 2 (images in [-1, 1])

- ``t``: integer translations, uniform within 1/8 of the image in x and y and rounded to whole pixels;
  ``t_frac``: the same without rounding; ``r``: rotations by an angle uniform in [-pi, pi].
- The generator moves its input by setting ``generator.input.transform`` (StyleGAN3's Fourier features; 3x3, in
  units of the image: 1 is its width): the inverse of the transform, so its content moves by the transform.
- The output moves by resampling the image as the continuous, band-limited signal it samples: every pixel of the
  result is the windowed-sinc interpolation (:func:`resample`, a Kaiser-windowed sinc along each axis of the source
  grid) at its source point. Integer translations are then exact shifts. Valid pixels: those whose source point
  lies inside the image by the interpolation kernel's radius (8 pixels), where the reference is complete.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.generation import eval_mode

KINDS = ("t", "t_frac", "r")
RADIUS = 8  # interpolation kernel half-width, pixels
BETA = 8.0  # Kaiser window's shape


def _kernel(u: torch.Tensor) -> torch.Tensor:
    """A Kaiser-windowed sinc of half-width RADIUS pixels; exactly 1 and 0 at whole pixels, so a whole-pixel
    translation is an exact shift."""
    window = torch.special.i0(BETA * torch.sqrt((1 - (u / RADIUS).square()).clamp(min=0))) / torch.special.i0(
        torch.tensor(BETA, dtype=u.dtype)
    )
    values = torch.sinc(u) * window * (u.abs() < RADIUS)
    whole = (u - u.round()).abs() < 1e-9
    return torch.where(whole, (u.round() == 0).to(values), values)


def transform_matrix(kind: str, amount: torch.Tensor) -> torch.Tensor:
    """The 3x3 homogeneous matrix (units of the image) of a translation by ``amount`` = (tx, ty) or a rotation by
    ``amount`` radians."""
    m = torch.eye(3, dtype=torch.float64)
    if kind == "r":
        c, s = math.cos(float(amount)), math.sin(float(amount))
        m[:2, :2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    else:
        m[:2, 2] = amount.double()
    return m


def resample(images: torch.Tensor, transform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``images`` (N, C, H, W) moved by ``transform`` (3x3, units of the image's width, about its centre): each
    result pixel is the windowed-sinc interpolation of the source at ``transform^-1`` of its position; and the mask
    (H, W) of the pixels whose source point lies inside the image by the kernel's radius."""
    n, c, h, w = images.shape
    ys, xs = (torch.arange(size, dtype=torch.float64) - (size - 1) / 2 for size in (h, w))
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2) / w  # (HW, 2), units of width
    inverse = torch.linalg.inv(transform)
    source = (grid @ inverse[:2, :2].T + inverse[:2, 2]) * w + torch.tensor([(w - 1) / 2, (h - 1) / 2])  # pixels
    # The kernel's 2 RADIUS taps per axis around each source point; taps off the image weigh nothing.
    taps = source.floor()[:, :, None] + torch.arange(1 - RADIUS, RADIUS + 1, dtype=torch.float64)  # (HW, 2, 2R)
    weights = _kernel(source[:, :, None] - taps)
    limits = torch.tensor([w, h], dtype=torch.float64)[None, :, None]
    weights = weights * ((taps >= 0) & (taps < limits))
    index = taps.clamp(min=0).minimum(limits - 1).long()
    pixels = (index[:, 1, :, None] * w + index[:, 0, None, :]).reshape(-1)  # (HW * 2R * 2R,) row-major
    values = images.flatten(2).double()[:, :, pixels].reshape(n, c, h * w, 2 * RADIUS, 2 * RADIUS)
    moved = torch.einsum("ncpyx,py,px->ncp", values, weights[:, 1], weights[:, 0])
    moved = moved.reshape(n, c, h, w).to(images.dtype)
    inside = (source[:, 0] >= RADIUS - 1) & (source[:, 0] <= w - RADIUS) & (source[:, 1] >= RADIUS - 1)
    inside &= source[:, 1] <= h - RADIUS
    return moved, inside.reshape(h, w)


def draw_transform(kind: str, resolution: int, rng: torch.Generator) -> torch.Tensor:
    """A random transform of the metric's kind (see the module's docstring)."""
    if kind == "r":
        return transform_matrix(kind, (torch.rand((), generator=rng, dtype=torch.float64) * 2 - 1) * math.pi)
    t = (torch.rand(2, generator=rng, dtype=torch.float64) * 2 - 1) / 8
    if kind == "t":
        t = (t * resolution).round() / resolution
    return transform_matrix(kind, t)


@contextmanager
def input_transform(generator: nn.Module, transform: torch.Tensor) -> Iterator[None]:
    """The generator's input moved by the inverse of ``transform`` (so its output moves by ``transform``)."""
    buffer = cast(Any, generator).input.transform
    saved = buffer.clone()
    buffer.copy_(torch.linalg.inv(transform).to(buffer))
    try:
        yield
    finally:
        buffer.copy_(saved)


@torch.no_grad()
def equivariance(
    generator: nn.Module,
    kind: str,
    n: int = 1000,
    seed: int = 0,
    batch_size: int = 50,
    device: torch.device | str = "cpu",
) -> float:
    """EQ-``kind`` (dB) of ``generator`` over ``n`` samples, each with its own random transform; latents, labels
    and transforms come from a CPU stream seeded by ``seed``."""
    if kind not in KINDS:
        raise ConfigError(f"equivariance={kind!r}: choose t (integer translation), t_frac (sub-pixel) or r (rotation)")
    if not hasattr(getattr(generator, "input", None), "transform"):
        raise ConfigError(
            f"equivariance= moves a generator's input, which {type(generator).__name__} cannot: its input has no "
            "transform (model=stylegan3 has one)"
        )
    style = cast(Any, generator)
    rng = torch.Generator().manual_seed(seed)
    squared, count = 0.0, 0.0
    with eval_mode(generator):
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            z = torch.randn(m, style.latent_dim, generator=rng).to(device)
            y = torch.randint(style.num_classes, (m,), generator=rng).to(device) if style.num_classes else None
            ws = style.mapping(z, y)
            original = style.synthesis(ws)
            for i in range(m):
                transform = draw_transform(kind, original.shape[-1], rng)
                reference, valid = resample(original[i : i + 1].cpu(), transform)
                with input_transform(generator, transform):
                    moved = style.synthesis(ws[i : i + 1]).cpu()
                mask = valid.to(moved.dtype).expand_as(moved)
                squared += float(((moved - reference).square() * mask).sum())
                count += float(mask.sum())
    if count == 0:
        raise ConfigError(
            f"equivariance= compares pixels at least {RADIUS} pixels inside the edge after the move, and images of "
            f"{original.shape[-1]} pixels have none: score a generator of 32 pixels or more"
        )
    if squared == 0:
        return math.inf
    return 20 * math.log10(2.0) - 10 * math.log10(squared / max(count, 1.0))
