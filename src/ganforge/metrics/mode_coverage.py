"""Mode coverage of a 2-D mixture (PacGAN protocol, Lin et al. 2018, section 5.1)."""

from __future__ import annotations

import torch


def kl_to_uniform(modes: torch.Tensor, num_modes: int) -> float:
    """KL(p ‖ uniform over ``num_modes``) in nats of the histogram of ``modes`` (each sample's mode index), PacGAN's
    (reverse) KL: empty bins contribute 0, so it is ``log(num_modes)`` for samples all of one mode, 0 for equal
    counts everywhere."""
    p = torch.bincount(modes.flatten(), minlength=num_modes).double() / modes.numel()
    nonzero = p > 0
    return (p[nonzero] * (p[nonzero] * num_modes).log()).sum().item()


def mode_coverage(samples: torch.Tensor, centres: torch.Tensor, std: float) -> dict[str, float]:
    """Modes captured, % high-quality samples and reverse KL(p_gen || uniform over modes).

    A sample is high quality when its nearest centre is closer than ``3 * std``; a mode is
    captured when at least one high-quality sample has it as nearest centre. The reverse
    KL uses the histogram of nearest centres over all samples (:func:`kl_to_uniform`).
    """
    distance, nearest = torch.cdist(samples.double(), centres.double()).min(dim=1)
    high_quality = distance < 3 * std
    captured = torch.unique(nearest[high_quality]).numel()
    return {
        "modes": float(captured),
        "high_quality": 100.0 * high_quality.double().mean().item(),
        "reverse_kl": kl_to_uniform(nearest, len(centres)),
    }
