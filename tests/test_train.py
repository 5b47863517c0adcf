"""End to end: training runs, logs, checkpoints and resumes exactly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganforge.config import CONFIG_MODULE, load_checkpoint
from ganforge.evaluate import evaluate
from ganforge.train import train
from tests.conftest import TINY, Compose, assert_same_training_state, compose_config
from tests.wandb_log import config as wandb_config
from tests.wandb_log import summary as wandb_summary

EXPERIMENTS = sorted(
    p.stem for p in (Path(__import__(CONFIG_MODULE, fromlist=["x"]).__file__).parent / "experiment").glob("*.yaml")
)


def read_metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def column(rows: list[dict[str, str]], key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows if r.get(key)])


def grid(run: Path, step: int) -> np.ndarray:
    return np.asarray(Image.open(run / "samples" / f"gen_step_{step:07d}.png"), dtype=np.float64)


#: Datasets that cannot be downloaded here: their experiments run on a stand-in image folder of the same shape.
DOWNLOAD_ONLY = ("ganforge.data.CIFAR10DataModule", "ganforge.data.CelebADataModule")


def stand_in_image_folder(root: Path, channels: int, resolution: int, classes: int) -> list[str]:
    """A folder of random images, ``classes`` sub-folders of 8, and the overrides that train on it."""
    rng = np.random.default_rng(0)
    for k in range(classes):
        (root / f"class_{k}").mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 256, size=(resolution, resolution, channels), dtype=np.uint8)
            Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(root / f"class_{k}" / f"{i}.png")
    return [
        "data=image_folder",
        f"data.data_dir={root}",
        f"data.channels={channels}",
        f"data.resolution={resolution}",
        f"data.num_classes={classes}",
        "data.batch_size=8",
        "data.num_workers=0",
        "data.test_fraction=0",  # the stand-in trains on every image: 8 of one class fill a batch
    ]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_of_every_experiment(experiment: str, tmp_path: Path, random_inception_weights: Path) -> None:
    """Each experiment, at its real size, runs one batch through D and G steps (and its final evaluation)."""
    overrides = [f"experiment={experiment}", "debug=fdr", f"paths.output_dir={tmp_path}"]
    data = compose_config("train", overrides).data
    if data._target_ in DOWNLOAD_ONLY:
        overrides += stand_in_image_folder(tmp_path / "images", data.channels, data.resolution, data.num_classes or 1)
        overrides += [f"metrics.features.weights_path={random_inception_weights}", "metrics.n_samples=32"]
        overrides += ["metrics.n_real=32", "metrics.scorer.kid_subset_size=4"]
        if "schedule" in compose_config("train", overrides).model:
            overrides += ["model.schedule.batch_size=null"]  # per-resolution sizes above the stand-in's batch of 8
    cfg = compose_config("train", overrides)
    metrics = train(cfg)
    assert metrics["gen_step"] == 1.0 and np.isfinite(metrics["loss/g"])
    if (cfg.get("game") or {}).get("adversarial", True):
        assert np.isfinite(metrics["loss/d"])
    else:  # a baseline without D (the VAE) trains and logs none
        assert "loss/d" not in metrics
    figure = "scatter" if experiment in ("ring", "grid") else "samples"  # 2-D mixtures are plotted, not gridded
    assert (tmp_path / figure / "gen_step_0000001.png").is_file()


def test_short_run_losses_move_and_samples_change(tiny_cfg: Compose, tmp_path: Path) -> None:
    """60 generator steps: logged losses vary, the grid at step 60 differs from step 20, last.ckpt is written."""
    train(tiny_cfg("max_gen_steps=60", "callbacks.samples.every_n_gen_steps=20", "trainer.log_every_n_steps=5"))
    run = tmp_path / "run"
    rows = read_metrics(run)
    d_loss, g_loss = column(rows, "loss/d"), column(rows, "loss/g")
    assert len(d_loss) >= 10 and len(g_loss) >= 10
    assert d_loss.std() > 1e-3 and g_loss.std() > 1e-3
    assert column(rows, "gen_step")[-1] == 60
    assert np.abs(grid(run, 60) - grid(run, 20)).mean() > 2.0  # on the 0..255 scale
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert checkpoint["ganforge"]["generator_steps"] == 60
    assert checkpoint["ganforge"]["images_shown"] == 60 * 16


def test_n_critic_counts_generator_steps(tiny_cfg: Compose, tmp_path: Path) -> None:
    """With n_critic=3, max_gen_steps=10 means 30 D steps, 10 G steps and 40 Lightning optimizer steps."""
    train(tiny_cfg("n_critic=3", "max_gen_steps=10"))
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert checkpoint["ganforge"]["generator_steps"] == 10
    assert checkpoint["ganforge"]["discriminator_steps"] == 30
    assert checkpoint["global_step"] == 40


def test_checkpoints_every_n_generator_steps(tiny_cfg: Compose, tmp_path: Path) -> None:
    """every_n_gen_steps=4 with n_critic=2 writes steps 4 and 8 (plus last.ckpt and best.ckpt) for a 10-step run."""
    train(tiny_cfg("n_critic=2", "max_gen_steps=10", "callbacks.checkpoint.every_n_gen_steps=4"))
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["best.ckpt", "gen_step_0000004.ckpt", "gen_step_0000008.ckpt", "last.ckpt"]
    assert (
        load_checkpoint(tmp_path / "run" / "checkpoints" / "gen_step_0000004.ckpt")["ganforge"]["generator_steps"] == 4
    )


def test_image_metrics_are_logged_and_best_checkpoint_has_the_lowest_fid(tiny_cfg: Compose, tmp_path: Path) -> None:
    """Evaluations every 4 generator steps (and at the end) log FID/KID/IS/precision/recall/density/coverage; best.ckpt
    is the evaluated state with the lowest FID; metrics.json states the protocol; ganforge-eval of
    last.ckpt with the same settings reproduces the final scores."""
    train(tiny_cfg("max_gen_steps=10", "metrics.every_n_gen_steps=4"))
    run = tmp_path / "run"
    rows = [r for r in read_metrics(run) if r.get("metrics/fid")]
    assert [int(float(r["gen_step"])) for r in rows] == [4, 8, 10]
    for key in ("fid", "kid", "kid_std", "is", "is_std", "precision", "recall", "density", "coverage"):
        assert all(np.isfinite(float(r[f"metrics/{key}"])) for r in rows), key
    fids = {int(float(r["gen_step"])): float(r["metrics/fid"]) for r in rows}
    best = load_checkpoint(run / "checkpoints" / "best.ckpt")["ganforge"]["generator_steps"]
    assert fids[best] == min(fids.values())

    result = json.loads((run / "metrics.json").read_text())
    assert result["gen_step"] == 10 and result["metrics"]["fid"] == pytest.approx(fids[10], rel=1e-6)
    protocol = result["protocol"]
    assert protocol["n_generated"] == 100 and protocol["n_reference"] == 100
    assert protocol["reference"].startswith("Fashion-MNIST train split")
    assert protocol["extractor"].startswith("domain:fashion_mnist:")

    overrides = [o for o in TINY if o.startswith("metrics.")]
    again = evaluate(compose_config("eval", [f"ckpt={run / 'checkpoints' / 'last.ckpt'}", *overrides]))
    assert again["metrics"] == pytest.approx(result["metrics"], rel=1e-5)
    assert again["protocol"]["reference"] == protocol["reference"]


@pytest.mark.parametrize("stop_at", ["end", "periodic"])
def test_resume_equals_uninterrupted_run(
    tiny_cfg: Compose, tmp_path: Path, stop_at: str, recwarn: pytest.WarningsRecorder
) -> None:
    """Train 30 steps, resume to 70: counters continue and all weights, EMA and optimizer states are
    bitwise equal to an uninterrupted 70-step run (same seed, CPU, deterministic kernels). The data stream resumes
    with them, so Lightning's warning that the loader "is not resumable ... unreliable results" is not shown."""
    every = "callbacks.checkpoint.every_n_gen_steps=30"
    if stop_at == "end":  # resume from the last.ckpt written when training stopped
        train(tiny_cfg("max_gen_steps=30", out="first"))
        ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    else:  # resume from a periodic checkpoint written mid-run
        train(tiny_cfg("max_gen_steps=45", every, out="first"))
        ckpt = tmp_path / "first" / "checkpoints" / "gen_step_0000030.ckpt"
    train(tiny_cfg("max_gen_steps=70", f"ckpt_path={ckpt}", out="resumed"))
    assert not [w for w in recwarn if "not resumable" in str(w.message)]
    train(tiny_cfg("max_gen_steps=70", out="straight"))

    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert straight["ganforge"]["generator_steps"] == 70 and straight["global_step"] == 140
    assert any(k.startswith("generator_ema.") for k in straight["state_dict"])
    assert_same_training_state(load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt"), straight)


def test_wandb_offline_run_holds_losses_and_config(
    tiny_cfg: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an API key W&B runs offline; its run log's summary holds the last logged losses, the final
    image metrics and the config."""
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(tiny_cfg("logger=wandb", "max_gen_steps=30", "trainer.log_every_n_steps=5"))
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    summary = wandb_summary(runs[0])
    last = [row for row in read_metrics(tmp_path / "run") if row.get("loss/d")][-1]
    assert summary["loss/d"] == pytest.approx(float(last["loss/d"]), rel=1e-6)
    assert summary["loss/g"] == pytest.approx(float(last["loss/g"]), rel=1e-6)
    assert summary["gen_step"] == 30
    assert summary["samples/_type"] == "images/separated"  # the final sample grid
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    assert summary["metrics/fid"] == pytest.approx(final["fid"], rel=1e-6)  # the final evaluation
    logged = wandb_config(runs[0])
    assert logged["model"]["generator"]["width"] == 8
    assert logged["task_name"] == "fashion_mnist_dcgan"
