"""Perceptual path length and style mixing for evaluation: the definitions against hand computations on linear
generators, the percentile filter, the mixing crossovers, ganforge-eval's ppl= and mixing=, and their refusals."""

from __future__ import annotations

import math
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision.models._api as torchvision_weights
from torch import nn

from ganforge.errors import ConfigError, GanforgeError
from ganforge.evaluate import evaluate
from ganforge.generation import StyleMixing, generate_batches
from ganforge.metrics.path_length import lpips_distance, path_lengths, perceptual_path_length, slerp
from ganforge.nets import DCGANGenerator, StyleGAN2Generator
from ganforge.train import train
from tests.conftest import Compose, compose_config

LATENT = 6


class LinearStyles(nn.Module):
    """A style-based generator of linear maps: w = M z, image = A w (a 1x2x2 image), the same w in 3 ws."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.latent_dim, self.num_classes, self.resolution = LATENT, None, 2
        self.m, self.a = torch.randn(5, LATENT), torch.randn(4, 5)

    def mapping(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return (z @ self.m.T)[:, None].repeat(1, 3, 1)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        return (ws.mean(dim=1) @ self.a.T).reshape(-1, 1, 2, 2)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.synthesis(self.mapping(z))


def squared(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).square().sum(dim=1)


def test_slerp_follows_the_arc_between_directions_and_the_line_between_lengths() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(5, 8), torch.randn(5, 8) * 3
    torch.testing.assert_close(slerp(a, b, torch.zeros(5)), a)
    torch.testing.assert_close(slerp(a, b, torch.ones(5)), b, rtol=1e-4, atol=1e-4)
    t = torch.rand(5)
    middle = slerp(a, b, t)
    torch.testing.assert_close(middle.norm(dim=1), torch.lerp(a.norm(dim=1), b.norm(dim=1), t))
    angle = torch.acos(torch.nn.functional.cosine_similarity(a, b))
    torch.testing.assert_close(
        torch.acos(torch.nn.functional.cosine_similarity(a, middle)), t * angle, atol=1e-4, rtol=0
    )


def test_path_length_in_w_of_a_linear_generator_is_the_squared_image_of_the_step() -> None:
    """lerp in W: G(w0 + (t + eps)(w1 - w0)) - G(w0 + t(w1 - w0)) = eps A M (z1 - z0), for any t."""
    g = LinearStyles()
    values = path_lengths(g, squared, n=7, space="w", sampling="full", epsilon=1e-2, seed=3, batch_size=4)
    rng = torch.Generator().manual_seed(3)
    expected = []
    for m in (4, 3):
        z = torch.randn(2, m, LATENT, generator=rng)
        torch.rand(m, generator=rng)  # t: the value does not matter for a linear map
        expected.append(((z[1] - z[0]) @ g.m.T @ g.a.T).square().sum(dim=1))
    torch.testing.assert_close(values, torch.cat(expected), rtol=1e-3, atol=1e-4)


def test_path_length_in_z_at_the_end_points_is_the_squared_image_of_slerps_tangent() -> None:
    """At t = 0 the slerp moves along theta |z0| u_perp + (|z1| - |z0|) u0 per unit t (to first order in eps)."""
    g = LinearStyles()
    values = path_lengths(g, squared, n=5, space="z", sampling="end", epsilon=1e-3, seed=1)
    z = torch.randn(2, 5, LATENT, generator=torch.Generator().manual_seed(1))
    n0, n1 = z[0].norm(dim=1, keepdim=True), z[1].norm(dim=1, keepdim=True)
    u0, u1 = z[0] / n0, z[1] / n1
    cos = (u0 * u1).sum(dim=1, keepdim=True)
    perpendicular = (u1 - cos * u0) / (u1 - cos * u0).norm(dim=1, keepdim=True)
    tangent = torch.acos(cos) * n0 * perpendicular + (n1 - n0) * u0
    expected = (tangent @ g.m.T @ g.a.T).square().sum(dim=1)
    torch.testing.assert_close(values, expected, rtol=2e-2, atol=1e-3)


def test_perceptual_path_length_drops_the_outer_percentiles_as_the_papers_code() -> None:
    values = torch.arange(1.0, 201.0)
    values[0], values[-1] = -1e6, 1e9  # outliers
    array = values.numpy()
    low, high = np.percentile(array, 1, method="lower"), np.percentile(array, 99, method="higher")
    assert perceptual_path_length(values) == pytest.approx(array[(array >= low) & (array <= high)].mean())
    assert perceptual_path_length(values) == pytest.approx(100.5, abs=1.0)


def test_path_length_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    dcgan = DCGANGenerator(latent_dim=4, channels=1, resolution=28, width=4)
    with pytest.raises(ConfigError, match="has none: use ppl=z"):
        path_lengths(dcgan, squared, n=2, space="w")
    assert path_lengths(dcgan, squared, n=2, space="z").shape == (2,)  # any generator walks Z
    for kwargs, message in (
        ({"space": "x"}, "choose z or w"),
        ({"sampling": "mid"}, "choose full"),
        ({"epsilon": 0.0}, "must be positive"),
    ):
        with pytest.raises(ConfigError, match=message):
            path_lengths(LinearStyles(), squared, n=2, **kwargs)

    def offline(*args: Any, **kwargs: Any) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision_weights, "load_state_dict_from_url", offline)
    with pytest.raises(GanforgeError, match=r"TORCH_HOME/hub/checkpoints, or use path_length.distance=features"):
        lpips_distance("vgg")


def test_style_mixing_takes_the_first_ws_from_one_latent_and_the_rest_from_the_other() -> None:
    torch.manual_seed(0)
    g = StyleGAN2Generator(latent_dim=4, w_dim=8, mapping_layers=2, width=4, max_width=8, channels=1, resolution=8)
    mixer = StyleMixing(g).eval()
    assert mixer.latent_dim == 9 and g.num_ws == 4
    z = torch.randn(400, 9, generator=torch.Generator().manual_seed(0))
    uniform = 0.5 * (1 + torch.erf(z[:, -1] / math.sqrt(2)))
    crossover = 1 + (uniform * 3).floor().long()
    counts = torch.bincount(crossover, minlength=4)
    assert counts[0] == 0 and counts[1:].min() > 100  # every crossover in [1, 4), about equally often
    g.eval()
    with torch.no_grad():
        mixed = mixer(z[:3])
        for i in range(3):
            ws, other = g.mapping(z[i : i + 1, :4]), g.mapping(z[i : i + 1, 4:8])
            c = int(crossover[i])
            torch.testing.assert_close(mixed[i : i + 1], g.synthesis(torch.cat([ws[:, :c], other[:, c:]], dim=1)))
    assert next(generate_batches(mixer, 2, seed=0)).shape == (2, 1, 8, 8)
    with pytest.raises(ConfigError, match="mixing=true mixes the styles"):
        StyleMixing(DCGANGenerator(latent_dim=4, channels=1, resolution=28, width=4))


@pytest.mark.slow
def test_ganforge_eval_scores_path_lengths_and_mixed_styles(tiny_cfg: Compose, tmp_path: Path) -> None:
    """A few steps of fmnist_stylegan: ganforge-eval ppl=w / ppl=z give finite lengths (W's the same whether asked
    with mixing or not: the path does not mix), mixing=true scores other samples; refusals name the fix."""
    overrides = ["experiment=fmnist_stylegan", "data.resolution=16", "model.generator.latent_dim=8"]
    train(tiny_cfg(*overrides, "model.generator.w_dim=8", "max_gen_steps=3"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    counts = ["metrics.n_samples=100", "metrics.n_real=100", "metrics.scorer.kid_subset_size=50"]
    small = [*counts, "path_length.n=50", "metrics.batch_size=25"]
    plain = evaluate(compose_config("eval", [f"ckpt={ckpt}", "ppl=w", f"out={tmp_path / 'w.json'}", *small]))
    mixed = evaluate(
        compose_config("eval", [f"ckpt={ckpt}", "ppl=w", "mixing=true", f"out={tmp_path / 'm.json'}", *small])
    )
    in_z = evaluate(compose_config("eval", [f"ckpt={ckpt}", "ppl=z", f"out={tmp_path / 'z.json'}", *small]))
    assert np.isfinite(plain["metrics"]["ppl_w"]) and np.isfinite(in_z["metrics"]["ppl_z"])
    assert plain["metrics"]["ppl_w"] == mixed["metrics"]["ppl_w"]
    assert plain["metrics"]["fid"] != mixed["metrics"]["fid"]
    assert "styles mixed from two latents" in mixed["protocol"]["generated"]
    assert plain["protocol"]["path_length"]["space"] == "w" and plain["protocol"]["path_length"]["n"] == 50
    with pytest.raises(GanforgeError, match="use it with ckpt=PATH"):
        evaluate(compose_config("eval", ["floor=true", "data=fashion_mnist", "mixing=true"]))
    with pytest.raises(GanforgeError, match="choose one of features, lpips"):
        evaluate(compose_config("eval", [f"ckpt={ckpt}", "ppl=w", "path_length.distance=l2", *small]))
