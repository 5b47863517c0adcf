"""data=image_folder on folders as users have them: every common image kind, any layout, bad files named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data import ImageFolderDataModule
from ganforge.data.datamodules import ImageFiles, ToChannels
from ganforge.errors import ConfigError, DatasetNotFoundError
from ganforge.metrics import DomainFeatures, split_features

RNG = np.random.default_rng(0)


def noise(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def write_every_kind(folder: Path) -> list[str]:
    """One image of each kind a user's folder may hold, most of them not square; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    images = {
        "gray.png": Image.fromarray(noise(20, 20)),
        "gray16.png": Image.fromarray(RNG.integers(0, 65536, size=(18, 24)).astype(np.uint16)),
        "rgb.png": Image.fromarray(noise(17, 23, 3)),
        "rgba.png": Image.fromarray(noise(30, 20, 4)),
        "palette.png": Image.fromarray(noise(21, 21, 3)).convert("P"),
        "photo.jpg": Image.fromarray(noise(24, 40, 3)),
        "gray.jpeg": Image.fromarray(noise(19, 33)),
    }
    for name, image in images.items():
        image.save(folder / name)
    return sorted(images)


def folder_module(root: Path, **kwargs: object) -> ImageFolderDataModule:
    options: dict[str, object] = {"batch_size": 2, "channels": 3, "resolution": 16, "num_workers": 0}
    return ImageFolderDataModule(data_dir=str(root), **{**options, **kwargs})


def batches(dm: ImageFolderDataModule) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of the module's batches, scaled as training sees them."""
    dm.setup("fit")
    return [dm.on_after_batch_transfer(batch, 0) for batch in dm.train_dataloader()]


@pytest.mark.parametrize("channels", [1, 3])
def test_every_kind_of_image_becomes_a_batch_in_unit_range(tmp_path: Path, channels: int) -> None:
    """Grey (8 and 16 bit), RGB, RGBA and palette PNGs and JPEGs of any shape: (B, channels, 16, 16) in [-1, 1]."""
    names = write_every_kind(tmp_path / "mixed")
    dm = folder_module(tmp_path / "mixed", batch_size=len(names), channels=channels)
    [(images, labels)] = batches(dm)
    assert images.shape == (len(names), channels, 16, 16) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert images.flatten(1).std(dim=1).min() > 0.1  # every image kept its noise (none came out blank)
    assert labels.tolist() == [0] * len(names)  # a flat folder: no classes


def test_channel_conversion() -> None:
    """Transparency is composited on white, 16-bit grey scaled to 8 bits, grey repeated in RGB, colour to luma."""
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # one opaque pixel; the others are transparent black
    assert np.asarray(ToChannels(3)(Image.fromarray(rgba))).tolist() == [
        [[10, 20, 30], [255, 255, 255]],
        [[255, 255, 255], [255, 255, 255]],
    ]
    palette = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="P")
    palette.putpalette([200, 0, 0, 0, 0, 200])
    palette.info["transparency"] = 1
    assert np.asarray(ToChannels(3)(palette)).tolist() == [[[200, 0, 0], [255, 255, 255]]]
    grey16 = Image.fromarray(np.array([[0, 51000, 65535]], dtype=np.uint16))
    assert np.asarray(ToChannels(1)(grey16)).tolist() == [[0, 199, 255]]
    grey = Image.fromarray(np.array([[7, 99]], dtype=np.uint8))
    assert np.asarray(ToChannels(3)(grey)).tolist() == [[[7, 7, 7], [99, 99, 99]]]
    red = Image.fromarray(np.array([[[255, 0, 0]]], dtype=np.uint8))
    assert np.asarray(ToChannels(1)(red)).tolist() == [[76]]  # ITU-R 601 luma: 0.299 * 255


def test_photos_are_turned_upright(tmp_path: Path) -> None:
    """A JPEG whose EXIF orientation says "rotate 90 degrees" is read rotated, as viewers show it."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; the stored 40x20 picture displays as 20x40
    Image.fromarray(noise(20, 40, 3)).save(tmp_path / "phone.jpg", exif=exif)
    with Image.open(tmp_path / "phone.jpg") as photo:
        assert ToChannels(3)(photo).size == (20, 40)


def test_shorter_side_is_resized_and_the_centre_cropped(tmp_path: Path) -> None:
    """A 16x48 image, white in its middle 24 columns: resized to 8x24 and cropped to the middle 8x8, all white
    (squashed to 8x8 instead, its black sides would show)."""
    pixels = np.zeros((16, 48), dtype=np.uint8)
    pixels[:, 12:36] = 255
    (tmp_path / "wide").mkdir()
    Image.fromarray(pixels).save(tmp_path / "wide" / "wide.png")
    [(images, _)] = batches(folder_module(tmp_path / "wide", batch_size=1, channels=1, resolution=8))
    assert images.shape == (1, 1, 8, 8)
    assert images.min() > 0.95


def test_class_sub_folders_are_labels_and_deeper_folders_belong_to_their_class(tmp_path: Path) -> None:
    """root/<class>/... : labels by sorted class name; images further down count for their top folder."""
    root = tmp_path / "classes"
    for path in ("dog/0.png", "dog/1.png", "cat/0.png", "cat/more/1.png", "cat/more/deeper/2.png"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(noise(9, 13, 3)).save(root / path)
    dm = folder_module(root, batch_size=5, num_classes=2)
    dm.setup("fit")
    [(images, labels)] = list(dm.train_dataloader())  # as the loader serves them, before scaling on the device
    assert images.shape == (5, 3, 16, 16) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1]  # cat (3 images) = 0, dog = 1


def test_flat_folder_with_a_sub_folder_is_one_class_and_hidden_files_are_skipped(tmp_path: Path) -> None:
    """Images beside sub-folders make one unlabelled set; dot files (macOS ._x.png, .DS_Store) are ignored."""
    root = tmp_path / "flat"
    (root / "more").mkdir(parents=True)
    for path in ("a.png", "b.jpg", "more/c.png"):
        Image.fromarray(noise(12, 12, 3)).save(root / path)
    (root / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    (root / ".DS_Store").write_bytes(b"Bud1")
    (root / "notes.txt").write_text("not an image")
    dm = folder_module(root, batch_size=3)
    [(images, labels)] = batches(dm)
    assert images.shape == (3, 3, 16, 16) and labels.tolist() == [0, 0, 0]


def test_num_classes_must_match_the_class_folders(tmp_path: Path) -> None:
    """data.num_classes that the folders cannot give is refused with the count they do give."""
    root = tmp_path / "classes"
    for path in ("a/0.png", "b/0.png", "c/0.png"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(noise(8, 8)).save(root / path)
    with pytest.raises(
        ConfigError, match=r"data\.num_classes=10, but .* has 3 class sub-folders; set data\.num_classes=3"
    ):
        folder_module(root, num_classes=10).setup("fit")
    Image.fromarray(noise(8, 8)).save(root / "loose.png")
    with pytest.raises(ConfigError, match=r"not all in class sub-folders; set data\.num_classes=null"):
        folder_module(root, num_classes=3).setup("fit")


def test_unreadable_files_are_named_at_setup(tmp_path: Path) -> None:
    """Random bytes named .png and a truncated PNG are listed with the fix, before any batch is drawn."""
    root = tmp_path / "damaged"
    write_every_kind(root)
    (root / "x.png").write_bytes(RNG.bytes(500))
    good = (root / "rgb.png").read_bytes()
    (root / "sub").mkdir()
    (root / "sub" / "half.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetNotFoundError) as err:
        folder_module(root).setup("fit")
    message = str(err.value)
    assert "2 of 9 image files" in message and "remove or re-save them" in message
    assert "x.png (cannot identify image file)" in message and "sub/half.png" in message
    assert "\n" not in message


def test_many_unreadable_files_are_counted(tmp_path: Path) -> None:
    """Past five, the message names five bad files and counts the rest."""
    root = tmp_path / "junk"
    root.mkdir()
    for i in range(8):
        (root / f"{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(
        DatasetNotFoundError, match=r"8 of 8 image files .*4\.jpg \(cannot identify image file\) and 3 more"
    ):
        folder_module(root).setup("fit")


def test_a_jpeg_cut_short_is_named_when_decoded(tmp_path: Path) -> None:
    """A JPEG's header says nothing of its end, so a cut-off one passes setup; decoding it names the file."""
    root = tmp_path / "cut"
    root.mkdir()
    Image.fromarray(noise(128, 128, 3)).save(root / "whole.jpg")  # mostly scan data: half of it keeps the header
    whole = (root / "whole.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    dm = folder_module(root)
    dm.setup("fit")
    with pytest.raises(DatasetNotFoundError, match=r"cut\.jpg cannot be decoded .*; remove or re-save it"):
        list(dm.train_dataloader())


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.write_bytes(b"a file"), "is a file, not a folder"),
        (lambda root: root.mkdir(), "holds no images (it is empty)"),
        (
            lambda root: (root.mkdir(), (root / "a.txt").write_text("x")),
            "holds no images (only 1 other file(s), e.g. 'a.txt')",
        ),
    ],
    ids=["missing", "a-file", "empty", "no-images"],
)
def test_folders_without_images_are_refused(tmp_path: Path, make: object, fragment: str) -> None:
    """Each says what data.data_dir is and what to put there."""
    root = tmp_path / "data"
    make(root)  # type: ignore[operator]
    with pytest.raises(DatasetNotFoundError) as err:
        folder_module(root).setup("fit")
    assert f"data.data_dir={str(root)!r} {fragment}" in str(err.value)


def test_channels_other_than_grey_or_colour_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.channels=4.*set data\.channels=1 or data\.channels=3"):
        folder_module(tmp_path, channels=4)


def test_a_batch_larger_than_the_folder_is_refused(tmp_path: Path) -> None:
    """With drop_last, a batch the folder cannot fill would give no batches at all."""
    write_every_kind(tmp_path / "few")
    dm = folder_module(tmp_path / "few", batch_size=16)
    dm.setup("fit")
    with pytest.raises(ConfigError, match=r"data\.batch_size=16 is more than the 7 samples"):
        dm.train_dataloader()


def test_workers_decode_the_images(tmp_path: Path) -> None:
    """With DataLoader worker processes (the config's default is 2), the same batches come out."""
    write_every_kind(tmp_path / "mixed")
    in_process = batches(folder_module(tmp_path / "mixed", batch_size=7))
    in_workers = batches(folder_module(tmp_path / "mixed", batch_size=7, num_workers=2))
    assert torch.equal(in_process[0][0], in_workers[0][0])


def write_images(root: Path, names: list[str]) -> list[Path]:
    """A small PNG at each relative path under ``root``; returns the paths."""
    paths = [root / name for name in names]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(noise(8, 8, 3)).save(path)
    return paths


def split_files(dm: ImageFolderDataModule) -> tuple[list[Path], list[Path]]:
    train, test = dm.load_split(train=True), dm.load_split(train=False)
    assert isinstance(train, ImageFiles) and isinstance(test, ImageFiles)
    return train.files, test.files


def test_a_held_out_test_split_is_disjoint_stable_and_seeded_by_the_data(tmp_path: Path) -> None:
    """data.test_fraction=0.25 of 60 images: train and test are disjoint and cover the folder; the same split for
    every call and every training seed; another data.split_seed gives another; images added later leave every
    earlier one in its split."""
    root = tmp_path / "photos"
    images = write_images(root, [f"{i:02d}.png" for i in range(60)])
    train, test = split_files(folder_module(root, test_fraction=0.25))
    assert set(train).isdisjoint(test) and sorted(train + test) == images
    assert 5 <= len(test) <= 25  # about a quarter: each image's draw is its own
    for seed in (0, 7):  # the run's seed shuffles the training data, not the split
        assert split_files(folder_module(root, test_fraction=0.25, seed=seed)) == (train, test)
    other_train, other_test = split_files(folder_module(root, test_fraction=0.25, split_seed=1))
    assert other_test != test and set(other_train).isdisjoint(other_test)
    write_images(root, [f"new_{i:02d}.png" for i in range(20)])
    grown_train, grown_test = split_files(folder_module(root, test_fraction=0.25))
    assert set(train) <= set(grown_train) and set(test) <= set(grown_test)


def test_training_reads_only_the_training_split(tmp_path: Path) -> None:
    """setup() (what training draws from) holds the training images only; the held-out ones never reach a batch."""
    root = tmp_path / "photos"
    write_images(root, [f"{i:02d}.png" for i in range(40)])
    dm = folder_module(root, test_fraction=0.25)
    dm.setup("fit")
    train, test = split_files(dm)
    assert isinstance(dm.train_set, ImageFiles) and dm.train_set.files == train
    assert test and set(test).isdisjoint(dm.train_set.files)


def test_train_and_test_folders_are_the_splits(tmp_path: Path) -> None:
    """<data_dir>/train and <data_dir>/test (or val): each split is its folder, classes named as in train/ (test/
    may lack one); test_fraction does not apply and images beside the two folders are not read."""
    root = tmp_path / "split"
    train = write_images(root, ["train/cat/0.png", "train/cat/1.png", "train/dog/0.png", "train/dog/1.png"])
    test = write_images(root, ["test/dog/2.png"])
    write_images(root, ["loose.png"])
    dm = folder_module(root, test_fraction=0.5, num_classes=2)
    assert split_files(dm) == (train, test)
    assert dm.load_split(train=True).targets == [0, 0, 1, 1]  # type: ignore[attr-defined]
    assert dm.load_split(train=False).targets == [1]  # type: ignore[attr-defined]  # dog, as in train/
    assert dm.split_rule == "folders train/ and test/"
    (root / "test").rename(root / "val")
    assert split_files(folder_module(root)) == (train, [root / "val/dog/2.png"])


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (
            ["a.png", "b.png"],
            r"has no test split: data\.test_fraction=0\.0 held out none of its 2 images .* set "
            r"data\.test_fraction \(e\.g\. 0\.1.* <data_dir>/train/ and <data_dir>/test/$",
        ),
        (
            ["test/a.png", "b.png"],
            r"has a test/ folder but no train/ one; put the training images in <data_dir>/train/",
        ),
        (
            ["train/cat/a.png", "test/cow/b.png"],
            r"test: the test split's class sub-folders must be named as the "
            r"training split's \(cat\); it has cow$",
        ),
    ],
    ids=["none-held-out", "test-without-train", "unknown-test-class"],
)
def test_a_folder_without_a_test_split_names_the_fix(tmp_path: Path, names: list[str], message: str) -> None:
    """Asked for the test split (metrics.reference_split=test, ganforge-eval floor=true), a folder that has none
    says how to make one instead of handing out the training images."""
    write_images(tmp_path / "data", names)
    with pytest.raises(DatasetNotFoundError, match=message):
        folder_module(tmp_path / "data").load_split(train=False)


def test_a_test_fraction_outside_0_1_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^data\.test_fraction=1\.5: .* in \[0, 1\); e\.g\. data\.test_fraction=0\.1$"
    ):
        folder_module(tmp_path, test_fraction=1.5)


def test_reference_features_of_a_split_are_cached_per_split_rule(tmp_path: Path) -> None:
    """The real-feature cache keys a folder's test split by how it was cut: another split seed (or the hold-out
    of a folder cached before it existed) is computed afresh, not served the other split's features."""
    write_images(tmp_path / "photos", [f"{i:02d}.png" for i in range(40)])
    extractor, cache = DomainFeatures("mnist"), tmp_path / "cache"
    for split_seed in (0, 1, 0):
        dm = folder_module(tmp_path / "photos", channels=1, resolution=28, test_fraction=0.25, split_seed=split_seed)
        features = split_features(dm, extractor, "test", 100, cache_dir=str(cache))
        assert len(features) == len(dm.load_split(train=False))  # type: ignore[arg-type]
    assert len(list(cache.iterdir())) == 2
