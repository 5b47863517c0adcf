"""Lightning callbacks: generator-step checkpoints, sample grids, evaluation, the progress bar."""

from ganforge.callbacks.checkpoint import GenStepCheckpoint
from ganforge.callbacks.evaluation import ImageMetrics, ModeCoverage
from ganforge.callbacks.progress import GANProgressBar
from ganforge.callbacks.sample_grid import SampleGrid

__all__ = ["GANProgressBar", "GenStepCheckpoint", "ImageMetrics", "ModeCoverage", "SampleGrid"]
