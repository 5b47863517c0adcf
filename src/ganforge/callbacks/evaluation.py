"""Evaluation during training: metrics written to every logger, plus figures."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from ganforge.callbacks.sample_grid import log_image
from ganforge.callbacks.schedule import EveryNGenSteps
from ganforge.metrics.mode_coverage import mode_coverage
from ganforge.module import GANModule
from ganforge.plots import scatter_png


def log_metrics(trainer: Trainer, metrics: dict[str, float]) -> None:
    """Write evaluation metrics to every logger now and expose them in ``trainer.callback_metrics``.

    Evaluations run on their own schedule (every N generator steps, and after the last
    step) rather than on the batches Lightning writes, so they go to the loggers directly,
    at Lightning's step for the current batch (as Lightning's LearningRateMonitor does);
    ``callback_metrics`` makes them visible to checkpoint monitors and to sweeps.
    """
    step = trainer.fit_loop.epoch_loop._batches_that_stepped
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=step)
    trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})


class ModeCoverage(EveryNGenSteps):
    """Every ``every_n_gen_steps`` generator steps and at the end, score ``n`` samples of the
    (EMA) generator against the datamodule's mixture: modes captured, % high quality, reverse KL.

    Logs ``mode/modes``, ``mode/high_quality``, ``mode/reverse_kl``, a scatter plot of the
    samples over the mode centres, and writes the final figures to ``mode_coverage.json``.
    """

    def __init__(self, dirpath: str, every_n_gen_steps: int = 1000, n: int = 2500, seed: int = 0) -> None:
        super().__init__(every_n_gen_steps)
        self.dirpath = Path(dirpath)
        self.n = n
        self.seed = seed
        self.latest: dict[str, float] = {}

    def run(self, trainer: Trainer, pl_module: GANModule) -> None:
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "centres"):
            raise TypeError("ModeCoverage needs a mixture datamodule (data=ring or data=grid)")
        step = pl_module.generator_steps
        samples = pl_module.generate(self.n, self.seed)
        scores = mode_coverage(samples, datamodule.centres, datamodule.std)
        self.latest = {"gen_step": step, **scores}
        log_metrics(trainer, {f"mode/{k}": v for k, v in scores.items()})
        self._plot(trainer, samples, datamodule.centres, step, scores)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if trainer.is_global_zero:
            (self.dirpath / "mode_coverage.json").write_text(json.dumps(self.latest, indent=2) + "\n")

    @rank_zero_only
    def _plot(self, trainer: Trainer, samples: torch.Tensor, centres: torch.Tensor, step: int, scores: dict) -> None:
        modes, hq, kl = scores["modes"], scores["high_quality"], scores["reverse_kl"]
        title = f"step {step}: {modes:.0f} modes, {hq:.1f}% high quality, reverse KL {kl:.3f}"
        image = scatter_png(samples, centres, self.dirpath / "scatter" / f"gen_step_{step:07d}.png", title)
        log_image(trainer, "scatter", image, step)
