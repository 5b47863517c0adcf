"""bf16 mixed precision (CPU autocast): adversarial terms in bfloat16, penalties in float32, no NaNs."""

from __future__ import annotations

import math

import pytest
import torch

from ganforge import penalties
from ganforge.module import GANModule
from ganforge.train import train
from tests.conftest import Compose


@pytest.mark.parametrize(
    ("loss", "penalty"),
    [
        ("wgan_gp", "gp"),
        ("hinge", "r1"),
        ("nonsaturating", "dragan"),
        ("minimax", "r2"),
        ("lsgan", None),
        ("wgan", None),
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
