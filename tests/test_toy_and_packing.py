"""PacGAN packing, the 2-D mixtures end to end, and sampling 2-D checkpoints."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ganforge.augment import Augmentation
from ganforge.config import build_module, generator_from_checkpoint, load_checkpoint
from ganforge.data.toy import mixture_centres
from ganforge.generation import generate_batches
from ganforge.metrics import mode_coverage
from ganforge.module import GANModule
from ganforge.nets import MLPGenerator
from ganforge.objectives import NonSaturating
from ganforge.penalties import R1, R2, GradientPenalty, Penalty
from ganforge.sample import sample
from ganforge.train import train
from tests.conftest import TINY, compose_config


class Recorder(nn.Module):
    """A 'discriminator' that remembers its input and returns its first feature of each packed sample."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.seen = x
        return x.flatten(1)[:, 0]


def packed_module(pack: int) -> GANModule:
    g = nn.Linear(2, 2)
    g.latent_dim = 2
    optim = torch.optim.SGD
    return GANModule(g, Recorder(), NonSaturating(), optim, optim, ema_decay=None, pack=pack)  # type: ignore[arg-type]


def test_packing_concatenates_consecutive_samples_along_features() -> None:
    """pack=2 turns 6 images (6, 3, H, W) into 3 stacks (3, 6, H, W): samples 2k and 2k+1 side by side."""
    module = packed_module(2)
    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 2, 2)
    logits = module.critic(x)
    assert module.discriminator.seen.shape == (3, 6, 2, 2)
    assert module.discriminator.seen[1, :, 0, 0].tolist() == [2, 2, 2, 3, 3, 3]
    assert logits.tolist() == [0.0, 2.0, 4.0]
    points = torch.arange(8, dtype=torch.float32).view(4, 2)
    module = packed_module(4)
    module.critic(points)
    assert module.discriminator.seen.tolist() == [[0, 1, 2, 3, 4, 5, 6, 7]]


def test_packing_needs_a_divisible_batch() -> None:
    """A batch that is not a multiple of the pack size is refused with the config key to change."""
    with pytest.raises(ValueError, match=r"model.pack=4"):
        packed_module(4).critic(torch.zeros(6, 2))


class PackedLinear(nn.Module):
    """D(pack) = w . pack, with w = (3, 0, 0, 4) over a pack of two 2-D points: its gradient is w for every pack."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([3.0, 0.0, 0.0, 4.0]))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return x.flatten(1) @ self.w


@pytest.mark.parametrize(
    ("penalty", "expected"),
    [(GradientPenalty(), (5.0 - 1.0) ** 2), (R1(weight=1.0), 0.5 * 5.0**2), (R2(weight=1.0), 0.5 * 5.0**2)],
)
def test_penalties_of_a_packed_discriminator_take_gradients_per_pack(penalty: Penalty, expected: float) -> None:
    """With pack=2 a penalty's sample is a pack: ||grad D|| = ||w|| = 5, not the samples' own 3 and 4
    (per sample, GP would be ((3 - 1)^2 + (4 - 1)^2) / 2 = 6.5 and R1 (9 + 16) / 4 = 6.25)."""
    assert packed_linear_penalty(penalty) == pytest.approx(expected)


def packed_linear_penalty(penalty: Penalty, augment: Augmentation | None = None) -> float:
    """The value ``penalty`` logs over one epoch of 2-D points, D being :class:`PackedLinear` (kept frozen) at
    pack=2, with ``augment`` before D."""
    frozen_d = partial(torch.optim.SGD, lr=0.0)  # D keeps w through the run
    g = MLPGenerator(latent_dim=2, width=8, depth=1, channels=2)
    module = GANModule(
        g, PackedLinear(), NonSaturating(), frozen_d, frozen_d, ema_decay=None, pack=2, penalties={"p": penalty},
        augment=augment,
    )  # fmt: skip
    points = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    trainer = Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, log_every_n_steps=1,
    )  # fmt: skip
    trainer.fit(module, DataLoader(TensorDataset(points, torch.zeros(8, dtype=torch.long)), batch_size=4))
    return trainer.callback_metrics["penalty/p"].item()


@pytest.mark.parametrize(("model", "data", "channels"), [("dcgan", "fashion_mnist", 3), ("mlp", "ring", 6)])
def test_pack_option_widens_the_discriminator_input(model: str, data: str, channels: int, tmp_path: Path) -> None:
    """model.pack=3 multiplies D's input channels (features) by 3 for any net."""
    cfg = compose_config("train", [f"model={model}", f"data={data}", "model.pack=3", f"paths.output_dir={tmp_path}"])
    assert cfg.model.discriminator.channels == channels
    module = build_module(cfg)
    shape = (6, 1, 28, 28) if model == "dcgan" else (6, 2)
    assert module.critic(torch.randn(shape)).shape == (2,)


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ring")
    overrides = ["experiment=ring", "max_gen_steps=40", "callbacks.mode_coverage.every_n_gen_steps=20"]
    overrides += ["model.generator.width=32", "model.discriminator.width=32", "model.pack=2", "data.batch_size=64"]
    train(compose_config("train", [*TINY[3:], *overrides, f"paths.output_dir={out}"]))
    return out


def test_ring_run_logs_mode_coverage_and_scatter_plots(ring_run: Path) -> None:
    """A short packed run on the ring evaluates at steps 20 and 40, logs the metrics and writes scatter plots."""
    final = json.loads((ring_run / "mode_coverage.json").read_text())
    assert final["gen_step"] == 40
    generator, cfg = generator_from_checkpoint(load_checkpoint(ring_run / "checkpoints" / "last.ckpt"))
    samples = torch.cat(list(generate_batches(generator, 2500, seed=0, batch_size=2500)))  # as the callback draws them
    expected = mode_coverage(samples, mixture_centres("ring"), cfg.data.std)
    assert {key: final[key] for key in expected} == pytest.approx(expected)  # scored on the final EMA generator
    assert sorted(p.name for p in (ring_run / "scatter").iterdir()) == ["gen_step_0000020.png", "gen_step_0000040.png"]
    header, *rows = (ring_run / "csv" / "metrics.csv").read_text().splitlines()
    column = header.split(",").index("mode/modes")
    logged = [float(r.split(",")[column]) for r in rows if r.split(",")[column]]
    assert len(logged) == 2 and logged[-1] == final["modes"]


def test_sampling_a_2d_checkpoint_writes_float_points(ring_run: Path, tmp_path: Path) -> None:
    """ganforge-sample on a 2-D model: arr_0 is float32 (N, 2) and grid= writes a scatter plot."""
    out = sample(
        compose_config(
            "sample",
            [
                f"ckpt={ring_run / 'checkpoints' / 'last.ckpt'}",
                "n=300",
                f"out={tmp_path / 'p.npz'}",
                f"grid={tmp_path / 's.png'}",
            ],
        )
    )
    points = np.load(out)["arr_0"]
    assert points.shape == (300, 2) and points.dtype == np.float32
    assert np.isfinite(points).all() and points.std() > 0
    assert (tmp_path / "s.png").stat().st_size > 1000
