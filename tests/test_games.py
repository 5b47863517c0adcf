"""Games that add players and loss terms: the extension point, InfoGAN, and the code-accuracy metric."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import SGD, Adam
from torch.testing import assert_close

from ganforge.config import build_module, generator_from_checkpoint, load_checkpoint
from ganforge.errors import ConfigError
from ganforge.games import Game, Round
from ganforge.games.infogan import CodedGenerator, InfoGAN, QHead, WithCodes, information_loss, traversal_latents
from ganforge.generation import eval_mode
from ganforge.metrics.codes import best_assignment_accuracy, confusion
from ganforge.module import GANModule
from ganforge.nets import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    SAGANDiscriminator,
    StyleGAN2Discriminator,
)
from ganforge.objectives import NonSaturating
from ganforge.sample import sample
from ganforge.train import train
from tests.conftest import TINY, assert_same_training_state, compose_config
from tests.test_module import fit

RES = 8
#: TINY for experiments whose generator wraps a net (InfoGAN's CodedGenerator): the width is the net's.
TINY_CODED = [o.replace("model.generator.width", "model.generator.net.width") for o in TINY]


class Recorder(nn.Module):
    """A generator net that returns its input (to see what a CodedGenerator feeds it)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return z


def coded(
    categorical: tuple[int, ...] = (10,), continuous: int = 2, noise_dim: int = 5, noise: str = "normal"
) -> CodedGenerator:
    return CodedGenerator(Recorder, noise_dim=noise_dim, categorical=categorical, continuous=continuous, noise=noise)


def test_coded_generator_feeds_noise_one_hot_codes_and_uniform_continuous_codes() -> None:
    g = coded(categorical=(10, 3), continuous=2)
    assert g.latent_dim == 5 + 2 + 2 and g.net.latent_dim == 5 + 10 + 3 + 2
    z = torch.randn(20_000, g.latent_dim, generator=torch.Generator().manual_seed(0))
    fed = g(z)
    assert torch.equal(fed[:, :5], z[:, :5])  # the noise passes as it is
    one_hot_10, one_hot_3, continuous = fed[:, 5:15], fed[:, 15:18], fed[:, 18:]
    (values_10, values_3), codes_continuous = g.codes(z)
    assert torch.equal(one_hot_10, F.one_hot(values_10, 10).float())
    assert torch.equal(one_hot_3, F.one_hot(values_3, 3).float())
    torch.testing.assert_close(continuous, codes_continuous)
    # Uniform codes from the standard-normal latent: each of 10 values ~10 %, continuous codes U(-1, 1).
    assert np.allclose(np.bincount(values_10.numpy(), minlength=10) / len(z), 0.1, atol=0.01)
    assert continuous.min() > -1 and continuous.max() < 1
    assert continuous.mean().abs() < 0.02 and abs(continuous.var().item() - 1 / 3) < 0.01  # U(-1, 1): var 1/3


def test_uniform_noise_reads_the_noise_coordinates_as_uniform_in_minus_one_one() -> None:
    """``noise=uniform`` (the InfoGAN paper's): the net reads ``2 Phi(z) - 1`` for the noise, the codes as before."""
    normal, uniform = coded(categorical=(10,), continuous=1), coded(categorical=(10,), continuous=1, noise="uniform")
    z = torch.randn(20_000, normal.latent_dim, generator=torch.Generator().manual_seed(0))
    fed_normal, fed_uniform = normal(z), uniform(z)
    torch.testing.assert_close(fed_uniform[:, :5], 2 * torch.special.ndtr(z[:, :5]) - 1)
    assert torch.equal(fed_uniform[:, 5:], fed_normal[:, 5:])
    assert abs(fed_uniform[:, :5].var().item() - 1 / 3) < 0.01
    with pytest.raises(ConfigError, match="normal or uniform"):
        coded(noise="gaussian")


def test_with_codes_fixes_the_given_codes_and_keeps_the_rest() -> None:
    g = coded(categorical=(10, 3), continuous=2)
    z = torch.randn(50, g.latent_dim)
    fixed = g.with_codes(z, [7, None, 0.5])
    (values_10, values_3), continuous = g.codes(fixed)
    assert (values_10 == 7).all() and torch.equal(values_3, g.codes(z)[0][1])
    torch.testing.assert_close(continuous[:, 0], torch.full((50,), 0.5))
    torch.testing.assert_close(continuous[:, 1], g.codes(z)[1][:, 1])
    assert torch.equal(fixed[:, :5], z[:, :5])
    for wrong, message in (([10], "values 0..9"), ([0, 0, 1.0], r"lies in \(-1, 1\)"), ([0] * 5, "4 codes")):
        with pytest.raises(ConfigError, match=message):
            g.with_codes(z, wrong)


def test_information_loss_against_hand_computation() -> None:
    logits = [torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])]
    values = [torch.tensor([0, 2])]
    mean, log_var = torch.tensor([[0.5], [-0.2]]), torch.tensor([[0.0], [math.log(4.0)]])
    continuous = torch.tensor([[0.1], [0.6]])

    def log_softmax(row: list[float], i: int) -> float:
        return row[i] - math.log(sum(math.exp(v) for v in row))

    cross_entropy = -(log_softmax([2.0, 0.0, -1.0], 0) + log_softmax([0.0, 1.0, 0.0], 2)) / 2
    nll = [
        0.5 * math.log(2 * math.pi) + 0.5 * math.log(1.0) + (0.1 - 0.5) ** 2 / 2,
        0.5 * math.log(2 * math.pi) + 0.5 * math.log(4.0) + (0.6 + 0.2) ** 2 / (2 * 4.0),
    ]
    expected = cross_entropy + 0.1 * sum(nll) / 2
    value = information_loss(logits, values, mean, log_var, continuous, continuous_weight=0.1)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert information_loss(logits, values, mean[:, :0], log_var[:, :0], continuous[:, :0]).item() == pytest.approx(
        cross_entropy, rel=1e-6
    )


def test_q_with_a_fixed_std_predicts_only_the_means_and_its_loss_is_the_squared_error() -> None:
    """The paper's code (fix_std=True): Q's continuous outputs are means, and with std 2 the Gaussian NLL of a
    code is 0.5 log(2 pi) + log 2 + (c - mean)^2 / 8."""
    torch.manual_seed(0)
    q = QHead(16, [3], 2, hidden=8, continuous_std=2.0)
    assert q.net[-1].out_features == 3 + 2  # learned variance: 3 + 2 * 2
    logits, mean, log_var = q(torch.randn(4, 16))
    assert [lg.shape for lg in logits] == [(4, 3)] and mean.shape == log_var.shape == (4, 2)
    assert torch.equal(log_var, torch.full((4, 2), 2 * math.log(2.0)))
    values, continuous = [torch.zeros(4, dtype=torch.long)], torch.rand(4, 2) * 2 - 1
    expected = F.cross_entropy(logits[0], values[0]) + (
        (0.5 * math.log(2 * math.pi) + math.log(2.0) + (continuous - mean).square() / 8).sum(dim=1).mean()
    )
    assert_close(information_loss(logits, values, mean, log_var, continuous), expected)
    with pytest.raises(ConfigError, match="continuous_std"):
        QHead(16, [3], 2, continuous_std=0.0)


def test_q_batch_norm_normalises_its_hidden_layer_over_the_batch() -> None:
    q = QHead(16, [10], 0, hidden=8, batch_norm=True)
    assert [type(layer) for layer in q.net] == [nn.Linear, nn.BatchNorm1d, nn.LeakyReLU, nn.Linear]
    hidden = q.net[:2](torch.randn(64, 16) * 5 + 3)  # training mode: batch statistics
    assert_close(hidden.mean(dim=0), torch.zeros(8), atol=1e-5, rtol=0)
    assert_close(hidden.var(dim=0, unbiased=False), torch.ones(8), atol=1e-3, rtol=0)
    assert nn.BatchNorm1d not in [type(layer) for layer in QHead(16, [10], 0, hidden=8).net]


def test_the_game_config_builds_q_as_asked(tmp_path: Path) -> None:
    overrides = ["game.q_batch_norm=true", "game.continuous_std=1.0", f"paths.output_dir={tmp_path}"]
    q = cast(
        InfoGAN, build_module(compose_config("train", [*TINY_CODED, "experiment=mnist_infogan", *overrides])).game
    ).q_head
    assert isinstance(q.net[1], nn.BatchNorm1d) and q.fixed_log_var == 0.0


def test_best_assignment_accuracy_one_to_one_and_many_to_one() -> None:
    counts = np.array([[0, 9, 1], [8, 0, 2], [1, 1, 8]])  # value 0 -> class 1, 1 -> 0, 2 -> 2
    assert best_assignment_accuracy(counts) == pytest.approx((9 + 8 + 8) / 30)
    # One-to-one: two values cannot both take class 0.
    assert best_assignment_accuracy(np.array([[5, 0], [5, 0]])) == pytest.approx(0.5)
    # More values than classes (16 clusters for 10 classes): each value takes its most frequent class.
    assert best_assignment_accuracy(np.array([[5, 0], [4, 1], [0, 3]])) == pytest.approx(12 / 13)
    values, classes = torch.tensor([0, 0, 1, 2, 2]), torch.tensor([1, 1, 0, 2, 0])
    assert confusion(values, classes, 3, 3).tolist() == [[0, 2, 0], [1, 0, 0], [1, 0, 1]]


def infogan_module(info_weight: float = 1.0, adam: bool = False) -> GANModule:
    torch.manual_seed(0)
    optimizer = partial(Adam, lr=2e-3, betas=(0.5, 0.999)) if adam else partial(SGD, lr=0.05)
    return GANModule(
        generator=CodedGenerator(
            partial(DCGANGenerator, channels=1, resolution=RES, width=8), noise_dim=4, categorical=(3,), continuous=1
        ),
        discriminator=DCGANDiscriminator(channels=1, resolution=RES, width=8),
        objective=NonSaturating(),
        g_optimizer=optimizer,
        d_optimizer=optimizer,
        ema_decay=None,
        game=InfoGAN(info_weight=info_weight, q_hidden=16),
    )


def test_infogan_q_trains_with_d_and_the_information_term_reaches_g() -> None:
    """Q's parameters sit in D's optimizer (they move with D's steps); G's gradient includes the term."""
    gan = infogan_module()
    q_before = [p.detach().clone() for p in gan.game.q_head.parameters()]
    fit(gan, 3)
    assert all(not torch.equal(a, b) for a, b in zip(q_before, gan.game.q_head.parameters(), strict=True))

    plain, informed = infogan_module(info_weight=0.0), infogan_module(info_weight=1.0)
    real = torch.rand(16, 1, RES, RES) * 2 - 1
    grads = []
    for gan in (plain, informed):
        torch.manual_seed(1)
        played = gan.game.play(gan, real, None)
        loss = gan.game.g_adversarial(gan.objective, gan.critic, played) + sum(gan.game.g_terms(gan, played).values())
        (grad,) = torch.autograd.grad(loss, next(gan.generator.parameters()))
        grads.append(grad)
    assert not torch.allclose(grads[0], grads[1])


def test_infogan_learns_to_recover_its_categorical_code() -> None:
    """100 steps on tiny nets: Q's cross-entropy for a 3-way code falls far below log 3 (chance)."""
    gan = infogan_module(adam=True)
    fit(gan, 100)
    z = torch.randn(512, gan.generator.latent_dim)
    values, _ = gan.generator.codes(z)
    with torch.no_grad(), eval_mode(gan):
        logits, _, _ = gan.game.q_head(gan.discriminator.features(gan.generator(z)))
    assert F.cross_entropy(logits[0], values[0]).item() < 0.1 * math.log(3)


@pytest.mark.parametrize(
    "discriminator",
    [
        partial(SAGANDiscriminator, channels=1, resolution=RES, width=8, attention_at=()),
        partial(StyleGAN2Discriminator, channels=1, resolution=RES, width=8, max_width=16),
    ],
    ids=["sagan", "stylegan2"],
)
def test_infogan_puts_q_on_sagan_and_stylegan2_discriminators(discriminator: partial[nn.Module]) -> None:
    """Q reads any D's features: its information term is finite and its gradient reaches G."""
    gan = GANModule(
        generator=CodedGenerator(partial(DCGANGenerator, channels=1, resolution=RES, width=8), noise_dim=4),
        discriminator=discriminator(), objective=NonSaturating(), g_optimizer=SGD, d_optimizer=SGD,
        ema_decay=None, game=InfoGAN(q_hidden=16),
    )  # fmt: skip
    played = gan.game.play(gan, torch.rand(8, 1, RES, RES) * 2 - 1, None)
    info = gan.game.g_terms(gan, played)["info"]
    (grad,) = torch.autograd.grad(info, next(gan.generator.parameters()))
    assert torch.isfinite(info) and grad.abs().sum() > 0


def test_game_refusals_name_the_fix() -> None:
    with pytest.raises(ConfigError, match="needs a CodedGenerator"):
        GANModule(
            generator=DCGANGenerator(latent_dim=4, channels=1, resolution=RES, width=8),
            discriminator=DCGANDiscriminator(channels=1, resolution=RES, width=8),
            objective=NonSaturating(), g_optimizer=SGD, d_optimizer=SGD, game=InfoGAN(),
        )  # fmt: skip
    with pytest.raises(ConfigError, match="does not expose"):
        GANModule(
            generator=CodedGenerator(partial(DCGANGenerator, channels=1, resolution=RES, width=8), noise_dim=4),
            discriminator=MLPDiscriminator(channels=1, resolution=RES),
            objective=NonSaturating(), g_optimizer=SGD, d_optimizer=SGD, game=InfoGAN(),
        )  # fmt: skip
    with pytest.raises(ConfigError, match="plain two-player game"):
        build_module(compose_config("train", ["model=progan", "game=infogan"]))


def test_the_plain_game_is_the_default_and_plays_g_against_real_images() -> None:
    gan = build_module(compose_config("train", []))
    assert type(gan.game) is Game
    real = torch.zeros(4, 1, 28, 28)
    played = gan.game.play(gan, real, None)
    assert isinstance(played, Round) and played.real is real and played.fake.shape == real.shape
    assert played.fake.requires_grad and not played.detached().fake.requires_grad


def test_infogan_resumed_mid_training_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    """Three players (G, D, Q): weights, optimizer states and counters continue bitwise."""
    tiny = [*TINY_CODED, "experiment=mnist_infogan", "~callbacks.image_metrics", "~callbacks.best_checkpoint"]
    tiny += ["callbacks.checkpoint.every_n_gen_steps=10"]

    def cfg(*overrides: str, out: str) -> object:
        return compose_config("train", [*tiny, f"paths.output_dir={tmp_path / out}", *overrides])

    train(cfg("max_gen_steps=15", out="first"))
    train(cfg("max_gen_steps=25", f"ckpt_path={tmp_path / 'first/checkpoints/gen_step_0000010.ckpt'}", out="resumed"))
    train(cfg("max_gen_steps=25", out="straight"))
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert any(key.startswith("game.q_head.") for key in straight["state_dict"])
    assert_same_training_state(load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt"), straight)
    assert straight["ganforge"]["generator_steps"] == 25


def test_sample_fixes_codes_and_traverses_one_per_row(tmp_path: Path) -> None:
    """ganforge-sample code=[k] draws every sample with value k; traverse=0 varies code 0 along each row."""
    run = tmp_path / "run"
    overrides = [*TINY_CODED, "experiment=mnist_infogan", "~callbacks.image_metrics", "~callbacks.best_checkpoint"]
    train(compose_config("train", [*overrides, "max_gen_steps=2", f"paths.output_dir={run}"]))
    ckpt = run / "checkpoints" / "last.ckpt"
    generator, _ = generator_from_checkpoint(load_checkpoint(ckpt))
    coded_generator = cast(CodedGenerator, generator)
    fixed = WithCodes(coded_generator, [4])
    z = torch.randn(6, fixed.latent_dim)
    assert (coded_generator.codes(coded_generator.with_codes(z, [4]))[0][0] == 4).all()
    with eval_mode(fixed), eval_mode(coded_generator):
        torch.testing.assert_close(fixed(z), coded_generator(coded_generator.with_codes(z, [4])))
    latents, columns = traversal_latents(coded_generator, 0, 40, seed=0)
    assert columns == 10 and len(latents) == 40
    rows = latents.view(4, 10, -1)
    values, _ = coded_generator.codes(latents)
    assert values[0].view(4, 10).tolist() == [list(range(10))] * 4  # each row runs through the values
    assert torch.equal(rows[:, :1, :62].expand(4, 10, 62), rows[:, :, :62])  # noise fixed along a row
    cfg = compose_config("sample", [f"ckpt={ckpt}", f"out={tmp_path / 's.npz'}", "traverse=0", "grid_n=20"])
    sample(cfg)
    assert np.load(tmp_path / "s.npz")["arr_0"].shape == (20, 28, 28, 1) and (tmp_path / "s.png").is_file()
    with pytest.raises(ConfigError, match=r"values 0\.\.9"):
        sample(compose_config("sample", [f"ckpt={ckpt}", f"out={tmp_path / 'c.npz'}", "code=[10]", "n=4"]))


def test_traverse_on_a_conditional_coded_generator_draws_one_class(tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = [*TINY_CODED, "experiment=mnist_infogan", "model.conditional=true", "~callbacks.image_metrics"]
    train(
        compose_config(
            "train", [*overrides, "~callbacks.best_checkpoint", "max_gen_steps=1", f"paths.output_dir={run}"]
        )
    )
    ckpt, out = run / "checkpoints" / "last.ckpt", tmp_path / "t.npz"
    with pytest.raises(ConfigError, match="add y=K"):
        sample(compose_config("sample", [f"ckpt={ckpt}", f"out={out}", "traverse=0", "grid_n=20"]))
    sample(compose_config("sample", [f"ckpt={ckpt}", f"out={out}", "traverse=0", "grid_n=20", "y=3"]))
    generator, _ = generator_from_checkpoint(load_checkpoint(ckpt))
    latents, _ = traversal_latents(cast(CodedGenerator, generator), 0, 20, seed=0)
    with eval_mode(generator):
        expected = generator(latents, torch.full((20,), 3))
    assert np.array_equal(
        np.load(out)["arr_0"], expected.add(1).mul(127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    )
