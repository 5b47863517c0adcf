"""``ganforge-train``: compose the config, build data, GAN, loggers and callbacks, and fit."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from ganforge.config import build, build_module, load_checkpoint
from ganforge.errors import ConfigError, GanforgeError


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
    seed_everything(cfg.seed, workers=True)
    if cfg.ckpt_path:
        load_checkpoint(cfg.ckpt_path)  # fail early and clearly on a bad file
    datamodule = build(cfg.data)
    module = build_module(cfg)
    module.save_hyperparameters(OmegaConf.to_container(cfg, resolve=True))  # -> loggers and checkpoints
    callbacks: list[Callback] = instantiate_group(cfg.callbacks)
    loggers: list[Logger] = instantiate_group(cfg.logger)
    max_steps = cfg.max_gen_steps * (cfg.n_critic + 1) if cfg.max_gen_steps else -1  # Lightning counts D and G steps
    trainer: Trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers, max_steps=max_steps)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    finally:
        if any(isinstance(logger, WandbLogger) for logger in loggers):
            import wandb

            wandb.finish()  # also after an error, so a multirun never waits on a dangling run
    return {name: float(value) for name, value in trainer.callback_metrics.items()}


def report_errors(task: Callable[[DictConfig], Any], name: str) -> Callable[[DictConfig], Any]:
    """Print a user error (bad data_dir, checkpoint, divergence) as one message, not a traceback.

    In a multirun the error is printed and passed on: Hydra marks that job failed, runs the
    others, and names the failure when the sweep ends (an exit here would end the whole sweep).
    """

    def run(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
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
