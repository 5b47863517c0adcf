"""Penalties against their closed forms on discriminators whose input gradient is known; the critic loss=wgan_gp
composes keeps samples apart, as a per-sample penalty needs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from ganforge.config import build
from ganforge.errors import ConfigError
from ganforge.nets import DCGANDiscriminator
from ganforge.penalties import DRAGAN, R1, R2, Drift, GradientPenalty, input_gradient
from tests.conftest import compose_config

torch.manual_seed(0)
W = torch.tensor([3.0, -4.0])  # ||W|| = 5


def linear(x: torch.Tensor) -> torch.Tensor:
    """D(x) = w . x + 1: its input gradient is w everywhere."""
    return x.flatten(1) @ W + 1.0


A = torch.tensor([[2.0, 1.0], [0.0, -1.0]])


def quadratic(x: torch.Tensor) -> torch.Tensor:
    """D(x) = x^T A x: its input gradient is (A + A^T) x."""
    return torch.einsum("ni,ij,nj->n", x, A, x)


REAL = torch.randn(16, 2)
FAKE = torch.randn(16, 2) * 3


def test_input_gradient_of_linear_and_quadratic() -> None:
    """The helper returns per-sample input gradients (flattened)."""
    assert_close(input_gradient(linear, REAL), W.expand(16, 2))
    assert_close(input_gradient(quadratic, REAL), REAL @ (A + A.T).T)


def test_gradient_penalty_closed_form_on_linear_discriminator() -> None:
    """GP = (||w|| - 1)^2 = 16 at every interpolate of a linear D."""
    assert_close(GradientPenalty().value(linear, REAL, FAKE, linear(REAL)), torch.tensor(16.0))


def test_one_sided_gradient_penalty_ignores_small_norms() -> None:
    """One-sided GP is 0 when ||grad|| < target and equals the two-sided one above it."""
    small = GradientPenalty(target=10.0, one_sided=True).value(linear, REAL, FAKE, linear(REAL))
    assert_close(small, torch.tensor(0.0))
    two_sided = GradientPenalty(target=10.0).value(linear, REAL, FAKE, linear(REAL))
    assert_close(two_sided, torch.tensor(25.0))
    assert_close(GradientPenalty(one_sided=True).value(linear, REAL, FAKE, linear(REAL)), torch.tensor(16.0))


def test_gradient_penalty_uses_interpolates() -> None:
    """On the quadratic D the GP is the mean over interpolates x_hat of (||(A + A^T) x_hat|| - 1)^2."""
    torch.manual_seed(1)
    value = GradientPenalty().value(quadratic, REAL, FAKE, quadratic(REAL))
    torch.manual_seed(1)
    eps = torch.rand(16, 1)
    x_hat = eps * REAL + (1 - eps) * FAKE
    expected = ((x_hat @ (A + A.T).T).norm(dim=1) - 1).pow(2).mean()
    assert_close(value, expected)


def test_r1_closed_form_on_quadratic_discriminator() -> None:
    """R1 = 1/2 mean ||(A + A^T) x||^2 over real samples; R2 the same over fakes."""
    assert_close(
        R1(weight=1.0).value(quadratic, REAL, FAKE, quadratic(REAL)), 0.5 * (REAL @ (A + A.T).T).pow(2).sum(1).mean()
    )
    assert_close(
        R2(weight=1.0).value(quadratic, REAL, FAKE, quadratic(REAL)), 0.5 * (FAKE @ (A + A.T).T).pow(2).sum(1).mean()
    )


def test_r1_keeps_the_graph_for_the_discriminator_update() -> None:
    """The penalty is differentiable w.r.t. D's parameters (double backprop)."""
    weight = torch.tensor([1.0, 2.0], requires_grad=True)
    value = R1(weight=1.0).value(lambda x: x @ weight, REAL, FAKE, REAL @ weight)  # = 1/2 ||w||^2
    (grad,) = torch.autograd.grad(value, weight)
    assert_close(grad, weight.detach())


def test_dragan_closed_form_on_linear_discriminator() -> None:
    """DRAGAN = (||w|| - k)^2 for a linear D, wherever the perturbation lands."""
    assert_close(DRAGAN(k=1.0).value(linear, REAL, FAKE, linear(REAL)), torch.tensor(16.0))


def test_drift_is_mean_squared_real_logit() -> None:
    """Drift = mean D(x_real)^2."""
    logits = torch.tensor([1.0, -2.0, 3.0])
    assert_close(Drift().value(linear, REAL, FAKE, logits), torch.tensor(14.0 / 3))


def test_interval_must_be_positive() -> None:
    """every=0 is rejected as a config error."""
    with pytest.raises(ConfigError, match="every must be >= 1"):
        R1(weight=1.0, every=0)


def cross_sample_gradient(critic: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The largest |d critic(x)_i / d x_j| over pairs of samples i != j, in training mode (as penalised)."""
    jacobian = torch.autograd.functional.jacobian(lambda x: critic.train()(x), x)  # (N, N, C, H, W)
    off_diagonal = ~torch.eye(len(x), dtype=torch.bool)
    return jacobian[off_diagonal].abs().max()


@pytest.mark.parametrize(("loss", "mixes_samples"), [("wgan_gp", False), ("nonsaturating", True)])
def test_wgan_gp_gives_the_dcgan_critic_per_sample_normalization(
    loss: str, mixes_samples: bool, tmp_path: Path
) -> None:
    """loss=wgan_gp composes a DCGAN critic without BatchNorm: sample i's logit has zero gradient with respect
    to sample j's input, so the per-sample penalty sees each sample alone (with BatchNorm it does not)."""
    cfg = compose_config("train", [f"loss={loss}", "model.discriminator.width=8", f"paths.output_dir={tmp_path}"])
    critic = build(cfg.model.discriminator)
    has_batch_norm = any(isinstance(m, nn.BatchNorm2d) for m in critic.modules())
    assert has_batch_norm is mixes_samples
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    if mixes_samples:
        assert cross_sample_gradient(critic, x) > 1e-4
    else:
        assert cross_sample_gradient(critic, x) == 0


def test_an_unknown_discriminator_norm_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"model\.discriminator\.norm must be one of \['batch', 'layer'\]"):
        DCGANDiscriminator(norm="instance")
