"""Evaluation metrics: image metrics in a feature extractor's space, SWD of pyramid patches, 2-D mode coverage and
Stacked MNIST's modes."""

from ganforge.metrics.features import (
    DomainFeatures,
    FeatureExtractor,
    InceptionFeatures,
    StackedDigitFeatures,
    auto_features,
)
from ganforge.metrics.image_metrics import ImageScorer, extract, split_features
from ganforge.metrics.mode_coverage import mode_coverage
from ganforge.metrics.stacked_modes import stacked_modes
from ganforge.metrics.swd import sliced_wasserstein, swd_scores

__all__ = [
    "DomainFeatures",
    "FeatureExtractor",
    "ImageScorer",
    "InceptionFeatures",
    "StackedDigitFeatures",
    "auto_features",
    "extract",
    "mode_coverage",
    "sliced_wasserstein",
    "split_features",
    "stacked_modes",
    "swd_scores",
]
