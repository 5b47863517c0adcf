"""Sample grids from a fixed latent batch: PNG files in the run folder and images in the loggers."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image

from ganforge.module import GANModule, eval_mode


class SampleGrid(Callback):
    """Every ``every_n_gen_steps`` generator steps (and at the end), render ``n`` samples.

    The latents are drawn once from ``seed``, so successive grids show how the same
    points of latent space evolve. Uses the EMA generator when the module has one.
    """

    def __init__(self, dirpath: str, every_n_gen_steps: int = 500, n: int = 64, nrow: int = 8, seed: int = 0) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_gen_steps = every_n_gen_steps
        self.n = n
        self.nrow = nrow
        self.seed = seed
        self._last_step = -1

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        step = pl_module.generator_steps
        if step % self.every_n_gen_steps == 0 and step != self._last_step:
            self.render(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if pl_module.generator_steps != self._last_step:
            self.render(trainer, pl_module)

    @rank_zero_only
    def render(self, trainer: Trainer, pl_module: GANModule) -> Path:
        """Write the grid for the current generator step and log it; returns the PNG's path."""
        self._last_step = step = pl_module.generator_steps
        z = pl_module.sample_latent(self.n, generator=torch.Generator().manual_seed(self.seed))
        with eval_mode(pl_module.sampling_generator) as generator:
            images = generator(z).float().cpu()
        grid = make_grid(images, nrow=self.nrow, normalize=True, value_range=(-1, 1), padding=2)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"gen_step_{step:07d}.png"
        save_image(grid, path)
        log_image(trainer, "samples", grid, step)
        return path


def log_image(trainer: Trainer, key: str, image: torch.Tensor, gen_step: int) -> None:
    """Send a (C, H, W) image in [0, 1] to every logger that accepts images."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key, [image], caption=[f"generator step {gen_step}"])
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, global_step=gen_step)
