"""``ganforge-sample``: draw samples from a checkpoint into an npz under key ``arr_0``.

Images are stored as uint8 NHWC (the layout FID tools read); vector samples, such as
2-D mixture points, as float32 of shape (N, D). A conditional model's labels go under
``arr_1`` (int64, one per sample).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from omegaconf import DictConfig
from torchvision.utils import save_image

from ganforge.config import generator_from_checkpoint, load_checkpoint
from ganforge.data.single import read_image
from ganforge.errors import ConfigError
from ganforge.games.infogan import CodedGenerator, WithCodes, traversal_latents
from ganforge.generation import (
    check_truncation,
    class_major_labels,
    eval_mode,
    generate_batches,
    resolve_device,
    samples_per_class,
)
from ganforge.metrics.classifier import to_pixels
from ganforge.nets.pyramid import PyramidGenerator, PyramidSampler
from ganforge.plots import scatter_png


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW floats -> [0, 255] NHWC uint8, the layout FID tools read."""
    return to_pixels(images).permute(0, 2, 3, 1).cpu().numpy()


def sample_labels(y: int | str | None, n: int, num_classes: int | None, ckpt: str) -> torch.Tensor | None:
    """The classes to draw: None for an unconditional generator; for a conditional one, class ``y``
    for all ``n`` samples, or with ``y=all`` (or null) every class equally, ``n`` rounded up to whole
    classes, in class-major order."""
    if num_classes is None:
        if y is not None:
            raise ConfigError(
                f"y={y} needs a conditional model, but {ckpt!r} was trained unconditionally "
                "(model.conditional=false); drop y= or sample a conditional checkpoint"
            )
        return None
    if y is None or y == "all":
        return class_major_labels(samples_per_class(n, num_classes) * num_classes, num_classes)
    if isinstance(y, bool) or not isinstance(y, int) or not 0 <= y < num_classes:
        raise ConfigError(f"y must be a class in 0..{num_classes - 1} or all, got y={y}")
    return torch.full((n,), y, dtype=torch.int64)


def truncate(generator: torch.nn.Module, psi: float | None, ckpt: str) -> None:
    """The truncation trick (``psi=0.7``): a style-based generator draws ``w_avg + psi (w - w_avg)``."""
    if psi is None:
        return
    if not hasattr(generator, "truncation_psi"):
        raise ConfigError(
            f"psi={psi} needs a style-based generator (model=stylegan2), but {ckpt!r} holds a "
            f"{type(generator).__name__}; drop psi="
        )
    if not 0 <= psi <= 1:
        raise ConfigError(f"psi={psi}: the truncation psi lies in [0, 1] (1: no truncation, 0: the average image)")
    cast(Any, generator).truncation_psi = float(psi)


def pyramid_sampler(cfg: DictConfig, generator: torch.nn.Module) -> torch.nn.Module:
    """SinGAN's uses of a pyramid generator: ``size=[h,w]``, ``start_scale=n``, ``inject=image`` (else the
    generator as it is)."""
    size, start, inject = cfg.get("size"), cfg.get("start_scale"), cfg.get("inject")
    if size is None and start is None and inject is None:
        return generator
    if not isinstance(generator, PyramidGenerator):
        raise ConfigError(
            f"size=, start_scale= and inject= need a pyramid of generators (model=singan or model=lapgan), but "
            f"{cfg.ckpt!r} holds a {type(generator).__name__}; drop them"
        )
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ConfigError(f"size={list(size)}: give the output's [height, width] in pixels")
    image = read_image(inject, generator.channels) if inject is not None else None
    return PyramidSampler(generator, size, start or 0, image).to(next(generator.parameters()).device)


def coded(generator: torch.nn.Module, option: str, ckpt: str) -> CodedGenerator:
    """The generator, if it has latent codes (InfoGAN's); else the error that says so."""
    if not isinstance(generator, CodedGenerator):
        raise ConfigError(
            f"{option} needs a generator with latent codes (game=infogan), but {ckpt!r} holds a "
            f"{type(generator).__name__}; drop {option}"
        )
    return generator


@torch.no_grad()
def traverse(cfg: DictConfig, generator: torch.nn.Module, device: torch.device) -> Path:
    """``traverse=K``: a grid whose rows each vary code K (other codes and noise fixed per row)."""
    generator = coded(generator, "traverse=", cfg.ckpt)
    latents, columns = traversal_latents(generator, cfg.traverse, cfg.grid_n, cfg.seed)
    labels = None
    if generator.num_classes is not None:  # one class for the whole grid, so that only the code varies
        if not isinstance(cfg.get("y"), int):
            raise ConfigError(
                f"traverse= on a conditional generator draws one class; add y=K (K in 0..{generator.num_classes - 1})"
            )
        labels = cast(torch.Tensor, sample_labels(cfg.y, len(latents), generator.num_classes, cfg.ckpt)).to(device)
    with eval_mode(generator):
        samples = generator(latents.to(device), labels).float().cpu()
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, arr_0=to_uint8_nhwc(samples))
    grid = Path(cfg.grid or out.with_suffix(".png"))
    save_image(samples, grid, nrow=columns, normalize=True, value_range=(-1, 1))
    print(f"wrote {len(samples)} samples to {out} and a grid to {grid} (each row varies code {cfg.traverse})")
    return out


@torch.no_grad()
def sample(cfg: DictConfig) -> Path:
    checkpoint = load_checkpoint(cfg.ckpt)
    generator, _ = generator_from_checkpoint(checkpoint, ema=cfg.ema)
    device = resolve_device(cfg.device)
    generator.to(device)
    if cfg.get("traverse") is not None:
        return traverse(cfg, generator, device)
    if cfg.get("code") is not None:
        generator = WithCodes(coded(generator, "code=", cfg.ckpt), list(cfg.code))
    generator = pyramid_sampler(cfg, generator)
    num_classes = getattr(generator, "num_classes", None)
    labels = sample_labels(cfg.get("y"), cfg.n, num_classes, cfg.ckpt)
    n = cfg.n if labels is None else len(labels)
    truncate(generator, cfg.get("psi"), cfg.ckpt)
    threshold = cfg.get("truncation")
    check_truncation(threshold)
    batches = generate_batches(generator, n, cfg.seed, cfg.batch_size, device, labels=labels, truncation=threshold)
    samples = torch.cat([x.cpu() for x in batches])
    extra: dict[str, Any] = {} if labels is None else {"arr_1": labels.numpy()}
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if samples.dim() == 2:  # vectors such as 2-D mixture points: stored as they are
        np.savez(out, arr_0=samples.numpy().astype(np.float32), **extra)
        if cfg.grid:
            scatter_png(samples, None, Path(cfg.grid), title=f"{len(samples)} samples")
    else:
        np.savez(out, arr_0=to_uint8_nhwc(samples), **extra)
        if cfg.grid:
            by_class = labels is not None and not isinstance(cfg.get("y"), int)  # y=all: class-major
            grid, nrow = grid_images(samples, num_classes if by_class else None, cfg.grid_n)
            save_image(grid, cfg.grid, nrow=nrow, normalize=True, value_range=(-1, 1))
    print(f"wrote {len(samples)} samples to {out}" + (f" and a grid to {cfg.grid}" if cfg.grid else ""))
    return out


def grid_images(samples: torch.Tensor, num_classes: int | None, grid_n: int) -> tuple[torch.Tensor, int]:
    """At most ``grid_n`` images and the grid's row length: the first ones in a square, or, for samples
    of ``num_classes`` equal classes in class-major order, up to ``grid_n // num_classes`` of each
    class, one row per class."""
    if num_classes is None:
        return samples[:grid_n], int(grid_n**0.5)
    per_class = samples.view(num_classes, len(samples) // num_classes, *samples.shape[1:])
    columns = min(max(1, grid_n // num_classes), per_class.shape[1])
    return per_class[:, :columns].flatten(0, 1), columns


if __name__ == "__main__":
    from ganforge.cli import sample as main

    main()
