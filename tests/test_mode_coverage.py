"""The PacGAN mode-coverage metrics on hand-built sample sets."""

from __future__ import annotations

import math

import pytest
import torch

from ganforge.data.toy import GaussianMixtureDataModule, mixture_centres
from ganforge.metrics import mode_coverage


def test_mixture_centres_follow_the_protocol() -> None:
    """Ring: 8 unit-circle centres at 2πk/8 (no duplicate); grid: the 25 points of {-4..4 step 2}^2."""
    ring = mixture_centres("ring")
    assert ring.shape == (8, 2)
    torch.testing.assert_close(ring.norm(dim=1), torch.ones(8))
    torch.testing.assert_close(ring[2], torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)
    grid = mixture_centres("grid")
    assert grid.shape == (25, 2) and set(grid[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    with pytest.raises(ValueError, match="ring"):
        mixture_centres("spiral")


def test_real_data_scores_perfectly() -> None:
    """Samples of the mixture itself: all modes, ~99.7 % within 3 sigma (chi with 2 dof: 98.9 %), KL ~ 0."""
    dm = GaussianMixtureDataModule(kind="grid", std=0.05, n_samples=2500, seed=3)
    data = dm.load_split(train=True)
    scores = mode_coverage(data.images, dm.centres, dm.std)
    assert scores["modes"] == 25
    assert scores["high_quality"] == pytest.approx(100 * (1 - math.exp(-4.5)), abs=0.6)  # P(|N(0, I_2)| < 3)
    assert scores["reverse_kl"] < 0.01


def test_collapsed_generator_scores_one_mode() -> None:
    """Every sample on one centre: 1 mode, 100 % high quality, KL = log(#modes)."""
    centres = mixture_centres("ring")
    scores = mode_coverage(centres[3].expand(100, 2), centres, std=0.01)
    assert scores == {"modes": 1.0, "high_quality": 100.0, "reverse_kl": pytest.approx(math.log(8))}


def test_low_quality_samples_do_not_capture_modes() -> None:
    """Samples 4 sigma away count in the histogram (KL) but neither as high quality nor as captured modes."""
    centres = mixture_centres("ring")
    near = centres + 0.02  # 2.8 sigma from each centre, sigma = 0.01
    far = centres[:4] + 0.04  # 5.7 sigma
    scores = mode_coverage(torch.cat([near, far]), centres, std=0.01)
    assert scores["modes"] == 8
    assert scores["high_quality"] == pytest.approx(100 * 8 / 12)
    p = torch.tensor([2, 2, 2, 2, 1, 1, 1, 1]) / 12
    assert scores["reverse_kl"] == pytest.approx(float((p * (p * 8).log()).sum()))
