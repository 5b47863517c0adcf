"""Shuffling whose position survives a checkpoint."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableShuffleSampler(Sampler[int]):
    """An endless, reproducible stream of shuffled indices, cut into epochs of whole batches.

    Data epoch ``e`` is ``randperm(num_samples)`` drawn from ``seed + e``, split over
    ``world_size`` ranks. The sampler keeps its own position in the stream (in batches),
    so each ``iter()`` continues where the last one stopped, and a resumed run, started
    at the batch count its checkpoint recorded, sees exactly the data an uninterrupted
    run sees. (Lightning's epoch counter is not used: a checkpoint written at the end of
    training makes Lightning start a new epoch on resume, mid-way through the data.)
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.batches_per_epoch = num_samples // world_size // batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(f"{num_samples} samples over {world_size} rank(s) fill no batch of {batch_size}")
        self.position = start_batch  # batches handed out so far, over all epochs

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.position, self.batches_per_epoch)
        order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + epoch))
        mine = order[: self.batches_per_epoch * self.batch_size * self.world_size][self.rank :: self.world_size]
        for batch in mine[offset * self.batch_size :].split(self.batch_size):
            self.position += 1
            yield from batch.tolist()
