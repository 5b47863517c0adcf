"""Stacked MNIST over pack sizes in PacGAN's "D = 1/4 G" setting (Lin et al. 2018, Table 3).

For each pack size, one Hydra multirun trains ``--seeds`` seeds of ``experiment=stacked_mnist_pacgan
model.pack=<m>``, every pack size for the same number of generator steps (``--steps``; default: the experiment's).
Each job's final evaluation scores 26,000 samples of its generator (the image-metrics callback's ``metrics.json``:
modes, KL to the uniform over the 1,000 triples, confident modes); the script prints mean ± standard error over the
seeds as a Markdown table, beside PacGAN's figures.

    .venv/bin/python benchmarks/stacked_mnist.py                          # packs 1-4, 5 seeds: hours on a CPU
    .venv/bin/python benchmarks/stacked_mnist.py --packs 1 2 --seeds 3 --steps 5000

``--parallel`` multiruns train at a time, each with cores / parallel torch threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from mode_collapse import mean_se, start_multirun
from seeded_runs import measured_line

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "stacked_mnist_pacgan"
#: PacGAN's Table 3 (D = 1/4 G) as the issue quotes it: modes and KL by pack size.
PUBLISHED = {1: ("78.5", "5.21"), 2: ("484.5", "2.61")}


def multirun(pack: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """Start the seeds of one pack size as a Hydra multirun into ``<out>/pack<m>`` (a re-run replaces its folder)."""
    steps = [f"max_gen_steps={args.steps}"] if args.steps else []
    seed_list = ",".join(str(s) for s in range(args.seeds))
    overrides = [f"experiment={EXPERIMENT}", f"model.pack={pack}", f"seed={seed_list}", *steps, *args.overrides]
    threads = max(1, (os.cpu_count() or 1) // args.parallel)
    return start_multirun(overrides, args.out / f"pack{pack}", args.out / f"pack{pack}.log", threads)


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """Each job's final scores (``metrics.json``), the generator step they were taken at and their protocol."""
    runs = []
    for path in sorted(sweep_dir.glob("*/metrics.json")):
        result = json.loads(path.read_text())
        runs.append({"gen_step": result["gen_step"], "protocol": result["protocol"], **result["metrics"]})
    return runs


def table(results: dict[int, list[dict[str, Any]]]) -> str:
    rows = [
        "| D = 1/4 G, pack | modes (of 1,000) | KL (nats) | confident modes | seeds | generator steps "
        "| PacGAN: modes | PacGAN: KL |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pack, runs in results.items():
        modes, kl = PUBLISHED.get(pack, ("–", "–"))
        if not runs:
            rows.append(f"| {pack} | – | – | – | 0 | – | {modes} | {kl} |")
            continue
        steps = "/".join(sorted({f"{r['gen_step']:.0f}" for r in runs}))
        rows.append(
            f"| {pack} | {mean_se([r['modes'] for r in runs], 1)} | {mean_se([r['kl'] for r in runs], 2)} "
            f"| {mean_se([r['confident_modes'] for r in runs], 1)} | {len(runs)} | {steps} | {modes} | {kl} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument(
        "--steps", type=int, default=None, help="generator steps of every run (default: the experiment's)"
    )
    parser.add_argument("--parallel", type=int, default=2, help="pack sizes trained at a time")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "stacked_mnist")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    pending, running = list(args.packs), list[tuple[int, subprocess.Popen]]()
    while pending or running:
        while pending and len(running) < args.parallel:
            pack = pending.pop(0)
            running.append((pack, multirun(pack, args)))
        pack, proc = running.pop(0)
        if proc.wait():
            print(f"warning: pack {pack} exited with {proc.returncode}; see {args.out / f'pack{pack}.log'}")
    results = {pack: collect(args.out / f"pack{pack}") for pack in args.packs}
    for pack, runs in results.items():
        scores = [f"{r['modes']:.0f}/{r['kl']:.3f}/{r['confident_modes']:.0f}" for r in runs]
        print(f"pack {pack} modes/KL/confident modes per seed:", *scores)
    protocols = {(r["protocol"]["n_generated"], r["protocol"]["extractor"]) for runs in results.values() for r in runs}
    scored = "; ".join(
        f"{n} samples of each run's final generator, scored in {extractor}" for n, extractor in protocols
    )
    seeds = ", ".join(str(s) for s in range(args.seeds))
    print(
        f"\nStacked MNIST, experiment={EXPERIMENT}: {scored} (each channel labelled by the MNIST classifier); mean ± "
        f"standard error over seeds {seeds}. {measured_line('stacked_mnist.py')}\n"
    )
    print(table(results))


if __name__ == "__main__":
    main()
