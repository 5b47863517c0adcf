"""One training image (SinGAN, Shaham et al. 2019): ``data=single_image data.path=photo.jpg``.

``path`` is an image file, or ``skimage:<name>`` for a photo that ships inside scikit-image's wheel (``rocket``,
``chelsea``, ``coffee``, ``astronaut``, ...), so the default runs offline. The image keeps its aspect ratio: it
is resized (antialiased) so that its longer side is ``max_side``; ``size`` (h, w) is what the nets are built for,
and the config reads it through the ``image_size`` resolver before anything is built. Both splits hold the one
image: training draws it every batch, and the patch metrics (``metrics.scorer.swd``) compare samples with it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2

from ganforge.data.datamodules import GANDataModule, TensorImages
from ganforge.errors import ConfigError, DatasetNotFoundError

BUNDLED = "skimage:"
#: A split holds the image ``batch_size`` x this many times, so that every rank of a DDP run of up to this many
#: ranks draws whole batches of it.
RANKS = 16


def image_path(path: str) -> Path:
    """The file ``path`` names: itself, or for ``skimage:<name>`` the photo in scikit-image's package data."""
    if not path.startswith(BUNDLED):
        file = Path(path).expanduser()
        if not file.is_file():
            raise DatasetNotFoundError(f"data.path={path}: no such image file; give an image file, or skimage:rocket")
        return file
    name = path[len(BUNDLED) :]
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(f"data.path={path} needs scikit-image: pip install scikit-image")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    found = sorted(p for p in folder.glob(f"{name}.*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not found:
        photos = sorted({p.stem for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")})
        raise DatasetNotFoundError(f"data.path={path}: scikit-image ships no photo {name!r}; choose one of {photos}")
    return found[0]


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(h, w) of a ``width`` x ``height`` image resized so that its longer side is ``max_side``."""
    scale = max_side / max(width, height)
    return max(1, round(height * scale)), max(1, round(width * scale))


def image_size(path: str, max_side: int) -> list[int]:
    """The ``image_size`` resolver: [h, w] the image will have (reads the file's header only)."""
    with Image.open(image_path(path)) as image:
        return list(fitted_size(*image.size, max_side))


def read_image(path: str, channels: int) -> torch.Tensor:
    """An image file (or ``skimage:<name>``) as a (1, C, H, W) float tensor in [-1, 1], at its own size."""
    with Image.open(image_path(path)) as file:
        image = file.convert("L" if channels == 1 else "RGB")
    return v2.functional.pil_to_tensor(image)[None].float() / 127.5 - 1


class SingleImageDataModule(GANDataModule):
    """One image, every batch ``batch_size`` copies of it; the test split the same image."""

    name = "single image"

    def __init__(
        self, path: str = "skimage:rocket", max_side: int = 128, size: Sequence[int] | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("resolution", max_side)
        super().__init__(**kwargs)
        self.path, self.max_side = path, max_side
        self.size = tuple(size) if size is not None else None

    def load_split(self, train: bool) -> TensorImages:
        with Image.open(image_path(self.path)) as file:
            image = file.convert("L" if self.channels == 1 else "RGB")
        size = fitted_size(*image.size, self.max_side)
        pixels = v2.functional.pil_to_tensor(image)
        if self.size is not None and self.size != size:
            raise ConfigError(
                f"data.size={list(self.size)}, but {self.path} at max_side={self.max_side} is {list(size)}; "
                f"set data.size={list(size)} (the default reads it from the file)"
            )
        pixels = v2.functional.resize(pixels[None], list(size), antialias=True)
        copies = self.batch_size * RANKS
        return TensorImages(pixels.expand(copies, -1, -1, -1).contiguous(), torch.zeros(copies, dtype=torch.long))
