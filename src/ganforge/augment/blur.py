"""StyleGAN3's blur of what D sees (Karras et al. 2021, config R): every image D judges, real or generated, is
blurred by a filter ``exp2(-(x / sigma)^2)`` over ``|x| <= 3 sigma`` (separable, zero-padded, normalised), with
``sigma`` falling linearly from ``sigma`` pixels to 0 over the first ``fade_kimg`` thousand real images. Early in
training it hides the fine detail a rotation-equivariant G cannot draw yet, so D judges the coarse content first.

The images counted are D's real logits (summed over ranks), seen after every D step like ADA's: a buffer, so
checkpoints carry the fade and a resumed run blurs where it stopped.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ganforge.augment import Augmentation
from ganforge.errors import ConfigError


class FadingBlur(Augmentation):
    seen: torch.Tensor

    def __init__(self, sigma: float = 10.0, fade_kimg: float = 200.0) -> None:
        super().__init__()
        if sigma < 0 or fade_kimg <= 0:
            raise ConfigError(f"augment=blur needs sigma >= 0 and fade_kimg > 0, got {sigma} and {fade_kimg}")
        self.sigma0, self.fade_kimg = sigma, fade_kimg
        self.register_buffer("seen", torch.zeros((), dtype=torch.float64))

    def sigma(self) -> float:
        """The blur now, in pixels."""
        return self.sigma0 * max(0.0, 1.0 - float(self.seen) / (self.fade_kimg * 1000))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        sigma = self.sigma()
        if sigma <= 0:
            return images
        radius = math.floor(sigma * 3)
        taps = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
        f = taps.div(sigma).square().neg().exp2()
        f = f / f.sum()
        c = images.shape[1]
        x = F.conv2d(images, f.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, radius), groups=c)
        return F.conv2d(x, f.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(radius, 0), groups=c)

    def observe(self, real_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        count = torch.full((), float(real_logits.numel()), device=real_logits.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(count)
        self.seen += count.to(self.seen)
        return {"augment/blur_sigma": torch.tensor(self.sigma())}
