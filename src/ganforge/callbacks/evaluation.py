"""Evaluation during training: metrics written to every logger, plus figures."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from ganforge.callbacks.sample_grid import log_image
from ganforge.callbacks.schedule import EveryNGenSteps, datamodule_with
from ganforge.distributed import broadcast_buffers, gather_shards
from ganforge.errors import ConfigError
from ganforge.generation import class_major_labels, generate_batches
from ganforge.metrics.features import FeatureExtractor
from ganforge.metrics.image_metrics import ImageScorer, reference_scorer, score_images
from ganforge.metrics.likelihood import test_bits_per_dim
from ganforge.metrics.mode_coverage import mode_coverage
from ganforge.module import GANModule
from ganforge.plots import scatter_png


def log_metrics(trainer: Trainer, metrics: dict[str, float]) -> None:
    """Write evaluation metrics (with ``gen_step``) to every logger now and expose them in
    ``trainer.callback_metrics``.

    Evaluations run on their own schedule (every N generator steps, and after the last
    step) rather than on the batches Lightning writes, so they go to the loggers directly,
    at the generator step, the x-axis of the losses too (:meth:`GANModule.progress`);
    ``callback_metrics`` makes them visible to checkpoint monitors and to sweeps.
    """
    step = cast(GANModule, trainer.lightning_module).generator_steps
    metrics = {**metrics, "gen_step": float(step)}
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

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._mixture(trainer)  # refuse image data before training, not at the first evaluation

    @staticmethod
    def _mixture(trainer: Trainer) -> Any:
        """The run's datamodule, which must be a 2-D mixture (it has the mode ``centres``)."""
        return datamodule_with(
            trainer, "centres", "callbacks.mode_coverage (callbacks=toy) scores 2-D mixtures, but the data is {name}; "
            "train on data=ring or data=grid (with model=mlp), or use callbacks=default for image data",
        )  # fmt: skip

    def run(self, trainer: Trainer, pl_module: GANModule) -> None:
        datamodule = self._mixture(trainer)
        step = pl_module.generator_steps
        broadcast_buffers(pl_module.sampling_generator, trainer)  # every rank scores rank 0's generator
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


class ImageMetrics(EveryNGenSteps):
    """Every ``every_n_gen_steps`` generator steps and at the end, score ``n_samples`` images of
    the (EMA) generator against ``n_real`` images of the ``reference_split``, in the space of
    ``features``: FID, KID, IS, precision/recall and density/coverage (see :class:`~ganforge.metrics.ImageScorer`;
    with ``scorer.swd``, also the SWD of the images' pyramid patches, drawn as the images pass to the extractor).
    For a conditional generator also ``intra_fid`` (mean per-class FID) and, scored by the domain
    classifier, ``class_accuracy``: how often the classifier assigns a generated image to the class
    it was generated for (classes equally often). For a flow generator also ``bits_per_dim``: its exact
    likelihood of ``bits_per_dim_n`` test images.

    The generated images come from latents seeded by ``seed`` (the same every evaluation); real
    features are cached on disk under ``cache_dir``. Logs ``metrics/<name>`` to every logger
    and writes the last scores with their protocol to ``metrics.json`` in ``dirpath``.

    Under DDP each rank generates and embeds its shard of the samples (rank 0's EMA generator on
    every rank); the features are gathered, so every rank scores the same, complete set.
    """

    def __init__(
        self,
        features: FeatureExtractor,
        dirpath: str,
        every_n_gen_steps: int = 1000,
        n_samples: int = 10_000,
        n_real: int = 10_000,
        reference_split: str = "train",
        batch_size: int = 500,
        seed: int = 0,
        cache_dir: str | None = None,
        scorer: dict[str, Any] | None = None,
        bits_per_dim_n: int = 0,
    ) -> None:
        super().__init__(every_n_gen_steps)
        self.bits_per_dim_n = bits_per_dim_n
        self.features = features
        self.dirpath = Path(dirpath)
        self.n_samples = n_samples
        self.n_real = n_real
        self.reference_split = reference_split
        self.batch_size = batch_size
        self.seed = seed
        self.cache_dir = cache_dir
        self.scorer_options = dict(scorer or {})
        self.scorer: ImageScorer | None = None
        self.latest: dict[str, float] = {}
        self.latest_step = 0
        self.latest_native: int | None = None  # a growing generator's stage resolution at the last evaluation
        self.likelihood: dict[str, Any] | None = None  # a flow's test bits/dim protocol, once scored

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.scorer is not None:
            return
        self.features.to(pl_module.device)
        datamodule = trainer.datamodule  # type: ignore[attr-defined]  # set by fit
        self.scorer = reference_scorer(
            datamodule, self.features, self.reference_split, self.n_real, self.seed, self.batch_size,
            self.cache_dir, pl_module.device, labelled=pl_module.num_classes is not None, **self.scorer_options,
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """The extractor the run's evaluations were scored in: a continuation must score in the same space."""
        return {"extractor": self.features.identity}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Refuse to continue a run in another feature space than its evaluations so far (``metrics.features.version
        =null`` takes the latest shipped classifier, or the user cache's, which can change between two sessions)."""
        saved = state_dict.get("extractor")
        if saved is not None and saved != self.features.identity:
            kind, *rest = saved.split(":")  # domain:<domain>[:v<N>]:<digest>, or another extractor's id
            if kind != "domain":
                fix = "metrics.features.weights_path=<its file>"
            else:  # v1 files name no version
                fix = f"metrics.features.version={rest[1][1:] if len(rest) == 3 else 1}"
            raise ConfigError(
                f"this run's image metrics were scored in {saved}, and would now be scored in "
                f"{self.features.identity}; continue it with the extractor it used: {fix}"
            )

    def run(self, trainer: Trainer, pl_module: GANModule) -> None:
        assert self.scorer is not None, "setup() builds the scorer"
        num_classes = pl_module.num_classes
        labels = class_major_labels(self.n_samples, num_classes) if num_classes else None
        generator = pl_module.sampling_generator
        broadcast_buffers(generator, trainer)
        rank, world_size = trainer.global_rank, trainer.world_size  # each rank generates a shard
        images = generate_batches(
            generator, self.n_samples, self.seed, self.batch_size, labels=labels, rank=rank, world_size=world_size
        )
        gather = partial(gather_shards, trainer, n=self.n_samples)
        scores = score_images(
            self.scorer, self.features, images, pl_module.device, labels, gather=gather, n=self.n_samples
        )
        if self.bits_per_dim_n and hasattr(generator, "bits_per_dim"):  # a flow: every rank scores the same images
            datamodule = trainer.datamodule  # type: ignore[attr-defined]
            scores["bits_per_dim"], self.likelihood = test_bits_per_dim(generator, datamodule, self, pl_module.device)
        self.latest, self.latest_step = scores, pl_module.generator_steps
        self.latest_native = getattr(generator, "output_resolution", None)
        log_metrics(trainer, {f"metrics/{k}": v for k, v in scores.items()})

    def protocol(self, trainer: Trainer) -> dict[str, Any]:
        """What the numbers mean: counts, reference split, extractor, estimator settings."""
        assert self.scorer is not None
        kind = cast(GANModule, trainer.lightning_module).sampling_generator_name
        generated = f"{self.n_samples} samples of the {kind} (latent seed {self.seed})"
        resolution = trainer.datamodule.resolution  # type: ignore[attr-defined]
        if self.latest_native is not None and self.latest_native < resolution:
            native = self.latest_native
            generated += f", {native}x{native} stage output upsampled to {resolution}x{resolution}"
        datamodule: Any = getattr(trainer, "datamodule", None)
        subset = getattr(datamodule, "subset", None)
        trained_on = subset and f"{subset} samples of the training split (subset seed {datamodule.subset_seed})"
        return {
            "generated": generated,
            "n_generated": self.n_samples,
            **self.scorer.protocol(),
            **({"trained_on": trained_on} if trained_on else {}),
            **({"bits_per_dim": self.likelihood} if self.likelihood else {}),
        }

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if trainer.is_global_zero and self.latest:
            result = {"gen_step": self.latest_step, "metrics": self.latest, "protocol": self.protocol(trainer)}
            (self.dirpath / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
