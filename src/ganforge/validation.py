"""Up-front checks of a composed training config.

Settings that would fail deep inside training (an optimizer refusing its learning rate at the first
step, a sampler dividing by a zero batch size), or train without any effect (``lr=0``), are refused
before anything is built, each in one line that names the setting and the fix. Checks that belong
to one object (``n_critic``, ``model.pack``, a net's resolution) stay in that object's constructor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ganforge.config import build
from ganforge.errors import ConfigError

PLAYERS = ("generator", "discriminator")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first setting of ``cfg`` (a training config) that cannot train."""
    for player in PLAYERS:
        _require(cfg, f"optim.{player}.lr", _positive, "a learning rate must be > 0; set e.g. {key}=2e-4")
        _check_optimizer(cfg, player)
    _require(cfg, "data.batch_size", _at_least(1), "a batch needs at least one sample; set e.g. {key}=64")
    _require(cfg, "data.num_workers", _at_least(0), "set {key}=0 (load in the main process) or more workers")
    _require(
        cfg,
        "max_gen_steps",
        _optional(_at_least(1)),
        "train at least one generator step (e.g. {key}=5000), or set {key}=null to let trainer.max_epochs decide",
    )
    _require(
        cfg,
        "ema_decay",
        _optional(lambda decay: 0 <= decay < 1),
        "the EMA decay must be in [0, 1); set e.g. {key}=0.999, or {key}=null to train without the EMA generator",
    )
    for name, block in (cfg.loss.get("penalties") or {}).items():
        if block:
            _require(cfg, f"loss.penalties.{name}.every", _at_least(1), "set {key}=1 (every D step) or more")
    _check_batch_splits(cfg)


def _require(cfg: DictConfig, key: str, ok: Callable[[Any], bool], fix: str) -> None:
    """Refuse ``key`` unless ``ok(value)``, with ``fix`` (``{key}`` stands for the key); a key the
    config does not have is not checked."""
    missing = object()
    value = OmegaConf.select(cfg, key, default=missing)
    if value is not missing and not ok(value):
        raise ConfigError(f"{key}={value!r}: {fix.format(key=key)}")


def _positive(value: Any) -> bool:
    return _is_number(value) and value > 0


def _at_least(low: int) -> Callable[[Any], bool]:
    """A whole number >= ``low``."""
    return lambda value: _is_number(value) and isinstance(value, int) and value >= low


def _optional(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or (_is_number(value) and ok(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_optimizer(cfg: DictConfig, player: str) -> None:
    """Build ``optim.<player>`` on a stand-in parameter: torch checks betas, eps, momentum, unknown
    keys, ... only when the optimizer is built, which is at the first training step."""
    block = cfg.optim.get(player)
    if block is None:
        return
    try:
        build(block)([torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"optim.{player} ({block.get('_target_')}) refuses its settings: {err}; correct that value "
            f"in optim.{player}"
        ) from None


def _check_batch_splits(cfg: DictConfig) -> None:
    """Batches that D splits: into ``model.pack`` samples per logit (PacGAN), and into groups of
    ``model.discriminator.group_size`` for the minibatch standard deviation (ProGAN, StyleGAN2)."""
    batch_size, pack = cfg.data.batch_size, cfg.model.get("pack", 1)
    if isinstance(pack, int) and pack > 1 and batch_size % pack:
        raise ConfigError(
            f"data.batch_size={batch_size} is not a multiple of model.pack={pack} (D judges {pack} samples at "
            f"once); use a multiple of {pack}, e.g. data.batch_size={pack * max(1, batch_size // pack)}"
        )
    group_size = cfg.model.discriminator.get("group_size")
    if not group_size:
        return
    stage_sizes = (cfg.model.get("schedule") or {}).get("batch_size") or {}
    for size in {batch_size, *stage_sizes.values()}:
        group = min(group_size, size)
        if size % group:
            raise ConfigError(
                f"a batch of {size} cannot be split into the minibatch-stddev groups of "
                f"model.discriminator.group_size={group_size}; use batch sizes (data.batch_size, "
                f"model.schedule.batch_size) that are multiples of {group_size}"
            )
