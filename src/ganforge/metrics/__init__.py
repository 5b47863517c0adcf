"""Evaluation metrics."""

from ganforge.metrics.mode_coverage import mode_coverage

__all__ = ["mode_coverage"]
