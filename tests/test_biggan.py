"""BigGAN (Brock et al. 2019): shared embedding, hierarchical latents, orthogonal regularization, truncation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ganforge.config import load_checkpoint
from ganforge.errors import ConfigError, GanforgeError
from ganforge.evaluate import evaluate
from ganforge.generation import generate_batches, truncated_normal
from ganforge.nets import SAGANGenerator
from ganforge.regularizers import Orthogonal, off_diagonal_gram, penalised_weights
from ganforge.sample import sample
from ganforge.train import train
from tests.conftest import Compose, assert_same_training_state, compose_config
from tests.test_distributed import assert_same_weights, train_ddp

#: fmnist_biggan at a test's size: 32x32 padded Fashion-MNIST, 4 chunks of z (120 = 4 x 30).
BIGGAN = ["experiment=fmnist_biggan", "model.generator.width=4", "model.discriminator.width=4"]


def biggan(**kwargs: object) -> SAGANGenerator:
    options = dict(latent_dim=12, channels=1, resolution=32, width=4, num_classes=3, attention_at=(16,), shared_dim=5)
    return SAGANGenerator(**(options | {"hierarchical": True} | kwargs))  # type: ignore[arg-type]


def test_off_diagonal_gram_by_hand() -> None:
    # W = [[1, 0], [1, 1]]: W W^T = [[1, 1], [1, 2]], off the diagonal 1 and 1, so 1^2 + 1^2 = 2.
    assert off_diagonal_gram(torch.tensor([[1.0, 0.0], [1.0, 1.0]])).item() == 2.0
    # Orthogonal filters of any norms cost nothing; a 3x3 conv weight is viewed as (filters, fan-in).
    assert off_diagonal_gram(torch.diag(torch.tensor([2.0, 5.0]))).item() == 0.0
    conv = torch.zeros(2, 1, 3, 3)
    conv[0, 0, 0, 0], conv[1, 0, 0, 0], conv[1, 0, 2, 2] = 1.0, 3.0, 1.0  # the two filters share one tap: 1 * 3
    assert off_diagonal_gram(conv).item() == 2 * 3.0**2


def test_orthogonal_penalty_gradient_is_the_closed_form_on_every_g_weight_but_the_embeddings() -> None:
    """d/dW beta ||W W^T (1 - I)||^2 = 4 beta (W W^T (1 - I)) W, on every conv and linear weight of G (the trainable
    weights under spectral norm), none on the shared class embedding."""
    g = biggan()
    penalty = Orthogonal(weight=1e-4)
    (penalty.weight * penalty.value(g, 8, None)).backward()
    shared = g.shared.weight  # type: ignore[union-attr]
    assert shared.grad is None
    weights = penalised_weights(g)
    assert all(w is not shared for w in weights) and len(weights) == sum(
        isinstance(m, nn.Conv2d | nn.Linear) for m in g.modules()
    )  # every conv and linear layer: blocks, BatchNorm projections, attention, the input and the output
    for w in weights:
        flat = w.detach().flatten(1)
        gram = flat @ flat.T
        expected = 4e-4 * ((gram * (1 - torch.eye(len(gram)))) @ flat).view_as(w)
        assert w.grad is not None
        torch.testing.assert_close(w.grad, expected, rtol=1e-4, atol=1e-9)


def test_truncated_latents_lie_inside_the_threshold_and_none_is_plain_randn() -> None:
    for threshold in (2.0, 0.5, 0.04):
        z = truncated_normal((500, 64), threshold, torch.Generator().manual_seed(0))
        assert z.abs().max() <= threshold and z.std() > threshold / 3  # resampled, not clipped to the edge
        assert (z.abs() == threshold).sum() == 0
    again = truncated_normal((500, 64), 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(again, truncated_normal((500, 64), 0.5, torch.Generator().manual_seed(0)))
    plain = truncated_normal((4, 3), None, torch.Generator().manual_seed(1))
    assert torch.equal(plain, torch.randn(4, 3, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ConfigError, match=r"truncation=0\.0: the threshold on \|z_i\| must be positive"):
        truncated_normal((2,), 0.0, torch.Generator())


def test_generate_batches_truncates_the_latents_the_generator_sees() -> None:
    seen: list[torch.Tensor] = []

    class Probe(nn.Module):
        latent_dim = 16

        def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            seen.append(z)
            return z

    out = torch.cat(list(generate_batches(Probe(), 30, seed=3, batch_size=8, device="cpu", truncation=0.3)))
    assert out.shape == (30, 16) and out.abs().max() <= 0.3


def test_hierarchical_chunks_reach_the_blocks_they_belong_to() -> None:
    """The linear layer reads the first chunk; block i's BatchNorms read [shared(y), chunk i + 1]."""
    g = biggan().eval()
    z, y = torch.randn(2, 12), torch.tensor([0, 2])
    inputs: dict[str, tuple] = {}
    for name in ("linear", "blocks.0", "blocks.1", "blocks.2"):
        g.get_submodule(name).register_forward_pre_hook(lambda _, args, name=name: inputs.__setitem__(name, args))
    g(z, y)
    assert torch.equal(inputs["linear"][0], z[:, :3])
    shared = g.shared(y)  # type: ignore[misc]
    for i in range(3):
        condition = inputs[f"blocks.{i}"][1]
        assert torch.equal(condition, torch.cat([shared, z[:, 3 * (i + 1) : 3 * (i + 2)]], dim=1))
    # A chunk changes only what comes after its block.
    outputs: dict[str, torch.Tensor] = {}
    for name in ("blocks.0", "blocks.1"):
        g.get_submodule(name).register_forward_hook(lambda _, __, out, name=name: outputs.__setitem__(name, out))
    g(z, y)
    before = dict(outputs)
    z2 = z.clone()
    z2[:, 6:9] += 1.0  # the chunk of block 1
    g(z2, y)
    assert torch.equal(outputs["blocks.0"], before["blocks.0"])
    assert not torch.allclose(outputs["blocks.1"], before["blocks.1"])


def test_the_shared_embedding_carries_the_class_to_every_block() -> None:
    g = biggan().eval()
    z = torch.randn(1, 12).expand(3, -1)
    images = g(z, torch.tensor([0, 1, 2]))
    assert not torch.allclose(images[0], images[1]) and not torch.allclose(images[1], images[2])
    assert not any(isinstance(m, nn.Embedding) for m in g.blocks.modules())  # one embedding, not one per block


def test_biggan_options_refuse_what_they_cannot_build() -> None:
    with pytest.raises(ConfigError, match=r"latent_dim=13 is not divisible by 4; set model.generator.latent_dim"):
        biggan(latent_dim=13)
    with pytest.raises(ConfigError, match=r"set model.generator.shared_dim"):
        biggan(shared_dim=None)
    unconditional = biggan(num_classes=None)  # hierarchical latents alone: each block reads only its chunk
    assert unconditional(torch.randn(2, 12)).shape == (2, 1, 32, 32)


def test_sagan_state_dicts_keep_their_keys() -> None:
    """SAGAN checkpoints written before BigGAN's options existed still load: the same parameter names."""
    g = SAGANGenerator(latent_dim=8, channels=1, resolution=28, width=4, num_classes=3, attention_at=(14,))
    keys = set(g.state_dict())
    assert {"blocks.0.bn1.scale.weight", "blocks.0.bn1.shift.weight", "linear.parametrizations.weight.original"} <= keys
    assert not any(k.startswith("shared") for k in keys)


@pytest.mark.slow
def test_fmnist_biggan_resumes_bitwise_and_samples_truncated(tiny_cfg: Compose, tmp_path: Path) -> None:
    overrides = [*BIGGAN, "n_critic=2", "~callbacks.image_metrics", "~callbacks.best_checkpoint"]  # the paper's
    train(tiny_cfg(*overrides, "max_gen_steps=4", out="first"))
    first = tmp_path / "first" / "checkpoints" / "last.ckpt"
    train(tiny_cfg(*overrides, "max_gen_steps=8", f"ckpt_path={first}", out="resumed"))
    train(tiny_cfg(*overrides, "max_gen_steps=8", out="straight"))
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert straight["global_step"] == 8 * 3  # 2 D steps per G step
    assert "generator.shared.weight" in straight["state_dict"]
    assert_same_training_state(load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt"), straight)

    ckpt = tmp_path / "straight" / "checkpoints" / "last.ckpt"
    draws = {}
    for threshold in ("null", "0.04"):
        out = tmp_path / f"t{threshold}.npz"
        sample(compose_config("sample", [f"ckpt={ckpt}", "n=20", f"truncation={threshold}", f"out={out}"]))
        draws[threshold] = np.load(out)["arr_0"].astype(float)
    # Near-zero latents make the samples of a class nearly one image: less spread within each class.
    assert draws["0.04"].std(axis=0).mean() < draws["null"].std(axis=0).mean()
    with pytest.raises(ConfigError, match="truncation=-1"):
        sample(compose_config("sample", [f"ckpt={ckpt}", "n=2", "truncation=-1", f"out={tmp_path / 'x.npz'}"]))
    with pytest.raises(GanforgeError, match="use it with ckpt=PATH"):
        evaluate(compose_config("eval", ["floor=true", "data=fashion_mnist", "truncation=0.5"]))


@pytest.mark.slow
def test_fmnist_biggan_trains_with_identical_ranks_under_ddp(tmp_path: Path) -> None:
    assert_same_weights(train_ddp("ddp_cpu", tmp_path, *BIGGAN))
