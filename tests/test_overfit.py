"""debug=overfit gives a verdict: the distance from the one trained batch to the generator's nearest samples."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.config import generator_from_checkpoint, load_checkpoint
from ganforge.data.datamodules import FashionMNISTDataModule
from ganforge.errors import ConfigError
from ganforge.train import train
from tests.conftest import Compose

N_SAMPLES = 40


def pixel_rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """By hand: the RMS difference of every image of ``a`` from every image of ``b``, pixels mapped to [0, 1]."""
    differences = (a[:, None].astype(np.float64) - b[None].astype(np.float64)) / 2
    return np.sqrt((differences**2).reshape(len(a), len(b), -1).mean(axis=2))


def test_overfit_reports_each_targets_distance_to_its_nearest_sample(
    tiny_cfg: Compose, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Four generator steps on one batch of 16, checked before training, at step 2 and at the end: the distance,
    the verdict and the figure are recomputed by hand from the saved target batch and samples, and those from the
    data and last.ckpt."""
    caplog.set_level(logging.INFO, logger="ganforge.callbacks.overfit")
    overrides = ["debug=overfit", "max_gen_steps=4", "callbacks.overfit.every_n_gen_steps=2"]
    train(tiny_cfg(*overrides, f"callbacks.overfit.n={N_SAMPLES}"))
    run = tmp_path / "run"
    saved = np.load(run / "overfit.npz")
    targets, samples = saved["targets"], saved["samples"]

    # The target is the first batch of the training split (overfit_batches keeps it in order), in [-1, 1].
    first = FashionMNISTDataModule(data_dir=str(tmp_path)).load_split(train=True).images[:16]
    np.testing.assert_array_equal(targets, (first.float() / 127.5 - 1).numpy())
    # The samples are the final EMA generator's, from latents seeded by 0.
    generator, _ = generator_from_checkpoint(load_checkpoint(run / "checkpoints" / "last.ckpt"))
    with torch.no_grad():
        latents = torch.randn(N_SAMPLES, generator.latent_dim, generator=torch.Generator().manual_seed(0))
        np.testing.assert_allclose(samples, generator(latents).numpy(), atol=1e-6)

    # For each target, the RMS difference (pixels in [0, 1]) to its nearest sample; the mean over the batch.
    rms = pixel_rms(targets, samples)
    distances, nearest = rms.min(axis=1), rms.argmin(axis=1)
    result = json.loads((run / "overfit.json").read_text())
    assert result["gen_step"] == 4
    np.testing.assert_allclose(result["distances"], distances, rtol=1e-12)
    assert result["nearest"] == nearest.tolist()
    assert result["distance"] == pytest.approx(distances.mean(), rel=1e-12)
    # The threshold: each target's RMS difference to the batch's mean image, averaged. Four steps of a tiny G are
    # farther from the batch than that: the verdict says so.
    mean_image = pixel_rms(targets, targets.astype(np.float64).mean(axis=0, keepdims=True)).mean()
    assert result["threshold"] == result["mean_image_distance"] == pytest.approx(mean_image, rel=1e-12)
    assert result["threshold"] < result["distance"] and result["passed"] is False

    with (run / "csv" / "metrics.csv").open(newline="") as file:
        logged = [row for row in csv.DictReader(file) if row.get("overfit/distance")]
    assert [float(row["gen_step"]) for row in logged] == [0.0, 2.0, 4.0]
    assert float(logged[-1]["overfit/distance"]) == result["distance"]
    assert float(logged[0]["overfit/distance"]) == result["distance_before_training"]
    assert not (run / "metrics.json").exists() and "metrics/fid" not in logged[0]  # no FID
    (said,) = [r.getMessage() for r in caplog.records if "generator step 4" in r.getMessage()]
    assert f"are {result['distance']:.4f} from their nearest of {N_SAMPLES} samples" in said
    assert f"{result['distance_before_training']:.4f} before training" in said
    assert said.endswith(
        f"FAIL: not below {mean_image:.4f}, the batch's distance to its mean image: G draws no more "
        "of the batch than its average"
    )

    # The figure: the 16 targets in a 4 x 4 grid, and right of it each one's nearest sample at the same place.
    figure = np.asarray(Image.open(run / "overfit" / "gen_step_0000004.png").convert("L"), dtype=np.int64)
    assert sorted(p.name for p in (run / "overfit").iterdir()) == [f"gen_step_000000{s}.png" for s in (0, 2, 4)]
    grid_width = 4 * 30 + 2  # 28-px images with 2-px padding
    for i in range(16):
        row, col = 2 + 30 * (i // 4), 2 + 30 * (i % 4)
        for left, image in ((col, targets[i]), (col + grid_width + 8, samples[nearest[i]])):
            expected = np.floor((image[0].astype(np.float64) + 1) / 2 * 255 + 0.5).clip(0, 255)
            assert np.abs(figure[row : row + 28, left : left + 28] - expected).max() <= 1, i


def test_a_conditional_generator_is_matched_within_each_targets_class(tiny_cfg: Compose, tmp_path: Path) -> None:
    """The samples are drawn in the targets' classes, in turn; each target's nearest sample and the mean image it
    is held against are of its own class."""
    overrides = ["debug=overfit", "model.conditional=true", "max_gen_steps=2", f"callbacks.overfit.n={N_SAMPLES}"]
    train(tiny_cfg(*overrides))
    saved = np.load(tmp_path / "run" / "overfit.npz")
    targets, samples, labels = saved["targets"], saved["samples"], saved["target_labels"]
    first = FashionMNISTDataModule(data_dir=str(tmp_path)).load_split(train=True).labels[:16]
    np.testing.assert_array_equal(labels, first.numpy())
    np.testing.assert_array_equal(saved["sample_labels"], np.tile(labels, 3)[:N_SAMPLES])

    rms = np.where(labels[:, None] == saved["sample_labels"][None], pixel_rms(targets, samples), np.inf)
    result = json.loads((tmp_path / "run" / "overfit.json").read_text())
    np.testing.assert_allclose(result["distances"], rms.min(axis=1), rtol=1e-12)
    assert result["nearest"] == rms.argmin(axis=1).tolist()
    class_means = np.stack([targets[labels == label].astype(np.float64).mean(axis=0) for label in labels])
    by_class = np.sqrt((((targets - class_means) / 2) ** 2).reshape(16, -1).mean(axis=1))
    assert result["threshold"] == pytest.approx(by_class.mean(), rel=1e-12)


@pytest.mark.parametrize("experiment", ["ring", "fmnist_pix2pix"])
def test_overfit_refuses_what_it_cannot_compare(experiment: str, tiny_cfg: Compose, tmp_path: Path) -> None:
    """2-D points and translations are not samples of noise to compare with images: refused before training."""
    with pytest.raises(ConfigError, match=r"callbacks.overfit .* '~callbacks.overfit'"):
        train(tiny_cfg(f"experiment={experiment}", "debug=overfit"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_check_without_overfit_batches_is_refused(tiny_cfg: Compose, tmp_path: Path) -> None:
    """Without trainer.overfit_batches=1 the first batch is not what G trains on: refused before training."""
    check = ["+callbacks.overfit._target_=ganforge.callbacks.OverfitCheck", f"+callbacks.overfit.dirpath={tmp_path}"]
    with pytest.raises(ConfigError, match=r"trainer.overfit_batches=0.*debug=overfit"):
        train(tiny_cfg(*check, "max_gen_steps=1"))
    assert not (tmp_path / "overfit.json").exists()
