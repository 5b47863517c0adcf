"""TransGAN: grid attention against full attention computed by hand, windows that attend within themselves, the
generator's and the multi-scale discriminator's shapes and refusals, a gradient penalty through attention, and
fmnist_transgan's resume and DDP."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ganforge.config import load_checkpoint
from ganforge.errors import ConfigError
from ganforge.nets.transgan import GridAttention, TransGANDiscriminator, TransGANGenerator
from ganforge.penalties import GradientPenalty
from ganforge.train import train
from tests.conftest import Compose, assert_same_training_state
from tests.test_distributed import assert_same_weights, train_ddp


def random_attention(dim: int, heads: int, window: int, seed: int = 0) -> GridAttention:
    torch.manual_seed(seed)
    attention = GridAttention(dim, heads, window)
    torch.nn.init.normal_(attention.bias)  # zeros at initialisation: make the bias matter
    return attention


def full_attention_by_hand(attention: GridAttention, x: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias(offset)) v over every token of the grid, the bias looked up per pair of
    cells from their offset (dy, dx); then the output projection."""
    n, h, w, dim = x.shape
    heads, d = attention.heads, dim // attention.heads
    q, k, v = attention.qkv(x.reshape(n, h * w, dim)).split(dim, dim=-1)
    q, k, v = (t.reshape(n, h * w, heads, d).transpose(1, 2) for t in (q, k, v))
    cells = [(y, x_) for y in range(h) for x_ in range(w)]
    side = 2 * attention.window - 1
    bias = torch.empty(heads, h * w, h * w)
    for i, (yi, xi) in enumerate(cells):
        for j, (yj, xj) in enumerate(cells):
            bias[:, i, j] = attention.bias[
                :, (yi - yj + attention.window - 1) * side + (xi - xj + attention.window - 1)
            ]
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(n, h * w, dim)
    return attention.proj(out).reshape(n, h, w, dim)


def test_a_window_the_size_of_the_grid_is_full_attention() -> None:
    attention = random_attention(dim=8, heads=2, window=6)
    x = torch.randn(2, 6, 6, 8)
    torch.testing.assert_close(attention(x), full_attention_by_hand(attention, x), rtol=1e-5, atol=1e-5)


def test_windows_attend_within_themselves() -> None:
    """On an 8x8 grid with 4x4 windows, each window's output is full attention over that window alone, and a
    token changed in one window changes no other window's output."""
    attention = random_attention(dim=8, heads=2, window=4, seed=1)
    x = torch.randn(1, 8, 8, 8)
    out = attention(x)
    for y in (0, 4):
        for x0 in (0, 4):
            window = x[:, y : y + 4, x0 : x0 + 4]
            expected = full_attention_by_hand(attention, window)
            torch.testing.assert_close(out[:, y : y + 4, x0 : x0 + 4], expected, rtol=1e-5, atol=1e-5)
    changed = x.clone()
    changed[0, 1, 1] += 1.0  # inside the top-left window
    moved = attention(changed)
    assert not torch.allclose(moved[:, :4, :4], out[:, :4, :4])
    torch.testing.assert_close(moved[:, 4:], out[:, 4:])
    torch.testing.assert_close(moved[:, :4, 4:], out[:, :4, 4:])


def test_generator_doubles_the_grid_and_quarters_the_dimension_per_stage() -> None:
    g = TransGANGenerator(latent_dim=16, width=64, depths=[1, 1, 1], heads=2, window=4, full_attention_max=8)
    assert [stage.position.shape[1:] for stage in g.stages] == [(8, 8, 64), (16, 16, 16), (32, 32, 4)]
    windows = [stage.blocks[0].attention.window for stage in g.stages]
    assert windows == [8, 4, 4]  # full attention up to 8 tokens a side, 4x4 windows above
    images = g(torch.randn(3, 16))
    assert images.shape == (3, 3, 32, 32) and images.abs().max() <= 1
    fmnist = TransGANGenerator(latent_dim=16, width=64, depths=[1, 1, 1], heads=1, window=7, channels=1, resolution=28)
    assert fmnist(torch.randn(2, 16)).shape == (2, 1, 28, 28)


def test_discriminator_adds_a_coarser_scale_per_stage() -> None:
    d = TransGANDiscriminator(width=32, depths=[1, 1, 1], heads=2, patch=2, channels=3, resolution=32)
    assert [stage.position.shape[1:] for stage in d.stages] == [(16, 16, 8), (8, 8, 16), (4, 4, 32)]
    assert [e.kernel_size for e in d.embeddings] == [(2, 2), (4, 4), (8, 8)]
    assert [e.out_channels for e in d.embeddings] == [8, 8, 16]  # pooled tokens + the new scale fill each stage
    x = torch.randn(4, 3, 32, 32)
    assert d(x).shape == (4,) and d.features(x).shape == (4, 32)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TransGANGenerator(width=64, depths=[1, 1, 1], resolution=30), "must divide by 4"),
        (lambda: TransGANGenerator(width=40, depths=[1, 1, 1], resolution=32), "by 16"),
        (lambda: TransGANGenerator(width=64, heads=3, depths=[1], resolution=8), "into 3 heads"),
        (lambda: TransGANGenerator(width=64, depths=[1, 1], window=5, full_attention_max=4), "5x5 windows"),
        (lambda: TransGANGenerator(width=64, depths=[1, 1], num_classes=10), "model.conditional=false"),
        (lambda: TransGANDiscriminator(width=32, depths=[1, 1, 1], patch=2, resolution=28), "must divide by 8"),
        (lambda: TransGANDiscriminator(width=32, depths=[1, 1], num_classes=10), "model.conditional=false"),
    ],
)
def test_refusals_name_the_setting(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        build()


def test_gradient_penalty_differentiates_through_attention_twice() -> None:
    """The fused attention kernels have no second derivative; the penalty's input gradient runs attention in the
    math backend, so WGAN-GP trains a transformer D."""
    torch.manual_seed(0)
    d = TransGANDiscriminator(width=16, depths=[1, 1], heads=2, patch=2, channels=1, resolution=8)
    real, fake = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    penalty = GradientPenalty().value(d, real, fake, d(real))
    penalty.backward()
    assert torch.isfinite(penalty) and d.embeddings[0].weight.grad is not None
    assert d.embeddings[0].weight.grad.abs().sum() > 0


TRANSGAN = [
    "experiment=fmnist_transgan",
    "model.generator.width=16",
    "model.generator.depths=[1,1,1]",
    "model.generator.heads=1",
    "model.discriminator.depths=[1,1]",
    "model.discriminator.heads=1",
]


@pytest.mark.slow
def test_fmnist_transgan_resumes_bitwise(tiny_cfg: Compose, tmp_path: Path) -> None:
    """Stop at 2 steps, resume to 4: equal to 4 straight (DiffAugment's draws and the 4 D steps per G step too)."""
    overrides = [*TRANSGAN, "~callbacks.image_metrics", "~callbacks.best_checkpoint"]
    train(tiny_cfg(*overrides, "max_gen_steps=2", out="first"))
    first = tmp_path / "first" / "checkpoints" / "last.ckpt"
    train(tiny_cfg(*overrides, "max_gen_steps=4", f"ckpt_path={first}", out="resumed"))
    train(tiny_cfg(*overrides, "max_gen_steps=4", out="straight"))
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert straight["ganforge"]["generator_steps"] == 4
    assert_same_training_state(load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt"), straight)


@pytest.mark.slow
def test_fmnist_transgan_trains_with_identical_ranks_under_ddp(tmp_path: Path) -> None:
    assert_same_weights(train_ddp("ddp_cpu", tmp_path, *TRANSGAN))
