"""Lightning callbacks (generator-step checkpoints, sample grids, evaluation, the progress bar, the wall-clock
budget, debug=overfit's check) and the atomic checkpoint writer."""

from ganforge.callbacks.budget import WallClockBudget
from ganforge.callbacks.checkpoint import AtomicCheckpointIO, GenStepCheckpoint
from ganforge.callbacks.evaluation import ImageMetrics, ModeCoverage
from ganforge.callbacks.overfit import OverfitCheck
from ganforge.callbacks.progress import GANProgressBar, ProgressLog
from ganforge.callbacks.sample_grid import SampleGrid
from ganforge.callbacks.translation import TranslationGrid, TranslationMetrics

__all__ = [
    "AtomicCheckpointIO",
    "GANProgressBar",
    "GenStepCheckpoint",
    "ImageMetrics",
    "ModeCoverage",
    "OverfitCheck",
    "ProgressLog",
    "SampleGrid",
    "TranslationGrid",
    "TranslationMetrics",
    "WallClockBudget",
]
