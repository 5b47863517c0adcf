"""StyleGAN3's equivariance metrics (Karras et al. 2021, Table 1 and Figure 5), measured on generators as an
experiment builds them (``--init``: seeded initialisations, before any training) and on trained checkpoints
(``--ckpts``): EQ-T (whole-pixel translations), EQ-T_frac (sub-pixel) and EQ-R (rotations), in dB, each over
``--n`` samples with a transform drawn per sample (``ganforge.metrics.equivariance``, as ``ganforge-eval
equivariance=`` computes it). The paper's claims: config T far above StyleGAN2 in EQ-T and EQ-T_frac, config R
far above T in EQ-R; without the nonlinearity's oversampling (``model.generator.lrelu_upsampling=1``), lower.

    .venv/bin/python benchmarks/equivariance.py --init fmnist_stylegan3 fmnist_stylegan3_r \\
        "fmnist_stylegan3 model.generator.lrelu_upsampling=1" --seeds 0 1 2
    .venv/bin/python benchmarks/equivariance.py --ckpts RUN_T/checkpoints/last.ckpt RUN_R/checkpoints/last.ckpt

An ``--init`` entry is an experiment name, optionally followed by its own overrides in one quoted argument.
Writes ``<out>/equivariance.json`` and prints the Markdown table of benchmarks/RESULTS.md (mean ± standard error
over the seeds, or the one checkpoint's values). ``--strip PNG`` also draws the checkpoints' texture sticking (the
README's figure): per checkpoint four rows of frames, the input moved by 0 to 3 pixels in x, then rotated by 0 to
30 degrees, each under the absolute error against the first frame moved the same way (x4: black where the output
follows its input).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

import torch
import torchvision.utils as vutils
from hydra import compose, initialize_config_module

from ganforge.config import CONFIG_MODULE, build, generator_from_checkpoint, load_checkpoint
from ganforge.generation import eval_mode
from ganforge.metrics.equivariance import KINDS, equivariance, input_transform, resample, transform_matrix

ROOT = Path(__file__).resolve().parents[1]


def initialised(entry: str, seed: int) -> torch.nn.Module:
    """The generator of ``entry`` (an experiment and its overrides) as training starts with ``seed``."""
    experiment, *own = entry.split()
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", *own])
    torch.manual_seed(seed)
    return build(cfg.model.generator)


def scores(generator: torch.nn.Module, n: int, seed: int) -> dict[str, float]:
    return {kind: equivariance(generator, kind, n=n, seed=seed) for kind in KINDS}


@torch.no_grad()
def strip(generator: torch.nn.Module, seed: int, frames: int = 7) -> torch.Tensor:
    """Four rows of ``frames`` images in [0, 1]: the output as the input translates (0 to 3 pixels in x) and its
    error against the first frame moved the same way, then the same for rotations (0 to 30 degrees)."""
    style: Any = generator
    with eval_mode(generator):
        z = torch.randn(1, style.latent_dim, generator=torch.Generator().manual_seed(seed))
        ws = style.mapping(z, torch.zeros(1, dtype=torch.long) if style.num_classes else None)
        first = style.synthesis(ws)
        steps = torch.arange(frames, dtype=torch.float64) / (frames - 1)
        translations = [transform_matrix("t", torch.tensor([3 * s / first.shape[-1], 0.0])) for s in steps]
        rotations = [transform_matrix("r", s * math.pi / 6) for s in steps]
        rows = []
        for transforms in (translations, rotations):
            moved, error = [], []
            for transform in transforms:
                with input_transform(generator, transform):
                    frame = style.synthesis(ws)
                reference, _ = resample(first, transform)
                moved.append(frame)
                error.append(((frame - reference).abs() * 4 - 1).clamp(max=1))
            rows += [torch.cat(moved), torch.cat(error)]
    return (torch.cat(rows) + 1) / 2


def cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) / len(values) ** 0.5:.2f}"


def markdown(rows: dict[str, list[dict[str, float]]]) -> str:
    lines = ["| generator | runs | EQ-T (dB) | EQ-T_frac (dB) | EQ-R (dB) |", "|---|---|---|---|---|"]
    for name, runs in rows.items():
        cells = " | ".join(cell([run[kind] for run in runs]) for kind in KINDS)
        lines.append(f"| {name} | {len(runs)} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", nargs="*", default=[], help="experiments (with overrides) scored at initialisation")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="initialisation seeds (--init)")
    parser.add_argument("--ckpts", nargs="*", type=Path, default=[], help="trained checkpoints (their EMA generator)")
    parser.add_argument("--n", type=int, default=200, help="samples per metric, each with its own transform")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "equivariance")
    parser.add_argument("--strip", type=Path, help="draw the checkpoints' texture sticking here (a PNG)")
    parser.add_argument("--strip-seed", type=int, default=0, help="the latent of the --strip figure")
    args = parser.parse_args()
    strips = []
    rows: dict[str, list[dict[str, float]]] = {}
    for entry in args.init:
        rows[f"{entry}, at initialisation"] = [scores(initialised(entry, seed), args.n, seed) for seed in args.seeds]
    for ckpt in args.ckpts:
        generator, _ = generator_from_checkpoint(load_checkpoint(ckpt))
        rows[str(ckpt)] = [scores(generator, args.n, 0)]
        if args.strip:
            strips.append(strip(generator, args.strip_seed))
    if args.strip and strips:
        args.strip.parent.mkdir(parents=True, exist_ok=True)
        images = torch.nn.functional.interpolate(torch.cat(strips), scale_factor=2, mode="nearest")
        vutils.save_image(images, args.strip, nrow=len(strips[0]) // 4, padding=2, pad_value=1)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"n": args.n, "seeds": args.seeds, "rows": rows}
    (args.out / "equivariance.json").write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
