"""How well an unsupervised categorical code (InfoGAN's, an adversarial autoencoder's clusters) matches the
data's classes: the accuracy of the best assignment of code values to classes.

With as many values as classes, the assignment is one-to-one (the Hungarian method, scipy's
``linear_sum_assignment``), the figure InfoGAN reports for its 10-way code on MNIST; with more values than
classes (the adversarial autoencoder's 16 clusters) each value takes its most frequent class.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from ganforge.generation import eval_mode


def confusion(values: torch.Tensor, classes: torch.Tensor, n_values: int, n_classes: int) -> np.ndarray:
    """(n_values, n_classes) counts of (code value, class) pairs."""
    counts = torch.zeros(n_values, n_classes, dtype=torch.long)
    counts.index_put_((values.long().cpu(), classes.long().cpu()), torch.ones(len(values), dtype=torch.long), True)
    return counts.numpy()


def best_assignment_accuracy(counts: np.ndarray) -> float:
    """The share of samples whose class is the one their code value is assigned to, for the best assignment:
    one-to-one when there are no more values than classes, else each value to its most frequent class."""
    total = counts.sum()
    if counts.shape[0] > counts.shape[1]:
        return float(counts.max(axis=1).sum() / total)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / total)


@torch.no_grad()
def classify(classifier: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The classifier's predicted classes for ``images`` in [-1, 1]."""
    with eval_mode(classifier):
        return torch.cat([classifier(batch).argmax(dim=1) for batch in images.split(batch_size)])
