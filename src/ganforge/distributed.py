"""What the adversarial loop and its evaluations need under DDP, beyond what Lightning does.

Lightning averages gradients, shards nothing by itself here (the datamodule shards its data),
and writes logs and checkpoints from rank 0. Evaluations generate their samples in shards
(one per rank) that are gathered here, and the random latents differ per rank.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch import Trainer
from torch import nn

from ganforge.generation import shard_range


def gather_shards(trainer: Trainer, shard: torch.Tensor, n: int) -> torch.Tensor:
    """The rows of all ranks' shards of ``n`` items (:func:`~ganforge.generation.shard_range`), in rank order.

    ``all_gather`` needs equal shapes, so shards are padded to the largest and cut back after.
    """
    world_size = trainer.world_size
    if world_size == 1:
        return shard
    per_rank = len(shard_range(n, 0, world_size))
    padded = torch.zeros(per_rank, *shard.shape[1:], dtype=shard.dtype, device=shard.device)
    padded[: len(shard)] = shard
    gathered = trainer.strategy.all_gather(padded)  # (world_size, per_rank, ...)
    return torch.cat([gathered[rank, : len(shard_range(n, rank, world_size))] for rank in range(world_size)])


def broadcast_buffers(module: nn.Module, trainer: Trainer) -> None:
    """Give every rank rank 0's buffers of ``module`` (BatchNorm statistics, spectral-norm vectors).

    DDP syncs buffers at the start of each training step, but the step itself updates them from
    each rank's own batch; an evaluation after the step would otherwise sample from generators
    that differ slightly across ranks (and from the one rank 0 checkpoints).
    """
    if trainer.world_size > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
