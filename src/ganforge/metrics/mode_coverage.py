"""Mode coverage of a 2-D mixture (PacGAN protocol, Lin et al. 2018, section 5.1)."""

from __future__ import annotations

import torch


def mode_coverage(samples: torch.Tensor, centres: torch.Tensor, std: float) -> dict[str, float]:
    """Modes captured, % high-quality samples and reverse KL(p_gen || uniform over modes).

    A sample is high quality when its nearest centre is closer than ``3 * std``; a mode is
    captured when at least one high-quality sample has it as nearest centre. The reverse
    KL uses the histogram of nearest centres over all samples (natural log; empty bins
    contribute 0).
    """
    distance, nearest = torch.cdist(samples.double(), centres.double()).min(dim=1)
    high_quality = distance < 3 * std
    captured = torch.unique(nearest[high_quality]).numel()
    p = torch.bincount(nearest, minlength=len(centres)).double() / len(samples)
    nonzero = p > 0
    reverse_kl = (p[nonzero] * (p[nonzero] * len(centres)).log()).sum()
    return {
        "modes": float(captured),
        "high_quality": 100.0 * high_quality.double().mean().item(),
        "reverse_kl": reverse_kl.item(),
    }
