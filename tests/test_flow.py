"""Flow generators and Flow-GAN: exact inversion, log-determinants against autograd Jacobians, bits/dim against a
hand computation, the logistic prior's draws, the game's three objectives and refusals, ganforge-eval's test
bits/dim, and fmnist_flowgan's resume and DDP."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from ganforge.config import build, generator_from_checkpoint, load_checkpoint
from ganforge.errors import ConfigError
from ganforge.evaluate import evaluate
from ganforge.games.flowgan import FlowGAN
from ganforge.metrics.image_metrics import split_images
from ganforge.metrics.likelihood import bits_per_dim
from ganforge.nets.flow import FlowGenerator
from ganforge.train import train
from tests.conftest import Compose, assert_same_training_state, compose_config
from tests.test_distributed import assert_same_weights, train_ddp
from tests.test_train import read_metrics


def perturbed(architecture: str, resolution: int = 8, levels: int = 2, seed: int = 0) -> FlowGenerator:
    """A small flow in float64 with every weight moved off its initialisation (zero-initialised couplings are the
    identity, which would make the tests below trivial)."""
    torch.manual_seed(seed)
    flow = FlowGenerator(architecture, width=8, depth=2, couplings=2, levels=levels, alpha=0.05, resolution=resolution)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return flow.double()


@pytest.mark.parametrize("architecture", ["realnvp", "nice"])
def test_the_flow_inverts_exactly(architecture: str) -> None:
    flow = perturbed(architecture, resolution=8).float()
    y = torch.randn(5, 1, 8, 8)
    z, _ = flow.to_latent(y)
    assert z.shape == (5, 64)
    assert (flow.from_latent(z) - y).abs().max() < 1e-4
    assert (flow.to_latent(flow.from_latent(z))[0] - z).abs().max() < 1e-4


@pytest.mark.parametrize(("architecture", "levels"), [("realnvp", 1), ("realnvp", 2), ("nice", 0)])
def test_log_det_is_the_log_abs_det_of_the_jacobian(architecture: str, levels: int) -> None:
    flow = perturbed(architecture, resolution=4, levels=levels)
    y = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    _, log_det = flow.to_latent(y)
    jacobian = torch.autograd.functional.jacobian(lambda v: flow.to_latent(v.reshape(1, 1, 4, 4))[0][0], y.flatten())
    sign, expected = torch.linalg.slogdet(jacobian)
    assert sign != 0
    torch.testing.assert_close(log_det[0], expected, rtol=1e-9, atol=1e-9)


def test_log_prob_counts_the_dequantized_image_to_latent_jacobian() -> None:
    """log p(u) = log prior(z) + log |det dz/du| for the whole map u -> logit -> flow -> z."""
    flow = perturbed("realnvp", resolution=4, levels=1)
    x = torch.randint(0, 256, (1, 1, 4, 4)).double() / 127.5 - 1
    noise = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    u = flow.dequantize(x, noise)
    z = flow.to_latent(flow.logit(u)[0])[0]
    jacobian = torch.autograd.functional.jacobian(
        lambda v: flow.to_latent(flow.logit(v.reshape(1, 1, 4, 4))[0])[0][0], u.flatten()
    )
    expected = flow.prior_log_prob(z)[0] + torch.linalg.slogdet(jacobian)[1]
    torch.testing.assert_close(flow.log_prob(x, noise)[0], expected, rtol=1e-9, atol=1e-9)


def test_bits_per_dim_of_the_initial_flow_by_hand() -> None:
    """At initialisation every RealNVP coupling is the identity, so z = logit(alpha + (1 - 2 alpha) u): bits/dim
    from scipy's normal log-density and the logit's derivative."""
    flow = FlowGenerator("realnvp", width=8, couplings=2, levels=1, alpha=0.05, resolution=4).double()
    x = torch.randint(0, 256, (3, 1, 4, 4)).double() / 127.5 - 1
    noise = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    u = (((x + 1) * 127.5).round() + noise).numpy() / 256
    v = 0.05 + 0.9 * u
    log_p = stats.norm.logpdf(np.log(v / (1 - v))) + np.log(0.9 / (v * (1 - v)))
    expected = (-log_p.reshape(3, -1).sum(axis=1) / 16 + math.log(256)) / math.log(2)
    np.testing.assert_allclose(flow.bits_per_dim(x, noise).detach().numpy(), expected, rtol=1e-10)


def test_nice_draws_its_logistic_prior_from_normal_latents() -> None:
    flow = FlowGenerator("nice", width=8, depth=1, couplings=2, resolution=4)
    draws = flow.from_normal(torch.randn(200_000, 1, generator=torch.Generator().manual_seed(0))).flatten()
    assert stats.kstest(draws.numpy(), stats.logistic.cdf).pvalue > 0.01
    assert abs(draws.var().item() - math.pi**2 / 3) < 0.05


def test_samples_are_images_in_range() -> None:
    flow = perturbed("realnvp", resolution=8).float()
    images = flow(torch.randn(4, 64))
    assert images.shape == (4, 1, 8, 8) and images.min() >= -1 and images.max() <= 1


def test_test_bits_per_dim_reads_uint8_batches_with_seeded_noise() -> None:
    flow = perturbed("nice", resolution=4).float()
    images = torch.randint(0, 256, (6, 1, 4, 4), dtype=torch.uint8)
    value = bits_per_dim(flow, images.split(4), seed=3, device="cpu")
    assert value == bits_per_dim(flow, images.split(4), seed=3, device="cpu")
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(3))
    expected = flow.bits_per_dim(images.float() / 127.5 - 1, noise).mean()
    assert value == pytest.approx(float(expected.detach()), rel=1e-6)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FlowGenerator("glow"), "architecture='glow'"),
        (lambda: FlowGenerator("realnvp", levels=3, resolution=28), "must divide by 8"),
        (lambda: FlowGenerator("realnvp", num_classes=10), "model.conditional=false"),
        (lambda: FlowGenerator("realnvp", alpha=0.5), r"\[0, 0.5\)"),
        (lambda: FlowGAN(likelihood_weight=0.0, adversarial=False), "likelihood_weight > 0"),
        (lambda: FlowGAN(likelihood_weight=-1.0), ">= 0"),
    ],
)
def test_refusals_name_the_setting(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        build()


def test_flowgan_refuses_a_generator_without_a_likelihood(tiny_cfg: Compose) -> None:
    with pytest.raises(ConfigError, match="use model=flow"):
        train(tiny_cfg("game=flowgan", "max_gen_steps=1"))


FLOW = ["model.generator.width=8", "model.generator.depth=1", "model.generator.couplings=1"]


def test_maximum_likelihood_lowers_the_training_bits_per_dim(tiny_cfg: Compose, tmp_path: Path) -> None:
    """40 steps of fmnist_flowgan_mle: no D step, and the logged bits/dim (G's only loss) falls."""
    train(tiny_cfg("experiment=fmnist_flowgan_mle", *FLOW, "max_gen_steps=40", "trainer.log_every_n_steps=1"))
    rows = [r for r in read_metrics(tmp_path / "run") if r.get("loss/nll")]
    nll = [float(r["loss/nll"]) for r in rows]
    assert "loss/d" not in rows[0] or not rows[0]["loss/d"]
    assert nll[-1] < nll[0] - 0.5
    assert all(float(r["loss/g"]) == pytest.approx(float(r["loss/nll"])) for r in rows)


@pytest.mark.slow
def test_ganforge_eval_reports_the_test_bits_per_dim(tiny_cfg: Compose, tmp_path: Path) -> None:
    """The EMA flow's bits/dim of 60 seeded test images, as the metric computes it, in the printed and saved JSON."""
    train(tiny_cfg("experiment=fmnist_flowgan", *FLOW, "max_gen_steps=2", "~callbacks.image_metrics"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    counts = [
        "metrics.n_samples=100",
        "metrics.n_real=100",
        "metrics.batch_size=50",
        "metrics.scorer.kid_subset_size=50",
    ]
    result = evaluate(compose_config("eval", [f"ckpt={ckpt}", *counts, "metrics.bits_per_dim_n=60"]))
    generator, run_cfg = generator_from_checkpoint(load_checkpoint(ckpt))
    expected = bits_per_dim(generator, split_images(build(run_cfg.data), "test", 60, 0, 50), 0, "cpu")
    assert result["metrics"]["bits_per_dim"] == pytest.approx(expected, rel=1e-6)
    assert result["protocol"]["bits_per_dim"]["n"] == 60
    saved = json.loads((tmp_path / "run" / "last_domain_metrics.json").read_text())
    assert saved["metrics"]["bits_per_dim"] == result["metrics"]["bits_per_dim"]


def test_training_evaluations_log_the_test_bits_per_dim(tiny_cfg: Compose, tmp_path: Path) -> None:
    """A flow's image-metric evaluations add bits/dim of metrics.bits_per_dim_n test images, logged and saved with
    their protocol, equal to the metric on the final EMA generator."""
    overrides = ["experiment=fmnist_flowgan", *FLOW, "max_gen_steps=2", "metrics.every_n_gen_steps=1"]
    train(tiny_cfg(*overrides, "metrics.bits_per_dim_n=40"))
    run = tmp_path / "run"
    logged = [float(r["metrics/bits_per_dim"]) for r in read_metrics(run) if r.get("metrics/bits_per_dim")]
    assert len(logged) == 2 and logged[0] != logged[1]
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["metrics"]["bits_per_dim"] == logged[-1] and saved["protocol"]["bits_per_dim"]["n"] == 40
    generator, run_cfg = generator_from_checkpoint(load_checkpoint(run / "checkpoints" / "last.ckpt"))
    expected = bits_per_dim(generator, split_images(build(run_cfg.data), "test", 40, 0, 100), 0, "cpu")
    assert logged[-1] == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_fmnist_flowgan_resumes_bitwise(tiny_cfg: Compose, tmp_path: Path) -> None:
    """Stop at 2 steps, resume to 4: equal to 4 straight (the critic steps and the likelihood term's noise too)."""
    overrides = ["experiment=fmnist_flowgan", *FLOW, "~callbacks.image_metrics", "~callbacks.best_checkpoint"]
    train(tiny_cfg(*overrides, "max_gen_steps=2", out="first"))
    first = tmp_path / "first" / "checkpoints" / "last.ckpt"
    train(tiny_cfg(*overrides, "max_gen_steps=4", f"ckpt_path={first}", out="resumed"))
    train(tiny_cfg(*overrides, "max_gen_steps=4", out="straight"))
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert_same_training_state(load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt"), straight)


@pytest.mark.slow
def test_fmnist_flowgan_trains_with_identical_ranks_under_ddp(tmp_path: Path) -> None:
    assert_same_weights(train_ddp("ddp_cpu", tmp_path, "experiment=fmnist_flowgan", *FLOW))
