"""What the adversarial loop and its evaluations need under DDP, beyond what Lightning does.

Lightning averages gradients, shards nothing by itself here (the datamodule shards its data),
and writes logs and checkpoints from rank 0. Evaluations generate their samples in shards
(one per rank) that are gathered here, and the random latents differ per rank.

Inside a Hydra multirun, :class:`DDPStrategy` starts the other ranks of each job itself: Lightning's
launcher would re-run the command line, so every rank would start a sweep of its own.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.utilities.distributed import _set_num_threads_if_needed
from lightning.pytorch import Trainer
from lightning.pytorch import strategies as pl_strategies
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher
from omegaconf import OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ganforge.errors import ConfigError
from ganforge.generation import shard_range

log = logging.getLogger(__name__)

#: What the other ranks of a multirun job train: the job's config with every value resolved.
RANK_CONFIG = "rank_config.yaml"
#: The program the other ranks run (any entry point's job config is a ganforge-train config).
RANK_PROGRAM = "ganforge.train"
#: The launcher's environment for the ranks; a job restores it so that the next job starts afresh.
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def gather_shards(trainer: Trainer, shard: torch.Tensor, n: int) -> torch.Tensor:
    """The rows of all ranks' shards of ``n`` items (:func:`~ganforge.generation.shard_range`), in rank order.

    ``all_gather`` needs equal shapes, so shards are padded to the largest and cut back after.
    """
    world_size = trainer.world_size
    if world_size == 1:
        return shard
    per_rank = len(shard_range(n, 0, world_size))
    padded = torch.zeros(per_rank, *shard.shape[1:], dtype=shard.dtype, device=shard.device)
    padded[: len(shard)] = shard
    gathered = trainer.strategy.all_gather(padded)  # (world_size, per_rank, ...)
    return torch.cat([gathered[rank, : len(shard_range(n, rank, world_size))] for rank in range(world_size)])


def broadcast_buffers(module: nn.Module, trainer: Trainer) -> None:
    """Give every rank rank 0's buffers of ``module`` (BatchNorm statistics, spectral-norm vectors).

    DDP broadcasts rank 0's buffers when it wraps the module, but every training step updates them
    from each rank's own batch (Lightning's manual optimization skips DDP's broadcast before each
    forward pass); an evaluation would otherwise sample from generators that differ slightly across
    ranks (and from the one rank 0 checkpoints).
    """
    if trainer.world_size > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def per_rank_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    """The buffers of ``module``'s submodules that set ``per_rank = True``, by qualified name: state each DDP
    rank keeps its own of (CycleGAN's image pools hold the rank's own fakes)."""
    return {
        name: buffer
        for prefix, submodule in module.named_modules()
        if getattr(submodule, "per_rank", False)
        for name, buffer in submodule.named_buffers(prefix=prefix)
    }


def keep_per_rank(module: nn.Module) -> None:
    """Leave :func:`per_rank_buffers` out of DDP's broadcasts of rank 0's buffers, which would give every rank
    rank 0's copy: the one when DDP wraps ``module`` (after a resumed rank has loaded its own) and those before
    forward passes (which Lightning skips under manual optimization today). Torch's documented workaround until
    DDP has a public API for it (pytorch/pytorch#43690); to be called before DDP wraps ``module``."""
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, list(per_rank_buffers(module)))


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class DDPStrategy(pl_strategies.DDPStrategy):
    """Lightning's DDP strategy, whose ranks join the multirun job that starts them.

    Lightning's own launcher re-runs the command line for ranks 1..N-1; in a multirun
    (``-m ...``, ``hparams_search=optuna``) that runs the sweep again in every rank. Here a job
    starts its ranks with its own config instead (:class:`JobLauncher`). Single runs, ranks
    started by SLURM or torchrun, and ``start_method=spawn`` behave as in Lightning.
    """

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        assert self.cluster_environment is not None
        if not isinstance(self._launcher, _SubprocessScriptLauncher) or not _in_multirun():
            return
        if self.cluster_environment.creates_processes_externally:
            return
        if self.num_nodes > 1:
            raise ConfigError(
                f"trainer.num_nodes={self.num_nodes} in a multirun needs its ranks started on every node by a "
                "scheduler: use launcher=slurm (or torchrun), or run each job on its own"
            )
        if HydraConfig.get().output_subdir is None:
            raise ConfigError(
                "trainer=ddp in a multirun starts each job's ranks from the job's saved config, but "
                "hydra.output_subdir=null saves none; keep hydra.output_subdir, or use trainer=ddp_spawn or "
                "launcher=slurm"
            )
        self._launcher = JobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)


class JobLauncher(_SubprocessScriptLauncher):
    """Starts ranks 1..N-1 of a multirun job as ``python -m ganforge.train`` on the job's resolved config.

    The config is resolved here, in the job, so that what depends on the job (its output folder,
    W&B name, group and tags, ``${now:}``) is the same in every rank; the ranks run it as a single
    run (``hydra.mode=RUN``), so they neither sweep nor report to a sweeper. When the job ends, its
    ranks are waited for (or stopped, after an error), its process group is closed and the
    launcher's environment restored, so that the next job of the sweep starts its own ranks.
    """

    #: Seconds a job waits for its ranks to exit before stopping them.
    exit_timeout = 60.0

    def launch(self, function: Callable, *args: Any, trainer: Trainer | None = None, **kwargs: Any) -> Any:
        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        saved_env = {key: os.environ.get(key) for key in DDP_ENV}
        observer: RankObserver | None = None
        try:
            self._call_children_scripts()
            observer = RankObserver(self.procs)
            observer.start()
            _set_num_threads_if_needed(num_processes=self.num_processes)
            result = function(*args, **kwargs)
        except BaseException:
            if observer is not None:
                observer.stop()
            self._end_ranks(timeout=10.0)
            raise
        else:
            assert observer is not None
            observer.stop()
            stopped = self._end_ranks(timeout=self.exit_timeout)
            failed = {rank: proc.returncode for rank, proc in enumerate(self.procs, 1) if proc.returncode}
            failed = {rank: code for rank, code in failed.items() if rank not in stopped}
            if failed:
                raise RuntimeError(f"ranks of this job exited with an error (rank: exit code): {failed}")
            return result
        finally:
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        os.environ["MASTER_ADDR"] = self.cluster_environment.main_address
        os.environ["MASTER_PORT"] = str(self.cluster_environment.main_port)
        os.environ["NODE_RANK"] = str(self.cluster_environment.node_rank())
        os.environ["LOCAL_RANK"] = str(self.cluster_environment.local_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        config = write_rank_config()
        for local_rank in range(1, self.num_processes):
            env = os.environ | {"LOCAL_RANK": str(local_rank)}
            if "PL_GLOBAL_SEED" not in os.environ:
                env.pop("PL_GLOBAL_SEED", None)
            self.procs.append(subprocess.Popen(rank_command(config, local_rank), env=env, cwd=os.getcwd()))

    def _end_ranks(self, timeout: float) -> set[int]:
        """Wait up to ``timeout`` seconds for the ranks to exit, then kill those left; the ranks killed."""
        deadline = time.monotonic() + timeout
        stopped = set()
        for rank, proc in enumerate(self.procs, 1):
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                log.warning(f"rank {rank} of this job did not exit after {timeout:.0f} s; stopping it")
                proc.kill()
                proc.wait()
                stopped.add(rank)
        return stopped


class RankObserver(threading.Thread):
    """Ends this process when another rank of its job dies while it trains, as Lightning's launcher does.

    Rank 0 would otherwise wait in a collective until the process group's timeout (30 min). A rank
    failing with the same error as rank 0 (a diverged loss) gets ``grace`` seconds for rank 0's own
    error to reach the sweep, which then goes on with its next job.
    """

    def __init__(self, procs: list[subprocess.Popen], grace: float = 10.0, period: float = 1.0) -> None:
        super().__init__(daemon=True, name="ganforge-rank-observer")
        self.procs = procs
        self.grace = grace
        self.period = period
        self.stopped = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        failed_at: float | None = None
        while not self.stopped.wait(self.period):
            with self.lock:
                if self.stopped.is_set():
                    return
                codes = [proc.poll() for proc in self.procs]
                if not any(codes):
                    continue
                failed_at = failed_at or time.monotonic()
                if time.monotonic() - failed_at < self.grace:
                    continue
                code = next(code for code in codes if code)
                log.error(f"a rank of this job exited with code {code}; stopping the job's processes")
                for proc in self.procs:
                    if proc.poll() is None:
                        proc.kill()
                os.kill(os.getpid(), signal.SIGKILL)

    def stop(self) -> None:
        with self.lock:
            self.stopped.set()


def write_rank_config() -> Path:
    """The running job's config (``.hydra/config.yaml``), resolved in this job, saved beside it for its ranks.

    It also sets the ranks' Hydra run: a single run (no sweep, no sweeper) in the job's folder,
    writing no ``.hydra`` of its own (the job's stays as the job wrote it).
    """
    hydra_cfg = HydraConfig.get()
    output_dir = str(hydra_cfg.runtime.output_dir)
    folder = Path(output_dir) / str(hydra_cfg.output_subdir)
    if not (folder / "config.yaml").is_file():
        raise ConfigError(
            f"trainer=ddp in a multirun starts each job's ranks from the job's saved config, but {folder} holds "
            "no config.yaml; use trainer=ddp_spawn or launcher=slurm"
        )
    resolved = OmegaConf.to_container(OmegaConf.load(folder / "config.yaml"), resolve=True)
    assert isinstance(resolved, dict)
    rank_hydra = {"mode": "RUN", "run": {"dir": output_dir}, "output_subdir": None}
    path = folder / RANK_CONFIG
    OmegaConf.save(OmegaConf.create(_escape_interpolations(resolved | {"hydra": rank_hydra})), path)
    return path


def _escape_interpolations(value: Any) -> Any:
    """Plain strings that read as ``${...}`` (resolved values, paths), escaped so the ranks read them as written."""
    if isinstance(value, dict):
        return {key: _escape_interpolations(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escape_interpolations(item) for item in value]
    if isinstance(value, str):
        return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)
    return value


def rank_command(config: Path, local_rank: int) -> list[str]:
    """The command line of rank ``local_rank`` of this job: ganforge-train on ``config``."""
    name = f"{HydraConfig.get().job.name}_rank{local_rank}"  # its log: <job folder>/<name>.log
    return [
        sys.executable, "-m", RANK_PROGRAM, "--config-path", str(config.parent), "--config-name", config.stem,
        f"hydra.job.name={name}",
    ]  # fmt: skip
