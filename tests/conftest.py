"""Shared fixtures: compose the packaged configs the way ganforge-train does, sized for a CPU test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from ganforge.config import CONFIG_MODULE

#: Overrides that shrink any experiment to a few seconds on a CPU.
TINY = [
    "model.generator.width=8",
    "model.discriminator.width=8",
    "data.batch_size=16",
    "logger=csv",
    "~callbacks.progress_bar",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]

Compose = Callable[..., DictConfig]


def compose_config(config_name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose(config_name, overrides=overrides)


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> Compose:
    """``tiny_cfg(*overrides, out=...)``: a tiny training config writing into ``tmp_path / out``."""

    def make(*overrides: str, out: str = "run") -> DictConfig:
        return compose_config("train", [*TINY, f"paths.output_dir={tmp_path / out}", *overrides])

    return make
