"""Mixed precision: bf16 (CPU autocast) with adversarial terms in bfloat16, penalties in float32, no NaNs; 16-mixed's
loss scale kept out of the logged gradient norms."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from ganforge import penalties
from ganforge.module import GANModule
from ganforge.train import train
from tests.conftest import Compose
from tests.test_module import make_module


@pytest.mark.parametrize(
    ("loss", "penalty"),
    [
        ("wgan_gp", "gp"),
        ("hinge", "r1"),
        ("nonsaturating", "dragan"),
        ("minimax", "r2"),
        ("lsgan", None),
        ("wgan", None),
        ("maximum_likelihood", None),
    ],
)
def test_bf16_mixed_trains_every_objective_with_penalties_in_float32(
    tiny_cfg: Compose, monkeypatch: pytest.MonkeyPatch, loss: str, penalty: str | None
) -> None:
    logit_dtypes: set[torch.dtype] = set()
    penalty_dtypes: set[tuple[torch.dtype, torch.dtype]] = set()
    critic, input_gradient = GANModule.critic, penalties.input_gradient

    def recording_critic(self: GANModule, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        logits = critic(self, x, y)
        logit_dtypes.add(logits.dtype)
        return logits

    def recording_gradient(critic: penalties.Critic, x: torch.Tensor) -> torch.Tensor:
        grad = input_gradient(critic, x)
        penalty_dtypes.add((x.dtype, grad.dtype))
        return grad

    monkeypatch.setattr(GANModule, "critic", recording_critic)
    monkeypatch.setattr(penalties, "input_gradient", recording_gradient)
    overrides = [f"loss={loss}", "trainer.precision=bf16-mixed", "max_gen_steps=4", "trainer.log_every_n_steps=1"]
    if penalty and loss != "wgan_gp":  # wgan_gp brings its gradient penalty
        overrides.append(f"+loss/penalties=[{penalty}]")
    metrics = train(tiny_cfg(*overrides))
    assert torch.bfloat16 in logit_dtypes  # autocast ran D's adversarial passes in bfloat16 ...
    if penalty:
        assert penalty_dtypes == {(torch.float32, torch.float32)}  # ... and the penalty in float32
    keys = ["loss/d", "loss/g", "metrics/fid", *([f"penalty/{penalty}"] if penalty else [])]
    for key in keys:
        assert math.isfinite(metrics[key]), key


def test_gradient_norms_are_logged_unscaled_under_a_loss_scaler() -> None:
    """Under 16-mixed, manual_backward leaves the gradients multiplied by the loss scale (the optimizer step
    unscales them); grad_norm/* is the norm of the gradients the step applies."""
    module = make_module()
    d = module.discriminator
    loss = d(torch.randn(4, 1, 8, 8)).square().mean()
    true_grads = torch.autograd.grad(loss, list(d.parameters()), retain_graph=True)
    expected = torch.nn.utils.get_total_norm(true_grads)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaler.scale(loss).backward()
    module._trainer = SimpleNamespace(precision_plugin=MixedPrecision("16-mixed", "cpu", scaler))  # type: ignore[assignment]
    assert torch.nn.utils.get_total_norm([p.grad for p in d.parameters()]) == pytest.approx(1024 * expected.item())
    assert module._grad_norm(d).item() == pytest.approx(expected.item(), rel=1e-5)
