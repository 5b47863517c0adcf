"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

Three policies, each drawn afresh for every sample of every batch D sees:

* ``color``: brightness ``x + b`` with ``b ~ U[-0.5, 0.5)``; saturation ``(x - mean_c) * s + mean_c`` with
  ``s ~ U[0, 2)`` and ``mean_c`` the mean over channels at each pixel; contrast ``(x - mean) * c + mean`` with
  ``c ~ U[0.5, 1.5)`` and ``mean`` the image's mean over channels and pixels; in that order.
* ``translation``: a shift by whole pixels, up to ``round(ratio * size)`` (ratio 1/8) along each axis
  independently, the uncovered border filled with zeros.
* ``cutout``: a square of ``round(ratio * size)`` (ratio 1/2) pixels a side set to zero, its centre anywhere
  in the image, so it may be cut by the border.

These are the paper's definitions (with the rounding and the cutout centre's range of its reference code), on
images in [-1, 1]; as there, nothing is clamped, so colour may leave [-1, 1] (by up to 0.5 from brightness, more
from the factors). Saturation is the identity on 1-channel images: the channel mean is the pixel itself. Policies
run in the order the ``policy`` string names them, as in the paper's code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ganforge.augment import Augmentation
from ganforge.errors import ConfigError

POLICIES = ("color", "translation", "cutout")


@dataclass
class DiffAugmentParams:
    """One draw of the random parameters for a batch; ``None`` where a policy is off. Drawn apart from
    their application so a test (gradcheck) can hold them fixed."""

    brightness: torch.Tensor | None = None  # (B, 1, 1, 1), added
    saturation: torch.Tensor | None = None  # (B, 1, 1, 1), factor on the deviation from the channel mean
    contrast: torch.Tensor | None = None  # (B, 1, 1, 1), factor on the deviation from the image mean
    shift: torch.Tensor | None = None  # (B, 2) int64 (dy, dx): out[y, x] = in[y - dy, x - dx]
    cutout_corner: torch.Tensor | None = None  # (B, 2) int64 top-left (row, column) of the square, may be < 0


def _round_half_up(value: float) -> int:
    return int(value + 0.5)


def shift_images(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each image moved by whole pixels ``shift[i] = (dy, dx)``, zeros where nothing moved in.

    A gather rather than ``grid_sample``: exact, and linear in the pixels (its gradient moves them back).
    """
    b, _, h, w = images.shape
    device = images.device
    ys = torch.arange(h, device=device).view(1, h, 1) - shift[:, 0].view(b, 1, 1)
    xs = torch.arange(w, device=device).view(1, 1, w) - shift[:, 1].view(b, 1, 1)
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)  # (B, H, W)
    rows = torch.arange(b, device=device).view(b, 1, 1)
    moved = images.permute(0, 2, 3, 1)[rows, ys.clamp(0, h - 1), xs.clamp(0, w - 1)]  # (B, H, W, C)
    return moved.permute(0, 3, 1, 2) * inside.unsqueeze(1).to(images.dtype)


def square_mask(
    height: int, width: int, corner: torch.Tensor, size: tuple[int, int], dtype: torch.dtype
) -> torch.Tensor:
    """(B, 1, H, W): 0 inside the rectangle of ``size`` (rows, columns) at ``corner``, 1 elsewhere."""
    b = corner.shape[0]
    ys = torch.arange(height, device=corner.device).view(1, height, 1)
    xs = torch.arange(width, device=corner.device).view(1, 1, width)
    top, left = corner[:, 0].view(b, 1, 1), corner[:, 1].view(b, 1, 1)
    inside = (ys >= top) & (ys < top + size[0]) & (xs >= left) & (xs < left + size[1])
    return (~inside).to(dtype).unsqueeze(1)


class DiffAugment(Augmentation):
    """DiffAugment with a comma-separated ``policy`` (any of color, translation, cutout; the paper's
    default is all three). It has no state: every batch gets fresh parameters, and ``observe`` logs nothing."""

    def __init__(
        self, policy: str = "color,translation,cutout", translation_ratio: float = 0.125, cutout_ratio: float = 0.5
    ) -> None:
        super().__init__()
        names = tuple(name.strip() for name in policy.split(",") if name.strip())
        unknown = [name for name in names if name not in POLICIES]
        if unknown:
            raise ConfigError(
                f"augment.policy={policy!r} names {unknown}; DiffAugment's policies are {', '.join(POLICIES)} "
                "(comma-separated, e.g. augment.policy=color,translation)"
            )
        if not 0 <= translation_ratio <= 1 or not 0 <= cutout_ratio <= 1:
            raise ConfigError(
                f"augment.translation_ratio={translation_ratio} and augment.cutout_ratio={cutout_ratio} are "
                "fractions of the image size; both must lie in [0, 1] (the paper: 0.125 and 0.5)"
            )
        self.policy = names
        self.translation_ratio = translation_ratio
        self.cutout_ratio = cutout_ratio

    def extra_repr(self) -> str:
        return f"policy={','.join(self.policy)!r}"

    def cutout_size(self, height: int, width: int) -> tuple[int, int]:
        return _round_half_up(height * self.cutout_ratio), _round_half_up(width * self.cutout_ratio)

    def sample(self, images: torch.Tensor) -> DiffAugmentParams:
        """Fresh parameters for each sample of ``images`` (B, C, H, W)."""
        b, _, h, w = images.shape
        device = images.device
        dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
        params = DiffAugmentParams()
        if "color" in self.policy:
            params.brightness = torch.rand(b, 1, 1, 1, device=device, dtype=dtype) - 0.5
            params.saturation = torch.rand(b, 1, 1, 1, device=device, dtype=dtype) * 2
            params.contrast = torch.rand(b, 1, 1, 1, device=device, dtype=dtype) + 0.5
        if "translation" in self.policy:
            max_dy, max_dx = _round_half_up(h * self.translation_ratio), _round_half_up(w * self.translation_ratio)
            dy = torch.randint(-max_dy, max_dy + 1, (b,), device=device)
            dx = torch.randint(-max_dx, max_dx + 1, (b,), device=device)
            params.shift = torch.stack([dy, dx], dim=1)
        if "cutout" in self.policy:
            size = self.cutout_size(h, w)
            # The centre is a pixel, or for an even side the corner between four, anywhere in the image.
            cy = torch.randint(0, h + 1 - size[0] % 2, (b,), device=device)
            cx = torch.randint(0, w + 1 - size[1] % 2, (b,), device=device)
            params.cutout_corner = torch.stack([cy - size[0] // 2, cx - size[1] // 2], dim=1)
        return params

    def transform(self, images: torch.Tensor, params: DiffAugmentParams) -> torch.Tensor:
        """``images`` augmented with ``params``: differentiable (and linear) in the images."""
        x = images
        for name in self.policy:
            if name == "color":
                if params.brightness is not None:
                    x = x + params.brightness.to(x.dtype)
                if params.saturation is not None:
                    mean = x.mean(dim=1, keepdim=True)
                    x = (x - mean) * params.saturation.to(x.dtype) + mean
                if params.contrast is not None:
                    mean = x.mean(dim=(1, 2, 3), keepdim=True)
                    x = (x - mean) * params.contrast.to(x.dtype) + mean
            elif name == "translation" and params.shift is not None:
                x = shift_images(x, params.shift)
            elif name == "cutout" and params.cutout_corner is not None:
                h, w = x.shape[-2:]
                x = x * square_mask(h, w, params.cutout_corner, self.cutout_size(h, w), x.dtype)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.transform(images, self.sample(images))
