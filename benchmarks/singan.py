"""SinGAN on one photo (Shaham et al. 2019): reconstruction, variety by start scale, patch statistics, wall time.

Trains ``experiment=singan`` (unless ``--ckpt`` names a checkpoint) as one process, timed from start to exit, then
scores its ``last.ckpt``:

- **reconstruction**: PSNR (dB, pixels in [0, 1]) of the chain drawn from its fixed noise z* (zeros above) against
  the training image, at the finest level;
- **variety** by start scale n: ``--samples`` samples drawn from level n on, the reconstruction below it (the
  paper's generation from scale n), their per-pixel standard deviation averaged over pixels and channels, divided
  by the standard deviation of the image's own pixels (the paper's diversity measure); 0 for the reconstruction;
- **SWD** (``ganforge.metrics.swd``, x1e3): the Laplacian-pyramid patches of those samples against the image's;
  the paper orders SIFID the same way (from scale 1 closer to the image than from scale 0: 0.05 vs 0.09).
  ``--per-image K`` also scores the first K samples one by one and averages (SIFID's protocol: each image's own
  patch statistics).

``--figure`` draws the README's figure: the image, random samples, samples at two other aspect ratios, and
paint-to-image (the image reduced to a few flat colours, injected below ``--paint-scale``).

    .venv/bin/python benchmarks/singan.py --figure docs/images/singan.png
    .venv/bin/python benchmarks/singan.py --ckpt RUN/checkpoints/last.ckpt --samples 100
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from ganforge.config import build, load_checkpoint, module_from_checkpoint
from ganforge.generation import generate_batches
from ganforge.metrics.swd import DESCRIPTORS, swd_scores
from ganforge.nets.pyramid import PyramidGenerator, PyramidSampler

ROOT = Path(__file__).resolve().parents[1]
TRAIN = Path(sys.executable).with_name("ganforge-train")


def train(out: Path, overrides: list[str]) -> tuple[Path, float]:
    """``ganforge-train experiment=singan`` into ``out``; its last checkpoint and the process's wall time."""
    start = time.perf_counter()
    command = [str(TRAIN), "experiment=singan", f"hydra.run.dir={out}", "logger=csv", *overrides]
    subprocess.run(command, check=True, capture_output=True)
    return out / "checkpoints" / "last.ckpt", time.perf_counter() - start


def variety(samples: torch.Tensor, image: torch.Tensor) -> float:
    """Per-pixel standard deviation over the samples, averaged, over the image's own pixel standard deviation."""
    return (samples.std(dim=0).mean() / image.std()).item()


def per_image_swd(image: torch.Tensor, samples: torch.Tensor, descriptors: int) -> float:
    """The mean over ``samples`` of each one's SWD against the photo: SIFID's protocol (every generated image's own
    patch statistics against the photo's, averaged), where the pooled SWD compares all samples' patches at once."""
    return sum(swd_scores(image, sample[None], descriptors)["swd"] for sample in samples) / len(samples)


@torch.no_grad()
def score(ckpt: Path, n: int, seed: int, descriptors: int = DESCRIPTORS, per_image: int = 0) -> dict[str, Any]:
    module, cfg = module_from_checkpoint(load_checkpoint(ckpt))
    generator = module.sampling_generator
    assert isinstance(generator, PyramidGenerator), f"{ckpt} is not a pyramid of generators"
    image = build(cfg.data).load_split(train=True).images_at(torch.tensor([0])).float() / 127.5 - 1
    generator.eval()
    reconstruction = generator.reconstruction(generator.levels - 1).clamp(-1, 1)
    psnr = peak_signal_noise_ratio((reconstruction + 1) / 2, (image + 1) / 2, data_range=1.0).item()
    rows = []
    for level in range(generator.levels):
        sampler = PyramidSampler(generator, start_level=level)
        samples = torch.cat(list(generate_batches(sampler, n, seed, batch_size=25))).clamp(-1, 1)
        row = {"start_scale": level, "variety": variety(samples, image), **swd_scores(image, samples, descriptors)}
        if per_image:
            row["swd_per_image"] = per_image_swd(image, samples[:per_image], descriptors)
        rows.append(row)
    return {"reconstruction_psnr": psnr, "levels": [list(s) for s in generator.pyramid.sizes], "by_start": rows}


def paint(image: torch.Tensor, colours: int = 6) -> torch.Tensor:
    """A flat-coloured version of ``image`` (PIL's median-cut palette): a stand-in for a painting."""
    from PIL import Image

    pixels = ((image[0] + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    quantized = Image.fromarray(pixels).quantize(colours).convert("RGB")
    return torch.from_numpy(np.array(quantized)).permute(2, 0, 1)[None].float() / 127.5 - 1


@torch.no_grad()
def figure(ckpt: Path, path: Path, paint_scale: int, seed: int) -> None:
    """The image | 4 samples | 2 samples at 1:3 | 2 samples at 2:1 (height:width relative) | painting -> result."""
    from torchvision.utils import make_grid, save_image

    module, cfg = module_from_checkpoint(load_checkpoint(ckpt))
    generator = module.sampling_generator
    assert isinstance(generator, PyramidGenerator)
    generator.eval()
    image = build(cfg.data).load_split(train=True).images_at(torch.tensor([0])).float() / 127.5 - 1
    h, w = image.shape[-2:]

    def draw(n: int, **view: Any) -> torch.Tensor:
        return torch.cat(list(generate_batches(PyramidSampler(generator, **view), n, seed))).clamp(-1, 1)

    painting = paint(image)
    rows = [
        torch.cat([image, draw(3)]),
        torch.cat([draw(2, size=(h, 2 * w))]),
        torch.cat([painting, draw(1, start_level=paint_scale, start=painting)]),
    ]
    strips = [make_grid(row, nrow=len(row), padding=2, normalize=True, value_range=(-1, 1)) for row in rows]
    width = max(s.shape[-1] for s in strips)
    padded = [torch.nn.functional.pad(s, (0, width - s.shape[-1])) for s in strips]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat(padded, dim=1), path)


def table(result: dict[str, Any], wall: float | None) -> str:
    lines = [
        f"Reconstruction PSNR at the finest level: **{result['reconstruction_psnr']:.2f} dB**"
        + (f"; training wall time {wall / 60:.1f} min." if wall is not None else "."),
        "",
        "| start scale | variety (pixel std / image std) | SWD ×1e3 (mean of levels) | SWD ×1e3 per image |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['start_scale']} | {r['variety']:.3f} | {r['swd']:.2f} | "
        + (f"{r['swd_per_image']:.2f} |" if "swd_per_image" in r else "|")
        for r in result["by_start"]
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, help="score this checkpoint instead of training one")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="latent seed of the samples")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "singan")
    parser.add_argument("--descriptors", type=int, default=DESCRIPTORS, help="SWD descriptors per level and set")
    parser.add_argument(
        "--per-image", type=int, default=0, help="also score this many samples one by one (SIFID's protocol)"
    )
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--paint-scale", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="extra overrides of the training run")
    args = parser.parse_args()
    wall = None
    ckpt = args.ckpt
    if ckpt is None:
        ckpt, wall = train(args.out / "run", args.overrides)
    result = score(ckpt, args.samples, args.seed, args.descriptors, args.per_image) | {
        "ckpt": str(ckpt),
        "wall_s": wall,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "singan.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.figure:
        figure(ckpt, args.figure, args.paint_scale, args.seed)
    print(table(result, wall))


if __name__ == "__main__":
    main()
