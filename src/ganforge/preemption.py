"""Stopping when a scheduler asks: checkpoint at the next batch boundary, exit, and requeue if asked.

Lightning turns SIGTERM into a stop after the current batch (a ``SIGTERMException``), when the
state is consistent; :class:`~ganforge.callbacks.GenStepCheckpoint` saves ``last.ckpt`` then.
The requeue signals — SIGUSR1 (SLURM's ``--signal``, Lightning's default) and SIGUSR2 (submitit's)
— stop the same way (they are forwarded as SIGTERM), and the requeue happens once the checkpoint
is on disk, not from inside the signal handler in the middle of an optimizer step (where
Lightning's own SLURM handler would save): through the handler that was installed before (submitit
requeues its job), else ``scontrol requeue`` of the SLURM job. The requeued job finds the
checkpoint in its own folder and continues (:mod:`ganforge.runs`).
"""

from __future__ import annotations

import os
import signal
import subprocess
from types import FrameType, TracebackType
from typing import Any

REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


class Preemption:
    """Context around ``trainer.fit`` that records the requeue signal received, if any."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Preemption:
        for signum in REQUEUE_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._forward)
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            os.kill(os.getpid(), signal.SIGTERM)

    @property
    def stop_signal(self) -> str:
        """The name of the signal that stopped training."""
        return signal.Signals(self.signum or signal.SIGTERM).name

    def requeue(self, global_rank: int) -> str | None:
        """After a requeue signal: requeue the job (once, from rank 0); what was done, for the user."""
        if self.signum is None or global_rank != 0:
            return None
        previous = self._previous.get(self.signum)
        if callable(previous):
            previous(self.signum, None)  # submitit: requeues its job (and exits)
            return "requeued by the job's launcher"
        job = os.environ.get("SLURM_JOB_ID")
        if job is None:
            return None
        array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
        if array_job is not None:
            job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False)
        if done.returncode:
            return f"scontrol requeue {job} failed: {done.stderr.strip()}; resubmit the job to continue"
        return f"SLURM job {job} requeued"
