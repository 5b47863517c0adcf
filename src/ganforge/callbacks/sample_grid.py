"""Sample grids from a fixed latent batch: PNG files in the run folder and images in the loggers."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image
from torch import nn
from torchvision.utils import make_grid, save_image

from ganforge.callbacks.schedule import EveryNGenSteps
from ganforge.generation import samples_per_class
from ganforge.module import GANModule


class SampleGrid(EveryNGenSteps):
    """Every ``every_n_gen_steps`` generator steps (and at the end), render ``n`` samples.

    The latents are drawn once from ``seed``, so successive grids show how the same
    points of latent space evolve. Uses the EMA generator when the module has one.
    A conditional model gets one row per class: ``n`` is rounded up to whole classes and the
    labels come in class-major order. A growing generator (Progressive GAN) also gets a grid at its
    current stage's resolution (``gen_step_<step>_<res>px.png``, logged as ``samples_native``); the main
    grid shows its samples upsampled to the full resolution, comparable across stages.
    """

    def __init__(self, dirpath: str, every_n_gen_steps: int = 500, n: int = 64, nrow: int = 8, seed: int = 0) -> None:
        super().__init__(every_n_gen_steps)
        self.dirpath = Path(dirpath)
        self.n = n
        self.nrow = nrow
        self.seed = seed

    @rank_zero_only
    def run(self, trainer: Trainer, pl_module: GANModule) -> None:
        """Write the grid for the current generator step as a PNG and log it."""
        step = pl_module.generator_steps
        n, nrow = self.n, self.nrow
        if pl_module.num_classes is not None:
            nrow = samples_per_class(self.n, pl_module.num_classes)
            n = nrow * pl_module.num_classes
        images = pl_module.generate(n, self.seed)
        grid = make_grid(images, nrow=nrow, normalize=True, value_range=(-1, 1), padding=2)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        save_image(grid, self.dirpath / f"gen_step_{step:07d}.png")
        log_image(trainer, "samples", grid, step)
        native = getattr(pl_module.sampling_generator, "output_resolution", images.shape[-1])
        if native < images.shape[-1]:  # average pooling undoes the nearest-neighbour upsampling exactly
            small = nn.functional.avg_pool2d(images, images.shape[-1] // native)
            grid = make_grid(small, nrow=nrow, normalize=True, value_range=(-1, 1), padding=1)
            save_image(grid, self.dirpath / f"gen_step_{step:07d}_{native}px.png")
            log_image(trainer, "samples_native", grid, step)


def log_image(trainer: Trainer, key: str, image: torch.Tensor, gen_step: int) -> None:
    """Send a (C, H, W) image in [0, 1] to every logger that accepts images, at generator step ``gen_step`` (the
    x-axis of every logger), as the 8-bit pixels
    :func:`~torchvision.utils.save_image` writes to the PNG on disk. wandb casts a float image to 8 bits
    without scaling (a black image), so every logger gets the pixels, not the floats."""
    pixels = to_uint8(image)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            picture = Image.fromarray(pixels.permute(1, 2, 0).squeeze(-1).numpy())
            logger.log_image(key, [picture], step=gen_step, caption=[f"generator step {gen_step}"])
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, pixels, global_step=gen_step)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """A (C, H, W) image in [0, 1] as 8-bit pixels on the CPU, rounded as ``save_image`` rounds."""
    return image.detach().mul(255).add(0.5).clamp(0, 255).to("cpu", torch.uint8)
