"""Smoke tests of benchmarks/: each script runs a few steps end to end, so a renamed API cannot rot it unnoticed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_NETS = ["model.generator.width=8", "model.discriminator.width=8"]


def run_benchmark(script: str, *args: str) -> str:
    """Run ``benchmarks/<script>`` with this interpreter; its stdout (a failure shows its output)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_throughput_runs_both_loops_and_prints_the_ratio() -> None:
    override = [arg for o in TINY_NETS for arg in ("--override", o)]
    out = run_benchmark(
        "throughput.py", "--steps", "2", "--warmup", "1", "--repeats", "1", "--batch-size", "16", *override
    )
    assert re.search(r"^ratio \d+\.\d{3}$", out.splitlines()[-1])
    assert "batch 16" in out


@pytest.mark.slow
def test_mode_collapse_scores_a_seed_and_tabulates_it(tmp_path: Path) -> None:
    """One seed of our ring configuration for 20 generator steps: its mode coverage reaches the table."""
    out = run_benchmark(
        "mode_collapse.py", "--seeds", "1", "--only", "ours", "--datasets", "ring", "--out", str(tmp_path),
        "--no-write", "max_gen_steps=20", *TINY_NETS,
    )  # fmt: skip
    (result,) = tmp_path.glob("ring/ours/*/mode_coverage.json")
    scores = json.loads(result.read_text())
    assert scores["gen_step"] == 20
    row = next(line for line in out.splitlines() if line.startswith("| **ganforge (experiment=ring / grid)** |"))
    assert f"| {scores['modes']:.1f} ± 0.0 |" in row and "| 1/0 |" in row


def test_modulated_conv_times_both_forms_on_every_layer() -> None:
    """Both forms agree on every layer (the script checks) and each layer gets a row, G's total the ratio."""
    out = run_benchmark("modulated_conv.py", "--width", "8", "--max-width", "16", "--resolution", "8",
                        "--batch", "4", "--steps", "1", "--repeats", "1")  # fmt: skip
    rows = [line for line in out.splitlines() if re.match(r"^\| \d+ -> \d+, 3, \d+x\d+ \|", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["16 -> 16, 3, 4x4", "16 -> 8, 3, 8x8", "8 -> 8, 3, 8x8"]
    assert re.search(r"^ratio \d+\.\d{3}$", out.splitlines()[-1])


@pytest.mark.slow
def test_wall_time_trains_within_the_budget_and_tabulates_the_metrics(tmp_path: Path) -> None:
    """A one-second training budget (a tiny DCGAN, small metric counts), two runs side by side, one with
    its own overrides: each run's final metrics reach its row, and the own overrides reach only that run."""
    metrics = [
        "metrics.n_samples=100",
        "metrics.n_real=100",
        "metrics.batch_size=50",
        "metrics.scorer.kid_subset_size=50",
    ]
    limited = "fmnist_dcgan data.subset=64 metrics.reference_split=test"
    out = run_benchmark(
        "wall_time.py", "fmnist_dcgan", limited, "--minutes", "0.02", "--reserve", "0", "--concurrent", "2",
        "--out", str(tmp_path), "--no-write", "--overrides", *TINY_NETS, "data.batch_size=16", *metrics,
    )  # fmt: skip
    (results,) = tmp_path.glob("*/results.json")
    runs = json.loads(results.read_text())
    for label in ("fmnist_dcgan", limited):
        fid = runs[label]["metrics"]["fid"]
        row = next(line for line in out.splitlines() if line.startswith(f"| {label} |"))
        assert f"| {fid:.4g} |" in row
    assert "trained_on" not in runs["fmnist_dcgan"]["protocol"]
    assert "train split" in runs["fmnist_dcgan"]["protocol"]["reference"]
    assert runs[limited]["protocol"]["trained_on"].startswith("64 samples of the training split")
    assert "test split" in runs[limited]["protocol"]["reference"]
