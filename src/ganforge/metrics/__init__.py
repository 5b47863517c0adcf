"""Evaluation metrics: image metrics in a feature extractor's space, and 2-D mode coverage."""

from ganforge.metrics.features import DomainFeatures, FeatureExtractor, InceptionFeatures, auto_features
from ganforge.metrics.image_metrics import ImageScorer, extract, split_features
from ganforge.metrics.mode_coverage import mode_coverage

__all__ = [
    "DomainFeatures",
    "FeatureExtractor",
    "ImageScorer",
    "InceptionFeatures",
    "auto_features",
    "extract",
    "mode_coverage",
    "split_features",
]
