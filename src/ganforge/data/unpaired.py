"""Unpaired data for CycleGAN: two image domains, A and B, each sampled independently of the other.

A batch is ``(b, a)``: domain B where images stand, domain A where sources stand. The training split is as long
as its larger domain; the smaller one repeats, in a fixed random order, so the two domains are shuffled
independently and which a goes with which b means nothing. The test split holds each image of A once (each
source is translated and scored once), beside images of B in a seeded order; the image metrics' reference is
:meth:`load_targets`: B's images of the split, each once, however many A has.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ganforge.data.datamodules import Batch, GANDataModule, ImageFiles, TensorImages, ToChannels, find_images
from ganforge.data.paired import PairedImages
from ganforge.errors import ConfigError, DatasetNotFoundError


def of_classes(split: TensorImages, classes: Sequence[int] | None, name: str) -> TensorImages:
    """The images of ``classes`` (all of them for None)."""
    if classes is None:
        return split
    keep = torch.isin(split.labels, torch.as_tensor(list(classes)))
    if not keep.any():
        raise ConfigError(f"data.{name}={list(classes)}: no image of the split has these labels")
    return split.select(keep.nonzero().flatten())


def interleaved(n_a: int, n_b: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training indices into two domains of ``n_a`` and ``n_b`` items, as many as the larger holds: the larger in
    order, the smaller cycled through in a seeded random order."""
    n = max(n_a, n_b)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return tuple(torch.arange(n) if k == n else order % k for k in (n_a, n_b))  # type: ignore[return-value]


def each_source_once(n_a: int, n_b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation indices: every item of domain A once, in order, beside B's in order (distinct while B lasts,
    then from its start again: B's side only fills grids, the reference is B itself). With equal domains, the
    same indices as :func:`interleaved`."""
    return torch.arange(n_a), torch.arange(n_a) % n_b


def split_indices(n_a: int, n_b: int, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Training cycles the smaller domain (:func:`interleaved`), evaluation scores each source once
    (:func:`each_source_once`)."""
    return interleaved(n_a, n_b, seed=1) if train else each_source_once(n_a, n_b)


class UnpairedDataModule(GANDataModule):
    """Two domains from in-memory datasets: ``base_a`` (classes ``classes_a``) and ``base_b`` (``classes_b``;
    ``base_b=null`` takes ``base_a``), e.g. Fashion-MNIST's sneakers (7) and ankle boots (9), or MNIST-5k and
    Fashion-MNIST. Both domains must share channels and resolution (their datamodules resize)."""

    paired = False

    def __init__(
        self,
        base_a: GANDataModule,
        base_b: GANDataModule | None = None,
        classes_a: Sequence[int] | None = None,
        classes_b: Sequence[int] | None = None,
        source_channels: int = 1,
        source_resolution: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base_a, self.base_b = base_a, base_b or base_a
        self.classes_a = list(classes_a) if classes_a is not None else None
        self.classes_b = list(classes_b) if classes_b is not None else None
        shapes = {(d.channels, d.resolution) for d in (self.base_a, self.base_b)} | {
            (source_channels, source_resolution)
        }
        if len(shapes | {(self.channels, self.resolution)}) > 1:
            raise ConfigError(
                f"data: domains A and B and the config must agree on channels and resolution; got {sorted(shapes)} "
                f"and data.channels={self.channels} data.resolution={self.resolution}"
            )
        fits = {self.fit, self.base_a.fit, self.base_b.fit}
        if len(fits) > 1:
            raise ConfigError(f"data: domains A and B and the config must agree on fit; got {sorted(fits)}")
        self.source_channels, self.source_resolution = source_channels, source_resolution
        self.name = f"{self.base_a.name} {self.classes_a or 'all'} <-> {self.base_b.name} {self.classes_b or 'all'}"
        self.domain = self.base_b.domain  # outputs of A -> B are scored as B images
        self.target_classes = self.classes_b
        self._domains: dict[bool, tuple[TensorImages, TensorImages]] = {}

    def domains(self, train: bool) -> tuple[TensorImages, TensorImages]:
        """Domain A's and domain B's images of a split, each once."""
        if train not in self._domains:
            splits = [base.load_split(train) for base in (self.base_a, self.base_b)]
            if not all(isinstance(split, TensorImages) for split in splits):
                raise ConfigError(
                    "unpaired domains must be in-memory datasets; for images on disk use data=unpaired_folder"
                )
            a = of_classes(splits[0], self.classes_a, "classes_a")  # type: ignore[arg-type]
            b = of_classes(splits[1], self.classes_b, "classes_b")  # type: ignore[arg-type]
            self._domains[train] = a, b
        return self._domains[train]

    def at_resolution(self, resolution: int) -> UnpairedDataModule:
        other = cast(UnpairedDataModule, super().at_resolution(resolution))
        other.base_a, other.base_b = self.base_a.at_resolution(resolution), self.base_b.at_resolution(resolution)
        other._domains = {}
        return other

    def load_split(self, train: bool) -> PairedImages:
        a, b = self.domains(train)
        ia, ib = split_indices(len(a), len(b), train)
        return PairedImages(b.images[ib], b.labels[ib], a.images[ia])

    def load_targets(self, train: bool) -> TensorImages:
        """Domain B's images of a split, each once: what the image metrics compare translations with."""
        return self.domains(train)[1]


class UnpairedFiles(Dataset[Batch]):
    """Two folders of image files, decoded on demand: item i is ``(b, a)`` of :func:`split_indices`."""

    def __init__(self, a: ImageFiles, b: ImageFiles, train: bool) -> None:
        self.a, self.b = a, b
        self.index_a, self.index_b = split_indices(len(a), len(b), train)
        self.targets = [0] * len(self.index_a)

    def __len__(self) -> int:
        return len(self.index_a)

    def __getitem__(self, index: int) -> Batch:
        return self.b[int(self.index_b[index])][0], self.a[int(self.index_a[index])][0]


class UnpairedFolderDataModule(GANDataModule):
    """CycleGAN's folder layout under ``data_dir``: ``trainA/``, ``trainB/``, ``testA/``, ``testB/`` (horse2zebra,
    monet2photo, ...); every image converted to ``channels`` and resized to ``resolution`` (square)."""

    paired = False
    name = "unpaired image folders"

    def __init__(self, source_channels: int = 3, source_resolution: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if source_channels != self.channels or source_resolution not in (None, self.resolution):
            raise ConfigError("data: both domains of unpaired folders share data.channels and data.resolution")
        self.source_channels, self.source_resolution = self.channels, self.resolution
        self.target_classes = None

    def domain_files(self, train: bool, side: str) -> ImageFiles:
        """The images of ``<split><side>/`` (label 0)."""
        split = "train" if train else "test"
        folder = Path(self.data_dir).expanduser() / f"{split}{side}"
        found = find_images(folder)[0] if folder.is_dir() else []
        if not found:
            raise DatasetNotFoundError(
                f"data.data_dir={self.data_dir!r}: {split}{side}/ is missing or holds no images; CycleGAN's "
                "layout is <data_dir>/trainA, trainB, testA, testB"
            )
        return ImageFiles(found, [0] * len(found), self.to_tensor)

    def load_split(self, train: bool) -> UnpairedFiles:
        return UnpairedFiles(self.domain_files(train, "A"), self.domain_files(train, "B"), train)

    def load_targets(self, train: bool) -> ImageFiles:
        """``<split>B/``'s images, each once: what the image metrics compare translations with."""
        return self.domain_files(train, "B")

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        tensor = v2.functional.pil_to_tensor(ToChannels(self.channels)(image))
        size = [self.resolution or tensor.shape[-2], self.resolution or tensor.shape[-1]]
        return v2.functional.resize(tensor, size, antialias=True)
