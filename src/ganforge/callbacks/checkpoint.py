"""Checkpoints counted in generator steps."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

# Lightning warns that with manual optimization a step-triggered checkpoint holds the state
# after the optimizer steps; that is the state ganforge means to save (it resumes from it).
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization", category=UserWarning)


class GenStepCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that saves every ``every_n_gen_steps`` generator steps (plus ``last.ckpt``).

    Lightning's step counter advances once per optimizer step, i.e. ``n_critic + 1`` times
    per generator step; the conversion happens here so configs speak in generator steps.
    Also saves at the end of training, so ``last.ckpt`` always holds the final state (and a
    ``monitor``-ed top-k, such as ``best.ckpt`` by FID, sees the final evaluation). File
    names carry no ``=`` so that they can be passed as ``ckpt_path=...`` without quoting.
    """

    def __init__(self, every_n_gen_steps: int = 1000, **kwargs: Any) -> None:
        kwargs.setdefault("save_last", True)
        kwargs.setdefault("save_top_k", -1)
        kwargs.setdefault("filename", "gen_step_{gen_step:07.0f}")
        kwargs.setdefault("auto_insert_metric_name", False)
        super().__init__(every_n_train_steps=every_n_gen_steps, **kwargs)
        self.every_n_gen_steps = every_n_gen_steps

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._every_n_train_steps = self.every_n_gen_steps * (getattr(pl_module, "n_critic", 1) + 1)

    @property
    def state_key(self) -> str:
        """Keyed by the generator-step interval: ``every_n_train_steps`` is only known after setup."""
        return self._generate_state_key(monitor=self.monitor, mode=self.mode, every_n_gen_steps=self.every_n_gen_steps)

    def _monitor_candidates(self, trainer: Trainer) -> dict[str, Any]:
        """Name files by the module's own counter (metrics are logged only every few batches)."""
        return super()._monitor_candidates(trainer) | {
            "gen_step": torch.tensor(trainer.lightning_module.generator_steps)
        }

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._should_skip_saving_checkpoint(trainer):  # this step is already saved
            return
        candidates = self._monitor_candidates(trainer)
        if self.monitor is not None and self.monitor in candidates:  # e.g. the final evaluation's FID
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)
