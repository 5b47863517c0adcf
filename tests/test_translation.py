"""Image-to-image games: paired data, U-Net, PatchGAN, SRResNet, the pix2pix and SRGAN losses, the metrics,
ganforge-translate, and training end to end."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import seed_everything
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torchvision.transforms import v2

from ganforge.config import build, build_module, generator_from_checkpoint, load_checkpoint
from ganforge.data.datamodules import MNIST5kDataModule, TensorImages
from ganforge.data.paired import MASK_FILL, PairedDataModule, PairedFolderDataModule, PairedImages, downsampled, masked
from ganforge.data.unpaired import UnpairedFolderDataModule, each_source_once, interleaved
from ganforge.errors import ConfigError, DatasetNotFoundError
from ganforge.games.cyclegan import ImagePool
from ganforge.metrics.image_metrics import split_images, subset_index
from ganforge.metrics.translation import translation_scores
from ganforge.module import GANModule
from ganforge.nets.translation import PatchDiscriminator, SRResNetGenerator, UNetGenerator
from ganforge.train import train
from ganforge.translate import translate
from tests.conftest import TINY, Compose, assert_same_training_state, compose_config

#: The translation experiments on the 5,000-digit MNIST subset (its 1,000 test pairs keep evaluations short).
SMALL = [
    "data.base._target_=ganforge.data.MNIST5kDataModule",
    "~data.base.system_dir",
    "callbacks.translation_grid.every_n_gen_steps=1000",
]


def test_unet_decoder_layers_read_the_encoder_layer_of_their_size() -> None:
    net = UNetGenerator(in_channels=2, channels=3, resolution=32, width=4, max_width=16)
    downs, ups = [], []
    for layer in net.downs:
        layer.register_forward_hook(lambda m, i, o: downs.append(o.shape))
    for layer in net.ups:
        layer.register_forward_hook(lambda m, i, o: ups.append(i[0].shape))
    out = net(torch.randn(2, 2, 32, 32))
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1
    assert [s[-1] for s in downs] == [16, 8, 4, 2, 1]  # down to 1x1
    assert ups[0] == downs[-1]  # the innermost decoder reads the bottleneck alone
    for k, shape in enumerate(ups[1:], start=1):  # then its own output beside the encoder layer of that size
        skip = downs[-1 - k]
        assert shape == (2, 2 * skip[1], skip[2], skip[3])
    assert [s[-1] for s in _shapes(UNetGenerator(resolution=28, width=4), 28)] == [14, 7]  # stops where odd


def _shapes(net: UNetGenerator, resolution: int) -> list[torch.Size]:
    shapes: list[torch.Size] = []
    for layer in net.downs:
        layer.register_forward_hook(lambda m, i, o: shapes.append(o.shape))
    assert net(torch.randn(2, 1, resolution, resolution)).shape == (2, 1, resolution, resolution)
    return shapes


def test_unet_dropout_sits_next_to_the_bottleneck_but_not_in_it() -> None:
    net = UNetGenerator(resolution=64, width=4, dropout_layers=3)  # 6 levels
    has_dropout = [any(isinstance(m, torch.nn.Dropout) for m in up) for up in net.ups]
    assert has_dropout == [False, True, True, True, False, False]


@pytest.mark.parametrize(("layers", "field"), [(1, 16), (2, 34), (3, 70)])
def test_patchgan_logits_see_exactly_their_receptive_field(layers: int, field: int) -> None:
    net = PatchDiscriminator(channels=1, width=4, layers=layers, norm="none")
    assert net.receptive_field == field  # the paper's 16x16 and 70x70 PatchGANs
    x = torch.randn(1, 1, 160, 160, requires_grad=True)
    logits = net(x)
    logits[0, logits.shape[1] // 2, logits.shape[2] // 2].backward()
    assert x.grad is not None
    rows = x.grad[0, 0].abs().sum(dim=1).nonzero()
    cols = x.grad[0, 0].abs().sum(dim=0).nonzero()
    assert rows.max() - rows.min() + 1 == field and cols.max() - cols.min() + 1 == field


def test_a_conditional_patchgan_judges_the_pair() -> None:
    net = PatchDiscriminator(channels=1, condition_channels=2, width=4, layers=1, norm="none")
    x, source = torch.randn(2, 1, 32, 32), torch.randn(2, 2, 32, 32)
    assert not torch.equal(net(x, source), net(x, torch.randn(2, 2, 32, 32)))
    with pytest.raises(ConfigError, match="2-channel source"):
        net(x)


def test_srresnet_upsamples_by_its_scale_with_pixel_shuffle() -> None:
    net = SRResNetGenerator(channels=3, resolution=28, scale=4, width=8, blocks=2)
    assert net.source_shape == (3, 7, 7)
    assert net(torch.randn(2, 3, 7, 7)).shape == (2, 3, 28, 28)
    assert sum(isinstance(m, torch.nn.PixelShuffle) for m in net.modules()) == 2
    with pytest.raises(ConfigError, match="power of 2"):
        SRResNetGenerator(resolution=28, scale=3)


def _mnist_pairs(task: str, **kwargs: object) -> PairedDataModule:
    base = MNIST5kDataModule(resolution=28)
    shapes = {"edges": (1, 28), "masked": (1, 28), "lowres": (1, 7)}
    channels, resolution = shapes[task]
    return PairedDataModule(
        base, task=task, source_channels=channels, source_resolution=resolution, resolution=28, **kwargs
    )


def test_derived_tasks_give_each_target_its_source() -> None:
    edges = _mnist_pairs("edges").load_split(train=False)
    assert isinstance(edges, PairedImages) and edges.sources.shape == edges.images.shape == (1000, 1, 28, 28)
    assert set(edges.sources.unique().tolist()) == {0, 255}  # a binary edge map
    assert torch.equal(_mnist_pairs("edges").load_split(train=False).sources, edges.sources)  # deterministic
    lowres = _mnist_pairs("lowres", scale=4).load_split(train=False)
    assert torch.equal(lowres.sources, downsampled(lowres.images, 4)) and lowres.sources.shape[-1] == 7
    expected = v2.functional.resize(lowres.images, [7, 7], interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    assert torch.equal(lowres.sources, expected)


def test_the_masked_task_hides_one_square_per_image_at_a_seeded_place() -> None:
    images = torch.zeros(50, 1, 28, 28, dtype=torch.uint8)
    hidden = masked(images, 10, seed=3) == MASK_FILL
    assert (hidden.flatten(1).sum(dim=1) == 100).all()
    rows, cols = hidden[:, 0].any(dim=2), hidden[:, 0].any(dim=1)
    assert (rows.sum(dim=1) == 10).all() and (cols.sum(dim=1) == 10).all()  # one 10x10 square each
    assert len({tuple(r.nonzero()[0].tolist()) for r in rows}) > 1  # not always in the same place
    assert torch.equal(masked(images, 10, seed=3), masked(images, 10, seed=3))
    with pytest.raises(ConfigError, match="mask_size"):
        masked(images, 29, seed=0)


def test_wrong_source_sizes_are_refused_with_the_values_to_set() -> None:
    with pytest.raises(ConfigError, match=r"data\.source_channels=1 data\.source_resolution=7"):
        PairedDataModule(MNIST5kDataModule(), task="lowres", scale=4, source_channels=1, source_resolution=28)
    with pytest.raises(ConfigError, match=r"data\.task='sketch'"):
        PairedDataModule(MNIST5kDataModule(), task="sketch")


def test_batches_are_scaled_target_source_pairs_and_a_subset_keeps_them_paired() -> None:
    data = _mnist_pairs("masked", subset=64, batch_size=16)
    data.setup()
    assert len(data.train_set) == 64  # type: ignore[arg-type]
    raw_targets, raw_sources = next(iter(data.train_dataloader()))
    visible = raw_sources != MASK_FILL
    assert torch.equal(raw_sources[visible], raw_targets[visible])  # the source is its target, but the square
    targets, sources = data.on_after_batch_transfer((raw_targets, raw_sources), 0)
    assert targets.shape == sources.shape == (16, 1, 28, 28) and targets.dtype == sources.dtype == torch.float32
    assert torch.equal(targets, raw_targets.float() / 127.5 - 1) and torch.equal(
        sources, raw_sources.float() / 127.5 - 1
    )


def _write_pair_folders(root: Path, layout: str) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for i in range(n):
            a = rng.integers(0, 100, (8, 8), dtype=np.uint8)  # side A dark, side B bright
            b = rng.integers(156, 256, (8, 8), dtype=np.uint8)
            if layout == "aligned":
                (root / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.concatenate([a, b], axis=1)).save(root / split / f"{i}.png")
            else:
                for side, array in (("A", a), ("B", b)):
                    (root / split / side).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(array).save(root / split / side / f"{i}.png")


@pytest.mark.parametrize("layout", ["aligned", "folders"])
@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_the_pix2pix_folder_layouts_read_as_target_source_pairs(tmp_path: Path, layout: str, direction: str) -> None:
    _write_pair_folders(tmp_path, layout)
    data = PairedFolderDataModule(
        data_dir=str(tmp_path), layout=layout, direction=direction, channels=1, source_channels=1, resolution=8
    )
    train, test = data.load_split(train=True), data.load_split(train=False)
    assert len(train) == 4 and len(test) == 2
    target, source = train[0]
    assert target.shape == source.shape == (1, 8, 8) and target.dtype == torch.uint8
    bright, dark = (target, source) if direction == "AtoB" else (source, target)
    assert bright.min() >= 150 and dark.max() <= 105  # B is the target of AtoB


def test_the_folder_layouts_name_what_is_missing(tmp_path: Path) -> None:
    _write_pair_folders(tmp_path, "folders")
    (tmp_path / "test" / "B" / "1.png").unlink()
    data = PairedFolderDataModule(data_dir=str(tmp_path), layout="folders", channels=1, source_channels=1, resolution=8)
    with pytest.raises(DatasetNotFoundError, match=r"no partner, e\.g\. 1\.png"):
        data.load_split(train=False)
    empty = PairedFolderDataModule(data_dir=str(tmp_path / "nothing"), channels=1, source_channels=1, resolution=8)
    with pytest.raises(DatasetNotFoundError, match="no train/ folder"):
        empty.load_split(train=True)


def test_psnr_and_ssim_are_averaged_per_pair_and_l1_is_in_unit_range() -> None:
    targets = torch.zeros(2, 1, 16, 16)  # 0.5 in [0, 1]
    offsets = torch.tensor([0.1, 0.4]).view(2, 1, 1, 1)  # in [-1, 1]: 0.05 and 0.2 in [0, 1]
    scores = translation_scores(lambda source: source, [(targets, targets + offsets)])
    expected = np.mean([10 * math.log10(1 / 0.05**2), 10 * math.log10(1 / 0.2**2)])
    assert scores["psnr"] == pytest.approx(expected, rel=1e-5)  # the mean of per-pair PSNRs
    assert scores["l1"] == pytest.approx(0.125, rel=1e-5)
    assert scores["ssim"] < 1 and translation_scores(lambda s: s, [(targets, targets)])["ssim"] == pytest.approx(1.0)


def _tiny_translation(tiny_cfg: Compose, experiment: str, *overrides: str, out: str = "run") -> DictConfig:
    return tiny_cfg(f"experiment={experiment}", *SMALL, *overrides, out=out)


def test_pix2pix_g_pays_l1_to_the_target_and_d_judges_pairs(tiny_cfg: Compose) -> None:
    gan = build_module(_tiny_translation(tiny_cfg, "fmnist_pix2pix"))
    target, source = torch.rand(4, 1, 32, 32) * 2 - 1, torch.rand(4, 1, 32, 32) * 2 - 1
    assert torch.equal(gan.game.condition(gan, source), source)  # D reads the source beside each image
    played = gan.game.play(gan, target, source)
    terms = gan.game.g_terms(gan, played)
    assert terms["l1"].item() == pytest.approx(100 * (played.fake - target).abs().mean().item(), rel=1e-6)


def test_srgan_weighs_its_adversarial_loss_and_adds_the_pixel_content_loss(tiny_cfg: Compose) -> None:
    gan = build_module(_tiny_translation(tiny_cfg, "fmnist_srgan"))
    target, source = torch.rand(4, 1, 28, 28) * 2 - 1, torch.rand(4, 1, 7, 7) * 2 - 1
    assert gan.game.condition(gan, source) is None  # SRGAN's D judges images alone
    played = gan.game.play(gan, target, source)
    logits = torch.randn(4)
    adversarial = gan.game.g_adversarial(gan.objective, lambda side: logits, played)
    assert adversarial.item() == pytest.approx(1e-3 * F.softplus(-logits).mean().item(), rel=1e-6)
    content = gan.game.g_terms(gan, played)["content"]
    assert content.item() == pytest.approx((played.fake - target).square().mean().item(), rel=1e-6)


def test_srgan_content_in_features_trains_g_through_a_differentiable_extractor(
    tiny_cfg: Compose, random_inception_weights: Path
) -> None:
    """The content loss in a domain classifier's features reaches G's weights; Inception, which quantizes its
    input to 8 bits, would give G no gradient at all, so it is refused with the reason."""
    features = "game.features={_target_: ganforge.metrics.DomainFeatures, domain: mnist}"
    gan = build_module(_tiny_translation(tiny_cfg, "fmnist_srgan", "game.content=features", features))
    target, source = torch.rand(4, 1, 28, 28) * 2 - 1, torch.rand(4, 1, 7, 7) * 2 - 1
    gan.game.g_terms(gan, gan.game.play(gan, target, source))["content"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gan.generator.parameters())
    assert not any(p.requires_grad for p in gan.game.features.parameters())  # the extractor itself stays fixed

    inception = (
        f"game.features={{_target_: ganforge.metrics.InceptionFeatures, weights_path: {random_inception_weights}}}"
    )
    with pytest.raises(ConfigError, match=r"InceptionFeatures passes no gradient to G.*quantizes images to 8 bits"):
        build_module(_tiny_translation(tiny_cfg, "fmnist_srgan", "game.content=features", inception))


def test_translation_games_refuse_what_they_cannot_combine_with(tiny_cfg: Compose) -> None:
    with pytest.raises(ConfigError, match="augment=null"):
        build_module(_tiny_translation(tiny_cfg, "fmnist_pix2pix", "augment=diffaugment"))
    with pytest.raises(ConfigError, match="condition_channels=1"):
        build_module(_tiny_translation(tiny_cfg, "fmnist_pix2pix", "model.discriminator.condition_channels=0"))
    with pytest.raises(ConfigError, match="reads images"):
        build_module(tiny_cfg("game=pix2pix"))  # DCGAN's generator reads noise
    with pytest.raises(ConfigError, match="features"):
        build_module(_tiny_translation(tiny_cfg, "fmnist_srgan", "game.content=features"))


def test_pix2pix_trains_and_ganforge_translate_runs_its_checkpoint(tiny_cfg: Compose, tmp_path: Path) -> None:
    train(_tiny_translation(tiny_cfg, "fmnist_pix2pix", "max_gen_steps=4", "metrics.every_n_gen_steps=4"))
    run = tmp_path / "run"
    written = json.loads((run / "metrics.json").read_text())
    metrics = written["metrics"]
    assert {"psnr", "ssim", "l1", "fid", "kid"} <= metrics.keys()
    assert "translations of 100 test-split sources (seeded subset" in written["protocol"]["generated"]
    grid = Image.open(run / "samples" / "gen_step_0000004.png")
    assert grid.size == (8 * 34 + 2, 3 * 34 + 2)  # rows source | output | target of 8 pairs (32 px + padding)

    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    generator, cfg = generator_from_checkpoint(checkpoint, translation=True)
    data = build(cfg.data)
    test = data.load_split(train=False)
    targets, sources = test[subset_index(len(test), 100, 0).tolist()]  # the evaluation's seeded 100 pairs
    with torch.no_grad():
        outputs = (generator(sources.float() / 127.5 - 1).clamp(-1, 1) + 1) / 2
    errors = (outputs - targets.float() / 255).flatten(1)
    assert metrics["l1"] == pytest.approx(errors.abs().mean().item(), rel=1e-4)
    assert metrics["psnr"] == pytest.approx((-10 * errors.square().mean(1).log10()).mean().item(), rel=1e-4)
    _, sources = data.load_split(train=False)[torch.arange(5).tolist()]
    folder = tmp_path / "inputs"
    folder.mkdir()
    for i, source in enumerate(sources):
        Image.fromarray(source[0].numpy()).save(folder / f"{i}.png")
    np.savez(tmp_path / "inputs.npz", images=sources[:, 0].numpy())
    base = {"ckpt": str(run / "checkpoints" / "last.ckpt"), "ema": True, "batch_size": 2, "device": "cpu",
            "inverse": False}  # fmt: skip
    translate(OmegaConf.create(base | {"input": str(folder), "out": str(tmp_path / "out"), "grid": None, "grid_n": 4}))
    translate(OmegaConf.create(base | {"input": str(tmp_path / "inputs.npz"), "out": str(tmp_path / "out.npz"),
                                       "grid": str(tmp_path / "grid.png"), "grid_n": 4}))  # fmt: skip
    with torch.no_grad():
        expected = ((generator(sources.float() / 127.5 - 1).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert np.array_equal(np.load(tmp_path / "out.npz")["images"], expected.numpy())
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "3.png").convert("L")), expected[3, 0].numpy())
    assert Image.open(tmp_path / "grid.png").size == (4 * 34 + 2, 2 * 34 + 2)
    with pytest.raises(ConfigError, match="translates images; use ganforge-translate"):
        generator_from_checkpoint(checkpoint)  # what ganforge-sample and ganforge-eval call
    with pytest.raises(ConfigError, match="translates one way: drop inverse=true"):
        translate(OmegaConf.create(base | {"inverse": True, "input": str(folder), "out": str(tmp_path / "x")}))


def test_pix2pix_takes_the_projects_penalties_ema_and_spectral_norm(tiny_cfg: Compose, tmp_path: Path) -> None:
    """R1 on the conditioned PatchGAN (D reads the source beside the image), an EMA generator and spectral
    norm on D: the same switches as for the plain GAN, each visible in the run."""
    cfg = _tiny_translation(tiny_cfg, "fmnist_pix2pix", "max_gen_steps=3", "+loss/penalties=[r1]",
                            "loss.penalties.r1.every=1", "ema_decay=0.9", "model.discriminator.spectral_norm=true",
                            "trainer.log_every_n_steps=1", "~callbacks.translation_metrics",
                            "~callbacks.best_checkpoint")  # fmt: skip
    metrics = train(cfg)
    weight = cfg.loss.penalties.r1.weight
    assert metrics["penalty/r1"] > 0
    assert metrics["loss/d"] == pytest.approx(metrics["loss/d_adversarial"] + weight * metrics["penalty/r1"], rel=1e-5)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["state_dict"]
    assert any(key.startswith("generator_ema.") for key in state)
    assert any("parametrizations.weight.original" in key for key in state if key.startswith("discriminator."))


def test_the_baselines_without_d_train_g_alone(tiny_cfg: Compose, tmp_path: Path) -> None:
    cfg = _tiny_translation(tiny_cfg, "fmnist_srresnet", "max_gen_steps=3", "~callbacks.translation_metrics",
                            "~callbacks.best_checkpoint")  # fmt: skip
    seed_everything(cfg.seed)  # as train() does before it builds the module
    untrained = build_module(cfg).discriminator.state_dict()
    train(cfg)
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 3  # G steps only
    for key, value in untrained.items():
        assert torch.equal(checkpoint["state_dict"][f"discriminator.{key}"], value), key


# --- CycleGAN -----------------------------------------------------------------------------------------------

CYCLE_TINY = [
    "experiment=fmnist_cyclegan",
    "model.generator.ab.width=4",
    "model.generator.ab.blocks=1",
    "model.discriminator.a.width=4",
    "data.batch_size=4",
    "data.subset=64",
    *[o for o in TINY if not o.startswith(("model.", "data."))],
]


def _cycle_cfg(tmp_path: Path, *overrides: str, out: str = "run") -> DictConfig:
    return compose_config("train", [*CYCLE_TINY, f"paths.output_dir={tmp_path / out}", *overrides])


def test_the_image_pool_returns_stored_fakes_half_the_time_once_full() -> None:
    torch.manual_seed(0)
    pool = ImagePool(5, (1, 2, 2))
    first = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2)
    assert torch.equal(pool.query(first), first) and int(pool.count) == 3  # filling: the batch itself
    pool.query(first[:2] + 10)
    assert int(pool.count) == 5
    stored = set(pool.images[:, 0, 0, 0].tolist())
    returned_stored, queries = 0, 4000
    for i in range(queries // 4):
        new = 100.0 + 4 * i + torch.arange(4.0)  # every fake its own value
        before = set(pool.images[:, 0, 0, 0].tolist())
        out = pool.query(new.view(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous())[:, 0, 0, 0]
        returned_stored += int((out != new).sum())
        assert all(
            v == n or v in before or v in new[:k].tolist()
            for k, (v, n) in enumerate(zip(out.tolist(), new.tolist(), strict=True))
        )
    assert 0.45 < returned_stored / queries < 0.55
    assert int(pool.count) == 5 and stored.isdisjoint(pool.images[:, 0, 0, 0].tolist())  # swapped out by now


def test_cyclegan_losses_have_the_papers_weights(tmp_path: Path) -> None:
    """The shipped experiment (loss=lsgan) against the paper's code: G minimises MSE_A + MSE_B + 10 cycle +
    5 identity (nn.MSELoss, no 1/2), each D its own 0.5 (MSE_real + MSE_fake), the two D's losses summed."""
    gan = build_module(_cycle_cfg(tmp_path))
    g, d, game = gan.generator, gan.discriminator, gan.game
    a, b = torch.rand(4, 1, 28, 28) * 2 - 1, torch.rand(4, 1, 28, 28) * 2 - 1
    gan.eval()  # instance norm, no dropout: the same outputs for the same inputs
    played = game.play(gan, b, a)
    cycle = (g.ba(g.ab(a)) - a).abs().mean() + (g.ab(g.ba(b)) - b).abs().mean()
    identity = (g.ba(a) - a).abs().mean() + (g.ab(b) - b).abs().mean()
    fake_a, fake_b = played.fake
    mse_a, mse_b = (d.a(fake_a) - 1).square().mean(), (d.b(fake_b) - 1).square().mean()
    g_loss = game.g_adversarial(gan.objective, d, played) + sum(game.g_terms(gan, played).values())
    assert g_loss.item() == pytest.approx((mse_a + mse_b + 10 * cycle + 5 * identity).item(), rel=1e-5)
    d_real, d_fake = d((a, b)), d(played.fake)
    d_a = 0.5 * ((d.a(a) - 1).square().mean() + d.a(fake_a).square().mean())
    d_b = 0.5 * ((d.b(b) - 1).square().mean() + d.b(fake_b).square().mean())
    assert game.d_adversarial(gan.objective, d_real, d_fake).item() == pytest.approx((d_a + d_b).item(), rel=1e-5)


def _images_of(split: TensorImages, classes: str) -> torch.Tensor:
    return split.images[torch.isin(split.labels, torch.tensor(json.loads(classes)))]


def _multiset(images: torch.Tensor) -> Counter[bytes]:
    """Each image's bytes, counted: equal multisets hold the same images as often."""
    return Counter(image.numpy().tobytes() for image in images)


@pytest.mark.parametrize(("classes_a", "classes_b"), [("[7]", "[8,9]"), ("[7,8]", "[9]")])
def test_unpaired_test_splits_score_each_source_and_each_target_once(
    tmp_path: Path, classes_a: str, classes_b: str
) -> None:
    """Whichever domain is larger: training cycles the smaller, while the test split translates each test image
    of A once and the image metrics' reference holds each test image of B once."""
    data = build(_cycle_cfg(tmp_path, f"data.classes_a={classes_a}", f"data.classes_b={classes_b}").data)
    domains = {
        training: [_images_of(data.base_a.load_split(train=training), classes) for classes in (classes_a, classes_b)]
        for training in (True, False)
    }
    a, b = domains[False]
    test = data.load_split(train=False)
    assert len(test) == len(a) and _multiset(test.sources) == _multiset(a)  # every test source once
    assert set(test.labels.tolist()) <= set(json.loads(classes_b))
    reference = torch.cat(list(split_images(data, "test", 10_000, 0, 500)))  # what FID and the others compare with
    assert len(reference) == len(b) and _multiset(reference) == _multiset(b)  # every test target once
    assert len(data.load_split(train=True)) == max(len(d) for d in domains[True])  # training cycles the smaller
    with pytest.raises(ConfigError, match="classes_b=\\[42\\]"):
        build(_cycle_cfg(tmp_path, "data.classes_b=[42]").data).load_split(train=False)


def test_unpaired_evaluation_indices_take_each_source_once_and_targets_without_repeats_while_they_last() -> None:
    sources, targets = each_source_once(3, 5)
    assert sources.tolist() == [0, 1, 2] and targets.tolist() == [0, 1, 2]
    sources, targets = each_source_once(5, 2)
    assert sources.tolist() == [0, 1, 2, 3, 4] and targets.tolist() == [0, 1, 0, 1, 0]
    assert all(torch.equal(x, y) for x, y in zip(each_source_once(4, 4), interleaved(4, 4, 0), strict=True))


def test_the_cyclegan_folder_layout_reads_both_domains(tmp_path: Path) -> None:
    for folder, n, value in (("trainA", 3, 10), ("trainB", 5, 200), ("testA", 2, 10)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            Image.fromarray(np.full((6, 6), value, dtype=np.uint8)).save(tmp_path / folder / f"{i}.png")
    data = UnpairedFolderDataModule(data_dir=str(tmp_path), channels=1, source_channels=1, resolution=8)
    train = data.load_split(train=True)
    assert len(train) == 5
    b, a = train[0]
    assert b.shape == a.shape == (1, 8, 8) and int(b.float().mean()) == 200 and int(a.float().mean()) == 10
    with pytest.raises(DatasetNotFoundError, match="testB/ is missing"):
        data.load_split(train=False)
    (tmp_path / "testB").mkdir()
    for i in range(3):  # more targets than sources, each its own grey level
        Image.fromarray(np.full((6, 6), 100 + i, dtype=np.uint8)).save(tmp_path / "testB" / f"{i}.png")
    test = data.load_split(train=False)
    assert len(test) == 2  # each source once
    reference = torch.cat(list(split_images(data, "test", 100, 0, 2)))
    assert sorted(reference[:, 0, 0, 0].tolist()) == [100, 101, 102]  # each target once


def test_cyclegan_checkpoints_keep_every_ranks_image_pools_and_each_rank_resumes_its_own(tmp_path: Path) -> None:
    """Two ranks, faked (tests/test_distributed.py trains real ones): the pools are left out of DDP's broadcasts
    of rank 0's buffers, the checkpoint rank 0 writes holds both ranks' pools, and each resumed rank loads its
    own over the state_dict's copy (rank 0's)."""
    pools = ["game.pool_a.images", "game.pool_a.count", "game.pool_b.images", "game.pool_b.count"]
    gathered: list[torch.Tensor] = []  # rank 1's side of each all_gather, in call order

    def on_rank(rank: int) -> GANModule:
        module = build_module(_cycle_cfg(tmp_path, "game.pool_size=2"))
        fakes = torch.full((2, 1, 28, 28), float(rank))  # each rank's own fakes
        module.game.pool_a.query(fakes)
        module.game.pool_b.query(fakes - 10)

        def all_gather(state: torch.Tensor) -> torch.Tensor:
            if rank == 1:  # gathers first, recording what rank 0's gathers receive from it
                gathered.append(state)
                return torch.stack([state, state])
            return torch.stack([state, gathered.pop(0)])

        strategy = SimpleNamespace(root_device=torch.device("cpu"), all_gather=all_gather)
        module._trainer = SimpleNamespace(world_size=2, global_rank=rank, strategy=strategy)  # type: ignore[assignment]
        return module

    ranks = [on_rank(0), on_rank(1)]
    assert ranks[0]._ddp_params_and_buffers_to_ignore == pools
    ranks[1].on_save_checkpoint({})  # every rank takes part in the gathers; rank 0 writes the checkpoint
    checkpoint: dict[str, Any] = {"state_dict": ranks[0].state_dict()}
    ranks[0].on_save_checkpoint(checkpoint)
    rows = checkpoint["ganforge"]["per_rank_buffers"]["game.pool_b.images"][:, :, 0, 0, 0]
    assert rows.tolist() == [[-10.0, -10.0], [-9.0, -9.0]]  # rank 0's fakes, rank 1's
    for rank in (0, 1):
        resumed = on_rank(rank)
        resumed.on_load_checkpoint(checkpoint)
        resumed.load_state_dict(checkpoint["state_dict"])
        assert resumed.game.pool_a.images.unique().tolist() == [float(rank)] and int(resumed.game.pool_a.count) == 2


@pytest.mark.slow
def test_a_cyclegan_run_resumed_mid_training_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    """Four nets, their optimizers and the image pools (full and swapping by the checkpoint) continue bitwise."""
    quiet = ["game.pool_size=8", "~callbacks.translation_metrics", "~callbacks.best_checkpoint"]
    quiet += ["callbacks.checkpoint.every_n_gen_steps=6"]
    train(_cycle_cfg(tmp_path, *quiet, "max_gen_steps=9", out="first"))
    checkpoint = tmp_path / "first" / "checkpoints" / "gen_step_0000006.ckpt"
    train(_cycle_cfg(tmp_path, *quiet, "max_gen_steps=12", f"ckpt_path={checkpoint}", out="resumed"))
    train(_cycle_cfg(tmp_path, *quiet, "max_gen_steps=12", out="straight"))
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert int(straight["state_dict"]["game.pool_a.count"]) == 8  # full since step 2 (batches of 4)
    assert_same_training_state(resumed, straight)
    generator, _ = generator_from_checkpoint(straight, translation=True)
    boots = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    np.savez(tmp_path / "boots.npz", images=boots.numpy())
    translate(OmegaConf.create({"ckpt": str(tmp_path / "straight" / "checkpoints" / "last.ckpt"), "ema": True,
                                "batch_size": 2, "device": "cpu", "inverse": True, "input": str(tmp_path / "boots.npz"),
                                "out": str(tmp_path / "sneakers.npz"), "grid": None}))  # fmt: skip
    with torch.no_grad():
        expected = generator.eval().inverse(boots[:, None].float() / 127.5 - 1)
    expected = ((expected.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert np.array_equal(np.load(tmp_path / "sneakers.npz")["images"], expected.numpy())  # F: B -> A ran
