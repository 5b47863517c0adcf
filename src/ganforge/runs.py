"""Where runs live, and how an interrupted run continues in its own folder.

A run is filed under ``outputs/<task_name>/runs/<time>``, the task named by what it trains.
``ckpt_path=last`` picks the newest run of the task that holds a checkpoint and continues it in
place: the same folder, the same ``csv/metrics.csv`` (rows logged after that checkpoint are
dropped, they are logged again), the same W&B run id. A job whose folder already holds
checkpoints (a requeued SLURM / submitit job) continues from its newest one by itself.
"""

from __future__ import annotations

import csv
import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig, OmegaConf

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


def truncate_metrics(metrics_csv: Path, gen_step: int) -> None:
    """Keep the rows of ``metrics.csv`` up to generator step ``gen_step`` (the checkpoint's; the ``step`` column),
    and drop a row cut short by a kill; the continued run logs the later steps again."""
    if not metrics_csv.is_file():
        return
    with metrics_csv.open(newline="") as file:
        reader = csv.DictReader(file)
        header = list(reader.fieldnames or [])
        rows = [row for row in reader if None not in row.values() and row["step"] and int(row["step"]) <= gen_step]
    partial = metrics_csv.with_name(metrics_csv.name + ".partial")
    with partial.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, metrics_csv)


class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv``; this one appends to it.

    What is logged at one generator step in separate calls (its losses; its evaluations, which run before Lightning
    writes the losses, or after the last step; a budget's stop) goes into one row, written again as it grows: one
    row per step, in step order, so the last row holds the final losses and evaluations.
    """

    _written: dict[str, Any] | None = None  # the last row in the file

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        super().log_metrics(metrics_dict, step)
        row = self.metrics.pop()
        last = self.metrics[-1] if self.metrics else self._written
        if last is None or any(last[key] != row[key] for key in last.keys() & row.keys()):  # another step's row
            self.metrics.append(row)
            return
        if not self.metrics:  # in the file: it is taken out, and written again with the new values
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                lines = file.readlines()
            with self._fs.open(self.metrics_file_path, "w", newline="") as file:
                file.writelines(lines[:-1])
            self.metrics.append(last)
        last.update(row)

    def save(self) -> None:
        if self.metrics:
            self._written = self.metrics[-1]
        super().save()

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


#: What may differ between a run and its continuation (a key, or a block of keys): how long it trains, where its
#: files are, what is logged, shown and checkpointed, on what hardware and how fast. ``trainer.devices`` and
#: ``trainer.num_nodes`` are not among them: they set the global batch and the data shards.
MAY_CHANGE = (
    "task_name",
    "ckpt_path",
    "optimized_metric",
    "max_gen_steps",
    "max_time",
    "paths",
    "logger",
    "callbacks",
    "metrics.every_n_gen_steps",
    # Which classifier file: the image-metrics callback compares the extractor's identity (its weights' digest)
    # with the one the checkpoint's evaluations were scored in, which says more than these settings.
    "metrics.features.version",
    "metrics.features.weights_path",
    "metrics.batch_size",
    "metrics.cache_dir",
    # Density/coverage's k: runs saved before density/coverage existed lack it, and their metrics.csv gains the
    # two columns from the continuation on; the earlier columns keep their meaning.
    "metrics.scorer.dc_neighbourhood",
    # Stacked MNIST's confident-mode threshold: runs saved before it existed lack it (it scores nothing else).
    "metrics.scorer.mode_confidence",
    "trainer.accelerator",
    "trainer.strategy",
    "trainer.plugins",
    "trainer.default_root_dir",
    "trainer.max_epochs",
    "trainer.max_time",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.num_sanity_val_steps",
    "trainer.deterministic",
    "trainer.benchmark",
)
#: Data settings, at any depth (a derived task's ``data.base.data_dir``), that only say where or how fast data is read.
DATA_ACCESS = ("data_dir", "num_workers", "download", "system_dir", "cache_dir")


def changed_settings(
    saved: dict[str, Any],
    current: dict[str, Any],
    saved_choices: Mapping[str, Any] | None = None,
    current_choices: Mapping[str, Any] | None = None,
) -> list[str]:
    """The overrides that give a continued run the settings of the run it continues, one for each setting that
    differs and is not in :data:`MAY_CHANGE`: ``key=value`` (the saved value), ``++key=value`` for a setting
    the current config lacks, ``~key`` for one only the current config has (an added group such as
    ``augment=diffaugment``, named by its topmost new key). Given both runs' config-group choices (Hydra's
    ``runtime.choices``), a group whose option differs in a class (a ``_target_``) is named by the option the run
    chose, ``data=mnist_5k``, instead of its keys: a ``_target_`` changed on the command line keeps the other
    option's settings, which the class may not take. Settings the run changed within that option show up when
    the continuation is tried with it.

    Everything not listed decides what is trained (model, data, objective and its penalties, game, augmentation,
    optimizers, seed, precision, ...) or how the evaluations that the continued run appends to the same
    ``metrics.csv``, W&B run and ``best.ckpt`` are scored (``metrics`` counts, split, extractor), so it must match.
    A setting that one config lacks takes the default of the parameter it sets (``trainer.num_nodes``: 1), so a
    newer ganforge can add an option whose default keeps the old behaviour; where no default is known (a block
    only one config has, or built from another ``_target_``), it passes only when the other config has it off
    (null, false, 0, empty).
    """
    before, now = _leaves(saved), _leaves(current)
    keyed: list[tuple[str, str]] = []
    for key in sorted(before.keys() | now.keys()):
        if _may_change(key):
            continue
        implied = _default(saved, current, key) if key not in before or key not in now else _ABSENT
        old, new = before.get(key, implied), now.get(key, implied)
        if old is _ABSENT:
            fix = f"~{_new_root(saved, key)}" if not _off(new) else None
        elif new is _ABSENT:
            fix = f"++{key}={_override_value(old)}" if not _off(old) else None
        else:
            fix = f"{'' if key in now else '++'}{key}={_override_value(old)}" if old != new else None
        if fix is not None:
            keyed.append((key, fix))
    rechosen = _rechosen_groups(saved_choices or {}, current_choices or {}, [key for key, _ in keyed])
    fixes: list[str] = []
    for key, fix in keyed:
        package = next((package for package in rechosen if key == package or key.startswith(f"{package}.")), None)
        fix = rechosen[package] if package is not None else fix
        if fix not in fixes:
            fixes.append(fix)
    return fixes


def _rechosen_groups(saved: Mapping[str, Any], current: Mapping[str, Any], changed: list[str]) -> dict[str, str]:
    """``{package: "group=option"}`` (outermost package first) for each config group whose option differs between
    the runs, the saved one is not null, and a ``_target_`` in its package (``loss/penalties``: ``loss.penalties``)
    is among the ``changed`` keys."""
    rechosen = {}
    for group in sorted(saved.keys() & current.keys(), key=lambda group: group.count("/")):
        option = saved[group]
        if group.startswith("hydra") or option is None or option == current[group]:
            continue
        package = group.replace("/", ".")
        if any(key.startswith(f"{package}.") and key.rsplit(".", 1)[-1] == "_target_" for key in changed):
            rechosen[package] = f"{group}={_override_value(option)}"
    return rechosen


def group_choices(run: Path) -> dict[str, Any]:
    """The config-group options a run folder was first started with (``data: mnist_5k``), from Hydra's
    ``.hydra/hydra.yaml`` in it; empty for a folder that Hydra did not start."""
    saved = run / ".hydra" / "hydra.yaml"
    if not saved.is_file():
        return {}
    return cast(dict[str, Any], OmegaConf.to_container(OmegaConf.load(saved).hydra.runtime.choices))


#: A setting one config lacks and whose default is unknown.
_ABSENT = object()


def _default(saved: dict[str, Any], current: dict[str, Any], key: str) -> Any:
    """The default of the parameter that ``key`` sets, when both configs build the block holding it with the same
    ``_target_`` (looking through its base classes, for constructors that pass ``**kwargs`` on); else
    :data:`_ABSENT`."""
    *path, name = key.split(".")
    blocks = [_block(config, path) for config in (saved, current)]
    target = blocks[1].get("_target_")
    if not isinstance(target, str) or blocks[0].get("_target_") != target:
        return _ABSENT
    try:
        built = get_object(target)
    except Exception:  # noqa: BLE001 - a target that does not import has no default to offer
        return _ABSENT
    for function in built.__mro__ if isinstance(built, type) else [built]:  # a class: its constructor's signature
        try:
            parameter = inspect.signature(function).parameters.get(name)
        except (TypeError, ValueError):  # a builtin without a signature
            continue
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            return list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
    return _ABSENT


def _block(config: dict[str, Any], path: list[str]) -> dict[str, Any]:
    """The dict at ``path`` in ``config`` (empty where there is none)."""
    node: Any = config
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _off(value: Any) -> bool:
    """Null, false, 0 or empty: a setting that is off (a string, even empty, names something)."""
    return value is None or (not value and isinstance(value, bool | int | float | dict | list))


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{dotted key: value}`` of every leaf of a nested dict (an empty dict is a leaf)."""
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    return {
        k: v for key, value in node.items() for k, v in _leaves(value, f"{prefix}.{key}" if prefix else key).items()
    }


def _may_change(key: str) -> bool:
    parts = key.split(".")
    return any(key == allowed or key.startswith(f"{allowed}.") for allowed in MAY_CHANGE) or (
        parts[0] == "data" and parts[-1] in DATA_ACCESS
    )


def _new_root(saved: dict[str, Any], key: str) -> str:
    """The shortest prefix of ``key`` that ``saved`` lacks (or holds as null): what ``~`` removes."""
    parts, node = key.split("."), saved
    for depth, part in enumerate(parts, start=1):
        if not isinstance(node, dict) or node.get(part) is None:
            return ".".join(parts[:depth])
        node = node[part]
    return key


def _override_value(value: Any) -> str:
    """``value`` as a command-line override spells it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):  # a group's options, loss/penalties=[gp,r1]
        return f"[{','.join(map(_override_value, value))}]"
    return str(value)
