"""``ganforge-translate``: run an image-to-image generator (pix2pix, SRGAN, CycleGAN) from a checkpoint on images."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torchvision.transforms import v2
from torchvision.utils import save_image

from ganforge.callbacks.translation import comparison_grid
from ganforge.config import generator_from_checkpoint, load_checkpoint
from ganforge.data.datamodules import ToChannels, find_images, to_unit_interval, unreadable
from ganforge.errors import ConfigError, DatasetNotFoundError
from ganforge.generation import resolve_device
from ganforge.metrics.translation import translator


def read_inputs(path: Path, channels: int, size: int) -> tuple[torch.Tensor, list[Path]]:
    """uint8 (N, channels, size, size) images from a folder or an npz (``images``), and their names (relative
    paths; ``<index>.png`` for an npz)."""
    if not path.exists():
        raise DatasetNotFoundError(f"input={str(path)!r} does not exist; give a folder of images or an .npz file")
    if path.is_dir():
        files, _ = find_images(path)
        if not files:
            raise DatasetNotFoundError(f"input={str(path)!r} holds no image files")
        bad = [f"{file.relative_to(path)} ({reason})" for file in files if (reason := unreadable(file)) is not None]
        if bad:
            raise DatasetNotFoundError(f"{len(bad)} input file(s) cannot be read: {', '.join(bad[:5])}")
        to_channels = ToChannels(channels)
        images = []
        for file in files:
            with Image.open(file) as image:
                images.append(v2.functional.pil_to_tensor(to_channels(image)))
        names = [file.relative_to(path).with_suffix(".png") for file in files]
        batch = [v2.functional.resize(image, [size, size], antialias=True) for image in images]
        return torch.stack(batch), names
    with np.load(path) as data:
        if "images" not in data:
            raise ConfigError(f"{str(path)!r} has no `images` array (it holds {', '.join(data.files) or 'nothing'})")
        array = data["images"]
    if array.dtype != np.uint8 or array.ndim not in (3, 4):
        raise ConfigError(
            f"`images` in {str(path)!r} must be uint8 (N, H, W) or (N, C, H, W), got {array.dtype} {array.shape}"
        )
    tensor = torch.from_numpy(array if array.ndim == 4 else array[:, None])
    if tensor.shape[1] != channels:
        if tensor.shape[1] not in (1, 3):
            raise ConfigError(
                f"`images` in {str(path)!r} has {tensor.shape[1]} channels; the generator reads {channels}"
            )
        tensor = (
            tensor.float().mean(dim=1, keepdim=True).round().to(torch.uint8)
            if channels == 1
            else tensor.expand(-1, 3, -1, -1)
        )
    tensor = v2.functional.resize(tensor, [size, size], antialias=True)
    return tensor.contiguous(), [Path(f"{i:06d}.png") for i in range(len(tensor))]


def translate(cfg: DictConfig) -> Path:
    generator, _ = generator_from_checkpoint(load_checkpoint(cfg.ckpt), ema=cfg.ema, translation=True)
    if cfg.inverse and not hasattr(generator, "inverse"):
        raise ConfigError(
            f"inverse=true runs a two-way generator's other direction (CycleGAN's B -> A); this checkpoint's "
            f"{type(generator).__name__} translates one way: drop inverse=true"
        )
    channels, size, _ = cast(tuple[int, int, int], generator.target_shape if cfg.inverse else generator.source_shape)
    device = resolve_device(cfg.device)
    sources, names = read_inputs(Path(cfg.input), channels, size)
    run = translator(generator.to(device), device, inverse=cfg.inverse)
    outputs = torch.cat([run(to_unit_interval(part)).float().cpu() for part in sources.split(cfg.batch_size)])
    images = ((outputs.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    out = Path(cfg.out)
    if out.suffix == ".npz":
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, images=images.numpy())
    else:
        for name, image in zip(names, images, strict=True):
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            save_image(image.float() / 255, out / name)
    message = f"translated {len(images)} images into {out}"
    if cfg.grid:
        n = min(cfg.grid_n, len(images))
        save_image(comparison_grid(to_unit_interval(sources[:n]), outputs[:n]), cfg.grid)
        message += f", grid in {cfg.grid}"
    print(message)
    return out


if __name__ == "__main__":
    from ganforge.cli import translate as main

    main()
