"""Up-front checks of a composed training config.

Settings that would fail deep inside training (an optimizer refusing its learning rate at the first
step, a sampler dividing by a zero batch size), or train without any effect (``lr=0``), are refused
before anything is built, each in one line that names the setting and the fix; callbacks that cannot
run the generator are refused once it is built, before training. Checks that belong to one object
(``n_critic``, ``model.pack``, a net's resolution) stay in that object's constructor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from hydra.utils import get_object
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Timer
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganforge.callbacks import (
    ImageMetrics,
    ModeCoverage,
    OverfitCheck,
    SampleGrid,
    TranslationGrid,
    TranslationMetrics,
)
from ganforge.callbacks.budget import parse_max_time
from ganforge.config import build
from ganforge.errors import ConfigError

PLAYERS = ("generator", "discriminator")
#: Callbacks that draw the generator's samples from noise, and callbacks that translate test-split images.
NOISE_CALLBACKS = (SampleGrid, ImageMetrics, ModeCoverage, OverfitCheck)
TRANSLATION_CALLBACKS = (TranslationGrid, TranslationMetrics)


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
    _require(
        cfg,
        "max_time",
        _optional_duration,
        "a wall-clock budget is HH:MM:SS, DD:HH:MM:SS or seconds, e.g. {key}=00:15:00 for 15 minutes "
        "(training stops in time for the final evaluation), or {key}=null for none",
    )
    _check_batch_splits(cfg)
    _check_trainer_max_time(cfg)


def validate_callbacks(cfg: DictConfig, generator: nn.Module) -> None:
    """Refuse callbacks that cannot run ``generator`` (the built ``model.generator``): grids and metrics of noise
    samples with a generator that translates images (it declares the ``source_shape`` it reads, and has no latent
    space), grids and metrics of translations with a generator of noise. Checked before training, since the
    callbacks would first fail at their first grid or evaluation, hundreds of steps in."""
    translates = hasattr(generator, "source_shape")
    refused = NOISE_CALLBACKS if translates else TRANSLATION_CALLBACKS
    names = [
        f"callbacks.{name}"
        for name, block in (cfg.get("callbacks") or {}).items()
        if block and isinstance(kind := get_object(block.get("_target_")), type) and issubclass(kind, refused)
    ]
    if names:
        kind_of = (
            "translates images (it reads a source, not noise); use callbacks=translation, which grids and "
            "scores translations of the test split"
            if translates
            else "draws from noise and translates no images; use callbacks=default (sample grids and image metrics)"
        )
        raise ConfigError(
            f"{' and '.join(names)} cannot run model.generator ({type(generator).__name__}): it {kind_of}; or "
            f"leave {'it' if len(names) == 1 else 'them'} out: {' '.join(repr('~' + name) for name in names)}"
        )


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


def _optional_duration(value: Any) -> bool:
    try:
        return value is None or parse_max_time(value) > 0
    except ValueError:
        return False


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


def _check_trainer_max_time(cfg: DictConfig) -> None:
    """Lightning's own time limit (``trainer.max_time``) is parsed by its ``Timer`` when the trainer is built, and a
    malformed value surfaces as Lightning's exception inside Hydra's; parse it up front the same way."""
    value = OmegaConf.select(cfg, "trainer.max_time")
    if value is None:
        return
    try:
        Timer(duration=value)  # as the trainer gets it from Hydra
    except (MisconfigurationException, TypeError, AttributeError):  # AttributeError: a number or a mapping
        raise ConfigError(
            f"trainer.max_time={value!r}: Lightning reads DD:HH:MM:SS (hours, minutes and seconds two digits each), "
            "e.g. trainer.max_time=00:00:15:00 for 15 minutes; or set max_time=00:15:00, a budget that the final "
            "evaluation and checkpoint fit in"
        ) from None
