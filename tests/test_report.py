"""ganforge-report on what a researcher points it at: one run, a multirun, a task's runs; exact CSV, every curve."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from ganforge.report import PANELS_PER_ROW, figure, main, read_runs, report
from tests.test_cli import BIN
from tests.test_sweeps import SHORT, read_report


def write_run(run: Path, overrides: list[str], rows: list[dict[str, object]]) -> Path:
    """A run folder as ganforge-train leaves it, with ``rows`` as its CSV log."""
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run / "csv").mkdir()
    with (run / "csv" / "metrics.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=sorted({key for row in rows for key in row}))
        writer.writeheader()
        writer.writerows(rows)
    return run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 4-step run, evaluated at generator steps 2 and 4, filed in ``<task>/runs/<time>``."""
    run = tmp_path_factory.mktemp("outputs") / "fashion_mnist_dcgan" / "runs" / "2026-01-01_00-00-00"
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(BIN / "ganforge-train"), *SHORT, "seed=1", f"hydra.run.dir={run}"],
        cwd=run.parents[3], env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def test_a_run_folder_is_reported_with_the_logged_values_unrounded(trained_run: Path) -> None:
    """report.csv holds metrics.csv's strings exactly (and so metrics.json's floats); report.md rounds them."""
    with (trained_run / "csv" / "metrics.csv").open(newline="") as file:
        logged = [row for row in csv.DictReader(file) if row["metrics/fid"]]
    final = json.loads((trained_run / "metrics.json").read_text())["metrics"]

    report(trained_run)
    (row,) = read_report(trained_run)
    assert row["job"] == trained_run.name and row["status"] == "ok" and row["gen_step"] == "4"
    for name in ("fid", "kid", "is", "precision", "recall"):
        assert row[f"metrics/{name}"] == logged[-1][f"metrics/{name}"]
        assert float(row[f"metrics/{name}"]) == final[name]
    assert float(row["best metrics/fid"]) == min(float(r["metrics/fid"]) for r in logged)
    text = (trained_run / "report.md").read_text()
    assert "\n1 job.\n" in text
    assert f"| {float(row['metrics/fid']):.4g} |" in text


def test_a_tasks_runs_folder_is_one_row_per_run_with_the_settings_that_differ(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = trained_run.parent
    other = runs / "2026-01-02_00-00-00"
    shutil.copytree(trained_run, other, ignore=shutil.ignore_patterns("report.*"))
    overrides = other / ".hydra" / "overrides.yaml"
    overrides.write_text(overrides.read_text().replace("- seed=1", "- seed=2"))

    main([str(runs)])
    rows = read_report(runs)
    assert [(r["job"], r["seed"], r["status"]) for r in rows] == [
        ("2026-01-01_00-00-00", "1", "ok"), ("2026-01-02_00-00-00", "2", "ok"),
    ]  # fmt: skip
    printed = capsys.readouterr().out
    assert "\n2 jobs; swept: seed.\n" in printed
    assert f"wrote {runs / 'report.md'}" in printed


def test_the_figure_has_a_panel_per_metric_of_the_table_and_the_loss_curves(tmp_path: Path) -> None:
    """Six metrics and two losses: eight panels in rows of four, each line the logged curve (NaN losses left out)."""
    sweep = tmp_path / "sweep"
    metrics = ["metrics/fid", "metrics/intra_fid", "metrics/is", "metrics/kid", "metrics/precision", "metrics/recall"]
    rows: list[dict[str, object]] = []
    for gen_step in (1, 2, 3, 4):
        rows.append(
            {"gen_step": float(gen_step), "loss/d": 1.0 / gen_step, "loss/g": math.nan if gen_step == 3 else gen_step}
        )
        if gen_step % 2 == 0:
            rows.append({"gen_step": float(gen_step), **{m: gen_step + i / 7 for i, m in enumerate(metrics)}})
    write_run(sweep / "0", ["loss=hinge"], rows)
    write_run(sweep / "1", ["loss=wgan"], rows[:3])  # stopped after its first evaluation

    jobs, keys = read_runs(sweep)
    assert keys == ["loss"]
    fig = figure(jobs, keys)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "metrics/fid (lower is better)", "metrics/intra_fid (lower is better)", "metrics/is",
        "metrics/kid (lower is better)", "metrics/precision", "metrics/recall", "loss/d", "loss/g",
    ]  # fmt: skip
    grid = {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes}
    assert grid == {(2, PANELS_PER_ROW)}
    for ax, key in zip(fig.axes, [*metrics, "loss/d", "loss/g"], strict=True):
        assert ax.get_xlabel() == "generator step"
        drawn = [list(zip(*line.get_data(), strict=True)) for line in ax.get_lines()]
        expected = [[(r["gen_step"], r[key]) for r in job_rows if key in r and not math.isnan(r[key])]
                    for job_rows in (rows, rows[:3])]  # fmt: skip
        assert drawn == [curve for curve in expected if curve]
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["0: loss=hinge", "1: loss=wgan"]

    report(sweep)
    assert Image.open(sweep / "report.png").size == (4 * 450, 2 * 360)  # two rows of 4.5 x 3.6 inch panels at 100 dpi
    assert "\n2 jobs; swept: loss.\n" in (sweep / "report.md").read_text()
