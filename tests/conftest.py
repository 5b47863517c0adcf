"""Shared fixtures: compose the packaged configs the way ganforge-train does, sized for a CPU test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch_fidelity import feature_extractor_inceptionv3 as fidelity_inception

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
    "metrics.n_samples=100",
    "metrics.n_real=100",
    "metrics.batch_size=50",
    "metrics.scorer.kid_subset_size=50",
]

Compose = Callable[..., DictConfig]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the whole session (real-data features are reused across tests), never ~/.cache."""
    return tmp_path_factory.mktemp("ganforge-cache")


@pytest.fixture(scope="session")
def random_inception_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random Inception-v3 weights in the real file's layout (the real file needs a network)."""
    path = tmp_path_factory.mktemp("inception") / "inception.pth"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fidelity_inception, "load_state_dict_from_url", lambda *a, **k: None)
        patch.setattr(fidelity_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        net = fidelity_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(autouse=True)
def isolated_cache(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANFORGE_CACHE_DIR", str(cache_dir))


def assert_same_training_state(resumed: dict[str, Any], straight: dict[str, Any]) -> None:
    """Two checkpoints of one training, one of them resumed on the way, are bitwise the same state: the counters,
    every weight and buffer (EMA, the game's players, augmentation and regularizer state, nets' extra state),
    every optimizer's state and every rank's RNG state."""
    for key in ("generator_steps", "discriminator_steps", "images_shown", "torch_rng"):
        assert _same(resumed["ganforge"][key], straight["ganforge"][key]), key
    assert resumed["global_step"] == straight["global_step"]
    assert resumed["state_dict"].keys() == straight["state_dict"].keys()
    for key, value in straight["state_dict"].items():
        assert _same(resumed["state_dict"][key], value), key
    assert len(resumed["optimizer_states"]) == len(straight["optimizer_states"]) > 0
    for mine, theirs in zip(resumed["optimizer_states"], straight["optimizer_states"], strict=True):
        assert mine["state"].keys() == theirs["state"].keys() and len(theirs["state"]) > 0
        for param, state in theirs["state"].items():
            for name, value in state.items():
                assert _same(mine["state"][param][name], value), (param, name)


def _same(a: Any, b: Any) -> bool:
    return torch.equal(a, b) if isinstance(b, torch.Tensor) else bool(a == b)


def compose_config(config_name: str, overrides: list[str]) -> DictConfig:
    """The job config, with Hydra's own config set as in a run (``${hydra:runtime.choices...}`` resolves)."""
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> Compose:
    """``tiny_cfg(*overrides, out=...)``: a tiny training config writing into ``tmp_path / out``."""

    def make(*overrides: str, out: str = "run") -> DictConfig:
        return compose_config("train", [*TINY, f"paths.output_dir={tmp_path / out}", *overrides])

    return make
