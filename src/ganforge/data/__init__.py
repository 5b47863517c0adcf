"""Datasets as LightningDataModules, resolved offline-first."""

from ganforge.data.datamodules import (
    CelebADataModule,
    CIFAR10DataModule,
    FashionMNISTDataModule,
    GANDataModule,
    ImageFolderDataModule,
    MNIST5kDataModule,
    MNISTDataModule,
)
from ganforge.data.few_shot import FewShotDataModule
from ganforge.data.paired import PairedDataModule, PairedFolderDataModule
from ganforge.data.single import SingleImageDataModule
from ganforge.data.stacked import StackedMNISTDataModule
from ganforge.data.toy import GaussianMixtureDataModule
from ganforge.data.unpaired import UnpairedDataModule, UnpairedFolderDataModule

__all__ = [
    "CIFAR10DataModule",
    "CelebADataModule",
    "FashionMNISTDataModule",
    "FewShotDataModule",
    "GANDataModule",
    "GaussianMixtureDataModule",
    "ImageFolderDataModule",
    "MNIST5kDataModule",
    "MNISTDataModule",
    "PairedDataModule",
    "PairedFolderDataModule",
    "SingleImageDataModule",
    "StackedMNISTDataModule",
    "UnpairedDataModule",
    "UnpairedFolderDataModule",
]
