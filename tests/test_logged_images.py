"""Every image ganforge logs reaches W&B's offline media files and TensorBoard as the PNG it writes on disk."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from ganforge.train import train
from tests.conftest import TINY, compose_config
from tests.test_translation import CYCLE_TINY

QUIET = ["~callbacks.image_metrics", "~callbacks.best_checkpoint"]
#: Each kind of logged image: the run's overrides, the logged key and the folder of its PNGs on disk.
RUNS = {
    "sample grids": ([*TINY, *QUIET, "callbacks.samples.every_n_gen_steps=5"], "samples", "samples"),
    "translation grids": (
        [
            *CYCLE_TINY,
            "~callbacks.best_checkpoint",
            "~callbacks.translation_metrics",
            "callbacks.translation_grid.every_n_gen_steps=5",
        ],
        "translations",
        "samples",
    ),
    "scatter plots": (
        [*TINY[3:], "experiment=ring", "callbacks.mode_coverage.every_n_gen_steps=5"],
        "scatter",
        "scatter",
    ),
}


def pixels(png: bytes | Path) -> np.ndarray:
    """A PNG's pixels as RGB (matplotlib's PNGs are RGBA, opaque)."""
    data = png.read_bytes() if isinstance(png, Path) else png
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(RUNS))
def test_logged_images_equal_the_pngs_on_disk(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An offline W&B run's media files and TensorBoard's images hold the same pixels as the run's PNGs, step for
    step (the W&B grids were black: a float image cast to 8 bits without scaling)."""
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides, key, folder = RUNS[kind]
    run = tmp_path / "run"
    train(compose_config("train", [*overrides, "max_gen_steps=10", "logger=many", f"paths.output_dir={run}"]))

    on_disk = [pixels(path) for path in sorted((run / folder).glob("gen_step_*[0-9].png"))]
    assert len(on_disk) == 2 and all(image.max() > 0 for image in on_disk)  # steps 5 and 10
    media = sorted((run / "wandb").glob(f"offline-run-*/files/media/images/{key}_*.png"))
    logged = [pixels(path) for path in media]
    assert len(logged) == len(on_disk)
    for image in on_disk:
        assert sum(np.array_equal(image, other) for other in logged) == 1

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={IMAGES: 0})
    events.Reload()
    board = events.Images(key)
    assert [event.step for event in board] == [5, 10]
    for event, image in zip(board, on_disk, strict=True):
        np.testing.assert_array_equal(pixels(event.encoded_image_string), image)
