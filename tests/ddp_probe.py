"""A test callback: every rank saves its G and D parameters and its metrics when training ends."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class SaveRankState(Callback):
    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        state = {
            "generator": {k: v.detach().clone() for k, v in pl_module.generator.named_parameters()},
            "discriminator": {k: v.detach().clone() for k, v in pl_module.discriminator.named_parameters()},
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
            "world_size": trainer.world_size,
            "generator_steps": pl_module.generator_steps,
        }
        torch.save(state, self.dirpath / f"rank{trainer.global_rank}.pt")
