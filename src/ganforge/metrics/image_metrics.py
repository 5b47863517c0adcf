"""FID, KID and IS (torchmetrics), improved precision/recall (torch-fidelity) and density/coverage in one feature
space, and optionally the sliced Wasserstein distance of the images' pyramid patches (:mod:`.swd`).

The extractor runs once per image; torchmetrics' metrics then receive features through a
pass-through module, so all metrics share one pass and real-data features can be cached. SWD's descriptors are
drawn from the same image batches on their way to the extractor (:func:`score_images`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch_fidelity.metric_prc import prc_features_to_metric
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from ganforge.data.datamodules import GANDataModule, IndexedImages
from ganforge.errors import ConfigError
from ganforge.metrics.cache import cached
from ganforge.metrics.classifier import to_pixels, to_unit_range
from ganforge.metrics.features import DomainFeatures, FeatureExtractor, StackedDigitFeatures
from ganforge.metrics.stacked_modes import CONFIDENCE, stacked_modes
from ganforge.metrics.swd import (
    DESCRIPTORS,
    DIRECTIONS,
    GENERATED,
    REAL,
    REPEATS,
    DescriptorSampler,
    swd_levels,
    swd_protocol,
)


class PassThrough(nn.Module):
    """Stands in for torchmetrics' Inception net when features are already extracted."""

    def __init__(self, num_features: int | None = None) -> None:
        super().__init__()
        if num_features is not None:  # FID and KID size their states by it
            self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@torch.no_grad()
def extract(
    extractor: FeatureExtractor, batches: Iterable[torch.Tensor], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and logits, in float32, of image batches of uint8 pixels or of floats in [-1, 1]. Floats are read as
    the 8-bit pixels an image file of them holds (rounded, clipped: :func:`to_pixels`), so a generator scores the same
    during training as from ganforge-sample's file, also where its output is linear and leaves [-1, 1] (StyleGAN2)."""
    features, logits = [], []
    for images in batches:
        images = images.to(device)
        f, y = extractor(to_unit_range(images if images.dtype == torch.uint8 else to_pixels(images)))
        features.append(f.float())
        logits.append(y.float())
    return torch.cat(features), torch.cat(logits)


def class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of samples whose most likely class under a classifier is the class they were generated for."""
    return (logits.argmax(dim=1).cpu() == labels.cpu()).double().mean().item()


def _split_subset(datamodule: GANDataModule, split: str, n: int, seed: int) -> tuple[Dataset, torch.Tensor]:
    """A split's reference images and the sorted indices of their seeded random subset of ``n`` (all of them when
    fewer)."""
    if split not in ("train", "test"):
        raise ConfigError(
            f"metrics.reference_split={split!r}: the real images come from a split of the data; set "
            "metrics.reference_split=train or metrics.reference_split=test"
        )
    # Unpaired domains pair each source with an arbitrary target; their reference is the target domain's own
    # images, each once (load_targets), whatever the split's length.
    load = getattr(datamodule, "load_targets", datamodule.load_split)
    dataset: Dataset = load(train=split == "train")
    return dataset, subset_index(len(dataset), n, seed)  # type: ignore[arg-type]


def subset_index(size: int, n: int, seed: int) -> torch.Tensor:
    """The sorted indices of a seeded random ``n`` of ``size`` items (all of them when fewer)."""
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[: min(n, size)].sort().values


def split_labels(datamodule: GANDataModule, split: str, n: int, seed: int) -> torch.Tensor:
    """Class labels of the images :func:`split_images` yields for the same arguments."""
    dataset, index = _split_subset(datamodule, split, n, seed)
    labels = dataset.labels if isinstance(dataset, IndexedImages) else getattr(dataset, "targets", None)
    if labels is None:
        raise ConfigError(f"{datamodule.name} has no class labels to compare generated classes with")
    return torch.as_tensor(labels)[index]


def split_images(datamodule: GANDataModule, split: str, n: int, seed: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Batches (uint8) of ``n`` images of a split, a seeded random subset when the split is larger.

    A generator: the split is only read when the first batch is asked for.
    """
    dataset, index = _split_subset(datamodule, split, n, seed)
    if isinstance(dataset, IndexedImages):
        yield from map(dataset.images_at, index.split(batch_size))
    else:
        loader = DataLoader(Subset(dataset, index.tolist()), batch_size=batch_size, num_workers=datamodule.num_workers)
        yield from (images for images, _ in loader)


def split_features(
    datamodule: GANDataModule,
    extractor: FeatureExtractor,
    split: str,
    n: int,
    seed: int = 0,
    batch_size: int = 500,
    cache_dir: str | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Features of ``n`` real images of a split, from the on-disk cache when it has them."""
    key = {
        "dataset": datamodule.name,
        "source": str(Path(datamodule.data_dir).resolve()),  # an image folder is its path
        "split": split,
        "channels": datamodule.channels,
        "resolution": datamodule.resolution,
        "fit": datamodule.fit,
        "n": n,
        "seed": seed,
        "extractor": extractor.identity,
        **({"split_rule": datamodule.split_rule} if datamodule.split_rule else {}),  # an image folder's held-out test
    }
    images = lambda: split_images(datamodule, split, n, seed, batch_size)  # noqa: E731
    return cached(cache_dir, key, lambda: extract(extractor, images(), device)[0]).to(device)


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """The FID between two feature sets (torchmetrics' estimator)."""
    fid = FrechetInceptionDistance(feature=PassThrough(real.shape[1]), sync_on_compute=False).to(real.device)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    return fid.compute().item()


def neighbour_radii(real: torch.Tensor, k: int, batch_size: int = 2048) -> torch.Tensor:
    """Each real point's distance to its ``k``-th nearest other real point: the radius of its k-NN ball."""
    return torch.cat([torch.cdist(chunk, real).kthvalue(k + 1, dim=1).values for chunk in real.split(batch_size)])


def density_coverage(
    fake: torch.Tensor, real: torch.Tensor, radii: torch.Tensor, k: int, batch_size: int = 2048
) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020) from the real points' k-NN ball ``radii`` (:func:`neighbour_radii`).

    Density: how many real balls hold each sample, over ``k``, averaged (about 1 for samples distributed like the
    data, below it for samples off it, above it for samples clumped where the data is dense). Coverage: the share
    of real balls that hold at least one sample. Written here rather than taken from the authors' ``prdc`` package
    (the tests' reference) because prdc holds whole distance matrices in NumPy; this streams them on the features'
    device. Unlike improved precision/recall, every ball is a real point's, so outlying or bunched samples cannot
    widen the balls that judge them."""
    inside, covered = 0, torch.zeros(len(real), dtype=torch.bool, device=real.device)
    for chunk in fake.split(batch_size):
        within = torch.cdist(chunk, real) < radii
        inside += int(within.sum())
        covered |= within.any(dim=0)
    return {"density": inside / (k * len(fake)), "coverage": covered.double().mean().item()}


class ImageScorer(nn.Module):
    """Scores generated features against a fixed set of real (reference) features.

    FID, KID (mean and std over ``kid_subsets`` subsets of ``kid_subset_size``), IS (mean and
    std over ``is_splits`` splits) and, optionally, improved precision and recall (Kynkäänniemi
    et al. 2019, ``pr_neighbourhood``-th nearest neighbour balls) with density and coverage (Naeem et al.
    2020, ``dc_neighbourhood``-th, the real balls computed once). Random subsets come from a
    private generator seeded with ``seed``: scores are reproducible and training's random
    stream is untouched. With ``count_modes`` (logits of Stacked MNIST's digit triples: the stacked extractor's),
    also its modes, KL and the modes of samples whose digits are all classified with more than ``mode_confidence``
    (:func:`~ganforge.metrics.stacked_modes.stacked_modes`). With ``swd``, also the sliced Wasserstein distance of
    the images' Laplacian-pyramid patches (:mod:`~ganforge.metrics.swd`; ``swd_descriptors`` per level and set,
    None: :data:`~ganforge.metrics.swd.DESCRIPTORS`): it needs the images, not the features, so the real side's
    descriptors are drawn once (:meth:`set_swd_reference`, which :func:`reference_scorer` calls) and the generated
    side's in :func:`score_images`, as the images pass to the extractor.
    """

    def __init__(
        self,
        reference: torch.Tensor,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        is_splits: int = 10,
        precision_recall: bool = True,
        pr_neighbourhood: int = 3,
        dc_neighbourhood: int = 5,
        seed: int = 0,
        reference_labels: torch.Tensor | None = None,
        about: dict[str, Any] | None = None,
        count_modes: bool = False,
        mode_confidence: float = CONFIDENCE,
        swd: bool = False,
        swd_descriptors: int | None = None,
        swd_min_side: int | None = None,
        swd_directions: int = DIRECTIONS,
        swd_repeats: int = REPEATS,
    ) -> None:
        super().__init__()
        dim = reference.shape[1]
        # Every process scores complete feature sets (gathered by the caller under DDP), so
        # torchmetrics must not sum its states across processes again (sync_on_compute=False).
        self.fid = FrechetInceptionDistance(feature=PassThrough(dim), reset_real_features=False, sync_on_compute=False)
        with warnings.catch_warnings():  # KID and IS warn that they keep every feature: a few MB here
            warnings.simplefilter("ignore", UserWarning)
            self.kid = KernelInceptionDistance(
                feature=PassThrough(dim),
                subsets=kid_subsets,
                subset_size=kid_subset_size,
                reset_real_features=False,
                sync_on_compute=False,
            )
            self.inception_score = InceptionScore(feature=PassThrough(), splits=is_splits, sync_on_compute=False)
        self.fid.update(reference, real=True)
        self.kid.update(reference, real=True)
        self.reference = reference
        self.reference_labels = reference_labels
        self.about = dict(about or {})
        self.kid_subset_size = kid_subset_size
        self.precision_recall = precision_recall
        self.pr_neighbourhood = pr_neighbourhood
        self.dc_neighbourhood = dc_neighbourhood
        self._radii: torch.Tensor | None = None
        self.seed = seed
        self.count_modes = count_modes
        self.mode_confidence = mode_confidence
        self.swd = swd
        self.swd_descriptors, self.swd_min_side = swd_descriptors or DESCRIPTORS, swd_min_side
        self.swd_directions, self.swd_repeats = swd_directions, swd_repeats
        self.swd_reference: list[torch.Tensor] | None = None  # the real descriptors, per level
        self.swd_sizes: tuple[tuple[int, int], ...] | None = None

    def protocol(self) -> dict[str, Any]:
        """What the scores mean: ``about`` (reference, extractor) and the estimator settings."""
        return {
            **self.about,
            "n_reference": len(self.reference),
            "kid_subsets": self.kid.subsets,
            "kid_subset_size": self.kid_subset_size,
            "is_splits": self.inception_score.splits,
            "pr_neighbourhood": self.pr_neighbourhood if self.precision_recall else None,
            "dc_neighbourhood": self.dc_neighbourhood if self.precision_recall else None,
            **({"mode_confidence": self.mode_confidence} if self.count_modes else {}),
            **({"swd": self.swd_protocol()} if self.swd else {}),
        }

    def swd_protocol(self) -> dict[str, Any]:
        """SWD's settings: levels, descriptors, directions, seed (:func:`~ganforge.metrics.swd.swd_protocol`)."""
        return swd_protocol(
            self.swd_sizes, self.swd_descriptors, self.swd_directions, self.swd_repeats, self.seed, self.swd_min_side
        )

    def swd_sampler(
        self, n_images: int, stream: int = GENERATED, device: torch.device | str | None = None
    ) -> DescriptorSampler:
        """A descriptor set of ``n_images`` images drawn with this scorer's SWD settings (``stream``: which set)."""
        return DescriptorSampler(n_images, self.swd_descriptors, self.swd_min_side, self.seed, stream, device)

    def set_swd_reference(
        self, images: Iterable[torch.Tensor], n_images: int, device: torch.device | str | None = None
    ) -> None:
        """Draw the real descriptors from batches of ``n_images`` real images (one image will do: SinGAN's), once."""
        sampler = self.swd_sampler(n_images, REAL, device)
        for batch in images:
            sampler.add(batch)
        self.swd_reference = sampler.descriptors()
        assert sampler.pyramid is not None
        self.swd_sizes = sampler.pyramid.sizes

    def swd_of(self, sampler: DescriptorSampler) -> dict[str, float]:
        """``swd`` and ``swd/<level>`` (x1e3) of a generated descriptor set against the real one."""
        if self.swd_reference is None or self.swd_sizes is None:
            raise ConfigError("SWD needs the real images' descriptors first: ImageScorer.set_swd_reference")
        if sampler.pyramid is None or sampler.pyramid.sizes != self.swd_sizes:
            sizes = None if sampler.pyramid is None else sampler.pyramid.sizes[-1]
            raise ConfigError(f"SWD compares images of one size: real {self.swd_sizes[-1]}, generated {sizes}")
        return swd_levels(
            self.swd_reference, sampler.descriptors(), self.swd_sizes, self.swd_directions, self.swd_repeats,
            self.seed,
        )  # fmt: skip

    @torch.no_grad()
    def score(
        self,
        features: torch.Tensor,
        logits: torch.Tensor,
        labels: torch.Tensor | None = None,
        descriptors: DescriptorSampler | None = None,
    ) -> dict[str, float]:
        """``fid``, ``kid``, ``kid_std``, ``is``, ``is_std`` (and ``precision``, ``recall``, ``density``,
        ``coverage``; with the generated samples' ``labels`` and reference labels, ``intra_fid``: the mean over
        classes of the FID between the generated and the real images of each class; with ``count_modes``,
        ``modes``, ``kl`` and ``confident_modes``; with ``swd`` and the ``descriptors`` drawn from the same images
        (:meth:`swd_sampler`), ``swd`` and ``swd/<level>``)."""
        if min(len(features), len(self.reference)) < self.kid_subset_size:
            raise ConfigError(
                f"KID needs at least kid_subset_size={self.kid_subset_size} samples on each side, got "
                f"{len(features)} generated and {len(self.reference)} real; lower metrics.scorer.kid_subset_size"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            try:
                self.kid.update(features, real=False)
                self.inception_score.update(logits)
                kid, kid_std = self.kid.compute()
                inception_score, is_std = self.inception_score.compute()
                scores = {
                    "fid": self.fid_of(features),
                    "kid": kid.item(),
                    "kid_std": kid_std.item(),
                    "is": inception_score.item(),
                    "is_std": is_std.item(),
                }
            finally:  # generated features never outlive one evaluation
                self.kid.reset()
                self.inception_score.reset()
        if self.precision_recall:
            prc = prc_features_to_metric(
                features, self.reference, prc_neighborhood=self.pr_neighbourhood, prc_batch_size=10_000,
                save_cpu_ram=True, verbose=False,
            )  # fmt: skip
            scores |= {"precision": prc["precision"], "recall": prc["recall"]} | self.density_coverage_of(features)
        if labels is not None and self.reference_labels is not None:
            scores["intra_fid"] = self.intra_class_fid(features, labels)
        if self.count_modes:
            scores |= stacked_modes(logits, self.mode_confidence)
        if self.swd and descriptors is None:
            warnings.warn(
                "metrics.scorer.swd=true, but these scores were given features without the images' descriptors "
                "(score_images draws them); no swd is reported",
                stacklevel=2,
            )
        elif self.swd and descriptors is not None:
            scores |= self.swd_of(descriptors)
        return scores

    def density_coverage_of(self, features: torch.Tensor) -> dict[str, float]:
        """Density and coverage of a feature set against the reference, whose k-NN balls are computed once."""
        if self._radii is None:
            self._radii = neighbour_radii(self.reference, self.dc_neighbourhood)
        return density_coverage(features, self.reference, self._radii, self.dc_neighbourhood)

    def fid_of(self, features: torch.Tensor) -> float:
        """The FID of a feature set against the reference (the scorer's state is left as it was)."""
        try:
            self.fid.update(features, real=False)
            return self.fid.compute().item()
        finally:
            self.fid.reset()

    def intra_class_fid(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        """Mean over the classes with two or more samples on both sides of the per-class FID (Miyato &
        Koyama 2018); NaN, with a warning, when no class has (a mean over nothing is no score)."""
        assert self.reference_labels is not None
        labels, reference_labels = labels.to(features.device), self.reference_labels.to(features.device)
        fids = []
        for k in labels.unique():
            real, fake = self.reference[reference_labels == k], features[labels == k]
            if len(real) > 1 and len(fake) > 1:
                fids.append(frechet_distance(real, fake))
        if not fids:
            warnings.warn(
                f"intra-class FID is NaN: no class has two or more samples among both the {len(features)} generated "
                f"and the {len(self.reference)} real ones; raise metrics.n_samples and metrics.n_real",
                stacklevel=2,
            )
            return float("nan")
        return sum(fids) / len(fids)


def reference_scorer(
    datamodule: GANDataModule,
    extractor: FeatureExtractor,
    split: str,
    n: int,
    seed: int = 0,
    batch_size: int = 500,
    cache_dir: str | None = None,
    device: torch.device | str = "cpu",
    labelled: bool = False,
    **options: Any,
) -> ImageScorer:
    """An :class:`ImageScorer` against ``n`` real images of a split (features cached; with their labels
    when ``labelled``, for intra-class FID), whose protocol names the reference, the extractor and how the data
    met the resolution (``fit``). Where the extractor resizes the images (``data.fit=resize`` at another resolution
    than the classifier's), both sides are compared after a resize there and back, and the protocol also gives
    ``resampling_floor_fid``: the FID of the other split's real images so resized against the reference at the
    classifier's own resolution, the cost of the round trip alone, so that the number carries its floor. With the
    stacked extractor (Stacked MNIST), the scorer also counts modes (``count_modes``). With ``swd`` (an option), the
    same real images are read once more for their SWD descriptors (not cached: drawing them is cheap)."""
    reference = split_features(datamodule, extractor, split, n, seed, batch_size, cache_dir, device)
    labels = split_labels(datamodule, split, n, seed) if labelled else None
    about: dict[str, Any] = {
        "reference": f"{datamodule.name} {split} split, seeded subset (seed {seed})",
        "resolution": datamodule.resolution,  # what both sides are compared at (the extractor may resize)
        "fit": datamodule.fit,
        "extractor": extractor.identity,
    }
    count_modes = isinstance(extractor, StackedDigitFeatures)
    if count_modes:
        about["modes"] = "the 1,000 digit triples, each channel labelled by the extractor's classifier"
    scorer = ImageScorer(
        reference, seed=seed, reference_labels=labels, about=about, count_modes=count_modes, **options
    ).to(device)
    if extractor.resamples(datamodule.resolution):
        held_out = "test" if split == "train" else "train"
        assert extractor.resolution is not None
        native = datamodule.at_resolution(extractor.resolution)
        native_reference = split_features(native, extractor, split, n, seed, batch_size, cache_dir, device)
        round_trip = split_features(datamodule, extractor, held_out, n, seed, batch_size, cache_dir, device)
        scorer.about["resampling_floor_fid"] = frechet_distance(native_reference, round_trip)
    if scorer.swd:
        scorer.set_swd_reference(split_images(datamodule, split, n, seed, batch_size), len(reference), device)
    return scorer


def score_images(
    scorer: ImageScorer,
    extractor: FeatureExtractor,
    images: Iterable[torch.Tensor],
    device: torch.device | str = "cpu",
    labels: torch.Tensor | None = None,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    n: int | None = None,
) -> dict[str, float]:
    """Extract and score image batches; with their class ``labels`` and the domain classifier as the
    extractor, also ``class_accuracy``. ``gather`` joins this process's features and logits with those
    of the other ranks (under DDP each rank extracts a shard of the images; ``labels`` are all ``n``).

    With the scorer's ``swd``, the batches' SWD descriptors are drawn on their way to the extractor (the images are
    not kept), ``ceil(swd_descriptors / n)`` per image and level: ``n`` is the count of all ranks' images (without
    it, the batches are first collected to count them). The positions do not depend on the batch size; under DDP
    every rank draws its shard's from the same streams, so the value depends on the world size (not its
    expectation), and the gathered descriptors give every rank the same number."""
    sampler = None
    if scorer.swd:
        if n is None:
            images = list(images)
            n = sum(len(batch) for batch in images)
        sampler = scorer.swd_sampler(n, device=device)
        images = sampler.watch(images)
    features, logits = extract(extractor, images, device)
    if gather is not None:
        features, logits = gather(features), gather(logits)
        if sampler is not None:
            sampler.gather(gather)
    scores = scorer.score(features, logits, labels, descriptors=sampler)
    if labels is not None and isinstance(extractor, DomainFeatures):
        scores["class_accuracy"] = class_accuracy(logits, labels)
    return scores
