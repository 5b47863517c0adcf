"""Checkpoints from strangers: forged checkpoints through every entry point that reads one.

A forged checkpoint is a real one with its saved config (``hyper_parameters``) or weights edited, as an attacker
who publishes it would. Every forgery is tried through every entry point (the red-team table of
docs/RELIABILITY.md: ``pytest tests/test_checkpoint_safety.py -k red_team -v``) and must be refused with a
:class:`CheckpointError` while a victim file stays as it was, no marker file appears and a marker module is not
imported. The controls show that the payloads do write and import when the checks are bypassed.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

import ganforge
from ganforge.checkpoint_safety import PURE_FUNCTIONS, RUN_SECTIONS, building_blocks, check_config
from ganforge.config import checkpoint_config, generator_from_checkpoint, load_checkpoint
from ganforge.encode import encode
from ganforge.errors import CheckpointError
from ganforge.evaluate import evaluate
from ganforge.explore.runs import Library
from ganforge.resolvers import RESOLVERS
from ganforge.sample import sample
from ganforge.train import train
from ganforge.translate import translate
from tests.conftest import TINY, Compose, compose_config
from tests.test_cli import BIN, assert_clean_error, run
from tests.test_notebook import NOTEBOOK, cell

#: A tiny run without the metric callbacks, whose evaluation would only cost time here.
FAST = ["~callbacks.image_metrics", "~callbacks.best_checkpoint"]
MARKER_MODULE = "ganforge_red_team_marker"
#: What the victim file holds; a forgery that gets through may overwrite it.
PRECIOUS = "a researcher's results\n"


class Payload:
    """Unpickling this runs code; here it only creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint of a tiny run (4 generator steps)."""
    out = tmp_path_factory.mktemp("trained")
    train(compose_config("train", [*TINY, *FAST, f"paths.output_dir={out}", "max_gen_steps=4"]))
    return out / "checkpoints" / "last.ckpt"


def rewritten(checkpoint: Path, out: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    """A copy of ``checkpoint`` at ``out`` after ``edit(contents)``."""
    contents = torch.load(checkpoint, map_location="cpu", weights_only=True)
    edit(contents)
    torch.save(contents, out)
    return out


class Scene:
    """What a forgery could harm: a victim file, a marker file and a marker module that creates the marker."""

    def __init__(self, root: Path) -> None:
        self.victim = root / "victim" / "results.txt"
        self.victim.parent.mkdir()
        self.victim.write_text(PRECIOUS)
        self.marker = root / "marker"
        modules = root / "modules"
        modules.mkdir()
        (modules / f"{MARKER_MODULE}.py").write_text(f"open({str(self.marker)!r}, 'w').close()\nx = 1\n")
        self.modules = modules

    def untouched(self) -> bool:
        """Nothing written, nothing imported."""
        victims = sorted(p.name for p in self.victim.parent.iterdir())
        return (
            victims == ["results.txt"]
            and self.victim.read_text() == PRECIOUS
            and not self.marker.exists()
            and MARKER_MODULE not in sys.modules
        )


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scene]:
    found = Scene(tmp_path)
    monkeypatch.syspath_prepend(str(found.modules))
    yield found
    sys.modules.pop(MARKER_MODULE, None)


Edit = Callable[[dict[str, Any], Scene], None]


def at(section: str, key: str, value: Callable[[Scene], Any]) -> Edit:
    """A forgery that sets ``hyper_parameters[section][key]`` (``section`` "": the root) to ``value(scene)``."""

    def edit(contents: dict[str, Any], scene: Scene) -> None:
        node = contents["hyper_parameters"]
        (node[section] if section else node)[key] = value(scene)

    return edit


def as_generator(value: Callable[[Scene], dict[str, Any]]) -> Edit:
    return at("model", "generator", value)


def writer(target: str) -> Edit:
    """A ganforge function that writes, named as the generator, aimed at the victim."""
    return as_generator(lambda s: {"_target_": target, "cfg": {"out": str(s.victim)}, "path": str(s.victim)})


def weights(edit: Callable[[dict[str, torch.Tensor]], None]) -> Edit:
    return lambda contents, scene: edit(contents["state_dict"])


def _drop_first(state: dict[str, torch.Tensor]) -> None:
    del state[next(iter(state))]


def _reshape_first(state: dict[str, torch.Tensor]) -> None:
    key = next(k for k, v in state.items() if v.dim() > 1)
    state[key] = torch.zeros(3, 3)


IMPORT_MARKER = f"${{domain_of:${{oc.create:{{_target_:{MARKER_MODULE}.x}}}}}}"

#: The forgeries of the red-team table, by name.
FORGERIES: dict[str, Edit] = {
    "save_classifier overwrites a file (model.generator)": as_generator(
        lambda s: {
            "_target_": "ganforge.metrics.classifier.save_classifier",
            "model": {"_target_": "ganforge.metrics.classifier.DomainClassifier"},
            "path": str(s.victim),
            "metadata": {},
        }
    ),
    **{
        f"{target} as the generator": writer(target)
        for target in (
            "ganforge.train.train",
            "ganforge.evaluate.evaluate",
            "ganforge.sample.sample",
            "ganforge.encode.encode",
            "ganforge.translate.translate",
            "ganforge.train_classifier.train_classifier",
            "ganforge.runs.truncate_metrics",
            "ganforge.plots.scatter_png",
            "ganforge.report.report",
            "ganforge.metrics.cache.cached",
        )
    },
    "a module import through ${domain_of:${oc.create:...}} (ema_decay)": at("", "ema_decay", lambda s: IMPORT_MARKER),
    "${oc.env:HOME} (task_name)": at("", "task_name", lambda s: "${oc.env:HOME}"),
    "${oc.create:...} (data.batch_size)": at(
        "data", "batch_size", lambda s: f"${{oc.create:{{_target_:{MARKER_MODULE}.x}}}}"
    ),
    "${oc.decode:...} (seed)": at("", "seed", lambda s: "${oc.decode:${oc.env:HOME}}"),
    "${oc.select:...} (n_critic)": at("", "n_critic", lambda s: "${oc.select:seed}"),
    **{
        f"ganforge's resolver ${{{name}:...}} (seed)": at("", "seed", lambda s, name=name: f"${{{name}:x}}")
        for name in RESOLVERS
    },
    "an interpolation in a key (model)": at("model", "${oc.env:HOME}", lambda s: 1),
    "a marker module as the generator": as_generator(lambda s: {"_target_": f"{MARKER_MODULE}.x"}),
    "_args_ on a building block": as_generator(lambda s: {"_target_": "ganforge.nets.DCGANGenerator", "_args_": [8]}),
    "_recursive_: false": as_generator(lambda s: {"_target_": "ganforge.nets.DCGANGenerator", "_recursive_": False}),
    "_convert_: all": as_generator(lambda s: {"_target_": "ganforge.nets.DCGANGenerator", "_convert_": "all"}),
    "_partial_ that is not a boolean": as_generator(
        lambda s: {"_target_": "ganforge.nets.DCGANGenerator", "_partial_": "true"}
    ),
    "a target nested in a list (model.extra)": at("model", "extra", lambda s: [{"_target_": f"{MARKER_MODULE}.x"}]),
    **{
        f"hydra.utils.{name} as the generator": as_generator(
            lambda s, name=name: {"_target_": f"hydra.utils.{name}", "_args_": [f"{MARKER_MODULE}.x"]}
        )
        for name in ("get_method", "get_class", "instantiate")
    },
    "builtins.open as the generator": as_generator(
        lambda s: {"_target_": "builtins.open", "file": str(s.victim), "mode": "w"}
    ),
    "torch.save reached through ganforge.config's import": as_generator(
        lambda s: {"_target_": "ganforge.config.torch.save", "obj": {}, "f": str(s.victim)}
    ),
    "a Lightning logger writing outside the run, as the generator": as_generator(
        lambda s: {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": str(s.victim.parent)}
    ),
    "a checkpoint callback writing outside the run, as the data": at(
        "",
        "data",
        lambda s: {"_target_": "ganforge.callbacks.GenStepCheckpoint", "dirpath": str(s.victim.parent)},
    ),
    "an interpolation in a run section, which nothing builds (callbacks)": at(
        "callbacks", "mine", lambda s: {"_target_": IMPORT_MARKER}
    ),
    "a tensor in a run section (logger)": at("logger", "mine", lambda s: {"save_dir": torch.zeros(1)}),
    "a tensor in the config (seed)": at("", "seed", lambda s: torch.zeros(1)),
    "weights: an entry missing": weights(_drop_first),
    "weights: an entry of another shape": weights(_reshape_first),
    "weights: an unexpected entry": weights(lambda state: state.update(extra=torch.zeros(1))),
}


def run_sample(ckpt: Path, out: Path) -> Any:
    return sample(compose_config("sample", [f"ckpt={ckpt}", "n=4", f"out={out / 's.npz'}"]))


def run_eval(ckpt: Path, out: Path) -> Any:
    return evaluate(compose_config("eval", [f"ckpt={ckpt}", f"out={out / 'm.json'}", "metrics.n_samples=50"]))


def run_encode(ckpt: Path, out: Path) -> Any:
    return encode(compose_config("encode", [f"ckpt={ckpt}", f"out={out / 'codes.npz'}", "n=10"]))


def run_translate(ckpt: Path, out: Path) -> Any:
    return translate(compose_config("translate", [f"ckpt={ckpt}", f"input={out}", f"out={out / 'translated'}"]))


def run_train(ckpt: Path, out: Path) -> Any:
    return train(compose_config("train", [*TINY, *FAST, f"paths.output_dir={out / 'run'}", f"ckpt_path={ckpt}"]))


def run_train_last(ckpt: Path, out: Path) -> Any:
    """``ckpt_path=last`` with the forged file as the run folder's newest checkpoint."""
    run_dir = out / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, run_dir / "checkpoints" / "last.ckpt")
    return train(compose_config("train", [*TINY, *FAST, f"paths.output_dir={run_dir}", "ckpt_path=last"]))


def run_notebook(ckpt: Path, out: Path) -> Any:
    """The notebook's own loading cell, run on ``ckpt``."""
    source = cell(nbformat.read(NOTEBOOK, as_version=4), "load_checkpoint(CKPT)").source
    exec(compile(source, str(NOTEBOOK), "exec"), {"CKPT": str(ckpt)})


def run_explore(ckpt: Path, out: Path) -> Any:
    """The explorer opening ``ckpt``, as its page does when it loads."""
    return Library(out, ckpt).open(ckpt)


ENTRY_POINTS: dict[str, Callable[[Path, Path], Any]] = {
    "ganforge-sample": run_sample,
    "ganforge-explore": run_explore,
    "ganforge-eval": run_eval,
    "ganforge-encode": run_encode,
    "ganforge-translate": run_translate,
    "ganforge-train ckpt_path=PATH": run_train,
    "ganforge-train ckpt_path=last": run_train_last,
    "notebook": run_notebook,
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("forgery", FORGERIES)
def test_red_team(forgery: str, entry: str, checkpoint: Path, scene: Scene, tmp_path: Path) -> None:
    """Every forgery through every entry point: refused in one message, nothing written or imported."""
    forged = rewritten(checkpoint, tmp_path / "forged.ckpt", lambda c: FORGERIES[forgery](c, scene))
    with pytest.raises(CheckpointError) as refused:
        ENTRY_POINTS[entry](forged, tmp_path)
    assert "\n" not in str(refused.value)
    assert scene.untouched()


def test_the_payloads_write_and_import_without_the_checks(checkpoint: Path, scene: Scene, tmp_path: Path) -> None:
    """Controls: Hydra builds the file-writing generator, OmegaConf's resolution imports the marker module."""
    contents = torch.load(checkpoint, map_location="cpu", weights_only=True)
    FORGERIES["save_classifier overwrites a file (model.generator)"](contents, scene)
    instantiate(contents["hyper_parameters"]["model"]["generator"])
    assert scene.victim.read_bytes()[:4] == b"PK\x03\x04"  # a torch archive where the results were

    FORGERIES["a module import through ${domain_of:${oc.create:...}} (ema_decay)"](contents, scene)
    with pytest.raises(Exception):  # noqa: B017 - the import happens before domain_of fails on its result
        OmegaConf.create(contents["hyper_parameters"]).get("ema_decay")
    assert scene.marker.exists() and MARKER_MODULE in sys.modules


def test_run_sections_are_checked_but_never_built(checkpoint: Path, scene: Scene, tmp_path: Path) -> None:
    """The run's own sections may name any class (a researcher's own callback or logger), but nothing builds or
    imports them: a ganforge logger and callback aimed outside the run, a callback from the marker module and
    ``builtins.open`` as a logger pass the check, and sampling and resuming write nothing there and import nothing
    (the loader drops the trainer, callbacks, logger and metrics; a resumed run is built from its command line)."""

    def aim_outside(contents: dict[str, Any]) -> None:
        hyper = contents["hyper_parameters"]
        hyper["logger"]["csv"]["save_dir"] = str(scene.victim.parent)
        hyper["callbacks"]["checkpoint"]["dirpath"] = str(scene.victim.parent)
        hyper["callbacks"]["mine"] = {"_target_": f"{MARKER_MODULE}.x"}
        hyper["logger"]["mine"] = {"_target_": "builtins.open", "file": str(scene.victim), "mode": "w"}

    forged = rewritten(checkpoint, tmp_path / "forged.ckpt", aim_outside)
    assert np.load(run_sample(forged, tmp_path))["arr_0"].shape == (4, 28, 28, 1)
    run_train(forged, tmp_path)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["ganforge"]["generator_steps"] > 4
    assert scene.untouched()


def test_every_shipped_target_is_allowed_and_no_other_ganforge_function() -> None:
    """What the shipped configs name outside the run's sections is in the allowlist (a real checkpoint of any
    experiment passes); every function defined in ganforge but the pure builders is not, so a new function that
    writes stays refused."""
    conf = Path(__file__).resolve().parents[1] / "src" / "ganforge" / "conf"
    run_groups = {conf / "trainer", conf / "callbacks", conf / "logger"}  # what RUN_SECTIONS build; never loaded
    targets: set[str] = set()
    for path in conf.rglob("*.yaml"):
        if path.parent not in run_groups:
            node = OmegaConf.to_container(OmegaConf.load(path))
            global_package = path.read_text().startswith("# @package _global_")  # experiments, debug: whole configs
            kept = {k: v for k, v in node.items() if k not in RUN_SECTIONS} if global_package else node
            targets |= set(_targets(kept))
    assert len(targets) > 40 and targets <= building_blocks()
    functions = {
        f"{info.name}.{name}"
        for info in pkgutil.walk_packages(ganforge.__path__, prefix="ganforge.")
        for name, value in vars(importlib.import_module(info.name)).items()
        if inspect.isfunction(value) and value.__module__ == info.name
    }
    assert len(functions) > 100
    assert (functions & building_blocks()) == {"ganforge.metrics.features.auto_features"}
    assert set(PURE_FUNCTIONS) <= building_blocks()


def _targets(node: Any) -> Iterator[str]:
    """Every ``_target_`` value in a config tree."""
    if isinstance(node, dict):
        yield from ([node["_target_"]] if "_target_" in node else [])
        for value in node.values():
            yield from _targets(value)
    elif isinstance(node, list):
        for item in node:
            yield from _targets(item)


@pytest.mark.parametrize("experiment", ["fmnist_dcgan", "fmnist_cyclegan", "mnist_infogan", "fmnist_srgan", "grid"])
def test_the_config_a_run_saves_passes(experiment: str, tmp_path: Path) -> None:
    """What ganforge-train saves in a checkpoint (the resolved config) passes the check, game and all."""
    cfg = compose_config("train", [f"experiment={experiment}", f"paths.output_dir={tmp_path}"])
    if experiment == "fmnist_srgan":
        with open_dict(cfg):
            cfg.game.content = "features"
            cfg.game.features = cfg.metrics.features
    check_config(OmegaConf.to_container(cfg, resolve=True))


def test_load_checkpoint_refuses_a_pickled_object(checkpoint: Path, scene: Scene, tmp_path: Path) -> None:
    pickled = rewritten(checkpoint, tmp_path / "p.ckpt", lambda c: c["callbacks"].update(extra=Payload(scene.marker)))
    with pytest.raises(CheckpointError, match=r"holds a pickled object \(exec\).*sources you trust") as refused:
        load_checkpoint(pickled)
    assert str(pickled) in str(refused.value) and "\n" not in str(refused.value)
    assert scene.untouched()
    torch.load(pickled, map_location="cpu", weights_only=False)  # the control: it does run when unpickled
    assert scene.marker.exists()


@pytest.mark.parametrize("script", ["ganforge-sample", "ganforge-eval", "ganforge-encode", "ganforge-train"])
def test_entry_points_refuse_a_forged_checkpoint(script: str, checkpoint: Path, scene: Scene, tmp_path: Path) -> None:
    """The console scripts stop with one line, before the pickled payload or the file-writing target could run."""
    pickled = rewritten(checkpoint, tmp_path / "p.ckpt", lambda c: c["callbacks"].update(extra=Payload(scene.marker)))
    forged = rewritten(
        checkpoint, tmp_path / "f.ckpt", lambda c: FORGERIES["ganforge.train.train as the generator"](c, scene)
    )
    key = "ckpt_path" if script == "ganforge-train" else "ckpt"
    extra = [*TINY, f"paths.output_dir={tmp_path / 'run'}"] if script == "ganforge-train" else []
    result = run(str(BIN / script), *extra, f"{key}={pickled}", cwd=tmp_path)
    assert_clean_error(result, f"{script}: error: checkpoint {str(pickled)!r} holds a pickled object (exec)")
    result = run(str(BIN / script), *extra, f"{key}={forged}", cwd=tmp_path)
    assert_clean_error(result, f"{script}: error: the checkpoint's config names _target_ 'ganforge.train.train'")
    assert result.returncode == 1 and scene.untouched()


def test_resuming_loads_with_weights_only_even_when_torch_is_told_otherwise(
    checkpoint: Path, scene: Scene, tiny_cfg: Compose, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Behind ganforge's early check, Lightning's own load of ``ckpt_path`` is weights-only too:
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD unpickles everything in a load that does not ask explicitly."""
    pickled = rewritten(checkpoint, tmp_path / "p.ckpt", lambda c: c["callbacks"].update(extra=Payload(scene.marker)))
    real = load_checkpoint(checkpoint)
    monkeypatch.setattr("ganforge.train.load_checkpoint", lambda path: real)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        train(tiny_cfg(*FAST, "max_gen_steps=6", f"ckpt_path={pickled}"))
    assert scene.untouched()


def test_a_checkpoint_decides_no_download_and_no_worker_processes(checkpoint: Path, tmp_path: Path) -> None:
    """The data built from a checkpoint reads what is there: a forged download=true or num_workers does nothing."""
    contents = load_checkpoint(checkpoint)
    contents["hyper_parameters"]["data"] |= {"download": True, "num_workers": 64, "data_dir": str(tmp_path)}
    cfg = checkpoint_config(contents)
    assert cfg.data.download is False and cfg.data.num_workers == 0 and cfg.data.data_dir == str(tmp_path)
    assert not {"trainer", "callbacks", "logger", "metrics"} & set(cfg)


def test_a_real_checkpoint_still_samples_and_resumes(checkpoint: Path, tiny_cfg: Compose, tmp_path: Path) -> None:
    """What ganforge-train writes passes every check: it samples, and training resumes from it."""
    generator, cfg = generator_from_checkpoint(load_checkpoint(checkpoint))
    assert type(generator).__name__ == "DCGANGenerator" and cfg.data._target_ == "ganforge.data.FashionMNISTDataModule"
    out = sample(compose_config("sample", [f"ckpt={checkpoint}", "n=16", f"out={tmp_path / 's.npz'}"]))
    assert np.load(out)["arr_0"].shape == (16, 28, 28, 1)

    train(tiny_cfg(*FAST, "max_gen_steps=6", f"ckpt_path={checkpoint}"))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["ganforge"]["generator_steps"] == 6
