"""Checkpoints counted in generator steps, written so that a kill can never leave a truncated one."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ganforge.callbacks.schedule import Timed

#: Suffix of a checkpoint being written; renamed into place once complete.
PARTIAL = ".partial"

# Lightning warns that with manual optimization a step-triggered checkpoint holds the state
# after the optimizer steps; that is the state ganforge means to save (it resumes from it).
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization", category=UserWarning)


class GenStepCheckpoint(Timed, ModelCheckpoint):
    """``ModelCheckpoint`` that saves every ``every_n_gen_steps`` generator steps (plus ``last.ckpt``).

    Lightning's step counter advances once per optimizer step, i.e. ``n_critic + 1`` times
    per generator step (once in a game without D); the conversion happens here so configs speak in generator steps.
    Also saves at the end of training, so ``last.ckpt`` always holds the final state (and a
    ``monitor``-ed top-k, such as ``best.ckpt`` by FID, sees the final evaluation), and when the
    run is stopped by SIGTERM (preemption: :mod:`ganforge.preemption`) after its current batch.
    File names carry no ``=`` so that they can be passed as ``ckpt_path=...`` without quoting. Each write is
    timed (:class:`~ganforge.callbacks.schedule.Timed`).
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
        self._every_n_train_steps = self.every_n_gen_steps * getattr(pl_module, "optimizer_steps_per_gen_step", 2)
        if trainer.is_global_zero and self.dirpath is not None:
            for partial in Path(self.dirpath).glob(f"*{PARTIAL}"):  # left by a write that was killed
                partial.unlink()

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

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        with self.timed():
            super()._save_checkpoint(trainer, filepath)

    @property
    def saves_at_end(self) -> int:
        """Files written when training ends: the top-k one (a step's, or ``best.ckpt`` when it improved) and
        ``last.ckpt``."""
        return int(self.save_top_k != 0) + int(bool(self.save_last))

    def write_last(self, trainer: Trainer) -> None:
        """Write ``last.ckpt`` now (when SIGTERM stops a run; once early in a run with a wall-clock budget, to time
        a write)."""
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Lightning raises ``SIGTERMException`` between batches, so the state is one to resume from."""
        if isinstance(exception, SIGTERMException) and not self._should_skip_saving_checkpoint(trainer):
            self.write_last(trainer)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes ``<name>.partial``, syncs it, and renames it over ``<name>``: a kill during the write
    (SIGKILL, a node lost, a full disk) leaves the previous checkpoint intact, never a truncated one.
    Lightning's own writer opens the final path and writes into it."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # a remote filesystem (fsspec): its own semantics
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        partial = Path(f"{path}{PARTIAL}")
        super().save_checkpoint(checkpoint, partial, storage_options)
        with partial.open("rb") as file:
            os.fsync(file.fileno())
        os.replace(partial, path)
