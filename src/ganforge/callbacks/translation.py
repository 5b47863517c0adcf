"""Evaluation and grids for image-to-image games: test-split sources translated by the (EMA) generator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image

from ganforge.callbacks.evaluation import log_metrics
from ganforge.callbacks.sample_grid import log_image
from ganforge.callbacks.schedule import EveryNGenSteps, datamodule_with
from ganforge.distributed import broadcast_buffers
from ganforge.metrics.features import FeatureExtractor
from ganforge.metrics.image_metrics import ImageScorer, reference_scorer, subset_index
from ganforge.metrics.translation import pairs, translation_scores, translator
from ganforge.module import GANModule


def paired_datamodule(trainer: Trainer, callback: str) -> Any:
    """The run's datamodule, which must yield (target, source) pairs."""
    return datamodule_with(
        trainer, "source_channels", f"callbacks.{callback} scores image-to-image outputs, but the data ({{name}}) has "
        "no source images; train on paired data (data=paired_edges, paired_lowres4, paired_folder ...) or use "
        "callbacks=default",
    )  # fmt: skip


class TranslationMetrics(EveryNGenSteps):
    """Every ``every_n_gen_steps`` generator steps and at the end, translate ``n`` test-split sources (a seeded
    subset; each once) with the (EMA) generator and score the outputs
    (:func:`~ganforge.metrics.translation.translation_scores`): on paired data ``psnr``, ``ssim``, ``l1`` against
    their targets; for a two-way generator (CycleGAN) the cycle error ``cycle_l1`` and, where the data names them,
    the share classified as the target classes; FID, KID, IS, precision/recall in the space of ``features``
    against ``n`` test targets as the target domain (paired: the same subset's; unpaired: a seeded subset of
    domain B's test images, each once, however many sources domain A has).
    Logs ``metrics/<name>``; writes the last scores with their protocol to ``metrics.json``.

    Every rank scores the whole set (rank 0's generator), so no gathering is needed.
    """

    def __init__(
        self,
        features: FeatureExtractor,
        dirpath: str,
        every_n_gen_steps: int = 1000,
        n: int = 10_000,
        batch_size: int = 500,
        seed: int = 0,
        cache_dir: str | None = None,
        scorer: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(every_n_gen_steps)
        self.features, self.dirpath, self.n = features, Path(dirpath), n
        self.batch_size, self.seed, self.cache_dir = batch_size, seed, cache_dir
        self.scorer_options = dict(scorer or {})
        self.scorer: ImageScorer | None = None
        self.latest: dict[str, float] = {}
        self.latest_step = 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        datamodule = paired_datamodule(trainer, "translation_metrics")
        if self.scorer is None:
            self.features.to(pl_module.device)
            self.scorer = reference_scorer(
                datamodule, self.features, "test", self.n, self.seed, self.batch_size, self.cache_dir,
                pl_module.device, **self.scorer_options,
            )  # fmt: skip

    def run(self, trainer: Trainer, pl_module: GANModule) -> None:
        datamodule = paired_datamodule(trainer, "translation_metrics")
        generator = pl_module.sampling_generator
        broadcast_buffers(generator, trainer)
        test = datamodule.load_split(train=False)
        index = subset_index(len(test), self.n, self.seed)
        batches = pairs(test, index, self.batch_size, datamodule.num_workers)
        device = pl_module.device
        two_way = hasattr(generator, "inverse")  # CycleGAN's B -> A
        scores = translation_scores(
            translator(generator, device), batches, device, self.scorer, self.features,
            paired=getattr(datamodule, "paired", True),
            inverse=translator(generator, device, inverse=True) if two_way else None,
            target_classes=getattr(datamodule, "target_classes", None),
        )  # fmt: skip
        self.latest, self.latest_step = scores, pl_module.generator_steps
        log_metrics(trainer, {f"metrics/{k}": v for k, v in scores.items()})

    def protocol(self, trainer: Trainer) -> dict[str, Any]:
        assert self.scorer is not None
        kind = cast(GANModule, trainer.lightning_module).sampling_generator_name
        datamodule = paired_datamodule(trainer, "translation_metrics")
        available = len(datamodule.load_split(train=False))
        chosen = f"{self.n} test-split sources (seeded subset, seed {self.seed})"
        scored = chosen if self.n < available else f"all {available} test-split sources"
        if getattr(datamodule, "paired", True):
            reference = "the targets of the translated sources"
        else:
            targets = len(datamodule.load_targets(train=False))
            reference = f"{min(self.n, targets)} of domain B's {targets} test images (seeded subset), each once"
        return {
            "generated": f"the {kind}'s translations of {scored}, each once",
            "paired": "psnr (dB), ssim and l1 of each output against its target, in [0, 1], averaged over pairs; "
            "cycle_l1 of the round trip against the source; target_class: outputs classified as the target domain",
            "reference_images": reference,
            **self.scorer.protocol(),
        }

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if trainer.is_global_zero and self.latest:
            result = {"gen_step": self.latest_step, "metrics": self.latest, "protocol": self.protocol(trainer)}
            (self.dirpath / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")


def comparison_grid(*rows: torch.Tensor) -> torch.Tensor:
    """Rows of images in [-1, 1] (source | output | target), one column per pair, as one grid in [0, 1]. Rows
    smaller than the last, or with other channels, are enlarged (nearest) and given its channels, so that
    the columns line up."""
    like = rows[-1]
    aligned = []
    for row in rows:
        row = row.detach().float().cpu().clamp(-1, 1)
        if row.shape[-2:] != like.shape[-2:]:
            row = torch.nn.functional.interpolate(row, size=like.shape[-2:], mode="nearest")
        if row.shape[1] != like.shape[1]:
            row = row.mean(dim=1, keepdim=True).expand(-1, like.shape[1], -1, -1)
        aligned.append(row)
    return make_grid(torch.cat(aligned), nrow=len(like), normalize=True, value_range=(-1, 1), padding=2)


class TranslationGrid(EveryNGenSteps):
    """Every ``every_n_gen_steps`` generator steps (and at the end), a grid of ``n`` test pairs (a seeded
    subset, the same every time): rows source | output of the (EMA) generator | target."""

    def __init__(self, dirpath: str, every_n_gen_steps: int = 500, n: int = 8, seed: int = 0) -> None:
        super().__init__(every_n_gen_steps)
        self.dirpath, self.n, self.seed = Path(dirpath), n, seed

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        paired_datamodule(trainer, "translation_grid")

    @rank_zero_only
    def run(self, trainer: Trainer, pl_module: GANModule) -> None:
        test = paired_datamodule(trainer, "translation_grid").load_split(train=False)
        targets, sources = next(pairs(test, subset_index(len(test), self.n, self.seed), self.n))
        outputs = translator(pl_module.sampling_generator, pl_module.device)(sources)
        grid = comparison_grid(sources, outputs, targets)
        step = pl_module.generator_steps
        self.dirpath.mkdir(parents=True, exist_ok=True)
        save_image(grid, self.dirpath / f"gen_step_{step:07d}.png")
        log_image(trainer, "translations", grid, step)
