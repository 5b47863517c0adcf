"""A test callback: every rank saves its G and D parameters, its buffers and its metrics when training ends."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import Callback, LightningModule, Trainer

from ganforge.module import GANModule


class SaveRankState(Callback):
    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        module = cast(GANModule, pl_module)
        mode = HydraConfig.get().mode if HydraConfig.initialized() else None
        state = {
            "generator": {k: v.detach().clone() for k, v in module.generator.named_parameters()},
            "discriminator": {k: v.detach().clone() for k, v in module.discriminator.named_parameters()},
            "buffers": {k: v.detach().clone() for k, v in module.named_buffers()},
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
            "world_size": trainer.world_size,
            "generator_steps": module.generator_steps,
            # Which process this was, and whether Hydra ran it as a sweep: a rank must join its job.
            "pid": os.getpid(),
            "hydra_mode": mode.name if mode is not None else None,
            # The resolved config the rank trained with (ganforge-train saves all of it).
            "hparams": dict(pl_module.hparams),
        }
        torch.save(state, self.dirpath / f"rank{trainer.global_rank}.pt")
