"""The ``domain`` feature extractor: a small CNN trained by the project on a dataset's training split.

FID and KID are computed in its penultimate features, IS from its class probabilities. It is
trained deterministically on the CPU and shipped with the package (``metrics/weights/``), so
evaluation needs no download; ``ganforge-train-classifier`` retrains it.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.data.datamodules import GANDataModule, TensorImages
from ganforge.errors import ClassifierError

#: Weights shipped with the package, used when the user cache has none.
PACKAGE_WEIGHTS = Path(__file__).parent / "weights"
#: The data config that trains a domain's classifier where it differs from the domain (MNIST: the offline subset).
TRAINING_DATA = {"mnist": "mnist_5k"}


def _conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class DomainClassifier(nn.Module):
    """conv-BN-ReLU ×3 (32, 64, 128 channels; 2×2 max-pool after the first two) -> global average pool -> linear.

    Inputs are images in [-1, 1]; the 128-d pooled activations are the penultimate features
    (the FID/KID space). Global pooling makes the features independent of the spatial size,
    but the input must have the ``resolution`` the classifier was trained at.
    """

    num_features = 128

    def __init__(self, channels: int = 1, resolution: int = 28, num_classes: int = 10) -> None:
        super().__init__()
        self.channels = channels
        self.resolution = resolution
        self.num_classes = num_classes
        self.body = nn.Sequential(
            *_conv_block(channels, 32),
            nn.MaxPool2d(2),
            *_conv_block(32, 64),
            nn.MaxPool2d(2),
            *_conv_block(64, self.num_features),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(self.num_features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """(N, C, H, W) images in [-1, 1] -> (N, 128) penultimate features."""
        if x.dim() != 4 or x.shape[1:] != (self.channels, self.resolution, self.resolution):
            raise ValueError(
                f"the classifier takes (N, {self.channels}, {self.resolution}, {self.resolution}) images, "
                f"got {tuple(x.shape)}"
            )
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Features (FID/KID) and logits (IS) from one forward pass; differentiable w.r.t. ``x`` (a content loss
        in these features trains G through them; scoring runs under ``no_grad``)."""
        features = self.features(x)
        return features, self.head(features)


def to_unit_range(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1], the scaling the GANs' data goes through."""
    return images.float().div(127.5).sub(1.0)


def to_pixels(images: Tensor) -> Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded and clipped: what an image file of them holds."""
    return images.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)


@contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Force deterministic kernels for the block, then restore the caller's settings.

    Filling uninitialised memory (a debugging aid that deterministic mode turns on) is switched
    off: every kernel here overwrites its output, and the fills cost a fifth of a CPU step.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    deterministic: Any = torch.utils.deterministic  # the flag is a property of the module, which its stubs lack
    fill = deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True)
    deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=warn_only)
        deterministic.fill_uninitialized_memory = fill


@torch.no_grad()
def accuracy(model: DomainClassifier, split: TensorImages, batch_size: int = 500) -> float:
    """Top-1 accuracy on a uint8 split (fixed batching, so a re-evaluation reproduces it exactly)."""
    model.eval()
    correct = 0
    for start in range(0, len(split), batch_size):
        logits = model(to_unit_range(split.images[start : start + batch_size]))
        correct += int((logits.argmax(1) == split.labels[start : start + batch_size]).sum())
    return correct / len(split)


def train_domain_classifier(
    datamodule: GANDataModule, epochs: int = 4, seed: int = 0, lr: float = 6e-3, batch_size: int = 128
) -> tuple[DomainClassifier, dict[str, Any]]:
    """Train on the datamodule's training split (CPU, deterministic: the same seed gives the same weights).

    Returns the classifier in eval mode and its training record (sizes, hyperparameters, test
    accuracy), the metadata :func:`save_classifier` stores. Adam with a cosine learning-rate
    decay to zero; the caller's global RNG state is left untouched.
    """
    if datamodule.domain is None:
        raise ClassifierError(
            f"{datamodule.name} has no domain classifier (its datamodule sets no `domain`); "
            "classifiers are trained for the datasets that set one (data=fashion_mnist, data=mnist, data=mnist_5k)"
        )
    train, test = datamodule.load_split(train=True), datamodule.load_split(train=False)
    assert isinstance(train, TensorImages) and isinstance(test, TensorImages), "needs an in-memory image dataset"
    assert datamodule.resolution is not None and datamodule.num_classes is not None
    rng = torch.Generator().manual_seed(seed)
    steps_per_epoch = len(train) // batch_size
    with deterministic_algorithms(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # weight initialisation
        model = DomainClassifier(datamodule.channels, datamodule.resolution, datamodule.num_classes)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(train), generator=rng)
            for step in range(steps_per_epoch):
                index = order[step * batch_size : (step + 1) * batch_size]
                loss = nn.functional.cross_entropy(model(to_unit_range(train.images[index])), train.labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    record = {
        "domain": datamodule.domain,
        "dataset": datamodule.name,
        "train_size": len(train),
        "test_size": len(test),
        "test_accuracy": accuracy(model, test),
        "epochs": epochs,
        "seed": seed,
        "lr": lr,
        "batch_size": batch_size,
        "channels": model.channels,
        "resolution": model.resolution,
        "num_classes": model.num_classes,
        "torch": str(torch.__version__),  # a TorchVersion would not load with weights_only
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    }
    return model.eval(), record


def user_classifier_path(domain: str) -> Path:
    """``${GANFORGE_CACHE_DIR:-~/.cache/ganforge}/classifiers/<domain>.pt``: where training writes by default."""
    cache = os.environ.get("GANFORGE_CACHE_DIR") or Path.home() / ".cache" / "ganforge"
    return Path(cache).expanduser() / "classifiers" / f"{domain}.pt"


def _fix(domain: str) -> str:
    data = TRAINING_DATA.get(domain, domain)
    return f"train one with `ganforge-train-classifier data={data}` (it writes to the user cache, searched first)"


def classifier_path(domain: str, path: str | os.PathLike[str] | None = None) -> Path:
    """The weights file for a domain: ``path`` if given, else the user cache, else the package's copy."""
    candidates = [Path(path)] if path is not None else [user_classifier_path(domain), PACKAGE_WEIGHTS / f"{domain}.pt"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(repr(str(c)) for c in candidates)
    raise ClassifierError(f"no {domain!r} domain classifier (looked for {tried}); {_fix(domain)}")


def save_classifier(model: DomainClassifier, path: str | os.PathLike[str], metadata: dict[str, Any]) -> Path:
    """Write weights and metadata as one file, atomically: a reader never sees half a file."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        torch.save({"state_dict": model.state_dict(), "metadata": dict(metadata)}, temporary)
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    return out


def load_classifier(path: str | os.PathLike[str]) -> tuple[DomainClassifier, dict[str, Any]]:
    """Read a file written by :func:`save_classifier`; returns the classifier in eval mode and its metadata."""
    file = Path(path)
    try:
        saved = torch.load(file, map_location="cpu", weights_only=True)
        metadata = saved["metadata"]
        model = DomainClassifier(metadata["channels"], metadata["resolution"], metadata["num_classes"])
        model.load_state_dict(saved["state_dict"])
    except Exception as err:  # noqa: BLE001 - torch raises many types for a missing or damaged file
        domain = file.stem
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        raise ClassifierError(
            f"domain classifier {str(file)!r} cannot be read ({reason}); it is missing, truncated or not "
            f"written by ganforge-train-classifier: {_fix(domain)}"
        ) from None
    return model.eval(), metadata
