"""DCGAN nets: shapes per resolution, output range, the base-resolution split and the DCGAN init."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.nets import DCGANDiscriminator, DCGANGenerator, MLPGenerator
from ganforge.nets.layers import base_resolution
from ganforge.nets.mlp import categorical_code

RESOLUTIONS = [28, 32, 64]
CHANNELS = [1, 3]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_weights(module: nn.Module) -> torch.Tensor:
    """All conv / transposed-conv weights of ``module`` as one flat tensor."""
    kinds = (nn.Conv2d, nn.ConvTranspose2d)
    return torch.cat([m.weight.detach().flatten() for m in module.modules() if isinstance(m, kinds)])


def bn_params(module: nn.Module, name: str) -> torch.Tensor:
    """``weight`` or ``bias`` of every BatchNorm2d in ``module``, flattened."""
    return torch.cat([getattr(m, name).detach().flatten() for m in module.modules() if isinstance(m, nn.BatchNorm2d)])


SPLITS = [(28, (7, 2)), (32, (4, 3)), (64, (4, 4)), (8, (4, 1)), (12, (6, 1)), (24, (6, 2)), (20, (5, 2))]


@pytest.mark.parametrize(("resolution", "expected"), SPLITS)
def test_base_resolution_splits_into_base_and_doublings(resolution: int, expected: tuple[int, int]) -> None:
    """base_resolution returns (base, n) with base * 2**n == resolution and base in 4..7."""
    assert base_resolution(resolution) == expected


@pytest.mark.parametrize("resolution", [3, 5, 7, 4])
def test_base_resolution_rejects_unreachable_resolutions(resolution: int) -> None:
    """Resolutions below 4 or that cannot be doubled from 4..7 raise ValueError."""
    with pytest.raises(ConfigError, match=str(resolution)):
        base_resolution(resolution)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("channels", CHANNELS)
def test_generator_output_shape(resolution: int, channels: int) -> None:
    """G maps (N, latent_dim) to (N, channels, resolution, resolution)."""
    g = DCGANGenerator(latent_dim=16, channels=channels, resolution=resolution, width=8)
    assert g(torch.randn(3, 16)).shape == (3, channels, resolution, resolution)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("channels", CHANNELS)
def test_discriminator_returns_one_logit_per_image(resolution: int, channels: int) -> None:
    """D maps (N, C, H, W) to a flat (N,) vector of logits."""
    d = DCGANDiscriminator(channels=channels, resolution=resolution, width=8)
    assert d(torch.randn(5, channels, resolution, resolution)).shape == (5,)


def test_generator_accepts_4d_latents() -> None:
    """G also takes latents shaped (N, latent_dim, 1, 1)."""
    g = DCGANGenerator(latent_dim=16, resolution=28, width=8)
    assert g(torch.randn(2, 16, 1, 1)).shape == (2, 1, 28, 28)


def test_generator_output_lies_in_tanh_range() -> None:
    """G's output stays inside [-1, 1] even when its last layer's pre-activations are huge."""
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=16, channels=3, resolution=32, width=8)
    with torch.no_grad():
        g.net[-2].weight.mul_(1000)  # the last transposed conv, just before tanh
    out = g(torch.randn(8, 16))
    assert out.min() >= -1.0
    assert out.max() <= 1.0
    assert out.abs().max() > 0.99  # saturated, so the bound is really enforced by tanh


def test_hidden_layer_gives_the_infogan_papers_mnist_nets() -> None:
    """``hidden=1024`` at width 64 and 28x28: G is FC 1024, FC 7x7x128, deconv 64, deconv 1 (the paper's
    parameter count); D's features are its 1024 hidden units, which its logit and InfoGAN's Q read."""
    g = DCGANGenerator(latent_dim=74, resolution=28, width=64, hidden=1024)
    fc = 74 * 1024 + 2 * 1024 + 1024 * 128 * 7 * 7 + 2 * 128 * 7 * 7
    deconvs = 128 * 64 * 16 + 2 * 64 + 64 * 1 * 16 + 1
    assert n_params(g) == fc + deconvs
    assert g(torch.randn(3, 74)).shape == (3, 1, 28, 28)
    d = DCGANDiscriminator(resolution=28, width=64, hidden=1024).eval()
    x = torch.randn(3, 1, 28, 28)
    assert d.num_features == 1024 and d.features(x).shape == (3, 1024)
    assert d(x).shape == (3,)
    head = d.net[-1]
    assert torch.allclose(d(x), (d.features(x) @ head.weight.flatten() + head.bias).flatten(), atol=1e-5)


@pytest.mark.parametrize("make", [DCGANGenerator, DCGANDiscriminator], ids=["G", "D"])
def test_dcgan_init_statistics(make: Callable[..., nn.Module]) -> None:
    """Conv weights ~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02) and all biases are zero."""
    torch.manual_seed(0)
    net = make(resolution=64, width=64)  # millions of weights: the statistics are stable
    w = conv_weights(net)
    assert abs(w.mean().item()) < 0.003
    assert abs(w.std().item() - 0.02) < 0.003
    bn_w = bn_params(net, "weight")
    assert abs(bn_w.mean().item() - 1.0) < 0.003
    assert abs(bn_w.std().item() - 0.02) < 0.005
    assert torch.all(bn_params(net, "bias") == 0)
    biases = [m.bias for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) and m.bias is not None]
    assert biases and all(torch.all(b == 0) for b in biases)


@pytest.mark.parametrize("width", [4, 8, 16])
def test_generator_parameter_count_follows_width(width: int) -> None:
    """At 28x28 (widths 2w, w) G has 32w^2 + 9822w + 1 parameters for latent_dim 100."""
    g = DCGANGenerator(latent_dim=100, channels=1, resolution=28, width=width)
    first = g.net[0]
    assert isinstance(first, nn.ConvTranspose2d)
    assert first.weight.numel() == 100 * (2 * width) * 7 * 7  # z -> 7x7 projection, no bias
    # 100*2w*49 + BN(2w) 4w + 2w*w*16 + BN(w) 2w + (w*16 + 1)
    assert n_params(g) == 32 * width**2 + 9822 * width + 1


@pytest.mark.parametrize("width", [4, 8, 16])
def test_discriminator_parameter_count_follows_width(width: int) -> None:
    """At 28x28 (widths w, 2w) D has 32w^2 + 119w + 1 parameters for one channel."""
    d = DCGANDiscriminator(channels=1, resolution=28, width=width)
    # (16w + w) + w*2w*16 + BN(2w) 4w + (2w*49 + 1)
    assert n_params(d) == 32 * width**2 + 119 * width + 1


def conv_out_channels(module: nn.Module) -> list[int]:
    return [m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]


def test_channels_double_per_resolution_halving() -> None:
    """At 64x64 (4 doublings) G narrows 8w, 4w, 2w, w -> C and D widens w, 2w, 4w, 8w -> 1."""
    assert conv_out_channels(DCGANGenerator(channels=3, resolution=64, width=8)) == [64, 32, 16, 8, 3]
    assert conv_out_channels(DCGANDiscriminator(channels=3, resolution=64, width=8)) == [8, 16, 32, 64, 1]


def test_wider_nets_have_more_parameters_at_every_resolution() -> None:
    """Doubling width strictly increases the parameter count of both nets."""
    for resolution in RESOLUTIONS:
        assert n_params(DCGANGenerator(resolution=resolution, width=16)) > n_params(
            DCGANGenerator(resolution=resolution, width=8)
        )
        assert n_params(DCGANDiscriminator(resolution=resolution, width=16)) > n_params(
            DCGANDiscriminator(resolution=resolution, width=8)
        )


# --- the categorical latent code of the MLP generator ------------------------------------------


def test_categorical_code_is_uniform_one_hot_and_piecewise_constant() -> None:
    """The normal CDF cut into K bins: one-hot rows, each code about equally likely, and the code
    changes only where z0 crosses a bin edge (G's output jumps there instead of gliding)."""
    z0 = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    codes = categorical_code(z0, 8)
    assert codes.shape == (100_000, 8) and torch.equal(codes.sum(1), torch.ones(100_000))
    frequencies = codes.mean(0)
    assert torch.allclose(frequencies, torch.full((8,), 1 / 8), atol=0.005)
    edges = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor([1 / 8, 2 / 8]))  # the first two bin edges
    just_inside = torch.stack([edges[0] + 1e-4, edges[1] - 1e-4])
    assert torch.equal(categorical_code(just_inside, 8).argmax(1), torch.tensor([1, 1]))
    assert categorical_code(edges[0:1] - 1e-4, 8).argmax().item() == 0


def test_mlp_generator_with_latent_categories_jumps_between_codes() -> None:
    g = MLPGenerator(latent_dim=3, channels=2, width=16, depth=2, batch_norm=False, latent_categories=4)
    assert g.net[0].in_features == 2 + 4
    z = torch.zeros(3, 3)
    z[:, 0] = torch.tensor([-0.01, -0.02, 0.02])  # the first two share a code (bin 1 of 4), the third is in bin 2
    out = g(z)
    assert out.shape == (3, 2)
    assert torch.equal(out[0], out[1]) and not torch.equal(out[1], out[2])
    with pytest.raises(ConfigError, match="latent_dim >= 1"):
        MLPGenerator(latent_dim=0, latent_categories=4)
