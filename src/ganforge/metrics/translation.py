"""Scores of image-to-image outputs: PSNR, SSIM and L1 against paired targets (torchmetrics), the cycle error of
unpaired translation, and the image metrics of the outputs (FID, KID, IS, precision/recall) against the target
domain. Each source of a test split is translated once; for unpaired data the reference is the target domain's
own test images, each once, as many as it has (``load_targets``), not the targets the split sets beside the
sources."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ganforge.data.datamodules import to_unit_interval
from ganforge.data.paired import PairedImages
from ganforge.generation import eval_mode
from ganforge.metrics.features import FeatureExtractor
from ganforge.metrics.image_metrics import ImageScorer, extract

Pair = tuple[torch.Tensor, torch.Tensor]


def pairs(dataset: Dataset, index: torch.Tensor, batch_size: int, num_workers: int = 0) -> Iterator[Pair]:
    """``(targets, sources)`` batches of a paired split at ``index``, scaled to [-1, 1] (an unpaired test split:
    each source once, beside an unrelated target)."""
    if isinstance(dataset, PairedImages):
        batches: Iterable[Pair] = zip(
            dataset.images[index].split(batch_size), dataset.sources[index].split(batch_size), strict=True
        )
    else:
        batches = DataLoader(Subset(dataset, index.tolist()), batch_size=batch_size, num_workers=num_workers)
    for targets, sources in batches:
        yield to_unit_interval(targets), to_unit_interval(sources)


def translator(
    generator: nn.Module, device: torch.device | str, inverse: bool = False
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``source -> G(source)`` on ``device``, in eval mode (dropout off, BatchNorm's running statistics);
    ``inverse``: a two-way generator's other direction (CycleGAN's B -> A)."""

    def translate(sources: torch.Tensor) -> torch.Tensor:
        with eval_mode(generator):
            run = generator.inverse if inverse else generator
            return run(sources.to(device))  # type: ignore[operator]

    return translate


def translation_scores(
    translate: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[Pair],
    device: torch.device | str = "cpu",
    scorer: ImageScorer | None = None,
    features: FeatureExtractor | None = None,
    paired: bool = True,
    inverse: Callable[[torch.Tensor], torch.Tensor] | None = None,
    target_classes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Scores of ``translate``'s outputs for the sources of ``(targets, sources)`` batches.

    Paired data: ``psnr`` (dB) and ``ssim`` of each output against its target in [0, 1], averaged over the
    pairs, and ``l1``, the mean absolute error in [0, 1]. With an ``inverse`` (CycleGAN's B -> A),
    ``cycle_l1``: the mean absolute error in [0, 1] of ``inverse(translate(source))`` against the source. With a
    ``scorer`` and its ``features``, the image metrics of the outputs against the scorer's reference (the target
    domain: paired, the sources' targets; unpaired, its own test images, each once), and with ``target_classes``,
    ``target_class``: the share of outputs the features' classifier puts in one of those classes (CycleGAN's
    sneaker -> ankle boot: class 9)."""
    psnr = PeakSignalNoiseRatio(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3)).to(device)
    ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(device)
    absolute = cycled = 0.0
    count, outputs = 0, []
    for targets, sources in batches:
        output = translate(sources).to(device).float()
        output01, target01 = (output.clamp(-1, 1) + 1) / 2, (targets.to(device) + 1) / 2
        if paired:
            psnr.update(output01, target01)
            ssim.update(output01, target01)
            absolute += (output01 - target01).abs().sum().item()
        if inverse is not None:
            cycled += (inverse(output).to(device).float().clamp(-1, 1) - sources.to(device)).abs().sum().item() / 2
        count += output.numel()
        outputs.append(output.cpu())
    scores: dict[str, Any] = {}
    if paired:
        similarity = cast(torch.Tensor, ssim.compute())  # a tuple only when asked for the full SSIM image
        scores |= {"psnr": psnr.compute().item(), "ssim": similarity.item(), "l1": absolute / count}
    if inverse is not None:
        scores["cycle_l1"] = cycled / count
    if scorer is not None and features is not None:
        embedded, logits = extract(features, outputs, device)
        scores |= scorer.score(embedded, logits)
        if target_classes is not None:
            hits = torch.isin(logits.argmax(dim=1).cpu(), torch.as_tensor(list(target_classes)))
            scores["target_class"] = hits.double().mean().item()
    return scores
