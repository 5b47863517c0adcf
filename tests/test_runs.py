"""Where runs are filed, and how a stopped or killed run continues in place, exactly."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from benchmarks.fault_injection import KINDS, metrics_rows, run_campaign, same_state
from ganforge.config import CONFIG_MODULE, load_checkpoint
from ganforge.preemption import Preemption
from ganforge.runs import changed_settings, run_dir, truncate_metrics, wandb_run_id
from tests.conftest import TINY, compose_config
from tests.wandb_log import run_record

BIN = Path(sys.executable).parent
#: TINY without metrics or sample grids, checkpoints every 20 generator steps, logged every 5 batches.
QUICK = [
    *[o for o in TINY if o != "logger=csv"],
    "~callbacks.image_metrics",
    "~callbacks.best_checkpoint",
    "~callbacks.samples",
    "callbacks.checkpoint.every_n_gen_steps=20",
    "trainer.log_every_n_steps=5",
    "logger=wandb",
]


#: TINY without evaluations or grids: the quickest run that writes a checkpoint.
BARE = [*TINY, "~callbacks.image_metrics", "~callbacks.best_checkpoint", "~callbacks.samples", "max_gen_steps=2"]


def ganforge_train(*overrides: str, cwd: Path, base: list[str] = QUICK) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WANDB_API_KEY")}
    env |= {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    command = [str(BIN / "ganforge-train"), *base, *overrides]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=600)
    return process.returncode, stderr


@pytest.mark.parametrize(
    ("overrides", "task"),
    [
        ([], "fashion_mnist_dcgan"),  # make train: the default experiment
        (["data=cifar10", "model=sagan"], "cifar10_sagan"),  # filed under fmnist_dcgan before
        (["experiment=cifar10_sagan_cond"], "cifar10_sagan_cond"),
        (["experiment=fmnist_progan", "data=mnist_5k"], "mnist_5k_progan"),
        (["model.conditional=true"], "fashion_mnist_dcgan_cond"),
        (["task_name=my_study"], "my_study"),
        (["experiment=fmnist_vaegan"], "fashion_mnist_dcgan_vaegan"),  # a game files runs apart
        (["experiment=fmnist_vae"], "fashion_mnist_dcgan_vae"),  # and so does its baseline
        (["experiment=mnist_infogan"], "mnist_5k_infogan"),  # a model named after its game: once
    ],
)
def test_task_name_follows_what_is_trained(overrides: list[str], task: str) -> None:
    cfg = compose_config("train", overrides)
    assert cfg.task_name == task
    assert cfg.logger.wandb.name == task


def test_sweep_folder_and_study_name_resolve_before_a_job_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweeper resolves hydra.sweep.dir and the Optuna study name before Hydra's job config is set."""
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose("train", ["hparams_search=optuna", "data=mnist_5k"], return_hydra_config=True)
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)
    assert not HydraConfig.initialized()
    assert "/mnist_5k_dcgan/multiruns/" in cfg.hydra.sweep.dir
    assert cfg.hydra.sweeper.study_name == "mnist_5k_dcgan"


def test_runs_are_filed_under_the_chosen_data_and_model(tmp_path: Path) -> None:
    """ganforge-train data=mnist_5k model=sagan: outputs/mnist_5k_sagan/runs/<time>, W&B run mnist_5k_sagan."""
    code, stderr = finish(ganforge_train("data=mnist_5k", "model=sagan", "max_gen_steps=2", cwd=tmp_path))
    assert code == 0, stderr[-2000:]
    (run,) = (tmp_path / "outputs").glob("*/runs/*")
    assert run.parent.parent.name == "mnist_5k_sagan"
    (record,) = run.glob("wandb/offline-run-*/run-*.wandb")
    assert run_record(record).display_name == "mnist_5k_sagan"


def test_sigterm_saves_a_checkpoint_and_ckpt_path_last_continues_it_exactly(tmp_path: Path) -> None:
    """SIGTERM mid-run: exit 143 with a message and a checkpoint; ``ckpt_path=last`` continues in the same
    folder, CSV and W&B run id, and ends bitwise equal (weights, optimizers, CSV rows) to a run never stopped."""
    steps = "max_gen_steps=100"
    process = ganforge_train(steps, "n_critic=2", cwd=tmp_path)  # a stop between D steps of one G step, too
    while not list((tmp_path / "outputs").glob("*/runs/*/checkpoints/gen_step_0000020.ckpt")):
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    code, stderr = finish(process)
    assert code == 128 + signal.SIGTERM, stderr[-2000:]
    assert "ganforge-train: stopped by SIGTERM at generator step" in stderr and "ckpt_path=last" in stderr
    assert "Traceback" not in stderr
    (run,) = (tmp_path / "outputs" / "fashion_mnist_dcgan" / "runs").iterdir()
    stopped = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert 20 <= stopped["ganforge"]["generator_steps"] < 100

    changed = ["loss=hinge", "augment=diffaugment"]  # an objective, and a group the run did not have
    code, stderr = finish(ganforge_train(steps, "n_critic=2", *changed, "ckpt_path=last", cwd=tmp_path))
    assert code == 1 and "was trained with other settings" in stderr, stderr[-2000:]
    assert "add ~augment loss=nonsaturating (or start a new run" in stderr

    code, stderr = finish(ganforge_train(steps, "n_critic=2", "ckpt_path=last", cwd=tmp_path))
    assert code == 0, stderr[-2000:]
    assert [p.name for p in (tmp_path / "outputs" / "fashion_mnist_dcgan" / "runs").iterdir()] == [run.name]
    assert (run / ".hydra" / "overrides.yaml").is_file() and list((run / ".hydra").glob("continued_*"))

    reference = tmp_path / "reference"
    code, stderr = finish(ganforge_train(steps, "n_critic=2", f"hydra.run.dir={reference}", cwd=tmp_path))
    assert code == 0, stderr[-2000:]
    assert same_state(run / "checkpoints" / "last.ckpt", reference / "checkpoints" / "last.ckpt")
    assert metrics_rows(run) == metrics_rows(reference)
    ids = {path.name.rsplit("-", 1)[-1] for path in (run / "wandb").glob("offline-run-*")}
    assert len(list((run / "wandb").glob("offline-run-*"))) == 2 and ids == {wandb_run_id(str(run))}


def test_ckpt_path_last_without_a_run_is_a_clear_error(tmp_path: Path) -> None:
    code, stderr = finish(ganforge_train("ckpt_path=last", "max_gen_steps=2", cwd=tmp_path))
    assert code == 1 and "ckpt_path=last: no run of task 'fashion_mnist_dcgan'" in stderr and "Traceback" not in stderr


def files_of(folder: Path) -> dict[str, tuple[int, int] | None]:
    """Every file under ``folder`` with its size and modification time, and every folder in it."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None
        for path in folder.rglob("*")
    }


def test_a_start_refused_before_training_writes_into_no_run_folder(tmp_path: Path) -> None:
    """A refused ckpt_path=last leaves the run it names as it was (no error.txt, no .hydra/continued_<time>/, so
    ganforge-report does not list it as failed); a missing checkpoint and a crash while building the nets leave no
    run folder of their own (nor the empty outputs/<task>/runs above it). A failure in training still writes
    error.txt."""
    code, stderr = finish(ganforge_train("task_name=study", "ckpt_path=/nope.ckpt", cwd=tmp_path, base=BARE))
    assert code == 1 and not (tmp_path / "outputs").exists(), stderr[-2000:]
    code, stderr = finish(ganforge_train("task_name=study", "data=mnist_5k", cwd=tmp_path, base=BARE))
    assert code == 0, stderr[-2000:]
    runs = tmp_path / "outputs" / "study" / "runs"
    (run,) = runs.iterdir()
    before = files_of(run)

    code, stderr = finish(ganforge_train("task_name=study", "ckpt_path=last", cwd=tmp_path, base=BARE))
    assert code == 1 and "was trained with other settings" in stderr, stderr[-2000:]
    code, stderr = finish(ganforge_train("task_name=study", "ckpt_path=/nope.ckpt", cwd=tmp_path, base=BARE))
    assert code == 1 and "checkpoint '/nope.ckpt' does not exist" in stderr, stderr[-2000:]
    code, stderr = finish(ganforge_train("task_name=study", "model.generator.latent_dim=-5", cwd=tmp_path, base=BARE))
    assert code == 1 and "negative dimension" in stderr, stderr[-2000:]  # a crash, with its traceback
    assert files_of(run) == before and list(runs.iterdir()) == [run]

    code, stderr = finish(
        ganforge_train(
            "task_name=study",
            "optim.generator.lr=1e12",
            "optim.discriminator.lr=1e12",
            "max_gen_steps=50",
            cwd=tmp_path,
            base=BARE,
        )
    )
    assert code == 1 and "diverged" in stderr, stderr[-2000:]
    (failed,) = (path for path in runs.iterdir() if path != run)
    assert (failed / "error.txt").read_text().startswith("TrainingDivergedError: ")


def test_a_continuation_with_another_data_option_names_the_option_to_type(tmp_path: Path) -> None:
    """Trained with data=mnist_5k, continued without it: the refusal names data=mnist_5k (not data._target_=...,
    which keeps Fashion-MNIST's other settings), and the continuation that adds it trains on."""
    code, stderr = finish(ganforge_train("task_name=study", "data=mnist_5k", cwd=tmp_path, base=BARE))
    assert code == 0, stderr[-2000:]
    code, stderr = finish(ganforge_train("task_name=study", "ckpt_path=last", cwd=tmp_path, base=BARE))
    assert code == 1, stderr[-2000:]
    assert "continue it with the same ones: add data=mnist_5k metrics.features.domain=mnist (or" in stderr
    code, stderr = finish(
        ganforge_train("task_name=study", "data=mnist_5k", "ckpt_path=last", "max_gen_steps=4", cwd=tmp_path, base=BARE)
    )
    assert code == 0, stderr[-2000:]
    (run,) = (tmp_path / "outputs" / "study" / "runs").iterdir()
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["ganforge"]["generator_steps"] == 4


def with_choices(*overrides: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A tiny run's resolved config (:func:`continued`) and its config-group choices, as Hydra records them."""
    config = continued(*overrides)
    return config, cast(dict[str, Any], OmegaConf.to_container(HydraConfig.get().runtime.choices))


@pytest.mark.parametrize(
    ("first", "then", "fixes"),
    [
        (["data=mnist_5k", "loss=hinge"], [], ["data=mnist_5k", "loss=hinge", "metrics.features.domain=mnist"]),
        (["augment=ada"], ["augment=diffaugment"], ["augment=ada"]),
        (["augment=ada"], [], ["augment=ada"]),  # was ++augment._target_=..., without ADA's other settings
        ([], ["augment=ada"], ["~augment"]),
        (["trainer=ddp_cpu"], [], ["trainer.devices=2"]),  # the same class: the setting that differs
        (["data=paired_lowres2"], ["data=paired_lowres4"], ["data.scale=2", "data.source_resolution=14"]),
    ],
)
def test_a_class_from_another_group_option_is_named_by_that_option(
    first: list[str], then: list[str], fixes: list[str]
) -> None:
    """Where a group's option brings another class (a _target_), the fix is the option (data=mnist_5k); where the
    options build the same class, the settings that differ."""
    saved, saved_choices = with_choices(*first)
    current, current_choices = with_choices(*then)
    assert changed_settings(saved, current, saved_choices, current_choices) == fixes


def test_run_dir_continues_the_newest_run_that_has_a_checkpoint(tmp_path: Path) -> None:
    for name, has_checkpoint in [("2026-01-01_00-00-00", True), ("2026-01-02_00-00-00", True), ("2026-01-03", False)]:
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        if has_checkpoint:
            (tmp_path / name / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert run_dir(str(tmp_path), "now", "last") == str(tmp_path / "2026-01-02_00-00-00")
    assert run_dir(str(tmp_path), "now", None) == f"{tmp_path}/now"
    assert run_dir(str(tmp_path), "now", "some/file.ckpt") == f"{tmp_path}/now"  # a given file: a new run


def test_truncate_metrics_keeps_rows_up_to_the_checkpoint_and_drops_a_cut_row(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("loss,step\n0.5,4\n0.4,9\n0.3,14\n0.2,19\n0.1")  # the last row was cut by a kill
    truncate_metrics(metrics, 9)
    with metrics.open(newline="") as file:
        assert list(csv.DictReader(file)) == [{"loss": "0.5", "step": "4"}, {"loss": "0.4", "step": "9"}]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_changed_settings_names_what_a_continued_run_must_keep() -> None:
    saved = {"seed": 1, "model": {"width": 8, "norm": None}, "data": {"data_dir": "a", "batch_size": 16}}
    assert changed_settings(saved, saved) == []
    now = {"seed": 2, "model": {"width": 8, "norm": "layer", "new": 1}, "data": {"data_dir": "b", "batch_size": 16}}
    assert changed_settings(saved, now) == ["~model.new", "model.norm=null", "seed=1"]  # data_dir may move
    now = {"seed": 1, "model": {"width": 8, "norm": None, "new": None, "off": False}, "data": {"batch_size": 16}}
    assert changed_settings(saved, now) == []  # a new setting that is off keeps the run's behaviour


def test_a_run_saved_before_density_and_coverage_continues() -> None:
    """Its config lacks metrics.scorer.dc_neighbourhood; the continuation adds the two columns from then on."""
    now = continued()
    saved = continued()
    del saved["metrics"]["scorer"]["dc_neighbourhood"]
    assert changed_settings(saved, now) == []


def continued(*overrides: str) -> dict[str, Any]:
    """The resolved config of a tiny run, as saved in its checkpoints and as a continuation composes it."""
    return OmegaConf.to_container(compose_config("train", [*TINY, "paths.output_dir=run", *overrides]), resolve=True)


@pytest.mark.parametrize(
    ("first", "then", "fixes"),
    [
        ([], ["augment=diffaugment"], ["~augment"]),  # a group the run did not have
        (["augment=diffaugment"], ["augment.policy=color"], ["augment.policy=color,translation,cutout"]),
        (["experiment=fmnist_pix2pix"], ["game.l1_weight=50"], ["game.l1_weight=100.0"]),
        ([], ["+loss/g_regularizers=[path_length]"], ["~loss.g_regularizers.path_length"]),
        (["loss=wgan_gp"], ["loss.penalties.gp.weight=1"], ["loss.penalties.gp.weight=10.0"]),
        ([], ["trainer.precision=bf16-mixed"], ["trainer.precision=32-true"]),
        ([], ["trainer=ddp_cpu"], ["trainer.devices=1"]),  # two ranks: twice the global batch
        ([], ["metrics.n_samples=50"], ["metrics.n_samples=100"]),  # FIDs of one run compare at one count
        ([], ["data.subset=100"], ["data.subset=null"]),
        ([], ["ema_decay=0.99", "n_critic=2"], ["ema_decay=0.999", "n_critic=1"]),
        # what may change: length, budget, logging, callbacks, schedules, hardware, where data and outputs are
        (
            [],
            [
                "max_gen_steps=10",
                "logger=wandb",
                "~callbacks.samples",
                "metrics.every_n_gen_steps=7",
                "metrics.batch_size=20",
                "trainer=gpu",  # the same single device
                "trainer.log_every_n_steps=1",
                "data.data_dir=/elsewhere",
                "data.num_workers=2",
                "paths.log_dir=/elsewhere",
                "optimized_metric=metrics/kid",
            ],
            [],
        ),
        (["trainer=ddp_cpu"], ["trainer=ddp_spawn_cpu"], []),  # trainer.num_nodes: the same value, 1
        (["experiment=fmnist_pix2pix"], ["data.base.data_dir=/elsewhere", "data.cache_dir=/elsewhere"], []),
    ],
)
def test_a_continuation_refuses_every_setting_that_changes_training(
    first: list[str], then: list[str], fixes: list[str]
) -> None:
    """``ckpt_path=last`` with a setting changed (composed as the CLI composes it): the fixes name the run's own
    values; settings that leave the training and its evaluations unchanged pass."""
    assert changed_settings(continued(*first), continued(*first, *then)) == fixes
    assert changed_settings(continued(*first), continued(*first)) == []


def test_a_setting_one_config_lacks_takes_its_default() -> None:
    """A run saved before an option was in its config trained with the option's default (the parameter's, through
    base classes); another value is refused with that default; a block only one side has is named whole."""
    saved = continued()
    del saved["data"]["subset_seed"], saved["trainer"]["use_distributed_sampler"]
    assert changed_settings(saved, continued("data.subset_seed=0", "trainer.use_distributed_sampler=true")) == []
    assert changed_settings(saved, continued("data.subset_seed=3")) == [
        "data.subset_seed=0",
        "trainer.use_distributed_sampler=true",  # Lightning's default; the config says false
    ]
    assert changed_settings(continued("trainer=ddp_cpu"), continued("trainer=ddp_cpu", "~trainer.num_nodes")) == []
    assert changed_settings(continued("augment=ada"), continued())[0] == "++augment._target_=ganforge.augment.ada.ADA"
    folder = ["data=image_folder", "data.data_dir=/pictures"]
    saved = continued(*folder)
    del saved["data"]["test_fraction"], saved["data"]["split_seed"]  # an image-folder run from before the hold-out
    assert changed_settings(saved, continued(*folder)) == ["data.test_fraction=0.0"]  # it trained on every image


def test_requeue_signal_stops_like_sigterm_then_requeues_through_the_previous_handler() -> None:
    received: list[int] = []
    previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    previous_usr2 = signal.signal(signal.SIGUSR2, lambda signum, frame: received.append(-signum))  # "submitit"
    try:
        with Preemption() as preemption:
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.1)  # let the forwarded SIGTERM arrive
            assert received == [signal.SIGTERM] and preemption.stop_signal == "SIGUSR2"
            assert preemption.requeue(global_rank=1) is None  # only rank 0 requeues
            assert preemption.requeue(global_rank=0) == "requeued by the job's launcher"
            assert received == [signal.SIGTERM, -signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGUSR2, previous_usr2)


def test_requeue_under_slurm_calls_scontrol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "called"}\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        with Preemption() as preemption:
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.1)
            assert preemption.requeue(global_rank=0) == "SLURM job 1234 requeued"
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (tmp_path / "called").read_text().split() == ["requeue", "1234"]


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning.fabric.plugins.io import torch_io

    from ganforge.callbacks import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(1)}, path)

    def dies_half_way(checkpoint: dict, filepath: str) -> None:
        Path(filepath).write_bytes(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch_io, "_atomic_save", dies_half_way)
    with pytest.raises(OSError, match="No space"):
        AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(2)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert (tmp_path / "last.ckpt.partial").is_file()  # removed by the next run's GenStepCheckpoint.setup


@pytest.mark.slow
def test_fault_injection_kills_at_random_moments_and_every_continuation_is_exact(tmp_path: Path) -> None:
    """SIGTERM, SIGKILL and SIGKILL during a checkpoint write at random moments (benchmarks/fault_injection.py):
    after each, every checkpoint on disk loads; the run continued after all of them is bitwise the reference."""
    campaign = run_campaign(tmp_path, faults=6, seed=0, gen_steps=120, every=10)
    assert sum(campaign.faults.values()) == 6 and set(campaign.faults) == set(KINDS), campaign.faults
    assert campaign.weights_exact and campaign.metrics_difference is None and campaign.continued >= 6
