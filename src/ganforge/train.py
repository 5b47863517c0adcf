"""``ganforge-train``: compose the config, build data, GAN, loggers and callbacks, and fit."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import hydra
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from ganforge.config import build, build_module, load_checkpoint
from ganforge.errors import GanforgeError


def instantiate_group(blocks: DictConfig | None) -> list[Any]:
    """Instantiate a dict of named blocks (``callbacks``, ``logger``), skipping disabled (null) ones."""
    return [build(block) for block in (blocks or {}).values() if block]


def train(cfg: DictConfig) -> dict[str, float]:
    """Train the configured GAN; returns the final logged metrics (what sweeps optimize)."""
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
    """Print a user error (bad data_dir, checkpoint, divergence) as one message, not a traceback."""

    def run(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except GanforgeError as err:
            print(f"{name}: error: {err}", file=sys.stderr)
            sys.exit(1)

    return run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = report_errors(train, "ganforge-train")(cfg)
    optimized = cfg.get("optimized_metric")
    return metrics.get(optimized) if optimized else None


if __name__ == "__main__":
    main()
