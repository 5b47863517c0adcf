"""Perceptual path length (Karras et al. 2019, section 4.2): how much a generator's image changes, perceptually,
along a small step of an interpolation between two latents. A disentangled latent space changes the image smoothly
and evenly along a path; StyleGAN's claim is that its W is such a space and its Z is not (PPL in W below PPL in Z).

    l = E[ d(G(path(t)), G(path(t + eps))) / eps^2 ],  t ~ U(0, 1) (``full`` paths) or t = 0 (``end`` points)

- In Z, ``path`` interpolates spherically between two latents (the paper's slerp of the directions; the length is
  interpolated linearly, which a style-based generator's pixel normalisation ignores and any other generator needs
  to stay among the latents it was trained on). In W, linearly between the two latents' w, the same w for every
  layer.
- ``d`` is the squared perceptual distance: LPIPS (VGG, as the paper's) where its weights are available, or,
  offline, the squared Euclidean distance between the metric's own features (FID's space: the domain classifier's
  penultimate layer for Fashion-MNIST and MNIST).
- As in the paper's code, values outside the 1st-99th percentile are dropped before averaging. Both images of a
  pair share the label (a conditional G) and the noise inputs (eval mode: a style-based G's fixed noise maps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ganforge.errors import ConfigError, GanforgeError
from ganforge.generation import at_full_resolution, class_major_labels, eval_mode
from ganforge.metrics.features import FeatureExtractor

SPACES = ("z", "w")
SAMPLING = ("full", "end")
DISTANCES = ("features", "lpips")

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the directions of ``a`` and ``b`` (rows), the lengths interpolated linearly."""
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    ua, ub = a / na, b / nb
    cos = (ua * ub).sum(dim=1, keepdim=True).clamp(-1.0, 1.0)
    orthogonal = ub - cos * ua
    orthogonal = orthogonal / orthogonal.norm(dim=1, keepdim=True).clamp_min(1e-12)
    angle = t[:, None] * torch.acos(cos)
    return (ua * torch.cos(angle) + orthogonal * torch.sin(angle)) * torch.lerp(na, nb, t[:, None])


def feature_distance(extractor: FeatureExtractor) -> Distance:
    """The squared Euclidean distance between two batches' features in ``extractor``'s space."""

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (extractor(a)[0] - extractor(b)[0]).square().sum(dim=1)

    return distance


def lpips_distance(net: str = "vgg") -> Distance:
    """LPIPS (Zhang et al. 2018; torchmetrics' network and its shipped linear layers), per pair of images in
    [-1, 1], grey images repeated to three channels. Its backbone's ImageNet weights come from torchvision's hub
    (downloaded once into ``$TORCH_HOME/hub/checkpoints``)."""
    from torchmetrics.functional.image.lpips import _LPIPS  # per-sample distances; the metric class only reduces

    try:
        model = _LPIPS(pretrained=True, net=cast(Any, net)).eval().requires_grad_(False)
    except Exception as error:  # a download that cannot happen offline: urllib, ssl, socket or hub errors
        raise GanforgeError(
            f"LPIPS ({net}) needs torchvision's ImageNet weights for its backbone, which could not be loaded "
            f"({error}); with a network they download by themselves, offline put the file into "
            "$TORCH_HOME/hub/checkpoints, "
            "or use path_length.distance=features (the metric's own feature space)"
        ) from error

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        model.to(a.device)
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        return model(a.clamp(-1, 1), b.clamp(-1, 1), normalize=False).flatten()

    return distance


def _check(space: str, sampling: str, epsilon: float, generator: nn.Module) -> None:
    if space not in SPACES:
        raise ConfigError(f"ppl={space!r}: choose z or w (the latent space the paths run through)")
    if sampling not in SAMPLING:
        raise ConfigError(f"path_length.sampling={sampling!r}: choose full (t ~ U(0, 1)) or end (t = 0)")
    if not epsilon > 0:
        raise ConfigError(f"path_length.epsilon={epsilon}: the step along the path must be positive (the paper: 1e-4)")
    if space == "w" and not (hasattr(generator, "mapping") and hasattr(generator, "synthesis")):
        raise ConfigError(
            f"ppl=w walks the intermediate latent space of a style-based generator (model=stylegan or stylegan2); "
            f"{type(generator).__name__} has none: use ppl=z"
        )


@torch.no_grad()
def path_lengths(
    generator: nn.Module,
    distance: Distance,
    n: int,
    space: str = "w",
    sampling: str = "end",
    epsilon: float = 1e-4,
    seed: int = 0,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``n`` path-length samples ``d(G(path(t)), G(path(t + epsilon))) / epsilon**2`` (see the module's docstring).
    Latents, ``t`` and labels come from a CPU stream seeded by ``seed``, so a seed gives the same pairs anywhere."""
    _check(space, sampling, epsilon, generator)
    rng = torch.Generator().manual_seed(seed)
    latent_dim = cast(int, generator.latent_dim)
    num_classes = getattr(generator, "num_classes", None)
    labels = class_major_labels(n, num_classes) if num_classes else None
    resolution = getattr(generator, "resolution", None)
    values = []
    with eval_mode(generator):
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            z = torch.randn(2, m, latent_dim, generator=rng)
            t = torch.rand(m, generator=rng) if sampling == "full" else torch.zeros(m)
            y = labels[start : start + m].repeat(2).to(device) if labels is not None else None
            if space == "z":
                pair = torch.cat([slerp(z[0], z[1], t), slerp(z[0], z[1], t + epsilon)]).to(device)
                images = generator(pair, y)
            else:
                style = cast(Any, generator)
                w0, w1 = style.mapping(z.flatten(0, 1).to(device), y).chunk(2)
                t_dev = t.to(device)[:, None, None]
                ws = torch.cat([torch.lerp(w0, w1, t_dev), torch.lerp(w0, w1, t_dev + epsilon)])
                images = style.synthesis(ws)
            a, b = at_full_resolution(images.float(), resolution).chunk(2)
            values.append((distance(a, b) / epsilon**2).cpu())
    return torch.cat(values)


def perceptual_path_length(values: torch.Tensor) -> float:
    """The mean of the path-length samples inside their 1st-99th percentile (the paper's code drops the rest)."""
    array = values.double().numpy()
    low, high = np.percentile(array, 1, method="lower"), np.percentile(array, 99, method="higher")
    return float(array[(array >= low) & (array <= high)].mean())
