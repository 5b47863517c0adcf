"""Mode-collapse benchmark on the 2-D ring and grid (PacGAN protocol, Lin et al. 2018, Table 1).

For each dataset and each configuration compared, one Hydra multirun trains ``--seeds`` seeds
(``ganforge-train -m experiment=<ring|grid> seed=0,1,...``). Every job scores 2,500 samples of
its final (EMA, where enabled) generator with ganforge's ModeCoverage callback, which writes
``mode_coverage.json`` into the job folder. The script aggregates mean ± standard error and
writes a table in PacGAN's format into ``benchmarks/RESULTS.md`` (between markers), with the
per-run wall time (from the job's config write to its final evaluation).

    .venv/bin/python benchmarks/mode_collapse.py                 # all configurations, 5 seeds
    .venv/bin/python benchmarks/mode_collapse.py --only GAN      # (re)run one row; the table keeps the others

The two datasets run as two concurrent multiruns, one CPU thread each (``--parallel 1``: one after
the other, leaving a core for other work).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
BEGIN, END = "<!-- mode-collapse:begin -->", "<!-- mode-collapse:end -->"

# name -> overrides on top of experiment=<ring|grid> (our best configuration). The baselines
# go back to PacGAN's nets (G 4x400 ReLU + BatchNorm on a 2-D latent, D 3x200 maxout with 5
# pieces), Adam 2e-4 and no EMA or R1, for 8,000 generator steps (already 3-5x the wall time of
# one of our runs, which takes 22,000 cheaper steps).
PACGAN_NETS = [
    "max_gen_steps=8000",
    "optim.scheduler=null",
    "model.generator.latent_dim=2",
    "model.generator.latent_categories=0",
    "model.generator.width=400",
    "model.generator.depth=4",
    "model.generator.batch_norm=true",
    "model.discriminator.width=200",
    "model.discriminator.depth=3",
    "model.discriminator.maxout=5",
    "optim.generator.lr=2e-4",
    "optim.discriminator.lr=2e-4",
    "ema_decay=null",
    "~loss.penalties.r1",
]
CONFIGS: dict[str, list[str]] = {
    "GAN": [*PACGAN_NETS, "loss=nonsaturating", "model.pack=1"],
    "PacGAN2": [*PACGAN_NETS, "loss=nonsaturating", "model.pack=2"],
    "PacGAN4": [*PACGAN_NETS, "loss=nonsaturating", "model.pack=4"],
    # WGAN-GP's 5 critic steps per G step (with the penalty's double backward through the maxout D) make a
    # G step 5-6x as costly: 2,000 G steps are 10,000 critic steps, more D updates than the others' 8,000.
    "WGAN-GP": [
        *PACGAN_NETS,
        "loss=wgan_gp",
        "optim.generator.lr=1e-4",
        "optim.discriminator.lr=1e-4",
        "max_gen_steps=2000",
    ],
    "ours": [],
}
PUBLISHED = """| PacGAN paper: GAN | 6.3 | 98.2 | 0.45 | 17.3 | 94.8 | 0.70 | 10 | – | – |
| PacGAN paper: PacGAN2 | 7.9 | 95.6 | 0.07 | 23.8 | 91.3 | 0.13 | 10 | – | – |
| PacGAN paper: PacGAN4 | 7.8 | 95.9 | 0.07 | 24.8 | 93.6 | 0.04 | 10 | – | – |
| target for experiment=ring / grid | 8.0 | ≥ 97 | ≤ 0.05 | 25.0 | ≥ 95 | ≤ 0.03 | ≥ 5 | ≤ 120 | – |"""


def start_multirun(overrides: list[str], sweep_dir: Path, log: Path, threads: int = 1) -> subprocess.Popen[bytes]:
    """Start ``ganforge-train -m <overrides>`` into a fresh ``sweep_dir`` (a re-run replaces it: no stale seeds mix
    in), CSV logs and no progress bar, ``threads`` torch threads per job, its output in ``log``. Shared by the
    benchmarks that run one multirun per configuration (this one, objectives_ring.py, stacked_mnist.py)."""
    shutil.rmtree(sweep_dir, ignore_errors=True)
    cmd = [str(Path(sys.executable).parent / "ganforge-train"), "-m", *overrides, "logger=csv",
           "~callbacks.progress_bar", "trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    print(" ".join(cmd), flush=True)
    with open(log, "w") as handle:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)


def multirun(dataset: str, name: str, seeds: int, out: Path, extra: list[str]) -> subprocess.Popen[bytes]:
    seed_list = ",".join(str(s) for s in range(seeds))
    overrides = [f"experiment={dataset}", f"seed={seed_list}", *CONFIGS[name], *extra]
    return start_multirun(overrides, out / dataset / name, out / f"{dataset}-{name}.log")


def collect(sweep_dir: Path) -> list[dict[str, float]]:
    runs = []
    for result in sorted(sweep_dir.glob("*/mode_coverage.json")):
        scores = json.loads(result.read_text())
        scores["seconds"] = result.stat().st_mtime - (result.parent / ".hydra" / "config.yaml").stat().st_mtime
        scores["finished"] = result.stat().st_mtime
        runs.append(scores)
    return runs


def mean_se(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def row_label(name: str) -> str:
    return "**ganforge (experiment=ring / grid)**" if name == "ours" else f"{name} (ours, same protocol)"


def earlier_rows(text: str) -> dict[str, str]:
    """Rows of the table already in RESULTS.md, by configuration: kept for those not re-run (their job
    folders live under outputs/, which a fresh clone does not have)."""
    section = text[text.index(BEGIN) : text.index(END)] if BEGIN in text else ""
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    return {name: line for name in CONFIGS for line in lines if line.startswith(f"| {row_label(name)} |")}


def table(results: dict[tuple[str, str], list[dict[str, float]]], names: list[str], kept: dict[str, str]) -> str:
    rows = [
        "| method | ring modes (max 8) | ring HQ % | ring rev-KL | grid modes (max 25) | grid HQ % | grid rev-KL "
        "| seeds | s/run (max) | measured (UTC) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        if not (results[("ring", name)] or results[("grid", name)]):
            rows.append(kept[name])
            continue
        cells, seconds, seeds, finished = [], [], [], []
        for dataset in ("ring", "grid"):
            runs = results.get((dataset, name), [])
            seeds.append(len(runs))
            seconds += [r["seconds"] for r in runs]
            finished += [r["finished"] for r in runs]
            if not runs:
                cells += ["–"] * 3
                continue
            cells += [
                mean_se([r["modes"] for r in runs], 1),
                mean_se([r["high_quality"] for r in runs], 1),
                mean_se([r["reverse_kl"] for r in runs], 3),
            ]
        timing = f"{statistics.median(seconds):.0f} ({max(seconds):.0f})" if seconds else "–"
        when = (
            f"{datetime.datetime.fromtimestamp(max(finished), datetime.timezone.utc):%Y-%m-%d %H:%M}"
            if finished
            else "–"
        )
        counts = "/".join(map(str, seeds))
        rows.append(f"| {row_label(name)} | " + " | ".join(cells) + f" | {counts} | {timing} | {when} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "mode_collapse")
    parser.add_argument("--no-write", action="store_true", help="print the table but leave RESULTS.md alone")
    parser.add_argument("--parallel", type=int, choices=(1, 2), default=2, help="datasets trained at a time")
    parser.add_argument(
        "--datasets", nargs="+", choices=("ring", "grid"), default=["ring", "grid"], help="default: both"
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    datasets = [tuple(args.datasets)] if args.parallel == 2 else [(ds,) for ds in args.datasets]
    for name in args.only:
        for group in datasets:
            procs = {ds: multirun(ds, name, args.seeds, args.out, args.overrides) for ds in group}
            for dataset, proc in procs.items():
                if proc.wait() != 0:
                    log = args.out / f"{dataset}-{name}.log"
                    print(f"warning: {dataset}/{name} exited with {proc.returncode}; see {log}")
    # The table covers every configuration with results under --out, so rows can be (re)run one at a time.
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    kept = earlier_rows(text)
    results = {(ds, name): collect(args.out / ds / name) for ds in ("ring", "grid") for name in CONFIGS}
    names = [name for name in CONFIGS if results[("ring", name)] or results[("grid", name)] or name in kept]
    for (dataset, name), runs in results.items():
        if runs:
            scores = [f"{r['modes']:.0f}/{r['high_quality']:.1f}/{r['reverse_kl']:.3f}" for r in runs]
            print(f"{dataset:4s} {name:8s} modes/HQ/KL per seed:", *scores)

    command = "python benchmarks/mode_collapse.py " + " ".join(sys.argv[1:])
    section = f"""{BEGIN}
## Mode collapse: 2-D ring and grid (PacGAN protocol)

- Protocol (PacGAN's, Lin et al. 2018): ring of 8 Gaussians (σ 0.01) and grid of 25 (σ 0.05); 2,500 samples
  of the final generator (the EMA generator where `ema_decay` is set); a sample is high quality (HQ) within 3σ of
  its nearest centre; a mode is captured by ≥ 1 HQ sample; reverse KL(p_gen ‖ uniform) over the nearest-centre
  histogram, natural log. Mean ± standard error over seeds {", ".join(str(s) for s in range(args.seeds))}
  (one Hydra multirun per row and dataset).
- Machine: {platform.platform()}, {os.cpu_count()} cores, one torch thread per run, up to two runs at a time.
  Table written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by `{command.strip()}` (rows run
  by earlier invocations are kept; "measured" dates each row). s/run = median (max) wall seconds of one training
  run, set-up included.

{table(results, names, kept)}
{PUBLISHED}

PacGAN's numbers are from its Table 1 (10 trials, its own training schedule); ours are measured here under the
protocol above: the baselines (PacGAN's nets) for 8,000 generator steps (WGAN-GP: 2,000 generator steps of 5
critic steps each), ours (`experiment=ring` / `grid` as configured) for its 22,000 cheaper steps within the
2-minute budget.
{END}"""
    print(section)
    if not args.no_write:
        if BEGIN in text:
            text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip() + "\n\n" + section + "\n"
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
