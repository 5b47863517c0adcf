"""A callback that acts on a generator-step schedule, and the timing of callbacks' work."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from lightning.pytorch import Callback, LightningModule, Trainer

from ganforge.errors import ConfigError

if TYPE_CHECKING:
    from ganforge.module import GANModule


def datamodule_with(trainer: Trainer, attribute: str, refusal: str) -> Any:
    """The run's datamodule, which a callback needs to have ``attribute``; else a ConfigError: ``refusal``,
    formatted with the data's ``name``."""
    datamodule = trainer.datamodule  # type: ignore[attr-defined]  # set by fit
    if not hasattr(datamodule, attribute):
        raise ConfigError(refusal.format(name=getattr(datamodule, "name", type(datamodule).__name__)))
    return datamodule


class Timed:
    """Times a callback's work (an evaluation, a grid, a checkpoint write): the longest time one piece took and the
    total. A wall-clock budget (``max_time``, :class:`~ganforge.callbacks.budget.WallClockBudget`) reserves the
    longest for the end of the run and takes the total off the time of the batches."""

    longest_s: float | None = None  # None: not done yet
    spent_s: float = 0.0

    @contextmanager
    def timed(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.longest_s = max(self.longest_s or 0.0, elapsed)
            self.spent_s += elapsed


class EveryNGenSteps(Timed, Callback):
    """Calls :meth:`run` every ``every_n_gen_steps`` generator steps (not before the first) and
    once more when training ends (unless that step was just handled), so the final state is
    always covered. Each run is timed (:class:`Timed`)."""

    def __init__(self, every_n_gen_steps: int) -> None:
        if every_n_gen_steps < 1:
            raise ConfigError(
                f"{type(self).__name__}: every_n_gen_steps must be >= 1, got {every_n_gen_steps}; set "
                "callbacks.<name>.every_n_gen_steps (for evaluations metrics.every_n_gen_steps) to a number of "
                "generator steps, or remove the callback with '~callbacks.<name>'"
            )
        self.every_n_gen_steps = every_n_gen_steps
        self._last_step = -1

    def run(self, trainer: Trainer, pl_module: GANModule) -> None:
        raise NotImplementedError

    def maybe_run(self, trainer: Trainer, pl_module: GANModule) -> None:
        """:meth:`run`, unless it already ran at this generator step."""
        step = pl_module.generator_steps
        if step != self._last_step:
            self._last_step = step
            with self.timed():
                self.run(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        gan = cast("GANModule", pl_module)
        step = gan.generator_steps
        if step and step % self.every_n_gen_steps == 0:  # step 0: the D steps before the first G step
            self.maybe_run(trainer, gan)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.maybe_run(trainer, cast("GANModule", pl_module))
