"""``ganforge-train``: compose the config, build data, GAN, loggers and callbacks, and fit."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from ganforge.callbacks.budget import WallClockBudget, parse_max_time, run_start
from ganforge.config import build, build_module, check_weights, load_checkpoint
from ganforge.errors import CheckpointError, ConfigError, GanforgeError, Preempted
from ganforge.preemption import Preemption
from ganforge.runs import LAST, changed_settings, group_choices, resume_checkpoint, truncate_metrics
from ganforge.validation import validate, validate_callbacks


def instantiate_group(blocks: DictConfig | None) -> list[Any]:
    """Instantiate a dict of named blocks (``callbacks``, ``logger``), skipping disabled (null) ones."""
    return [build(block) for block in (blocks or {}).values() if block]


def train(cfg: DictConfig) -> dict[str, float]:
    """Train the configured GAN; returns the final logged metrics (what sweeps optimize).

    A failure is also written to ``<run>/error.txt``, so a sweep's report can say which job failed and why.
    """
    try:
        return _fit(cfg)
    except Exception as err:
        out = Path(cfg.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "error.txt").write_text(f"{type(err).__name__}: {err}\n")
        raise


def _fit(cfg: DictConfig) -> dict[str, float]:
    started = run_start()
    validate(cfg)  # bad settings, refused before anything is built
    seed_everything(cfg.seed, workers=True)
    resumed = _checkpoint_to_resume(cfg)
    datamodule = build(cfg.data)
    module = build_module(cfg)
    ckpt_path = None
    if resumed is not None:
        ckpt_path, checkpoint = resumed
        check_weights(module, checkpoint["state_dict"])  # one clear line where Lightning's strict load has a traceback
    validate_callbacks(cfg, module.generator)
    module.save_hyperparameters(OmegaConf.to_container(cfg, resolve=True))  # -> loggers and checkpoints
    callbacks: list[Callback] = instantiate_group(cfg.callbacks)
    if cfg.get("max_time") is not None:  # after the evaluations, whose time it reserves
        callbacks.append(WallClockBudget(parse_max_time(cfg.max_time), started))
    loggers: list[Logger] = instantiate_group(cfg.logger)
    max_steps = cfg.max_gen_steps * module.optimizer_steps_per_gen_step if cfg.max_gen_steps else -1
    trainer: Trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers, max_steps=max_steps)
    stopped = False
    with Preemption() as preemption:
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SIGTERMException:  # raised between batches; GenStepCheckpoint saved last.ckpt
            stopped = True
        finally:
            if any(isinstance(logger, WandbLogger) for logger in loggers):
                import wandb

                wandb.finish()  # also after an error, so a multirun never waits on a dangling run
    if stopped:
        requeued = preemption.requeue(trainer.global_rank)
        again = (
            "the requeued job continues by itself" if requeued else "continue with the same command and ckpt_path=last"
        )
        raise Preempted(
            f"stopped by {preemption.stop_signal} at generator step {module.generator_steps}; checkpoint saved in "
            f"{Path(cfg.paths.output_dir) / 'checkpoints'}; {requeued + '; ' if requeued else ''}{again}",
            preemption.signum or 15,
        )
    return {name: float(value) for name, value in trainer.callback_metrics.items()}


def _checkpoint_to_resume(cfg: DictConfig) -> tuple[str, dict[str, Any]] | None:
    """The checkpoint this run starts from (:func:`ganforge.runs.resume_checkpoint`) and its contents, checked
    before anything is built.

    A run continued in its own folder must keep the settings it was trained with, and its
    ``metrics.csv`` loses the rows logged after the checkpoint (they are logged again).
    """
    output_dir = Path(cfg.paths.output_dir)
    ckpt = resume_checkpoint(cfg.ckpt_path, output_dir)
    if ckpt is None:
        if cfg.ckpt_path == LAST:
            raise CheckpointError(
                f"ckpt_path=last: no run of task {cfg.task_name!r} under {output_dir.parent} holds a checkpoint; "
                "train one first (same settings, without ckpt_path), or pass a checkpoint file as ckpt_path=PATH"
            )
        return None
    checkpoint = load_checkpoint(ckpt)  # fail early and clearly on a bad or unsafe (pickled-object) file
    if ckpt.parent.parent.resolve() == output_dir.resolve():  # continuing in place
        changed = changed_settings(
            checkpoint["hyper_parameters"],
            cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)),
            group_choices(output_dir),
            HydraConfig.get().runtime.choices if HydraConfig.initialized() else None,
        )
        if changed:
            raise ConfigError(
                f"{output_dir} was trained with other settings; continue it with the same ones: add "
                f"{' '.join(changed[:8])}{' ...' if len(changed) > 8 else ''} (or start a new run: no ckpt_path=last)"
            )
        last_step = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"]
        rank_zero_only(truncate_metrics)(output_dir / "csv" / "metrics.csv", last_step)  # DDP ranks run this too: once
    return str(ckpt), checkpoint


def report_errors(task: Callable[[DictConfig], Any], name: str) -> Callable[[DictConfig], Any]:
    """Print a user error (bad data_dir, checkpoint, divergence) as one message, not a traceback.

    In a multirun the error is printed and passed on: Hydra marks that job failed, runs the
    others, and names the failure when the sweep ends (an exit here would end the whole sweep).
    """

    def run(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except Preempted as err:  # ends a multirun too: the whole process was asked to stop
            print(f"{name}: {err}", file=sys.stderr)
            sys.exit(err.exit_code)
        except GanforgeError as err:
            print(f"{name}: error: {err}", file=sys.stderr)
            if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
                raise
            sys.exit(1)

    return run


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value of ``optimized_metric`` (what a sweeper such as Optuna minimizes), None when unset."""
    key = cfg.get("optimized_metric")
    if not key:
        return None
    if key not in metrics:
        raise ConfigError(
            f"optimized_metric={key!r} was not logged by this run; logged: {', '.join(sorted(metrics))}. "
            "Pick one of those (evaluations log metrics/fid, metrics/kid, mode/high_quality, ...)"
        )
    return metrics[key]


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return report_errors(lambda c: optimized_value(c, train(c)), "ganforge-train")(cfg)


if __name__ == "__main__":
    main()
