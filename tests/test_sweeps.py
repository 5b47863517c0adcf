"""Hydra multiruns as a user starts them: grid sweeps with W&B runs, Optuna, launchers, failures, reports."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ganforge.errors import ConfigError, GanforgeError
from ganforge.report import read_curves, report
from ganforge.sweeps import swept_keys
from ganforge.train import optimized_value
from tests.conftest import TINY
from tests.wandb_log import config as wandb_config
from tests.wandb_log import run_record
from tests.wandb_log import summary as wandb_summary

BIN = Path(sys.executable).parent
# Four generator steps, evaluated after 2 and 4 (100 samples): a job takes a few seconds.
SHORT = [*TINY, "max_gen_steps=4", "metrics.every_n_gen_steps=2"]


def multirun(sweep_dir: Path, *overrides: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "ganforge-train"), "-m", *SHORT, *overrides, f"hydra.sweep.dir={sweep_dir}"]
    environment = os.environ | {"OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run(
        cmd, cwd=sweep_dir.parent, env=environment | (env or {}), capture_output=True, text=True, timeout=600
    )


def final_fid(job_dir: Path) -> float:
    return json.loads((job_dir / "metrics.json").read_text())["metrics"]["fid"]


def read_report(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "report.csv").open(newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
def test_grid_multirun_gives_one_grouped_wandb_run_per_job_and_a_report(tmp_path: Path) -> None:
    sweep = tmp_path / "grid"
    result = multirun(sweep, "loss=hinge,nonsaturating", "seed=1,2", "logger=wandb")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]

    expected = [["loss=hinge", "seed=1"], ["loss=hinge", "seed=2"], ["loss=nonsaturating", "seed=1"]]
    expected.append(["loss=nonsaturating", "seed=2"])
    groups = set()
    for job, tags in zip(jobs, expected, strict=True):
        (log,) = job.glob("wandb/offline-run-*/run-*.wandb")  # one W&B run per job
        run = run_record(log)
        groups.add(run.run_group)
        assert list(run.tags) == tags
        assert run.job_type == "train"
        assert run.display_name == f"{job.name}: {' '.join(tags)}"
        objective = wandb_config(log)["loss"]["objective"]["_target_"]  # the resolved config
        assert objective.endswith("Hinge" if tags[0] == "loss=hinge" else "NonSaturating")
        assert wandb_summary(log)["metrics/fid"] == pytest.approx(final_fid(job), rel=1e-6)
    assert groups == {f"fashion_mnist_dcgan-{sweep.name}"}  # one group: the sweep

    report(sweep)
    rows = read_report(sweep)
    assert [(r["job"], r["loss"], r["seed"], r["status"]) for r in rows] == [
        ("0", "hinge", "1", "ok"), ("1", "hinge", "2", "ok"), ("2", "nonsaturating", "1", "ok"),
        ("3", "nonsaturating", "2", "ok"),
    ]  # fmt: skip
    for row, job in zip(rows, jobs, strict=True):
        assert float(row["metrics/fid"]) == final_fid(job)  # unrounded
        assert float(row["best metrics/fid"]) <= float(row["metrics/fid"])
        assert row["gen_step"] == "4"
    assert (sweep / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 3 | nonsaturating | 2 | ok |" in (sweep / "report.md").read_text()


@pytest.mark.slow
def test_optuna_sweep_returns_the_best_of_its_trials(tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    result = multirun(sweep, "hparams_search=optuna", "hydra.sweeper.n_trials=3", "logger=csv")
    assert result.returncode == 0, result.stderr[-3000:]
    fids = [final_fid(sweep / str(n)) for n in range(3)]
    assert not (sweep / "3").exists()
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(fids), rel=1e-6)
    assert set(best["best_params"]) == {"optim.generator.lr", "optim.discriminator.lr", "n_critic", "loss"}
    report(sweep)
    rows = read_report(sweep)
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert min(float(r["metrics/fid"]) for r in rows) == pytest.approx(best["best_value"], rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["submitit_local", "joblib"])
def test_launchers_run_every_job(tmp_path: Path, launcher: str) -> None:
    sweep = tmp_path / launcher
    result = multirun(sweep, f"launcher={launcher}", "seed=1,2", "logger=csv")
    assert result.returncode == 0, result.stderr[-3000:]
    report(sweep)
    assert [r["status"] for r in read_report(sweep)] == ["ok", "ok"]
    assert final_fid(sweep / "0") != final_fid(sweep / "1")  # two seeds, two different runs
    if launcher == "submitit_local":
        assert any((sweep / ".submitit").iterdir())  # submitit's job files and logs


@pytest.mark.slow
def test_a_failing_job_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    sweep = tmp_path / "failing"
    result = multirun(sweep, "n_critic=0,1", "logger=csv")
    assert result.returncode != 0
    assert "n_critic must be >= 1" in result.stderr
    assert (sweep / "1" / "metrics.json").is_file()  # the job after the failed one ran to the end
    report(sweep)
    statuses = [r["status"] for r in read_report(sweep)]
    assert statuses[0].startswith("failed: ConfigError: n_critic must be >= 1") and statuses[1] == "ok"


def test_swept_keys_come_from_sweep_syntax_and_search_spaces() -> None:
    overrides = ["loss=hinge,wgan", "seed=1", "+extra=range(3)", "model.pack=choice(1,2)", "~callbacks.samples"]
    assert swept_keys(overrides, {"optim.generator.lr": "interval(1e-4,1e-3)"}) == [
        "loss", "extra", "model.pack", "optim.generator.lr",
    ]  # fmt: skip


def test_report_reads_curves_and_picks_the_best_by_direction(tmp_path: Path) -> None:
    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- loss=hinge\n")
    (job / ".hydra" / "hydra.yaml").write_text("hydra:\n  sweeper:\n    params: null\n")
    (job / "csv").mkdir()
    rows = [
        {"step": 1, "gen_step": 1, "loss/d": 0.5, "metrics/fid": "", "metrics/is": ""},
        {"step": 2, "gen_step": 2, "loss/d": "", "metrics/fid": 40.0, "metrics/is": 2.0},
        {"step": 4, "gen_step": 4, "loss/d": "", "metrics/fid": 30.0, "metrics/is": 1.5},
        {"step": 6, "gen_step": 6, "loss/d": "", "metrics/fid": 35.0, "metrics/is": 1.0},
    ]
    with (job / "csv" / "metrics.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert read_curves(job / "csv" / "metrics.csv") == {
        "loss/d": [(1.0, 0.5)],
        "metrics/fid": [(2.0, 40.0), (4.0, 30.0), (6.0, 35.0)],
        "metrics/is": [(2.0, 2.0), (4.0, 1.5), (6.0, 1.0)],
    }
    report(tmp_path / "sweep", metric="metrics/is")
    (row,) = read_report(tmp_path / "sweep")
    cells = (row["metrics/fid"], row["metrics/is"], row["best metrics/is"], row["gen_step"])
    assert cells == ("35.0", "1.0", "2.0", "6")  # the logged floats, unrounded
    report(tmp_path / "sweep")
    assert read_report(tmp_path / "sweep")[0]["best metrics/fid"] == "30.0"  # lower is better for FID


def test_report_on_a_folder_without_jobs_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GanforgeError, match="no Hydra jobs"):
        report(tmp_path)


def test_optimized_metric_that_was_not_logged_names_the_logged_ones() -> None:
    cfg = {"optimized_metric": "metrics/fdi"}
    with pytest.raises(ConfigError, match=r"metrics/fdi.*metrics/fid"):
        optimized_value(cfg, {"metrics/fid": 3.0, "loss/d": 1.0})  # type: ignore[arg-type]
    assert optimized_value({"optimized_metric": "metrics/fid"}, {"metrics/fid": 3.0}) == 3.0  # type: ignore[arg-type]
    assert optimized_value({"optimized_metric": None}, {}) is None  # type: ignore[arg-type]
