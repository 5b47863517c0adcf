"""What a checkpoint may make ganforge run: no unpickled objects, and no code its own configs do not name.

A checkpoint is a pickle, and its config names callables (``_target_``) that Hydra imports and
calls, so a downloaded checkpoint could otherwise run arbitrary code in two ways. ganforge reads
checkpoints with ``torch.load(weights_only=True)`` (what ganforge-train writes is tensors and plain
values only) and checks a checkpoint's config with :func:`check_config` before building anything of it.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from ganforge.errors import CheckpointError

#: Where a class named by a checkpoint's config may be defined: what the shipped configs name.
#: Functions are allowed from ganforge only; elsewhere (``torch.load``, ``torch.hub.load``) they can run code.
ALLOWED_MODULES = (
    "ganforge",
    "torch.optim",
    "lightning.pytorch.trainer",
    "lightning.pytorch.loggers",
    "lightning.pytorch.strategies",
)

_TRUST = "only load checkpoints from sources you trust, as written by ganforge-train"


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


def check_config(config: Any, where: str = "") -> None:
    """Refuse a checkpoint's config that names code outside :data:`ALLOWED_MODULES` anywhere in it, or
    that holds an interpolation (ganforge saves configs resolved; resolving one could import any module)."""
    if isinstance(config, Mapping):
        for key, value in config.items():
            if key == "_target_":
                _check_target(value, where or "the root")
            check_config(value, f"{where}.{key}" if where else str(key))
    elif isinstance(config, list | tuple):
        for i, item in enumerate(config):
            check_config(item, f"{where}[{i}]")
    elif isinstance(config, str) and "${" in config:
        raise CheckpointError(
            f"the checkpoint's config holds the interpolation {config!r} (at {where}), which ganforge does not "
            f"resolve from a checkpoint (its own are saved resolved); {_TRUST}"
        )


def _check_target(target: Any, where: str) -> None:
    if isinstance(target, str) and target.split(".")[0] in {m.split(".")[0] for m in ALLOWED_MODULES}:
        try:
            found = _locate(target)
        except (ImportError, AttributeError, ValueError):
            return  # nothing there, so Hydra cannot build it either
        if found is not None:
            module = getattr(found, "__module__", None) or ""
            allowed = inspect.isclass(found) or (inspect.isfunction(found) and _within(module, ("ganforge",)))
            if allowed and _within(module, ALLOWED_MODULES):
                return
    raise CheckpointError(
        f"the checkpoint's config names _target_ {target!r} (at {where}), which ganforge does not build from a "
        f"checkpoint: a foreign target can run arbitrary code, and only classes of {', '.join(ALLOWED_MODULES)} "
        f"(and ganforge functions) are allowed; {_TRUST}"
    )


def _locate(target: str) -> object | None:
    """What Hydra's ``_locate`` finds at the dotted path ``target``; None when the path reaches a module
    under another name (``ganforge.config.os``), which would let an allowed prefix lead anywhere."""
    parts = target.split(".")
    found: object = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        path = ".".join(parts[:i])
        try:
            found = getattr(found, part)
        except AttributeError:
            if not isinstance(found, ModuleType):
                raise
            found = importlib.import_module(path)
        if isinstance(found, ModuleType) and found.__name__ != path:
            return None
    return found


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in packages)
