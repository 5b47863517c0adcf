"""Where runs live, and how an interrupted run continues in its own folder.

A run is filed under ``outputs/<task_name>/runs/<time>``, the task named by what it trains.
``ckpt_path=last`` picks the newest run of the task that holds a checkpoint and continues it in
place: the same folder, the same ``csv/metrics.csv`` (rows logged after that checkpoint are
dropped, they are logged again), the same W&B run id. A job whose folder already holds
checkpoints (a requeued SLURM / submitit job) continues from its newest one by itself.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig

#: ``ckpt_path`` value meaning "the newest checkpoint of this task's newest run".
LAST = "last"


def task_name(*, _root_: DictConfig) -> str:
    """``<data>_<model>`` from the chosen config groups, plus ``_<game>`` for a game other than the plain one
    (unless the model is named after it) and ``_cond`` for a class-conditional model: runs are filed by what
    they train. The choices come from Hydra's config: the running job's, or while a sweeper sets up (before
    there is a job) the one in the config being resolved."""
    # A config node either way, read by attribute (Hydra's stub types the job's choices as a plain dict).
    choices: Any = HydraConfig.get().runtime.choices if HydraConfig.initialized() else _root_.hydra.runtime.choices
    game = choices.get("game")
    played = f"_{game}" if game and game != "null" and not str(choices.model).startswith(game) else ""
    return f"{choices.data}_{choices.model}{played}{'_cond' if _root_.model.get('conditional') else ''}"


def newest_checkpoint(run: Path) -> Path | None:
    """The most recently written checkpoint of a run folder (``last.ckpt`` unless a write was cut short)."""
    checkpoints = list((run / "checkpoints").glob("*.ckpt"))
    return max(checkpoints, key=lambda path: path.stat().st_mtime_ns, default=None)


def run_dir(runs: str, now: str, ckpt_path: str | None) -> str:
    """Hydra's run folder: ``<runs>/<now>``; with ``ckpt_path=last``, the newest run that has a checkpoint."""
    if ckpt_path == LAST:
        resumable = [run for run in sorted(Path(runs).glob("*")) if newest_checkpoint(run) is not None]
        if resumable:
            return str(resumable[-1])  # run folders are timestamps
    return f"{runs}/{now}"


def config_subdir(ckpt_path: str | None, now: str) -> str:
    """Where Hydra saves the run's config: ``.hydra``; a continued run keeps the first config and adds its own."""
    return f".hydra/continued_{now}" if ckpt_path == LAST else ".hydra"


def resume_checkpoint(ckpt_path: str | None, output_dir: str | os.PathLike[str]) -> Path | None:
    """The checkpoint a run starts from: ``ckpt_path`` as given; for ``last`` or none, the newest one in
    the run's own folder (none for a new run)."""
    if ckpt_path and ckpt_path != LAST:
        return Path(ckpt_path)
    return newest_checkpoint(Path(output_dir))


def wandb_run_id(output_dir: str) -> str | None:
    """The id of the W&B run already in ``output_dir`` (a continued run logs to it), None for a new run."""
    latest = Path(output_dir) / "wandb" / "latest-run"
    return latest.resolve().name.rsplit("-", 1)[-1] if latest.exists() else None


def truncate_metrics(metrics_csv: Path, last_step: int) -> None:
    """Keep the rows of ``metrics.csv`` up to logger step ``last_step`` (the checkpoint's last batch), and
    drop a row cut short by a kill; the continued run logs the later steps again."""
    if not metrics_csv.is_file():
        return
    with metrics_csv.open(newline="") as file:
        reader = csv.DictReader(file)
        header = list(reader.fieldnames or [])
        rows = [row for row in reader if None not in row.values() and row["step"] and int(row["step"]) <= last_step]
    partial = metrics_csv.with_name(metrics_csv.name + ".partial")
    with partial.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, metrics_csv)


class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv``; this one appends to it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])


class ContinuingCSVLogger(CSVLogger):
    """``CSVLogger`` that continues the ``metrics.csv`` of a continued run instead of deleting it."""

    @property
    def experiment(self) -> Any:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment


#: Settings a continued run must share with the run it continues (the rest, e.g. max_gen_steps, may change).
SAME_SETTINGS = ("seed", "n_critic", "ema_decay", "model", "loss", "optim", "data")
#: Data settings that only say where or how fast the data is read.
DATA_ACCESS = ("data_dir", "num_workers", "download")


def changed_settings(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key=value`` of the run being continued, for each setting of :data:`SAME_SETTINGS` that differs now."""

    def flat(node: Any, prefix: str) -> dict[str, Any]:
        if not isinstance(node, dict):
            return {prefix: node}
        return {k: v for key, value in node.items() for k, v in flat(value, f"{prefix}.{key}").items()}

    before = {k: v for key in SAME_SETTINGS for k, v in flat(saved.get(key), key).items()}
    now = {k: v for key in SAME_SETTINGS for k, v in flat(current.get(key), key).items()}
    ignored = {f"data.{key}" for key in DATA_ACCESS}
    # A setting the saved run lacks came with a newer ganforge, whose default keeps the old behaviour.
    keys = sorted(before.keys() - ignored)
    return [f"{key}={'null' if before[key] is None else before[key]}" for key in keys if before[key] != now.get(key)]
