"""Progressive GAN: fade-in, equalized learning rate, minibatch stddev, the schedule, resume mid-fade."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from PIL import Image
from torch.optim import Optimizer
from torch.utils.data import DataLoader, TensorDataset

from ganforge.config import build_module, generator_from_checkpoint, load_checkpoint
from ganforge.errors import ConfigError
from ganforge.generation import generate_batches
from ganforge.nets import ProGANDiscriminator, ProGANGenerator
from ganforge.nets.progan import MinibatchStdDev, PixelNorm, equalized
from ganforge.progressive import ProgressiveSchedule
from ganforge.train import train
from tests.conftest import Compose, assert_same_training_state

#: fmnist_progan shrunk: 16x16 (stages 4, 8, 16), 4 batches of 16 per stable phase and per fade.
PROGAN = [
    "experiment=fmnist_progan",
    "data.resolution=16",
    "model.generator.max_width=16",
    "model.discriminator.max_width=16",
    "model.generator.latent_dim=16",
    "model.schedule.stable_kimg=0.064",
    "model.schedule.fade_kimg=0.064",
]


def nets(resolution: int = 32) -> tuple[ProGANGenerator, ProGANDiscriminator]:
    torch.manual_seed(0)
    g = ProGANGenerator(latent_dim=16, resolution=resolution, width=4, max_width=16)
    d = ProGANDiscriminator(resolution=resolution, width=4, max_width=16)
    return g, d


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_generator_at_alpha_zero_is_the_previous_stage_upsampled(stage: int) -> None:
    g, _ = nets()
    z = torch.randn(8, 16)
    g.set_progress(stage - 1, 1.0)
    previous = g(z)
    g.set_progress(stage, 0.0)
    fading_in = g(z)
    assert fading_in.shape[-1] == 2 * previous.shape[-1] == 4 * 2**stage
    torch.testing.assert_close(fading_in, F.interpolate(previous, scale_factor=2.0, mode="nearest"), rtol=0, atol=1e-6)
    g.set_progress(stage, 1.0)
    assert (g(z) - fading_in).abs().max() > 1e-3  # the new block takes over as alpha grows


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_discriminator_at_alpha_zero_is_the_downsampled_path(stage: int) -> None:
    _, d = nets()
    x = torch.randn(8, 1, 4 * 2**stage, 4 * 2**stage)
    d.set_progress(stage - 1, 1.0)
    previous = d(F.avg_pool2d(x, 2))
    d.set_progress(stage, 0.0)
    torch.testing.assert_close(d(x), previous, rtol=0, atol=1e-6)
    d.set_progress(stage, 0.5)
    assert (d(x) - previous).abs().max() > 1e-4


def test_real_images_follow_the_stage_and_fade_like_the_generator() -> None:
    _, d = nets()
    real = torch.randn(4, 1, 32, 32)
    d.set_progress(3, 1.0)
    assert torch.equal(d.prepare_real(real), real)
    d.set_progress(1, 1.0)
    torch.testing.assert_close(d.prepare_real(real), F.avg_pool2d(real, 4))
    d.set_progress(2, 0.25)
    at16 = F.avg_pool2d(real, 2)
    coarse = F.interpolate(F.avg_pool2d(at16, 2), scale_factor=2.0, mode="nearest")
    torch.testing.assert_close(d.prepare_real(real), 0.75 * coarse + 0.25 * at16)


def test_equalized_learning_rate_scales_by_the_he_constant_at_run_time() -> None:
    torch.manual_seed(0)
    layer = equalized(torch.nn.Conv2d(3, 5, 3, padding=1))
    stored = layer.parametrizations.weight.original
    assert stored.std().item() == pytest.approx(1.0, abs=0.15)  # N(0, 1) storage
    he = math.sqrt(2.0) / math.sqrt(3 * 3 * 3)
    torch.testing.assert_close(layer.weight, stored * he)
    with torch.no_grad():
        stored.mul_(2.0)  # an optimizer step changes the stored weight; the scale applies on every use
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(layer(x), F.conv2d(x, stored * he, layer.bias, padding=1))
    linear = equalized(torch.nn.Linear(10, 4), gain=1.0)
    torch.testing.assert_close(linear.weight, linear.parametrizations.weight.original / math.sqrt(10))


def test_minibatch_stddev_matches_a_hand_computation() -> None:
    x = torch.arange(4 * 2 * 1 * 2, dtype=torch.float32).reshape(4, 2, 1, 2) ** 1.5
    out = MinibatchStdDev(group_size=2)(x)
    assert out.shape == (4, 3, 1, 2)
    assert torch.equal(out[:, :2], x)
    # groups of the original reshape: samples {0, 2} and {1, 3}
    for members in ([0, 2], [1, 3]):
        a, b = x[members[0]], x[members[1]]
        std = ((a - b).abs() / 2).pow(2).add(1e-8).sqrt().mean()  # population std of two values: |a - b| / 2
        for i in members:
            torch.testing.assert_close(out[i, 2], torch.full((1, 2), std.item()))
    with pytest.raises(ValueError, match="divisible by 2"):
        MinibatchStdDev(group_size=2)(x[:3])


def test_pixel_norm_gives_unit_mean_square_features() -> None:
    x = torch.randn(3, 7, 4, 4) * 5
    assert torch.allclose(PixelNorm()(x).pow(2).mean(dim=1), torch.ones(3, 4, 4), atol=1e-5)


def test_schedule_maps_images_shown_to_stage_and_alpha_at_the_boundaries() -> None:
    s = ProgressiveSchedule(32, default_batch_size=64, stable_kimg=1, fade_kimg=2, batch_size={32: 16}, lr={16: 0.5})
    at = {n: (p.stage, p.alpha, p.resolution) for n in (0, 999, 1000, 2000, 2999, 3000) for p in [s.phase(n)]}
    assert at == {
        0: (0, 1.0, 4),
        999: (0, 1.0, 4),
        1000: (1, 0.0, 8),  # the fade into 8x8 starts
        2000: (1, 0.5, 8),
        2999: (1, 0.9995, 8),
        3000: (1, 1.0, 8),  # faded in: the stable phase
    }
    assert (s.phase(3999).stage, s.phase(4000).stage, s.phase(4000).alpha) == (1, 2, 0.0)
    assert (s.phase(6999).stage, s.phase(7000).stage, s.phase(7000).alpha) == (2, 3, 0.0)
    assert s.phase(9000).alpha == 1.0 and s.phase(10**9) == s.phase(9000)  # the last stage trains on
    assert [s.phase(n).batch_size for n in (0, 4000, 7000)] == [64, 64, 16]  # a fade uses the new stage's
    assert [s.phase(n).lr for n in (0, 4000, 7000)] == [None, 0.5, None]


def test_schedule_refuses_bad_settings() -> None:
    with pytest.raises(ConfigError, match=r"data\.batch_size=128"):
        ProgressiveSchedule(32, default_batch_size=64, batch_size={8: 128})
    with pytest.raises(ConfigError, match=r"grows through \[4, 8, 16, 32\]"):
        ProgressiveSchedule(32, default_batch_size=64, lr={64: 1e-3})


def test_generated_samples_come_at_full_resolution_and_progress_travels_in_the_state_dict() -> None:
    g, _ = nets()
    g.set_progress(1, 0.5)
    native = g(torch.randn(5, 16, generator=torch.Generator().manual_seed(3)))
    (full,) = generate_batches(g, 5, seed=3)
    assert full.shape == (5, 1, 32, 32)
    torch.testing.assert_close(F.avg_pool2d(full, 4), native)
    copy, _ = nets()
    copy.load_state_dict(g.state_dict())
    assert (copy.stage, copy.alpha) == (1, 0.5)


def test_a_conditional_progan_is_refused(tiny_cfg: Compose) -> None:
    with pytest.raises(ConfigError, match="model=progan is unconditional"):
        build_module(tiny_cfg(*PROGAN, "model.conditional=true"))


def test_training_grows_logs_progress_and_saves_grids_at_both_resolutions(tiny_cfg: Compose, tmp_path: Path) -> None:
    """14 steps of 16 images: stage 0 (4 batches), the fade to 8x8 (4), stable 8x8 (4), into the fade to 16x16."""
    lr = "model.schedule.lr={8: 0.0123}"
    every = ["callbacks.samples.every_n_gen_steps=6", "callbacks.checkpoint.every_n_gen_steps=6"]
    train(tiny_cfg(*PROGAN, "max_gen_steps=14", lr, *every, "trainer.log_every_n_steps=2"))
    run = tmp_path / "run"
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    at_8px = load_checkpoint(run / "checkpoints" / "gen_step_0000006.ckpt")
    for ckpt, expected in ((at_8px, 0.0123), (checkpoint, 1e-3)):  # 8x8's own rate, then back to optim's
        assert [g["lr"] for opt in ckpt["optimizer_states"] for g in opt["param_groups"]] == [expected] * 2
    g, _ = generator_from_checkpoint(checkpoint)
    assert (g.stage, g.alpha) == (2, 0.25)  # 224 images: 32 into the 64-image fade to 16x16
    assert (
        Image.open(run / "samples" / "gen_step_0000006.png").size
        == Image.open(run / "samples" / "gen_step_0000012.png").size
    )  # full-resolution grids, comparable across stages
    assert (
        Image.open(run / "samples" / "gen_step_0000006_8px.png").size[0]
        < Image.open(run / "samples" / "gen_step_0000006.png").size[0]
    )
    protocol = json.loads((run / "metrics.json").read_text())["protocol"]
    assert protocol["resolution"] == 16 and "upsampled" not in protocol["generated"]  # the last stage is fading in
    with open(run / "csv" / "metrics.csv") as f:
        logged = [r for r in csv.DictReader(f) if r.get("progress/stage")]
    schedule = ProgressiveSchedule(16, 16, stable_kimg=0.064, fade_kimg=0.064)
    for row in logged:  # each batch's phase is the schedule's for the images shown before it
        phase = schedule.phase(round(float(row["kimg"]) * 1000) - 16)
        assert (float(row["progress/stage"]), float(row["progress/alpha"])) == (phase.stage, phase.alpha)
        assert float(row["progress/resolution"]) == phase.resolution
    assert (float(logged[-1]["progress/stage"]), float(logged[-1]["progress/alpha"])) == (2.0, 0.25)


class LearningRates(Callback):
    """Records (G or D, lr) at every optimizer step: the rate the step actually uses."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer) -> None:
        player = "G" if optimizer is trainer.optimizers[0] else "D"
        self.steps.append((player, optimizer.param_groups[0]["lr"]))


def test_stage_learning_rates_compose_with_an_lr_scheduler(tiny_cfg: Compose) -> None:
    """LinearLR 1 -> 0.5 over 20 G steps with 8x8's own rate: every step uses the stage's rate (8x8: 0.0123,
    others optim's 1e-3) times the schedule's factor after the G steps so far."""
    linear = "{_target_:torch.optim.lr_scheduler.LinearLR,_partial_:true,start_factor:1,end_factor:0.5,total_iters:20}"
    cfg = tiny_cfg(*PROGAN, f"optim.scheduler={linear}", "model.schedule.lr={8: 0.0123}")
    module = build_module(cfg)
    recorder = LearningRates()
    trainer = Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[recorder],
    )  # fmt: skip
    images = torch.rand(14 * 16, 1, 16, 16) * 2 - 1
    trainer.fit(module, DataLoader(TensorDataset(images, torch.zeros(len(images), dtype=torch.long)), batch_size=16))
    schedule = ProgressiveSchedule(16, 16, stable_kimg=0.064, fade_kimg=0.064, lr={8: 0.0123})
    expected = []
    for batch in range(14):  # one D step, then one G step (n_critic=1)
        rate = (schedule.phase(16 * batch).lr or 1e-3) * (1 - 0.5 * batch / 20)
        expected += [("D", pytest.approx(rate)), ("G", pytest.approx(rate))]
    assert recorder.steps == expected
    assert recorder.steps[8][1] == pytest.approx(0.0123 * 0.9)  # the fade to 8x8 starts 4 G steps in


def test_resume_mid_fade_equals_an_uninterrupted_run(tiny_cfg: Compose, tmp_path: Path) -> None:
    """Stop at step 14 (inside the fade to 16x16), resume to 24; equal to 24 steps straight."""
    every = "callbacks.checkpoint.every_n_gen_steps=14"
    train(tiny_cfg(*PROGAN, "max_gen_steps=18", every, out="first"))
    ckpt = tmp_path / "first" / "checkpoints" / "gen_step_0000014.ckpt"
    train(tiny_cfg(*PROGAN, "max_gen_steps=24", f"ckpt_path={ckpt}", out="resumed"))
    train(tiny_cfg(*PROGAN, "max_gen_steps=24", out="straight"))
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert straight["state_dict"]["generator._extra_state"] == {"stage": 2, "alpha": 1.0}
    assert_same_training_state(load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt"), straight)


def test_metrics_of_a_partly_grown_generator_are_taken_at_full_resolution(tiny_cfg: Compose, tmp_path: Path) -> None:
    train(tiny_cfg(*PROGAN, "max_gen_steps=6"))  # ends fading in 8x8 of 16x16
    protocol = json.loads((tmp_path / "run" / "metrics.json").read_text())["protocol"]
    assert protocol["resolution"] == 16
    assert protocol["generated"].endswith("8x8 stage output upsampled to 16x16")
