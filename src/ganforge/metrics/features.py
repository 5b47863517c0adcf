"""Feature extractors: images in [-1, 1] -> (features, logits), the spaces the image metrics live in.

FID, KID and precision/recall compare feature distributions; IS reads class probabilities from
the logits. ``inception`` is the standard (comparable with papers, needs the Inception weights);
``domain`` is the project's own classifier of the dataset (offline, comparable across runs only).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torchmetrics.image.fid import NoTrainInceptionV3

from ganforge.data.stacked import DIGITS
from ganforge.errors import GanforgeError
from ganforge.metrics.classifier import STACKED_DOMAINS, classifier_path, load_classifier, to_pixels
from ganforge.metrics.stacked_modes import triple_log_probs


class FeatureExtractorError(GanforgeError):
    """A feature extractor cannot be built (weights missing, unreadable or not downloadable)."""


@cache
def file_digest(path: Path) -> str:
    """Short SHA-256 of a weights file: the cache key changes when the weights do."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class FeatureExtractor(nn.Module):
    """Maps images in [-1, 1] of shape (N, C, H, W) to ``(features, logits)``.

    ``identity`` names the extractor and its weights for the real-statistics cache key. ``differentiable``: its
    features carry gradients back to the images, so a loss may be computed in them (SRGAN's content loss).
    """

    num_features: int
    identity: str
    differentiable: bool = True
    #: The input size the extractor's weights were trained at, where images of another size are brought to it as
    #: the data reached the net (``fit``: crop a padding off, or resize); None: its own standard resizing (Inception).
    resolution: int | None = None
    fit: str = "resize"

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def resamples(self, resolution: int | None) -> bool:
        """Whether images of ``resolution`` are resized away from the data's own pixels on their way in, which
        costs FID by itself (the extractor's own input size, as Inception's 299, is part of its standard)."""
        if resolution is None or self.resolution is None or resolution == self.resolution:
            return False
        return self.fit == "resize" or resolution < self.resolution  # pad only reaches up


class InceptionFeatures(FeatureExtractor):
    """torchmetrics' Inception-v3 (torch-fidelity's port of the TensorFlow FID network).

    Features: the 2048-d pool layer (FID, KID, precision/recall). Logits: the 1008 unbiased
    logits (the pool features times the classifier weights, no bias), which IS reads.
    ``weights_path`` points at the weights file on machines without a network. Not differentiable: the images are
    quantized to 8 bits first, as the FID protocol reads them (and torch-fidelity's network takes uint8 only).
    """

    num_features = 2048
    differentiable = False

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        if weights_path is not None and not Path(weights_path).is_file():
            raise FeatureExtractorError(
                f"Inception weights file {weights_path!r} does not exist; download it from {URL_INCEPTION_V3} "
                "and pass its path as metrics.features.weights_path=PATH"
            )
        try:
            self.net = NoTrainInceptionV3(
                name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=weights_path
            )
        except Exception as err:  # noqa: BLE001 - a download or an unpickling can fail in many ways
            source = f"from {weights_path!r}" if weights_path else "by download (no network?)"
            raise FeatureExtractorError(
                f"the Inception-v3 weights could not be loaded {source}: {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}. Download {URL_INCEPTION_V3} on a machine with a "
                "network and pass metrics.features.weights_path=PATH, use metrics/features=domain, or train "
                "without image metrics: '~callbacks.image_metrics' '~callbacks.best_checkpoint'"
            ) from None
        self.identity = "inception-v3-compat:" + (file_digest(Path(weights_path)) if weights_path else "download")

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = to_pixels(images)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        pool = self.net(pixels)
        return pool, pool @ self.net.fc.weight.T


class DomainFeatures(FeatureExtractor):
    """The project's classifier of the dataset's domain (``ganforge-train-classifier``).

    Features: its penultimate layer; logits: its class logits. Images at another resolution (e.g. 32x32
    Fashion-MNIST) are brought back to the classifier's as the data reached it (``fit``, the data's ``data.fit``):
    ``pad``: their centre is cropped (lossless); ``resize``: antialiased bilinear (a round trip that costs FID).
    """

    def __init__(
        self, domain: str | None, weights_path: str | None = None, fit: str = "resize", version: int | None = None
    ) -> None:
        super().__init__()
        if fit not in ("pad", "resize"):
            raise FeatureExtractorError(f"metrics.features.fit={fit!r}: choose pad or resize (the data's data.fit)")
        self.fit = fit
        if domain in STACKED_DOMAINS:
            raise FeatureExtractorError(
                f"{domain} stacks {STACKED_DOMAINS[domain]} images, one per channel, which "
                "metrics/features=domain cannot read: use metrics/features=auto (the default), which reads each channel"
            )
        if weights_path:
            path = Path(weights_path)
        elif domain is not None:
            path = classifier_path(domain, version=version)
        else:
            raise FeatureExtractorError(
                "this dataset has no domain classifier; use metrics/features=inception (or auto), or name "
                "one with metrics.features.domain=fashion_mnist|mnist"
            )
        self.classifier, self.metadata = load_classifier(path)
        self.classifier.requires_grad_(False).eval()
        self.resolution = int(self.metadata["resolution"])
        self.num_features = self.classifier.num_features
        shipped = f"v{self.metadata['version']}:" if self.metadata.get("version") else ""  # v1 files name none
        self.identity = f"domain:{self.metadata.get('domain', domain)}:{shipped}{file_digest(path)}"

    def train(self, mode: bool = True) -> DomainFeatures:
        """Always in eval mode: it is a fixed measuring instrument."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = images.shape[-2:]
        side = self.classifier.resolution
        if (height, width) != (side, side):
            if self.fit == "pad" and min(height, width) >= side:
                top, left = (height - side) // 2, (width - side) // 2
                images = images[..., top : top + side, left : left + side]
            else:
                images = nn.functional.interpolate(
                    images, size=(side, side), mode="bilinear", antialias=True, align_corners=False
                )
        return self.classifier.features_and_logits(images)


class StackedDigitFeatures(DomainFeatures):
    """Stacked images (Stacked MNIST's three digits as R, G, B) read channel by channel by the stacked domain's
    classifier (MNIST's for ``stacked_mnist``).

    Features: the channels' features side by side (3 x 128 for MNIST's); logits: the log-probabilities of the
    1,000 digit triples (:func:`~ganforge.metrics.stacked_modes.triple_log_probs`), so IS is over triples and the
    image scorer counts modes from them (:func:`~ganforge.metrics.stacked_modes.stacked_modes`).
    """

    def __init__(
        self, domain: str, weights_path: str | None = None, fit: str = "resize", version: int | None = None
    ) -> None:
        super().__init__(STACKED_DOMAINS[domain], weights_path, fit, version)
        self.num_features = DIGITS * self.classifier.num_features
        self.identity = f"domain:{domain}:{self.identity.split(':', 2)[2]}"  # the classifier's version and digest

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, channels, height, width = images.shape
        if channels != DIGITS:
            raise ValueError(f"stacked digits come as {DIGITS} channels, got images of shape {tuple(images.shape)}")
        features, logits = super().forward(images.reshape(n * channels, 1, height, width))
        return features.reshape(n, -1), triple_log_probs(logits.reshape(n, channels, -1))


def auto_features(
    domain: str | None, weights_path: str | None = None, fit: str = "resize", version: int | None = None
) -> FeatureExtractor:
    """The domain classifier (of ``version``) when the data has one, meeting the data as ``fit`` says (for stacked
    domains, the classifier of what they stack, on each channel), else Inception from ``weights_path`` (or a
    download)."""
    if domain in STACKED_DOMAINS:
        return StackedDigitFeatures(domain, fit=fit, version=version)
    if domain is not None:
        return DomainFeatures(domain, fit=fit, version=version)
    return InceptionFeatures(weights_path)
