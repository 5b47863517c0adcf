"""Every option of every config group composes, and what it describes instantiates."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf

from ganforge.config import CONFIG_MODULE, build_module
from ganforge.module import GANModule
from ganforge.nets.layers import sample_shape
from ganforge.nets.pyramid import PyramidGenerator
from ganforge.train import instantiate_group
from tests.conftest import TINY, compose_config

CONF = resources.files(CONFIG_MODULE)
GROUPS = ["data", "model", "loss", "optim", "augment", "game", "trainer", "logger", "callbacks", "paths"]
GROUPS += ["experiment", "debug"]
#: Nets that only a game can play (D on codes or on pairs), and games that need their own nets.
PAIRED = {
    ("model", "aae"): ["game=aae"],
    ("model", "aae_clusters"): ["game=aae"],
    ("model", "bigan"): ["game=bigan"],
    ("game", "aae"): ["model=aae"],
    ("game", "bigan"): ["model=bigan"],
    ("game", "infogan"): ["model=infogan"],
    ("model", "pix2pix"): ["game=pix2pix", "data=paired_edges"],
    ("game", "pix2pix"): ["model=pix2pix", "data=paired_edges"],
    ("model", "srgan"): ["game=srgan", "data=paired_lowres4"],
    ("game", "srgan"): ["model=srgan", "data=paired_lowres4"],
    ("model", "cyclegan"): ["game=cyclegan", "data=unpaired_sneaker_boot"],
    ("game", "cyclegan"): ["model=cyclegan", "data=unpaired_sneaker_boot"],
    ("model", "lapgan"): ["game=pyramid"],
    ("game", "pyramid"): ["model=lapgan"],
    ("model", "singan"): ["game=pyramid", "data=single_image", "data.max_side=40"],
    ("data", "single_image"): ["model=singan", "game=pyramid", "data.max_side=40"],
    ("model", "transgan"): ["data.resolution=32"],  # the paper's CIFAR-10 nets: 16x16 windows, 8-pixel patches
    ("game", "flowgan"): ["model=flow"],
}
OPTIONS = [
    (group, p.name.removesuffix(".yaml"))
    for group in GROUPS
    for p in sorted(CONF.joinpath(group).iterdir())
    if p.name.endswith(".yaml")
]


def test_every_group_has_options() -> None:
    """The option list below is not empty by accident."""
    found = {group for group, _ in OPTIONS}
    assert found == set(GROUPS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(
    group: str, option: str, tmp_path: Path, random_inception_weights: Path
) -> None:
    """Compose ``group=option`` and build the datamodule, GAN, callbacks, loggers and trainer it describes.

    Data without a domain classifier is scored in Inception features: offline, from a weights file."""
    overrides = [f"{group}={option}", f"paths.output_dir={tmp_path}"]
    overrides += PAIRED.get((group, option), [])
    overrides.append(f"metrics.features.weights_path={random_inception_weights}")
    if group == "data" and option in ("image_folder", "paired_folder", "unpaired_folder"):
        overrides.append(f"data.data_dir={tmp_path}")
    if group == "data" and option in ("ring", "grid"):
        overrides.append("model=mlp")  # points, not images: the convolutional default does not apply
    cfg = compose_config("train", overrides)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # every interpolation resolves

    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, LightningDataModule)
    module = build_module(cfg)
    assert isinstance(module, GANModule)
    if hasattr(module.generator, "source_shape"):  # an image-to-image generator reads a source image
        labels = torch.rand(2, *module.generator.source_shape) * 2 - 1
        fake = module.generator(labels)
    else:
        labels = torch.tensor([0, 1])  # class labels, which conditional models read
        fake = module.generator(torch.randn(2, module.latent_dim), module.game.condition(module, labels))
    shape = sample_shape(cfg.data.channels, cfg.data.resolution)
    if isinstance(module.generator, PyramidGenerator):  # SinGAN's keeps the photo's aspect ratio
        shape = (cfg.data.channels, *module.generator.pyramid.sizes[-1])
    assert fake.shape == (2, *shape)
    y = module.game.condition(module, labels)
    played = module.game.play(module, fake.detach(), labels)  # what D judges: images, codes or pairs
    real_logits, fake_logits = module.discriminator(played.real, y), module.discriminator(played.fake, y)
    assert real_logits.shape == fake_logits.shape and real_logits.shape[0] == 2  # PatchGANs: one per patch
    configured = module.configure_optimizers()
    g_opt, d_opt = configured[0] if isinstance(configured, tuple) else configured  # (optimizers, schedulers)
    assert g_opt.param_groups[0]["lr"] == cfg.optim.generator.lr
    assert d_opt.param_groups[0]["lr"] == cfg.optim.discriminator.lr

    callbacks = instantiate_group(cfg.callbacks)
    loggers = instantiate_group(cfg.logger)
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        assert get_class(cfg.trainer._target_) is Trainer  # composes; building it needs a GPU
        return
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    assert isinstance(trainer, Trainer)
    assert any(isinstance(logger, CSVLogger) for logger in trainer.loggers) or trainer.fast_dev_run


def test_data_config_alone_resizes_the_nets(tmp_path: Path) -> None:
    """``data=cifar10`` makes the DCGAN produce 3x32x32 images with no model override."""
    module = build_module(compose_config("train", ["data=cifar10", f"paths.output_dir={tmp_path}"]))
    assert module.generator(torch.randn(3, module.latent_dim)).shape == (3, 3, 32, 32)
    assert module.discriminator(torch.randn(3, 3, 32, 32)).shape == (3,)


def test_default_is_the_fmnist_dcgan_experiment() -> None:
    """A bare ganforge-train runs experiment fmnist_dcgan on Fashion-MNIST at its native 28x28."""
    cfg = compose_config("train", [])
    assert cfg.task_name == "fashion_mnist_dcgan"
    assert cfg.data._target_.endswith("FashionMNISTDataModule")
    assert (cfg.data.channels, cfg.data.resolution) == (1, 28)


def test_dcgan_on_points_is_a_clear_error(tmp_path: Path) -> None:
    """The convolutional nets refuse vector data and name the model to use instead."""
    cfg = compose_config("train", ["data=ring", f"paths.output_dir={tmp_path}"])
    with pytest.raises(Exception, match="model=mlp"):
        build_module(cfg)


def test_tiny_overrides_apply(tmp_path: Path) -> None:
    """The tests' shrinking overrides reach the nets (guards the other tests' speed)."""
    cfg = compose_config("train", [*TINY, f"paths.output_dir={tmp_path}"])
    assert cfg.model.generator.width == 8
    assert "progress_bar" not in cfg.callbacks


def test_sample_config_composes() -> None:
    """ganforge-sample's config has the documented defaults and requires ckpt."""
    cfg = compose_config("sample", ["ckpt=x.ckpt"])
    assert (cfg.n, cfg.out, cfg.ema) == (10000, "samples.npz", True)
