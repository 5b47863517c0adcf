"""The console commands (``ganforge-train``, ``ganforge-sample``, ...) and what each does around Hydra.

Hydra composes a command's config, and only then is the code that runs it imported: ``--help`` and a mistyped
option answer without loading torch and Lightning, which take seconds (benchmarks/startup.py). Every command
refuses an option its config does not define (``+max_gen_step=100`` would be ignored) and prints a user's error
as one line.
"""

from __future__ import annotations

import difflib
import shutil
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ganforge.errors import ConfigError, GanforgeError, Preempted
from ganforge.resolvers import register_resolvers

register_resolvers()


def report_errors(task: Callable[[DictConfig], Any], name: str) -> Callable[[DictConfig], Any]:
    """Print a user error (bad data_dir, checkpoint, divergence) as one message, not a traceback.

    In a multirun the error is printed and passed on: Hydra marks that job failed, runs the
    others, and names the failure when the sweep ends (an exit here would end the whole sweep).
    """

    def run(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except Preempted as err:  # ends a multirun too: the whole process was asked to stop
            print(f"{name}: {err}", file=sys.stderr)
            sys.exit(err.exit_code)
        except GanforgeError as err:
            print(f"{name}: error: {err}", file=sys.stderr)
            if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
                raise
            sys.exit(1)

    return run


def refuse_undefined_options(cfg: DictConfig, command: str) -> None:
    """Refuse a top-level key that the command's config does not define, which Hydra adds on request
    (``+max_gen_step=100``, as its own error for ``max_gen_step=100`` advises) and nothing reads; the message names
    the closest defined key. Keys added inside a section (``+trainer.limit_train_batches=2``) pass: sections such
    as ``trainer``, ``callbacks`` and ``logger`` take whatever their class takes."""
    defined = defined_options()
    unknown = [str(key) for key in cfg if key not in defined]
    if not unknown:
        return
    key = unknown[0]
    typed = next((o for o in _task_overrides() if o.key_or_group.split(".")[0] == key), None)
    given = f"{typed.input_line} sets " if typed is not None else ""
    close = difflib.get_close_matches(key, sorted(defined), n=1)
    if not close:
        fix = f"remove it (the settings: {', '.join(sorted(defined))})"
    elif typed is not None:
        fix = f"did you mean {close[0]}{typed.key_or_group[len(key) :]}={typed.get_value_element_as_str()}?"
    else:
        fix = f"did you mean {close[0]}?"
    raise ConfigError(f"{given}{key}, which is no setting of {command} and would be ignored; {fix}")


def defined_options() -> set[str]:
    """The top-level keys of the running command's config: its entry config's own keys and its config groups."""
    hydra_cfg = HydraConfig.get()
    name = str(hydra_cfg.job.config_name)
    sources = GlobalHydra.instance().config_loader().get_sources()
    entry = next(source.load_config(name).config for source in sources if source.is_config(name))
    groups = {group.split("/")[0] for group in hydra_cfg.runtime.choices}
    return {str(key) for key in entry if key not in ("defaults", "hydra")} | groups


def _task_overrides() -> list[Any]:
    """The overrides given on the command line, parsed."""
    return OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))


def discard_start() -> None:
    """Take back what Hydra wrote for a single run refused before its work began: its new folder (which holds
    nothing but Hydra's config and log), or, continuing a run in place, the ``.hydra/continued_<time>/`` of this
    start. A multirun's job keeps its folder, which the sweep's report lists (with ``error.txt`` where
    :func:`ganforge.train.train` wrote one)."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if (
        hydra_cfg.mode != RunMode.RUN
        or hydra_cfg.output_subdir is None
        or OmegaConf.is_missing(hydra_cfg.runtime, "output_dir")
    ):
        return  # Hydra wrote nothing: a command without run folders, or a config composed in code
    run = Path(hydra_cfg.runtime.output_dir)
    if not run.is_dir():
        return
    if {path.name for path in run.iterdir()} <= {".hydra", f"{hydra_cfg.job.name}.log"}:
        shutil.rmtree(run)
        _remove_empty_parents(run, Path.cwd())
    elif Path(hydra_cfg.output_subdir) != Path(".hydra"):
        shutil.rmtree(run / hydra_cfg.output_subdir, ignore_errors=True)


def _remove_empty_parents(path: Path, root: Path) -> None:
    """Remove the now empty folders above ``path`` (``outputs/<task>/runs``), up to, not including, ``root``."""
    parent = path.resolve().parent
    root = root.resolve()
    while parent != root and parent.is_relative_to(root) and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def _run(cfg: DictConfig, name: str, task: str) -> Any:
    """Run ``task`` (``module:function``, imported now that Hydra has composed the config) as the command ``name``,
    once its options are checked."""

    def checked(cfg: DictConfig) -> Any:
        try:
            refuse_undefined_options(cfg, name)
        except ConfigError:
            discard_start()
            raise
        module, function = task.split(":")
        return getattr(import_module(module), function)(cfg)

    return report_errors(checked, name)(cfg)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def train(cfg: DictConfig) -> float | None:
    return _run(cfg, "ganforge-train", "ganforge.train:run")


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def sample(cfg: DictConfig) -> None:
    _run(cfg, "ganforge-sample", "ganforge.sample:sample")


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def evaluate(cfg: DictConfig) -> None:
    _run(cfg, "ganforge-eval", "ganforge.evaluate:evaluate")


@hydra.main(version_base="1.3", config_path="conf", config_name="encode")
def encode(cfg: DictConfig) -> None:
    _run(cfg, "ganforge-encode", "ganforge.encode:encode")


@hydra.main(version_base="1.3", config_path="conf", config_name="translate")
def translate(cfg: DictConfig) -> None:
    _run(cfg, "ganforge-translate", "ganforge.translate:translate")


@hydra.main(version_base="1.3", config_path="conf", config_name="train_classifier")
def train_classifier(cfg: DictConfig) -> None:
    _run(cfg, "ganforge-train-classifier", "ganforge.train_classifier:train_classifier")


@hydra.main(version_base="1.3", config_path="conf", config_name="explore")
def explore(cfg: DictConfig) -> None:
    _run(cfg, "ganforge-explore", "ganforge.explore.app:explore")
