"""What a checkpoint may make ganforge do: load tensors and plain values, and build the run's building blocks.

A checkpoint is a pickle, and its saved config names callables (``_target_``) that Hydra imports and calls and
holds strings that OmegaConf would resolve, so a downloaded checkpoint could otherwise run code, import modules,
read the environment or write files. ganforge reads checkpoints with ``torch.load(weights_only=True)`` (what
ganforge-train writes is tensors and plain values only), and :func:`check_config` walks the whole saved config
before any of it is used:

- only plain values (dicts, lists, strings, numbers, booleans, null) and no interpolation, in keys or values:
  ganforge saves configs resolved, and resolving ``${oc.env:...}``, ``${oc.create:...}`` or one of ganforge's
  resolvers could read the environment or import any module;
- a ``_target_`` must be one of the exact dotted names of :func:`building_blocks` (the classes that build nets,
  datamodules, objectives, penalties, G regularizers, games, augmentations, feature extractors and the
  progressive schedule; torch's optimizers and lr schedulers) or :data:`PURE_FUNCTIONS`. Nothing a checkpoint
  names is imported to decide: the names are read off modules ganforge imports itself. No ganforge function that
  writes, trains or spawns is among them;
- the sections that describe the run rather than what it trained (:data:`RUN_SECTIONS`: trainer, callbacks,
  loggers, metrics) may name any class as a plain string, a researcher's own callbacks and loggers included:
  no loader imports or builds them (``ganforge.config.checkpoint_config`` drops those sections, and resuming
  builds the run from the command line);
- of Hydra's other instructions only ``_partial_`` (a boolean) is allowed; ``_args_``, ``_recursive_`` and
  ``_convert_``, which ganforge's configs never write, are refused.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterable, Mapping
from functools import cache
from types import ModuleType
from typing import Any

from ganforge.errors import CheckpointError

#: Functions a checkpoint's config may name: pure builders the shipped configs use (no file, process or training).
PURE_FUNCTIONS = ("ganforge.metrics.auto_features", "ganforge.metrics.features.auto_features")
#: Top-level sections about the run itself (how it was trained and logged), never built from a checkpoint.
RUN_SECTIONS = ("trainer", "callbacks", "logger", "metrics")
#: Hydra's instructions besides ``_target_`` that a checkpoint may hold (with a boolean value).
ALLOWED_FLAGS = ("_partial_",)

_TRUST = "only load checkpoints from sources you trust, as written by ganforge-train"
_PLAIN = (str, int, float, bool, type(None))


def unpickling_refusal(file: str, err: Exception) -> CheckpointError | None:
    """The error for a checkpoint that ``weights_only`` refused to unpickle; None when ``err`` is another failure."""
    message = str(err)
    if "Weights only load failed" not in message:
        return None
    found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
    what = f"a pickled object ({found.group(1)})" if found else "pickled data"
    return CheckpointError(
        f"checkpoint {file!r} holds {what} that ganforge does not load, since unpickling it could run "
        f"arbitrary code (torch.load weights_only=True); {_TRUST}. A trusted one can be re-saved with "
        "its tensors and plain values only (load it with weights_only=False yourself)"
    )


def check_config(config: Any) -> None:
    """Refuse a checkpoint's saved config (``hyper_parameters``) that holds anything but plain values, an
    interpolation, a Hydra instruction other than a boolean ``_partial_``, or a ``_target_`` outside
    :func:`building_blocks` wherever it is (in :data:`RUN_SECTIONS`, which nothing builds, any name)."""
    if not isinstance(config, Mapping):
        raise CheckpointError(f"the checkpoint's config is a {type(config).__name__}, not a mapping; {_TRUST}")
    for key, value in config.items():
        _check({key: value}, "", None if key in RUN_SECTIONS else building_blocks())


def _check(node: Any, where: str, allowed: frozenset[str] | None) -> None:
    """``allowed``: the ``_target_`` names allowed here; None: any string (a section nothing builds)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            _check(key, where or "the root", allowed)
            if key == "_target_":
                _check(value, where or "the root", allowed)  # a name, not an interpolation
                _check_target(value, where or "the root", allowed)
            elif isinstance(key, str) and len(key) > 2 and key.startswith("_") and key.endswith("_"):
                if key not in ALLOWED_FLAGS or not isinstance(value, bool):
                    raise CheckpointError(
                        f"the checkpoint's config holds the Hydra instruction {key}: {value!r} (at "
                        f"{where or 'the root'}), which ganforge does not follow from a checkpoint (its configs write "
                        f"only _target_ and a boolean _partial_); {_TRUST}"
                    )
            else:
                _check(value, f"{where}.{key}" if where else str(key), allowed)
    elif isinstance(node, list | tuple):
        for i, item in enumerate(node):
            _check(item, f"{where}[{i}]", allowed)
    elif isinstance(node, str) and "${" in node:
        raise CheckpointError(
            f"the checkpoint's config holds the interpolation {node!r} (at {where}), which ganforge does not "
            f"resolve from a checkpoint (its own are saved resolved); {_TRUST}"
        )
    elif not isinstance(node, _PLAIN):
        raise CheckpointError(
            f"the checkpoint's config holds a {type(node).__name__} (at {where}) where ganforge saves plain values "
            f"only; {_TRUST}"
        )


def _check_target(target: Any, where: str, allowed: frozenset[str] | None) -> None:
    if isinstance(target, str) and (allowed is None or target in allowed):
        return
    raise CheckpointError(
        f"the checkpoint's config names _target_ {target!r} (at {where}), which ganforge does not build from a "
        "checkpoint: it builds only the classes of its nets, data, objectives, penalties, regularizers, games, "
        f"augmentations and feature extractors, torch's optimizers and schedulers, and {PURE_FUNCTIONS[0]}; {_TRUST}"
    )


@cache
def building_blocks() -> frozenset[str]:
    """Every dotted name under which a class a checkpoint may build is reachable, and :data:`PURE_FUNCTIONS`."""
    import torch.optim
    import torch.optim.lr_scheduler
    from lightning.pytorch import LightningDataModule, LightningModule
    from torch import nn

    from ganforge.objectives import Objective
    from ganforge.penalties import Penalty
    from ganforge.progressive import ProgressiveSchedule

    ganforge = ("ganforge.nets", "ganforge.data", "ganforge.games", "ganforge.augment", "ganforge.metrics")
    modules = [*_walk(ganforge), *map(importlib.import_module, ("ganforge.objectives", "ganforge.penalties"))]
    modules += map(importlib.import_module, ("ganforge.regularizers", "ganforge.progressive"))
    modules += [torch.optim, torch.optim.lr_scheduler]
    bases: tuple[type, ...] = (nn.Module, LightningDataModule, Objective, Penalty, ProgressiveSchedule)
    bases += (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
    # A LightningModule trains when given a trainer: not a part of one.
    return _classes(modules, bases, excluded=(LightningModule,), owners=("ganforge", "torch.optim")) | set(
        PURE_FUNCTIONS
    )


def _walk(packages: Iterable[str]) -> list[ModuleType]:
    """The packages and all their modules (ganforge's own, imported here by ganforge, never by a checkpoint)."""
    modules = []
    for name in packages:
        package = importlib.import_module(name)
        modules.append(package)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            modules.append(importlib.import_module(info.name))
    return modules


def _classes(
    modules: Iterable[ModuleType], bases: tuple[type, ...], excluded: tuple[type, ...], owners: tuple[str, ...]
) -> frozenset[str]:
    """The dotted names of the classes derived from ``bases`` and defined under ``owners`` that ``modules`` hold:
    each module's name for one (``ganforge.nets.DCGANGenerator``) and its definition's (``ganforge.nets.dcgan...``)."""
    names = set()
    for module in modules:
        for name, value in vars(module).items():
            if not inspect.isclass(value) or not issubclass(value, bases) or issubclass(value, excluded):
                continue
            if any(value.__module__ == owner or value.__module__.startswith(f"{owner}.") for owner in owners):
                names |= {f"{module.__name__}.{name}", f"{value.__module__}.{value.__qualname__}"}
    return frozenset(names)
