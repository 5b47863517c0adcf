"""The checkpoint-exploration notebook runs end to end on a checkpoint trained here."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat import NotebookNode

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "explore_checkpoint.ipynb"
BIN = Path(sys.executable).parent


def cell(notebook: NotebookNode, marker: str) -> NotebookNode:
    """The one code cell whose source holds ``marker``: assertions survive cells being added or moved."""
    (found,) = (c for c in notebook.cells if c.cell_type == "code" and marker in c.source)
    return found


def stdout(code_cell: NotebookNode) -> str:
    return "".join(o.text for o in code_cell.outputs if o.output_type == "stream" and o.name == "stdout")


def has_image(code_cell: NotebookNode) -> bool:
    return any("image/png" in o.get("data", {}) for o in code_cell.outputs)


def test_explore_checkpoint_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As after `make train`: a 4-step MNIST-5k run by ganforge-train in an empty folder, then the notebook
    started there without naming the checkpoint. Every cell runs, the grids are images and the domain FID
    of 200 samples is finite."""
    # The notebook computes the metric itself; the training-time metric callbacks would only cost time.
    overrides = [*TINY, "data=mnist_5k", "max_gen_steps=4", "~callbacks.image_metrics", "~callbacks.best_checkpoint"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GANFORGE_CKPT")}
    trained = subprocess.run([str(BIN / "ganforge-train"), *overrides], cwd=tmp_path, env=env, capture_output=True)
    assert trained.returncode == 0, trained.stderr[-2000:]
    (run_dir,) = (tmp_path / "outputs" / "mnist_5k_dcgan" / "runs").iterdir()
    monkeypatch.delenv("GANFORGE_CKPT", raising=False)
    monkeypatch.setenv("GANFORGE_N_METRIC", "200")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # "python3" is the ipykernel of this interpreter's environment (jupyter_client's native kernel);
    # execute() raises CellExecutionError on the first cell that errors.
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    opened = run_dir.relative_to(tmp_path) / "checkpoints" / "last.ckpt"  # found by the notebook itself
    run = stdout(cell(notebook, "load_checkpoint(CKPT)"))
    assert f"checkpoint: {opened}" in run
    assert "MNIST5kDataModule" in run and "4 G steps" in run and "EMA generator" in run
    assert has_image(cell(notebook, "show(next(generate_batches"))
    assert has_image(cell(notebook, "slerp(ends[0], ends[1]"))
    assert "unconditional model" in stdout(cell(notebook, "num_classes"))

    metric = stdout(cell(notebook, "reference_scorer("))
    scores = {name: float(value) for name, value in re.findall(r"^\s*(\w+): (\S+)$", metric, re.MULTILINE)}
    assert scores.keys() >= {"fid", "kid", "is", "precision", "recall"}
    assert math.isfinite(scores["fid"]) and scores["fid"] > 0
    assert 1 - 1e-4 <= scores["is"] <= 10  # IS lies between 1 and the number of classes
    assert "200 samples of the EMA generator" in metric and "200 images of the MNIST-5k train split" in metric
    assert "domain:mnist:" in metric and "ganforge-eval floor=true data=mnist_5k metrics.n_samples=200" in metric
