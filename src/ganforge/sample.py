"""``ganforge-sample``: draw samples from a checkpoint into an npz under key ``arr_0``.

Images are stored as uint8 NHWC (the layout FID tools read); vector samples, such as
2-D mixture points, as float32 of shape (N, D).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torchvision.utils import save_image

from ganforge.config import generator_from_checkpoint, load_checkpoint
from ganforge.generation import generate_batches
from ganforge.plots import scatter_png
from ganforge.train import report_errors


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW floats -> [0, 255] NHWC uint8, the layout FID tools read."""
    return images.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def sample(cfg: DictConfig) -> Path:
    checkpoint = load_checkpoint(cfg.ckpt)
    generator, _ = generator_from_checkpoint(checkpoint, ema=cfg.ema)
    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    generator.to(device)
    samples = torch.cat([x.cpu() for x in generate_batches(generator, cfg.n, cfg.seed, cfg.batch_size, device)])
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if samples.dim() == 2:  # vectors such as 2-D mixture points: stored as they are
        np.savez(out, arr_0=samples.numpy().astype(np.float32))
        if cfg.grid:
            scatter_png(samples, None, Path(cfg.grid), title=f"{len(samples)} samples")
    else:
        np.savez(out, arr_0=to_uint8_nhwc(samples))
        if cfg.grid:
            save_image(samples[: cfg.grid_n], cfg.grid, nrow=int(cfg.grid_n**0.5), normalize=True, value_range=(-1, 1))
    print(f"wrote {len(samples)} samples to {out}" + (f" and a grid to {cfg.grid}" if cfg.grid else ""))
    return out


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    report_errors(sample, "ganforge-sample")(cfg)


if __name__ == "__main__":
    main()
