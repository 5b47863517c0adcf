"""Evaluation during training: metrics written to every logger, plus figures."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from ganforge.callbacks.sample_grid import log_image
from ganforge.metrics.mode_coverage import mode_coverage
from ganforge.module import GANModule, eval_mode
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


class ModeCoverage(Callback):
    """Every ``every_n_gen_steps`` generator steps and at the end, score ``n`` samples of the
    (EMA) generator against the datamodule's mixture: modes captured, % high quality, reverse KL.

    Logs ``mode/modes``, ``mode/high_quality``, ``mode/reverse_kl``, a scatter plot of the
    samples over the mode centres, and writes the final figures to ``mode_coverage.json``.
    """

    def __init__(self, dirpath: str, every_n_gen_steps: int = 1000, n: int = 2500, seed: int = 0) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_gen_steps = every_n_gen_steps
        self.n = n
        self.seed = seed
        self._last_step = -1

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        step = pl_module.generator_steps
        if step % self.every_n_gen_steps == 0 and step != self._last_step:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = self.evaluate(trainer, pl_module) if pl_module.generator_steps != self._last_step else self._last
        if trainer.is_global_zero:
            (self.dirpath / "mode_coverage.json").write_text(json.dumps(metrics, indent=2) + "\n")

    @torch.no_grad()
    def evaluate(self, trainer: Trainer, pl_module: GANModule) -> dict[str, float]:
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "centres"):
            raise TypeError("ModeCoverage needs a mixture datamodule (data=ring or data=grid)")
        z = pl_module.sample_latent(self.n, generator=torch.Generator().manual_seed(self.seed))
        with eval_mode(pl_module.sampling_generator) as generator:
            samples = generator(z).float().cpu()
        scores = mode_coverage(samples, datamodule.centres, datamodule.std)
        self._last_step = step = pl_module.generator_steps
        self._last = {"gen_step": step, **scores}
        log_metrics(trainer, {f"mode/{k}": v for k, v in scores.items()})
        self._plot(trainer, samples, datamodule.centres, step, scores)
        return self._last

    @rank_zero_only
    def _plot(self, trainer: Trainer, samples: torch.Tensor, centres: torch.Tensor, step: int, scores: dict) -> None:
        title = (
            f"step {step}: {scores['modes']:.0f} modes, {scores['high_quality']:.1f}% HQ, KL {scores['reverse_kl']:.3f}"
        )
        image = scatter_png(samples, centres, self.dirpath / "scatter" / f"gen_step_{step:07d}.png", title)
        log_image(trainer, "scatter", image, step)
