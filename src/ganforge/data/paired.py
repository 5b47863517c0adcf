"""Paired data for image-to-image GANs (pix2pix, SRGAN): batches of ``(target, source)`` images.

The targets stand where unconditional data has its images (what D compares generated images with, what the
FID reference reads), the sources where it has class labels. Tasks are derived offline from any in-memory
dataset (:class:`PairedDataModule`: edges -> image, masked -> image, low -> high resolution), or read from
the pix2pix folder layouts (:class:`PairedFolderDataModule`) for a user's own pairs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import kornia
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ganforge.data.datamodules import Batch, GANDataModule, TensorImages, ToChannels, find_images, in_memory_split
from ganforge.errors import ConfigError, DatasetNotFoundError
from ganforge.metrics.cache import cached

#: Grey level (uint8) of the square an inpainting task hides: 0 in [-1, 1], unlike Fashion-MNIST's black ground.
MASK_FILL = 128


class PairedImages(TensorImages):
    """Targets with their class labels, and the source image each is translated from; an item is
    ``(target, source)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, sources: torch.Tensor) -> None:
        super().__init__(images, labels)
        self.sources = sources

    def __getitem__(self, index: int) -> Batch:
        return self.images[index], self.sources[index]

    def __getitems__(self, indices: list[int]) -> Batch:
        index = torch.as_tensor(indices)
        return self.images[index], self.sources[index]

    def select(self, index: torch.Tensor) -> PairedImages:
        return PairedImages(self.images[index], self.labels[index], self.sources[index])


def canny_edges(images: torch.Tensor, thresholds: tuple[float, float] = (0.1, 0.2), chunk: int = 16) -> torch.Tensor:
    """Canny edge maps (kornia's, on the luma), uint8 (N, 1, H, W): 255 on an edge, 0 elsewhere.

    Small chunks: kornia's hysteresis repeats until the slowest image of a chunk settles (Fashion-MNIST at
    32x32, one thread: 0.63 ms per image in chunks of 16, 2.5 ms in chunks of 2000; the maps are the same)."""
    low, high = thresholds
    maps = [kornia.filters.canny(part.float() / 255, low, high)[1] for part in images.split(chunk)]
    return (torch.cat(maps) * 255).to(torch.uint8)


def masked(images: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """The images with a ``size`` x ``size`` square set to :data:`MASK_FILL`, at a position drawn for each
    image from ``seed`` (the same image always hides the same square)."""
    n, _, height, width = images.shape
    if not 0 < size <= min(height, width):
        raise ConfigError(f"data.mask_size={size} must lie in 1..{min(height, width)} for {height}x{width} images")
    rng = torch.Generator().manual_seed(seed)
    tops = torch.randint(height - size + 1, (n,), generator=rng)
    lefts = torch.randint(width - size + 1, (n,), generator=rng)
    rows = torch.arange(height)[None, :, None]
    cols = torch.arange(width)[None, None, :]
    hidden = ((rows >= tops[:, None, None]) & (rows < tops[:, None, None] + size)) & (
        (cols >= lefts[:, None, None]) & (cols < lefts[:, None, None] + size)
    )
    return images.masked_fill(hidden[:, None], MASK_FILL)


def downsampled(images: torch.Tensor, scale: int) -> torch.Tensor:
    """The images shrunk ``scale`` times by antialiased bicubic interpolation (SRGAN's low-resolution inputs)."""
    height, width = images.shape[-2:]
    if scale < 2 or height % scale or width % scale:
        raise ConfigError(f"data.scale={scale} must be >= 2 and divide the {height}x{width} image size")
    size = [height // scale, width // scale]
    return v2.functional.resize(images, size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)


class PairedDataModule(GANDataModule):
    """A translation task made from an in-memory dataset (``base``, e.g. Fashion-MNIST): ``task=edges``
    (Canny edge map -> image), ``masked`` (a square hidden -> image, inpainting) or ``lowres`` (bicubic
    downsampling by ``scale`` -> image, super-resolution). The sources are computed once per split, the
    same way every time, so runs and evaluations see the same pairs, and cached under ``cache_dir`` (keyed by
    the targets' bytes and the task's settings; edge maps of Fashion-MNIST's 70,000 images take about a minute).

    ``source_channels`` and ``source_resolution`` are what the generator reads; they are config values (the
    nets' sizes interpolate them) and are checked against the task.
    """

    tasks = ("edges", "masked", "lowres")

    def __init__(
        self,
        base: GANDataModule,
        task: str = "edges",
        source_channels: int = 1,
        source_resolution: int | None = None,
        scale: int = 4,
        mask_size: int | None = None,
        edge_thresholds: tuple[float, float] = (0.1, 0.2),
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cache_dir = cache_dir
        if task not in self.tasks:
            raise ConfigError(f"data.task={task!r}: choose one of {', '.join(self.tasks)}")
        self.base, self.task, self.scale = base, task, scale
        self.mask_size = mask_size if mask_size is not None else (self.resolution or 0) // 2
        self.edge_thresholds = (float(edge_thresholds[0]), float(edge_thresholds[1]))
        self.name = f"{base.name} {task}"
        self.domain = base.domain
        if self.fit != base.fit:
            raise ConfigError(f"data.fit={self.fit} differs from data.base.fit={base.fit}; set them alike")
        expected = self.source_shape_for(task)
        given = (source_channels, source_resolution)
        if given != expected:
            raise ConfigError(
                f"data.task={task} on {self.channels}-channel {self.resolution}x{self.resolution} images gives "
                f"{expected[0]}-channel {expected[1]}x{expected[1]} sources; set data.source_channels={expected[0]} "
                f"data.source_resolution={expected[1]} (got {given[0]} and {given[1]})"
            )
        self.source_channels, self.source_resolution = expected
        self._splits: dict[bool, PairedImages] = {}

    def source_shape_for(self, task: str) -> tuple[int, int]:
        resolution = self.resolution or 0
        if task == "edges":
            return 1, resolution
        if task == "lowres":
            return self.channels, resolution // self.scale
        return self.channels, resolution

    def make_sources(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        if self.task == "edges":
            return canny_edges(images, self.edge_thresholds)
        if self.task == "lowres":
            return downsampled(images, self.scale)
        return masked(images, self.mask_size, seed=int(train))  # a different draw for each split

    def base_split(self, train: bool) -> TensorImages:
        return in_memory_split(self.base, train, "derived tasks", "for pairs on disk use data=paired_folder")

    def paired(self, targets: TensorImages, train: bool) -> PairedImages:
        images = targets.images.contiguous()
        key = {
            "sources": self.task,
            "settings": [self.scale, self.mask_size, list(self.edge_thresholds), int(train)],
            "targets": hashlib.sha256(images.numpy().tobytes()).hexdigest(),
            "shape": list(images.shape),
        }
        sources = cached(self.cache_dir, key, lambda: self.make_sources(images, train))
        return PairedImages(targets.images, targets.labels, sources)

    def at_resolution(self, resolution: int) -> PairedDataModule:
        other = cast(PairedDataModule, super().at_resolution(resolution))
        other.base, other._splits = self.base.at_resolution(resolution), {}
        return other

    def load_split(self, train: bool) -> PairedImages:
        if train not in self._splits:  # the sources are computed once per split
            self._splits[train] = self.paired(self.base_split(train), train)
        return self._splits[train]

    def setup(self, stage: str | None = None) -> None:
        """With ``subset``, only the subset's sources are computed."""
        if self.train_set is None:
            targets = self.subset_of(self.base_split(train=True))
            assert isinstance(targets, TensorImages)
            self.train_set = self.paired(targets, train=True)


class PairedFiles(Dataset[Batch]):
    """Pairs of image files decoded on demand: ``(target, source)`` uint8 tensors, with the sides split (a
    pix2pix ``A|B`` image) or read from two files."""

    def __init__(self, pairs: list[tuple[Path, Path | None]], read: Callable[[Path, Path | None], Batch]) -> None:
        self.pairs, self.read = pairs, read
        self.targets = [0] * len(pairs)  # no classes

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Batch:
        return self.read(*self.pairs[index])


class PairedFolderDataModule(GANDataModule):
    """A user's pairs in the pix2pix layouts, under ``data_dir``:

    - ``layout=aligned``: ``train/`` and ``test/`` (or ``val/``) hold images with side A on the left half
      and side B on the right, as the pix2pix datasets ship (facades, maps, edges2shoes);
    - ``layout=folders``: ``train/A``, ``train/B``, ``test/A``, ``test/B`` with matching file names.

    ``direction=AtoB`` translates A into B (B is the target). Both sides are converted to their channels
    (:class:`~ganforge.data.datamodules.ToChannels`) and resized to ``resolution`` (square).
    """

    name = "paired image folder"

    def __init__(
        self,
        layout: str = "aligned",
        direction: str = "AtoB",
        source_channels: int = 3,
        source_resolution: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if layout not in ("aligned", "folders"):
            raise ConfigError(f"data.layout={layout!r}: choose aligned (A|B side by side) or folders (A/ and B/)")
        if direction not in ("AtoB", "BtoA"):
            raise ConfigError(f"data.direction={direction!r}: choose AtoB or BtoA")
        if source_resolution not in (None, self.resolution):
            raise ConfigError(f"data.source_resolution must equal data.resolution ({self.resolution}) for folders")
        self.layout, self.direction = layout, direction
        self.source_channels, self.source_resolution = source_channels, self.resolution

    def split_folder(self, train: bool) -> Path:
        root = Path(self.data_dir).expanduser()
        names = ["train"] if train else ["test", "val"]
        for name in names:
            if (root / name).is_dir():
                return root / name
        wanted = "train/" if train else "test/ (or val/)"
        raise DatasetNotFoundError(
            f"data.data_dir={self.data_dir!r} has no {wanted} folder; the pix2pix layout is <data_dir>/train/ and "
            "<data_dir>/test/ with A|B images (layout=aligned), or train/A, train/B, test/A, test/B (layout=folders)"
        )

    def load_split(self, train: bool) -> PairedFiles:
        folder = self.split_folder(train)
        if self.layout == "aligned":
            files, _ = find_images(folder)
            pairs: list[tuple[Path, Path | None]] = [(file, None) for file in files]
        else:
            side_a, side_b = folder / "A", folder / "B"
            names_a = {p.relative_to(side_a) for p in find_images(side_a)[0]}
            names_b = {p.relative_to(side_b) for p in find_images(side_b)[0]}
            if names_a != names_b:
                odd = sorted(names_a ^ names_b)
                raise DatasetNotFoundError(
                    f"{folder}: A/ and B/ must hold files of the same names; {len(odd)} have no partner, e.g. "
                    f"{', '.join(str(p) for p in odd[:3])}"
                )
            pairs = [(side_a / name, side_b / name) for name in sorted(names_a)]
        if not pairs:
            raise DatasetNotFoundError(f"{folder} holds no images ({self.layout} layout)")
        return PairedFiles(pairs, self.read_pair)

    def read_pair(self, first: Path, second: Path | None) -> Batch:
        """``(target, source)`` of one pair."""
        if second is None:
            with Image.open(first) as image:
                half = image.width // 2
                side_a, side_b = (
                    image.crop((0, 0, half, image.height)),
                    image.crop((half, 0, image.width, image.height)),
                )
        else:
            with Image.open(first) as image_a, Image.open(second) as image_b:
                side_a, side_b = image_a.copy(), image_b.copy()
        source, target = (side_a, side_b) if self.direction == "AtoB" else (side_b, side_a)
        return self.to_tensor(target, self.channels), self.to_tensor(source, self.source_channels)

    def to_tensor(self, image: Image.Image, channels: int) -> torch.Tensor:
        size = [self.resolution or image.height, self.resolution or image.width]
        return v2.functional.resize(v2.functional.pil_to_tensor(ToChannels(channels)(image)), size, antialias=True)
