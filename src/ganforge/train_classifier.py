"""``ganforge-train-classifier``: train a dataset's domain classifier (the FID/KID/IS feature extractor)."""

from __future__ import annotations

import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from ganforge.metrics.classifier import save_classifier, train_domain_classifier, user_classifier_path


def train_classifier(cfg: DictConfig) -> Path:
    """Train on ``data``'s training split, record the test accuracy, write weights and metadata to ``out``."""
    datamodule = instantiate(cfg.data)
    start = time.perf_counter()
    model, metadata = train_domain_classifier(
        datamodule, epochs=cfg.epochs, seed=cfg.seed, lr=cfg.lr, batch_size=cfg.batch_size,
        width=cfg.width, grid=cfg.grid, augment=cfg.augmented, arch=cfg.arch,
    )  # fmt: skip
    metadata["train_seconds"] = round(time.perf_counter() - start, 1)
    if cfg.version is not None:
        metadata["version"] = int(cfg.version)
    if cfg.note:
        metadata["note"] = str(cfg.note)
    out = save_classifier(model, cfg.out or user_classifier_path(metadata["domain"]), metadata)
    print(
        f"{metadata['domain']} classifier: test accuracy {metadata['test_accuracy']:.4f} on "
        f"{metadata['test_size']} {metadata['dataset']} test images ({metadata['train_seconds']:.0f} s); wrote {out}"
    )
    return out


if __name__ == "__main__":
    from ganforge.cli import train_classifier as main

    main()
