"""Fault injection: kill training at random moments, continue it each time, compare with a run never killed.

A reference run trains ``--gen-steps`` generator steps uninterrupted. The same run is then started
and killed again and again, in turn by SIGTERM at a random moment (it should checkpoint and exit
143), SIGKILL at a random moment, and SIGKILL while a checkpoint is being written; after every fault
``ganforge-train ckpt_path=last`` continues it. After each fault every checkpoint on disk must load
and no partial file may remain once the run starts again; at the end the weights, EMA and optimizer
states must equal the reference bit for bit, and every row of ``metrics.csv`` the reference's. Rows
can be lost in one place only: Lightning writes a batch's row after that batch's checkpoint, so a
kill between the two loses the row (the continued run starts after that batch); they are counted.

Checkpoint writes are slowed down (the file is written in two halves with a pause between) so
that a kill can land inside one; the writes themselves are ganforge's (``AtomicCheckpointIO``).

    .venv/bin/python benchmarks/fault_injection.py --faults 30 --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
#: Two D steps per G step: stops also fall between the D steps of one G step.
N_CRITIC = 2
#: A tiny Fashion-MNIST DCGAN with frequent checkpoints and no evaluation: seconds per run.
TINY = [
    "model.generator.width=8",
    "model.discriminator.width=8",
    "data.batch_size=16",
    "logger=csv",
    "~callbacks.progress_bar",
    "~callbacks.image_metrics",
    "~callbacks.best_checkpoint",
    "~callbacks.samples",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=5",
    f"n_critic={N_CRITIC}",
]
KINDS = ("SIGTERM", "SIGKILL", "SIGKILL during a checkpoint write")
#: How long the slowed-down checkpoint write pauses half way.
WRITE_PAUSE_S = 0.3


def slow_checkpoint_writes() -> None:
    """Make every checkpoint write pause half way, so that a kill can land inside it."""
    from lightning.fabric.plugins.io import torch_io

    def write_in_two_halves(checkpoint: dict[str, Any], filepath: Any) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
        with open(filepath, "wb") as file:
            file.write(data[: len(data) // 2])
            file.flush()
            time.sleep(WRITE_PAUSE_S)
            file.write(data[len(data) // 2 :])

    torch_io._atomic_save = write_in_two_halves


def worker(overrides: list[str]) -> None:
    """Run ``ganforge-train`` in this process, with slow checkpoint writes."""
    slow_checkpoint_writes()
    from ganforge.cli import train

    sys.argv = ["ganforge-train", *overrides]
    train()


@dataclass
class Campaign:
    """Counts for the reliability table."""

    faults: Counter[str] = field(default_factory=Counter)
    starts: int = 0
    continued: int = 0
    checkpoints_checked: int = 0
    weights_exact: bool = False
    #: Rows of the reference's metrics.csv missing from the continued run's: each the row of a batch whose
    #: checkpoint was complete when the kill came, before Lightning wrote that batch's row (it logs after
    #: the checkpoint callbacks); the continued run starts after that batch, so the row is not logged again.
    rows_lost: list[int] = field(default_factory=list)
    rows_expected: int = 0
    #: A row that differs from the reference's, or that the reference does not have, if any.
    metrics_difference: str | None = None

    @property
    def exact(self) -> bool:
        return self.weights_exact and self.metrics_difference is None


def start(overrides: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--", *overrides]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def checkpoints(log_dir: Path, pattern: str = "*.ckpt") -> list[Path]:
    return sorted(log_dir.glob(f"*/runs/*/checkpoints/{pattern}"))


def wait_for(log_dir: Path, process: subprocess.Popen[bytes], since: float, suffix: str) -> bool:
    """Wait until a checkpoint file ending in ``suffix`` is written after ``since`` (``.partial``: a write
    in progress; ``.ckpt``: training is under way); False if the process ended first."""
    while process.poll() is None:
        for path in checkpoints(log_dir, f"*{suffix}"):
            with contextlib.suppress(FileNotFoundError):  # renamed in the meantime
                if path.stat().st_mtime > since:
                    return True
        time.sleep(0.01)
    return False


def check_on_disk(log_dir: Path) -> int:
    """Every finished checkpoint loads with ganforge's safe loader; returns how many there are."""
    from ganforge.config import load_checkpoint

    done = checkpoints(log_dir)
    for path in done:
        load_checkpoint(path)
    return len(done)


def metrics_rows(run: Path) -> list[dict[str, str]]:
    with (run / "csv" / "metrics.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def same_state(a: Path, b: Path) -> bool:
    from ganforge.config import load_checkpoint

    one, two = load_checkpoint(a), load_checkpoint(b)
    weights = one["state_dict"].keys() == two["state_dict"].keys() and all(
        torch.equal(value, two["state_dict"][key]) for key, value in one["state_dict"].items()
    )
    optimizers = all(
        torch.equal(tensor, other["state"][slot][name])
        for mine, other in zip(one["optimizer_states"], two["optimizer_states"], strict=True)
        for slot, state in mine["state"].items()
        for name, tensor in state.items()
    )
    return weights and optimizers and one["ganforge"]["generator_steps"] == two["ganforge"]["generator_steps"]


def run_campaign(work: Path, faults: int, seed: int, gen_steps: int, every: int) -> Campaign:
    """Train once uninterrupted, then with ``faults`` faults; returns the counts (``exact``: bitwise equal)."""
    rng = random.Random(seed)
    common = [*TINY, f"max_gen_steps={gen_steps}", f"callbacks.checkpoint.every_n_gen_steps={every}"]
    reference = work / "reference"
    began = time.monotonic()
    done = start([*common, f"hydra.run.dir={reference}"], work)
    if done.wait() != 0:
        raise RuntimeError(f"the reference run failed: {done.stderr.read().decode()[-2000:] if done.stderr else ''}")
    interval = (time.monotonic() - began) * every / gen_steps  # an upper bound: start-up included
    log_dir = work / "logs"
    campaign = Campaign()
    while True:
        for run in log_dir.glob("*/runs/*"):  # killed before its first checkpoint: it starts again from scratch
            if not any((run / "checkpoints").glob("*.ckpt")):
                shutil.rmtree(run)
        resumable = bool(checkpoints(log_dir))
        since = time.time()
        process = start([*common, f"paths.log_dir={log_dir}", *(["ckpt_path=last"] if resumable else [])], work)
        campaign.starts += 1
        campaign.continued += int(resumable)
        kind = KINDS[sum(campaign.faults.values()) % len(KINDS)]  # in turn; the moments are random
        if sum(campaign.faults.values()) < faults:
            if kind == KINDS[2]:
                hit = wait_for(log_dir, process, since, ".partial")
            else:  # a random moment of a checkpoint interval, once training is under way
                hit = wait_for(log_dir, process, since, ".ckpt")
                time.sleep(rng.uniform(0.0, interval))
            if hit and process.poll() is None:
                process.send_signal(signal.SIGTERM if kind == "SIGTERM" else signal.SIGKILL)
                campaign.faults[kind] += 1
        _, stderr = process.communicate()
        if process.returncode == 0:
            break
        if process.returncode not in (-signal.SIGKILL, 128 + signal.SIGTERM, -signal.SIGTERM):  # -: before fit
            raise RuntimeError(f"{kind} gave exit code {process.returncode}: {stderr.decode()[-2000:]}")
        campaign.checkpoints_checked += check_on_disk(log_dir)
    runs = sorted(log_dir.glob("*/runs/*"))
    if len(runs) != 1:
        raise RuntimeError(f"the continued run is spread over {len(runs)} folders: {runs}")
    if checkpoints(log_dir, "*.partial"):
        raise RuntimeError("a partial checkpoint file was left behind")
    final, expected = runs[0] / "checkpoints" / "last.ckpt", reference / "checkpoints" / "last.ckpt"
    campaign.weights_exact = same_state(final, expected)
    rows, expected_rows = metrics_rows(runs[0]), metrics_rows(reference)
    campaign.rows_expected = len(expected_rows)
    campaign.rows_lost = [int(row["step"]) for row in expected_rows if row not in rows]
    kept = [row for row in expected_rows if row in rows]
    if rows != kept or any(step % every for step in campaign.rows_lost):  # steps are generator steps
        differ = next((row for row in rows if row not in expected_rows), None)
        campaign.metrics_difference = (
            f"{len(rows)} rows, reference {len(expected_rows)}; not in the reference: {differ}"
        )
    return campaign


def table(campaign: Campaign, command: str) -> str:
    kinds = ", ".join(f"{count} × {kind}" for kind, count in sorted(campaign.faults.items()))
    return "\n".join(
        [
            "| faults injected | starts | continuations (`ckpt_path=last`) | checkpoints loaded after a fault "
            "| final weights, EMA, optimizers equal to the uninterrupted run | metrics.csv rows equal "
            "| rows lost (logged after a completed checkpoint) |",
            "|---|---|---|---|---|---|---|",
            f"| {sum(campaign.faults.values())} ({kinds}) | {campaign.starts} | {campaign.continued} "
            f"| {campaign.checkpoints_checked} | {'yes, bitwise' if campaign.weights_exact else 'NO'} "
            f"| {'yes' if campaign.metrics_difference is None else 'NO'} "
            f"| {len(campaign.rows_lost)} of {campaign.rows_expected} (steps {campaign.rows_lost or '-'}) |",
            *([f"\nmetrics.csv differs: {campaign.metrics_difference}"] if campaign.metrics_difference else []),
            "",
            f"Command: `{command}`",
        ]
    )


def main() -> None:
    if "--worker" in sys.argv:
        worker(sys.argv[sys.argv.index("--") + 1 :])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gen-steps", type=int, default=150, help="of the run; each fault needs one --every more")
    parser.add_argument("--every", type=int, default=10, help="checkpoint every N generator steps")
    parser.add_argument("--work", type=Path, help="an empty folder for the runs (default: a new one in outputs/)")
    args = parser.parse_args()
    if args.work is None:
        (ROOT / "outputs").mkdir(exist_ok=True)
        args.work = Path(tempfile.mkdtemp(prefix="fault_injection_", dir=ROOT / "outputs"))
    args.work.mkdir(parents=True, exist_ok=True)
    campaign = run_campaign(args.work, args.faults, args.seed, args.gen_steps, args.every)
    print(table(campaign, "python benchmarks/fault_injection.py " + " ".join(sys.argv[1:])))
    if not campaign.exact:
        sys.exit(1)


if __name__ == "__main__":
    main()
