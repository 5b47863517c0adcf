"""The trivial baselines a translation model must beat, scored like a model's outputs on the test split.

For each paired or unpaired dataset (``data=<name>``): the source itself as the output (resized bicubically
to the target's size and given its channels: for ``paired_edges`` the edge map, for ``paired_lowres4``
bicubic upsampling, the baseline SRResNet must beat), and the per-pixel mean of the training targets (the
best constant output under squared error). Both are scored as ``callbacks.translation_metrics`` scores a
generator: PSNR, SSIM and L1 against the targets (paired data), FID / KID / IS / precision / recall against
the same test targets in the data's feature space (``metrics`` group) and, where the data names the target
classes (``unpaired_sneaker_boot``), the share of outputs classified as one of them.

    .venv/bin/python benchmarks/translation_baselines.py paired_edges paired_lowres4 unpaired_sneaker_boot
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

import torch
from hydra import compose, initialize_config_module
from torch.nn import functional as F

from ganforge.config import CONFIG_MODULE, build
from ganforge.data.datamodules import to_unit_interval
from ganforge.metrics.image_metrics import reference_scorer, subset_index
from ganforge.metrics.translation import pairs, translation_scores

COLUMNS = ("psnr", "ssim", "l1", "target_class", "fid", "kid", "is", "precision", "recall")


def as_target(source: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``source`` at ``like``'s size (bicubic, antialiased) and channels, in [-1, 1]."""
    if source.shape[-2:] != like.shape[-2:]:
        source = F.interpolate(source, size=like.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1)
    if source.shape[1] != like.shape[1]:
        source = source.mean(dim=1, keepdim=True).expand(-1, like.shape[1], -1, -1)
    return source


def constant(image: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``image`` for every source."""
    return image.expand(len(source), -1, -1, -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", help="paired or unpaired data options (data=<name>)")
    parser.add_argument("--n", type=int, default=10_000, help="test pairs scored (a seeded subset when fewer)")
    parser.add_argument("--overrides", nargs="*", default=[], help="extra overrides for every dataset's config")
    args = parser.parse_args()
    print("| data | baseline | " + " | ".join(COLUMNS) + " |\n|---|---" + "|---" * len(COLUMNS) + "|")
    for name in args.datasets:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            cfg = compose("train", overrides=[f"data={name}", "logger=csv", *args.overrides])
        data = build(cfg.data)
        features = build(cfg.metrics.features)
        scorer = reference_scorer(data, features, "test", args.n, cfg.metrics.seed, cfg.metrics.batch_size,
                                  cfg.metrics.cache_dir, **cfg.metrics.scorer)  # fmt: skip
        test = data.load_split(train=False)
        targets = data.load_split(train=True).images
        mean = to_unit_interval(targets).mean(dim=0, keepdim=True)
        like = to_unit_interval(test.images[:1])
        baselines: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            "source as output": partial(as_target, like=like),
            "mean training image": partial(constant, mean),
        }
        for label, output in baselines.items():
            batches = pairs(test, subset_index(len(test), args.n, cfg.metrics.seed), cfg.metrics.batch_size)
            scores = translation_scores(output, batches, "cpu", scorer, features, paired=getattr(data, "paired", True),
                                        target_classes=getattr(data, "target_classes", None))  # fmt: skip
            cells = [f"{scores[c]:.4g}" if c in scores else "–" for c in COLUMNS]
            print(f"| {name} | {label} | " + " | ".join(cells) + " |", flush=True)
    print(
        f"\nAt most {args.n} test pairs (a seeded subset of a larger split, seed 0), scored as "
        "callbacks.translation_metrics scores a model."
    )


if __name__ == "__main__":
    main()
