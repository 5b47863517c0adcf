"""SWD of Laplacian-pyramid patches (Progressive GAN): the distance against SciPy, the descriptors, its behaviour on
degraded images, reproducibility, and the scorer's option (metrics.scorer.swd)."""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import wasserstein_distance

from ganforge.data.datamodules import MNIST5kDataModule
from ganforge.errors import ConfigError
from ganforge.evaluate import evaluate
from ganforge.metrics import DomainFeatures, ImageScorer
from ganforge.metrics.image_metrics import reference_scorer, score_images
from ganforge.metrics.swd import (
    DIRECTION_STREAM,
    DescriptorSampler,
    normalize_descriptors,
    random_directions,
    sample_patches,
    seeded,
    sliced_wasserstein,
    swd_protocol,
    swd_pyramid,
    swd_scores,
)
from ganforge.pyramid import Pyramid
from tests.conftest import compose_config

# Fewer directions than ProGAN's 4 x 512: the tests' sets are small.
FAST: dict[str, Any] = {"directions": 64, "repeats": 1}


def smooth_images(n: int, seed: int, size: int = 28, channels: int = 1) -> torch.Tensor:
    """Images in [-1, 1] with structure at every scale: random 7x7 fields upsampled, plus weaker finer detail."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.randn(n, channels, 7, 7, generator=g), size=(size, size), mode="bicubic")
    fine = F.interpolate(torch.randn(n, channels, size // 2, size // 2, generator=g), size=(size, size))
    return (coarse + 0.3 * fine).tanh()


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur (reflect-padded) of standard deviation ``sigma`` px."""
    radius = max(1, round(3 * sigma))
    taps = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    taps = taps / taps.sum()
    c = images.shape[1]
    x = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


# --- the distance ----------------------------------------------------------------------------


def test_in_one_dimension_the_sliced_distance_is_scipys_wasserstein_distance() -> None:
    """Every unit direction of a line is +-1, so the SWD of 1-D sets is their Wasserstein-1 distance."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(0.4, 1.5, size=300)
    ours = sliced_wasserstein(torch.from_numpy(a)[:, None], torch.from_numpy(b)[:, None], directions=3, repeats=2)
    assert ours == pytest.approx(wasserstein_distance(a, b), rel=1e-10)
    assert ours > 0.3


def test_each_direction_contributes_scipys_distance_of_the_projections() -> None:
    """The mean over ``repeats`` x ``directions`` unit directions (drawn in that order from the generator) of the
    1-D Wasserstein distances of the projections, which SciPy computes from the unsorted values."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 5)), rng.normal(size=(200, 5)) * [1, 2, 1, 1, 0.5] + 0.2
    ours = sliced_wasserstein(torch.from_numpy(a), torch.from_numpy(b), 16, 3, seeded(7, 99))
    g = seeded(7, 99)
    units = np.concatenate([random_directions(5, 16, g).double().numpy() for _ in range(3)], axis=1)
    assert np.allclose(np.linalg.norm(units, axis=0), 1)
    reference = np.mean([wasserstein_distance(a @ u, b @ u) for u in units.T])
    assert ours == pytest.approx(reference, rel=1e-6)


def test_sets_of_other_sizes_are_cut_to_the_smaller() -> None:
    """The larger set is cut to a random subset of the smaller's size: a set against itself doubled is no longer
    0 (some values come twice, some not at all), yet far below a shifted copy."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 6, generator=g)
    assert sliced_wasserstein(a, a, **FAST) == 0.0
    assert 0 < sliced_wasserstein(torch.cat([a, a]), a, **FAST) < 0.5 * sliced_wasserstein(a, a + 1.0, **FAST)
    with pytest.raises(ValueError, match="one dimension"):
        sliced_wasserstein(a, a[:, :3])


# --- descriptors ----------------------------------------------------------------------------


def test_descriptors_are_7x7_neighbourhoods_of_the_band() -> None:
    band = torch.randn(2, 3, 10, 9, generator=torch.Generator().manual_seed(0))
    patches = sample_patches(band, 40, seeded(0, 0))
    assert patches.shape == (2, 40, 7, 7, 3)
    windows = band.unfold(2, 7, 1).unfold(3, 7, 1)  # (N, C, 4, 3, 7, 7): every position
    for i, k in itertools.product(range(2), range(40)):
        found = (windows[i].permute(1, 2, 3, 4, 0) == patches[i, k]).flatten(2).all(dim=2)
        assert found.sum() >= 1
    # The draws spread over the 2 x 12 positions, not a few of them.
    drawn = {tuple(p.flatten().tolist()) for p in patches[0]} | {tuple(p.flatten().tolist()) for p in patches[1]}
    assert len(drawn) > 12


def test_descriptors_are_normalized_per_channel_over_the_set() -> None:
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(500, 7, 7, 3, generator=g) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([2.0, -3.0, 0.5])
    flat = normalize_descriptors(raw).view(500, 7, 7, 3).double().numpy()
    values = raw.double().numpy()
    expected = (values - values.mean(axis=(0, 1, 2))) / values.std(axis=(0, 1, 2))
    assert np.allclose(flat, expected, atol=1e-5)
    assert normalize_descriptors(torch.zeros(10, 7, 7, 1)).abs().max() == 0  # a flat band stays at 0


def test_pyramid_levels_go_down_to_min_side() -> None:
    """ProGAN's 16 px from 64 px on; 7 px below, where 16 would leave 28 px images a single level."""
    assert swd_pyramid((28, 28)).sizes == ((7, 7), (14, 14), (28, 28))
    assert swd_pyramid((28, 28), min_side=16).sizes == ((28, 28),)
    assert swd_pyramid((32, 32)).sizes == ((8, 8), (16, 16), (32, 32))
    assert swd_pyramid((128, 128)).sizes == ((16, 16), (32, 32), (64, 64), (128, 128))
    assert swd_pyramid((48, 64)).sizes == ((12, 16), (24, 32), (48, 64))
    assert swd_pyramid((85, 128)).sizes == ((21, 32), (42, 64), (85, 128))  # odd sides halve rounded (SinGAN's photo)
    with pytest.raises(ConfigError, match="7x7"):
        swd_pyramid((28, 28), min_side=4)
    with pytest.raises(ConfigError, match="too small"):
        swd_pyramid((6, 6))


def test_a_set_draws_its_total_from_one_image_or_many() -> None:
    """SinGAN's single training image yields as many descriptors as many samples: a total per set."""
    one, many = DescriptorSampler(1, total=300, seed=0), DescriptorSampler(50, total=300, seed=0)
    one.add(smooth_images(1, 0))
    for batch in smooth_images(50, 1).split(16):
        many.add(batch)
    for sampler in (one, many):
        assert [d.shape for d in sampler.descriptors()] == [(300, 49)] * 3
    assert one.per_image == 300 and many.per_image == 6
    scores = swd_scores(smooth_images(1, 0), smooth_images(50, 1), descriptors=300, **FAST)
    assert set(scores) == {"swd", "swd/7", "swd/14", "swd/28"} and all(np.isfinite(list(scores.values())))
    short = DescriptorSampler(50, total=300)  # fewer images than announced: fewer descriptors, and it says so
    short.add(smooth_images(20, 1))
    with pytest.warns(UserWarning, match="20 of the 50 images"):
        assert [len(d) for d in short.descriptors()] == [120] * 3


def test_ranks_gather_their_shards_into_one_set() -> None:
    """Under DDP each rank draws from its shard of the images; gathered (here by hand), every rank keeps the same
    descriptors, the announced total of them."""
    images = smooth_images(30, 0)
    ranks = [DescriptorSampler(30, total=200, seed=1), DescriptorSampler(30, total=200, seed=1)]
    shards: list[list[torch.Tensor]] = [[], []]

    def recorder(rank: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def record(t: torch.Tensor) -> torch.Tensor:
            shards[rank].append(t)
            return t

        return record

    for rank, (sampler, shard) in enumerate(zip(ranks, images.split(15), strict=True)):
        sampler.add(shard)
        sampler.gather(recorder(rank))
    for sampler in ranks:
        levels = iter(zip(*shards, strict=True))
        sampler.gather(lambda _: torch.cat(next(levels)))  # noqa: B023 - used at once
    first, second = (sampler.descriptors() for sampler in ranks)
    assert [len(d) for d in first] == [200] * 3
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


# --- SWD of images --------------------------------------------------------------------------


def test_identical_images_score_zero() -> None:
    """Exactly 0 where the descriptors are the whole images, each once; where positions are drawn, a sampling
    floor that shrinks as the descriptors grow, well below a degraded copy's SWD."""
    images = smooth_images(40, 0, size=7)
    assert swd_scores(images, images, descriptors=40, **FAST) == {"swd": 0.0, "swd/7": 0.0}
    images = smooth_images(200, 0)
    few, many = (swd_scores(images, images, descriptors=count, **FAST) for count in (2000, 8000))
    noisy = (images + 0.4 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    assert few["swd/7"] == many["swd/7"] == 0.0  # the 7x7 level is each image's whole low-pass, each as often
    assert many["swd"] < 0.7 * few["swd"]
    assert many["swd"] < 0.3 * swd_scores(images, noisy, descriptors=8000, **FAST)["swd"]


@pytest.mark.parametrize("degrade", ["noise", "blur"])
def test_swd_grows_with_the_strength_of_a_degradation(degrade: str) -> None:
    images = smooth_images(200, 0)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    strengths = [0.05, 0.1, 0.2, 0.4] if degrade == "noise" else [0.5, 1.0, 1.5, 2.5]
    degraded = [(images + s * noise).clamp(-1, 1) if degrade == "noise" else blur(images, s) for s in strengths]
    swds = [swd_scores(images, d, descriptors=8000, **FAST)["swd"] for d in [images, *degraded]]
    assert all(a < b for a, b in itertools.pairwise(swds)), swds
    assert swds[-1] > 3 * swds[0]


def test_per_level_value_matches_a_numpy_computation() -> None:
    """The coarsest level of 14x14 images with one descriptor per image is each image's 7x7 low-pass: its SWD, by
    hand in NumPy/SciPy (per-channel normalization, projections, 1-D distances), is the one reported."""
    g = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (12, 3, 14, 14), dtype=torch.uint8, generator=g)
    fake = (real.float() * 0.7 + 40).round().to(torch.uint8)
    fake[:, 1] = 255 - fake[:, 1]
    scores = swd_scores(real, fake, descriptors=12, directions=8, repeats=2, seed=5)
    assert set(scores) == {"swd", "swd/7", "swd/14"}
    pyramid = Pyramid.halving((14, 14), 2)

    def descriptors(images: torch.Tensor) -> np.ndarray:
        low = pyramid.laplacian(images.float().div(127.5).sub(1))[0].double().numpy()  # (N, C, 7, 7)
        per_pixel = low.transpose(0, 2, 3, 1)  # descriptors are laid out (y, x, channel)
        normalized = (per_pixel - per_pixel.mean(axis=(0, 1, 2))) / per_pixel.std(axis=(0, 1, 2))
        return normalized.reshape(len(images), -1)

    a, b = descriptors(real), descriptors(fake)
    directions = seeded(5, DIRECTION_STREAM)  # the coarsest level draws first
    units = np.concatenate([random_directions(147, 8, directions).double().numpy() for _ in range(2)], axis=1)
    reference = 1e3 * np.mean([wasserstein_distance(a @ u, b @ u) for u in units.T])
    assert reference > 10
    assert scores["swd/7"] == pytest.approx(reference, rel=1e-4)
    assert scores["swd"] == pytest.approx((scores["swd/7"] + scores["swd/14"]) / 2)


def test_scores_are_reproducible_and_leave_the_global_random_stream_alone() -> None:
    real, fake = smooth_images(30, 0, size=16, channels=3), smooth_images(30, 1, size=16, channels=3)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = swd_scores(real, fake, descriptors=500, seed=3, **FAST)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert swd_scores(real, fake, descriptors=500, seed=3, **FAST) == first
    other = swd_scores(real, fake, descriptors=500, seed=4, **FAST)
    assert other != first and other["swd"] == pytest.approx(first["swd"], rel=0.5)
    # Batching does not change the positions drawn.
    assert swd_scores(real, fake, descriptors=500, seed=3, batch_size=7, **FAST) == first


# --- the scorer's option --------------------------------------------------------------------


def flat_features(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A stand-in extractor: a few pixels as features, uniform logits."""
    return images.flatten(1)[:, :8], torch.zeros(len(images), 10)


def test_the_scorer_reports_swd_with_its_protocol_when_asked() -> None:
    real, fake = smooth_images(60, 0), smooth_images(40, 1)
    options: dict[str, Any] = {"kid_subset_size": 20, "kid_subsets": 5, "precision_recall": False, "seed": 2}
    swd_options: dict[str, Any] = {"swd_descriptors": 600, "swd_directions": 64, "swd_repeats": 1}
    scorer = ImageScorer(flat_features(real)[0], swd=True, **options, **swd_options)
    scorer.set_swd_reference(real.split(25), len(real))
    scores = score_images(scorer, flat_features, fake.split(16), n=len(fake))  # type: ignore[arg-type]
    assert {"fid", "swd", "swd/7", "swd/14", "swd/28"} <= set(scores)
    expected = swd_scores(real, fake, descriptors=600, seed=2, **FAST)
    assert {k: v for k, v in scores.items() if k.startswith("swd")} == pytest.approx(expected)
    protocol = scorer.protocol()["swd"]
    assert protocol == swd_protocol(((7, 7), (14, 14), (28, 28)), 600, 64, 1, 2, None)
    assert protocol["levels"] == ["7", "14", "28"] and protocol["descriptors"] == 600
    # Without n, the batches are counted first; the same numbers.
    assert score_images(scorer, flat_features, fake.split(16)) == scores  # type: ignore[arg-type]
    # Off (the default): no swd, nothing in the protocol.
    plain = ImageScorer(flat_features(real)[0], **options)
    assert not any(k.startswith("swd") for k in score_images(plain, flat_features, fake.split(16)))  # type: ignore[arg-type]
    assert "swd" not in plain.protocol()
    # Features alone (the translation metrics' path) cannot give it: said, not silently dropped.
    with pytest.warns(UserWarning, match="no swd"):
        assert "swd" not in scorer.score(*flat_features(fake))


def test_reference_scorer_draws_the_real_descriptors_of_its_split() -> None:
    dm = MNIST5kDataModule()
    options: dict[str, Any] = {"n": 200, "kid_subset_size": 50, "precision_recall": False}
    scorer = reference_scorer(dm, DomainFeatures("mnist"), "train", swd=True, swd_descriptors=2000, **options)
    assert scorer.swd_reference is not None and [len(d) for d in scorer.swd_reference] == [2000] * 3
    test = dm.load_split(train=False).images[:200]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # descriptors were given: no warning
        scores = score_images(scorer, DomainFeatures("mnist"), test.split(50), n=200)
    assert scores["swd"] > 0 and set(scores) >= {"swd/7", "swd/14", "swd/28"}
    assert scorer.protocol()["swd"]["levels"] == ["7", "14", "28"]


def test_the_flag_is_off_by_default_and_eval_reports_swd_when_on(tmp_path: Path) -> None:
    assert compose_config("eval", []).metrics.scorer.swd is False
    counts = [
        "metrics.n_samples=100",
        "metrics.n_real=100",
        "metrics.batch_size=50",
        "metrics.scorer.kid_subset_size=50",
    ]
    swd = ["metrics.scorer.swd=true", "metrics.scorer.swd_descriptors=1000"]
    out = tmp_path / "floor.json"
    result = evaluate(compose_config("eval", ["floor=true", "data=fashion_mnist", f"out={out}", *counts, *swd]))
    assert json.loads(out.read_text()) == result
    assert {"swd", "swd/7", "swd/14", "swd/28"} <= set(result["metrics"])
    assert result["protocol"]["swd"]["descriptors"] == 1000 and result["protocol"]["swd"]["levels"] == ["7", "14", "28"]
