"""Glue between Hydra configs and objects: builders and checkpoint loading."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ganforge.checkpoint_safety import RUN_SECTIONS, check_config, unpickling_refusal
from ganforge.errors import CheckpointError, ConfigError, GanforgeError
from ganforge.module import GANModule
from ganforge.progressive import ProgressiveGANModule
from ganforge.resolvers import register_resolvers

#: The packaged Hydra configs; ``conf/`` at the repository root links here.
CONFIG_MODULE = "ganforge.conf"

register_resolvers()  # for configs composed in code (tests, notebooks) as well


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
    size, side = cfg.data.get("size"), cfg.model.generator.get("resolution")
    if isinstance(size, Sequence) and not isinstance(size, str) and len(set(size)) > 1 and side is not None:
        raise ConfigError(
            f"the data's images are {size[0]}x{size[-1]}, but {cfg.model.generator._target_.rsplit('.', 1)[-1]} "
            f"draws squares of {side}x{side}; use a pyramid of fully convolutional nets, which draws any size "
            "(experiment=singan, or model=singan game=pyramid)"
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
    """Read a ganforge checkpoint, turning every way it can be unusable or unsafe into one clear error.

    Read with ``weights_only``: unpickling anything but tensors and plain values could run arbitrary code. Its saved
    config passes :func:`~ganforge.checkpoint_safety.check_config` (nothing foreign named, nothing to resolve)
    before any caller reads it.
    """
    file = Path(path)
    if file.is_dir():
        raise CheckpointError(_folder_refusal(file))
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
    if not isinstance(checkpoint, dict) or not {"ganforge", "hyper_parameters", "state_dict"} <= checkpoint.keys():
        raise CheckpointError(f"{str(file)!r} is not a ganforge training checkpoint (no run config or counters inside)")
    check_config(checkpoint["hyper_parameters"])
    return checkpoint


def _folder_refusal(folder: Path) -> str:
    """The error for a folder given as a checkpoint, naming the ``last.ckpt`` in it (a checkpoints folder) or in its
    ``checkpoints/`` (a run folder) when there is one."""
    last = next((path for path in (folder / "last.ckpt", folder / "checkpoints" / "last.ckpt") if path.is_file()), None)
    if last is not None:
        return f"checkpoint {str(folder)!r} is a folder; give the checkpoint file in it: {str(last)!r}"
    return (
        f"checkpoint {str(folder)!r} is a folder and holds no last.ckpt (nor checkpoints/last.ckpt); give a .ckpt "
        "file, runs keep them in <run>/checkpoints/"
    )


def checkpoint_config(checkpoint: dict[str, Any]) -> DictConfig:
    """The config a checkpoint (from :func:`load_checkpoint`) was trained with, as far as ganforge builds from it:
    without the sections about the run itself (trainer, callbacks, loggers, metrics: never built from a checkpoint),
    and with data that neither downloads nor starts worker processes (a checkpoint does not decide what ganforge
    writes or spawns; name the data, ``data=cifar10``, to use your own settings)."""
    kept = {key: value for key, value in checkpoint["hyper_parameters"].items() if key not in RUN_SECTIONS}
    cfg = OmegaConf.create(kept)
    for node in _mappings(cfg.get("data")):
        for key, value in (("download", False), ("num_workers", 0)):
            if key in node:
                node[key] = value
    return cfg


def _mappings(node: Any) -> list[DictConfig]:
    """``node`` and every mapping nested in it (a paired datamodule's ``base``, say)."""
    if not isinstance(node, DictConfig):
        return []
    return [node, *(inner for value in node.values() for inner in _mappings(value))]


def module_from_checkpoint(checkpoint: dict[str, Any]) -> tuple[GANModule, DictConfig]:
    """Rebuild what a checkpoint trained, every player with its weights, in eval mode, and its config
    (:func:`checkpoint_config`). A config that cannot be built, or weights that do not fit what it builds (another
    version of ganforge, or an edited file), is a :class:`CheckpointError`."""
    cfg = checkpoint_config(checkpoint)
    try:
        module = build_module(cfg)
    except GanforgeError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever a malformed config makes a constructor raise
        raise CheckpointError(
            f"the checkpoint's config cannot be built ({type(err).__name__}: {_first_line(err)}); it was written by "
            "another version of ganforge or edited. Use a checkpoint of this version's ganforge-train"
        ) from None
    check_weights(module, checkpoint["state_dict"])
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval(), cfg


def check_weights(module: torch.nn.Module, state: Any) -> None:
    """Refuse, with one message, a checkpoint's ``state_dict`` that does not fit ``module`` (missing, extra or
    differently shaped entries), before torch's multi-line error would."""
    expected = module.state_dict()
    if not isinstance(state, dict):
        raise CheckpointError("the checkpoint's state_dict is not a mapping of names to tensors; it was edited")
    missing, extra = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    shapes = [
        f"{key} {_shape(state[key])} where its config builds {_shape(expected[key])}"
        for key in sorted(expected.keys() & state.keys())
        if _shape(state[key]) != _shape(expected[key])
    ]
    problems = [
        f"{len(found)} {what} (e.g. {found[0]})"
        for found, what in ((missing, "missing"), (extra, "unexpected"), (shapes, "of another shape"))
        if found
    ]
    if problems:
        raise CheckpointError(
            f"the checkpoint's weights do not fit the nets its config builds: {'; '.join(problems)}. It was written "
            "by another version of ganforge, or edited; use a checkpoint of this version's ganforge-train"
        )


def _shape(value: Any) -> tuple[int, ...] | str:
    """A tensor's shape; the type of anything else (a net's extra state, such as ProGAN's stage)."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else ""


def generator_from_checkpoint(
    checkpoint: dict[str, Any], ema: bool = True, translation: bool = False
) -> tuple[torch.nn.Module, DictConfig]:
    """The generator a checkpoint trained (:func:`module_from_checkpoint`), its EMA copy when present and asked
    for, and the run's config. ``translation``: the caller runs a generator that reads images
    (``ganforge-translate``), not noise; the other kind is refused with the entry point that takes it."""
    module, cfg = module_from_checkpoint(checkpoint)
    generator = module.sampling_generator if ema else module.generator
    name = type(generator).__name__
    if hasattr(generator, "source_shape") != translation:
        if translation:
            raise ConfigError(f"this checkpoint's generator ({name}) reads noise; use ganforge-sample or ganforge-eval")
        raise ConfigError(
            f"this checkpoint's generator ({name}) translates images; use ganforge-translate ckpt=... input=... out=..."
        )
    return generator, cfg
