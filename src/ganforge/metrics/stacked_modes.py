"""Modes of Stacked MNIST samples (the VEEGAN / PacGAN protocol; the 2-D mixtures' is :mod:`.mode_coverage`).

The MNIST domain classifier labels each channel of a sample; the triple of its three predictions is the sample's
mode, one of 1,000. Reported: the modes seen, KL(p_gen ‖ uniform over 1,000) of the modes' histogram, and the modes
seen among confidently classified samples only. PacGAN counts 26,000 samples (``metrics.n_samples=26000``).
"""

from __future__ import annotations

import torch

from ganforge.data.stacked import DIGITS, MODES, PLACE_VALUES
from ganforge.metrics.mode_coverage import kl_to_uniform

#: The softmax probability each of a sample's digits needs for its mode to count in ``confident_modes``.
CONFIDENCE = 0.9


def triple_log_probs(channel_logits: torch.Tensor) -> torch.Tensor:
    """(N, 3, 10) logits of each channel's digit -> (N, 1000) log-probabilities of the triples, the channels
    classified independently; column ``100 d_R + 10 d_G + d_B``. Their softmax is the product of the channels'
    softmaxes, so they are the logits of a 1,000-class classifier (IS over triples) from which
    :func:`channel_probabilities` recovers each channel's."""
    log_probs = channel_logits.log_softmax(dim=-1)
    joint = log_probs[:, 0]
    for channel in range(1, log_probs.shape[1]):
        joint = (joint[:, :, None] + log_probs[:, channel, None, :]).flatten(1)
    return joint


def channel_probabilities(log_probs: torch.Tensor) -> torch.Tensor:
    """(N, 1000) triple log-probabilities (:func:`triple_log_probs`) -> (N, 3, 10) each channel's digit
    probabilities: the triples' probabilities summed over the other two channels' digits."""
    probs = log_probs.softmax(dim=1).view(-1, *[10] * DIGITS)
    return torch.stack(
        [probs.sum(dim=tuple(d for d in range(1, DIGITS + 1) if d != channel + 1)) for channel in range(DIGITS)],
        dim=1,
    )


def stacked_modes(log_probs: torch.Tensor, confidence: float = CONFIDENCE) -> dict[str, float]:
    """``modes``: distinct triples among the samples' predicted triples (the argmax digit of each channel);
    ``kl``: KL(p_gen ‖ uniform over 1,000) of their histogram in nats (:func:`kl_to_uniform`: 0 for every mode
    equally often, ln 1000 ≈ 6.91 for one mode only); ``confident_modes``: distinct triples among the samples whose
    three digits each have a softmax probability above ``confidence`` (a blot between digits counts in ``modes`` and
    ``kl`` as whatever it resembles most, but not here). ``log_probs``: the samples' (N, 1000) triple log-probabilities
    (:func:`triple_log_probs`, the stacked extractor's logits)."""
    if log_probs.shape[1:] != (MODES,):
        raise ValueError(f"stacked_modes takes (N, {MODES}) triple log-probabilities, got {tuple(log_probs.shape)}")
    top, digits = channel_probabilities(log_probs).max(dim=2)
    modes = (digits * PLACE_VALUES.to(digits.device)).sum(dim=1)
    confident = (top > confidence).all(dim=1)
    return {
        "modes": float(modes.unique().numel()),
        "kl": kl_to_uniform(modes, MODES),
        "confident_modes": float(modes[confident].unique().numel()),
    }
