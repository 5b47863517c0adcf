"""Glue between Hydra configs and objects: resolvers, builders and checkpoint loading."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from ganforge.checkpoint_safety import check_config, unpickling_refusal
from ganforge.errors import CheckpointError, ConfigError, GanforgeError
from ganforge.module import GANModule
from ganforge.progressive import ProgressiveGANModule
from ganforge.runs import config_subdir, run_dir, task_name, wandb_run_id
from ganforge.sweeps import run_name, sweep_group, sweep_tags

#: The parts of a checkpoint's config that are ever built (the nets, the data, a game's players).
BUILT_FROM_CHECKPOINTS = ("model", "data", "game")
#: The packaged Hydra configs; ``conf/`` at the repository root links here.
CONFIG_MODULE = "ganforge.conf"


def wandb_offline() -> bool:
    """W&B runs offline unless the user chose a mode or configured an API key."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return False
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is None
    except (FileNotFoundError, netrc.NetrcParseError):
        return True


def domain_of(data: DictConfig) -> str | None:
    """The ``domain`` (domain-classifier name) of the images a run makes from the ``data`` config: its datamodule's,
    or for a datamodule built on others that of the one holding the targets (paired: ``base``; unpaired: domain B,
    ``base_b``, or ``base_a`` when both domains come from one dataset)."""
    base = next((data[key] for key in ("base", "base_b", "base_a") if data.get(key) is not None), data)
    return getattr(get_class(base._target_), "domain", None)


def classes_if(conditional: bool, num_classes: int | None) -> int | None:
    """The nets' ``num_classes``: the data's class count for a conditional model, None (unconditional) otherwise."""
    return num_classes if conditional else None


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("wandb_offline", wandb_offline, replace=True)
    OmegaConf.register_new_resolver("domain_of", domain_of, replace=True)
    OmegaConf.register_new_resolver("mul", lambda a, b: a * b, replace=True)
    OmegaConf.register_new_resolver("floordiv", lambda a, b: a // b, replace=True)
    OmegaConf.register_new_resolver("classes_if", classes_if, replace=True)
    OmegaConf.register_new_resolver("sweep_group", sweep_group, replace=True)
    OmegaConf.register_new_resolver("sweep_tags", sweep_tags, replace=True)
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("task_name", task_name, replace=True)
    OmegaConf.register_new_resolver("run_dir", run_dir, replace=True)
    OmegaConf.register_new_resolver("config_subdir", config_subdir, replace=True)
    OmegaConf.register_new_resolver("wandb_run_id", wandb_run_id, replace=True)


register_resolvers()


def build(node: Any, **kwargs: Any) -> Any:
    """Hydra's ``instantiate``, except that a user error (:class:`GanforgeError`) raised while building
    the object comes out as itself, so the entry points print its message instead of a traceback."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, GanforgeError):
            raise err.__cause__ from None
        raise


def build_module(cfg: DictConfig) -> GANModule:
    """The GANModule described by a composed training config.

    A conditional model on data without class labels is refused here, before any data is read.
    A model with a growth ``schedule`` (``model=progan``) becomes a :class:`ProgressiveGANModule`.
    """
    if cfg.model.get("conditional") and cfg.data.get("num_classes") is None:
        raise ConfigError(
            f"model.conditional=true needs class labels, but data {cfg.data._target_.rsplit('.', 1)[-1]} declares "
            "num_classes: null; use labelled data (e.g. data=fashion_mnist, mnist, cifar10), set "
            "data.num_classes=K if its labels are K classes, or train unconditionally (model.conditional=false)"
        )
    parts = dict(
        generator=build(cfg.model.generator),
        discriminator=build(cfg.model.discriminator),
        objective=build(cfg.loss.objective),
        penalties={name: build(block) for name, block in (cfg.loss.penalties or {}).items() if block},
        g_optimizer=build(cfg.optim.generator),
        d_optimizer=build(cfg.optim.discriminator),
        n_critic=cfg.n_critic,
        ema_decay=cfg.ema_decay,
        pack=cfg.model.get("pack", 1),
        scheduler=build(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
        augment=build(cfg.augment) if cfg.get("augment") else None,
        g_regularizers={name: build(block) for name, block in (cfg.loss.get("g_regularizers") or {}).items() if block},
        game=build(cfg.game) if cfg.get("game") else None,
    )
    if cfg.model.get("schedule"):
        return ProgressiveGANModule(**parts, schedule=build(cfg.model.schedule))
    return GANModule(**parts)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ganforge checkpoint, turning every way it can be unusable into one clear error.

    Read with ``weights_only``: unpickling anything but tensors and plain values could run arbitrary code.
    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint {str(file)!r} does not exist; runs keep them in <run>/checkpoints/last.ckpt")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
        refusal = unpickling_refusal(str(file), err)
        if refusal is not None:
            raise refusal from None
        raise CheckpointError(
            f"checkpoint {str(file)!r} cannot be read ({type(err).__name__}: {str(err).splitlines()[0]}); "
            "it is probably truncated or corrupt. Use another checkpoint of the run (<run>/checkpoints/)."
        ) from None
    if not isinstance(checkpoint, dict) or "ganforge" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise CheckpointError(f"{str(file)!r} is not a ganforge training checkpoint (no run config or counters inside)")
    return checkpoint


def generator_from_checkpoint(
    checkpoint: dict[str, Any], ema: bool = True, translation: bool = False
) -> tuple[torch.nn.Module, DictConfig]:
    """Rebuild the generator a checkpoint was trained with; the EMA copy when present and asked for.
    ``translation``: the caller runs a generator that reads images (``ganforge-translate``), not noise; the
    other kind is refused with the entry point that takes it.

    The parts of the returned config that sample, eval and the notebook build, ``model`` and ``data``,
    have passed :func:`~ganforge.checkpoint_safety.check_config`; the rest (a user's own callbacks or
    loggers, say) is only read, never built, from a checkpoint.
    """
    check_config({part: checkpoint["hyper_parameters"].get(part) for part in BUILT_FROM_CHECKPOINTS})
    cfg = OmegaConf.create(checkpoint["hyper_parameters"])
    generator = instantiate(cfg.model.generator)
    name = type(generator).__name__
    if hasattr(generator, "source_shape") != translation:
        if translation:
            raise ConfigError(f"this checkpoint's generator ({name}) reads noise; use ganforge-sample or ganforge-eval")
        raise ConfigError(
            f"this checkpoint's generator ({name}) translates images; use ganforge-translate ckpt=... input=... out=..."
        )
    state = checkpoint["state_dict"]
    prefix = "generator_ema.module." if ema and any(k.startswith("generator_ema.") for k in state) else "generator."
    generator.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    return generator.eval(), cfg


def game_from_checkpoint(checkpoint: dict[str, Any]) -> Any:
    """Rebuild the game a checkpoint was trained with, with its players' trained weights (for games whose
    players the config builds whole, such as an encoder); its config passed :func:`check_config`."""
    check_config({part: checkpoint["hyper_parameters"].get(part) for part in BUILT_FROM_CHECKPOINTS})
    game_cfg = checkpoint["hyper_parameters"].get("game")
    if not game_cfg:
        raise ConfigError("this checkpoint was trained with the plain game (game=null), which has no other players")
    game = instantiate(OmegaConf.create(game_cfg))
    state = {k[len("game.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("game.")}
    game.load_state_dict(state)
    return game.eval()
