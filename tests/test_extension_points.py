"""The loop's extension points: what D sees goes through ``augment``, G's loss gains ``g_regularizers``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim import SGD

from ganforge.augment import Augmentation
from ganforge.config import load_checkpoint
from ganforge.data.datamodules import TensorImages
from ganforge.data.toy import GaussianMixtureDataModule
from ganforge.errors import ConfigError
from ganforge.module import GANModule
from ganforge.nets import DCGANDiscriminator, DCGANGenerator
from ganforge.objectives import NonSaturating
from ganforge.regularizers import GeneratorRegularizer, PathLength
from ganforge.sample import sample, truncate
from ganforge.train import train
from tests.conftest import Compose, assert_same_training_state, compose_config
from tests.test_module import BATCH, LATENT, RES, fit


class Recording(Augmentation):
    """Flips images (so the effect is visible), records batch sizes, counts observations in a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []
        self.register_buffer("observed", torch.zeros((), dtype=torch.int64))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append(images.shape[0])
        return images.flip(-1)

    def observe(self, real_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        self.observed += 1
        return {"augment/observed": self.observed.float()}


class Constant(GeneratorRegularizer):
    """``value`` = mean of G's output on fresh latents; records the steps it ran on."""

    def __init__(self, weight: float, every: int) -> None:
        super().__init__(weight, every)
        self.calls: list[int] = []

    def value(self, generator: nn.Module, batch_size: int, y: torch.Tensor | None) -> torch.Tensor:
        self.calls.append(batch_size)
        return generator(torch.randn(batch_size, generator.latent_dim)).mean() * 0 + 3.0


def module(**parts: object) -> GANModule:
    torch.manual_seed(0)
    return GANModule(
        generator=DCGANGenerator(latent_dim=LATENT, channels=1, resolution=RES, width=8),
        discriminator=DCGANDiscriminator(channels=1, resolution=RES, width=8),
        objective=NonSaturating(),
        g_optimizer=lambda params: SGD(params, lr=0.01),
        d_optimizer=lambda params: SGD(params, lr=0.01),
        **parts,  # type: ignore[arg-type]
    )


def test_every_batch_d_sees_is_augmented_and_real_logits_are_observed() -> None:
    augment = Recording()
    gan = module(augment=augment, n_critic=2)
    fit(gan, n_batches=4)
    # Each D step: real and fake; each G step (every 2nd batch): the fake again.
    assert augment.seen == [BATCH, BATCH, BATCH, BATCH, BATCH] * 2
    assert int(augment.observed) == 4
    assert gan.state_dict()["augment.observed"] == 4  # its state is checkpointed with the module


def test_without_augment_d_sees_the_batches_as_they_are() -> None:
    plain, flipped = module(), module(augment=Recording())
    x = torch.rand(BATCH, 1, RES, RES)
    assert type(plain.augment) is Augmentation and torch.equal(plain.augment(x), x)
    assert not torch.equal(flipped.augment(x), x)


def test_generator_regularizer_is_added_lazily_with_weight_times_every() -> None:
    regularizer = Constant(weight=0.5, every=2)
    gan = module(g_regularizers={"constant": regularizer})
    logged: list[dict[str, float]] = []
    gan.log_dict = lambda values, **kwargs: logged.append({k: float(v) for k, v in values.items()})  # type: ignore
    gan._logs_this_batch = lambda g_step_follows: True  # type: ignore[method-assign]
    fit(gan, n_batches=4)
    assert regularizer.calls == [BATCH, BATCH]  # generator steps 0 and 2 of 0..3
    for row in logged:
        adversarial = row["loss/g_adversarial"]
        due = "regularizer/constant" in row
        assert row["loss/g"] == pytest.approx(adversarial + (0.5 * 2 * 3.0 if due else 0.0))
    assert sum("regularizer/constant" in row for row in logged) == 2


class Toy(nn.Module):
    """A style-based toy: mapping z -> (B, 2, 3) ws, synthesis ws -> (B, 1, 2, 2) images, non-linear."""

    latent_dim = 3

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.map = nn.Linear(3, 6)
        self.out = nn.Linear(6, 4)

    def mapping(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.map(z).view(-1, 2, 3)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.out(ws.flatten(1))).view(-1, 1, 2, 2) ** 2


def test_path_length_against_finite_differences() -> None:
    """|J_w^T u| with u ~ N(0, 1) / sqrt(HW), averaged over the w copies; (|.| - a)^2 with a the running mean."""
    g = Toy().double()
    regularizer = PathLength(decay=0.5, batch_shrink=2).double()
    torch.manual_seed(1)
    value = regularizer.value(g, batch_size=4, y=None)
    torch.manual_seed(1)
    z = torch.randn(2, 3, dtype=torch.float64)
    ws = g.mapping(z).detach()
    u = torch.randn(2, 1, 2, 2, dtype=torch.float64) / math.sqrt(4)
    eps = 1e-6
    grads = torch.zeros_like(ws)
    for index in torch.cartesian_prod(torch.arange(2), torch.arange(3)):
        i, j = int(index[0]), int(index[1])
        bump = torch.zeros_like(ws)
        bump[:, i, j] = eps
        grads[:, i, j] = ((g.synthesis(ws + bump) - g.synthesis(ws - bump)) * u).flatten(1).sum(1) / (2 * eps)
    lengths = grads.square().sum(2).mean(1).sqrt()
    mean = 0.5 * lengths.mean()  # lerp from 0 with decay 0.5
    assert float(regularizer.mean) == pytest.approx(float(mean), rel=1e-6)
    assert float(value) == pytest.approx(float((lengths - mean).square().mean()), rel=1e-6)
    assert "mean" in dict(regularizer.named_buffers())  # checkpointed with the module


def test_path_length_needs_a_style_based_generator() -> None:
    with pytest.raises(ConfigError, match="needs a style-based generator"):
        PathLength().value(DCGANGenerator(latent_dim=LATENT, channels=1, resolution=RES, width=8), 4, None)


def test_regularizer_interval_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="every must be >= 1"):
        PathLength(every=0)


def test_data_subset_is_seeded_by_subset_seed_not_the_run_seed() -> None:
    def subset(seed: int, subset_seed: int) -> TensorImages:
        data = GaussianMixtureDataModule(n_samples=100, seed=seed, subset=10, subset_seed=subset_seed)
        full = data.load_split(train=True)
        data.setup()
        assert isinstance(data.train_set, TensorImages) and len(data.train_set) == 10
        rows = [int((full.images == row).all(1).nonzero()[0]) for row in data.train_set.images]
        assert len(set(rows)) == 10  # distinct samples of the full split
        return data.train_set

    assert torch.equal(subset(seed=1, subset_seed=0).images, subset(seed=1, subset_seed=0).images)
    assert not torch.equal(subset(seed=1, subset_seed=0).images, subset(seed=1, subset_seed=5).images)


def test_data_subset_out_of_range_is_a_clear_error() -> None:
    data = GaussianMixtureDataModule(n_samples=100, subset=101)
    with pytest.raises(ConfigError, match=r"data.subset=101: .* has 100 samples; set data.subset between 1 and 100"):
        data.setup()


def test_a_run_on_a_subset_records_it_in_its_protocol(tiny_cfg: Compose, tmp_path: Path) -> None:
    train(tiny_cfg("data=mnist_5k", "data.subset=500", "data.subset_seed=3", "max_gen_steps=2"))
    protocol = json.loads((tmp_path / "run" / "metrics.json").read_text())["protocol"]
    assert protocol["trained_on"] == "500 samples of the training split (subset seed 3)"
    assert protocol["n_reference"] == 100  # evaluations read the whole split, not the subset


def test_psi_needs_a_style_based_generator_and_lies_in_unit_interval() -> None:
    with pytest.raises(ConfigError, match=r"psi=0.7 needs a style-based generator .* DCGANGenerator"):
        truncate(DCGANGenerator(latent_dim=LATENT, channels=1, resolution=RES, width=8), 0.7, "x.ckpt")
    styled = SimpleNamespace(truncation_psi=1.0)
    with pytest.raises(ConfigError, match=r"psi=1.5: the truncation psi lies in \[0, 1\]"):
        truncate(styled, 1.5, "x.ckpt")  # type: ignore[arg-type]
    truncate(styled, 0.7, "x.ckpt")  # type: ignore[arg-type]
    assert styled.truncation_psi == 0.7


def test_sample_psi_zero_draws_the_average_w_image_of_a_trained_stylegan2(tiny_cfg: Compose, tmp_path: Path) -> None:
    overrides = ["model=stylegan2", "model.generator.width=8", "model.discriminator.width=8", "max_gen_steps=3"]
    train(tiny_cfg(*overrides, "~callbacks.image_metrics", "~callbacks.best_checkpoint"))
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    draws = {}
    for psi in ("0", "1"):
        out = sample(compose_config("sample", [f"ckpt={checkpoint}", "n=4", f"psi={psi}", f"out={tmp_path / psi}.npz"]))
        draws[psi] = np.load(out)["arr_0"]
    assert (draws["0"] == draws["0"][0]).all()  # every latent truncated to w_avg
    assert not (draws["1"] == draws["1"][0]).all()


def test_an_ada_run_resumed_mid_training_equals_an_uninterrupted_one(tiny_cfg: Compose, tmp_path: Path) -> None:
    """p (and the controller's accumulators) continue bitwise: ADA users' most reported resume bug."""
    ada = ["augment=ada", "augment.initial_p=0.5", "augment.speed_kimg=2", "~callbacks.image_metrics"]
    ada += ["~callbacks.best_checkpoint", "callbacks.checkpoint.every_n_gen_steps=15"]
    train(tiny_cfg(*ada, "max_gen_steps=25", out="first"))
    train(tiny_cfg(*ada, "max_gen_steps=40", f"ckpt_path={tmp_path / 'first/checkpoints/gen_step_0000015.ckpt'}"))
    train(tiny_cfg(*ada, "max_gen_steps=40", out="straight"))
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    p = float(straight["state_dict"]["augment.p"])
    assert 0 < p < 1 and p != 0.5  # p moved
    assert_same_training_state(load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt"), straight)
