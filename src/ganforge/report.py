"""``ganforge-report PATH_TO_MULTIRUN``: one table row per job of a sweep, and the metric curves.

Reads what every job leaves on disk (``.hydra/overrides.yaml``, ``csv/metrics.csv``, ``error.txt``),
so a sweep's outcome can be read without the W&B cloud. Writes ``report.md``, ``report.csv`` and
``report.png`` into the multirun folder (or ``--out``) and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from ganforge.errors import GanforgeError
from ganforge.sweeps import sweep_of

#: Evaluation metrics where lower is better; for the others (IS, precision, HQ %, ...) higher is.
LOWER_IS_BETTER = {"fid", "kid", "intra_fid", "reverse_kl"}
EVALUATION_PREFIXES = ("metrics/", "mode/")


@dataclass
class Job:
    """One job of a multirun: its overrides, status and evaluation curves ``metric -> [(gen_step, value)]``."""

    name: str
    overrides: dict[str, str]
    status: str
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def final(self, metric: str) -> float | None:
        curve = self.curves.get(metric)
        return curve[-1][1] if curve else None

    def best(self, metric: str) -> float | None:
        values = [value for _, value in self.curves.get(metric, [])]
        if not values:
            return None
        return min(values) if lower_is_better(metric) else max(values)


def lower_is_better(metric: str) -> bool:
    return metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER


def read_curves(metrics_csv: Path) -> dict[str, list[tuple[float, float]]]:
    """Evaluation metrics of a job's CSV log, each as (generator step, value) in logged order."""
    curves: dict[str, list[tuple[float, float]]] = {}
    with metrics_csv.open(newline="") as file:
        for row in csv.DictReader(file):
            step = float(row["gen_step"]) if row.get("gen_step") else math.nan
            for key, value in row.items():
                if value and key.startswith(EVALUATION_PREFIXES) and not key.endswith("_std"):
                    curves.setdefault(key, []).append((step, float(value)))
    return curves


def read_job(job_dir: Path) -> Job:
    overrides = {}
    for item in OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"):
        key, _, value = str(item).partition("=")
        overrides[key.lstrip("+~")] = value
    metrics_csv = job_dir / "csv" / "metrics.csv"
    curves = read_curves(metrics_csv) if metrics_csv.is_file() else {}
    error = job_dir / "error.txt"
    if error.is_file():
        status = "failed: " + error.read_text().strip().splitlines()[0]
    else:
        status = "ok" if curves else "no evaluation logged"
    return Job(job_dir.name, overrides, status, curves)


def read_sweep(sweep_dir: Path) -> tuple[list[Job], list[str]]:
    """The jobs of a multirun folder (in job order) and the keys the sweep varied."""
    job_dirs = sorted(
        (d for d in sweep_dir.iterdir() if (d / ".hydra" / "overrides.yaml").is_file()),
        key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name),
    )
    if not job_dirs:
        raise GanforgeError(
            f"{str(sweep_dir)!r} holds no Hydra jobs (folders with .hydra/overrides.yaml); pass a multirun "
            "folder such as outputs/<task>/multiruns/<time>"
        )
    jobs = [read_job(d) for d in job_dirs]
    hydra_cfg = OmegaConf.load(job_dirs[0] / ".hydra" / "hydra.yaml").hydra
    keys = sweep_of(sweep_dir, hydra_cfg)
    if not keys:  # not recorded (e.g. jobs copied elsewhere): the keys whose values differ
        all_keys = dict.fromkeys(k for job in jobs for k in job.overrides)
        keys = [k for k in all_keys if len({job.overrides.get(k) for job in jobs}) > 1]
    return jobs, keys


def _cell(value: float | str | None) -> str:
    """A table cell: numbers (also numeric override strings, such as a sampled lr) to 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return value if len(value) <= 8 else f"{number:.4g}"
    return f"{value:.4g}"


def table(jobs: list[Job], keys: list[str], primary: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows: job, swept values, status, generator steps, final metrics, best of ``primary``."""
    metrics = sorted({m for job in jobs for m in job.curves})
    header = ["job", *keys, "status", "gen_step", *metrics, f"best {primary}"]
    rows = []
    for job in jobs:
        steps = [step for curve in job.curves.values() for step, _ in curve]
        row = [job.name, *(_cell(job.overrides.get(k, "")) for k in keys), job.status]
        row += [_cell(max(steps) if steps else None), *(_cell(job.final(m)) for m in metrics)]
        rows.append([*row, _cell(job.best(primary))])
    return header, rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot(jobs: list[Job], keys: list[str], path: Path, max_panels: int = 4) -> None:
    """One panel per evaluation metric (FID, KID, IS, ... up to ``max_panels``), one line per job."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    metrics = sorted({m for job in jobs for m in job.curves}, key=lambda m: (not m.endswith("fid"), m))[:max_panels]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(4.5 * max(1, len(metrics)), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=False):
        for job in jobs:
            if metric in job.curves:
                steps, values = zip(*job.curves[metric], strict=True)
                label = " ".join(f"{k}={job.overrides.get(k, '')}" for k in keys) or job.name
                ax.plot(steps, values, marker="o", markersize=3, label=f"{job.name}: {label}")
        ax.set_title(metric + (" (lower is better)" if lower_is_better(metric) else ""))
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(sweep_dir: Path, metric: str | None = None, out: Path | None = None) -> Path:
    """Write report.md / report.csv / report.png for a multirun folder; returns the Markdown file."""
    jobs, keys = read_sweep(sweep_dir)
    logged = {m for job in jobs for m in job.curves}
    primary = metric or next((m for m in ("metrics/fid", "mode/high_quality") if m in logged), None)
    primary = primary or (sorted(logged)[0] if logged else "metrics/fid")
    header, rows = table(jobs, keys, primary)
    out = out or sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    with (out / "report.csv").open("w", newline="") as file:
        csv.writer(file).writerows([header, *rows])
    text = f"# Sweep {sweep_dir}\n\n{len(jobs)} jobs; swept: {', '.join(keys) or '(nothing)'}.\n\n"
    (out / "report.md").write_text(text + markdown(header, rows))
    plot(jobs, keys, out / "report.png")
    return out / "report.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ganforge-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, e.g. outputs/<task>/multiruns/<time>")
    parser.add_argument("--metric", help="the metric whose best value gets a column (default: metrics/fid)")
    parser.add_argument("--out", type=Path, help="where to write the report (default: the multirun folder)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(
            f"{str(args.sweep_dir)!r} is not a folder; pass a multirun folder (outputs/<task>/multiruns/<time>)"
        )
    try:
        path = report(args.sweep_dir, args.metric, args.out)
    except GanforgeError as err:
        parser.error(str(err))
    print(path.read_text())
    print(f"wrote {path}, {path.with_suffix('.csv')} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
