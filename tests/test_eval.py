"""ganforge-eval: real images score near the real-data floor, noise far above it; bad input is clear."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from torch_fidelity import feature_extractor_inceptionv3 as fidelity_inception

from ganforge.data.datamodules import FashionMNISTDataModule
from ganforge.errors import GanforgeError
from ganforge.evaluate import evaluate
from tests.conftest import compose_config
from tests.test_cli import BIN, assert_clean_error, run

#: Counts small enough for a CPU test; the floor and the scored files use the same ones.
COUNTS = ["metrics.n_samples=2000", "metrics.n_real=2000", "metrics.scorer.kid_subset_size=500"]


def offline(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("no network")


def write_npz(path: Path, images: np.ndarray) -> Path:
    np.savez(path, arr_0=images)
    return path


@pytest.fixture(scope="module")
def floor(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("floor") / "floor.json"
    return evaluate(compose_config("eval", ["floor=true", "data=fashion_mnist", f"out={out}", *COUNTS]))


def test_real_test_images_score_at_the_floor_and_noise_far_above(floor: dict, tmp_path: Path) -> None:
    """The CLI on 2,000 real test images (other than the floor's subset where possible) gives an FID
    within 20 % of the train-vs-test floor; uniform noise gives at least 50x the floor."""
    test_images = FashionMNISTDataModule(data_dir=str(tmp_path)).load_split(train=False).images
    real = write_npz(tmp_path / "real.npz", test_images[-2000:].permute(0, 2, 3, 1).numpy())
    result = run(str(BIN / "ganforge-eval"), f"samples={real}", "data=fashion_mnist", *COUNTS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    scored = json.loads((tmp_path / "real_domain_metrics.json").read_text())
    assert "fid" in result.stdout
    assert floor["metrics"]["fid"] > 0
    assert scored["metrics"]["fid"] == pytest.approx(floor["metrics"]["fid"], rel=0.2)
    assert scored["protocol"]["n_generated"] == floor["protocol"]["n_generated"] == 2000
    assert scored["protocol"]["extractor"] == floor["protocol"]["extractor"]
    assert floor["protocol"]["generated"].startswith("Fashion-MNIST test split")

    noise = np.random.default_rng(0).integers(0, 256, size=(2000, 28, 28, 1), dtype=np.uint8)
    noisy = evaluate(
        compose_config("eval", [f"samples={write_npz(tmp_path / 'noise.npz', noise)}", "data=fashion_mnist", *COUNTS])
    )
    assert noisy["metrics"]["fid"] >= 50 * floor["metrics"]["fid"]
    assert noisy["metrics"]["precision"] < 0.05 < floor["metrics"]["precision"]


def test_floor_json_states_the_protocol(floor: dict) -> None:
    protocol = floor["protocol"]
    assert protocol["reference"] == "Fashion-MNIST train split, seeded subset (seed 0)"
    assert protocol["resolution"] == 28
    assert protocol["n_reference"] == 2000 and protocol["kid_subset_size"] == 500 and protocol["is_splits"] == 10
    assert protocol["extractor"].startswith("domain:fashion_mnist:")
    assert 1.0 < floor["metrics"]["is"] <= 10.0
    # Real images carry labels: the classifier's accuracy on 2,000 test images (90.69 % on all 10,000)
    # and the intra-class FID floor.
    assert floor["metrics"]["class_accuracy"] == pytest.approx(0.907, abs=0.02)
    assert 0 < floor["metrics"]["intra_fid"] < 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["samples=missing.npz", "data=fashion_mnist"], "does not exist"),
        (["floor=true", "samples=x.npz", "data=fashion_mnist"], "exactly one of"),
        (["samples=float.npz", "data=fashion_mnist"], "expected uint8 images"),
        (["samples=float.npz"], "data=fashion_mnist"),
        (["floor=true", "data=cifar10"], "metrics.features.weights_path=PATH"),
        (["floor=true", "data=cifar10", "metrics/features=domain"], "no domain classifier"),
    ],
)
def test_bad_input_is_a_clear_error(
    overrides: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing or malformed input, and Inception weights that cannot be downloaded (no network)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fidelity_inception, "load_state_dict_from_url", offline)
    write_npz(tmp_path / "float.npz", np.zeros((4, 28, 28, 1), dtype=np.float32))
    with pytest.raises(GanforgeError, match=message):
        evaluate(compose_config("eval", overrides))


def test_cli_error_has_no_traceback(tmp_path: Path) -> None:
    result = run(str(BIN / "ganforge-eval"), "samples=missing.npz", "data=fashion_mnist", cwd=tmp_path)
    assert_clean_error(result, "ganforge-eval: error:", "does not exist")
