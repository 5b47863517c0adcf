"""Progress in generator steps: a rich bar on a terminal, plain lines in ``train.log`` and wherever output goes to a
file, why training stopped, and the run's last line.

Lightning counts batches per epoch and optimizer steps (D's and G's); a run is measured in generator steps against
``max_gen_steps`` (and the time against ``max_time``), which is what these speak in.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar, Timer
from lightning.pytorch.callbacks.progress.rich_progress import (
    BatchesProcessedColumn,
    CustomBarColumn,
    CustomTimeColumn,
)
from lightning.pytorch.utilities import rank_zero_only
from rich import get_console, reconfigure
from rich.progress import Task, TextColumn
from rich.text import Text

from ganforge.callbacks.budget import WallClockBudget
from ganforge.callbacks.schedule import EveryNGenSteps

if TYPE_CHECKING:
    from ganforge.module import GANModule

#: Progress lines, why training stopped and the run's last line. Hydra's job logging (conf/hydra/job_logging/
#: ganforge.yaml) writes them to the run's ``train.log`` only; :func:`say` prints them as well.
log = logging.getLogger("ganforge.progress")
#: What the bar and the lines show of the logged values, where logged: the losses and the last evaluation's headline.
SHOWN = ("loss/d", "loss/g", "metrics/fid", "metrics/modes", "mode/modes", "mode/high_quality")
#: The logged values that a run's last line reports (their ``*_std`` left out); the losses where none exist.
EVALUATIONS = ("metrics/", "mode/")
#: Lightning's stop messages: its ``max_steps`` counts D and G optimizer steps (100 for ``max_gen_steps=50``).
LIGHTNING_STOPS = ("`Trainer.fit` stopped: `max_steps=", "`Trainer.fit` stopped: `max_epochs=")


@rank_zero_only
def say(line: str, console: bool = True) -> None:
    """Write ``line`` to the run's ``train.log`` and, with ``console``, print it (flushed: stdout may be a file)."""
    log.info(line)
    if console:
        print(line, flush=True)


def max_gen_steps(trainer: Trainer) -> int | None:
    """The generator steps this run trains for: ``max_gen_steps`` (from which ``ganforge-train`` sets Lightning's
    ``max_steps``, in optimizer steps), or what ``trainer.max_epochs`` allows, whichever is less; None when neither
    bounds it."""
    module = cast("GANModule", trainer.lightning_module)
    lengths = []
    if trainer.max_steps > 0:
        lengths.append(trainer.max_steps // module.optimizer_steps_per_gen_step)
    if (trainer.max_epochs or -1) > 0 and math.isfinite(trainer.num_training_batches):
        lengths.append(cast(int, trainer.max_epochs) * int(trainer.num_training_batches) // module.batches_per_gen_step)
    return min(lengths, default=None)


class RunClock:
    """When the run ends: its generator steps to go at the pace since training (re)started, evaluations included,
    or the end of the ``max_time`` budget (or of Lightning's own ``trainer.max_time``) if that comes first."""

    def __init__(self) -> None:
        self.started: tuple[float, int] = (time.time(), 0)

    def start(self, pl_module: LightningModule) -> None:
        self.started = (time.time(), cast("GANModule", pl_module).generator_steps)

    def eta_s(self, trainer: Trainer, step: int) -> float | None:
        """Seconds until the end of training; None before there is a pace or a bound."""
        now, (since, first) = time.time(), self.started
        ends = []
        total = max_gen_steps(trainer)
        if total is not None and step > first:
            ends.append(max(total - step, 0) * (now - since) / (step - first))
        budgets = [c for c in _callbacks(trainer) if isinstance(c, WallClockBudget)]
        ends += [max(budget.deadline - now, 0.0) for budget in budgets]
        timers = [c.time_remaining() for c in _callbacks(trainer) if isinstance(c, Timer)]
        ends += [left for left in timers if left is not None]
        return min(ends, default=None)


def shown_values(trainer: Trainer) -> dict[str, str]:
    """The :data:`SHOWN` values logged so far, formatted."""
    return {key: f"{float(trainer.callback_metrics[key]):.4g}" for key in SHOWN if key in trainer.callback_metrics}


def duration(seconds: float | None) -> str:
    return "-:--:--" if seconds is None else str(timedelta(seconds=int(seconds)))


class RunTimeColumn(CustomTimeColumn):
    """Elapsed • the run's ETA (:class:`RunClock`, in the task's ``eta_s`` field), not rich's estimate for the task."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        return Text(f"{duration(elapsed)} • {duration(task.fields.get('eta_s'))}", style=self.style)


class GANProgressBar(RichProgressBar):
    """Lightning's rich bar over the whole run: generator steps against ``max_gen_steps`` (against nothing where only
    ``max_time`` bounds the run), elapsed time and ETA, images/s, the losses and the last FID.

    Rich draws a live bar only on a terminal (or in a notebook); elsewhere (output to a file: nohup, SLURM,
    ``> log``) it would print its final state only, so there the bar turns itself off and :class:`ProgressLog`
    prints lines instead.
    """

    def __init__(self, smoothing: float = 0.9, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.smoothing = smoothing
        self.clock = RunClock()
        self._rate: float | None = None
        self._last: tuple[float, int] | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        reconfigure(**self._console_kwargs)  # as Lightning does before drawing
        console = get_console()
        if not (console.is_terminal or console.is_jupyter):
            self.disable()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.clock.start(pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """One task for the run, started at the generator step it (re)starts from (Lightning's: one per epoch)."""
        if self.is_disabled or self.progress is None or self.train_progress_bar_id is not None:
            return
        total = max_gen_steps(trainer)
        self.train_progress_bar_id = self.progress.add_task(
            "gen_step",
            total=float("inf") if total is None else total,
            completed=cast("GANModule", pl_module).generator_steps,
        )
        self.refresh()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        module = cast("GANModule", pl_module)
        now, shown = time.perf_counter(), module.images_shown
        if self._last is not None and now > self._last[0]:
            rate = (shown - self._last[1]) / (now - self._last[0])
            self._rate = rate if self._rate is None else self.smoothing * self._rate + (1 - self.smoothing) * rate
        self._last = (now, shown)
        if self.is_disabled or self.progress is None:
            return
        if self.train_progress_bar_id is None:  # resumed mid-epoch: Lightning starts no epoch
            self.on_train_epoch_start(trainer, pl_module)
        assert self.train_progress_bar_id is not None
        step = module.generator_steps
        self.progress.update(self.train_progress_bar_id, completed=step, eta_s=self.clock.eta_s(trainer, step))
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def configure_columns(self, trainer: Trainer) -> list:
        theme = self.theme
        return [
            TextColumn("[progress.description]{task.description}"),
            CustomBarColumn(
                complete_style=theme.progress_bar,
                finished_style=theme.progress_bar_finished,
                pulse_style=theme.progress_bar_pulse,
            ),
            BatchesProcessedColumn(style=theme.batch_progress),
            RunTimeColumn(style=theme.time),
        ]

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """Images/s and :data:`SHOWN` (Lightning's adds ``v_num``, the logger's version: not this run's concern)."""
        return {"img/s": f"{self._rate:.0f}" if self._rate else "-", **shown_values(trainer)}


class _LightningStop(logging.Filter):
    """Drops Lightning's stop messages (:data:`LIGHTNING_STOPS`): :class:`ProgressLog` says why in generator steps."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(LIGHTNING_STOPS)


class ProgressLog(EveryNGenSteps):
    """Every ``every_n_gen_steps`` generator steps and at the end, one plain line: ``gen_step 300/5000 (6%)``,
    images/s since the previous line, :data:`SHOWN` values, elapsed time and the run's ETA (:class:`RunClock`).
    Each line goes to the run's ``train.log`` and, where no progress bar is shown (output to a file, or
    ``trainer.enable_progress_bar=false``), to stdout.

    At the end it says why training stopped, ``stopped: max_gen_steps=5000 reached``, in place of Lightning's
    message, which counts optimizer steps (``max_steps=10000``); a ``max_time`` budget says so itself.
    """

    def __init__(self, every_n_gen_steps: int = 100) -> None:
        super().__init__(every_n_gen_steps)
        self.clock = RunClock()
        self._filter = _LightningStop()
        self._last: tuple[float, int] = (time.time(), 0)  # time and images shown at the previous line

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(self._filter)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        logging.getLogger("lightning.pytorch.utilities.rank_zero").removeFilter(self._filter)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.clock.start(pl_module)
        self._last = (time.time(), cast("GANModule", pl_module).images_shown)

    def run(self, trainer: Trainer, pl_module: GANModule) -> None:
        now, shown = time.time(), pl_module.images_shown
        rate = (shown - self._last[1]) / (now - self._last[0]) if now > self._last[0] else None
        self._last = (now, shown)
        step, total = pl_module.generator_steps, max_gen_steps(trainer)
        parts = [f"gen_step {step}/{total} ({100 * step / total:.0f}%)" if total else f"gen_step {step}"]
        parts.append(f"{rate:.0f} img/s" if rate is not None else "- img/s")
        parts += [f"{key} {value}" for key, value in shown_values(trainer).items()]
        parts.append(f"elapsed {duration(now - self.clock.started[0])}")
        parts.append(f"eta {duration(self.clock.eta_s(trainer, step))}")
        bar = trainer.progress_bar_callback  # Lightning's own bars have is_enabled; its base class does not
        say(" | ".join(parts), console=bar is None or not getattr(bar, "is_enabled", True))

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)  # the last step's line
        reason = stop_reason(trainer, cast("GANModule", pl_module))
        if reason is not None:
            say(reason)


def stop_reason(trainer: Trainer, pl_module: GANModule) -> str | None:
    """Why training stopped, in ``ganforge-train``'s settings; None where the callback that stopped it said so
    (:class:`~ganforge.callbacks.budget.WallClockBudget`)."""
    step = pl_module.generator_steps
    if any(isinstance(c, WallClockBudget) and c.stopped_at for c in _callbacks(trainer)):
        return None
    if fast := getattr(trainer, "fast_dev_run", 0):  # set in Trainer.__init__, unseen by its typing
        return f"stopped: trainer.fast_dev_run={fast} (debug=fdr) done"
    if trainer.max_steps > 0 and step >= (limit := trainer.max_steps // pl_module.optimizer_steps_per_gen_step):
        return f"stopped: max_gen_steps={limit} reached"
    if 0 < (trainer.max_epochs or -1) <= trainer.current_epoch:
        return f"stopped: trainer.max_epochs={trainer.max_epochs} reached at generator step {step}"
    return f"stopped at generator step {step}: a callback set trainer.should_stop (trainer.max_time, early stopping)"


def run_summary(output_dir: Path, gen_step: int, metrics: Mapping[str, float]) -> str:
    """The run's last line: its folder, its generator step, its final evaluation (FID first, the rest by name; else
    its losses) and the file that keeps them (``metrics.json``, ``mode_coverage.json`` or the CSV log)."""
    final = {k: v for k, v in metrics.items() if k.startswith(EVALUATIONS) and not k.endswith("_std")}
    final = final or {k: metrics[k] for k in ("loss/d", "loss/g") if k in metrics}
    kept = [output_dir / name for name in ("metrics.json", "mode_coverage.json", "csv/metrics.csv")]
    parts = [f"done: {_shown_path(output_dir)}", f"gen_step {gen_step}"]
    headline_first = sorted(final.items(), key=lambda item: (not item[0].endswith("/fid"), item[0]))
    parts += [", ".join(f"{key} {value:.4g}" for key, value in headline_first)] if final else []
    parts += [_shown_path(path) for path in kept if path.is_file()][:1]
    return " | ".join(parts)


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies under it (as ``outputs/...``), else absolute."""
    relative = os.path.relpath(path.resolve())
    return str(path.resolve()) if relative.startswith("..") else relative


def _callbacks(trainer: Trainer) -> list[Any]:
    return trainer.callbacks  # type: ignore[attr-defined]  # set by the trainer's connector
