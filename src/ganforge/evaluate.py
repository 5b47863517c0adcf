"""``ganforge-eval``: FID / KID / IS / precision-recall / density-coverage (and, with ``metrics.scorer.swd=true``,
SWD; with ``ppl=w|z``, a style-based checkpoint's perceptual path length; with ``equivariance=t|t_frac|r``, a
StyleGAN3's EQ-T / EQ-T_frac / EQ-R; for a flow generator, its test bits per dimension) of a checkpoint, samples,
or real data.

    ganforge-eval ckpt=RUN/checkpoints/last.ckpt                      # EMA generator, the run's data
    ganforge-eval samples=samples.npz data=fashion_mnist metrics/features=domain
    ganforge-eval floor=true data=fashion_mnist                       # real-data floor: test vs train split

Prints the scores and writes them, with their protocol, as JSON beside what was scored (:func:`default_out`)
unless ``out=`` names the file; prints where it went.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, open_dict

from ganforge.config import build, generator_from_checkpoint, load_checkpoint
from ganforge.errors import GanforgeError
from ganforge.generation import (
    StyleMixing,
    check_truncation,
    class_major_labels,
    generate_batches,
    resolve_device,
)
from ganforge.metrics.equivariance import equivariance
from ganforge.metrics.features import FeatureExtractor
from ganforge.metrics.image_metrics import reference_scorer, score_images, split_images, split_labels
from ganforge.metrics.likelihood import test_bits_per_dim
from ganforge.metrics.path_length import (
    DISTANCES,
    feature_distance,
    lpips_distance,
    path_lengths,
    perceptual_path_length,
)


def load_samples(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 NHWC images under ``arr_0`` (as ganforge-sample writes them) -> uint8 NCHW, and the
    class labels under ``arr_1`` when the file has them (samples of a conditional model)."""
    file = Path(path)
    if not file.is_file():
        raise GanforgeError(
            f"samples file {str(file)!r} does not exist; write one with ganforge-sample ckpt=... out=..."
        )
    with np.load(file) as npz:
        if "arr_0" not in npz:
            raise GanforgeError(f"{str(file)!r} has no arr_0; expected uint8 images N x H x W x C under arr_0")
        images = npz["arr_0"]
        labels = torch.from_numpy(npz["arr_1"]).long() if "arr_1" in npz else None
    if images.dtype != np.uint8 or images.ndim != 4:
        raise GanforgeError(
            f"{str(file)!r}: arr_0 is {images.dtype} of shape {images.shape}; expected uint8 images N x H x W x C"
        )
    return torch.from_numpy(images).permute(0, 3, 1, 2), labels


Scored = tuple[Iterable[torch.Tensor], int, str, DictConfig, Callable[[], torch.Tensor | None]]


def _generated(cfg: DictConfig, device: torch.device) -> Scored:
    """The images to score, how many, what they are, the data config they are compared with, and
    their class labels when they have some (a conditional generator's, a samples file's arr_1, real
    ones). Images and labels are produced lazily: nothing reads the data before the extractor is built."""
    m = cfg.metrics
    if sum(bool(x) for x in (cfg.ckpt, cfg.samples, cfg.floor)) != 1:
        raise GanforgeError("give exactly one of ckpt=PATH, samples=PATH.npz or floor=true")
    truncation = cfg.get("truncation")
    for option, given in (("truncation=", truncation is not None), ("mixing=true", cfg.get("mixing"))):
        if given and not cfg.ckpt:
            raise GanforgeError(f"{option} draws a checkpoint's latents: use it with ckpt=PATH (or drop it)")
    check_truncation(truncation)
    if cfg.ckpt:
        generator, kind, run_cfg = checkpoint_generator(cfg)
        truncated = "" if truncation is None else f", every |z_i| resampled below {truncation}"
        if cfg.get("mixing"):
            generator, truncated = StyleMixing(generator), truncated + ", styles mixed from two latents"
        what = f"{m.n_samples} samples of the {kind} of {cfg.ckpt} (latent seed {m.seed}{truncated})"
        data = cfg.get("data") or run_cfg.data
        num_classes = getattr(generator, "num_classes", None)
        gen_labels = class_major_labels(m.n_samples, num_classes) if num_classes else None
        batches = generate_batches(
            generator.to(device), m.n_samples, m.seed, m.batch_size, labels=gen_labels, truncation=truncation
        )
        return batches, m.n_samples, what, data, lambda: gen_labels
    if not cfg.get("data"):
        raise GanforgeError("name the reference data: data=fashion_mnist (or another data config)")
    if cfg.samples:
        loaded, loaded_labels = load_samples(cfg.samples)
        return (
            loaded.split(m.batch_size),
            len(loaded),
            f"{len(loaded)} images of {cfg.samples}",
            cfg.data,
            lambda: loaded_labels,
        )
    datamodule = build(cfg.data)
    floor_split = "test" if m.reference_split == "train" else "train"
    what = f"{datamodule.name} {floor_split} split, {m.n_samples} images (seeded subset, seed {m.seed})"
    real = split_images(datamodule, floor_split, m.n_samples, m.seed, m.batch_size)

    def real_labels() -> torch.Tensor | None:
        return split_labels(datamodule, floor_split, m.n_samples, m.seed) if datamodule.num_classes else None

    return real, m.n_samples, what, cfg.data, real_labels


def checkpoint_generator(cfg: DictConfig) -> tuple[torch.nn.Module, str, DictConfig]:
    """The generator ``ganforge-eval`` scores (the EMA copy unless ``ema=false``), what it is, and its run's config."""
    generator, run_cfg = generator_from_checkpoint(load_checkpoint(cfg.ckpt), ema=cfg.ema)
    # What generator_from_checkpoint loaded: G itself when the run kept no EMA copy (ema_decay=null).
    kind = "EMA generator" if cfg.ema and run_cfg.get("ema_decay") is not None else "generator"
    return generator, kind, run_cfg


def path_length(cfg: DictConfig, extractor: FeatureExtractor, device: torch.device) -> tuple[float, dict[str, Any]]:
    """Perceptual path length of the checkpoint's generator in ``cfg.ppl``'s space, and its protocol."""
    if not cfg.ckpt:
        raise GanforgeError("ppl= walks a checkpoint's latent space: use it with ckpt=PATH (or drop it)")
    p = cfg.path_length
    if p.distance not in DISTANCES:
        raise GanforgeError(f"path_length.distance={p.distance!r}: choose one of {', '.join(DISTANCES)}")
    generator, kind, _ = checkpoint_generator(cfg)
    distance = feature_distance(extractor) if p.distance == "features" else lpips_distance(p.lpips_net)
    values = path_lengths(
        generator.to(device), distance, p.n, cfg.ppl, p.sampling, p.epsilon, cfg.metrics.seed,
        cfg.metrics.batch_size, device,
    )  # fmt: skip
    space = f"{extractor.identity} features, squared distance" if p.distance == "features" else f"LPIPS {p.lpips_net}"
    protocol = {
        "space": cfg.ppl, "sampling": p.sampling, "epsilon": p.epsilon, "n": p.n, "distance": space,
        "generator": kind, "seed": cfg.metrics.seed, "kept": "values inside the 1st-99th percentile",
    }  # fmt: skip
    return perceptual_path_length(values), protocol


@torch.no_grad()
def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score the configured images; returns ``{"metrics": ..., "protocol": ...}`` (also written as JSON)."""
    device = resolve_device(cfg.device)
    images, n, what, data_cfg, get_labels = _generated(cfg, device)
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.data = data_cfg  # the extractor's config interpolates it (the datamodule's domain)
    datamodule = build(cfg.data)
    m = cfg.metrics
    extractor = build(m.features).to(device)
    labels = get_labels()
    scorer = reference_scorer(
        datamodule, extractor, m.reference_split, m.n_real, m.seed, m.batch_size, m.cache_dir, device,
        labelled=labels is not None, **m.scorer,
    )  # fmt: skip
    metrics = score_images(scorer, extractor, images, device, labels, n=n)
    result = {"metrics": metrics, "protocol": {"generated": what, "n_generated": n, **scorer.protocol()}}
    if cfg.get("ppl"):
        metrics[f"ppl_{cfg.ppl}"], result["protocol"]["path_length"] = path_length(cfg, extractor, device)
    if cfg.get("equivariance"):
        if not cfg.ckpt:
            raise GanforgeError("equivariance= moves a checkpoint's generator input: use it with ckpt=PATH")
        generator, kind, _ = checkpoint_generator(cfg)
        n_eq = cfg.equivariance_n
        metrics[f"eq_{cfg.equivariance}"] = equivariance(
            generator.to(device), cfg.equivariance, n_eq, cfg.metrics.seed, cfg.metrics.batch_size, device
        )
        result["protocol"]["equivariance"] = {"kind": cfg.equivariance, "n": n_eq, "generator": kind, "peak": 2.0}
    if cfg.ckpt and m.bits_per_dim_n:
        generator, kind, _ = checkpoint_generator(cfg)
        if hasattr(generator, "bits_per_dim"):  # a flow: its exact likelihood of the test split
            metrics["bits_per_dim"], protocol = test_bits_per_dim(generator, datamodule, m, device)
            result["protocol"]["bits_per_dim"] = {**protocol, "generator": kind}
    out = Path(cfg.out or default_out(cfg, datamodule.name, extractor.identity.split(":")[0])).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(map(len, metrics), default=0)
    for name, value in metrics.items():
        print(f"{name:>{width}}: {value:.6g}")
    print(f"wrote the scores and their protocol to {out}")
    return result


def default_out(cfg: DictConfig, dataset: str, extractor: str) -> Path:
    """Where the JSON goes without ``out=``: beside what was scored, as ``<name>_<extractor>_metrics.json``.

    One rule for the three inputs, so a result is found where its input is: a checkpoint's run folder (the
    folder above ``checkpoints/``; else the checkpoint's own folder), named after the checkpoint; a samples
    file's folder, named after the file; the floor scores a dataset, not a file, so the current folder,
    named ``floor_<dataset>``.
    """
    if cfg.ckpt:
        ckpt = Path(cfg.ckpt)
        folder = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        return folder / f"{ckpt.stem}_{extractor}_metrics.json"
    if cfg.samples:
        return Path(cfg.samples).with_name(f"{Path(cfg.samples).stem}_{extractor}_metrics.json")
    return Path(f"floor_{re.sub('[^a-z0-9]+', '_', dataset.lower()).strip('_')}_{extractor}_metrics.json")


if __name__ == "__main__":
    from ganforge.cli import evaluate as main

    main()
