"""StyleGAN2: modulation and demodulation, noise inputs, the mapping net's lr multiplier, truncation,
style mixing, w_avg, resampling, the projection D, shapes, and a few training steps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.config import load_checkpoint
from ganforge.nets import StyleGAN2Discriminator, StyleGAN2Generator
from ganforge.nets.progan import equalized
from ganforge.nets.stylegan2 import ModulatedConv2d, downsample2, modulated_conv2d, upsample2
from ganforge.train import train
from tests.conftest import Compose

LATENT, W_DIM = 8, 16


def generator(resolution: int = 16, channels: int = 1, **kwargs: Any) -> StyleGAN2Generator:
    torch.manual_seed(0)
    return StyleGAN2Generator(
        latent_dim=LATENT,
        w_dim=W_DIM,
        mapping_layers=2,
        width=4,
        max_width=16,
        channels=channels,
        resolution=resolution,
        **kwargs,
    )


def test_modulated_conv_equals_the_per_sample_conv_it_replaces() -> None:
    """Styles on the activations and demodulation on the outputs = F.conv2d per sample with its own modulated
    (demodulated) kernel, the grouped convolution of the paper."""
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 5, 8, 8), torch.randn(4, 5, 3, 3), torch.randn(3, 5)
    for demodulate in (True, False):
        batched = modulated_conv2d(x, weight, styles, demodulate=demodulate)
        assert batched.shape == (3, 4, 8, 8)
        for i in range(3):
            kernel = weight * styles[i].view(1, 5, 1, 1)
            if demodulate:
                kernel = kernel / (kernel.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
            torch.testing.assert_close(batched[i : i + 1], F.conv2d(x[i : i + 1], kernel, padding=1))


def test_demodulation_keeps_unit_variance_whatever_the_style() -> None:
    torch.manual_seed(0)
    layer = ModulatedConv2d(64, 64, 3, w_dim=W_DIM)
    x, w = torch.randn(4, 64, 32, 32), torch.randn(4, W_DIM)
    with torch.no_grad():
        styles = layer.affine(w)
        assert styles.std().item() > 0.5  # far from the identity style: demodulation has work to do
        out = layer(x, w)[:, :, 1:-1, 1:-1]  # inside the zero-padded border
        plain = modulated_conv2d(x, layer.conv.weight, styles, demodulate=False)[:, :, 1:-1, 1:-1]
    assert out.std().item() == pytest.approx(1.0, rel=0.1)
    assert plain.std().item() > 1.2  # without demodulation the styles' scale passes through


def test_noise_changes_the_image_only_where_its_strength_is_not_zero() -> None:
    g = generator(mixing_prob=0.0).eval()
    z = torch.randn(2, LATENT)
    g.noise_mode = "none"
    plain = g(z)
    g.noise_mode = "random"
    assert torch.equal(g(z), plain)  # strengths start at 0
    g.noise_mode = "const"
    assert torch.equal(g(z), plain)
    with torch.no_grad():
        g.blocks[-1].convs[-1].noise_strength.fill_(0.5)
    g.noise_mode = "random"
    first, second = g(z), g(z)
    assert (first - plain).abs().max() > 1e-3 and (first - second).abs().max() > 1e-3  # fresh noise per call
    g.noise_mode = "const"
    fixed = g(z)
    assert (fixed - plain).abs().max() > 1e-3 and torch.equal(g(z), fixed)
    g.noise_mode = "auto"  # const in eval mode: seeded sampling is reproducible
    assert torch.equal(g(z), fixed)
    g.train()
    assert (g(z) - fixed).abs().max() > 1e-3  # random in training
    g.noise_mode = "none"
    assert torch.equal(g(z), plain)
    g.noise_mode = "loud"
    with pytest.raises(ValueError, match="noise_mode"):
        g(z)


def test_lr_multiplier_scales_the_stored_weight_and_its_steps() -> None:
    """Stored N(0, 1/lr_mul), used times lr_mul * gain / sqrt(fan_in): He's std at init, and an Adam step of
    size s on the stored weight moves the used one by s * lr_mul * gain / sqrt(fan_in) (the bias by s * lr_mul)."""
    torch.manual_seed(0)
    lr_mul, fan_in = 0.01, 256
    layer = equalized(nn.Linear(fan_in, 128), gain=1.0, lr_mul=lr_mul)
    stored, stored_bias = layer.parametrizations.weight.original, layer.parametrizations.bias.original
    he = 1.0 / math.sqrt(fan_in)
    assert stored.std().item() == pytest.approx(1 / lr_mul, rel=0.02)
    assert layer.weight.std().item() == pytest.approx(he, rel=0.02)
    torch.testing.assert_close(layer.weight, stored * lr_mul * he)
    weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    step = 1.0  # large next to the float32 spacing of stored values of about 100
    optimizer = torch.optim.Adam(layer.parameters(), lr=step, eps=1e-20)  # eps far below every gradient
    layer(torch.randn(32, fan_in)).square().sum().backward()
    signs, bias_signs = -stored.grad.sign(), -stored_bias.grad.sign()  # Adam's first step: lr times the sign
    optimizer.step()
    torch.testing.assert_close(layer.weight - weight, signs * step * lr_mul * he, rtol=1e-3, atol=1e-9)
    torch.testing.assert_close(layer.bias - bias, bias_signs * step * lr_mul, rtol=1e-3, atol=1e-9)
    g = generator(lr_mul=lr_mul)
    scales = [fc.parametrizations.weight[0].scale for fc in g.mapping_net]
    assert scales == pytest.approx([lr_mul / math.sqrt(LATENT), lr_mul / math.sqrt(W_DIM)])


def test_equalized_without_lr_multiplier_is_progans_layer() -> None:
    """lr_mul=1 draws the same weights as before and keeps a plain bias: ProGAN's checkpoints are unchanged."""
    torch.manual_seed(0)
    layer = equalized(nn.Conv2d(3, 5, 3))
    torch.manual_seed(0)
    reference = nn.Conv2d(3, 5, 3)
    nn.init.normal_(reference.weight)
    assert set(layer.state_dict()) == {"bias", "parametrizations.weight.original"}
    assert torch.equal(layer.parametrizations.weight.original, reference.weight)
    assert layer.parametrizations.weight[0].scale == math.sqrt(2.0) / math.sqrt(27)


def test_truncation_psi_zero_gives_the_image_of_w_avg_and_one_the_untruncated_image() -> None:
    g = generator(mixing_prob=0.0)
    with torch.no_grad():
        for _ in range(20):  # training-mode mappings move w_avg away from 0
            g.mapping(torch.randn(16, LATENT))
    g.eval()
    assert g.w_avg.abs().max() > 1e-3
    z = torch.randn(3, LATENT)
    ws = g.mapping(z)
    untruncated = g.synthesis(ws)
    g.truncation_psi = 0.0
    average = g.synthesis(g.w_avg.expand(3, g.num_ws, -1))
    torch.testing.assert_close(g(z), average)
    g.truncation_psi = 0.5
    torch.testing.assert_close(g.mapping(z), g.w_avg + 0.5 * (ws - g.w_avg))
    g.truncation_psi = 1.0
    assert torch.equal(g(z), untruncated)
    assert (untruncated - average).abs().max() > 1e-3


def test_w_avg_tracks_the_mapping_outputs_in_training_mode_only() -> None:
    g = generator(mixing_prob=0.0).eval()
    assert torch.equal(g.w_avg, torch.zeros(W_DIM))
    z = torch.randn(8, LATENT)
    w = g.mapping(z)[:, 0]
    g(z)
    assert torch.equal(g.w_avg, torch.zeros(W_DIM))
    g.train()
    g.mapping(z)
    torch.testing.assert_close(g.w_avg, torch.zeros(W_DIM).lerp(w.mean(0), 1 - 0.995))
    before = g.w_avg.clone()
    g(z)
    torch.testing.assert_close(g.w_avg, before.lerp(w.mean(0), 1 - 0.995))


def test_style_mixing_switches_to_a_second_latent_at_a_uniform_crossover(monkeypatch: pytest.MonkeyPatch) -> None:
    """With mixing_prob=1 the ws reaching synthesis are mapping(z1) before the cutoff and mapping(z2) after."""
    g = generator(resolution=16, mixing_prob=1.0)
    mapped: list[tuple[torch.Tensor, dict[str, Any]]] = []
    synthesized: list[torch.Tensor] = []
    mapping, synthesis = g.mapping, g.synthesis

    def record_mapping(z: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        ws = mapping(z, y, **kwargs)
        mapped.append((ws.detach(), kwargs))
        return ws

    def record_synthesis(ws: torch.Tensor) -> torch.Tensor:
        synthesized.append(ws.detach())
        return synthesis(ws)

    monkeypatch.setattr(g, "mapping", record_mapping)
    monkeypatch.setattr(g, "synthesis", record_synthesis)
    torch.manual_seed(1)
    cutoffs = set()
    for _ in range(40):
        mapped.clear()
        synthesized.clear()
        g(torch.randn(4, LATENT))
        ((first, _), (second, kwargs)), (ws,) = mapped, synthesized
        assert kwargs == {"update_w_avg": False}  # the second latents leave w_avg alone
        from_first = [torch.equal(ws[:, i], first[:, i]) for i in range(g.num_ws)]
        cutoff = from_first.index(False)
        assert 1 <= cutoff < g.num_ws and not any(from_first[cutoff:])
        assert torch.equal(ws[:, cutoff:], second[:, cutoff:])
        cutoffs.add(cutoff)
    assert cutoffs == set(range(1, g.num_ws))
    for prob, training in ((0.0, True), (1.0, False)):
        g.mixing_prob = prob
        g.train(training)
        mapped.clear()
        g(torch.randn(4, LATENT))
        assert len(mapped) == 1  # no mixing when disabled, nor in eval mode


def test_training_mode_draws_from_the_global_rng() -> None:
    """Mixing and noise use torch's global random stream: seeding reproduces a training forward pass."""
    g = generator(mixing_prob=0.5)
    with torch.no_grad():
        for layer in g.modules():
            if hasattr(layer, "noise_strength"):
                layer.noise_strength.fill_(0.3)
    z = torch.randn(4, LATENT)
    torch.manual_seed(7)
    a = g(z)
    torch.manual_seed(7)
    assert torch.equal(g(z), a)
    torch.manual_seed(8)
    assert not torch.equal(g(z), a)


def test_resampling_is_the_papers_filter() -> None:
    """2x upsampling by [1, 3, 3, 1] is bilinear interpolation away from the border; 2x downsampling
    averages with weights [1, 3, 3, 1] / 8 per axis, so a constant stays constant inside."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6)
    up = upsample2(x)
    assert up.shape == (2, 3, 12, 12)
    bilinear = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    torch.testing.assert_close(up[..., 1:-1, 1:-1], bilinear[..., 1:-1, 1:-1])
    down = downsample2(x)
    assert down.shape == (2, 3, 3, 3)
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8
    torch.testing.assert_close(down[0, 0, 1, 1], taps @ x[0, 0, 1:5, 1:5] @ taps)
    assert torch.allclose(downsample2(torch.ones(1, 1, 8, 8))[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2))


@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "conditional"])
@pytest.mark.parametrize(("channels", "resolution", "num_ws"), [(1, 28, 6), (3, 32, 8)])
def test_shapes(channels: int, resolution: int, num_ws: int, conditional: bool) -> None:
    num_classes = 3 if conditional else None
    g = generator(resolution, channels, num_classes=num_classes)
    d = StyleGAN2Discriminator(width=4, max_width=16, channels=channels, resolution=resolution, num_classes=num_classes)
    y = torch.tensor([0, 1, 2, 1]) if conditional else None
    z = torch.randn(4, LATENT)
    assert g.num_ws == num_ws
    assert g.mapping(z, y).shape == (4, num_ws, W_DIM)
    x = g(z, y)
    assert x.shape == (4, channels, resolution, resolution) and torch.isfinite(x).all()
    assert d(x, y).shape == (4,)
    if conditional:
        g.eval()
        assert (g(z, y) - g(z, torch.tensor([2, 2, 0, 0]))).abs().max() > 1e-4  # the label steers w
        with pytest.raises(ValueError, match="labels y"):
            g(z)
        with pytest.raises(ValueError, match="labels y"):
            d(x)


def test_projection_discriminator_adds_the_label_embedding_times_the_features() -> None:
    torch.manual_seed(0)
    d = StyleGAN2Discriminator(width=4, max_width=16, channels=1, resolution=16, num_classes=3)
    x = torch.randn(4, 1, 16, 16)
    h = d.features(x)
    assert h.shape == (4, d.num_features)
    assert d.embed is not None
    embedding = d.embed.weight.T  # (classes, features): the row of one-hot class k is column k
    for label in range(3):
        y = torch.full((4,), label)
        expected = d.out(h).flatten() + (embedding[label] * h).sum(1) / math.sqrt(d.num_features)
        torch.testing.assert_close(d(x, y), expected)
    assert (d(x, torch.zeros(4, dtype=torch.long)) - d(x, torch.ones(4, dtype=torch.long))).abs().max() > 1e-5


def test_discriminator_block_is_residual_with_a_unit_variance_sum() -> None:
    """(skip + residual) / sqrt(2): with the residual branch zeroed, the block is its 1x1 shortcut / sqrt(2)."""
    torch.manual_seed(0)
    d = StyleGAN2Discriminator(width=4, max_width=16, channels=1, resolution=16)
    block = d.blocks[0]
    x = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        block.conv1.parametrizations.weight.original.zero_()
    expected = F.conv2d(downsample2(x), block.skip.weight) / math.sqrt(2.0)
    torch.testing.assert_close(block(x), expected)


@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "conditional"])
def test_tiny_stylegan2_trains(conditional: bool, tiny_cfg: Compose, tmp_path: Path) -> None:
    """model=stylegan2 on Fashion-MNIST (28x28), shrunk: a few steps give finite losses and move w_avg."""
    cfg = tiny_cfg(
        "model=stylegan2",
        f"model.conditional={str(conditional).lower()}",
        "max_gen_steps=3",
        f"model.generator.latent_dim={LATENT}",
        f"model.generator.w_dim={W_DIM}",
        "model.generator.mapping_layers=2",
        "model.generator.max_width=16",
        "model.discriminator.max_width=16",
    )
    metrics = train(cfg)
    assert metrics["gen_step"] == 3.0
    assert torch.isfinite(torch.tensor([metrics["loss/d"], metrics["loss/g"]])).all()
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["state_dict"]
    assert state["generator.w_avg"].abs().max() > 0
    assert ("generator.embed.parametrizations.weight.original" in state) is conditional
    assert ("discriminator.embed.parametrizations.weight.original" in state) is conditional
