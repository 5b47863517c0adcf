"""InfoGAN's categorical code against the data's classes: does the unsupervised code find the digits?

For each seed, ``ganforge-train experiment=<name> seed=<seed>`` trains for the experiment's step count
(no intermediate evaluation: image metrics and the best-checkpoint callback are switched off, as the figure
here needs none). Then, from the run's ``last.ckpt``, the EMA generator draws ``--per-value`` images for each
value of categorical code 0 (noise and the other codes random, from a stream seeded by ``--sample-seed``),
the data's domain classifier (the FID feature network, ``metrics/weights``) classifies them, and the
accuracy is that of the best one-to-one assignment of code values to classes (``ganforge.metrics.codes``;
the InfoGAN paper reports about 95 % on MNIST). Mean and standard error over the seeds.

    .venv/bin/python benchmarks/infogan_codes.py mnist_infogan --seeds 0 1 2 --concurrent 2
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
from typing import cast

import torch

from ganforge.config import domain_of, generator_from_checkpoint, load_checkpoint
from ganforge.games.infogan import CodedGenerator
from ganforge.generation import eval_mode
from ganforge.metrics.classifier import classifier_path, load_classifier
from ganforge.metrics.codes import best_assignment_accuracy, classify, confusion

ROOT = Path(__file__).resolve().parents[1]


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


def train_all(args: argparse.Namespace, out: Path) -> None:
    """Train the seeds, ``--concurrent`` at a time, each with cores / concurrent threads."""
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


@torch.no_grad()
def code_accuracy(checkpoint_file: Path, per_value: int, sample_seed: int) -> tuple[float, int]:
    """Best one-to-one accuracy of categorical code 0 against the domain classifier, and the run's G steps."""
    checkpoint = load_checkpoint(checkpoint_file)
    generator, cfg = generator_from_checkpoint(checkpoint)
    coded = cast(CodedGenerator, generator)
    domain = domain_of(cfg.data._target_)
    if domain is None:
        raise SystemExit(f"{cfg.data._target_} has no domain classifier to name the classes")
    classifier, metadata = load_classifier(classifier_path(domain))
    rng = torch.Generator().manual_seed(sample_seed)
    n_values = coded.categorical[0]
    values, classes = [], []
    with eval_mode(coded):
        for value in range(n_values):
            z = coded.with_codes(torch.randn(per_value, coded.latent_dim, generator=rng), [value])
            classes.append(classify(classifier, coded(z)))
            values.append(torch.full((per_value,), value))
    counts = confusion(torch.cat(values), torch.cat(classes), n_values, metadata["num_classes"])
    return best_assignment_accuracy(counts), checkpoint["ganforge"]["generator_steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--concurrent", type=int, default=1)
    parser.add_argument("--per-value", type=int, default=1000, help="images drawn per code value")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "infogan_codes")
    parser.add_argument("--overrides", nargs="*", default=[], help="extra overrides for every run")
    args = parser.parse_args()
    out = args.out / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True)
    train_all(args, out)
    accuracies = {}
    print("| seed | gen steps | code accuracy |\n|---|---|---|")
    for seed in args.seeds:
        run = out / f"seed{seed}" / "checkpoints" / "last.ckpt"
        accuracy, steps = code_accuracy(run, args.per_value, args.sample_seed)
        accuracies[seed] = accuracy
        print(f"| {seed} | {steps} | {accuracy:.3f} |")
    mean = statistics.mean(accuracies.values())
    error = statistics.stdev(accuracies.values()) / len(accuracies) ** 0.5 if len(accuracies) > 1 else float("nan")
    print(
        f"\nMeasured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} CPU cores, torch {torch.__version__}); command: `python benchmarks/infogan_codes.py "
        f"{' '.join(sys.argv[1:])}`; {args.per_value} images per code value."
    )
    print(f"accuracy {mean:.4f} +- {error:.4f}")


if __name__ == "__main__":
    main()
