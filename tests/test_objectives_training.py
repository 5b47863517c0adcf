"""Objectives and penalties from the command line: composition, and short real training runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ganforge.config import build_module, load_checkpoint
from ganforge.objectives import LeastSquares, MaximumLikelihood, Wasserstein
from ganforge.penalties import R1, Drift, GradientPenalty
from ganforge.train import train
from tests.conftest import TINY, compose_config

LOSSES = ["minimax", "nonsaturating", "hinge", "lsgan", "wgan", "wgan_gp", "maximum_likelihood"]
PENALTIES = ["gp", "gp_one_sided", "r1", "r2", "dragan", "drift"]


def test_penalties_compose_from_the_command_line(tmp_path: Path) -> None:
    """``loss=hinge +loss/penalties=[r1,drift]`` adds both terms; their weights can be overridden."""
    cfg = compose_config(
        "train",
        ["loss=hinge", "+loss/penalties=[r1,drift]", "loss.penalties.r1.weight=0.5", f"paths.output_dir={tmp_path}"],
    )
    module = build_module(cfg)
    assert set(module.penalties) == {"r1", "drift"}
    assert isinstance(module.penalties["r1"], R1) and module.penalties["r1"].weight == 0.5
    assert module.penalties["r1"].every == 16
    assert isinstance(module.penalties["drift"], Drift)


def test_objective_defaults_and_overrides(tmp_path: Path) -> None:
    """loss=wgan brings RMSprop and n_critic 5; the command line still wins; wgan_gp brings the GP;
    maximum_likelihood keeps the default optimizer, n_critic 1 and no penalty."""
    wgan = compose_config("train", ["loss=wgan", f"paths.output_dir={tmp_path}"])
    assert wgan.n_critic == 5 and wgan.optim.generator._target_ == "torch.optim.RMSprop"
    module = build_module(wgan)
    assert isinstance(module.objective, Wasserstein) and module.objective.clip == 0.01
    custom = compose_config("train", ["loss=wgan", "n_critic=2", "optim=adam", f"paths.output_dir={tmp_path}"])
    assert custom.n_critic == 2 and custom.optim.generator._target_ == "torch.optim.Adam"
    gp = build_module(compose_config("train", ["loss=wgan_gp", f"paths.output_dir={tmp_path}"]))
    assert isinstance(gp.penalties["gp"], GradientPenalty) and gp.objective.clip is None
    lsgan = build_module(compose_config("train", ["loss=lsgan", "loss.objective.a=-1", f"paths.output_dir={tmp_path}"]))
    assert isinstance(lsgan.objective, LeastSquares) and lsgan.objective.a == -1
    ml = compose_config("train", ["loss=maximum_likelihood", f"paths.output_dir={tmp_path}"])
    assert ml.n_critic == 1 and ml.optim.generator._target_ == "torch.optim.Adam"
    ml_module = build_module(ml)
    assert isinstance(ml_module.objective, MaximumLikelihood) and not ml_module.penalties


@pytest.mark.parametrize("loss", LOSSES)
def test_every_objective_trains_the_default_dcgan_without_nans(loss: str, tmp_path: Path) -> None:
    """The default Fashion-MNIST DCGAN (full width) trains 12 generator steps with each objective; all finite."""
    overrides = [f"loss={loss}", "max_gen_steps=12", "data.batch_size=32", "trainer.log_every_n_steps=1"]
    metrics = train(compose_config("train", [*TINY[2:], f"paths.output_dir={tmp_path}", *overrides]))
    assert metrics["gen_step"] == 12
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    state = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


@pytest.mark.parametrize("penalty", PENALTIES)
def test_every_penalty_trains_with_any_objective(penalty: str, tmp_path: Path) -> None:
    """Each penalty (every=1 so that it runs each step) joins the hinge loss: D's loss is the adversarial
    term plus weight x penalty, all finite."""
    overrides = ["loss=hinge", f"+loss/penalties=[{penalty}]", f"loss.penalties.{penalty}.every=1"]
    overrides += ["max_gen_steps=6", "trainer.log_every_n_steps=1", f"paths.output_dir={tmp_path}"]
    cfg = compose_config("train", [*TINY, *overrides])
    metrics = train(cfg)
    value = metrics[f"penalty/{penalty}"]
    assert torch.isfinite(torch.tensor(value))
    weight = cfg.loss.penalties[penalty].weight
    assert metrics["loss/d"] == pytest.approx(metrics["loss/d_adversarial"] + weight * value, rel=1e-5, abs=1e-6)


def test_lr_schedule_steps_once_per_generator_step(tmp_path: Path) -> None:
    """LinearLR 1 -> 0.5 over 20 steps, after 10 generator steps (n_critic=2): both lrs at 0.75x."""
    schedule = (
        "{_target_:torch.optim.lr_scheduler.LinearLR,_partial_:true,start_factor:1.0,end_factor:0.5,total_iters:20}"
    )
    train(
        compose_config(
            "train",
            [*TINY, "n_critic=2", "max_gen_steps=10", f"optim.scheduler={schedule}", f"paths.output_dir={tmp_path}"],
        )
    )
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    for state in checkpoint["optimizer_states"]:
        assert state["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.75)
    assert [s["last_epoch"] for s in checkpoint["lr_schedulers"]] == [10, 10]
