"""The objectives side by side on the 2-D ring of 8 Gaussians (``experiment=ring``, PacGAN's protocol).

Each objective trains ``experiment=ring`` with only ``loss=`` changed (the ring's nets, Adam, learning-rate decay,
EMA generator and its R1 penalty; ``wgan_gp`` brings its gradient penalty in place of R1 and its 5 critic steps
per generator step) for the same number of generator steps, over ``--seeds`` seeds: one Hydra multirun per
objective (``ganforge-train -m experiment=ring loss=<name> seed=0,1,...``), one torch thread per run. Each job's
ModeCoverage callback scores 2,500 samples of the final (EMA) generator into ``mode_coverage.json``; the script
prints mean ± standard error of modes, % high quality and reverse KL as a Markdown table, and per seed the most
negative logged G loss and the final mean fake logit (``maximum_likelihood``'s G loss is -1/2 mean exp(logit),
so these show whether its exp grew large). A seed whose training diverged leaves no ``mode_coverage.json``; it
counts in "seeds finished" and not in the means.

    .venv/bin/python benchmarks/objectives_ring.py                          # 6 objectives x 3 seeds x 4,000 steps
    .venv/bin/python benchmarks/objectives_ring.py --only maximum_likelihood --seeds 1 --steps 500
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from mode_collapse import start_multirun

ROOT = Path(__file__).resolve().parents[1]

# name -> overrides on top of experiment=ring. WGAN-GP's critic is held to 1-Lipschitz by its own penalty, so the
# ring's R1 (a logistic D's regulariser) is dropped there.
OBJECTIVES: dict[str, list[str]] = {
    "minimax": ["loss=minimax"],
    "nonsaturating": ["loss=nonsaturating"],
    "hinge": ["loss=hinge"],
    "lsgan": ["loss=lsgan"],
    "wgan_gp": ["loss=wgan_gp", "~loss.penalties.r1"],
    "maximum_likelihood": ["loss=maximum_likelihood"],
}


def multirun(name: str, seeds: int, steps: int, out: Path, extra: list[str]) -> subprocess.Popen[bytes]:
    """Start the multirun of one objective over ``seeds`` seeds, logging to ``<out>/<name>.log``."""
    seed_list = ",".join(str(s) for s in range(seeds))
    overrides = ["experiment=ring", f"seed={seed_list}", f"max_gen_steps={steps}", *OBJECTIVES[name], *extra]
    return start_multirun(overrides, out / name, out / f"{name}.log")


def collect(sweep_dir: Path) -> tuple[list[dict[str, float]], int]:
    """The scores of the jobs that finished (with wall seconds and logged extremes), and how many jobs ran."""
    jobs = sorted(p.parent.parent for p in sweep_dir.glob("*/.hydra/config.yaml"))
    runs = []
    for job in jobs:
        result = job / "mode_coverage.json"
        if not result.exists():
            continue
        scores = json.loads(result.read_text())
        scores["seconds"] = result.stat().st_mtime - (job / ".hydra" / "config.yaml").stat().st_mtime
        with open(job / "csv" / "metrics.csv") as f:
            rows = [row for row in csv.DictReader(f) if row.get("loss/g")]
        scores["min_loss_g"] = min(float(row["loss/g"]) for row in rows)
        scores["last_d_fake"] = float(rows[-1]["d/fake"])
        runs.append(scores)
    return runs, len(jobs)


def mean_se(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def table(results: dict[str, tuple[list[dict[str, float]], int]]) -> str:
    rows = [
        "| objective (`loss=`) | modes (max 8) | HQ % | reverse KL | seeds finished | s/run (max) |",
        "|---|---|---|---|---|---|",
    ]
    for name, (runs, jobs) in results.items():
        if runs:
            cells = [
                mean_se([r["modes"] for r in runs], 1),
                mean_se([r["high_quality"] for r in runs], 1),
                mean_se([r["reverse_kl"] for r in runs], 3),
            ]
            seconds = [r["seconds"] for r in runs]
            timing = f"{statistics.median(seconds):.0f} ({max(seconds):.0f})"
        else:
            cells, timing = ["–"] * 3, "–"
        rows.append(f"| `{name}` | " + " | ".join(cells) + f" | {len(runs)}/{jobs} | {timing} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4000, help="generator steps per run")
    parser.add_argument("--only", nargs="+", choices=list(OBJECTIVES), default=list(OBJECTIVES))
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "objectives_ring")
    parser.add_argument("--parallel", type=int, default=2, help="objectives trained at a time (one thread each)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    queue = list(args.only)
    running: list[tuple[str, subprocess.Popen[bytes]]] = []
    while queue or running:
        while queue and len(running) < args.parallel:
            name = queue.pop(0)
            running.append((name, multirun(name, args.seeds, args.steps, args.out, args.overrides)))
        name, proc = running.pop(0)
        if proc.wait() != 0:  # a diverged seed fails its multirun, after the other seeds ran
            print(f"warning: {name} exited with {proc.returncode}; see {args.out / f'{name}.log'}")

    results = {name: collect(args.out / name) for name in args.only}
    for name, (runs, _) in results.items():
        for r in runs:
            print(
                f"{name}: {r['modes']:.0f} modes, {r['high_quality']:.1f} % HQ, KL {r['reverse_kl']:.3f}, "
                f"min loss/g {r['min_loss_g']:.4g}, final mean fake logit {r['last_d_fake']:.3f}"
            )
    finished = datetime.datetime.now(datetime.timezone.utc)
    command = " ".join(["python benchmarks/objectives_ring.py", *sys.argv[1:]])
    print(
        f"\n{platform.platform()}, {os.cpu_count()} cores, one torch thread per run, {args.parallel} objectives at "
        f"a time; {started:%Y-%m-%d %H:%M}-{finished:%H:%M} UTC; `{command.strip()}`; {args.steps} generator steps, "
        f"seeds {', '.join(str(s) for s in range(args.seeds))}\n"
    )
    print(table(results))


if __name__ == "__main__":
    main()
