"""The resolvers ganforge's configs use (``${task_name:}``, ``${mul:a,b}``, ...), and their registration.

Light to import: the commands register them before Hydra composes a config, and ``--help`` or a mistyped option
should not wait for torch. The run-folder resolvers import :mod:`ganforge.runs` (and with it Lightning) only when a
run resolves them.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Callable
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from ganforge.sweeps import run_name, sweep_group, sweep_tags


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


def image_size(path: str, max_side: int) -> list[int]:
    """:func:`ganforge.data.single.image_size`: [h, w] of a single training image (SinGAN)."""
    from ganforge.data.single import image_size as size

    return size(path, max_side)


def task_name(*, _root_: DictConfig) -> str:
    """:func:`ganforge.runs.task_name`."""
    from ganforge import runs

    return runs.task_name(_root_=_root_)


def run_dir(runs_dir: str, now: str, ckpt_path: str | None) -> str:
    """:func:`ganforge.runs.run_dir`."""
    from ganforge import runs

    return runs.run_dir(runs_dir, now, ckpt_path)


def config_subdir(ckpt_path: str | None, now: str) -> str:
    """:func:`ganforge.runs.config_subdir`."""
    from ganforge import runs

    return runs.config_subdir(ckpt_path, now)


def wandb_run_id(output_dir: str) -> str | None:
    """:func:`ganforge.runs.wandb_run_id`."""
    from ganforge import runs

    return runs.wandb_run_id(output_dir)


def group_options(group: str) -> str:
    """The options of config group ``group``, for a command's ``--help`` (``data: mnist, ...``)."""
    from hydra.core.global_hydra import GlobalHydra

    return ", ".join(GlobalHydra.instance().config_loader().get_group_options(group))


#: The resolvers ganforge's configs use, by name.
RESOLVERS: dict[str, Callable[..., Any]] = {
    "wandb_offline": wandb_offline,
    "domain_of": domain_of,
    "mul": lambda a, b: a * b,
    "floordiv": lambda a, b: a // b,
    "classes_if": classes_if,
    "image_size": image_size,
    "sweep_group": sweep_group,
    "sweep_tags": sweep_tags,
    "run_name": run_name,
    "task_name": task_name,
    "run_dir": run_dir,
    "config_subdir": config_subdir,
    "wandb_run_id": wandb_run_id,
    "group_options": group_options,
}


def register_resolvers() -> None:
    for name, resolver in RESOLVERS.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)
