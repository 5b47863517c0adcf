"""The console scripts as a user runs them: sampling, configs from any directory, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ganforge.cli import refuse_undefined_options
from ganforge.config import CONFIG_MODULE, generator_from_checkpoint, load_checkpoint
from ganforge.errors import CheckpointError, ConfigError, TrainingDivergedError
from ganforge.sample import sample
from ganforge.train import train
from tests.conftest import TINY, Compose, compose_config

BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command the way a user would: from ``cwd``, without this checkout on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A non-zero exit with a message holding every fragment, and no Python traceback."""
    assert result.returncode != 0, result.stdout[-2000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained checkpoint (10 generator steps) shared by the tests below."""
    out = tmp_path_factory.mktemp("trained")
    train(compose_config("train", [*TINY, f"paths.output_dir={out}", "max_gen_steps=10"]))
    return out / "checkpoints" / "last.ckpt"


def test_sample_cli_writes_npz_and_grid(checkpoint: Path, tmp_path: Path) -> None:
    """ganforge-sample writes N uint8 NHWC images under arr_0, identical to an in-process call with the same seed."""
    result = run(str(BIN / "ganforge-sample"), f"ckpt={checkpoint}", "n=50", "out=s.npz", "grid=g.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    images = np.load(tmp_path / "s.npz")["arr_0"]
    assert images.shape == (50, 28, 28, 1) and images.dtype == np.uint8
    generator, _ = generator_from_checkpoint(load_checkpoint(checkpoint))
    with torch.no_grad():  # arr_0 is G_ema(z) mapped from [-1, 1] to [0, 255], in NHWC layout
        expected = generator(torch.randn(50, generator.latent_dim, generator=torch.Generator().manual_seed(0)))
    expected = ((expected + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(images, expected)
    assert images.std() > 0  # not a constant image
    assert Image.open(tmp_path / "g.png").size == (8 * 30 + 2, 7 * 30 + 2)  # 50 images, 8 per row, 2 px padding

    again = sample(compose_config("sample", [f"ckpt={checkpoint}", "n=50", f"out={tmp_path / 'again.npz'}"]))
    np.testing.assert_array_equal(np.load(again)["arr_0"], images)
    raw = sample(compose_config("sample", [f"ckpt={checkpoint}", "n=50", "ema=false", f"out={tmp_path / 'raw.npz'}"]))
    assert not np.array_equal(np.load(raw)["arr_0"], images)  # EMA and raw generators differ


def test_python_dash_m_entry_points_find_configs_from_any_directory(tmp_path: Path) -> None:
    """Configs ship inside the package: both module entry points compose from an unrelated cwd."""
    result = run(sys.executable, "-m", "ganforge.train", "--cfg", "job", "data=cifar10", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CIFAR10DataModule" in result.stdout
    result = run(sys.executable, "-m", "ganforge.sample", "--cfg", "job", "ckpt=x.ckpt", cwd=tmp_path)
    assert result.returncode == 0 and "ckpt: x.ckpt" in result.stdout


def test_unknown_option_is_a_clear_error(tmp_path: Path) -> None:
    """A misspelt key or a missing group option names the problem and the available options."""
    assert_clean_error(
        run(str(BIN / "ganforge-train"), "max_gen_step=5", cwd=tmp_path), "Could not override 'max_gen_step'"
    )
    assert_clean_error(
        run(str(BIN / "ganforge-train"), "model=dcgan2", cwd=tmp_path), "Could not find 'model/dcgan2'", "dcgan"
    )


def test_a_key_the_config_does_not_define_is_refused(tmp_path: Path) -> None:
    """+max_gen_step=100 (Hydra's advice for max_gen_step=100) would be ignored and train 5,000 steps: every command
    refuses it before writing anything, naming the closest key; keys added inside a section still pass."""
    result = run(str(BIN / "ganforge-train"), "+max_gen_step=100", cwd=tmp_path)
    assert_clean_error(
        result,
        "ganforge-train: error: +max_gen_step=100 sets max_gen_step, which is no setting of ganforge-train and would "
        "be ignored; did you mean max_gen_steps=100?",
    )
    assert not list(tmp_path.glob("outputs/*/runs/*"))
    result = run(str(BIN / "ganforge-sample"), "ckpt=x.ckpt", "++seeds=3", cwd=tmp_path)
    assert_clean_error(result, "ganforge-sample: error: ++seeds=3 sets seeds, which is no setting", "mean seed=3?")
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        for overrides in (["+trainer.limit_train_batches=2", "++seed=3", "+callbacks.mine={_target_:x.Y}"], []):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            refuse_undefined_options(cfg, "ganforge-train")
        conf = Path(__file__).resolve().parents[1] / "conf"
        for group in ("experiment", "debug", "hparams_search", "launcher"):  # what sets top-level keys: all defined
            for option in sorted(path.stem for path in (conf / group).glob("*.yaml")):
                cfg = compose("train", overrides=[f"{group}={option}"], return_hydra_config=True)
                HydraConfig.instance().set_config(cfg)
                refuse_undefined_options(cfg, "ganforge-train")
        cfg = compose("train", overrides=["+zzz.a=1"], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with pytest.raises(
            ConfigError, match=r"^\+zzz\.a=1 sets zzz, .*; remove it \(the settings: augment, callbacks"
        ):
            refuse_undefined_options(cfg, "ganforge-train")


def test_help_says_what_each_command_does_and_lists_its_own_options(tmp_path: Path) -> None:
    """--help: a description first, the settings that command takes, and the config groups only where the command
    has them (ganforge-sample has none; ganforge-eval names its data and features options)."""
    train_help = run(str(BIN / "ganforge-train"), "--help", cwd=tmp_path).stdout
    assert (
        train_help.startswith("ganforge-train: train a GAN described by Hydra configs.")
        and "experiment: " in train_help
    )
    assert len(train_help.splitlines()) < 50  # was 185: the whole composed config
    settings = train_help.split("Settings (key=value):\n")[1].split("\nand any key")[0]
    assert {line.split()[0] for line in settings.splitlines()} <= set(compose_config("train", []))
    sample_help = run(str(BIN / "ganforge-sample"), "--help", cwd=tmp_path).stdout
    assert (
        sample_help.startswith("ganforge-sample: draw samples from a ganforge-train checkpoint")
        and "ckpt: ???" in sample_help
    )
    eval_help = run(str(BIN / "ganforge-eval"), "--help", cwd=tmp_path).stdout
    assert eval_help.startswith("ganforge-eval: FID, KID, IS and precision/recall")
    assert (
        "\ndata: celeba, cifar10, fashion_mnist," in eval_help
        and "metrics/features: auto, domain, inception" in eval_help
    )
    for text in (sample_help, eval_help):
        assert "experiment:" not in text and "\nloss:" not in text and "\nmodel:" not in text


def test_a_run_prints_no_adverts_deprecations_or_flops(tmp_path: Path) -> None:
    """A run logging to CSV, W&B and TensorBoard: no Lightning 'Tip' for litlogger, no wandb warning about an
    'anonymous' setting, a model summary without 'Total FLOPs: 0', and no hp_metric placeholder in TensorBoard."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WANDB_API_KEY")}
    env |= {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    overrides = [
        *TINY,
        "logger=many",
        "trainer.enable_model_summary=true",
        "max_gen_steps=2",
        "~callbacks.image_metrics",
    ]
    result = subprocess.run(
        [str(BIN / "ganforge-train"), *overrides, "~callbacks.best_checkpoint", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    printed = result.stdout + result.stderr
    assert "Trainable params" in printed and "Total params" in printed  # the summary is still there
    for noise in ("Tip:", "litlogger", "anonymous", "FLOPs", "Flops"):
        assert noise not in printed, noise
    (events,) = (tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*")
    scalars = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    assert "loss/d" in scalars and "hp_metric" not in scalars


def test_wrong_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    """With no source left, the error lists every source tried and how to fix it; exit code 1."""
    result = run(
        str(BIN / "ganforge-train"),
        *TINY,
        f"paths.output_dir={tmp_path / 'run'}",
        "data.data_dir=/no/such/dir",
        "data.system_dir=null",
        "data.download=false",
        cwd=tmp_path,
    )
    assert_clean_error(result, "Fashion-MNIST could not be loaded", "/no/such/dir", "download: disabled", "Fix:")
    assert result.returncode == 1


def test_truncated_checkpoint_is_a_clear_error(checkpoint: Path, tmp_path: Path) -> None:
    """Half a checkpoint: sampling and resuming both say it is truncated; the good file is untouched."""
    data = checkpoint.read_bytes()
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(data[: len(data) // 2])
    expected = ("cannot be read", "truncated or corrupt", str(broken))
    assert_clean_error(run(str(BIN / "ganforge-sample"), f"ckpt={broken}", cwd=tmp_path), *expected)
    assert_clean_error(
        run(
            str(BIN / "ganforge-train"), *TINY, f"paths.output_dir={tmp_path}/run", f"ckpt_path={broken}", cwd=tmp_path
        ),
        *expected,
    )
    assert checkpoint.read_bytes() == data


def test_a_folder_given_as_a_checkpoint_names_the_last_ckpt_in_it(checkpoint: Path, tmp_path: Path) -> None:
    """ckpt= a run folder or its checkpoints/ (every command reads checkpoints through load_checkpoint): the error
    says it is a folder and names the last.ckpt to give; a folder without one says that."""
    run_folder = checkpoint.parent.parent
    result = run(str(BIN / "ganforge-sample"), f"ckpt={run_folder}", cwd=tmp_path)
    assert_clean_error(result, f"checkpoint '{run_folder}' is a folder; give the checkpoint file in it: '{checkpoint}'")
    result = run(str(BIN / "ganforge-eval"), f"ckpt={checkpoint.parent}", cwd=tmp_path)
    assert_clean_error(result, "ganforge-eval: error:", f"is a folder; give the checkpoint file in it: '{checkpoint}'")
    with pytest.raises(CheckpointError, match=r"is a folder and holds no last\.ckpt"):
        load_checkpoint(tmp_path)


def test_divergence_stops_with_a_clear_error_and_keeps_checkpoints(tiny_cfg: Compose, tmp_path: Path) -> None:
    """An absurd learning rate makes the losses NaN: training stops naming the fix; earlier checkpoints still load."""

    cfg = tiny_cfg("optim.discriminator.lr=1e12", "optim.generator.lr=1e12", "callbacks.checkpoint.every_n_gen_steps=1")
    with pytest.raises(TrainingDivergedError, match=r"diverged.*optim\.\*\.lr"):
        train(cfg)
    first = load_checkpoint(tmp_path / "run" / "checkpoints" / "gen_step_0000001.ckpt")
    assert first["ganforge"]["generator_steps"] == 1
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
