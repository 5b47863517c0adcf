"""max_time: training stops early enough that the final evaluation, checkpoints and metrics.json fit in the budget."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ganforge.callbacks import GenStepCheckpoint, ModeCoverage, SampleGrid, WallClockBudget
from ganforge.callbacks import budget as budget_module
from ganforge.callbacks.budget import EXIT_ALLOWANCE_S, parse_max_time
from ganforge.config import load_checkpoint
from ganforge.errors import ConfigError
from ganforge.train import train
from ganforge.validation import validate
from tests.conftest import TINY, Compose

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("00:15:00", 900), ("1:30:00", 5400), ("01:02:03:04", 93784), (90, 90), (2.5, 2.5)],
)
def test_budgets_are_read_as_seconds(value: object, seconds: float) -> None:
    assert parse_max_time(value) == seconds


@pytest.mark.parametrize("value", ["15:00", "00:00:00:900", "00:61:00", "abc", 0, -5, True, "00:00:00"])
def test_a_malformed_budget_is_refused_up_front(tiny_cfg: Compose, value: object) -> None:
    """Two fields (minutes or hours?), seconds or minutes past 59, nothing, or no time at all."""
    with pytest.raises(ConfigError, match=r"^max_time=.*: a wall-clock budget is HH:MM:SS, DD:HH:MM:SS or seconds"):
        validate(tiny_cfg(f"max_time={value}"))


def budget_and_trainer(tmp_path: Path) -> tuple[WallClockBudget, SimpleNamespace]:
    """A budget of 100 s from t=0 beside a grid (1.5 s), an evaluation (4 s), the checkpoint callback (a write:
    0.25 s; writes step files and last.ckpt) and best.ckpt (not written yet; writes one file), in a stand-in
    trainer that records what the budget does to it."""
    grid = SampleGrid(str(tmp_path))
    evaluation = ModeCoverage(str(tmp_path))
    checkpoint = GenStepCheckpoint(dirpath=str(tmp_path))
    best = GenStepCheckpoint(
        dirpath=str(tmp_path), monitor="metrics/fid", filename="best", save_top_k=1, save_last=False
    )
    grid.longest_s, evaluation.longest_s, checkpoint.longest_s = 1.5, 4.0, 0.25
    module = SimpleNamespace(generator_steps=0)
    trainer = SimpleNamespace(
        callbacks=[grid, evaluation, checkpoint, best],
        strategy=SimpleNamespace(broadcast=lambda decision: decision),
        should_stop=False,
        loggers=[],
        callback_metrics={},
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=0)),
        lightning_module=module,
    )
    return WallClockBudget(max_time=100, started=0), trainer


def test_the_reserve_is_a_batch_every_evaluation_and_the_checkpoint_writes(tmp_path: Path) -> None:
    """The longest recent batch + each end-of-training callback's longest run + one write per file written at the
    end (2 + 1) and one due now, at the longest write + the exit allowance."""
    budget, trainer = budget_and_trainer(tmp_path)
    budget.batch_times.extend([0.1, 0.3, 0.2])
    assert budget.reserve(trainer.callbacks) == pytest.approx(0.3 + (1.5 + 4.0) + 4 * 0.25 + EXIT_ALLOWANCE_S)


def test_training_stops_at_the_first_batch_whose_remaining_time_is_below_the_reserve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 0.1 s from t=80.05: the reserve is 0.1 + 5.5 + 1 + the exit allowance; training goes on while the
    time left before t=100 covers it and stops at the first batch where it does not, logging both figures."""
    budget, trainer = budget_and_trainer(tmp_path)
    reserve = 0.1 + 5.5 + 4 * 0.25 + EXIT_ALLOWANCE_S  # 11.6 s
    ends = [round(80.05 + batch / 10, 6) for batch in range(200)]
    clock = iter(ends)
    now = [next(clock)]
    monkeypatch.setattr(budget_module.time, "time", lambda: now[0])
    budget.on_train_start(trainer, trainer.lightning_module)  # type: ignore[arg-type]
    for step, end in enumerate(clock, start=1):
        now[0] = end
        trainer.lightning_module.generator_steps = step
        budget.on_train_batch_end(trainer, trainer.lightning_module)  # type: ignore[arg-type]
        if trainer.should_stop:
            break
    assert now[0] == pytest.approx(88.45)  # 11.55 s left; at 88.35, 11.65 s: enough for one more batch
    assert budget.stopped_at == {
        "budget/remaining_s": pytest.approx(11.55),
        "budget/reserve_s": pytest.approx(reserve),
    }
    assert trainer.callback_metrics["budget/reserve_s"].item() == pytest.approx(reserve)


def read_rows(run: Path) -> list[dict[str, str]]:
    with (run / "csv" / "metrics.csv").open() as file:
        return list(csv.DictReader(file))


def test_a_run_with_a_budget_ends_within_it_checkpointed_and_evaluated(
    tiny_cfg: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 25-second budget from train()'s start (in a process of its own it starts with the process) and no step
    limit: training stops because the time left no longer covers the reserve, and the final evaluation,
    last.ckpt and metrics.json all describe that step, within the budget (the exit allowance is left over here:
    this process does not exit). The evaluation ran once at the first generator step, to measure it."""
    monkeypatch.setattr("ganforge.train.run_start", time.time)
    cfg = tiny_cfg(
        "max_gen_steps=null", "max_time=25", "metrics.every_n_gen_steps=100000", "trainer.log_every_n_steps=5"
    )
    started = time.time()
    metrics = train(cfg)
    elapsed = time.time() - started
    assert metrics["budget/remaining_s"] < metrics["budget/reserve_s"]
    assert elapsed <= 25, (elapsed, metrics)
    run = tmp_path / "run"
    step = load_checkpoint(run / "checkpoints" / "last.ckpt")["ganforge"]["generator_steps"]
    assert step > 1 and json.loads((run / "metrics.json").read_text())["gen_step"] == step == metrics["gen_step"]
    evaluated = [float(row["gen_step"]) for row in read_rows(run) if row.get("metrics/fid")]
    assert evaluated == [1, step]


@pytest.mark.slow
def test_the_whole_process_ends_within_its_budget(tmp_path: Path) -> None:
    """ganforge-train max_time=60 as a user runs it: counted from the process's start, imports included; it ends,
    with last.ckpt and metrics.json, within the budget and a tolerance of 5 s for a machine whose load changes."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    command = [str(BIN / "ganforge-train"), *TINY, "max_gen_steps=null", "max_time=60", f"paths.output_dir={tmp_path}"]
    started = time.time()
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.time() - started
    assert result.returncode == 0, result.stderr[-2000:]
    assert elapsed <= 60 + 5, elapsed
    assert "stopped: max_time=60 s: training ended at generator step" in result.stderr + result.stdout
    step = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["ganforge"]["generator_steps"]
    assert json.loads((tmp_path / "metrics.json").read_text())["gen_step"] == step
