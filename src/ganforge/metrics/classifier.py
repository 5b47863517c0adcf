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

import kornia
import torch
from torch import Tensor, nn

from ganforge.data.datamodules import GANDataModule, TensorImages
from ganforge.errors import ClassifierError

#: Weights shipped with the package (``<domain>_v<version>.pt``), used when the user cache has none.
PACKAGE_WEIGHTS = Path(__file__).parent / "weights"
#: The versions shipped; the last is the default. Both are the same CNN (``grid=1``): v1 trained on the images as
#: they are (every domain number published before v2), v2 on softened, noised and shifted ones (``augmented``;
#: benchmarks/disturbances.py chose it). ``metrics.features.version=1`` reproduces v1's numbers.
VERSIONS = (1, 2)
#: The data config that trains a domain's classifier where it differs from the domain (MNIST: the offline subset).
TRAINING_DATA = {"mnist": "mnist_5k"}
#: Domains whose images stack another domain's, one per channel (Stacked MNIST): that domain's classifier reads
#: each channel (``features.StackedDigitFeatures``); they have no classifier of their own.
STACKED_DOMAINS = {"stacked_mnist": "mnist"}


def _conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def _dense_block(in_features: int, out_features: int) -> list[nn.Module]:
    return [nn.Linear(in_features, out_features, bias=False), nn.BatchNorm1d(out_features), nn.ReLU(inplace=True)]


class DomainClassifier(nn.Module):
    """A small classifier of a domain's images, whose penultimate activations are the FID/KID space.

    ``arch=cnn``: conv-BN-ReLU ×3 (``width``, 2·``width``, 4·``width`` channels; 2×2 max-pool after the first two)
    -> average pool to a ``grid`` × ``grid`` map, flattened: 4·``width``·``grid``² features. ``grid=1`` (global
    pooling, both shipped versions) forgets where things are; ``grid=2`` keeps which quarter of the image
    each feature fired in. ``arch=mlp``: two fully connected BN-ReLU layers (16·``width`` and 8·``width`` units; the
    second's activations are the features), no convolution at all: an independent second opinion on the ranking of
    image sets (benchmarks/disturbances.py). Inputs are images in [-1, 1] at the ``resolution`` it was trained at.
    """

    def __init__(
        self,
        channels: int = 1,
        resolution: int = 28,
        num_classes: int = 10,
        width: int = 32,
        grid: int = 1,
        arch: str = "cnn",
    ) -> None:
        super().__init__()
        self.channels = channels
        self.resolution = resolution
        self.num_classes = num_classes
        if arch == "cnn":
            self.num_features = 4 * width * grid * grid
            self.body = nn.Sequential(
                *_conv_block(channels, width),
                nn.MaxPool2d(2),
                *_conv_block(width, 2 * width),
                nn.MaxPool2d(2),
                *_conv_block(2 * width, 4 * width),
                nn.AdaptiveAvgPool2d(grid),
                nn.Flatten(),
            )
        elif arch == "mlp":
            self.num_features = 8 * width
            self.body = nn.Sequential(
                nn.Flatten(),
                *_dense_block(channels * resolution * resolution, 16 * width),
                *_dense_block(16 * width, self.num_features),
            )
        else:
            raise ClassifierError(f"arch={arch!r}: the domain classifier is arch=cnn or arch=mlp")
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


def augmented(images: Tensor, rng: torch.Generator, max_blur: float = 1.0, max_noise: float = 0.1) -> Tensor:
    """Training images in [-1, 1], each independently (probability ½ each) softened by a Gaussian blur of σ up to
    ``max_blur`` px, noised by Gaussian noise of σ up to ``max_noise``, and shifted by up to 2 px (black enters).

    A classifier that has seen softened and noisy garments keeps their features near the sharp ones', so that FID
    in its features weighs what changes the content (shape, class) above a softening a person barely sees.
    """
    n = len(images)

    def chosen() -> Tensor:
        return (torch.rand(n, 1, 1, 1, generator=rng) < 0.5).to(images.dtype)

    sigma = (torch.rand(n, generator=rng) * (max_blur - 0.1) + 0.1).unsqueeze(1).expand(n, 2)
    x = torch.lerp(images, kornia.filters.gaussian_blur2d(images, (7, 7), sigma), chosen())
    x = x + chosen() * torch.rand(n, 1, 1, 1, generator=rng) * max_noise * torch.randn(x.shape, generator=rng)
    shift = torch.randint(-2, 3, (n, 2), generator=rng) * chosen().view(n, 1) * 2 / x.shape[-1]
    grid = nn.functional.affine_grid(
        torch.cat([torch.eye(2).expand(n, 2, 2), shift.unsqueeze(2)], dim=2), list(x.shape), align_corners=False
    )
    return nn.functional.grid_sample(x + 1, grid, mode="nearest", padding_mode="zeros", align_corners=False) - 1


def train_domain_classifier(
    datamodule: GANDataModule,
    epochs: int = 4,
    seed: int = 0,
    lr: float = 6e-3,
    batch_size: int = 128,
    width: int = 32,
    grid: int = 1,
    augment: bool = False,
    arch: str = "cnn",
) -> tuple[DomainClassifier, dict[str, Any]]:
    """Train on the datamodule's training split (CPU, deterministic: the same seed gives the same weights).

    Returns the classifier in eval mode and its training record (sizes, hyperparameters, test
    accuracy), the metadata :func:`save_classifier` stores. Adam with a cosine learning-rate
    decay to zero, on :func:`augmented` images when ``augment``; the caller's global RNG state is left untouched.
    """
    if datamodule.domain is None:
        raise ClassifierError(
            f"{datamodule.name} has no domain classifier (its datamodule sets no `domain`); "
            "classifiers are trained for the datasets that set one (data=fashion_mnist, data=mnist, data=mnist_5k)"
        )
    if datamodule.domain in STACKED_DOMAINS:
        digits = STACKED_DOMAINS[datamodule.domain]
        raise ClassifierError(
            f"{datamodule.name} is scored channel by channel by the {digits} classifier; train that one: "
            f"ganforge-train-classifier data={TRAINING_DATA.get(digits, digits)}"
        )
    train, test = datamodule.load_split(train=True), datamodule.load_split(train=False)
    assert isinstance(train, TensorImages) and isinstance(test, TensorImages), "needs an in-memory image dataset"
    assert datamodule.resolution is not None and datamodule.num_classes is not None
    rng = torch.Generator().manual_seed(seed)
    steps_per_epoch = len(train) // batch_size
    with deterministic_algorithms(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # weight initialisation
        model = DomainClassifier(datamodule.channels, datamodule.resolution, datamodule.num_classes, width, grid, arch)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(train), generator=rng)
            for step in range(steps_per_epoch):
                index = order[step * batch_size : (step + 1) * batch_size]
                images = to_unit_range(train.images[index])
                images = augmented(images, rng) if augment else images
                loss = nn.functional.cross_entropy(model(images), train.labels[index])
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
        "augment": augment,
        "arch": arch,
        "width": width,
        "grid": grid,
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


def packaged_weights(domain: str, version: int | None = None) -> Path:
    """The shipped weights of a domain's classifier, the latest version unless one is named."""
    if version is not None and version not in VERSIONS:
        shipped = ", ".join(map(str, VERSIONS))
        raise ClassifierError(f"metrics.features.version={version}: ganforge ships versions {shipped} (null: latest)")
    return PACKAGE_WEIGHTS / f"{domain}_v{version or VERSIONS[-1]}.pt"


def classifier_path(domain: str, path: str | os.PathLike[str] | None = None, version: int | None = None) -> Path:
    """The weights file for a domain: ``path`` if given, else the shipped ``version`` if named, else the user
    cache, else the package's latest."""
    if path is not None:
        candidates = [Path(path)]
    elif version is not None:
        candidates = [packaged_weights(domain, version)]
    else:
        candidates = [user_classifier_path(domain), packaged_weights(domain)]
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
        model = DomainClassifier(
            metadata["channels"], metadata["resolution"], metadata["num_classes"],
            metadata.get("width", 32), metadata.get("grid", 1), metadata.get("arch", "cnn"),
        )  # fmt: skip
        model.load_state_dict(saved["state_dict"])
    except Exception as err:  # noqa: BLE001 - torch raises many types for a missing or damaged file
        domain = file.stem
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        raise ClassifierError(
            f"domain classifier {str(file)!r} cannot be read ({reason}); it is missing, truncated or not "
            f"written by ganforge-train-classifier: {_fix(domain)}"
        ) from None
    return model.eval(), metadata
