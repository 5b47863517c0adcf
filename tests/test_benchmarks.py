"""Smoke tests of benchmarks/: each script runs a few steps end to end, so a renamed API cannot rot it unnoticed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from scipy.optimize import linear_sum_assignment

from ganforge.config import build, build_module
from ganforge.metrics.classifier import VERSIONS, classifier_path, load_classifier, packaged_weights

ROOT = Path(__file__).resolve().parents[1]
TINY_NETS = ["model.generator.width=8", "model.discriminator.width=8"]


def run_benchmark(script: str, *args: str) -> str:
    """Run ``benchmarks/<script>`` with this interpreter; its stdout (a failure shows its output)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def train(run: Path, *overrides: str) -> None:
    """A short ``ganforge-train`` whose whole run folder (train.log included) is ``run``, never the repo's outputs/."""
    command = [str(Path(sys.executable).with_name("ganforge-train")), *overrides, f"hydra.run.dir={run}"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_throughput_runs_both_loops_and_prints_the_ratio() -> None:
    override = [arg for o in TINY_NETS for arg in ("--override", o)]
    out = run_benchmark(
        "throughput.py", "--steps", "2", "--warmup", "1", "--repeats", "1", "--batch-size", "16", *override
    )
    assert re.search(r"^ratio \d+\.\d{3}$", out.splitlines()[-1])
    assert "batch 16" in out


@pytest.mark.slow
def test_mode_collapse_scores_a_seed_and_tabulates_it(tmp_path: Path) -> None:
    """One seed of our ring configuration for 20 generator steps: its mode coverage reaches the table."""
    out = run_benchmark(
        "mode_collapse.py", "--seeds", "1", "--only", "ours", "--datasets", "ring", "--out", str(tmp_path),
        "--no-write", "max_gen_steps=20", *TINY_NETS,
    )  # fmt: skip
    (result,) = tmp_path.glob("ring/ours/*/mode_coverage.json")
    scores = json.loads(result.read_text())
    assert scores["gen_step"] == 20
    row = next(line for line in out.splitlines() if line.startswith("| **ganforge (experiment=ring / grid)** |"))
    assert f"| {scores['modes']:.1f} ± 0.0 |" in row and "| 1/0 |" in row


@pytest.mark.slow
def test_objectives_ring_scores_each_objective_and_tabulates_it(tmp_path: Path) -> None:
    """One seed of two objectives on the ring for 20 generator steps: each one's mode coverage reaches its row."""
    out = run_benchmark(
        "objectives_ring.py", "--seeds", "1", "--steps", "20", "--only", "nonsaturating", "maximum_likelihood",
        "--out", str(tmp_path), *TINY_NETS,
    )  # fmt: skip
    for name in ("nonsaturating", "maximum_likelihood"):
        (result,) = tmp_path.glob(f"{name}/*/mode_coverage.json")
        scores = json.loads(result.read_text())
        assert scores["gen_step"] == 20
        row = next(line for line in out.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"| {scores['modes']:.1f} ± 0.0 | {scores['high_quality']:.1f} ± 0.0 |" in row and "| 1/1 |" in row


def test_modulated_conv_times_both_forms_on_every_layer() -> None:
    """Both forms agree on every layer (the script checks) and each layer gets a row, G's total the ratio."""
    out = run_benchmark("modulated_conv.py", "--width", "8", "--max-width", "16", "--resolution", "8",
                        "--batch", "4", "--steps", "1", "--repeats", "1")  # fmt: skip
    rows = [line for line in out.splitlines() if re.match(r"^\| \d+ -> \d+, 3, \d+x\d+ \|", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["16 -> 16, 3, 4x4", "16 -> 8, 3, 8x8", "8 -> 8, 3, 8x8"]
    assert re.search(r"^ratio \d+\.\d{3}$", out.splitlines()[-1])


@pytest.mark.slow
def test_wall_time_trains_within_the_budget_and_tabulates_the_metrics(tmp_path: Path) -> None:
    """A one-second training budget (a tiny DCGAN, small metric counts), two runs side by side, one with
    its own overrides (one a deletion, ``~``, which its run folder must not carry into ``hydra.run.dir``): each
    run's final metrics reach its row, and the own overrides reach only that run."""
    metrics = [
        "metrics.n_samples=100",
        "metrics.n_real=100",
        "metrics.batch_size=50",
        "metrics.scorer.kid_subset_size=50",
    ]
    limited = "fmnist_dcgan data.subset=64 metrics.reference_split=test ~callbacks.samples"  # a deletion too
    out = run_benchmark(
        "wall_time.py", "fmnist_dcgan", limited, "--minutes", "0.02", "--reserve", "0", "--concurrent", "2",
        "--out", str(tmp_path), "--no-write", "--overrides", *TINY_NETS, "data.batch_size=16", *metrics,
    )  # fmt: skip
    (results,) = tmp_path.glob("*/results.json")
    runs = json.loads(results.read_text())
    for label in ("fmnist_dcgan", limited):
        fid = runs[label]["metrics"]["fid"]
        row = next(line for line in out.splitlines() if line.startswith(f"| {label} |"))
        assert f"| {fid:.4g} |" in row
    assert "trained_on" not in runs["fmnist_dcgan"]["protocol"]
    assert "train split" in runs["fmnist_dcgan"]["protocol"]["reference"]
    assert runs[limited]["protocol"]["trained_on"].startswith("64 samples of the training split")
    assert "test split" in runs[limited]["protocol"]["reference"]


@pytest.mark.slow
def test_infogan_codes_trains_a_seed_and_scores_q_and_g(tmp_path: Path) -> None:
    """Two generator steps of mnist_infogan; both figures recomputed here by hand from the run's checkpoint (Q's
    code for each real test digit, the domain classifier's class for G's images of each code value, the best
    one-to-one assignment), and --runs scores the same run again without training."""
    tiny = ["max_gen_steps=2", "model.generator.net.width=8", "model.discriminator.width=8"]
    args = ["mnist_infogan", "--seeds", "0", "--per-value", "20", "--out", str(tmp_path)]
    out = run_benchmark("infogan_codes.py", *args, "--overrides", *tiny)
    (row,) = [line for line in out.splitlines() if line.startswith("| 0 | 2 |")]
    q, coded = (float(cell) for cell in row.split("|")[3:5])

    (run,) = tmp_path.glob("*/seed0")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    cfg = OmegaConf.create(checkpoint["hyper_parameters"])
    module = build_module(cfg)
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    test = build(cfg.data).load_split(train=False)
    classifier, _ = load_classifier(classifier_path("mnist"))
    rng = torch.Generator().manual_seed(0)  # --sample-seed's default
    generator = module.generator_ema.module
    with torch.no_grad():
        inferred = module.game.q_head(module.discriminator.features(test.images.float() / 127.5 - 1))[0][0]
        drawn = [
            classifier(generator(generator.with_codes(torch.randn(20, generator.latent_dim, generator=rng), [v])))
            for v in range(10)
        ]

    def best_one_to_one(values: torch.Tensor, classes: torch.Tensor) -> float:
        counts = np.zeros((10, 10))
        np.add.at(counts, (values.numpy(), classes.numpy()), 1)
        rows, cols = linear_sum_assignment(counts, maximize=True)
        return float(counts[rows, cols].sum() / counts.sum())

    assert len(test.labels) == 1000
    assert q == pytest.approx(best_one_to_one(inferred.argmax(1), test.labels), abs=5e-4)
    assert coded == pytest.approx(
        best_one_to_one(torch.arange(10).repeat_interleave(20), torch.cat(drawn).argmax(1)), abs=5e-4
    )
    assert re.search(r"^code accuracy \d\.\d{4} ± nan$", out.splitlines()[-1])
    again = run_benchmark("infogan_codes.py", *args, "--runs", str(run.parent))
    assert row in again.splitlines()


@pytest.mark.slow
def test_encoders_scores_trained_and_initial_codes(tmp_path: Path) -> None:
    """Two steps of mnist_aae_clusters: probes, 1-NN, reconstruction and clusters, trained and at init; the
    probes of the initial encoder trained on labels."""
    out = run_benchmark("encoders.py", "mnist_aae_clusters", "--seeds", "0", "--train-images", "500", "--out",
                        str(tmp_path), "--supervised-epochs", "3", "--overrides", "max_gen_steps=2",
                        "model.generator.net.width=8", "game.encoder.width=8")  # fmt: skip
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip() for line in out.splitlines() if line.startswith("| ")
    }
    for name in ("probe", "1-NN", "reconstruction MSE", "cluster accuracy"):
        for when in ("trained", "at init"):
            value = float(rows[f"{name}, {when}"].split(" ± ")[0])
            assert 0 < value < (1 if name != "reconstruction MSE" else 4), (name, when, value)
    assert "probe gain over init" in rows
    supervised = {name: float(rows[f"{name}, supervised"].split(" ± ")[0]) for name in ("probe", "1-NN")}
    assert supervised["probe"] > float(rows["probe, at init"].split(" ± ")[0]) + 0.1, (supervised, rows)
    assert "reconstruction MSE, supervised" not in rows


def test_translation_baselines_score_the_source_and_the_mean_image() -> None:
    """paired_lowres4 on 64 test pairs: bicubic upsampling is closer to the targets than the mean image."""
    out = run_benchmark("translation_baselines.py", "paired_lowres4", "--n", "64", "--overrides",
                        "metrics.scorer.kid_subset_size=16")  # fmt: skip
    rows = {line.split("|")[2].strip(): line.split("|")[3:-1] for line in out.splitlines() if "| paired_" in line}
    assert set(rows) == {"source as output", "mean training image"}
    psnr = {label: float(cells[0]) for label, cells in rows.items()}
    assert all(cells[3].strip() == "–" for cells in rows.values())  # target_class: the data names no target classes
    assert 10 < psnr["mean training image"] < psnr["source as output"] < 40


def test_startup_times_help_and_the_import_of_a_command() -> None:
    """One command, one run: its row has both times and the packages its module imports slowest (torch among
    them), which its --help no longer waits for."""
    out = run_benchmark("startup.py", "--repeats", "1", "--commands", "sample", "--top", "6")
    (row,) = (line for line in out.splitlines() if line.startswith("| ganforge-sample |"))
    help_s, import_s, slowest = (cell.strip() for cell in row.strip("|").split("|")[1:])
    assert float(help_s) > 0 and float(import_s) > 0
    assert len(slowest.split(", ")) == 6 and "torch" in {entry.split()[0] for entry in slowest.split(", ")}


@pytest.mark.slow
def test_disturbances_score_every_strength_in_two_spaces(tmp_path: Path) -> None:
    """Two shipped classifiers on 500 images a side: every disturbance has its clean set and five strengths, the
    noise's FID rises, every metric's own noise is measured, and the spaces' rank agreement is reported."""
    weights = [str(packaged_weights("fashion_mnist", v)) for v in VERSIONS]
    out = run_benchmark("disturbances.py", "--n", "500", "--out", str(tmp_path), "--weights", *weights)
    result = json.loads((tmp_path / "disturbances_fashion_mnist.json").read_text())
    assert len(result["tables"]) == 2 and (tmp_path / "disturbances_fashion_mnist.png").stat().st_size > 10_000
    for table in result["tables"].values():
        assert len(table["disturbances"]) == 9 and all(len(rows) == 6 for rows in table["disturbances"].values())
        noise = [row["fid"] for row in table["disturbances"]["gaussian noise (σ, [-1, 1] scale)"]]
        assert noise == sorted(noise) and noise[-1] > 10 * noise[0]
        assert set(table["noise"]) == {"fid", "kid", "precision", "recall", "density", "coverage"}
        assert all(0 < sd < 0.2 for m, sd in table["noise"].items() if m != "fid")
        collapse = table["disturbances"]["within-class collapse (distinct per class)"]
        assert [row["distinct"] for row in collapse][-1] == 10 and collapse[0]["distinct"] == 500
    (pair,) = result["agreement"]
    assert -1 <= result["agreement"][pair]["kendall_tau"] <= 1
    assert "rank agreement" in out and "| black rectangles (side, px): 4 / 6 / 8 / 10 / 12 |" in out


@pytest.mark.slow
def test_disturbances_run_on_the_mnist_digits(tmp_path: Path) -> None:
    """--domain mnist: MNIST-5k digits against MNIST-5k digits, Fashion-MNIST mixed in; the mixture's FID rises."""
    weights = str(packaged_weights("mnist", VERSIONS[-1]))
    run_benchmark("disturbances.py", "--domain", "mnist", "--n", "200", "--out", str(tmp_path), "--weights", weights)
    result = json.loads((tmp_path / "disturbances_mnist.json").read_text())
    (table,) = result["tables"].values()
    mixed = [row["fid"] for row in table["disturbances"]["other dataset mixed in (share)"]]
    assert result["domain"] == "mnist" and mixed == sorted(mixed) and mixed[-1] > 10 * mixed[1]


@pytest.mark.slow
def test_pr_estimators_score_every_disturbance_and_count_the_steps_back(tmp_path: Path) -> None:
    """200 images a side, 2 clean draws: every estimator scores the clean set and five strengths of each
    disturbance, the heaviest noise lowers every diversity (and the fidelity of the estimators without k-NN balls
    around each real image), and the table counts each estimator's steps back."""
    out = run_benchmark("pr_estimators.py", "--seeds", "0", "--n", "200", "--draws", "2", "--out", str(tmp_path))
    record = json.loads((tmp_path / "pr_estimators.json").read_text())
    result = record["results"]["0"]
    estimators = ["improved k=3", "improved k=5", "improved k=10", "probabilistic", "PRD", "density/coverage"]
    assert list(result["noise"]) == estimators and len(result["disturbances"]) == 9
    noise = result["disturbances"]["gaussian noise (σ, [-1, 1] scale)"]
    assert len(noise) == 6 and noise[0]["distinct"] == 200
    assert all(noise[-1]["scores"][e][1] < noise[0]["scores"][e][1] for e in estimators)
    assert all(noise[-1]["scores"][e][0] < noise[0]["scores"][e][0] for e in estimators[3:])
    for estimator in estimators:
        (row,) = (line for line in out.splitlines() if line.startswith(f"| {estimator} |"))
        assert row.endswith(f"| {len(record['steps back']['0'][estimator])} of 16 |")


def test_pr_estimators_agree_with_their_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Improved precision/recall for several k from one distance matrix equal torch-fidelity's (ganforge's scorer);
    P-precision/P-recall equal Park & Kim's formula written out point by point; PRD is 1 for a set against itself
    and 0 for sets far apart."""
    from torch_fidelity.metric_prc import prc_features_to_metric

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import pr_estimators

    generator = torch.Generator().manual_seed(0)
    real, fake = torch.randn(120, 6, generator=generator), 0.5 + 1.3 * torch.randn(90, 6, generator=generator)
    scores = pr_estimators.Reference(real).scores(fake, seed=0)
    for k in pr_estimators.IMPROVED_KS:
        reference = prc_features_to_metric(fake, real, prc_neighborhood=k, verbose=False)
        assert scores[f"improved k={k}"] == pytest.approx((reference["precision"], reference["recall"]), abs=1e-6)

    def p_score(points: torch.Tensor, balls: torch.Tensor) -> float:
        within = torch.cdist(balls, balls)
        radius = 1.2 * torch.stack([row.sort().values[4] for row in within]).mean()
        total = 0.0
        for point in points:
            outside = 1.0
            for centre in balls:
                outside *= 1 - max(0.0, 1 - float((point - centre).norm()) / float(radius))
            total += 1 - outside
        return total / len(points)

    assert scores["probabilistic"] == pytest.approx((p_score(fake, real), p_score(real, fake)), rel=1e-5)
    assert pr_estimators.prd(real.numpy(), real.numpy(), seed=0) == pytest.approx((1.0, 1.0), abs=1e-6)
    assert pr_estimators.prd(real.numpy(), real.numpy() + 100, seed=0) == pytest.approx((0.0, 0.0), abs=1e-6)


@pytest.mark.slow
def test_stacked_mnist_trains_every_pack_size_for_equal_steps_and_tabulates_the_modes(tmp_path: Path) -> None:
    """One seed each of packs 1 and 3 for 2 generator steps (few samples scored): each run's modes, KL and confident
    modes reach its row, at the same step."""
    counts = ["metrics.n_samples=100", "metrics.n_real=100", "metrics.batch_size=50"]
    out = run_benchmark(
        "stacked_mnist.py", "--seeds", "1", "--packs", "1", "3", "--steps", "2", "--parallel", "1",
        "--out", str(tmp_path), *TINY_NETS, *counts, "metrics.scorer.kid_subset_size=50",
    )  # fmt: skip
    for pack in (1, 3):
        (result,) = tmp_path.glob(f"pack{pack}/*/metrics.json")
        saved = json.loads(result.read_text())
        scores = saved["metrics"]
        assert saved["gen_step"] == 2 and saved["protocol"]["n_generated"] == 100
        assert 1 <= scores["confident_modes"] <= scores["modes"] <= 100 and 0 <= scores["kl"] <= np.log(1000) + 1e-9
        row = next(line for line in out.splitlines() if line.startswith(f"| {pack} |"))
        modes, kl, confident = scores["modes"], scores["kl"], scores["confident_modes"]
        assert row.startswith(f"| {pack} | {modes:.1f} ± 0.0 | {kl:.2f} ± 0.00 | {confident:.1f} ± 0.0 | 1 | 2 |")


@pytest.mark.slow
def test_truncation_scores_each_threshold_and_judges_amenability(tmp_path: Path) -> None:
    """A 3-step fmnist_biggan scored untruncated and at two thresholds: one row per threshold, a verdict, a figure."""
    train(
        tmp_path / "run",
        "experiment=fmnist_biggan",
        "max_gen_steps=3",
        "model.generator.width=4",
        "model.discriminator.width=4",
        "~callbacks.image_metrics",
    )
    counts = ["metrics.n_samples=100", "metrics.n_real=100", "metrics.batch_size=50"]
    out = run_benchmark(
        "truncation.py", str(tmp_path / "run" / "checkpoints" / "last.ckpt"), "--thresholds", "1", "0.25",
        "--out", str(tmp_path / "out"), "--eval", *counts, "metrics.scorer.kid_subset_size=50",
    )  # fmt: skip
    record = json.loads((tmp_path / "out" / "truncation.json").read_text())
    (curve,) = record["curves"].values()
    assert len(curve) == 3 and curve[0]["fid"] != curve[2]["fid"]
    rows = [line.split(" | ")[1] for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1:] == ["none", "1", "0.25"]
    assert re.search(r"Amenable to truncation: [01] of 1", out)
    assert (tmp_path / "out" / "truncation.png").stat().st_size > 0


@pytest.mark.slow
def test_style_space_scores_path_lengths_and_the_mixing_penalty(tmp_path: Path) -> None:
    """A 3-step fmnist_stylegan: its row holds the three evaluations' numbers, the penalty their difference."""
    train(
        tmp_path / "run",
        "experiment=fmnist_stylegan",
        "max_gen_steps=3",
        "data.resolution=16",
        "model.generator.width=4",
        "model.discriminator.width=4",
        "~callbacks.image_metrics",
    )
    counts = ["metrics.n_samples=100", "metrics.n_real=100", "metrics.batch_size=50", "path_length.n=50"]
    out = run_benchmark(
        "style_space.py", str(tmp_path / "run" / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "out"),
        "--figure", str(tmp_path / "mixing.png"), "--eval", *counts, "metrics.scorer.kid_subset_size=50",
    )  # fmt: skip
    grid = np.asarray(Image.open(tmp_path / "mixing.png"))
    assert grid.shape[:2] == (6 * 18 + 2, 6 * 18 + 2)  # 6 x 6 cells of 16 px with 2 px of padding
    ((name, row),) = json.loads((tmp_path / "out" / "style_space.json").read_text())["rows"].items()
    mixed = json.loads((tmp_path / "out" / f"{name}_mixed.json").read_text())["metrics"]
    in_z = json.loads((tmp_path / "out" / f"{name}_z.json").read_text())["metrics"]
    assert row["mixing_fid"] == mixed["fid"] and row["ppl_z"] == in_z["ppl_z"]
    assert row["mixing_penalty"] == pytest.approx(row["mixing_fid"] - row["fid"])
    line = next(line for line in out.splitlines() if line.startswith(f"| {name} |"))
    assert f"| {row['ppl_w']:.4g} | {row['ppl_z']:.4g} |" in line


@pytest.mark.slow
def test_equivariance_scores_initialisations_and_checkpoints(tmp_path: Path) -> None:
    """Two seeds of a tiny fmnist_stylegan3 at initialisation (mean ± s.e. of the seeds' values) and a 1-step
    checkpoint of it: every row holds EQ-T, EQ-T_frac and EQ-R as computed for its generator."""
    tiny = ["model.generator.width=1", "model.generator.max_width=4", "model.generator.num_layers=3"]
    train(
        tmp_path / "run",
        "experiment=fmnist_stylegan3",
        "max_gen_steps=1",
        *tiny,
        "model.generator.num_critical=1",
        "model.discriminator.width=4",
        "~callbacks.image_metrics",
    )
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    entry = "fmnist_stylegan3 " + " ".join([*tiny, "model.generator.num_critical=1"])
    out = run_benchmark(
        "equivariance.py", "--init", entry, "--seeds", "0", "1", "--ckpts", str(ckpt), "--n", "2",
        "--out", str(tmp_path / "out"), "--strip", str(tmp_path / "strip.png"),
    )  # fmt: skip
    strip = np.asarray(Image.open(tmp_path / "strip.png").convert("L")).astype(float)
    assert strip.shape == (4 * 66 + 2, 7 * 66 + 2)  # 4 rows of 7 frames, 32 px drawn at 64, 2 px of padding

    def cell(row: int, col: int) -> np.ndarray:
        return strip[2 + 66 * row : 66 * (row + 1), 2 + 66 * col : 66 * (col + 1)]

    assert np.array_equal(cell(0, 0), cell(2, 0))  # both rows start from the unmoved input
    assert cell(1, 0).max() == 0 and cell(3, 0).max() == 0  # no move, no error
    assert cell(1, 6).max() > 0 and not np.array_equal(cell(0, 0), cell(0, 6))
    rows = json.loads((tmp_path / "out" / "equivariance.json").read_text())["rows"]
    seeds = rows[f"{entry}, at initialisation"]
    assert len(seeds) == 2 and seeds[0] != seeds[1]
    frac = [run["t_frac"] for run in seeds]
    mean, error = np.mean(frac), np.std(frac, ddof=1) / np.sqrt(2)
    assert f"| {mean:.2f} ± {error:.2f} |" in out
    (trained,) = rows[str(ckpt)]
    assert set(trained) == {"t", "t_frac", "r"} and all(v > 0 for v in trained.values())


def test_singan_trains_scores_every_start_scale_and_draws_the_figure(tmp_path: Path) -> None:
    """SinGAN on a 40-px photo, 3 levels of 2 steps: the reconstruction PSNR, one row per start scale (the last
    level's start redraws only it), the wall time and the figure."""
    out = run_benchmark(
        "singan.py", "--samples", "6", "--descriptors", "256", "--per-image", "2", "--out", str(tmp_path),
        "--figure", str(tmp_path / "singan.png"),
        "data.max_side=40", "model.generator.min_side=16", "game.steps_per_level=2", "max_gen_steps=6",
        "model.generator.width=4", "callbacks.samples=null",
    )  # fmt: skip
    record = json.loads((tmp_path / "singan.json").read_text())
    assert record["levels"] == [[16, 24], [21, 31], [27, 40]] and record["wall_s"] > 0
    rows = record["by_start"]
    assert [r["start_scale"] for r in rows] == [0, 1, 2]
    assert all(r["variety"] > 0 and r["swd"] > 0 and r["swd_per_image"] > 0 for r in rows)
    assert np.isfinite(record["reconstruction_psnr"])
    assert f"| 2 | {rows[2]['variety']:.3f} | {rows[2]['swd']:.2f} | {rows[2]['swd_per_image']:.2f} |" in out
    assert (tmp_path / "singan.png").stat().st_size > 0


@pytest.mark.slow
def test_lapgan_scores_the_full_chain_and_the_real_coarse_level(tmp_path: Path) -> None:
    """A 2-step fmnist_lapgan scored both ways on 100 samples: two rows of metrics, the real-coarse samples built on
    the test images' coarsest level."""
    train(
        tmp_path / "run",
        "experiment=fmnist_lapgan",
        "max_gen_steps=2",
        "model.generator.coarsest.width=32",
        "model.discriminator.coarsest.width=16",
        *TINY_NETS,
        "~callbacks.image_metrics",
        "~callbacks.best_checkpoint",
    )
    counts = ["metrics.n_real=100", "metrics.batch_size=50", "metrics.scorer.kid_subset_size=50"]
    out = run_benchmark(
        "lapgan.py", str(tmp_path / "run" / "checkpoints" / "last.ckpt"), "--n", "100", "--out", str(tmp_path / "out"),
        "--figure", str(tmp_path / "levels.png"), "--eval", *counts,
    )  # fmt: skip
    # 10 samples (columns) x 5 rows (7x7, its residual, 14x14, its residual, 28x28), 28 px each, 1 px apart.
    assert Image.open(tmp_path / "levels.png").size == (10 * 29 + 1, 5 * 29 + 1)
    (row,) = json.loads((tmp_path / "out" / "lapgan.json").read_text())
    assert row["full"]["fid"] > 0 and row["real_coarse"]["fid"] > 0 and row["full"]["fid"] != row["real_coarse"]["fid"]
    samples = np.load(tmp_path / "out" / "0_real_coarse.npz")["arr_0"]
    assert samples.shape == (100, 28, 28, 1) and samples.dtype == np.uint8
    assert f"| {row['full']['fid']:.3f} | {row['real_coarse']['fid']:.3f} |" in out


def test_few_shot_scores_each_run_both_ways_and_compares_settings_with_the_baseline(tmp_path: Path) -> None:
    """Two settings of one seed, 2 steps each on 100 shots: each run's held-out and training-image scores, its r_t
    from the logged d/rt, ADA's p where ADA ran, and the augmented setting's change against the plain one."""
    counts = ["metrics.n_samples=100", "metrics.n_real=100", "metrics.batch_size=50"]
    counts += ["metrics.scorer.kid_subset_size=50"]
    plain, ada = (
        tmp_path / "fmnist_100shot_stylegan2__seed-0",
        tmp_path / "fmnist_100shot_stylegan2__seed-0__augment-ada",
    )
    for run, extra in ((plain, []), (ada, ["augment=ada"])):
        train(
            run, "data=fmnist_100shot", "max_gen_steps=2", *TINY_NETS, "~callbacks.best_checkpoint", "logger=csv",
            "trainer.log_every_n_steps=1", "metrics.reference_split=test", *counts, *extra,
        )  # fmt: skip
    out = run_benchmark("few_shot.py", str(plain), str(ada), "--eval", *counts, "--figure", str(tmp_path / "f.png"))
    assert Image.open(tmp_path / "f.png").size == (3 * (8 * 30 + 2) + 2 * 10, 8 * 30 + 2)  # 28-px images, 2 px apart
    scores = json.loads((tmp_path / "few_shot.json").read_text())
    first = scores["fmnist_100shot_stylegan2"]["0"]
    held_out = json.loads((plain / "metrics.json").read_text())["metrics"]
    assert first["held_out"] == held_out and first["steps"] == 2 and first["p_end"] is None
    assert first["training"]["fid"] > 0 and first["training"]["fid"] != held_out["fid"]
    assert -1 <= first["rt_first"] <= 1 and scores["fmnist_100shot_stylegan2__augment-ada"]["0"]["p_end"] is not None
    augmented = scores["fmnist_100shot_stylegan2__augment-ada"]["0"]["held_out"]["fid"]
    change = 100 * (augmented / held_out["fid"] - 1)
    assert f"| fmnist_100shot_stylegan2__augment-ada | {augmented:.3f} |" in out and f"{change:+.1f} %" in out


def test_attention_memory_measures_full_attention_above_its_windows() -> None:
    """Grid 16^2, batch 4, 4 heads: the full maps (3 of 4 x 4 x 256^2 floats, 12 MB) dwarf 4x4 windows' (16x less)."""
    out = run_benchmark(
        "attention_memory.py", "--grid", "16", "--windows", "16", "4", "--batch", "4", "--repeats", "1"
    )  # fmt: skip
    results = json.loads(out.strip().splitlines()[-1])
    assert set(results) == {"math", "default"}
    for backend in results.values():
        assert backend["16"] > 8 and backend["16"] > 3 * backend["4"] > 0
    full = results["math"]["16"]
    assert f"| 16 | {full:.1f} | 1.0x |" in out


def test_explore_latency_times_each_picture_of_a_noise_generator_and_a_translator() -> None:
    out = run_benchmark("explore_latency.py", "fmnist_dcgan", "fmnist_cyclegan", "--repeats", "1")
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("| ")]
    assert [row[:2] for row in rows[1:]] == [
        ["fmnist_dcgan", "samples (16)"],
        ["", "interpolation (8)"],
        ["fmnist_cyclegan", "translation"],
        ["", "inverse"],
    ]
    assert all(float(row[2]) > 0 for row in rows[1:])
