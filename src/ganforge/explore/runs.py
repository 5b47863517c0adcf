"""What the explorer reads from run folders under one root (``outputs/``): never a path from outside it.

A run is a folder holding ``checkpoints/*.ckpt`` or Hydra's ``.hydra/config.yaml``; it shows its sample grids over
training (``samples/gen_step_*.png``), its metric curves (``csv/metrics.csv``), its protocol (``metrics.json``) and
the settings in which its config differs from ``ganforge-train``'s defaults.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from ganforge.config import CONFIG_MODULE, load_checkpoint
from ganforge.errors import ConfigError
from ganforge.explore.drawing import Explorer
from ganforge.runs import newest_checkpoint

#: The curves drawn from ``metrics.csv``: sample-quality metrics, one panel each, when the run logged them.
CURVES = ("metrics/fid", "metrics/kid", "metrics/is", "metrics/precision", "metrics/recall")
#: Config sections that say how a run ran, not what it trained: left out of the diff.
NOT_DIFFED = ("paths", "hydra")
#: Checkpoints kept loaded at once.
KEPT = 4


def find_runs(root: Path) -> list[Path]:
    """The run folders under ``root``, newest first (by their last write)."""
    marks = [*root.rglob("checkpoints/*.ckpt"), *root.rglob(".hydra/config.yaml")]
    runs = {mark.parent.parent for mark in marks if mark.parent.parent.name != ".hydra"}
    return sorted(runs, key=lambda run: run.stat().st_mtime_ns, reverse=True)


def inside(root: Path, path: Path | str) -> Path:
    """``path`` if it lies under ``root`` (links resolved); anything else is refused: the explorer reads nothing
    outside the folder it was given."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ConfigError(f"{str(path)!r} lies outside {str(root)!r}; the explorer reads only the runs under it")
    return resolved


def checkpoint_of(run: Path) -> Path:
    """The newest checkpoint of a run folder, or the error that says it has none."""
    found = newest_checkpoint(run)
    if found is None:
        raise ConfigError(f"run {str(run)!r} holds no checkpoint (checkpoints/*.ckpt); it cannot be explored")
    return found


def grids(run: Path) -> list[tuple[np.ndarray, str]]:
    """The run's sample grids over training, oldest first, each captioned with its G step."""
    from PIL import Image

    found = []
    for path in sorted((run / "samples").glob("gen_step_*.png")):
        match = re.fullmatch(r"gen_step_(\d+)", path.stem)
        if match is None:  # a growing model's native-resolution copy: the full-resolution grid is enough
            continue
        with Image.open(path) as image:
            found.append((np.asarray(image.convert("RGB")), f"G step {int(match.group(1))}"))
    return found


def curves(run: Path) -> np.ndarray | None:
    """The run's FID/KID/IS/precision/recall against G steps as one picture; None when it logged none."""
    table = run / "csv" / "metrics.csv"
    if not table.is_file():
        return None
    with table.open(newline="") as file:
        rows = list(csv.DictReader(file))
    series = {
        name: [(float(row["gen_step"]), float(row[name])) for row in rows if row.get(name) and row.get("gen_step")]
        for name in CURVES
    }
    series = {name: points for name, points in series.items() if points}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from PIL import Image

    fig, axes = plt.subplots(1, len(series), figsize=(3 * len(series), 2.6), dpi=90, squeeze=False)
    for ax, (name, points) in zip(axes[0], series.items(), strict=True):
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, marker="o", markersize=3)
        ax.set_title(name.removeprefix("metrics/"), fontsize=9)
        ax.set_xlabel("G step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("RGB"))


def protocol(run: Path) -> dict[str, Any]:
    """The run's final metrics and how they were measured (``metrics.json``), or an empty mapping."""
    path = run / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def run_config(run: Path) -> DictConfig:
    """The config a run trained with: Hydra's saved copy, else the one in its checkpoint (read by the safe loader)."""
    saved = run / ".hydra" / "config.yaml"
    if saved.is_file():
        return OmegaConf.load(saved)  # type: ignore[return-value]
    return OmegaConf.create(load_checkpoint(checkpoint_of(run))["hyper_parameters"])


def default_config() -> DictConfig:
    """``ganforge-train``'s config with no overrides (interpolations unresolved)."""
    if GlobalHydra.instance().is_initialized():
        return compose("train")
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose("train")


def config_diff(config: DictConfig, defaults: DictConfig) -> list[tuple[str, str, str]]:
    """``(setting, default, this run's)`` for every setting that differs, ``-`` where one side lacks it; a setting
    derived from others (an interpolation in the defaults) is left out, and so are the run's paths."""
    ours, theirs = flatten(config), flatten(defaults)
    rows = []
    for key in sorted(ours.keys() | theirs.keys()):
        default, value = theirs.get(key, "-"), ours.get(key, "-")
        if key.split(".")[0] in NOT_DIFFED or "${" in default or default == value:
            continue
        rows.append((key, default, value))
    return rows


def flatten(config: DictConfig) -> dict[str, str]:
    """Dotted setting names to their values as text (unresolved)."""
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix.rstrip(".")] = json.dumps(node) if isinstance(node, list | dict) else str(node)

    walk(OmegaConf.to_container(config, resolve=False), "")
    return flat


class Library:
    """The checkpoints a page may open, each loaded once: the one given on the command line and those of the runs
    under ``root``; any other path is refused (:func:`~ganforge.explore.runs.inside`)."""

    def __init__(self, root: Path, ckpt: Path | None = None, device: str = "cpu") -> None:
        self.root, self.ckpt, self.device = root, ckpt, device
        self.loaded: OrderedDict[Path, Explorer] = OrderedDict()
        self.lock = threading.RLock()  # one drawing at a time: samplers set attributes (psi) for a call

    def open(self, path: str | Path) -> Explorer:
        resolved = Path(path).resolve()
        if self.ckpt is None or resolved != self.ckpt.resolve():
            resolved = inside(self.root, resolved)
        with self.lock:
            if resolved not in self.loaded:
                self.loaded[resolved] = Explorer(load_checkpoint(resolved), self.device)
                if len(self.loaded) > KEPT:
                    self.loaded.popitem(last=False)
            self.loaded.move_to_end(resolved)
            return self.loaded[resolved]

    def runs(self) -> list[str]:
        """The runs under the root, newest first, as paths relative to it."""
        return [str(run.relative_to(self.root)) for run in find_runs(self.root)] if self.root.is_dir() else []
