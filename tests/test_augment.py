"""DiffAugment and ADA against their definitions: each op differentiable (gradcheck with its random parameters
held fixed), the identity at p=0, blits exact against hand-made shifts and flips, colour ops by their formulas
(unclamped, as in both papers), and ADA's controller stepping p by the paper's formula, also across ranks."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.autograd import gradcheck
from torch.optim import SGD
from torch.testing import assert_close

from ganforge.augment import ADA, Augmentation, DiffAugment
from ganforge.augment.ada import OP_GROUPS, OPS, ADAParams
from ganforge.augment.diffaugment import DiffAugmentParams
from ganforge.config import build, build_module
from ganforge.errors import ConfigError
from ganforge.module import GANModule
from ganforge.nets import DCGANDiscriminator, DCGANGenerator
from ganforge.objectives import NonSaturating
from ganforge.penalties import R1, GradientPenalty, Penalty
from tests.conftest import TINY, compose_config
from tests.test_module import BATCH, LATENT, RES, fit
from tests.test_toy_and_packing import packed_linear_penalty


def images(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    """Values spread over [-1, 1] (distinct, so that a moved pixel shows)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=generator, dtype=dtype) * 2 - 1


def hand_shift(x: torch.Tensor, dy: int, dx: int, fill: str) -> torch.Tensor:
    """``x`` (C, H, W) moved down by ``dy`` and right by ``dx`` pixels, filled with zeros or mirrored about the
    edges (the border pixel repeats, as grid_sample's reflection), by slicing a padded copy."""
    c, h, w = x.shape
    if fill == "zeros":
        padded = torch.zeros(c, 3 * h, 3 * w, dtype=x.dtype)
        padded[:, h : 2 * h, w : 2 * w] = x
    else:
        rows = torch.cat([x.flip(1), x, x.flip(1)], dim=1)
        padded = torch.cat([rows.flip(2), rows, rows.flip(2)], dim=2)
    return padded[:, h - dy : 2 * h - dy, w - dx : 2 * w - dx]


# ------------------------------------------------------------------------------------------------
# DiffAugment


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diffaugment_policies_are_differentiable(policy: str, channels: int) -> None:
    torch.manual_seed(0)
    augment = DiffAugment(policy)
    x = images(2, channels, 8, 8).requires_grad_()
    params = augment.sample(x)
    assert gradcheck(lambda t: augment.transform(t, params), (x,), fast_mode=True)
    assert augment(x).shape == x.shape


def test_diffaugment_color_is_the_papers_brightness_saturation_contrast() -> None:
    x = images(2, 3, 4, 4)
    b = torch.tensor([0.3, -0.5], dtype=x.dtype).view(2, 1, 1, 1)
    s = torch.tensor([0.0, 1.7], dtype=x.dtype).view(2, 1, 1, 1)
    c = torch.tensor([0.5, 1.2], dtype=x.dtype).view(2, 1, 1, 1)
    out = DiffAugment("color").transform(x, DiffAugmentParams(brightness=b, saturation=s, contrast=c))
    expected = x + b
    expected = (expected - expected.mean(1, keepdim=True)) * s + expected.mean(1, keepdim=True)
    expected = (expected - expected.mean((1, 2, 3), keepdim=True)) * c + expected.mean((1, 2, 3), keepdim=True)
    assert_close(out, expected)
    assert_close(out[0], out[0].mean(0, keepdim=True).expand(3, 4, 4))  # saturation 0: grey


def test_diffaugment_color_draws_the_papers_ranges_and_clamps_nothing() -> None:
    torch.manual_seed(0)
    augment = DiffAugment("color")
    params = augment.sample(torch.zeros(4096, 3, 1, 1))
    assert params.brightness is not None and params.saturation is not None and params.contrast is not None
    for value, low, high in [(params.brightness, -0.5, 0.5), (params.saturation, 0, 2), (params.contrast, 0.5, 1.5)]:
        assert low <= value.min() < low + 0.01 and high - 0.01 < value.max() < high
    # On a flat image saturation and contrast do nothing: what is left is the brightness, unclamped (both papers'
    # code leaves colour outside [-1, 1] as it is).
    flat = torch.full((4096, 3, 1, 1), 0.9)
    out = augment.transform(flat, params)
    assert_close(out, flat + params.brightness)
    assert out.max() > 1.3


def test_diffaugment_saturation_is_the_identity_on_one_channel() -> None:
    x = images(2, 1, 4, 4)
    ones = torch.ones(2, 1, 1, 1, dtype=x.dtype)
    params = DiffAugmentParams(brightness=ones * 0, saturation=ones * 1.8, contrast=ones)
    assert_close(DiffAugment("color").transform(x, params), x)


def test_diffaugment_translation_is_a_whole_pixel_shift_with_zero_fill() -> None:
    x = images(3, 2, 8, 8)
    shift = torch.tensor([[1, 0], [0, -1], [-1, 1]])
    out = DiffAugment("translation").transform(x, DiffAugmentParams(shift=shift))
    for i, (dy, dx) in enumerate(shift.tolist()):
        assert_close(out[i], hand_shift(x[i], dy, dx, "zeros"), rtol=0, atol=0)
    # Drawn shifts: up to round(32 / 8) = 4 pixels each way, independently per axis.
    torch.manual_seed(0)
    drawn = DiffAugment("translation").sample(torch.zeros(2000, 1, 32, 32)).shift
    assert drawn is not None
    assert set(drawn.flatten().tolist()) == set(range(-4, 5))


def test_diffaugment_cutout_zeros_a_half_size_square_anywhere() -> None:
    torch.manual_seed(0)
    augment = DiffAugment("cutout")
    x = images(500, 1, 8, 8).abs() + 0.1  # no zeros of its own
    out = augment(x)
    zeroed = out == 0
    assert torch.equal(out[~zeroed], x[~zeroed])  # the rest untouched
    counts = zeroed.flatten(1).sum(1)
    assert counts.max() == 16 and counts.min() == 4  # a 4x4 square, cut by the border down to 2x2
    rows, cols = zeroed.any(3).squeeze(1), zeroed.any(2).squeeze(1)
    assert torch.equal(counts, rows.sum(1) * cols.sum(1))  # a rectangle
    assert zeroed[:, 0, 0, 0].any() and zeroed[:, 0, -1, -1].any()  # it reaches every corner


def test_diffaugment_refuses_unknown_policies() -> None:
    with pytest.raises(ConfigError, match="translation"):
        DiffAugment("color,translate")


# ------------------------------------------------------------------------------------------------
# ADA: the pipeline


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op", OPS)
def test_every_ada_op_is_differentiable_and_keeps_the_shape(op: str, channels: int) -> None:
    torch.manual_seed(0)
    augment = ADA(ops=[op], fixed_p=1.0)
    x = images(2, channels, 8, 8).requires_grad_()
    params = augment.sample(x)
    assert gradcheck(lambda t: augment.transform(t, params), (x,), fast_mode=True)
    assert augment(x).shape == x.shape


@pytest.mark.parametrize("channels", [1, 3])
def test_ada_at_p_zero_is_the_identity(channels: int) -> None:
    augment = ADA(ops=list(OP_GROUPS))  # initial_p=0
    x = images(4, channels, 8, 8, dtype=torch.float32)
    assert_close(augment(x), x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("op", OP_GROUPS["blit"] + OP_GROUPS["geom"])
def test_geometric_ops_keep_values_in_the_images_range(op: str) -> None:
    """Bilinear samples with reflection padding are convex combinations of the input's pixels."""
    torch.manual_seed(0)
    x = images(16, 3, 8, 8, dtype=torch.float32)
    out = ADA(ops=[op], fixed_p=1.0)(x)
    assert out.min() >= x.min() - 1e-6 and out.max() <= x.max() + 1e-6
    assert not torch.allclose(out, x)  # it did something


def test_xflip_at_p_one_is_torch_flip_or_the_identity() -> None:
    """As in the paper, an applied x-flip draws i ~ U{0, 1}: each image is flipped or left as it is."""
    torch.manual_seed(0)
    x = images(64, 1, 8, 8, dtype=torch.float32)
    out = ADA(ops=["xflip"], fixed_p=1.0)(x)
    flipped = [torch.allclose(o, xi.flip(-1), atol=1e-5) for o, xi in zip(out, x, strict=True)]
    kept = [torch.allclose(o, xi, atol=1e-5) for o, xi in zip(out, x, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 16 < sum(flipped) < 48
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0])).expand(64, 3, 3)
    assert_close(
        ADA(ops=["xflip"]).transform(x, ADAParams(geometric=flip)), torch.flip(x, dims=[-1]), atol=1e-5, rtol=0
    )


def test_rotate90_gives_the_four_quarter_turns() -> None:
    torch.manual_seed(0)
    x = images(64, 1, 8, 8, dtype=torch.float32)
    out = ADA(ops=["rotate90"], fixed_p=1.0)(x)
    turns = []
    for o, xi in zip(out, x, strict=True):
        matches = [k for k in range(4) if torch.allclose(o, torch.rot90(xi, k, dims=(-2, -1)), atol=1e-5)]
        assert len(matches) == 1
        turns.append(matches[0])
    assert set(turns) == {0, 1, 2, 3}


def test_integer_translation_matches_a_hand_shift_with_mirrored_border() -> None:
    x = images(3, 2, 8, 8, dtype=torch.float32)
    moves = [(1, 0), (-2, 3), (0, -1)]  # (dy, dx): content moves down dy, right dx
    inverse = torch.eye(3).repeat(3, 1, 1)
    for i, (dy, dx) in enumerate(moves):
        inverse[i, 0, 2], inverse[i, 1, 2] = -dx, -dy  # output pixel p samples the input at p - t
    out = ADA(ops=["xint"]).transform(x, ADAParams(geometric=inverse))
    for i, (dy, dx) in enumerate(moves):
        assert_close(out[i], hand_shift(x[i], dy, dx, "mirror"), atol=1e-5, rtol=0)
    # Drawn: round(U(-1/8, 1/8) * 16) whole pixels, so every output is one of the shifts by at most 2.
    torch.manual_seed(0)
    x = images(32, 1, 16, 16, dtype=torch.float32)
    out = ADA(ops=["xint"], fixed_p=1.0)(x)
    for o, xi in zip(out, x, strict=True):
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
        assert any(torch.allclose(o, hand_shift(xi, dy, dx, "mirror"), atol=1e-5) for dy, dx in shifts)


def per_sample_offset_and_gain(x: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``out = gain * x + offset`` per sample: (gain, offset), by least squares over the pixels."""
    xs, ys = x.flatten(1), out.flatten(1)
    xc, yc = xs - xs.mean(1, keepdim=True), ys - ys.mean(1, keepdim=True)
    gain = (xc * yc).sum(1) / (xc * xc).sum(1)
    return gain, ys.mean(1) - gain * xs.mean(1)


@pytest.mark.parametrize("channels", [1, 3])
def test_brightness_and_contrast_follow_the_papers_distributions_unclamped(channels: int) -> None:
    torch.manual_seed(0)
    x = images(4096, channels, 2, 2)
    gain, offset = per_sample_offset_and_gain(x, ADA(ops=["brightness"], fixed_p=1.0)(x))
    assert_close(gain, torch.ones_like(gain))
    assert abs(offset.std().item() - 0.2) < 0.01 and abs(offset.mean().item()) < 0.01  # b ~ N(0, 0.2^2)
    gain, offset = per_sample_offset_and_gain(x, ADA(ops=["contrast"], fixed_p=1.0)(x))
    assert_close(offset, torch.zeros_like(offset))
    assert abs(gain.log2().std().item() - 0.5) < 0.02  # c ~ lognormal(0, (0.5 ln 2)^2)
    # Not clamped, as in the paper: colour leaves [-1, 1].
    assert ADA(ops=["color"], fixed_p=1.0)(x).abs().max() > 1.5


def test_luma_hue_and_saturation_on_rgb() -> None:
    """Luma flip negates the grey component and keeps the chroma; hue keeps both the grey component and the
    chroma's length; saturation scales the chroma and keeps the grey component."""
    torch.manual_seed(0)
    x = images(256, 3, 2, 2)
    grey, chroma = x.mean(1, keepdim=True), x - x.mean(1, keepdim=True)
    out = ADA(ops=["lumaflip"], fixed_p=1.0)(x)
    flipped = torch.isclose(out.mean(1, keepdim=True), -grey).flatten(1).all(1)
    kept = torch.isclose(out, x).flatten(1).all(1)
    assert torch.all(flipped ^ kept) and 64 < flipped.sum() < 192
    assert_close(out - out.mean(1, keepdim=True), chroma)
    out = ADA(ops=["hue"], fixed_p=1.0)(x)
    assert_close(out.mean(1, keepdim=True), grey)
    assert_close((out - out.mean(1, keepdim=True)).norm(dim=1), chroma.norm(dim=1))
    assert not torch.allclose(out, x)
    out = ADA(ops=["saturation"], fixed_p=1.0)(x)
    assert_close(out.mean(1, keepdim=True), grey)
    factor = (out - grey).norm(dim=1).flatten(1) / chroma.norm(dim=1).flatten(1)
    assert_close(factor, factor[:, :1].expand_as(factor))  # one factor per sample
    assert abs(factor[:, 0].log2().std().item() - 1.0) < 0.15  # s ~ lognormal(0, (1 ln 2)^2)


def test_on_one_channel_luma_flip_negates_and_hue_and_saturation_do_nothing() -> None:
    torch.manual_seed(0)
    x = images(64, 1, 4, 4)
    assert_close(ADA(ops=["hue", "saturation"], fixed_p=1.0)(x), x)
    out = ADA(ops=["lumaflip"], fixed_p=1.0)(x)
    negated = torch.isclose(out, -x).flatten(1).all(1)
    assert torch.all(negated ^ torch.isclose(out, x).flatten(1).all(1)) and 0 < negated.sum() < 64


def test_cutout_zeros_half_of_each_side() -> None:
    torch.manual_seed(0)
    x = images(256, 3, 8, 8).abs() + 0.1
    out = ADA(ops=["cutout"], fixed_p=1.0)(x)
    zeroed = out == 0
    assert torch.equal(out[~zeroed], x[~zeroed])
    assert torch.equal(zeroed[:, :1].expand_as(zeroed), zeroed)  # the same pixels in every channel
    counts = zeroed[:, 0].flatten(1).sum(1)
    assert counts.max() == 16 and counts.min() >= 1  # 4x4 pixels at most (by their centres), cut by the border


def test_colour_on_other_channel_counts_is_refused() -> None:
    with pytest.raises(ConfigError, match="1- or 3-channel"):
        ADA(ops=["color"], fixed_p=1.0)(torch.zeros(2, 2, 4, 4))
    assert ADA(ops=["blit", "geom"], fixed_p=1.0)(torch.zeros(2, 2, 4, 4)).shape == (2, 2, 4, 4)


def test_unknown_ops_are_refused() -> None:
    with pytest.raises(ConfigError, match="bgc"):
        ADA(ops=["blit", "noise"])


# ------------------------------------------------------------------------------------------------
# ADA: the controller


def observe_many(augment: ADA, logits: torch.Tensor, times: int) -> dict[str, torch.Tensor]:
    logged: dict[str, torch.Tensor] = {}
    for _ in range(times):
        logged = augment.observe(logits)
    return logged


def test_p_rises_when_d_is_sure_of_the_reals_by_the_papers_step() -> None:
    augment = ADA(interval=4, speed_kimg=500)
    observe_many(augment, torch.ones(8), 3)
    assert augment.p.item() == 0 and int(augment.steps) == 3 and math.isnan(augment.rt.item())
    logged = augment.observe(torch.ones(8))  # r_t = 1 > 0.6: p += (8 * 4) / (500 * 1000)
    assert augment.p.item() == pytest.approx(8 * 4 / 500_000, rel=1e-6)
    assert logged["augment/p"].item() == augment.p.item() and logged["augment/rt"].item() == 1.0
    assert int(augment.steps) == 0 and augment.sign_sum.item() == 0 and augment.sign_count.item() == 0
    observe_many(augment, torch.ones(8, 1), 4)  # shaped (B, 1) like a D's logits
    assert augment.p.item() == pytest.approx(2 * 8 * 4 / 500_000, rel=1e-6)


def test_p_falls_when_d_is_unsure_and_stays_within_zero_and_one() -> None:
    augment = ADA(initial_p=0.5, interval=4, speed_kimg=500)
    logged = observe_many(augment, -torch.ones(8), 4)  # r_t = -1 < 0.6
    assert augment.p.item() == pytest.approx(0.5 - 8 * 4 / 500_000, rel=1e-6)
    assert logged["augment/rt"].item() == -1.0
    mostly_positive = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0])  # r_t = 0.25 < 0.6
    observe_many(augment, mostly_positive, 4)
    assert augment.p.item() == pytest.approx(0.5 - 2 * 8 * 4 / 500_000, rel=1e-6)
    assert augment.rt.item() == 0.25
    fast = ADA(initial_p=0.99, interval=1, speed_kimg=0.001)  # a step of 8 / 1 per batch
    observe_many(fast, torch.ones(8), 3)
    assert fast.p.item() == 1.0
    observe_many(fast, -torch.ones(8), 1)
    assert fast.p.item() == 0.0
    observe_many(fast, -torch.ones(8), 2)
    assert fast.p.item() == 0.0


def test_fixed_p_tracks_rt_but_does_not_adapt() -> None:
    augment = ADA(fixed_p=0.3, interval=2)
    logged = observe_many(augment, torch.ones(8), 6)
    assert augment.p.item() == pytest.approx(0.3) and logged["augment/rt"].item() == 1.0


def test_state_dict_round_trip_restores_the_controller_bitwise() -> None:
    augment = ADA(initial_p=0.5, interval=4, speed_kimg=1)
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0, -0.2, 1.0])  # r_t = 1/3: p falls by 24 / 1000 per update
    observe_many(augment, logits, 6)  # one update, then two steps into the next interval
    assert augment.p.item() == pytest.approx(0.5 - 24 / 1000, rel=1e-6)
    checkpoint = io.BytesIO()
    torch.save(augment.state_dict(), checkpoint)
    checkpoint.seek(0)
    state = torch.load(checkpoint)
    assert set(state) == {"p", "sign_sum", "sign_count", "steps", "rt"}
    assert int(state["steps"]) == 2 and state["sign_sum"].item() == 4 and state["sign_count"].item() == 12
    resumed = ADA(interval=4, speed_kimg=1)  # p = 0 until loaded
    resumed.load_state_dict(state)
    for name, value in state.items():
        assert torch.equal(resumed.state_dict()[name], value), name
    observe_many(augment, logits, 5)
    observe_many(resumed, logits, 5)
    for name, value in augment.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


def test_under_distributed_the_sums_are_all_reduced_before_p_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ranks seeing the same logits (simulated: the reduction doubles the sums) step p by the global
    batch, 2 * 8 * 4 images."""
    reduced: list[torch.Tensor] = []

    def all_reduce(tensor: torch.Tensor) -> None:
        reduced.append(tensor.clone())
        tensor.mul_(2)

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    augment = ADA(interval=4, speed_kimg=500)
    observe_many(augment, torch.ones(8), 4)
    assert len(reduced) == 4 and all(torch.equal(t, torch.tensor([8.0, 8.0])) for t in reduced)
    assert augment.p.item() == pytest.approx(2 * 8 * 4 / 500_000, rel=1e-6)


def _rank(rank: int, store: str, out: str) -> None:
    """Rank 0's reals all score positive, rank 1's half: r_t = 0.5 < 0.6 for both, so p falls on both."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        augment = ADA(initial_p=0.5, interval=2, speed_kimg=500)
        logits = torch.ones(4) if rank == 0 else torch.tensor([1.0, -1.0, 1.0, -1.0])
        observe_many(augment, logits, 2)
        torch.save(augment.state_dict(), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_step_p_identically_by_the_global_rt(tmp_path: Path) -> None:
    mp.spawn(_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    states = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name
    assert states[0]["rt"].item() == 0.5
    assert states[0]["p"].item() == pytest.approx(0.5 - 2 * 4 * 2 / 500_000, rel=1e-6)


# ------------------------------------------------------------------------------------------------
# In the loop, and the configs


@pytest.mark.parametrize("augment", [DiffAugment(), ADA(ops=list(OP_GROUPS), initial_p=0.5, interval=1)])
def test_the_loop_trains_through_each_augmentation_and_logs_adas_controller(augment: DiffAugment | ADA) -> None:
    torch.manual_seed(0)
    gan = GANModule(
        generator=DCGANGenerator(latent_dim=LATENT, channels=1, resolution=RES, width=8),
        discriminator=DCGANDiscriminator(channels=1, resolution=RES, width=8),
        objective=NonSaturating(),
        g_optimizer=lambda params: SGD(params, lr=0.01),
        d_optimizer=lambda params: SGD(params, lr=0.01),
        augment=augment,
    )
    logged: list[dict[str, float]] = []
    gan.log_dict = lambda values, **kwargs: logged.append({k: float(v) for k, v in values.items()})  # type: ignore
    gan._logs_this_batch = lambda g_step_follows: True  # type: ignore[method-assign]
    fit(gan, n_batches=4)
    if isinstance(augment, ADA):
        step = BATCH / 500_000  # one D step per update
        rows = [row for row in logged if "augment/p" in row]
        assert len(rows) == 4
        p = 0.5
        for row in rows:  # each D step moves p by the sign of its r_t
            p += step * math.copysign(1, row["augment/rt"] - 0.6) if row["augment/rt"] != 0.6 else 0
            assert row["augment/p"] == pytest.approx(p, abs=1e-7)
        assert torch.equal(gan.state_dict()["augment.p"], augment.p)
    else:
        assert all(math.isfinite(row["loss/d"]) for row in logged if "loss/d" in row)


class Doubling(Augmentation):
    """An augmentation whose gradient is known: x -> 2x."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return 2 * images


@pytest.mark.parametrize(
    ("penalty", "expected"), [(R1(weight=1.0), 0.5 * 10.0**2), (GradientPenalty(), (10.0 - 1.0) ** 2)]
)
def test_penalties_differentiate_through_the_augmentation_wrt_the_unaugmented_inputs(
    penalty: Penalty, expected: float
) -> None:
    """As StyleGAN2-ADA and DiffAugment take R1: the gradient of D(augment(x)) w.r.t. x. With D = w . pack, ||w|| = 5,
    and x -> 2x, that is ||2w|| = 10 per pack (w.r.t. the augmented images it would be 5: R1 12.5, GP 16)."""
    assert packed_linear_penalty(penalty, Doubling()) == pytest.approx(expected)


@pytest.mark.parametrize("name", ["diffaugment", "ada"])
def test_the_augment_configs_build_the_papers_defaults_into_the_module(name: str) -> None:
    cfg = compose_config("train", [*TINY, f"augment={name}"])
    augment = build(cfg.augment)
    if name == "ada":
        assert isinstance(augment, ADA)
        assert augment.ops == OP_GROUPS["blit"] + OP_GROUPS["geom"] + OP_GROUPS["color"]
        assert (augment.target, augment.interval, augment.speed_kimg, augment.p.item()) == (0.6, 4, 500, 0.0)
        assert "augment.p" in build_module(cfg).state_dict()  # checkpointed with the module
    else:
        assert isinstance(augment, DiffAugment)
        assert augment.policy == ("color", "translation", "cutout")
