"""``ganforge-train``: compose the config, build data, GAN, loggers and callbacks, and fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from ganforge.callbacks.budget import WallClockBudget, parse_max_time, run_start
from ganforge.callbacks.progress import run_summary, say
from ganforge.callbacks.summary import ModelSummary
from ganforge.cli import discard_start
from ganforge.config import build, build_module, check_weights, load_checkpoint
from ganforge.errors import CheckpointError, ConfigError, Preempted
from ganforge.loggers import drop_lightning_tips
from ganforge.module import GANModule
from ganforge.preemption import Preemption
from ganforge.runs import LAST, changed_settings, group_choices, resume_checkpoint, truncate_metrics
from ganforge.validation import validate, validate_callbacks


def instantiate_group(blocks: DictConfig | None) -> list[Any]:
    """Instantiate a dict of named blocks (``callbacks``, ``logger``), skipping disabled (null) ones."""
    return [build(block) for block in (blocks or {}).values() if block]


def train(cfg: DictConfig) -> dict[str, float]:
    """Train the configured GAN; returns the final logged metrics (what sweeps optimize).

    A start refused or failing before training (a bad setting or checkpoint, nets that cannot be built) writes into
    no run folder: what Hydra wrote for it is taken back (:func:`ganforge.cli.discard_start`), so a refused
    ``ckpt_path=last`` leaves the run it names as it was. A failure in training, and any failure of a sweep's job, is
    written to ``<run>/error.txt``, so a report can say which job failed and why.
    """
    try:
        start = _start(cfg)
    except Exception as err:
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            _record_failure(cfg, err)
        else:
            discard_start()
        raise
    try:
        return _fit(cfg, *start)
    except Exception as err:
        _record_failure(cfg, err)
        raise


def _record_failure(cfg: DictConfig, err: Exception) -> None:
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "error.txt").write_text(f"{type(err).__name__}: {err}\n")


def _start(cfg: DictConfig) -> tuple[Trainer, GANModule, Any, str | None, list[Logger]]:
    """What training needs, every check passed: trainer, module, datamodule, checkpoint to resume, loggers."""
    started = run_start()
    validate(cfg)  # bad settings, refused before anything is built
    resumed = _checkpoint_to_resume(cfg)
    seed_everything(cfg.seed, workers=True, verbose=False)  # its line would go into a continued run's train.log
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
    # Lightning counts batches; ganforge-train counts both settings in generator steps.
    log_every = cfg.trainer.get("log_every_n_steps", 50) * module.batches_per_gen_step  # 50: Lightning's default
    if cfg.trainer.get("enable_model_summary", True):  # ganforge's summary, in place of Lightning's
        callbacks.append(ModelSummary())
    drop_lightning_tips()
    # Lightning's fast_dev_run counts batches; debug=fdr means one generator step, which takes n_critic batches.
    fast_dev_run = {"fast_dev_run": module.batches_per_gen_step} if cfg.trainer.get("fast_dev_run") is True else {}
    trainer: Trainer = build(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers,
        max_steps=max_steps,
        log_every_n_steps=log_every,
        enable_model_summary=False,
        **fast_dev_run,
    )
    if resumed is not None and _in_place(Path(resumed[0]), Path(cfg.paths.output_dir)):
        # The rows logged after the checkpoint go (they are logged again); every check has passed.
        gen_step = resumed[1]["ganforge"]["generator_steps"]
        metrics_csv = Path(cfg.paths.output_dir) / "csv" / "metrics.csv"
        rank_zero_only(truncate_metrics)(metrics_csv, gen_step)  # DDP ranks run this too: once
    return trainer, module, datamodule, ckpt_path, loggers


def _fit(
    cfg: DictConfig, trainer: Trainer, module: GANModule, datamodule: Any, ckpt_path: str | None, loggers: list[Logger]
) -> dict[str, float]:
    (Path(cfg.paths.output_dir) / "error.txt").unlink(missing_ok=True)  # a continued run's earlier failure is over
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
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    say(run_summary(Path(cfg.paths.output_dir), module.generator_steps, metrics))  # where it went, whatever the logger
    return metrics


def _in_place(ckpt: Path, output_dir: Path) -> bool:
    """Whether ``ckpt`` is a checkpoint of the run in ``output_dir`` (which then continues in its own folder)."""
    return ckpt.parent.parent.resolve() == output_dir.resolve()


def _checkpoint_to_resume(cfg: DictConfig) -> tuple[str, dict[str, Any]] | None:
    """The checkpoint this run starts from (:func:`ganforge.runs.resume_checkpoint`) and its contents, checked
    before anything is built.

    A run continued in its own folder must keep the settings it was trained with.
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
    if _in_place(ckpt, output_dir):
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
    return str(ckpt), checkpoint


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


def run(cfg: DictConfig) -> float | None:
    """``ganforge-train`` (:func:`ganforge.cli.train`): train, and return ``optimized_metric`` to a sweeper."""
    return optimized_value(cfg, train(cfg))


if __name__ == "__main__":
    from ganforge.cli import train as main

    main()
