"""Shared by the benchmarks that train one experiment over several seeds and score each run's ``last.ckpt``.

Each seed runs ``ganforge-train experiment=<name> seed=<seed>`` for the experiment's step count, without
intermediate evaluation (image metrics and the best-checkpoint callback off: the scores come afterwards),
``--concurrent`` at a time, each with cores / concurrent CPU threads.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def add_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("experiment")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--concurrent", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / out)
    parser.add_argument("--overrides", nargs="*", default=[], help="extra overrides for every run")


def command(experiment: str, seed: int, run_dir: Path, overrides: list[str]) -> list[str]:
    return [
        str(Path(sys.executable).parent / "ganforge-train"),
        f"experiment={experiment}",
        f"seed={seed}",
        "~callbacks.image_metrics",
        "~callbacks.best_checkpoint",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]


def train_seeds(args: argparse.Namespace) -> dict[int, Path]:
    """Train every seed into a fresh dated folder; each seed's ``last.ckpt``."""
    out = args.out / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True)
    threads = str(max(1, (os.cpu_count() or 1) // args.concurrent))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    pending, running = list(args.seeds), list[tuple[int, subprocess.Popen]]()
    while pending or running:
        while pending and len(running) < args.concurrent:
            seed = pending.pop(0)
            with open(out / f"seed{seed}.log", "w") as log:
                cmd = command(args.experiment, seed, out / f"seed{seed}", args.overrides)
                print(" ".join(cmd), flush=True)
                running.append((seed, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)))
        seed, proc = running.pop(0)
        if proc.wait():
            raise SystemExit(f"seed {seed} failed (exit {proc.returncode}); see {out / f'seed{seed}.log'}")
    return {seed: out / f"seed{seed}" / "checkpoints" / "last.ckpt" for seed in args.seeds}


def runs_of(folder: Path, seeds: list[int]) -> dict[int, Path]:
    """Each seed's ``last.ckpt`` in ``folder``, a dated folder of an earlier :func:`train_seeds`."""
    checkpoints = {seed: folder / f"seed{seed}" / "checkpoints" / "last.ckpt" for seed in seeds}
    missing = [str(path) for path in checkpoints.values() if not path.is_file()]
    if missing:
        raise SystemExit(f"--runs {folder}: no checkpoint {', '.join(missing)}")
    return checkpoints


def mean_and_error(values: list[float]) -> str:
    """``mean ± standard error`` over seeds."""
    mean = statistics.mean(values)
    error = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return f"{mean:.4f} ± {error:.4f}"


def measured_line(script: str, extra: str = "") -> str:
    """When, where and how the figures were measured."""
    return (
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} CPU cores, torch {torch.__version__}); command: `python benchmarks/{script} "
        f"{' '.join(sys.argv[1:])}`{extra}."
    )
