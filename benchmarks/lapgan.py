"""LAPGAN's chain against its own levels (Denton et al. 2015, section 4): how much of the FID is the coarsest level's.

For each LAPGAN checkpoint, two sets of ``--n`` samples are scored by ``ganforge-eval`` under one protocol (the
run's data, the default metrics: domain features, 10,000 training images as the reference):

- **full chain**: every level drawn by the generators (``ganforge-eval ckpt=…``, what training reports);
- **real coarse level**: the coarsest level of ``--n`` test images (a seeded subset; the test split is never
  trained on) and the finer levels drawn on it, each test image once, with the latents of the same seed.

The gap is what the coarsest GAN costs; what remains with a real coarse level is the finer levels' own cost. The
comparison against a single-scale GAN is a ``benchmarks/wall_time.py`` run beside this (see RESULTS.md).

``--figure`` draws the README's figure: samples of the first checkpoint with their pyramid levels.

    .venv/bin/python benchmarks/lapgan.py RUN/checkpoints/last.ckpt [RUN2/...] --n 10000 [--figure lapgan.png]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganforge.config import CONFIG_MODULE, build, load_checkpoint, module_from_checkpoint
from ganforge.metrics.image_metrics import split_images
from ganforge.nets.pyramid import PyramidGenerator
from ganforge.sample import to_uint8_nhwc

ROOT = Path(__file__).resolve().parents[1]
EVAL = Path(sys.executable).with_name("ganforge-eval")


@torch.no_grad()
def real_coarse_samples(ckpt: Path, n: int, seed: int, batch_size: int = 500) -> np.ndarray:
    """``n`` images whose coarsest level is a test image's and whose finer levels the (EMA) generators draw."""
    module, cfg = module_from_checkpoint(load_checkpoint(ckpt))
    generator = module.sampling_generator
    assert isinstance(generator, PyramidGenerator), f"{ckpt} is not a pyramid of generators"
    generator.eval()
    rng = torch.Generator().manual_seed(seed)
    width = sum(generator.latent_dims(start_level=1))
    out = []
    for real in split_images(build(cfg.data), "test", n, seed, batch_size):
        coarse = generator.pyramid.gaussian(real.float() / 127.5 - 1)[0]
        noises = generator.split_latent(torch.randn(len(real), width, generator=rng), start_level=1)
        out.append(to_uint8_nhwc(generator.chain(noises, start=coarse, start_level=1)[-1]))
    return np.concatenate(out)


@torch.no_grad()
def figure(ckpt: Path, path: Path, n: int, seed: int) -> None:
    """LAPGAN's Figure 3 for ``n`` samples (columns): each level's image, coarsest first, with the band-pass
    residual the next level adds between them (grey is 0), all shown at the finest size."""
    import torch.nn.functional as F
    from torchvision.utils import make_grid, save_image

    module, _ = module_from_checkpoint(load_checkpoint(ckpt))
    generator = module.sampling_generator
    assert isinstance(generator, PyramidGenerator), f"{ckpt} is not a pyramid of generators"
    generator.eval()
    z = torch.randn(n, generator.latent_dim, generator=torch.Generator().manual_seed(seed))
    levels = generator.chain(generator.split_latent(z))
    size = levels[-1].shape[-2:]
    rows = [levels[0]]
    for k in range(1, len(levels)):
        residual = levels[k] - generator.pyramid.up(levels[k - 1], k)
        rows += [residual / residual.abs().amax().clamp_min(1e-8), levels[k]]  # each band stretched to [-1, 1]
    shown = [F.interpolate(row.clamp(-1, 1), size=size, mode="nearest") for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(torch.cat(shown), nrow=n, padding=1, normalize=True, value_range=(-1, 1)), path)


def evaluate(out: Path, *options: str) -> dict[str, Any]:
    subprocess.run([str(EVAL), f"out={out}", *options], check=True, capture_output=True)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=10_000, help="samples per set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "lapgan")
    parser.add_argument("--eval", nargs="*", default=[], help="extra ganforge-eval overrides (both sets)")
    parser.add_argument("--figure", type=Path, help="draw the first checkpoint's samples with their levels here")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.figure:
        figure(args.checkpoints[0], args.figure, 10, args.seed)
    counts = [f"metrics.n_samples={args.n}", f"metrics.seed={args.seed}", *args.eval]
    rows = []
    for i, ckpt in enumerate(args.checkpoints):
        full = evaluate(args.out / f"{i}_full.json", f"ckpt={ckpt}", *counts)
        samples = args.out / f"{i}_real_coarse.npz"
        np.savez(samples, arr_0=real_coarse_samples(ckpt, args.n, args.seed))
        data = module_data(ckpt)
        coarse = evaluate(args.out / f"{i}_real_coarse.json", f"samples={samples}", f"data={data}", *counts)
        rows.append({"ckpt": str(ckpt), "full": full["metrics"], "real_coarse": coarse["metrics"]})
    (args.out / "lapgan.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| checkpoint | FID, full chain | FID, real coarse level | KID×100, full | KID×100, real coarse |")
    print("|---|---|---|---|---|")
    for row in rows:
        full, coarse = row["full"], row["real_coarse"]
        print(
            f"| {row['ckpt']} | {full['fid']:.3f} | {coarse['fid']:.3f} | {100 * full['kid']:.3f} "
            f"| {100 * coarse['kid']:.3f} |"
        )


def module_data(ckpt: Path) -> str:
    """The ``data=`` option a checkpoint trained on: the one data config of its datamodule class."""
    target = load_checkpoint(ckpt)["hyper_parameters"]["data"]["_target_"]
    folder = resources.files(CONFIG_MODULE).joinpath("data")
    options = [f.name.removesuffix(".yaml") for f in folder.iterdir() if f"_target_: {target}\n" in f.read_text()]
    if len(options) != 1:
        raise SystemExit(f"{ckpt}: its data ({target}) is not one data config's; found {options}")
    return options[0]


if __name__ == "__main__":
    main()
