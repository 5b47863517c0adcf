"""StyleGAN (v1): AdaIN, the parts it shares with StyleGAN2 (one mapping network, truncation, mixing), per-channel
noise, progressive growth of the style-based synthesis, refusals, resume and DDP of fmnist_stylegan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from ganforge.config import load_checkpoint
from ganforge.errors import ConfigError
from ganforge.nets import StyleGAN2Generator, StyleGANGenerator
from ganforge.nets.stylegan2 import AdaIN, SynthesisLayer
from ganforge.train import train
from tests.conftest import Compose, assert_same_training_state
from tests.test_distributed import assert_same_weights, train_ddp

LATENT, W_DIM = 8, 16
STYLEGAN = [
    "experiment=fmnist_stylegan",
    "data.resolution=16",
    "model.generator.max_width=16",
    "model.discriminator.max_width=16",
    "model.generator.latent_dim=8",
    "model.generator.w_dim=8",
    "model.schedule.stable_kimg=0.064",
    "model.schedule.fade_kimg=0.064",
]


def generator(cls: Any = StyleGANGenerator, **kwargs: Any) -> Any:
    torch.manual_seed(0)
    options = dict(latent_dim=LATENT, w_dim=W_DIM, mapping_layers=3, width=4, max_width=16, channels=1, resolution=16)
    return cls(**(options | kwargs))


def test_adain_normalises_each_channel_then_applies_the_style_by_its_formula() -> None:
    torch.manual_seed(0)
    adain = AdaIN(5, W_DIM)
    x, w = torch.randn(3, 5, 6, 6) * 4 + 2, torch.randn(3, W_DIM)
    with torch.no_grad():
        adain.affine.bias.normal_()  # away from the identity style
        style = adain.affine(w)
        out = adain(x, w)
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = (x.var(dim=(2, 3), unbiased=False, keepdim=True) + 1e-8).sqrt()
    expected = (x - mean) / std * style[:, :5, None, None] + style[:, 5:, None, None]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    fresh = AdaIN(5, W_DIM)  # starts as plain instance normalisation: scales 1, shifts 0
    torch.testing.assert_close(fresh(x, torch.zeros(3, W_DIM)), (x - mean) / std, rtol=1e-5, atol=1e-5)


def test_the_mapping_network_is_one_code_path_for_both_generations() -> None:
    """Built from the same seed, StyleGAN and StyleGAN2 map z to the same w, truncate it alike: only their
    synthesis networks (the style block, growth) differ."""
    v1, v2 = generator(), generator(StyleGAN2Generator)
    assert v1.num_ws == 6 and v2.num_ws == 6  # 16x16: v1 two per resolution (4, 8, 16), v2 one per layer + toRGB
    z = torch.randn(4, LATENT)
    v1.eval(), v2.eval()
    torch.testing.assert_close(v1.mapping(z), v2.mapping(z))
    v1.w_avg.normal_()
    v2.w_avg.copy_(v1.w_avg)
    for net in (v1, v2):
        net.truncation_psi, net.truncation_cutoff = 0.0, 2
    ws = v1.mapping(z)
    torch.testing.assert_close(ws, v2.mapping(z))
    torch.testing.assert_close(ws[:, :2], v1.w_avg.expand(4, 2, W_DIM))  # the first ws moved to w_avg
    v1.truncation_psi = 1.0
    torch.testing.assert_close(ws[:, 2:], v1.mapping(z)[:, 2:])  # the rest untouched


def test_noise_strength_is_per_channel_in_the_adain_layer() -> None:
    torch.manual_seed(0)
    layer = SynthesisLayer(4, 3, W_DIM, resolution=8, up=False, style="adain")
    assert layer.noise_strength.shape == (3, 1, 1)
    x, w = torch.randn(2, 4, 8, 8), torch.randn(2, W_DIM)
    quiet = layer(x, w, "const")
    with torch.no_grad():
        layer.noise_strength[1] = 1.0  # only channel 1 hears the noise
    loud = layer(x, w, "const")
    changed = (loud - quiet).abs().amax(dim=(0, 2, 3))
    assert changed[1] > 1e-3 and changed[0] == 0 and changed[2] == 0
    with pytest.raises(ConfigError, match="style block must be one of"):
        SynthesisLayer(4, 3, W_DIM, resolution=8, up=False, style="spade")


@pytest.mark.parametrize("stage", [1, 2])
def test_at_alpha_zero_the_grown_synthesis_is_the_previous_stage_upsampled(stage: int) -> None:
    g = generator().eval()
    ws = g.mapping(torch.randn(3, LATENT))
    g.set_progress(stage - 1, 1.0)
    previous = g.synthesis(ws)
    g.set_progress(stage, 0.0)
    faded = g.synthesis(ws)
    assert faded.shape[-1] == 2 * previous.shape[-1] == 4 * 2**stage
    torch.testing.assert_close(faded, F.interpolate(previous, scale_factor=2.0, mode="nearest"))
    g.set_progress(stage, 1.0)
    assert not torch.allclose(g.synthesis(ws), faded)


def test_stylegan_refuses_labels_and_a_cutoff_past_its_ws() -> None:
    with pytest.raises(ConfigError, match="model=stylegan is unconditional"):
        generator(num_classes=10)
    with pytest.raises(ConfigError, match="truncation_cutoff counts the first of the 6 ws"):
        generator(truncation_cutoff=7)


@pytest.mark.slow
def test_fmnist_stylegan_grows_resumes_bitwise_and_mixes_styles(tiny_cfg: Compose, tmp_path: Path) -> None:
    """Stop at step 14 (fading in 16x16), resume to 24: equal to 24 steps straight, style mixing included (its
    crossovers come from the global RNG that checkpoints carry)."""
    every = "callbacks.checkpoint.every_n_gen_steps=14"
    train(tiny_cfg(*STYLEGAN, "max_gen_steps=18", every, out="first"))
    ckpt = tmp_path / "first" / "checkpoints" / "gen_step_0000014.ckpt"
    train(tiny_cfg(*STYLEGAN, "max_gen_steps=24", f"ckpt_path={ckpt}", out="resumed"))
    train(tiny_cfg(*STYLEGAN, "max_gen_steps=24", out="straight"))
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert straight["state_dict"]["generator._extra_state"] == {"stage": 2, "alpha": 1.0}
    assert straight["hyper_parameters"]["model"]["generator"]["mixing_prob"] == 0.9
    assert_same_training_state(load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt"), straight)


@pytest.mark.slow
def test_fmnist_stylegan_trains_with_identical_ranks_under_ddp(tmp_path: Path) -> None:
    assert_same_weights(train_ddp("ddp_cpu", tmp_path, *STYLEGAN))
