"""The equivariance metrics: the resampling that moves images (exact whole-pixel shifts, sinc interpolation of
band-limited images, its valid mask), and EQ-T / EQ-T_frac / EQ-R on toy generators with the answer known: the
identity on a transformable input is exactly equivariant (infinite PSNR), a pointwise nonlinearity on the sampled
grid is not for sub-pixel moves (finite), and a generator whose input cannot move is refused."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import ConfigError, GanforgeError
from ganforge.evaluate import evaluate
from ganforge.metrics.equivariance import equivariance, resample, transform_matrix
from ganforge.nets import DCGANGenerator, StyleGAN2Generator, StyleGAN3Generator
from ganforge.train import train
from tests.conftest import Compose, compose_config
from tests.test_stylegan3 import STYLEGAN3

SIZE = 32


def band_limited(seed: int = 0, channels: int = 1) -> torch.Tensor:
    """Sinusoids of frequencies below a quarter of the sampling rate, on a SIZE x SIZE grid."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(
        torch.arange(SIZE, dtype=torch.float64), torch.arange(SIZE, dtype=torch.float64), indexing="ij"
    )
    image = torch.zeros(channels, SIZE, SIZE, dtype=torch.float64)
    for _ in range(12):
        f = (torch.rand(2, generator=g, dtype=torch.float64) * 2 - 1) * 0.25
        image += torch.cos(2 * math.pi * (f[0] * xs + f[1] * ys) + torch.rand((), generator=g) * 6.28) / 6
    return image[None]


class Input(nn.Module):
    transform: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("transform", torch.eye(3))


class MovingImage(nn.Module):
    """A 'generator' that draws a fixed band-limited image moved by the inverse of its input transform, through
    ``nonlinearity`` applied to the sampled pixels."""

    def __init__(self, nonlinearity: nn.Module | None = None) -> None:
        super().__init__()
        self.input, self.nonlinearity = Input(), nonlinearity or nn.Identity()
        self.latent_dim, self.num_classes = 2, None
        self.image = band_limited()

    def mapping(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return z

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        moved, _ = resample(self.image.float(), torch.linalg.inv(self.input.transform.double()))
        return self.nonlinearity(moved).expand(len(ws), -1, -1, -1)


def test_whole_pixel_translations_are_exact_shifts_and_the_mask_keeps_complete_pixels() -> None:
    image = torch.randn(2, 3, SIZE, SIZE)
    moved, valid = resample(image, transform_matrix("t", torch.tensor([3 / SIZE, -2 / SIZE])))
    assert torch.equal(moved[..., 2:25, 10:25], image[..., 4:27, 7:22])  # content moves right 3, up 2
    # Complete where the source pixel is 7 or more pixels inside the edge: rows 5-22, columns 10-27 here.
    assert valid[5, 10] and valid[22, 27] and valid[5:23, 10:28].all() and valid.sum() == 18 * 18
    identity, everywhere = resample(image, torch.eye(3, dtype=torch.float64))
    assert torch.equal(identity, image) and everywhere.sum() == (SIZE - 14) ** 2


def test_sub_pixel_moves_of_a_band_limited_image_are_accurate() -> None:
    """Half a pixel there and back, and a rotation and its inverse, return the band-limited image closely."""
    image = band_limited().float()
    for transform in (transform_matrix("t_frac", torch.tensor([0.5 / SIZE, 0.25 / SIZE])), transform_matrix("r", 0.3)):
        there, _ = resample(image, transform)
        back, valid = resample(there, torch.linalg.inv(transform))
        inner = valid & resample(image, transform)[1]
        error = (back - image)[..., inner].abs().max()
        assert error < 3e-3 * image.abs().max()  # the windowed sinc's ripple, twice
    rotated, _ = resample(image, transform_matrix("r", torch.tensor(math.pi / 2)))
    torch.testing.assert_close(
        rotated[0, 0, 12:20, 12:20], torch.rot90(image[0, 0], -1)[12:20, 12:20], atol=1e-4, rtol=0
    )


def test_eq_metrics_of_known_generators() -> None:
    identity = MovingImage()
    assert equivariance(identity, "t", n=6) == math.inf
    assert equivariance(identity, "t_frac", n=6) > 100  # float32's rounding: about 150 dB
    assert equivariance(identity, "r", n=6) > 100
    rectified = MovingImage(nn.ReLU())  # a ReLU on the grid: frequencies above Nyquist, aliased (about 37 dB)
    assert equivariance(rectified, "t", n=6) == math.inf  # whole-pixel shifts commute with pointwise functions
    assert equivariance(rectified, "t_frac", n=6) < 50
    assert equivariance(rectified, "r", n=6) < 50


def test_a_stylegan3_is_scored_and_other_generators_refused() -> None:
    torch.manual_seed(0)
    g = StyleGAN3Generator(channels=1, resolution=32, num_layers=3, num_critical=1, width=1, max_width=8,
                           latent_dim=4, w_dim=4, mapping_layers=1)  # fmt: skip
    before = g.input.transform.clone()
    score = equivariance(g, "t_frac", n=4, batch_size=2)
    assert math.isfinite(score) and torch.equal(g.input.transform, before)  # the transform is put back
    with pytest.raises(ConfigError, match="its input has no transform"):
        equivariance(DCGANGenerator(latent_dim=4, channels=1, resolution=28, width=4), "t")
    with pytest.raises(ConfigError, match="choose t"):
        equivariance(g, "x")
    assert F.mse_loss(g(torch.randn(2, 4)), g(torch.randn(2, 4))) > 0
    fourier = StyleGAN2Generator(latent_dim=4, w_dim=4, mapping_layers=1, width=2, max_width=8, channels=1,
                                 resolution=32, input="fourier")  # fmt: skip
    assert not hasattr(fourier, "const") and math.isfinite(equivariance(fourier, "t", n=2))
    with pytest.raises(ConfigError, match="choose const"):
        StyleGAN2Generator(input="noise")


@pytest.mark.slow
def test_ganforge_eval_scores_the_equivariance_of_a_stylegan3_checkpoint(tiny_cfg: Compose, tmp_path: Path) -> None:
    small = [*STYLEGAN3, "data.resolution=32", "model.generator.width=1"]  # 32 px: pixels 8 inside the edge
    train(tiny_cfg("experiment=fmnist_stylegan3", *small, "max_gen_steps=2", "~callbacks.image_metrics"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    counts = ["metrics.n_samples=100", "metrics.n_real=100", "metrics.batch_size=50"]
    counts.append("metrics.scorer.kid_subset_size=50")
    result = evaluate(
        compose_config("eval", [f"ckpt={ckpt}", "equivariance=r", "equivariance_n=3", f"out={tmp_path / 'e.json'}",
                                *counts])
    )  # fmt: skip
    assert 0 < result["metrics"]["eq_r"] < math.inf
    assert result["protocol"]["equivariance"] == {"kind": "r", "n": 3, "generator": "EMA generator", "peak": 2.0}
    with pytest.raises(GanforgeError, match="use it with ckpt=PATH"):
        evaluate(compose_config("eval", ["floor=true", "data=fashion_mnist", "equivariance=t", *counts]))
    g = StyleGAN3Generator(channels=1, resolution=16, num_layers=3, num_critical=1, width=2, max_width=8,
                           latent_dim=4, w_dim=4, mapping_layers=1)  # fmt: skip
    with pytest.raises(ConfigError, match="images of 16 pixels have none"):
        equivariance(g, "r", n=2)
