"""Few-shot data (issue 39): ``data=fmnist_100shot``'s split into shots and held-out images, and ``data.mirror``'s
x-flips."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
import torch
from PIL import Image

from ganforge.config import build, load_checkpoint
from ganforge.data import FewShotDataModule, ImageFolderDataModule
from ganforge.data.datamodules import GANDataModule, TensorImages
from ganforge.errors import ConfigError
from ganforge.train import train
from tests.conftest import Compose, assert_same_training_state, compose_config


def few_shot(*overrides: str) -> FewShotDataModule:
    return build(compose_config("train", ["data=fmnist_100shot", *overrides]).data)


def digests(images: torch.Tensor) -> list[str]:
    """The images' hashes, sorted: a multiset that ignores order and survives duplicate images."""
    return sorted(hashlib.sha256(image.numpy().tobytes()).hexdigest() for image in images)


@pytest.fixture(scope="module")
def splits() -> tuple[TensorImages, TensorImages, TensorImages, TensorImages]:
    """The 100 shots, the held-out rest, and the class-0 images of the base's two splits."""
    data = few_shot()
    base = (cast(TensorImages, data.base.load_split(train)) for train in (True, False))
    train_class, test_class = (split.select((split.labels == 0).nonzero().flatten()) for split in base)
    return data.load_split(True), data.load_split(False), train_class, test_class


def test_the_shots_and_the_held_out_images_are_the_class_split_in_two(splits: tuple[TensorImages, ...]) -> None:
    shots, held_out, train_class, test_class = splits
    assert len(shots) == 100 and len(held_out) == len(train_class) + len(test_class) - 100 == 6900
    assert shots.labels.eq(0).all() and held_out.labels.eq(0).all()
    every = torch.cat([train_class.images, test_class.images])
    assert digests(torch.cat([shots.images, held_out.images])) == digests(every)
    assert set(digests(shots.images)) <= set(digests(train_class.images))  # shots are training images
    assert torch.equal(held_out.images[-len(test_class) :], test_class.images)  # the test split, all of it held out


def test_the_shots_are_drawn_by_subset_seed_not_the_run_seed(splits: tuple[TensorImages, ...]) -> None:
    shots = splits[0]
    assert torch.equal(few_shot("seed=5").load_split(True).images, shots.images)
    other = few_shot("data.subset_seed=1").load_split(True).images
    assert len(set(digests(other)) & set(digests(shots.images))) < 20  # about 100 * 100/6000 shared by chance
    assert few_shot("data.label=7").load_split(True).labels.eq(7).all()


def test_a_32_pixel_net_gets_the_shots_padded_and_the_cache_key_names_the_cut() -> None:
    data = few_shot("data.resolution=32")
    images = data.load_split(True).images
    assert images.shape == (100, 1, 32, 32) and images[:, :, :2].eq(0).all() and images[:, :, -2:].eq(0).all()
    assert data.split_rule == "100 shots of class 0, drawn by seed 0; the rest held out"
    assert data.domain == "fashion_mnist" and data.at_resolution(28).load_split(True).images.shape[-1] == 28


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.subset=50", "data.subset=50: few-shot data draws its own training images; set data.shots instead"),
        ("data.label=10", "data.label=10: Fashion-MNIST has classes 0..9; choose one of them"),
        ("data.base.resolution=32", "data.resolution=28 differs from data.base.resolution=32; set data.base."),
    ],
)
def test_few_shot_settings_that_cannot_hold_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        few_shot(override)


def test_more_shots_than_the_class_has_are_refused() -> None:
    message = "data.shots=6000: class 0 of Fashion-MNIST has 6000 training images; choose between 1 and 5999"
    with pytest.raises(ConfigError, match=re.escape(message)):
        few_shot("data.shots=6000").load_split(True)


def batch(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose left and right halves differ (a flip shows), and their labels."""
    images = torch.arange(n * 2 * 3 * 4, dtype=torch.int64).remainder(256).to(torch.uint8).view(n, 2, 3, 4)
    return images, torch.arange(n)


def test_mirror_flips_about_half_the_images_and_the_same_ones_at_the_same_position() -> None:
    data = few_shot()
    images, labels = batch()
    flipped, same_labels = data.mirrored((images, labels))
    is_flipped = [torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images, strict=True)]
    assert all(is_flipped[k] or torch.equal(flipped[k], images[k]) for k in range(64))
    assert 16 < sum(is_flipped) < 48 and same_labels is labels
    assert torch.equal(data.mirrored((images, labels))[0], flipped)  # a resumed run flips the same images
    data.batches_consumed = 1
    assert not torch.equal(data.mirrored((images, labels))[0], flipped)
    assert not torch.equal(data.mirrored((images, labels), rank=1)[0], data.mirrored((images, labels))[0])


def test_mirror_flips_a_pairs_images_together_and_leaves_the_global_rng_alone() -> None:
    data = build(compose_config("train", ["data=paired_edges", "data.mirror=true"]).data)
    targets, _ = batch()
    sources = targets.clone()
    state = torch.get_rng_state()
    out_targets, out_sources = data.mirrored((targets, sources))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(out_targets, out_sources) and not torch.equal(out_targets, targets)


def test_mirror_runs_in_training_only_and_is_refused_for_points() -> None:
    data: GANDataModule = few_shot()
    images, labels = batch()
    data.trainer = SimpleNamespace(training=False, global_rank=0)  # type: ignore[assignment]
    evaluated, _ = data.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(evaluated, images.float() / 127.5 - 1)
    data.trainer = SimpleNamespace(training=True, global_rank=0)  # type: ignore[assignment]
    expected = data.mirrored((images, labels))[0].float() / 127.5 - 1
    trained, _ = data.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(trained, expected) and not torch.equal(trained, evaluated) and data.batches_consumed == 1
    with pytest.raises(ConfigError, match=re.escape("data.mirror=true flips images, and this data is points")):
        build(compose_config("train", ["data=ring", "+data.mirror=true"]).data)


def test_a_few_shot_run_with_flips_resumes_bitwise_and_the_flips_change_training(
    tiny_cfg: Compose, tmp_path: Path
) -> None:
    """Four steps, then four more resumed (across the 6-batch epoch of 100 shots) equal eight straight; the same run
    without flips trains other weights."""
    fast = ["data=fmnist_100shot", "~callbacks.image_metrics", "~callbacks.best_checkpoint"]
    train(tiny_cfg(*fast, "max_gen_steps=4", out="first"))
    first = tmp_path / "first" / "checkpoints" / "last.ckpt"
    train(tiny_cfg(*fast, "max_gen_steps=8", f"ckpt_path={first}", out="resumed"))
    train(tiny_cfg(*fast, "max_gen_steps=8", out="straight"))
    train(tiny_cfg(*fast, "max_gen_steps=8", "data.mirror=false", out="unflipped"))
    straight, unflipped = (
        load_checkpoint(tmp_path / run / "checkpoints" / "last.ckpt") for run in ("straight", "unflipped")
    )
    assert_same_training_state(load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt"), straight)
    weights = "generator.net.0.weight"
    assert not torch.equal(straight["state_dict"][weights], unflipped["state_dict"][weights])


def test_a_base_read_image_by_image_is_refused_with_what_to_use(tmp_path: Path) -> None:
    for k in range(2):
        (tmp_path / f"class_{k}").mkdir()
        for i in range(3):
            Image.new("L", (28, 28), 40 * i + k).save(tmp_path / f"class_{k}" / f"{i}.png")
    base = ImageFolderDataModule(data_dir=str(tmp_path), channels=1, resolution=28, num_classes=2, test_fraction=0.5)
    data = FewShotDataModule(base, label=1, shots=1, channels=1, resolution=28, fit="resize")
    with pytest.raises(ConfigError, match=re.escape("few-shot data need an in-memory dataset (fashion_mnist, mnist")):
        data.load_split(True)
