"""Few-shot data: a GAN trained on ``shots`` images of one class, the regime where D overfits and augmentation
(DiffAugment, ADA) or an architecture built for it (FastGAN) is what makes training work."""

from __future__ import annotations

from typing import Any, cast

import torch

from ganforge.data.datamodules import GANDataModule, TensorImages, in_memory_split
from ganforge.errors import ConfigError


class FewShotDataModule(GANDataModule):
    """``shots`` images of class ``label`` of an in-memory dataset (``base``), drawn from its training split by
    ``subset_seed``, are the training split; every other image of that class, of both splits, is the test split:
    held out, the reference the metrics compare against (``metrics.reference_split=test``; ``train`` compares
    against the training images themselves). Unconditional: one class.

    ``channels``, ``resolution`` and ``fit`` are config values the nets interpolate, and must equal the base's.
    """

    def __init__(self, base: GANDataModule, label: int, shots: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.subset is not None:
            raise ConfigError(
                f"data.subset={self.subset}: few-shot data draws its own training images; set data.shots instead"
            )
        if base.num_classes is None or not 0 <= label < base.num_classes:
            raise ConfigError(
                f"data.label={label}: {base.name} has classes 0..{(base.num_classes or 1) - 1}; choose one of them"
            )
        for name in ("channels", "resolution", "fit"):
            if getattr(self, name) != getattr(base, name):
                raise ConfigError(
                    f"data.{name}={getattr(self, name)} differs from data.base.{name}={getattr(base, name)}; set "
                    f"data.base.{name} (data.{name} follows it)"
                )
        self.base, self.label, self.shots = base, label, shots
        self.name = f"{base.name} class {label}, {shots}-shot"
        self.domain = base.domain
        self._splits: dict[bool, TensorImages] = {}

    @property
    def split_rule(self) -> str:
        return f"{self.shots} shots of class {self.label}, drawn by seed {self.subset_seed}; the rest held out"

    def at_resolution(self, resolution: int) -> FewShotDataModule:
        other = cast(FewShotDataModule, super().at_resolution(resolution))
        other.base, other._splits = self.base.at_resolution(resolution), {}
        return other

    def load_split(self, train: bool) -> TensorImages:
        if not self._splits:
            train_class, test_class = (self.of_class(split) for split in (True, False))
            if not 0 < self.shots < len(train_class):
                raise ConfigError(
                    f"data.shots={self.shots}: class {self.label} of {self.base.name} has {len(train_class)} "
                    f"training images; choose between 1 and {len(train_class) - 1}"
                )
            order = torch.randperm(len(train_class), generator=torch.Generator().manual_seed(self.subset_seed))
            shots, rest = order[: self.shots], order[self.shots :].sort().values
            held_out = torch.cat([train_class.images[rest], test_class.images])
            self._splits = {
                True: train_class.select(shots),
                False: TensorImages(held_out, torch.full((len(held_out),), self.label)),
            }
        return self._splits[train]

    def of_class(self, train: bool) -> TensorImages:
        instead = "for a folder of your own images use data=image_folder"
        split = in_memory_split(self.base, train, "few-shot data", instead)
        return split.select((split.labels == self.label).nonzero().flatten())
