"""Progress and endings (issue 33, items 2-4, 12 and the bar's ``v_num``): every logger plots against the generator
step, the bar and the plain lines count generator steps of the whole run, a run says why it stopped and where it
went, and ``train.log`` holds what the console shows."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.loggers import CSVLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ganforge.callbacks import GANProgressBar, ProgressLog
from ganforge.callbacks.progress import RunClock
from ganforge.config import build, build_module
from ganforge.runs import ContinuingCSVLogger
from ganforge.train import train
from tests.conftest import TINY, Compose
from tests.wandb_log import records

BIN = Path(sys.executable).parent
#: A progress line: ``gen_step 40/200 (20%) | 512 img/s | loss/d 1.2 | ... | elapsed 0:00:10 | eta 0:00:40`` (the
#: logged values, once there are any).
LINE = re.compile(r"gen_step (\d+)/(\d+) \((\d+)%\) \| (\d+) img/s(?: \| (.*))? \| elapsed ([\d:]+) \| eta ([\d:]+)")
#: Without evaluations or grids: the loop, its checkpoints and its logs only.
LOOP_ONLY = ["~callbacks.image_metrics", "~callbacks.best_checkpoint", "~callbacks.samples"]


def csv_rows(run: Path) -> list[dict[str, str]]:
    with (run / "csv" / "metrics.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def wandb_history(run: Path) -> list[dict[str, Any]]:
    """The rows of the run's offline W&B log, as logged (``trainer/global_step`` is Lightning's x-axis key)."""
    (log,) = run.glob("wandb/offline-run-*/run-*.wandb")
    return [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for record in records(log)
        if record.WhichOneof("record_type") == "history"
    ]


def test_every_logger_plots_against_the_generator_step(
    tiny_cfg: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two batches per generator step (n_critic=2), rows every 5 generator steps and at the last (23), evaluations
    and grids every 10 and at the end: the CSV's ``step`` is ``gen_step`` in every row, one row per step in step order,
    the last holding the final losses and evaluation; TensorBoard's losses, metrics and images and W&B's rows
    (``trainer/global_step``) stand at the same generator steps."""
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    every = ["metrics.every_n_gen_steps=10", "callbacks.samples.every_n_gen_steps=10"]
    train(tiny_cfg("logger=many", "n_critic=2", "max_gen_steps=23", "trainer.log_every_n_steps=5", *every))
    run, logged, evaluated = tmp_path / "run", [5, 10, 15, 20, 23], [10, 20, 23]

    rows = csv_rows(run)
    assert [int(row["step"]) for row in rows] == logged
    assert all(float(row["gen_step"]) == int(row["step"]) for row in rows)
    assert all(row["loss/g"] not in ("", "nan") and row["loss/d"] for row in rows)
    assert [int(row["step"]) for row in rows if row["metrics/fid"]] == evaluated
    final = json.loads((run / "metrics.json").read_text())
    assert final["gen_step"] == 23 and float(rows[-1]["metrics/fid"]) == pytest.approx(final["metrics"]["fid"])

    board = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    board.Reload()
    assert [event.step for event in board.Scalars("loss/d")] == logged
    assert [event.step for event in board.Scalars("metrics/fid")] == evaluated
    assert [event.step for event in board.Images("samples")] == evaluated

    history = wandb_history(run)
    assert [row["trainer/global_step"] for row in history if "loss/d" in row] == logged
    assert [row["trainer/global_step"] for row in history if "metrics/fid" in row] == evaluated
    assert [row["trainer/global_step"] for row in history if "samples/_type" in row] == evaluated


def test_the_csv_holds_one_row_per_step(tmp_path: Path) -> None:
    """Values logged at one step in separate calls share a row, also once it is in the file; another step, or a
    value logged again at the same step, starts a row; a continued run appends to the file."""
    logger = ContinuingCSVLogger(save_dir=tmp_path, name="csv", version="", flush_logs_every_n_steps=1)
    logger.log_metrics({"loss": 1.0, "gen_step": 5.0}, step=5)
    logger.log_metrics({"fid": 9.0, "gen_step": 5.0}, step=5)
    logger.log_metrics({"loss": 0.5, "gen_step": 10.0}, step=10)
    logger.log_metrics({"loss": 0.4, "gen_step": 10.0}, step=10)
    logger.save()
    again = ContinuingCSVLogger(save_dir=tmp_path, name="csv", version="", flush_logs_every_n_steps=1)
    again.log_metrics({"fid": 8.0, "gen_step": 15.0}, step=15)
    again.save()
    assert csv_rows(tmp_path) == [
        {"fid": "9.0", "gen_step": "5.0", "loss": "1.0", "step": "5"},
        {"fid": "", "gen_step": "10.0", "loss": "0.5", "step": "10"},
        {"fid": "", "gen_step": "10.0", "loss": "0.4", "step": "10"},
        {"fid": "8.0", "gen_step": "15.0", "loss": "", "step": "15"},
    ]


def fit_with_bar(tiny_cfg: Compose, tmp_path: Path, bar: GANProgressBar, progress: ProgressLog) -> Any:
    """12 generator steps of two batches each over 6 epochs of 4 batches (a 64-image subset), as ganforge-train
    builds the trainer; returns the module."""
    cfg = tiny_cfg("n_critic=2", "data.subset=64", "trainer.enable_progress_bar=true", *LOOP_ONLY)
    module = build_module(cfg)
    trainer = build(
        cfg.trainer, callbacks=[bar, progress], logger=CSVLogger(tmp_path), max_steps=12 * 3, log_every_n_steps=1
    )
    trainer.fit(module, datamodule=build(cfg.data))
    return trainer, module


def test_the_bar_counts_generator_steps_of_the_run_and_says_why_it_stopped(
    tiny_cfg: Compose, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """On a terminal the bar is one task for the whole run, 12/12 generator steps over 6 epochs (Lightning's counts
    each epoch's batches: 4/4), shows images/s and the losses but no ``v_num``; no plain lines on the console then,
    and the stop is said in generator steps, not in Lightning's optimizer steps (``max_steps=36``)."""
    terminal = io.StringIO()
    bar = GANProgressBar(console_kwargs={"force_terminal": True, "file": terminal, "width": 200})
    trainer, module = fit_with_bar(tiny_cfg, tmp_path, bar, ProgressLog(every_n_gen_steps=5))
    assert trainer.current_epoch == 6 and module.generator_steps == 12
    assert bar.is_enabled and bar.progress is not None and bar.train_progress_bar_id is not None
    task = bar.progress.tasks[bar.train_progress_bar_id]
    assert (task.description, task.completed, task.total) == ("gen_step", 12, 12)
    assert set(bar.get_metrics(trainer, module)) == {"img/s", "loss/d", "loss/g"}
    shown = terminal.getvalue()  # what was printed while the bar was drawn lands above it, in its console
    assert " 12/12 " in shown and "v_num" not in shown and "stopped: max_gen_steps=12 reached\n" in shown
    out, err = capfd.readouterr()
    assert not LINE.search(out + shown)  # the bar shows the progress
    assert "max_steps=36" not in out + err + shown


def test_without_a_terminal_the_bar_is_off_and_plain_lines_show_progress(
    tiny_cfg: Compose, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Output to a file (pytest's capture here): the bar turns itself off, and a line every 5 generator steps and at
    the last counts generator steps against the run's 12, with images/s, both losses, elapsed time and the ETA."""
    bar = GANProgressBar()
    fit_with_bar(tiny_cfg, tmp_path, bar, ProgressLog(every_n_gen_steps=5))
    assert bar.is_disabled and bar.progress is None
    out = capfd.readouterr().out.splitlines()
    lines = [match for line in out if (match := LINE.fullmatch(line))]
    assert [(int(m[1]), int(m[2]), int(m[3])) for m in lines] == [(5, 12, 42), (10, 12, 83), (12, 12, 100)]
    assert all(int(m[4]) > 0 and re.fullmatch(r"loss/d [-\d.e]+ \| loss/g [-\d.e]+", m[5]) for m in lines)
    assert lines[-1][7] == "0:00:00"
    assert out[-1] == "stopped: max_gen_steps=12 reached"


@pytest.mark.parametrize("evaluated", [True, False])
def test_a_run_ends_with_a_line_naming_its_folder_final_metrics_and_metrics_json(
    tiny_cfg: Compose, tmp_path: Path, capsys: pytest.CaptureFixture[str], evaluated: bool
) -> None:
    """The last line: the run folder, the generator step, the final evaluation (FID first, the rest by name; or,
    without one, the last losses) and the file that keeps it, metrics.json (without image metrics: the CSV log),
    the same with any logger."""
    overrides = ["max_gen_steps=6", "metrics.every_n_gen_steps=6", *([] if evaluated else LOOP_ONLY)]
    metrics = train(tiny_cfg(*overrides))
    run = tmp_path / "run"
    if evaluated:
        final = json.loads((run / "metrics.json").read_text())["metrics"]
        figures = {f"metrics/{key}": metrics[f"metrics/{key}"] for key in final if not key.endswith("_std")}
        assert figures == pytest.approx({f"metrics/{key}": final[key] for key in final if not key.endswith("_std")})
        kept = run / "metrics.json"
    else:
        figures, kept = {key: metrics[key] for key in ("loss/d", "loss/g")}, run / "csv" / "metrics.csv"
        assert figures["loss/d"] == pytest.approx(float(csv_rows(run)[-1]["loss/d"]))
    headline_first = sorted(figures.items(), key=lambda item: (item[0] != "metrics/fid", item[0]))
    shown = ", ".join(f"{key} {value:.4g}" for key, value in headline_first)
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == ["stopped: max_gen_steps=6 reached", f"done: {run} | gen_step 6 | {shown} | {kept}"]


def test_the_eta_ends_at_lightnings_max_time_when_that_comes_before_the_steps() -> None:
    """``+trainer.max_time`` (Lightning's Timer, as benchmarks/wall_time.py bounds its runs) with a step count no run
    reaches: the ETA is the Timer's time left, not years of steps at the current pace."""
    module = SimpleNamespace(optimizer_steps_per_gen_step=2, batches_per_gen_step=2, generator_steps=0)
    timer = Timer(duration=timedelta(minutes=29))
    trainer: Any = SimpleNamespace(
        lightning_module=module, max_steps=2 * 10**9, max_epochs=-1, num_training_batches=float("inf"),
        callbacks=[timer],
    )  # fmt: skip
    timer.on_train_start(trainer, module)  # type: ignore[arg-type]
    clock = RunClock()
    clock.start(module)  # type: ignore[arg-type]
    clock.started = (clock.started[0] - 10.0, 0)  # 100 steps in the last 10 s: 10**9 steps would take ~3 years
    eta = clock.eta_s(trainer, 100)
    assert eta is not None and 29 * 60 - 5 < eta <= 29 * 60


@pytest.mark.slow
def test_ganforge_train_with_stdout_to_a_file_prints_progress_lines_while_it_runs(tmp_path: Path) -> None:
    """``ganforge-train > file`` with the default bar: progress lines reach the file while training runs, count
    generator steps up to max_gen_steps with the last FID once there is one, and end with why training stopped and
    where the run went; train.log holds the same lines and Lightning's messages; no bar is drawn."""
    run = tmp_path / "run"
    overrides = [o for o in TINY if "progress_bar" not in o]
    every = ["callbacks.progress_log.every_n_gen_steps=50", "metrics.every_n_gen_steps=100"]
    command = [str(BIN / "ganforge-train"), *overrides, *every, "max_gen_steps=200", f"hydra.run.dir={run}"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    stdout = tmp_path / "stdout.txt"
    with stdout.open("w") as out, (tmp_path / "stderr.txt").open("w") as err:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=err)
        seen_while_running = False
        while process.poll() is None:
            seen_while_running |= bool(LINE.search(stdout.read_text()))
            time.sleep(0.2)
    assert process.returncode == 0, (tmp_path / "stderr.txt").read_text()[-2000:]
    assert seen_while_running

    printed = stdout.read_text().splitlines()
    lines = [match for line in printed if (match := LINE.fullmatch(line))]
    assert [(int(m[1]), int(m[2]), int(m[3])) for m in lines] == [(s, 200, s // 2) for s in (50, 100, 150, 200)]
    assert all(m[5].startswith("loss/d ") for m in lines)  # logged every 50 generator steps, as the lines come
    assert ["metrics/fid" in m[5] for m in lines] == [False, True, True, True]  # the line at 100 shows its evaluation
    assert printed[-2] == "stopped: max_gen_steps=200 reached"
    assert printed[-1].startswith("done: run | gen_step 200 | metrics/fid ") and printed[-1].endswith(
        " | run/metrics.json"
    )
    assert "━" not in "".join(printed) and "max_steps=400" not in (tmp_path / "stderr.txt").read_text()

    logged = [line.split("] - ", 1)[1] for line in (run / "train.log").read_text().splitlines() if "] - " in line]
    assert [line for line in printed if LINE.fullmatch(line) or line.startswith(("stopped:", "done:"))] == [
        line for line in logged if LINE.fullmatch(line) or line.startswith(("stopped:", "done:"))
    ]
    assert any(line.startswith("GPU available: ") for line in logged)  # Lightning's messages too
