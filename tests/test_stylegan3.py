"""StyleGAN3's alias-free parts: filters, resampling, the filtered nonlinearity keeping a band-limited signal
band-limited, Fourier features that transform exactly, the layer schedule, the generator's shapes and refusals,
the fading blur of D's inputs, and fmnist_stylegan3's resume and DDP."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganforge.augment import FadingBlur
from ganforge.config import load_checkpoint
from ganforge.errors import ConfigError
from ganforge.nets.fourier import FourierInput
from ganforge.nets.stylegan3 import (
    StyleGAN3Generator,
    filtered_lrelu,
    layer_schedule,
    lowpass_filter,
    upfirdn2d,
)
from ganforge.train import train
from tests.conftest import Compose, assert_same_training_state
from tests.test_distributed import assert_same_weights, train_ddp

RATE, CUTOFF, STOPBAND, SIZE = 64.0, 8.0, 12.0, 128


def band_limited(seed: int = 0) -> torch.Tensor:
    """A sum of 20 sinusoids of random directions, frequencies below CUTOFF and phases, sampled at RATE."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE) / RATE, torch.arange(SIZE) / RATE, indexing="ij")
    x = torch.zeros(SIZE, SIZE)
    for _ in range(20):
        direction = torch.randn(2, generator=g)
        f = direction / direction.norm() * torch.rand((), generator=g) * CUTOFF
        x += torch.sin(2 * math.pi * (f[0] * xx + f[1] * yy + torch.rand((), generator=g)))
    return x[None, None]


def energy_above_stopband(x: torch.Tensor) -> float:
    """The share of the (Hann-windowed) spectrum's energy above STOPBAND, in the centre of the map."""
    c = x[0, 0, 24:-24, 24:-24]
    window = torch.hann_window(c.shape[0], periodic=False)
    spectrum = torch.fft.fft2((c - c.mean()) * window[:, None] * window[None]).abs().square()
    f = torch.fft.fftfreq(c.shape[0], d=1 / RATE)
    return (spectrum[torch.hypot(f[:, None], f[None]) > STOPBAND].sum() / spectrum.sum()).item()


def test_the_filtered_nonlinearity_keeps_a_band_limited_signal_band_limited() -> None:
    """ReLU-like nonlinearities create frequencies without bound; run at twice the rate between low-pass filters
    (the paper's filtered leaky ReLU), what leaves stays below the stopband."""
    x = band_limited()
    assert energy_above_stopband(x) < 1e-6
    taps = 12  # filter_size 6 x upsampling 2
    up = lowpass_filter(taps, CUTOFF, 2 * (STOPBAND - CUTOFF), 2 * RATE)
    down = lowpass_filter(taps, CUTOFF, 2 * (STOPBAND - CUTOFF), 2 * RATE)
    total = (SIZE - 1) * 2 + 1 - SIZE * 2 + 2 * taps - 2  # the same size out as in
    low = (total + 2) // 2
    y = filtered_lrelu(x, up, down, torch.zeros(1), 2, 2, (low, total - low, low, total - low))
    assert y.shape == x.shape
    plain = F.leaky_relu(x, 0.2)
    assert energy_above_stopband(y) < 1e-4
    assert energy_above_stopband(plain) > 100 * energy_above_stopband(y)


def test_filters_and_resampling() -> None:
    """firwin's sinc passes DC with gain 1 and is symmetric; the radial filter too; upsampling by zero insertion
    and the filter's gain keep the mean; None filters nothing; negative padding crops."""
    f = lowpass_filter(12, 4.0, 6.0, 32.0)
    assert f is not None and f.ndim == 1 and f.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(f, f.flip(0))
    radial = lowpass_filter(12, 4.0, 6.0, 32.0, radial=True)
    assert radial is not None and radial.shape == (12, 12) and radial.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(radial, radial.T)
    assert lowpass_filter(1, 4.0, 6.0, 32.0) is None
    x = torch.full((1, 2, 8, 8), 3.0)
    up = upfirdn2d(x, f, up=2, padding=(6, 5, 6, 5), gain=4)
    assert up.shape == (1, 2, 16, 16) and up[:, :, 6:10, 6:10].mean().item() == pytest.approx(3.0, rel=1e-4)
    zeros_between = upfirdn2d(torch.arange(4.0).view(1, 1, 2, 2), None, up=2)
    torch.testing.assert_close(zeros_between[0, 0], torch.tensor([[0.0, 0, 1, 0], [0, 0, 0, 0], [2, 0, 3, 0], [0] * 4]))
    assert upfirdn2d(x, None, padding=(-1, -2, 0, -3)).shape == (1, 2, 5, 5)
    assert upfirdn2d(torch.randn(1, 1, 9, 9), None, down=2).shape == (1, 1, 5, 5)


def test_fourier_features_transform_exactly() -> None:
    """The user transform moves the features' coordinates: a translation by one sample shifts the map by one
    pixel, a rotation by 90 degrees rotates it, both exactly (sinusoids evaluated at moved coordinates)."""
    torch.manual_seed(0)
    fourier = FourierInput(w_dim=4, channels=6, size=20, sampling_rate=16.0, bandwidth=2.0)
    w = torch.randn(3, 4)
    with torch.no_grad():
        base = fourier(w)
        fourier.transform[0, 2] = 1 / 16.0  # x + one sample
        shifted = fourier(w)
        torch.testing.assert_close(shifted[..., :-1], base[..., 1:], atol=1e-5, rtol=0)
        fourier.transform.copy_(torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
        rotated = fourier(w)
    assert not torch.allclose(rotated, base, atol=1e-3)
    matches = [torch.allclose(rotated, torch.rot90(base, k, dims=(2, 3)), atol=1e-5) for k in (1, 3)]
    assert sum(matches) == 1
    # The first w's affine map starts as the identity transform, whatever w is.
    fourier.transform.copy_(torch.eye(3))
    torch.testing.assert_close(fourier(torch.randn(3, 4)), base)


def test_layer_schedule_follows_the_paper() -> None:
    """Appendix F at 1024x1024 (14 layers, 2 critical, T's channel base 32768, width 32): the first cutoff 2 and
    stopband 2^2.1, the last layers critically sampled at 512 with the stopband 2^0.3 above, sampling rates powers
    of two."""
    plan = layer_schedule(1024, 14, 2, 2.0, 2**2.1, 2**0.3, 10, 32, 512, 3)
    assert plan["cutoffs"][0] == 2 and plan["cutoffs"][-3:] == pytest.approx([512] * 3)
    assert plan["rates"][0] == 16 and plan["rates"][-1] == 1024
    assert np.all(np.log2(plan["rates"]) == np.round(np.log2(plan["rates"])))
    assert plan["sizes"][0] == 36 and plan["sizes"][-1] == 1024
    assert plan["channels"][0] == 512 and plan["channels"][-2] == 32 and plan["channels"][-1] == 3
    assert np.all(np.diff(plan["cutoffs"]) >= 0)


@pytest.mark.parametrize("config", ["t", "r"])
def test_generator_shapes_and_refusals(config: str) -> None:
    torch.manual_seed(0)
    options = dict(channels=1, resolution=16, num_layers=4, num_critical=1, width=2, max_width=16)
    g = StyleGAN3Generator(config=config, latent_dim=8, w_dim=8, mapping_layers=2, **options)  # type: ignore[arg-type]
    assert g.num_ws == 6 and len(g.layers) == 5  # the input's w and one per layer (layer 0 included)
    assert g(torch.randn(2, 8)).shape == (2, 1, 16, 16)
    kernels = {layer.weight.shape[-1] for layer in g.layers[:-1]}
    assert kernels == ({1} if config == "r" else {3})
    with pytest.raises(ConfigError, match="choose t"):
        StyleGAN3Generator(config="x", **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="num_critical"):
        StyleGAN3Generator(**(options | {"num_critical": 4}))  # type: ignore[arg-type]


def test_the_blur_of_ds_inputs_fades_with_the_images_seen_and_keeps_the_mean() -> None:
    blur = FadingBlur(sigma=2.0, fade_kimg=0.1)  # 100 images
    x = torch.zeros(1, 1, 15, 15)
    x[0, 0, 7, 7] = 1.0
    taps = torch.arange(-6.0, 7.0)
    f = (taps / 2).square().neg().exp2()
    f = f / f.sum()
    blurred = blur(x)[0, 0]  # the impulse's response: the normalised exp2(-(x / sigma)^2) over |x| <= 3 sigma
    torch.testing.assert_close(blurred[1:14, 1:14], torch.outer(f, f))
    assert blurred[0].abs().sum() == 0 and blurred[:, 14].abs().sum() == 0
    assert blur(torch.ones(1, 1, 15, 15))[0, 0, 7, 7].item() == pytest.approx(1.0, rel=1e-5)
    logs = blur.observe(torch.zeros(50))
    assert blur.sigma() == pytest.approx(1.0) and logs["augment/blur_sigma"].item() == pytest.approx(1.0)
    blur.observe(torch.zeros(60))
    assert blur.sigma() == 0.0 and torch.equal(blur(x), x)
    assert "seen" in blur.state_dict()
    with pytest.raises(ConfigError, match="fade_kimg > 0"):
        FadingBlur(fade_kimg=0)


STYLEGAN3 = [
    "data.resolution=16",
    "model.generator.latent_dim=8",
    "model.generator.w_dim=8",
    "model.generator.num_layers=3",
    "model.generator.num_critical=1",
    "model.generator.max_width=8",
    "model.discriminator.max_width=8",
    "model.discriminator.group_size=4",
]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["fmnist_stylegan3", "fmnist_stylegan3_r"])
def test_fmnist_stylegan3_resumes_bitwise(experiment: str, tiny_cfg: Compose, tmp_path: Path) -> None:
    """Stop at 3 steps, resume to 6: equal to 6 straight (magnitude EMAs and R's fading blur included)."""
    overrides = [f"experiment={experiment}", *STYLEGAN3, "~callbacks.image_metrics", "~callbacks.best_checkpoint"]
    train(tiny_cfg(*overrides, "max_gen_steps=3", out="first"))
    first = tmp_path / "first" / "checkpoints" / "last.ckpt"
    train(tiny_cfg(*overrides, "max_gen_steps=6", f"ckpt_path={first}", out="resumed"))
    train(tiny_cfg(*overrides, "max_gen_steps=6", out="straight"))
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert straight["state_dict"]["generator.layers.0.magnitude_ema"] != 1.0
    if experiment.endswith("_r"):
        assert straight["state_dict"]["augment.seen"] == 6 * 16
    assert_same_training_state(load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt"), straight)


@pytest.mark.slow
def test_fmnist_stylegan3_trains_with_identical_ranks_under_ddp(tmp_path: Path) -> None:
    assert_same_weights(train_ddp("ddp_cpu", tmp_path, "experiment=fmnist_stylegan3_r", *STYLEGAN3))
