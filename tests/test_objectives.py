"""The non-saturating GAN objective: values, numerical stability and the generator's gradient."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from ganforge.nets import MLPDiscriminator
from ganforge.objectives import (
    Hinge,
    LeastSquares,
    MaximumLikelihood,
    Minimax,
    NonSaturating,
    Objective,
    Wasserstein,
)

REAL = torch.tensor([2.0, -1.0, 0.5, 0.0])
FAKE = torch.tensor([-3.0, 1.5, 0.0, 4.0])


def neg_log_sigmoid(x: float) -> float:
    """-log(sigmoid(x)), written out from the definition."""
    return -math.log(1.0 / (1.0 + math.exp(-x)))


def test_d_loss_matches_hand_computed_value() -> None:
    """d_loss = mean(-log sigmoid(real)) + mean(-log(1 - sigmoid(fake)))."""
    real_term = sum(neg_log_sigmoid(r) for r in REAL.tolist()) / len(REAL)
    fake_term = sum(-math.log(1.0 - 1.0 / (1.0 + math.exp(-f))) for f in FAKE.tolist()) / len(FAKE)
    assert_close(NonSaturating().d_loss(REAL, FAKE), torch.tensor(real_term + fake_term))


def test_g_loss_matches_hand_computed_value() -> None:
    """g_loss = mean(-log sigmoid(fake)), the non-saturating generator loss."""
    expected = sum(neg_log_sigmoid(f) for f in FAKE.tolist()) / len(FAKE)
    assert_close(NonSaturating().g_loss(FAKE), torch.tensor(expected))


def test_losses_at_zero_logits_are_log_two() -> None:
    """An undecided D (all logits 0) gives d_loss = 2 log 2 and g_loss = log 2."""
    zeros = torch.zeros(6)
    assert_close(NonSaturating().d_loss(zeros, zeros), torch.tensor(2 * math.log(2.0)))
    assert_close(NonSaturating().g_loss(zeros), torch.tensor(math.log(2.0)))


def test_g_loss_ignores_real_logits() -> None:
    """The non-saturating g_loss does not read real logits, and says so via g_uses_real."""
    assert NonSaturating.g_uses_real is False
    assert_close(NonSaturating().g_loss(FAKE, REAL), NonSaturating().g_loss(FAKE))


@pytest.mark.parametrize("big", [100.0, 1000.0])
def test_losses_are_stable_for_extreme_logits(big: float) -> None:
    """Logits of +-big give finite losses with the right limits (0 when right, |logit| when wrong)."""
    ns, pos, neg = NonSaturating(), torch.full((3,), big), torch.full((3,), -big)
    assert_close(ns.d_loss(pos, neg), torch.tensor(0.0))  # D perfectly right
    assert_close(ns.d_loss(neg, pos), torch.tensor(2 * big))  # D perfectly wrong: big + big
    assert_close(ns.g_loss(pos), torch.tensor(0.0))
    assert_close(ns.g_loss(neg), torch.tensor(big))


@pytest.mark.parametrize("big", [100.0, 1000.0])
def test_gradients_are_finite_for_extreme_logits(big: float) -> None:
    """Gradients through both losses stay finite for saturated logits."""
    real = torch.tensor([big, -big], requires_grad=True)
    fake = torch.tensor([-big, big], requires_grad=True)
    ns = NonSaturating()
    (ns.d_loss(real, fake) + ns.g_loss(fake)).backward()
    assert torch.isfinite(real.grad).all()
    assert torch.isfinite(fake.grad).all()


def test_generator_gradient_is_non_saturating() -> None:
    """d g_loss / d fake = -(1 - sigmoid(fake)) / N, which is ~ -1/N when D rejects fakes confidently."""
    fake = torch.tensor([-20.0, -3.0, 0.0, 2.5, 8.0], requires_grad=True)
    NonSaturating().g_loss(fake).backward()
    expected = -(1.0 - torch.sigmoid(fake.detach())) / fake.numel()
    assert_close(fake.grad, expected)
    assert_close(fake.grad[0], torch.tensor(-1.0 / fake.numel()))  # no vanishing gradient when D wins


def test_discriminator_gradients_match_logistic_regression() -> None:
    """d d_loss / d real = -(1 - sigmoid(real)) / N and d d_loss / d fake = sigmoid(fake) / N."""
    real = REAL.clone().requires_grad_(True)
    fake = FAKE.clone().requires_grad_(True)
    NonSaturating().d_loss(real, fake).backward()
    assert_close(real.grad, -(1.0 - torch.sigmoid(REAL)) / len(REAL))
    assert_close(fake.grad, torch.sigmoid(FAKE) / len(FAKE))


def test_base_objective_is_abstract() -> None:
    """The Objective base class leaves both losses unimplemented and has a readable repr."""
    with pytest.raises(NotImplementedError):
        Objective().d_loss(REAL, FAKE)
    with pytest.raises(NotImplementedError):
        Objective().g_loss(FAKE)
    assert repr(NonSaturating()) == "NonSaturating()"


# --- the other objectives, on fixed asymmetric logits ---------------------------------------

REAL = torch.tensor([2.0, 0.5, -1.5])  # beyond, inside and on the wrong side of the hinge margin
FAKE = torch.tensor([-2.0, 0.25, 1.0, -0.5])


def test_minimax_matches_hand_computed_values() -> None:
    """Minimax: same D loss as NS; G loss = mean log(1 - sigmoid(f)) = -mean softplus(f)."""
    expected_d = (
        sum(neg_log_sigmoid(r) for r in REAL.tolist()) / 3 + sum(neg_log_sigmoid(-f) for f in FAKE.tolist()) / 4
    )
    expected_g = sum(math.log(1 - 1 / (1 + math.exp(-f))) for f in FAKE.tolist()) / 4
    assert_close(Minimax().d_loss(REAL, FAKE), torch.tensor(expected_d))
    assert_close(Minimax().g_loss(FAKE), torch.tensor(expected_g))


def test_saturating_vs_non_saturating_generator_gradients() -> None:
    """dL_G/df: minimax -sigmoid(f)/N (vanishes when D rejects fakes), NS -(1 - sigmoid(f))/N (does not)."""
    logits = torch.tensor([-8.0, 0.0, 3.0], requires_grad=True)
    (g_minimax,) = torch.autograd.grad(Minimax().g_loss(logits), logits)
    (g_ns,) = torch.autograd.grad(NonSaturating().g_loss(logits), logits)
    s = torch.sigmoid(logits.detach())
    assert_close(g_minimax, -s / 3)
    assert_close(g_ns, -(1 - s) / 3)
    assert g_minimax[0].abs() < 1e-3 < g_ns[0].abs()  # D confident the sample is fake: only NS still learns


def test_hinge_matches_hand_computed_values() -> None:
    """Hinge: mean relu(1 - r) + mean relu(1 + f); G: -mean f (margins only count inside them)."""
    expected_d = (0 + 0.5 + 2.5) / 3 + (0 + 1.25 + 2.0 + 0.5) / 4
    assert_close(Hinge().d_loss(REAL, FAKE), torch.tensor(expected_d))
    assert_close(Hinge().g_loss(FAKE), torch.tensor(-(-2.0 + 0.25 + 1.0 - 0.5) / 4))


@pytest.mark.parametrize(("a", "b", "c"), [(0.0, 1.0, 1.0), (-1.0, 1.0, 0.0)])
def test_lsgan_matches_hand_computed_values(a: float, b: float, c: float) -> None:
    """LSGAN: 1/2 mean (r - b)^2 + 1/2 mean (f - a)^2; G: 1/2 mean (f - c)^2, for both codings of Mao et al."""
    objective = LeastSquares(a=a, b=b, c=c)
    expected_d = 0.5 * sum((r - b) ** 2 for r in REAL.tolist()) / 3 + 0.5 * sum((f - a) ** 2 for f in FAKE.tolist()) / 4
    assert_close(objective.d_loss(REAL, FAKE), torch.tensor(expected_d))
    assert_close(objective.g_loss(FAKE), torch.tensor(0.5 * sum((f - c) ** 2 for f in FAKE.tolist()) / 4))


def test_wasserstein_matches_hand_computed_values() -> None:
    """WGAN critic loss mean f - mean r; G loss -mean f."""
    assert_close(Wasserstein().d_loss(REAL, FAKE), FAKE.mean() - REAL.mean())
    assert_close(Wasserstein().g_loss(FAKE), -FAKE.mean())


def test_weight_clipping_bounds_every_weight_after_a_step() -> None:
    """After an optimizer step with a large lr, constrain() puts every D weight in [-clip, clip]."""
    net = MLPDiscriminator(width=16, depth=2, maxout=2)
    optimizer = torch.optim.SGD(net.parameters(), lr=10.0)
    objective = Wasserstein(clip=0.01)
    loss = objective.d_loss(net(torch.randn(8, 2)), net(torch.randn(8, 2) + 1))
    loss.backward()
    optimizer.step()
    assert max(p.abs().max().item() for p in net.parameters()) > 0.01  # the step left the box...
    objective.constrain(net)
    assert max(p.abs().max().item() for p in net.parameters()) <= 0.01  # ...and clipping brought it back


def test_unclipped_wasserstein_leaves_weights_alone() -> None:
    """With clip=None (WGAN-GP) constrain() changes nothing."""
    net = MLPDiscriminator(width=8, depth=1, maxout=1)
    before = [p.clone() for p in net.parameters()]
    Wasserstein(clip=None).constrain(net)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_maximum_likelihood_matches_hand_computed_values() -> None:
    """G loss -1/2 mean exp(f): logits [0, ln 3] give -1/2 (1 + 3) / 2 = -1; D's loss is the logistic one."""
    assert_close(MaximumLikelihood().g_loss(torch.tensor([0.0, math.log(3.0)])), torch.tensor(-1.0))
    expected_g = -0.5 * sum(math.exp(f) for f in FAKE.tolist()) / 4
    assert_close(MaximumLikelihood().g_loss(FAKE), torch.tensor(expected_g))
    expected_d = (
        sum(neg_log_sigmoid(r) for r in REAL.tolist()) / 3 + sum(neg_log_sigmoid(-f) for f in FAKE.tolist()) / 4
    )
    assert_close(MaximumLikelihood().d_loss(REAL, FAKE), torch.tensor(expected_d))
    assert MaximumLikelihood.g_uses_real is False


def test_maximum_likelihood_generator_gradient_is_exp_of_the_logit() -> None:
    """dL_G/df = -exp(f) / (2N): ~0 where D rejects a fake (as minimax), largest where D takes it for real."""
    logits = torch.tensor([-8.0, 0.0, math.log(3.0), 4.0], requires_grad=True)
    (grad,) = torch.autograd.grad(MaximumLikelihood().g_loss(logits), logits)
    assert_close(grad, torch.tensor([-math.exp(-8.0), -1.0, -3.0, -math.exp(4.0)]) / 8)
    assert grad[0].abs() < 1e-4 and grad[3].abs() > 6.0


def test_maximum_likelihood_computes_in_float32_and_does_not_clamp() -> None:
    """Half-precision logits of 12 (exp overflows float16 above ~11.1) give the float32 value; a logit of 100
    overflows float32 too, and the loss says so (inf) instead of being clamped to a finite number."""
    loss = MaximumLikelihood().g_loss(torch.tensor([12.0, 0.0], dtype=torch.float16))
    assert loss.dtype == torch.float32
    assert_close(loss, torch.tensor(-0.25 * (math.exp(12.0) + 1.0)))
    assert MaximumLikelihood().g_loss(torch.tensor([100.0, 0.0])).item() == -math.inf
