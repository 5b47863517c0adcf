"""Hydra multiruns: which values a sweep varies, and how its jobs are named and grouped in W&B.

A job knows its own overrides (``.hydra/overrides.yaml``) but not which of them the sweep varied;
that is in the sweep's ``multirun.yaml`` (Hydra's basic sweeper: ``key=a,b`` on the command line)
or in ``hydra.sweeper.params`` (search spaces, e.g. Optuna's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

#: W&B refuses longer tags.
MAX_TAG_LENGTH = 64


def swept_keys(task_overrides: list[str], sweeper_params: dict[str, Any] | None = None) -> list[str]:
    """Keys that a sweep varies: overrides with several values (``loss=hinge,wgan``, ``range(...)``,
    ``choice(...)``) and the keys of the sweeper's search space."""
    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    keys = [override.key_or_group for override in parsed if override.is_sweep_override()]
    return keys + [key for key in (sweeper_params or {}) if key not in keys]


def sweep_of(sweep_dir: Path, hydra_cfg: DictConfig | None = None) -> list[str]:
    """The swept keys of the multirun in ``sweep_dir`` (from its ``multirun.yaml``, and the search
    space of ``hydra_cfg.sweeper`` when given)."""
    task: list[str] = []
    params: dict[str, Any] = {}
    multirun = sweep_dir / "multirun.yaml"
    if multirun.is_file():
        saved = OmegaConf.load(multirun)
        task = list(saved.hydra.overrides.task)
        params = dict(saved.hydra.sweeper.get("params") or {})
    if hydra_cfg is not None:
        params |= dict(hydra_cfg.sweeper.get("params") or {})
    return swept_keys(task, params)


def _multirun_job() -> DictConfig | None:
    """The Hydra config of the running job when it is part of a multirun, else None."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = cast(DictConfig, HydraConfig.get())  # the live config node; typed as Hydra's HydraConf dataclass
    return hydra_cfg if hydra_cfg.mode == RunMode.MULTIRUN else None


def job_swept_values() -> list[str]:
    """This job's ``key=value`` for every key its multirun varies (empty outside a multirun)."""
    hydra_cfg = _multirun_job()
    if hydra_cfg is None:
        return []
    keys = sweep_of(Path(hydra_cfg.sweep.dir), hydra_cfg)
    return [o for o in hydra_cfg.overrides.task if o.split("=", 1)[0].lstrip("+~") in keys]


def sweep_group(task_name: str) -> str | None:
    """W&B group of a multirun's jobs: ``<task_name>-<sweep folder name>`` (its start time by default)."""
    hydra_cfg = _multirun_job()
    return f"{task_name}-{Path(hydra_cfg.sweep.dir).name}" if hydra_cfg is not None else None


def sweep_tags() -> list[str]:
    """W&B tags of a multirun job: its swept values (``loss=hinge``), within W&B's tag length."""
    return [value for value in job_swept_values() if len(value) <= MAX_TAG_LENGTH]


def run_name(task_name: str) -> str:
    """W&B run name: ``<task_name>`` for a single run; ``<job number>: <swept values>`` in a multirun."""
    hydra_cfg = _multirun_job()
    if hydra_cfg is None:
        return task_name
    return f"{hydra_cfg.job.num}: {' '.join(job_swept_values()) or task_name}"
