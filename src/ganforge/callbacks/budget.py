"""``max_time``: a wall-clock budget for the whole run, its end included.

Lightning's ``trainer.max_time`` stops the training loop at the time given, and then the final evaluations, the
last checkpoints and ``metrics.json`` still come, minutes late on a CPU. :class:`WallClockBudget` stops training
early enough for them: after every batch it compares the time left with what the end of the run takes, measured
on this run (every evaluation, grid and a checkpoint write once at the first generator step, then the longest
of each).
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from typing import Any

import psutil
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from ganforge.callbacks.checkpoint import GenStepCheckpoint
from ganforge.callbacks.evaluation import log_metrics
from ganforge.callbacks.schedule import EveryNGenSteps, Timed

log = logging.getLogger(__name__)

#: Seconds the process needs after the last callback: Lightning's teardown, closing the loggers (a W&B offline
#: run is finished and written), the interpreter's exit. Measured 2-3 s, once 6 s, on the 2-core CPU machine with
#: both cores busy (mostly the interpreter's finalization of torch and its other modules); it cannot be measured
#: before it happens.
EXIT_ALLOWANCE_S = 5.0
#: Batches whose longest time stands for the next batch's (a window, so that the slow first batches drop out).
BATCH_WINDOW = 50


def parse_max_time(value: Any) -> float:
    """Seconds of a budget given as ``HH:MM:SS``, ``DD:HH:MM:SS`` or a number of seconds; ValueError otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = re.fullmatch(r"(?:(\d+):)?(\d+):([0-5]\d):([0-5]\d)", str(value).strip())
        if match is None:
            raise ValueError(f"not a duration: {value!r}")
        days, hours, minutes, secs = (int(part or 0) for part in match.groups())
        seconds = float(((days * 24 + hours) * 60 + minutes) * 60 + secs)
    if not seconds > 0:
        raise ValueError(f"not a positive duration: {value!r}")
    return seconds


def run_start() -> float:
    """When a run's budget starts (seconds since the epoch): its process's start, so that imports and set-up count;
    in a multirun, whose process runs one job after another, now (the job's start)."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return time.time()
    return psutil.Process().create_time()


class WallClockBudget(Callback):
    """Stops training when the time left before ``started + max_time`` no longer covers one more batch and the end
    of the run: every :class:`~ganforge.callbacks.schedule.EveryNGenSteps` callback once more (its longest run so
    far: evaluations, grids), the checkpoints written at the end (and one due at this batch) at the longest write so
    far, and :data:`EXIT_ALLOWANCE_S`. What has not been timed yet is done once at the first generator step (each
    evaluation and grid, a ``last.ckpt`` write), so the estimate exists before it is needed. Under DDP rank 0's
    decision is broadcast, as every rank must stop at the same batch.

    When it stops training it logs ``budget/remaining_s`` (time left at the stop) and ``budget/reserve_s`` (what
    the end was estimated to take) and says so in one line.
    """

    def __init__(self, max_time: float, started: float, exit_allowance: float = EXIT_ALLOWANCE_S) -> None:
        self.max_time = max_time
        self.deadline = started + max_time
        self.exit_allowance = exit_allowance
        self.batch_times: deque[float] = deque(maxlen=BATCH_WINDOW)
        self._since = 0.0  # end of the previous batch (time.time())
        self._spent = 0.0  # timed callback work by then
        self.stopped_at: dict[str, float] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._since, self._spent = time.time(), self._timed_work(trainer)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        spent = self._timed_work(trainer)
        self.batch_times.append(time.time() - self._since - (spent - self._spent))
        if getattr(pl_module, "generator_steps", 0):
            self._time_the_untimed(trainer, pl_module)
        self._since, self._spent = time.time(), self._timed_work(trainer)
        remaining, reserve = self.deadline - self._since, self.reserve(_callbacks(trainer))
        if trainer.strategy.broadcast(remaining < reserve):
            trainer.should_stop = True
            self.stopped_at = {"budget/remaining_s": remaining, "budget/reserve_s": reserve}
            log_metrics(trainer, self.stopped_at)
            self._say(getattr(pl_module, "generator_steps", 0), remaining, reserve)

    def reserve(self, callbacks: list[Callback]) -> float:
        """Seconds to keep for one more batch and the end of the run, from what was measured so far."""
        runs = sum(c.longest_s or 0.0 for c in callbacks if isinstance(c, EveryNGenSteps))
        checkpoints = [c for c in callbacks if isinstance(c, GenStepCheckpoint)]
        write = max((c.longest_s or 0.0 for c in checkpoints), default=0.0)
        writes = sum(c.saves_at_end for c in checkpoints) + bool(checkpoints)  # + one due at this batch
        return max(self.batch_times, default=0.0) + runs + writes * write + self.exit_allowance

    @staticmethod
    def _time_the_untimed(trainer: Trainer, pl_module: LightningModule) -> None:
        """Run each evaluation and grid that has not run yet, and write ``last.ckpt`` if no checkpoint was written:
        the reserve then rests on measurements from the first generator step on."""
        callbacks = _callbacks(trainer)
        for callback in callbacks:
            if isinstance(callback, EveryNGenSteps) and callback.longest_s is None:
                callback.maybe_run(trainer, pl_module)  # type: ignore[arg-type]  # a GANModule
        checkpoints = [c for c in callbacks if isinstance(c, GenStepCheckpoint)]
        writers = [c for c in checkpoints if c.save_last]
        if writers and all(c.longest_s is None for c in checkpoints):
            writers[0].write_last(trainer)

    @staticmethod
    def _timed_work(trainer: Trainer) -> float:
        return sum((c.spent_s for c in _callbacks(trainer) if isinstance(c, Timed)), 0.0)

    @rank_zero_only
    def _say(self, step: int, remaining: float, reserve: float) -> None:
        log.info(
            "stopped: max_time=%.0f s: training ended at generator step %d with %.1f s left, which the end of the run "
            "(final evaluations and grids, checkpoints, exit) needs: about %.1f s",
            self.max_time, step, remaining, reserve,
        )  # fmt: skip


def _callbacks(trainer: Trainer) -> list[Callback]:
    return trainer.callbacks  # type: ignore[attr-defined]  # set by the trainer's connector
