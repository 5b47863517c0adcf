"""Where ganforge-eval writes its JSON: beside what it scored, whatever the input, unless out= names the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ganforge.evaluate import evaluate
from ganforge.train import train
from tests.conftest import TINY, compose_config

COUNTS = ["metrics.n_samples=100", "metrics.n_real=100", "metrics.batch_size=50", "metrics.scorer.kid_subset_size=50"]


def scored_to(path: Path, overrides: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Evaluate; the JSON at ``path`` holds the returned scores and protocol, and the last line printed names it."""
    result = evaluate(compose_config("eval", [*overrides, *COUNTS]))
    assert json.loads(path.read_text()) == result
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote the scores and their protocol to {path}"


def test_the_json_lands_beside_what_was_scored_or_at_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    train(compose_config("train", [*TINY, f"paths.output_dir={run}", "max_gen_steps=2"]))
    capsys.readouterr()
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)

    # A checkpoint in a run's checkpoints/: the run folder, named after the checkpoint and the extractor.
    scored_to(run / "last_domain_metrics.json", [f"ckpt={run / 'checkpoints' / 'last.ckpt'}"], capsys)
    # A checkpoint anywhere else: its own folder.
    moved = tmp_path / "shared" / "model.ckpt"
    moved.parent.mkdir()
    shutil.copy(run / "checkpoints" / "last.ckpt", moved)
    scored_to(moved.parent / "model_domain_metrics.json", [f"ckpt={moved}"], capsys)
    # A samples file: its folder, named after it.
    samples = tmp_path / "drawn" / "samples.npz"
    samples.parent.mkdir()
    np.savez(samples, arr_0=np.random.default_rng(0).integers(0, 256, (100, 28, 28, 1), dtype=np.uint8))
    scored_to(samples.parent / "samples_domain_metrics.json", [f"samples={samples}", "data=fashion_mnist"], capsys)
    # The floor scores a dataset, not a file: the current folder, named after the dataset.
    floor = ["floor=true", "data=fashion_mnist"]
    scored_to(here / "floor_fashion_mnist_domain_metrics.json", floor, capsys)
    # out= wins, relative to the current folder.
    scored_to(here / "mine" / "floor.json", [*floor, "out=mine/floor.json"], capsys)

    assert sorted(p.name for p in here.rglob("*.json")) == ["floor.json", "floor_fashion_mnist_domain_metrics.json"]
    assert not list((run / "checkpoints").glob("*.json"))  # not among the checkpoints, as it was
