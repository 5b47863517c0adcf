"""Pyramids of generators (issue 36): the pyramid transform, LAPGAN's and SinGAN's conditioning, their training."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganforge.config import build_module, load_checkpoint
from ganforge.data.single import SingleImageDataModule, fitted_size, image_size
from ganforge.errors import ConfigError, DatasetNotFoundError
from ganforge.games.pyramid import LevelStepLR, PyramidGame
from ganforge.module import GANModule
from ganforge.nets import (
    LevelDiscriminator,
    LevelGenerator,
    MLPDiscriminator,
    MLPGenerator,
    PyramidDiscriminator,
    PyramidGenerator,
)
from ganforge.objectives import NonSaturating
from ganforge.pyramid import Pyramid
from ganforge.sample import sample
from ganforge.train import train
from tests.conftest import Compose, assert_same_training_state, compose_config
from tests.test_distributed import assert_same_weights, train_ddp

#: SinGAN at a test's size: the default photo at 27x40, three levels (16x24, 21x31, 27x40), 2 steps each.
SINGAN = [
    "experiment=singan", "data.max_side=40", "model.generator.min_side=16", "game.steps_per_level=2", "max_gen_steps=6",
    "data.batch_size=1",
]  # fmt: skip
LAPGAN = [
    "experiment=fmnist_lapgan", "model.generator.coarsest.width=32", "model.discriminator.coarsest.width=16",
    "~callbacks.image_metrics", "~callbacks.best_checkpoint",
]  # fmt: skip


@pytest.mark.parametrize(
    "pyramid",
    [Pyramid.halving((28, 28), 3), Pyramid.halving((32, 48), 4), Pyramid.geometric((128, 170), 0.75, 25)],
    ids=str,
)
def test_laplacian_pyramid_reconstructs_exactly(pyramid: Pyramid) -> None:
    x = torch.rand(3, 3, *pyramid.sizes[-1], generator=torch.Generator().manual_seed(0)) * 2 - 1
    bands = pyramid.laplacian(x)
    assert [tuple(b.shape[-2:]) for b in bands] == list(pyramid.sizes)
    assert (pyramid.reconstruct(bands) - x).abs().max() < 1e-6
    # The finer bands are band-pass: a constant image has none.
    flat = pyramid.laplacian(torch.full_like(x, 0.3))
    assert all(b.abs().max() < 1e-6 for b in flat[1:]) and torch.allclose(flat[0], torch.full_like(flat[0], 0.3))


def test_pyramid_sizes() -> None:
    assert Pyramid.halving((28, 28), 3).sizes == ((7, 7), (14, 14), (28, 28))
    geometric = Pyramid.geometric((128, 170), 0.75, 25)
    assert min(geometric.sizes[0]) == 25 and geometric.sizes[-1] == (128, 170) and geometric.levels == 7
    ratios = [b[0] / a[0] for a, b in zip(geometric.sizes, geometric.sizes[1:], strict=False)]
    assert all(1.25 < r < 1.36 for r in ratios)  # (128/25)^(1/6) = 1.313 per level, rounded to whole pixels
    assert geometric.rescaled((128, 340)).sizes[-1] == (128, 340)
    with pytest.raises(ConfigError, match="at most 3 levels"):
        Pyramid.halving((28, 28), 4)
    with pytest.raises(ConfigError, match="scale factor"):
        Pyramid.geometric((64, 64), 1.5, 25)


def lapgan_nets(width: int = 4) -> tuple[PyramidGenerator, PyramidDiscriminator]:
    common = dict(channels=1, size=(28, 28), levels=3, width=width)
    g = PyramidGenerator(
        **common,  # type: ignore[arg-type]
        coarsest=partial(MLPGenerator, latent_dim=6, width=16, depth=1),
        level=partial(LevelGenerator, blocks=2, noise="concat", tanh=False),
    )
    d = PyramidDiscriminator(
        **common,  # type: ignore[arg-type]
        coarsest=partial(MLPDiscriminator, width=8, depth=1, maxout=1),
        level=partial(LevelDiscriminator, blocks=2),
        conditional=True,
    )
    return g, d


def singan_nets(size: tuple[int, int] = (30, 40)) -> tuple[PyramidGenerator, PyramidDiscriminator]:
    common = dict(channels=3, size=size, scale=0.75, min_side=20, width=4)
    g = PyramidGenerator(**common, level=partial(LevelGenerator, blocks=3))  # type: ignore[arg-type]
    d = PyramidDiscriminator(**common, level=partial(LevelDiscriminator, blocks=3))  # type: ignore[arg-type]
    return g, d


def module(g: PyramidGenerator, d: PyramidDiscriminator, game: PyramidGame) -> GANModule:
    adam = partial(torch.optim.Adam, lr=1e-3)
    return GANModule(g, d, NonSaturating(), adam, adam, ema_decay=None, game=game)


def record_inputs(block: torch.nn.Module) -> list[torch.Tensor]:
    """The coarse images a level's G is called with."""
    seen: list[torch.Tensor] = []
    block.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    return seen


def test_latent_holds_every_levels_noise_and_forward_is_the_chain() -> None:
    g, _ = lapgan_nets()
    assert g.latent_dim == 6 + 14 * 14 + 28 * 28  # the coarsest vector, then one plane per finer level
    z = torch.randn(2, g.latent_dim)
    noises = g.split_latent(z)
    assert [tuple(n.shape) for n in noises] == [(2, 6), (2, 1, 14, 14), (2, 1, 28, 28)]
    g.eval()
    chain = g.chain(noises)
    assert [tuple(x.shape) for x in chain] == [(2, 1, 7, 7), (2, 1, 14, 14), (2, 1, 28, 28)]
    torch.testing.assert_close(g(z), chain[-1])
    # Each finer level is the coarser image upsampled plus the residual its G draws.
    residual = g.blocks[2](g.pyramid.up(chain[1], 2), noises[2])
    torch.testing.assert_close(chain[2], g.pyramid.up(chain[1], 2) + residual)


def test_lapgan_levels_read_the_real_coarser_image_and_d_sees_it_stacked() -> None:
    torch.manual_seed(0)
    g, d = lapgan_nets()
    gan = module(g, d, PyramidGame(condition="real"))
    seen = {k: record_inputs(g.blocks[k]) for k in (1, 2)}
    real = torch.rand(4, 1, 28, 28) * 2 - 1
    played = gan.game.play(gan, real, torch.zeros(4))
    reals = g.pyramid.gaussian(real)
    for k in (1, 2):
        torch.testing.assert_close(seen[k][0], g.pyramid.up(reals[k - 1], k))
    assert isinstance(played.real, tuple) and isinstance(played.fake, tuple) and len(played.real) == 5
    for k in range(3):
        torch.testing.assert_close(played.real[k], reals[k])
        assert played.fake[k].shape == reals[k].shape
    torch.testing.assert_close(played.fake[3], played.real[3])  # both sides' conditions are the real coarse images
    logits = d(played.fake)
    assert logits.shape == (4, 3)  # one column per level's game
    # D_k reads the condition: another coarse image changes level k's logits only.
    other = (*played.fake[:3], played.fake[3], torch.zeros_like(played.fake[4]))
    changed = (d(other) != logits).any(dim=0)
    assert changed.tolist() == [False, False, True]


def test_lapgan_levels_train_independently() -> None:
    """A level's G loss has no gradient in another level's G: the games are independent."""
    torch.manual_seed(0)
    g, d = lapgan_nets()
    gan = module(g, d, PyramidGame())
    played = gan.game.play(gan, torch.rand(4, 1, 28, 28) * 2 - 1, torch.zeros(4))
    level_1_loss = NonSaturating().g_loss(d(played.fake)[:, 1])
    level_1_loss.backward()
    assert all(p.grad is not None and p.grad.any() for p in g.blocks[1].parameters())
    assert all(p.grad is None or not p.grad.any() for k in (0, 2) for p in g.blocks[k].parameters())


def test_singan_level_reads_the_frozen_chain_below_and_only_it_trains() -> None:
    torch.manual_seed(0)
    g, d = singan_nets()
    game = PyramidGame(condition="generated", steps_per_level=3, reconstruction_weight=10.0, inherit=True)
    gan = module(g, d, game)
    assert g.levels == 3 and g.pyramid.sizes == ((20, 27), (24, 33), (30, 40))  # factor (20/30)^(1/2)
    real = torch.rand(1, 3, 30, 40) * 2 - 1
    gan.generator_steps = 3 * 2  # level 2's turn
    seen = record_inputs(g.blocks[2])
    state = torch.get_rng_state()
    played = game.play(gan, real, torch.zeros(1))
    # Level 2 read the chain of levels 0 and 1 drawn with the same noise, upsampled (the frozen levels in eval mode).
    torch.set_rng_state(state)
    noises = g.split_latent(torch.randn(1, g.latent_dim))
    assert not g.blocks[0].training and not g.blocks[1].training and d.active == 2
    with torch.no_grad():
        below = g.chain(noises, stop_level=1)[-1]
    torch.testing.assert_close(seen[0], g.pyramid.up(below, 2))
    assert played.real.shape == played.fake.shape == (1, 3, 30, 40)  # type: ignore[union-attr]
    # Only level 2 gets gradients, from both the adversarial loss and the reconstruction term.
    loss = game.g_terms(gan, played)["reconstruction"] + NonSaturating().g_loss(d(played.fake))
    loss.backward()
    grads = {k: [p.grad is not None for p in g.blocks[k].parameters()] for k in range(3)}
    assert all(grads[2]) and not any(grads[0]) and not any(grads[1])


def test_singan_level_start_sets_noise_amplitude_from_the_reconstruction_and_inherits() -> None:
    torch.manual_seed(0)
    g, d = singan_nets()
    game = PyramidGame(
        condition="generated", steps_per_level=3, reconstruction_weight=10.0, noise_amp=0.1, inherit=True
    )
    gan = module(g, d, game)
    real = torch.rand(1, 3, 30, 40) * 2 - 1
    game.play(gan, real, torch.zeros(1))  # level 0 starts
    assert int(game.started) == 1 and g.noise_amp[0] == 1.0
    gan.generator_steps = 3
    g.blocks[0].eval()  # frozen once level 1 trains
    with torch.no_grad():
        rec0 = g.coarsest(g.reconstruction_noise)
    expected = 0.1 * F.mse_loss(g.pyramid.up(rec0, 1), g.pyramid.gaussian(real)[1]).sqrt()
    game.play(gan, real, torch.zeros(1))  # level 1 starts: from level 0's weights (same width), its amplitude set
    assert int(game.started) == 2
    torch.testing.assert_close(g.noise_amp[1], expected)
    for mine, below in zip(g.blocks[1].parameters(), g.blocks[0].parameters(), strict=True):
        assert torch.equal(mine, below)
    # The reconstruction: z* at the coarsest level and zeros above, through the chain.
    with torch.no_grad():
        rec1 = g.reconstruction(1)
        torch.testing.assert_close(game.reconstruct(g, 1), rec1)
        torch.testing.assert_close(rec1, g.pyramid.up(rec0, 1) + g.blocks[1](g.pyramid.up(rec0, 1), torch.zeros(1)))


def test_pyramid_game_refusals() -> None:
    g, d = lapgan_nets()
    adam = partial(torch.optim.Adam, lr=1e-3)
    with pytest.raises(ConfigError, match="played by game=pyramid; set game=pyramid"):
        GANModule(g, d, NonSaturating(), adam, adam)
    with pytest.raises(ConfigError, match=r"set game\.steps_per_level"):
        PyramidGame(condition="generated")
    with pytest.raises(ConfigError, match=r"game\.condition must be one of"):
        PyramidGame(condition="noise")
    g, d = lapgan_nets()
    _, other = singan_nets()
    with pytest.raises(ConfigError, match="differ; give both the same size"):
        module(g, other, PyramidGame())
    with pytest.raises(ConfigError, match="a conditional pyramid D reads real coarse images"):
        module(g, d, PyramidGame(condition="generated", steps_per_level=2))
    with pytest.raises(ConfigError, match="model=lapgan or model=singan"):
        module(MLPGenerator(latent_dim=2, channels=1, resolution=28), d, PyramidGame())  # type: ignore[arg-type]


def test_single_image_data(tmp_path: Path) -> None:
    assert fitted_size(640, 427, 40) == (27, 40)  # PIL's (width, height) in, (h, w) out
    assert image_size("skimage:rocket", 40) == [27, 40]
    data = SingleImageDataModule(path="skimage:rocket", max_side=40, channels=3, batch_size=2)
    split = data.load_split(train=True)
    assert split.images_at(torch.tensor([0])).shape == (1, 3, 27, 40)
    assert torch.equal(split.images_at(torch.tensor([0])), split.images_at(torch.tensor([1])))
    with pytest.raises(DatasetNotFoundError, match="choose one of"):
        image_size("skimage:no_such_photo", 40)
    with pytest.raises(DatasetNotFoundError, match="no such image file"):
        image_size(str(tmp_path / "missing.png"), 40)
    with pytest.raises(ConfigError, match=r"set data.size=\[27, 40\]"):
        SingleImageDataModule(path="skimage:rocket", max_side=40, size=[32, 32], channels=3).load_split(train=True)


@pytest.mark.parametrize("family", ["lapgan", "singan"])
def test_pyramid_runs_resume_bitwise(family: str, tiny_cfg: Compose, tmp_path: Path) -> None:
    """SinGAN through a level's start after the resume, with the paper's per-level learning-rate decay (here in each
    level's second step)."""
    overrides = LAPGAN if family == "lapgan" else [*SINGAN, "optim.scheduler.milestone=0.5"]
    steps = 4 if family == "lapgan" else 6  # SinGAN: through a level's start (levels of 2 steps)
    train(tiny_cfg(*overrides, f"max_gen_steps={steps // 2 + 1}", out="first"))
    first = tmp_path / "first" / "checkpoints" / "last.ckpt"
    train(tiny_cfg(*overrides, f"max_gen_steps={steps}", f"ckpt_path={first}", out="resumed"))
    train(tiny_cfg(*overrides, f"max_gen_steps={steps}", out="straight"))
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert_same_training_state(load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt"), straight)
    ckpt = tmp_path / "straight" / "checkpoints" / "last.ckpt"
    if family == "lapgan":
        with pytest.raises(ConfigError, match="latent vector at its own size only"):
            draw(ckpt, tmp_path, "size=[28,56]")
        assert draw(ckpt, tmp_path, "start_scale=1", "inject=skimage:camera").shape == (12, 28, 28, 1)
        return
    assert int(straight["state_dict"]["game.started"]) == 3
    assert (straight["state_dict"]["generator.noise_amp"][1:] < 1).all()  # set from the reconstruction
    # SinGAN's uses: another aspect ratio; generation from scale n (less variety as n rises); an injected image.
    assert draw(ckpt, tmp_path, "size=[27,80]").shape == (12, 27, 80, 3)
    spread = [draw(ckpt, tmp_path, f"start_scale={n}").std(axis=0).mean() for n in (0, 1, 2)]
    assert spread[0] > spread[1] > spread[2] > 0
    plain, injected = (
        draw(ckpt, tmp_path, "start_scale=1"),
        draw(ckpt, tmp_path, "start_scale=1", "inject=skimage:coffee"),
    )
    assert injected.shape == plain.shape and (injected != plain).any()
    with pytest.raises(ConfigError, match="inject= an image to start from"):
        draw(ckpt, tmp_path, "size=[27,80]", "start_scale=1")
    with pytest.raises(ConfigError, match=r"levels 0\.\.2"):
        draw(ckpt, tmp_path, "start_scale=3")


def draw(ckpt: Path, tmp_path: Path, *options: str) -> np.ndarray:
    """12 samples of ``ckpt`` (uint8 NHWC) drawn by ganforge-sample with ``options``."""
    out = tmp_path / "draw.npz"
    sample(compose_config("sample", [f"ckpt={ckpt}", "n=12", f"out={out}", *options]))
    return np.load(out)["arr_0"].astype(float)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["lapgan", "singan"])
def test_pyramid_runs_train_with_identical_ranks_under_ddp(family: str, tmp_path: Path) -> None:
    overrides = LAPGAN if family == "lapgan" else [*SINGAN, "game.steps_per_level=3"]
    assert_same_weights(train_ddp("ddp_cpu", tmp_path, *overrides))


def test_build_module_makes_both_families(tiny_cfg: Compose) -> None:
    lapgan = build_module(tiny_cfg(*LAPGAN))
    assert isinstance(lapgan.game, PyramidGame) and lapgan.generator.pyramid.levels == 3  # type: ignore[union-attr]
    singan = build_module(tiny_cfg(*SINGAN))
    assert singan.generator.pyramid.sizes == ((16, 24), (21, 31), (27, 40)) and singan.generator_ema is None  # type: ignore[union-attr]
    # One photo that is not a square, with nets that draw squares: refused before any data is read.
    with pytest.raises(ConfigError, match=r"images are 27x40, but DCGANGenerator draws squares of 40x40; .*singan"):
        build_module(tiny_cfg("data=single_image", "data.max_side=40"))


def test_level_step_lr_restarts_with_every_level() -> None:
    """SinGAN's schedule: the base rate for the first 80 % of each level's steps, a tenth for the rest."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=5e-4)
    scheduler = LevelStepLR(optimizer, steps_per_level=10, milestone=0.8, gamma=0.1)
    rates = []
    for _ in range(25):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = ([5e-4] * 8 + [5e-5] * 2) * 2 + [5e-4] * 5
    assert rates == pytest.approx(expected)
    with pytest.raises(ConfigError, match="milestone in"):
        LevelStepLR(optimizer, steps_per_level=10, milestone=1.5)
