"""SAGAN nets: self-attention, spectral norm, conditional BatchNorm, the projection discriminator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ganforge.config import load_checkpoint
from ganforge.module import EMAWithWarmup
from ganforge.nets import SAGANDiscriminator, SAGANGenerator
from ganforge.nets.layers import ConditionalBatchNorm2d, SelfAttention, refresh_parametrized_weights
from ganforge.train import train
from tests.conftest import Compose


def test_self_attention_shape_and_rows_are_distributions() -> None:
    block = SelfAttention(16)
    x = torch.randn(2, 16, 5, 6)
    assert block(x).shape == x.shape
    weights = block.attention(x)
    assert weights.shape == (2, 30, 30)
    assert (weights >= 0).all()
    assert torch.allclose(weights.sum(dim=-1), torch.ones(2, 30))


def test_self_attention_starts_as_identity_and_gamma_mixes_in_the_attended_values() -> None:
    block = SelfAttention(8)
    x = torch.randn(3, 8, 4, 4)
    assert block.gamma.item() == 0.0
    assert torch.equal(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(0.5)
    value = block.value(x).flatten(2)  # N, C, HW
    expected = x + 0.5 * (value @ block.attention(x).transpose(1, 2)).view_as(x)
    assert torch.allclose(block(x), expected, atol=1e-6)
    assert not torch.allclose(block(x), x)


def test_conditional_batchnorm_uses_the_labels_scale_and_shift() -> None:
    norm = ConditionalBatchNorm2d(3, num_classes=4)
    with torch.no_grad():
        norm.scale.weight.copy_(torch.arange(12.0).view(4, 3))
        norm.shift.weight.copy_(-torch.arange(12.0).view(4, 3))
    x = torch.randn(6, 3, 5, 5) * 3 + 1
    y = torch.tensor([0, 1, 2, 3, 1, 2])
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    normalized = (x - mean) / torch.sqrt(var + norm.norm.eps)
    expected = normalized * norm.scale.weight[y][:, :, None, None] + norm.shift.weight[y][:, :, None, None]
    assert torch.allclose(norm(x, y), expected, atol=1e-5)
    with pytest.raises(ValueError, match="labels"):
        norm(x)


def test_conditional_batchnorm_starts_as_plain_batchnorm() -> None:
    x = torch.randn(4, 2, 3, 3)
    conditional, plain = ConditionalBatchNorm2d(2, num_classes=5), nn.BatchNorm2d(2)
    assert torch.allclose(conditional(x, torch.tensor([0, 4, 2, 2])), plain(x), atol=1e-6)


def spectral_norms(module: nn.Module) -> list[float]:
    """Largest singular value of every spectrally normalized weight, as the layer uses it."""
    norms = []
    for layer in module.modules():
        if nn.utils.parametrize.is_parametrized(layer, "weight"):
            weight = layer.weight
            matrix = weight.transpose(0, 1) if isinstance(layer, nn.ConvTranspose2d) else weight
            norms.append(torch.linalg.matrix_norm(matrix.flatten(1), ord=2).item())
    return norms


@pytest.mark.parametrize("net", ["generator", "discriminator"])
def test_spectral_norm_gives_unit_largest_singular_value_after_power_iteration(net: str) -> None:
    torch.manual_seed(0)
    g = SAGANGenerator(latent_dim=8, channels=1, resolution=28, width=4, num_classes=3, attention_at=(14,))
    d = SAGANDiscriminator(channels=1, resolution=28, width=4, num_classes=3, attention_at=(14,))
    module = g if net == "generator" else d
    y = torch.tensor([0, 1, 2, 1])
    for _ in range(30):  # one power-iteration step per training-mode forward
        x = g(torch.randn(4, 8), y)
        if net == "discriminator":
            d(x.detach(), y)
    module.eval()
    norms = spectral_norms(module)
    assert len(norms) >= 8  # every conv and linear layer (and D's embedding)
    assert norms == pytest.approx([1.0] * len(norms), abs=0.02)


def test_projection_discriminator_matches_its_formula_and_depends_on_the_label() -> None:
    """D(x, y) = w . phi(x) + b + <embed(y), phi(x)> on hand-set weights."""
    torch.manual_seed(0)
    d = SAGANDiscriminator(channels=1, resolution=28, width=4, num_classes=3, attention_at=(), spectral_norm=False)
    with torch.no_grad():
        d.linear.weight.fill_(0.5)
        d.linear.bias.fill_(-1.0)
        d.embed.weight.copy_(
            torch.stack([torch.zeros(d.num_features), torch.ones(d.num_features), -torch.ones(d.num_features)])
        )
    x = torch.randn(2, 1, 28, 28)
    phi = d.features(x)
    for label, sign in ((0, 0.0), (1, 1.0), (2, -1.0)):
        y = torch.full((2,), label)
        expected = 0.5 * phi.sum(1) - 1.0 + sign * phi.sum(1)
        assert torch.allclose(d(x, y), expected, atol=1e-5)
    assert not torch.allclose(d(x, torch.tensor([1, 1])), d(x, torch.tensor([2, 2])))
    with pytest.raises(ValueError, match="labels"):
        d(x)


@pytest.mark.parametrize(("channels", "resolution", "attention"), [(1, 28, 14), (3, 32, 16), (3, 64, 32)])
def test_shapes_at_every_resolution(channels: int, resolution: int, attention: int) -> None:
    g = SAGANGenerator(latent_dim=16, channels=channels, resolution=resolution, width=4, attention_at=(attention,))
    d = SAGANDiscriminator(channels=channels, resolution=resolution, width=4, attention_at=(attention,))
    x = g(torch.randn(3, 16))
    assert x.shape == (3, channels, resolution, resolution)
    assert x.abs().max() <= 1.0
    assert d(x).shape == (3,)
    assert sum(isinstance(m, SelfAttention) for m in g.modules()) == 1
    assert sum(isinstance(m, SelfAttention) for m in d.modules()) == 1


def test_orthogonal_initialisation() -> None:
    g = SAGANGenerator(latent_dim=16, channels=1, resolution=28, width=4, spectral_norm=False)
    w = g.linear.weight  # (out, in) with out > in: orthonormal columns
    assert torch.allclose(w.T @ w, torch.eye(16), atol=1e-5)


def test_tiny_conditional_sagan_trains_and_learns_class_parameters(tiny_cfg: Compose, tmp_path: Path) -> None:
    """experiment=fmnist_sagan_cond, shrunk: a few steps move G's conditional BatchNorm tables and D's projection."""
    cfg = tiny_cfg("experiment=fmnist_sagan_cond", "max_gen_steps=3", "model.generator.latent_dim=8")
    metrics = train(cfg)
    assert metrics["gen_step"] == 3.0 and torch.isfinite(torch.tensor(metrics["loss/d"]))
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["state_dict"]
    scale = state["generator.blocks.0.bn1.scale.weight"]
    assert scale.shape == (10, cfg.model.generator.width * 4) and not torch.equal(scale, torch.ones_like(scale))
    assert "discriminator.embed.parametrizations.weight.original" in state
    # the EMA copy's spectral-norm estimates are refreshed after each update: unit vectors, not averages
    estimates = [v for k, v in state.items() if k.startswith("generator_ema.") and k.endswith(("._u", "._v"))]
    assert len(estimates) >= 8
    assert [v.norm().item() for v in estimates] == pytest.approx([1.0] * len(estimates), abs=3e-7)


@pytest.mark.parametrize("refresh", [True, False])
def test_ema_generator_keeps_unit_spectral_norms_while_the_generator_moves(refresh: bool) -> None:
    """The EMA copy averages G's weights and spectral norm's singular-vector estimates; the refresh (one
    power iteration per update, as GANModule does) keeps its eval-mode norms at 1. Without it they drift."""
    torch.manual_seed(0)
    g = SAGANGenerator(latent_dim=8, channels=1, resolution=28, width=4, attention_at=())
    ema = AveragedModel(g, multi_avg_fn=EMAWithWarmup(0.95), use_buffers=True)
    for _ in range(200):
        with torch.no_grad():
            for p in g.parameters():
                p.add_(0.05 * torch.randn_like(p))
        g(torch.randn(4, 8))  # a training-mode forward: G's own power iteration
        ema.update_parameters(g)
        if refresh:
            refresh_parametrized_weights(ema.module)
    ema.module.eval()
    deviation = max(abs(n - 1.0) for n in spectral_norms(ema.module))
    assert deviation < 0.01 if refresh else deviation > 0.1
