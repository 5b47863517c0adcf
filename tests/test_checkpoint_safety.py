"""A checkpoint cannot make ganforge run code: pickled objects and foreign ``_target_`` s are refused.

Every payload here would create a marker file if it ran; the controls show that it does run when
unpickled or instantiated without ganforge's checks.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from ganforge.config import generator_from_checkpoint, load_checkpoint
from ganforge.errors import CheckpointError
from ganforge.sample import sample
from ganforge.train import train
from tests.conftest import TINY, Compose, compose_config
from tests.test_cli import BIN, assert_clean_error, run

#: A tiny run without the metric callbacks, whose evaluation would only cost time here.
FAST = ["~callbacks.image_metrics", "~callbacks.best_checkpoint"]

#: Targets Hydra itself lets through that would write a file: the allowlist is what stops them.
FOREIGN = {
    "builtins.open": lambda marker: [str(marker), "w"],
    "torch.save": lambda marker: [{}, str(marker)],
    "ganforge.config.torch.save": lambda marker: [{}, str(marker)],  # an allowed prefix reaching torch via an import
}


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


def rewritten(checkpoint: Path, out: Path, edit: Any) -> Path:
    """A copy of ``checkpoint`` at ``out`` after ``edit(contents)``."""
    contents = torch.load(checkpoint, map_location="cpu", weights_only=True)
    edit(contents)
    torch.save(contents, out)
    return out


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "marker"


@pytest.fixture
def pickled(checkpoint: Path, tmp_path: Path, marker: Path) -> Path:
    """The real checkpoint with a pickled payload among its callback states."""
    return rewritten(checkpoint, tmp_path / "pickled.ckpt", lambda c: c["callbacks"].update(extra=Payload(marker)))


def with_generator(checkpoint: Path, out: Path, node: dict[str, Any]) -> Path:
    return rewritten(checkpoint, out, lambda c: c["hyper_parameters"]["model"].update(generator=node))


def test_the_payloads_run_without_the_checks(pickled: Path, marker: Path) -> None:
    """Controls: the pickled payload runs under weights_only=False, and Hydra builds each foreign target."""
    torch.load(pickled, map_location="cpu", weights_only=False)
    assert marker.is_file()
    for target, args in FOREIGN.items():
        marker.unlink()
        instantiate({"_target_": target, "_args_": args(marker)})
        assert marker.is_file(), target


def test_load_checkpoint_refuses_a_pickled_object(pickled: Path, marker: Path) -> None:
    with pytest.raises(CheckpointError, match=r"holds a pickled object \(exec\).*sources you trust") as refused:
        load_checkpoint(pickled)
    assert str(pickled) in str(refused.value) and "\n" not in str(refused.value)
    assert not marker.exists()


@pytest.mark.parametrize("script", ["ganforge-sample", "ganforge-eval", "ganforge-train"])
def test_entry_points_refuse_a_pickled_object(script: str, pickled: Path, marker: Path, tmp_path: Path) -> None:
    """Sampling, evaluating and resuming all stop with one message, before the payload could run."""
    key = "ckpt_path" if script == "ganforge-train" else "ckpt"
    extra = [*TINY, f"paths.output_dir={tmp_path / 'run'}"] if script == "ganforge-train" else []
    result = run(str(BIN / script), *extra, f"{key}={pickled}", cwd=tmp_path)
    assert result.returncode == 1
    assert_clean_error(result, f"{script}: error: checkpoint {str(pickled)!r} holds a pickled object (exec)")
    assert not marker.exists()


def test_resuming_loads_with_weights_only_even_when_torch_is_told_otherwise(
    pickled: Path, marker: Path, tiny_cfg: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind ganforge's early check, Lightning's own load of ``ckpt_path`` is weights-only too:
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD unpickles everything in a load that does not ask explicitly."""
    monkeypatch.setattr("ganforge.train.load_checkpoint", lambda path: None)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        train(tiny_cfg(*FAST, "max_gen_steps=6", f"ckpt_path={pickled}"))
    assert not marker.exists()


@pytest.mark.parametrize("target", [*FOREIGN, "os.system", "subprocess.Popen"])
def test_a_foreign_target_is_refused_before_it_is_built(
    target: str, checkpoint: Path, tmp_path: Path, marker: Path
) -> None:
    args = FOREIGN[target](marker) if target in FOREIGN else [f"touch {marker}"]
    forged = load_checkpoint(with_generator(checkpoint, tmp_path / "forged.ckpt", {"_target_": target, "_args_": args}))
    with pytest.raises(CheckpointError, match=rf"names _target_ '{target}' \(at model.generator\).*sources you trust"):
        generator_from_checkpoint(forged)
    assert not marker.exists()


def test_foreign_targets_anywhere_in_what_is_built_and_interpolations_are_refused(
    checkpoint: Path, tmp_path: Path
) -> None:
    """model and data are walked, lists included; an interpolation (saved configs are resolved) is refused.
    A user's own callback is only read from a checkpoint, never built, so it does not make it unusable."""
    contents = load_checkpoint(checkpoint)
    contents["hyper_parameters"]["model"]["extra"] = {"hooks": [{"_target_": "builtins.eval", "_args_": ["1"]}]}
    with pytest.raises(CheckpointError, match=r"'builtins.eval' \(at model.extra.hooks\[0\]\)"):
        generator_from_checkpoint(contents)
    contents = load_checkpoint(checkpoint)
    contents["hyper_parameters"]["data"]["data_dir"] = "${oc.env:HOME}"
    with pytest.raises(CheckpointError, match=r"interpolation '\$\{oc.env:HOME\}' \(at data.data_dir\)"):
        generator_from_checkpoint(contents)
    contents = load_checkpoint(checkpoint)
    contents["hyper_parameters"]["callbacks"]["mine"] = {"_target_": "my_package.MyCallback"}
    generator, _ = generator_from_checkpoint(contents)
    assert generator.latent_dim > 0


def test_entry_points_refuse_a_foreign_target(checkpoint: Path, tmp_path: Path, marker: Path) -> None:
    """ganforge-sample builds the checkpoint's generator, ganforge-eval also its data: neither runs a foreign one."""
    node = {"_target_": "torch.save", "_args_": [{}, str(marker)]}
    forged = with_generator(checkpoint, tmp_path / "generator.ckpt", node)
    result = run(str(BIN / "ganforge-sample"), f"ckpt={forged}", cwd=tmp_path)
    assert result.returncode == 1
    assert_clean_error(result, "ganforge-sample: error: the checkpoint's config names _target_ 'torch.save'")

    forged = rewritten(checkpoint, tmp_path / "data.ckpt", lambda c: c["hyper_parameters"].update(data=node))
    result = run(str(BIN / "ganforge-eval"), f"ckpt={forged}", cwd=tmp_path)
    assert result.returncode == 1
    assert_clean_error(result, "ganforge-eval: error: the checkpoint's config names _target_ 'torch.save' (at data)")
    assert not marker.exists()


def test_a_real_checkpoint_still_samples_and_resumes(checkpoint: Path, tiny_cfg: Compose, tmp_path: Path) -> None:
    """What ganforge-train writes passes both checks: it samples, and training resumes from it."""
    generator, cfg = generator_from_checkpoint(load_checkpoint(checkpoint))
    assert type(generator).__name__ == "DCGANGenerator" and cfg.data._target_ == "ganforge.data.FashionMNISTDataModule"
    out = sample(compose_config("sample", [f"ckpt={checkpoint}", "n=16", f"out={tmp_path / 's.npz'}"]))
    assert np.load(out)["arr_0"].shape == (16, 28, 28, 1)

    train(tiny_cfg(*FAST, "max_gen_steps=6", f"ckpt_path={checkpoint}"))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["ganforge"]["generator_steps"] == 6
