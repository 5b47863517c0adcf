"""``ganforge-report FOLDER``: one table row per run, and the curves of its metrics and losses.

FOLDER is one run (``outputs/<task>/runs/<time>``), a multirun (``outputs/<task>/multiruns/<time>``) or a
task's runs (``outputs/<task>/runs``). Reads what every run leaves on disk (``.hydra/overrides.yaml``,
``csv/metrics.csv``, ``error.txt``), so runs can be compared without the W&B cloud. Writes ``report.md``,
``report.csv`` and ``report.png`` into FOLDER (or ``--out``) and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from ganforge.errors import GanforgeError
from ganforge.sweeps import sweep_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Evaluation metrics where lower is better; for the others (IS, precision, HQ %, ...) higher is.
LOWER_IS_BETTER = {"fid", "kid", "intra_fid", "reverse_kl", "kl"}
EVALUATION_PREFIXES = ("metrics/", "mode/")
#: The losses drawn beside the evaluation metrics (not in the table: a last batch's loss says little).
LOSSES = ("loss/d", "loss/g")
#: Panels per row of report.png; more metrics add rows.
PANELS_PER_ROW = 4
ACCEPTED = (
    "a run folder (outputs/<task>/runs/<time>), a multirun folder (outputs/<task>/multiruns/<time>) "
    "or a task's runs (outputs/<task>/runs)"
)

Cell = float | int | str | None


@dataclass
class Job:
    """One run: its overrides, status and curves ``key -> [(gen_step, value)]`` (evaluation metrics, losses)."""

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


def is_evaluation(key: str) -> bool:
    """A metric of the table (its ``_std`` companions are not)."""
    return key.startswith(EVALUATION_PREFIXES) and not key.endswith("_std")


def read_curves(metrics_csv: Path) -> dict[str, list[tuple[float, float]]]:
    """Evaluation metrics and losses of a run's CSV log, each as (generator step, value) in logged order.

    NaN values are left out: older runs logged ``loss/g`` as NaN for batches without a generator step.
    """
    curves: dict[str, list[tuple[float, float]]] = {}
    with metrics_csv.open(newline="") as file:
        for row in csv.DictReader(file):
            step = float(row["gen_step"]) if row.get("gen_step") else math.nan
            for key, value in row.items():
                if value and (is_evaluation(key) or key in LOSSES) and not math.isnan(number := float(value)):
                    curves.setdefault(key, []).append((step, number))
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
        status = "ok" if any(is_evaluation(key) for key in curves) else "no evaluation logged"
    return Job(job_dir.name, overrides, status, curves)


def is_run(folder: Path) -> bool:
    return (folder / ".hydra" / "overrides.yaml").is_file()


def read_runs(folder: Path) -> tuple[list[Job], list[str]]:
    """The runs of ``folder`` and the keys they vary: the run itself when ``folder`` is one, else every run
    folder in it (a multirun's jobs in job order, or a task's runs in time order)."""
    if is_run(folder):
        return [read_job(folder)], []
    job_dirs = sorted(
        (d for d in folder.iterdir() if is_run(d)),
        key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name),
    )
    if not job_dirs:
        raise GanforgeError(
            f"{str(folder)!r} is not a run and holds no Hydra jobs (folders with .hydra/overrides.yaml); "
            f"pass {ACCEPTED}"
        )
    jobs = [read_job(d) for d in job_dirs]
    hydra_yaml = job_dirs[0] / ".hydra" / "hydra.yaml"
    keys = sweep_of(folder, OmegaConf.load(hydra_yaml).hydra if hydra_yaml.is_file() else None)
    if not keys:  # not recorded (a task's runs, jobs copied elsewhere): the keys whose values differ
        all_keys = dict.fromkeys(k for job in jobs for k in job.overrides)
        keys = [k for k in all_keys if len({job.overrides.get(k) for job in jobs}) > 1]
    return jobs, keys


def metric_names(jobs: list[Job]) -> list[str]:
    """The evaluation metrics any run logged: FIDs first, then by name."""
    return sorted({m for job in jobs for m in job.curves if is_evaluation(m)}, key=lambda m: (not m.endswith("fid"), m))


def table(jobs: list[Job], keys: list[str], primary: str) -> tuple[list[str], list[list[Cell]]]:
    """Header and rows at full precision: run, swept values, status, generator steps, final metrics, best of
    ``primary``."""
    metrics = metric_names(jobs)
    header = ["job", *keys, "status", "gen_step", *metrics, f"best {primary}"]
    rows = []
    for job in jobs:
        steps = [step for curve in job.curves.values() for step, _ in curve]
        row: list[Cell] = [job.name, *(job.overrides.get(k, "") for k in keys), job.status]
        row += [int(max(steps)) if steps else None, *(job.final(m) for m in metrics)]
        rows.append([*row, job.best(primary)])
    return header, rows


def _cell(value: Cell) -> str:
    """A Markdown cell: numbers (also numeric override strings, such as a sampled lr) to 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return value if len(value) <= 8 else f"{number:.4g}"
    return f"{value:.4g}"


def markdown(header: list[str], rows: list[list[Cell]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def figure(jobs: list[Job], keys: list[str]) -> Figure:
    """One panel per metric of the table, then ``loss/d`` and ``loss/g``, each against the generator step with
    one line per run; ``PANELS_PER_ROW`` panels to a row."""
    from matplotlib.figure import Figure

    panels = [*metric_names(jobs), *(key for key in LOSSES if any(key in job.curves for job in jobs))]
    ncols = max(1, min(len(panels), PANELS_PER_ROW))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = Figure(figsize=(4.5 * ncols, 3.6 * nrows), layout="tight")
    axes = fig.subplots(nrows, ncols, squeeze=False).flat
    for ax in axes[len(panels) :]:
        fig.delaxes(ax)
    for ax, key in zip(axes, panels, strict=False):
        loss = key in LOSSES
        for job in jobs:
            if key in job.curves:
                steps, values = zip(*job.curves[key], strict=True)
                swept = " ".join(f"{k}={job.overrides.get(k, '')}" for k in keys)
                style = {"linewidth": 0.8} if loss else {"marker": "o", "markersize": 3}
                ax.plot(steps, values, label=f"{job.name}: {swept}" if swept else job.name, **style)
        ax.set_title(key if loss else key + (" (lower is better)" if lower_is_better(key) else ""))
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    if panels:
        axes[0].legend(fontsize=7)
    return fig


def report(folder: Path, metric: str | None = None, out: Path | None = None) -> Path:
    """Write report.md / report.csv / report.png for a run, a multirun or a task's runs; returns the Markdown file.

    report.csv holds the logged values exactly; report.md rounds them to 4 significant digits.
    """
    jobs, keys = read_runs(folder)
    logged = metric_names(jobs)
    primary = metric or next((m for m in ("metrics/fid", "mode/high_quality") if m in logged), None)
    primary = primary or (logged[0] if logged else "metrics/fid")
    header, rows = table(jobs, keys, primary)
    out = out or folder
    out.mkdir(parents=True, exist_ok=True)
    with (out / "report.csv").open("w", newline="") as file:
        csv.writer(file).writerows([header, *rows])
    swept = f"; swept: {', '.join(keys)}" if keys else ""
    (out / "report.md").write_text(
        f"# Report of {folder}\n\n{plural(len(jobs), 'job')}{swept}.\n\n" + markdown(header, rows)
    )
    figure(jobs, keys).savefig(out / "report.png", dpi=100)
    return out / "report.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ganforge-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help=ACCEPTED)
    parser.add_argument("--metric", help="the metric whose best value gets a column (default: metrics/fid)")
    parser.add_argument("--out", type=Path, help="where to write the report (default: FOLDER)")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{str(args.folder)!r} is not a folder; pass {ACCEPTED}")
    try:
        path = report(args.folder, args.metric, args.out)
    except GanforgeError as err:
        parser.error(str(err))
    print(path.read_text())
    print(f"wrote {path}, {path.with_suffix('.csv')} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
