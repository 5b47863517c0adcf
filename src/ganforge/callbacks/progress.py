"""A rich progress bar that speaks in generator steps and images per second."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar

if TYPE_CHECKING:
    from ganforge.module import GANModule


class GANProgressBar(RichProgressBar):
    """Adds the generator step, throughput and both losses to Lightning's rich bar."""

    def __init__(self, smoothing: float = 0.9, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.smoothing = smoothing
        self._rate: float | None = None
        self._last: tuple[float, int] | None = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        now, shown = time.perf_counter(), cast("GANModule", pl_module).images_shown
        if self._last is not None and now > self._last[0]:
            rate = (shown - self._last[1]) / (now - self._last[0])
            self._rate = rate if self._rate is None else self.smoothing * self._rate + (1 - self.smoothing) * rate
        self._last = (now, shown)
        super().on_train_batch_end(trainer, pl_module, *args)

    @property
    def total_train_batches(self) -> int | float:
        """Batches this run will take: Lightning's ``max_steps`` counts D and G optimizer steps."""
        total = super().total_train_batches
        module = self.trainer.lightning_module
        batches, steps = getattr(module, "batches_per_gen_step", 1), getattr(module, "optimizer_steps_per_gen_step", 2)
        if self.trainer.max_steps > 0:
            total = min(total, self.trainer.max_steps * batches // steps)
        return total

    def _get_train_description(self, current_epoch: int) -> str:
        return f"epoch {current_epoch}"

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        shown = {k: f"{v:.3f}" for k, v in trainer.callback_metrics.items() if k in ("loss/d", "loss/g")}
        return {
            "gen_step": str(getattr(pl_module, "generator_steps", 0)),
            "img/s": f"{self._rate:.0f}" if self._rate else "-",
            **shown,
            **{k: v for k, v in metrics.items() if k == "v_num"},
        }
