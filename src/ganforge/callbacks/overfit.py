"""``debug=overfit``'s verdict: does the generator come to reproduce the one batch it trains on?"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image

from ganforge.callbacks.evaluation import log_metrics
from ganforge.callbacks.sample_grid import log_image
from ganforge.callbacks.schedule import EveryNGenSteps
from ganforge.errors import ConfigError
from ganforge.module import GANModule

log = logging.getLogger(__name__)


def pixel_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Root mean square difference of images in [-1, 1], with pixels in [0, 1] (0: the same image, 0.1: off by a
    tenth of the intensity range on average), so that it reads the same at every resolution; pairwise with
    ``torch.cdist``'s broadcasting: (N, ...) x (M, ...) -> (N, M)."""
    x, y = (images.flatten(1).double() / 2 for images in (a, b))  # [-1, 1] -> differences in [0, 1] units
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist") / math.sqrt(x.shape[1])


def nearest_distances(
    targets: torch.Tensor,
    samples: torch.Tensor,
    target_labels: torch.Tensor | None = None,
    sample_labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each target image, the :func:`pixel_distance` to its nearest sample and that sample's index. With
    labels, a target is matched only to samples of its class."""
    distances = pixel_distance(targets, samples)
    if target_labels is not None and sample_labels is not None:
        distances[target_labels[:, None] != sample_labels[None, :]] = math.inf
    nearest, index = distances.min(dim=1)
    return nearest, index


def mean_image_distance(targets: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """The batch's mean :func:`pixel_distance` to its own mean image (with labels, each target's to its class's mean
    in the batch): what a generator scores that draws that average and nothing else. Samples that come closer are
    images of the batch, not its blur."""
    exact = targets.double()
    groups = [exact] if labels is None else [exact[labels == label] for label in labels.unique()]
    distances = [pixel_distance(group, group.mean(0, keepdim=True)) for group in groups]
    return float(torch.cat(distances).mean())


class OverfitCheck(EveryNGenSteps):
    """Before training, every ``every_n_gen_steps`` generator steps and at the end: how close the generator's
    samples come to the batch it overfits (``trainer.overfit_batches=1`` trains on the same first batch at every
    step; under DDP the check reads rank 0's).

    For each target image, the distance to its nearest of ``n`` samples (:func:`nearest_distances`; latents seeded
    by ``seed``, the same every check; a conditional generator draws them in the targets' classes). Their mean over
    the batch is logged as ``overfit/distance`` and printed with a verdict: PASS below ``threshold``, by default
    :func:`mean_image_distance` (a GAN's D learns one batch long before its G copies it: G's samples then resemble
    the batch's images without reproducing them; ``threshold=0.1`` asks for near-copies). Each check draws the
    targets beside their nearest samples (``overfit/gen_step_*.png``, logged as ``overfit``); ``overfit.json``
    holds the last check and ``overfit.npz`` the targets and samples it was computed from.
    """

    def __init__(
        self, dirpath: str, every_n_gen_steps: int = 100, n: int = 512, seed: int = 0, threshold: float | None = None
    ) -> None:
        super().__init__(every_n_gen_steps)
        self.dirpath = Path(dirpath)
        self.n = n
        self.seed = seed
        self.threshold = threshold
        self.targets: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.mean_image = math.nan  # mean_image_distance of the targets
        self.start: float | None = None  # the untrained generator's distance

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Refuse, before training, runs whose batch this check cannot compare with samples (a generator that
        translates images is refused earlier, by :func:`ganforge.validation.validate_callbacks`)."""
        datamodule: Any = trainer.datamodule  # type: ignore[attr-defined]  # set by fit
        if getattr(datamodule, "resolution", None) is None:
            raise ConfigError(
                f"callbacks.overfit (debug=overfit) compares samples with training images, but {datamodule.name} "
                "holds points, not images; leave it out: '~callbacks.overfit'"
            )
        batches = getattr(trainer, "overfit_batches", 0)  # set by Lightning's debugging flags
        if not (isinstance(batches, int) and batches == 1):  # a float is a fraction of the data: 1.0 is all of it
            raise ConfigError(
                f"callbacks.overfit checks the one batch trained on at every step, but trainer.overfit_batches="
                f"{batches}; use debug=overfit (trainer.overfit_batches=1)"
            )

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        """Keep the first batch as the target; check the untrained generator against it."""
        if self.targets is None:
            gan = cast(GANModule, pl_module)
            self.targets = batch[0].detach().cpu().clone()
            self.labels = batch[1].detach().cpu().clone() if gan.num_classes is not None else None
            self.mean_image = mean_image_distance(self.targets, self.labels)
            if gan.generator_steps == 0:
                self.maybe_run(trainer, gan)

    @rank_zero_only
    def run(self, trainer: Trainer, pl_module: GANModule) -> None:
        assert self.targets is not None, "the first batch is kept before any check"
        step = pl_module.generator_steps
        sample_labels = None
        if self.labels is not None:  # each target's class, in turn
            sample_labels = self.labels.repeat(-(-self.n // len(self.labels)))[: self.n]
        samples = pl_module.generate(self.n, self.seed, sample_labels)
        distances, nearest = nearest_distances(self.targets, samples, self.labels, sample_labels)
        mean = float(distances.mean())
        if step == 0:
            self.start = mean
        threshold = self.mean_image if self.threshold is None else self.threshold
        passed = mean < threshold
        log_metrics(trainer, {"overfit/distance": mean})
        self._write(trainer, step, samples, sample_labels, distances, nearest, threshold, passed)
        before = f"; {self.start:.4f} before training" if self.start is not None and step else ""
        if self.threshold is None:
            verdict = (
                f"PASS: below {threshold:.4f}, the batch's distance to its mean image: G draws images of the batch"
                if passed
                else f"FAIL: not below {threshold:.4f}, the batch's distance to its mean image: G draws no more of "
                "the batch than its average"
            )
        else:
            verdict = f"{'PASS: below' if passed else 'FAIL: not below'} callbacks.overfit.threshold={threshold:g}"
        log.info(
            "overfit check at generator step %d: the %d target images are %.4f from their nearest of %d samples on "
            "average (RMS pixel difference, pixels in [0, 1]; worst %.4f%s); %s",
            step, len(distances), mean, self.n, float(distances.max()), before, verdict,
        )  # fmt: skip

    def _write(
        self,
        trainer: Trainer,
        step: int,
        samples: torch.Tensor,
        sample_labels: torch.Tensor | None,
        distances: torch.Tensor,
        nearest: torch.Tensor,
        threshold: float,
        passed: bool,
    ) -> None:
        """The figure (targets left, each one's nearest sample at the same place right), the JSON and the npz."""
        assert self.targets is not None
        nrow = math.ceil(math.sqrt(len(self.targets)))
        grids = [make_grid(x, nrow=nrow, normalize=True, value_range=(-1, 1)) for x in (self.targets, samples[nearest])]
        gap = torch.ones(grids[0].shape[0], grids[0].shape[1], 8)
        figure = torch.cat([grids[0], gap, grids[1]], dim=2)
        (self.dirpath / "overfit").mkdir(parents=True, exist_ok=True)
        save_image(figure, self.dirpath / "overfit" / f"gen_step_{step:07d}.png")
        log_image(trainer, "overfit", figure, step)
        result = {
            "gen_step": step,
            "distance": float(distances.mean()),
            "threshold": threshold,
            "passed": passed,
            "distance_before_training": self.start,
            "mean_image_distance": self.mean_image,
            "n_samples": self.n,
            "seed": self.seed,
            "distances": distances.tolist(),
            "nearest": nearest.tolist(),
        }
        (self.dirpath / "overfit.json").write_text(json.dumps(result, indent=2) + "\n")
        arrays: dict[str, Any] = {"targets": self.targets.numpy(), "samples": samples.numpy()}
        if sample_labels is not None and self.labels is not None:
            arrays |= {"target_labels": self.labels.numpy(), "sample_labels": sample_labels.numpy()}
        np.savez(self.dirpath / "overfit.npz", **arrays)
