"""Architectures compared at a fixed wall-time budget: what each experiment reaches in N minutes.

Every experiment runs as ``ganforge-train experiment=<name>`` with no step limit, stopped by
Lightning's ``trainer.max_time`` so that the whole process — start-up, training, the final
evaluation and checkpoint — fits in ``--minutes`` (the evaluation and start-up allowance,
``--reserve`` seconds, is taken off the training time). Image metrics run once, at the end
(10,000 EMA-generator samples vs 10,000 training images in the experiment's feature space: the
default ``metrics`` protocol), so no run spends its budget on intermediate evaluations.

``--concurrent K`` runs K experiments at once, each limited to ``--threads`` CPU threads
(default: the machine's cores divided by K); every run then trains under the same conditions,
side by side. A run may carry its own overrides in one quoted argument,
``"fmnist_stylegan2 data.subset=2000 augment=ada"`` (the experiment first); the whole string labels
its row. The table (gen steps, kimg, FID, KID, IS, precision, recall, density, coverage, class accuracy where
the model is conditional, test bits/dim where G is a flow, PSNR / SSIM / L1 for image-to-image games, measured
wall time) goes into ``benchmarks/RESULTS.md`` between markers, with the machine, date and command.

    .venv/bin/python benchmarks/wall_time.py fmnist_dcgan fmnist_sagan_cond --minutes 30 --concurrent 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from io import TextIOWrapper
from pathlib import Path

import torch

from ganforge.config import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
BEGIN, END = "<!-- wall-time:begin -->", "<!-- wall-time:end -->"
COLUMNS = (
    "psnr",
    "ssim",
    "l1",
    "cycle_l1",
    "target_class",
    "fid",
    "kid",
    "is",
    "precision",
    "recall",
    "density",
    "coverage",
    "class_accuracy",
    "intra_fid",
    "bits_per_dim",
)


def command(run: str, train_seconds: int, run_dir: Path, extra: list[str]) -> list[str]:
    """``run`` is an experiment name, optionally followed by that run's own overrides."""
    experiment, *own = run.split()
    hours, rest = divmod(train_seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return [
        str(Path(sys.executable).parent / "ganforge-train"),
        f"experiment={experiment}",
        "max_gen_steps=1000000000",
        f"+trainer.max_time=00:{hours:02d}:{minutes:02d}:{seconds:02d}",
        "metrics.every_n_gen_steps=1000000000",  # evaluate once, at the end
        "~callbacks.best_checkpoint",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        *extra,
        *own,
    ]


def folder_name(run: str) -> str:
    """A file name for a run label: its words joined by ``__``, every character but letters, digits, ``.``, ``_``
    and ``-`` replaced by ``-`` (the folder becomes ``hydra.run.dir``, whose grammar refuses ``~``, ``+``, ``,``)."""
    return re.sub(r"[^\w.-]", "-", "__".join(run.split()))


def run_all(args: argparse.Namespace, out: Path) -> dict[str, dict]:
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.concurrent)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    train_seconds = round(args.minutes * 60 - args.reserve)
    pending, results = list(args.experiments), {}
    running: dict[str, tuple[subprocess.Popen, float, TextIOWrapper, Path]] = {}
    while pending or running:
        while pending and len(running) < args.concurrent:
            name = pending.pop(0)
            run_dir = out / folder_name(name)
            log = open(out / f"{folder_name(name)}.log", "w")  # noqa: SIM115 - closed when the run ends
            cmd = command(name, train_seconds, run_dir, args.overrides)
            print(" ".join(cmd), flush=True)
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            running[name] = (proc, time.perf_counter(), log, run_dir)
        time.sleep(2)
        for name, (proc, start, log, run_dir) in list(running.items()):
            if proc.poll() is None:
                continue
            wall = time.perf_counter() - start
            log.close()
            del running[name]
            if proc.returncode:
                raise SystemExit(f"{name} failed (exit {proc.returncode}); see {out / (folder_name(name) + '.log')}")
            shown = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["ganforge"]["images_shown"]
            evaluation = json.loads((run_dir / "metrics.json").read_text())
            results[name] = {"wall_s": wall, "threads": threads, "kimg": shown / 1000, **evaluation}
            print(f"{name}: {results[name]['metrics']} in {wall:.0f} s", flush=True)
    return results


def table(results: dict[str, dict], args: argparse.Namespace) -> str:
    shown = [c for c in COLUMNS if any(c in r["metrics"] for r in results.values())]
    lines = [
        "| experiment | gen steps | kimg | " + " | ".join(shown) + " | wall (s) |",
        "|---" * (len(shown) + 4) + "|",
    ]
    for name, r in results.items():
        values = " | ".join(f"{r['metrics'][c]:.4g}" if c in r["metrics"] else "–" for c in shown)
        lines.append(f"| {name} | {r['gen_step']} | {r['kimg']:.0f} | {values} | {r['wall_s']:.0f} |")
    protocol = next(iter(results.values()))["protocol"]
    threads = next(iter(results.values()))["threads"]
    concurrency = f"{args.concurrent} run(s) at a time, {threads} CPU thread(s) each"
    return "\n".join(
        [
            f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'} "
            f"({os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"no GPU used); {concurrency}; budget {args.minutes:g} min per run for the whole process, training "
            f"stopped {args.reserve} s before it. Command: `python benchmarks/wall_time.py "
            f"{' '.join(sys.argv[1:])}`.",
            "",
            *lines,
            "",
            f"Metrics at the end of each run: {protocol['generated']} vs {protocol['reference']}; features "
            f"`{protocol['extractor']}`; KID {protocol['kid_subsets']} subsets of {protocol['kid_subset_size']}, "
            f"IS {protocol['is_splits']} splits, precision/recall k={protocol['pr_neighbourhood']}"
            + (f", density/coverage k={protocol['dc_neighbourhood']}" if protocol.get("dc_neighbourhood") else "")
            + (f"; {protocol['paired']}." if "paired" in protocol else "."),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--minutes", type=float, default=30, help="wall-time budget per run, whole process")
    parser.add_argument("--reserve", type=int, default=60, help="seconds of the budget kept for start-up and the end")
    parser.add_argument("--concurrent", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per run (0: cores / concurrent)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "wall_time")
    parser.add_argument("--overrides", nargs="*", default=[], help="extra overrides for every run")
    parser.add_argument("--no-write", action="store_true", help="print the table but leave RESULTS.md alone")
    parser.add_argument("--append", action="store_true", help="add this table below the ones in RESULTS.md")
    args = parser.parse_args()
    out = args.out / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True)
    results = run_all(args, out)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = table(results, args)
    print(text)
    over = [n for n, r in results.items() if r["wall_s"] > args.minutes * 60]
    if over:
        print(f"over the {args.minutes:g}-minute budget: {over}", file=sys.stderr)
    if not args.no_write:
        current = RESULTS.read_text()
        block = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in current and args.append:
            current = current.replace(END, f"\n{text}\n{END}")
        elif BEGIN in current:
            current = current[: current.index(BEGIN)] + block + current[current.index(END) + len(END) :]
        else:
            current += f"\n## Architectures at a fixed wall time\n\n{block}\n"
        RESULTS.write_text(current)


if __name__ == "__main__":
    main()
