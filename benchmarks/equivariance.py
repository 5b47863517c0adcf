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
over the seeds, or the one checkpoint's values).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from ganforge.config import CONFIG_MODULE, build, generator_from_checkpoint, load_checkpoint
from ganforge.metrics.equivariance import KINDS, equivariance

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
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {}
    for entry in args.init:
        rows[f"{entry}, at initialisation"] = [scores(initialised(entry, seed), args.n, seed) for seed in args.seeds]
    for ckpt in args.ckpts:
        generator, _ = generator_from_checkpoint(load_checkpoint(ckpt))
        rows[str(ckpt)] = [scores(generator, args.n, 0)]
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"n": args.n, "seeds": args.seeds, "rows": rows}
    (args.out / "equivariance.json").write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
