"""``ganforge-encode``: the codes ``E(x)`` of a data split and the reconstructions ``G(E(x))``, from a checkpoint
of a game with an encoder (BiGAN/ALI, the adversarial autoencoder, VAE-GAN).

The codes go to an npz (``z``, with ``labels`` when the data has them, for linear probes or clustering) with each
image's reconstruction error; ``reconstructions=recon.png`` draws images above their reconstructions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torchvision.utils import save_image

from ganforge.config import build, load_checkpoint, module_from_checkpoint
from ganforge.errors import ConfigError
from ganforge.games import Game
from ganforge.games.encoders import EncoderGame
from ganforge.generation import eval_mode, resolve_device
from ganforge.metrics.classifier import to_unit_range
from ganforge.metrics.image_metrics import split_images, split_labels


def encoder_game(game: Game, ckpt: str) -> EncoderGame:
    """A checkpoint's game, if it has an encoder; else the error that says which games do."""
    if not isinstance(game, EncoderGame):
        played = "the plain game (game=null)" if type(game) is Game else f"game {type(game).__name__}"
        raise ConfigError(
            f"{ckpt!r} was trained with {played}, which has no encoder; ganforge-encode reads checkpoints of "
            "game=bigan, game=aae or game=vaegan"
        )
    return game


@torch.no_grad()
def encode_split(
    game: EncoderGame, generator: torch.nn.Module, batches: Any, device: torch.device, keep_every: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Codes, per-image reconstruction errors (mean squared, pixels in [-1, 1]) and, stacked as (2, N, ...),
    every ``keep_every``-th image with its reconstruction (None: none kept), for uint8 image ``batches``."""
    codes, errors, kept, seen = [], [], [], 0
    with eval_mode(game), eval_mode(generator):
        for images in batches:
            x = to_unit_range(images).to(device)
            code = game.encode(generator, x)
            reconstruction = game.decode(generator, code).float()
            codes.append(code.flatten(1).float().cpu())
            errors.append((reconstruction - x).square().flatten(1).mean(dim=1).cpu())
            if keep_every is not None:
                keep = torch.arange(-seen % keep_every, len(x), keep_every, device=device)
                kept.append(torch.stack([x[keep], reconstruction[keep]]).cpu())
            seen += len(x)
    return torch.cat(codes), torch.cat(errors), torch.cat(kept, dim=1) if kept else None


def encode(cfg: DictConfig) -> Path:
    module, train_cfg = module_from_checkpoint(load_checkpoint(cfg.ckpt))
    game = encoder_game(module.game, cfg.ckpt)
    generator = module.sampling_generator if cfg.ema else module.generator
    device = resolve_device(cfg.device)
    game.to(device)
    generator.to(device)
    datamodule = build(train_cfg.data)
    n = cfg.n if cfg.n is not None else 10**12  # a seeded subset only when smaller than the split
    images = min(n, len(datamodule.load_split(train=cfg.split == "train")))
    batches = split_images(datamodule, cfg.split, n, cfg.seed, cfg.batch_size)
    # the grid's images spread over the split (splits are often sorted by class)
    z, error, pairs = encode_split(game, generator, batches, device, keep_every=max(1, images // (cfg.grid_n // 2)))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    labels = split_labels(datamodule, cfg.split, n, cfg.seed) if datamodule.num_classes else None
    extra: dict[str, Any] = {} if labels is None else {"labels": labels.numpy()}
    np.savez(out, z=z.numpy(), error=error.numpy(), **extra)
    message = f"wrote {len(z)} codes of the {cfg.split} split to {out}; reconstruction MSE {error.mean():.4f}"
    if cfg.reconstructions and pairs is not None:
        columns = max(1, int((cfg.grid_n / 2) ** 0.5))
        rows = pairs[:, : min(cfg.grid_n // 2, pairs.shape[1]) // columns * columns]
        grid = rows.unflatten(1, (-1, columns)).transpose(0, 1).flatten(0, 2)  # image rows above their redraws
        save_image(grid, cfg.reconstructions, nrow=columns, normalize=True, value_range=(-1, 1))
        message += f", reconstructions in {cfg.reconstructions}"
    print(message)
    return out


if __name__ == "__main__":
    from ganforge.cli import encode as main

    main()
