"""Image metrics: FID/KID/IS/precision-recall/density-coverage against references, the Inception path, the cache."""

from __future__ import annotations

import itertools
import json
import math
import os
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import prdc
import pytest
import torch
from scipy import linalg
from torch_fidelity import feature_extractor_inceptionv3 as fidelity_inception

from ganforge.data.datamodules import MNIST5kDataModule
from ganforge.errors import GanforgeError
from ganforge.evaluate import evaluate
from ganforge.metrics import DomainFeatures, ImageScorer, InceptionFeatures, auto_features, extract, split_features
from ganforge.metrics.cache import cache_file, cached
from ganforge.metrics.classifier import packaged_weights
from ganforge.metrics.image_metrics import class_accuracy, reference_scorer, split_images, split_labels
from ganforge.sample import sample
from ganforge.train import train
from tests.conftest import TINY, Compose, compose_config


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance of two Gaussians fitted to feature sets (Heusel et al. 2017), in NumPy/SciPy."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def gaussian_features(n: int, dim: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=g) / dim**0.5
    return (torch.randn(n, dim, generator=g) @ mixing) * scale + shift


def scorer(reference: torch.Tensor, **kwargs) -> ImageScorer:
    kwargs.setdefault("kid_subset_size", 200)
    kwargs.setdefault("kid_subsets", 20)
    kwargs.setdefault("precision_recall", False)
    return ImageScorer(reference, **kwargs)


def uniform_logits(n: int) -> torch.Tensor:
    return torch.zeros(n, 10)


# --- FID -------------------------------------------------------------------------------------


def test_fid_matches_scipy_reference() -> None:
    real = gaussian_features(2000, 32, seed=0)
    fake = gaussian_features(1500, 32, seed=1, shift=0.3, scale=1.2)
    ours = scorer(real).score(fake, uniform_logits(len(fake)))["fid"]
    reference = scipy_fid(real.double().numpy(), fake.double().numpy())
    assert reference > 1.0
    assert ours == pytest.approx(reference, rel=1e-3)


def test_fid_of_a_set_with_itself_is_zero() -> None:
    real = gaussian_features(1000, 16, seed=0)
    assert abs(scorer(real).score(real, uniform_logits(len(real)))["fid"]) < 1e-4


def test_domain_fid_grows_with_noise_on_real_images() -> None:
    """FID in the MNIST classifier's features rises monotonically as noise is added to real test digits."""
    dm = MNIST5kDataModule()
    extractor = DomainFeatures("mnist")
    reference = split_features(dm, extractor, "train", 1000)
    test = dm.load_split(train=False).images[:1000].float().div(127.5).sub(1)
    noise = torch.randn(test.shape, generator=torch.Generator().manual_seed(0))
    score = scorer(reference)
    fids = [score.score(*extract(extractor, [(test + s * noise).clamp(-1, 1)]))["fid"] for s in (0, 0.1, 0.3, 0.6, 1.0)]
    assert all(a < b for a, b in itertools.pairwise(fids)), fids
    assert fids[-1] > 20 * fids[0]


def test_padded_images_score_as_the_originals_and_resized_ones_carry_their_floor() -> None:
    """data.fit=pad: 32x32 data and the classifier's crop give the 28x28 pixels' features exactly, and no floor;
    data.fit=resize: the protocol names the FID of the held-out split's resized real images, above the 28x28 one."""
    native = MNIST5kDataModule(fit="pad")
    test = native.load_split(train=False).images[:300]
    padded = MNIST5kDataModule(resolution=32, fit="pad")
    assert torch.equal(
        extract(DomainFeatures("mnist", fit="pad"), [padded.load_split(train=False).images[:300]])[0],
        extract(DomainFeatures("mnist"), [test])[0],
    )
    floors, options = {}, {"n": 500, "kid_subset_size": 100, "precision_recall": False}
    for dm in (native, padded, MNIST5kDataModule(resolution=32, fit="resize")):
        protocol = reference_scorer(dm, DomainFeatures("mnist", fit=dm.fit), "train", **options).protocol()
        assert protocol["fit"] == dm.fit
        floors[(dm.resolution, dm.fit)] = protocol.get("resampling_floor_fid")
    assert floors[(28, "pad")] is None and floors[(32, "pad")] is None
    sampling_floor = reference_scorer(native, DomainFeatures("mnist"), "train", **options).fid_of(
        split_features(native, DomainFeatures("mnist"), "test", 500)
    )
    assert floors[(32, "resize")] > 2 * sampling_floor


# --- IS, KID, precision/recall ---------------------------------------------------------------


def test_inception_score_is_one_for_a_single_class() -> None:
    logits = torch.zeros(1000, 10)
    logits[:, 3] = 30.0
    assert scorer(gaussian_features(500, 8, 0)).score(torch.randn(1000, 8), logits)["is"] == pytest.approx(
        1.0, abs=1e-4
    )


def test_inception_score_is_the_class_count_for_uniform_confident_predictions() -> None:
    labels = torch.arange(10_000) % 10
    logits = torch.nn.functional.one_hot(labels, 10).float() * 30.0
    score = scorer(gaussian_features(500, 8, 0)).score(torch.randn(10_000, 8), logits)
    assert score["is"] == pytest.approx(10.0, rel=0.02)


def polynomial_kid_of_a_set_with_itself(x: np.ndarray) -> float:
    """Unbiased MMD^2 (cubic kernel (x.y/d + 1)^3) of X against X itself: the O(1/m) diagonal term."""
    m, d = x.shape
    k = (x @ x.T / d + 1) ** 3
    total, diagonal = k.sum(), np.trace(k)
    return float(2 * (total - diagonal) / (m * (m - 1)) - 2 * total / m**2)


def test_kid_of_identical_sets_is_near_zero_and_positive_for_shifted_ones() -> None:
    """With subsets as large as the sets, KID(x, x) is the closed-form -O(1/m) term, tiny next to a shift."""
    real = gaussian_features(1000, 16, seed=0)
    score = scorer(real, kid_subset_size=1000, kid_subsets=3)
    same = score.score(real, uniform_logits(1000))["kid"]
    shifted = score.score(real + 0.5, uniform_logits(1000))["kid"]
    assert same == pytest.approx(polynomial_kid_of_a_set_with_itself(real.double().numpy()), rel=1e-3)
    assert abs(same) < 0.02 * shifted


def test_precision_and_recall() -> None:
    """Identical sets: precision = recall = 1; a far-away set: both 0."""
    real = gaussian_features(600, 8, seed=0)
    same = scorer(real, precision_recall=True).score(real, uniform_logits(600))
    far = scorer(real, precision_recall=True).score(real + 100.0, uniform_logits(600))
    assert same["precision"] == same["recall"] == 1.0
    assert far["precision"] == far["recall"] == 0.0


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (0.3, 1.0), (0.0, 0.3), (1.0, 2.0)])
def test_density_and_coverage_match_the_authors_prdc(shift: float, scale: float) -> None:
    """Against Naeem et al.'s own implementation (prdc), on sets close to, off, bunched inside and spread around
    the real one; the real balls are computed once and reused."""
    real = gaussian_features(700, 8, seed=0)
    fake = gaussian_features(600, 8, seed=1, shift=shift, scale=scale)
    reference = prdc.compute_prdc(real.numpy(), fake.numpy(), nearest_k=5)
    score = scorer(real, precision_recall=True)
    for _ in range(2):
        ours = score.score(fake, uniform_logits(600))
        assert ours["density"] == pytest.approx(reference["density"], abs=1e-9)
        assert ours["coverage"] == pytest.approx(reference["coverage"], abs=1e-9)
    assert score.protocol()["dc_neighbourhood"] == 5


def test_density_is_not_fooled_by_samples_bunched_in_one_outlier_ball() -> None:
    """The failure Naeem et al. fixed: every sample on one real outlier gets precision 1 and density about 1/k."""
    real = torch.cat([gaussian_features(999, 8, seed=0), torch.full((1, 8), 8.0)])
    bunched = torch.full((600, 8), 8.0) + 0.01 * torch.randn(600, 8, generator=torch.Generator().manual_seed(1))
    scores = scorer(real, precision_recall=True).score(bunched, uniform_logits(600))
    assert scores["precision"] == 1.0
    assert scores["density"] == pytest.approx(1 / 5, abs=0.01)
    assert scores["coverage"] == pytest.approx(1 / 1000)


def test_scores_are_reproducible_release_generated_features_and_keep_the_global_rng() -> None:
    real = gaussian_features(800, 8, seed=0)
    fake = gaussian_features(800, 8, seed=1, shift=0.2)
    score = scorer(real)
    state = torch.random.get_rng_state()
    first, second = score.score(fake, uniform_logits(800)), score.score(fake, uniform_logits(800))
    assert first == second
    assert torch.equal(torch.random.get_rng_state(), state)
    assert score.fid.fake_features_num_samples == 0 and score.fid.real_features_num_samples == 800
    assert not score.kid.fake_features and len(score.kid.real_features) == 1
    assert not score.inception_score.features


def test_kid_needs_enough_samples() -> None:
    with pytest.raises(GanforgeError, match="kid_subset_size"):
        scorer(gaussian_features(100, 8, 0)).score(torch.randn(100, 8), uniform_logits(100))


# --- Inception (offline, with a weights file the test writes) ----------------------------------


def test_inception_features_run_offline_from_a_weights_file(random_inception_weights: Path) -> None:
    extractor = InceptionFeatures(weights_path=str(random_inception_weights))
    images = torch.rand(3, 1, 28, 28) * 2 - 1
    features, logits = extractor(images)
    assert features.shape == (3, 2048) and logits.shape == (3, 1008)
    assert torch.isfinite(features).all()
    state = torch.load(random_inception_weights)
    assert torch.allclose(extractor.net.fc.weight, state["fc.weight"])
    assert extractor.identity.startswith("inception-v3-compat:")


def test_inception_without_network_or_file_names_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(fidelity_inception, "load_state_dict_from_url", offline)
    with pytest.raises(GanforgeError, match=r"metrics\.features\.weights_path"):
        InceptionFeatures()
    with pytest.raises(GanforgeError, match=r"does not exist.*metrics\.features\.weights_path"):
        InceptionFeatures(weights_path="/nonexistent/inception.pth")


def test_domain_features_without_a_domain_name_the_alternatives() -> None:
    with pytest.raises(GanforgeError, match="metrics/features=inception"):
        DomainFeatures(None)


# --- the real-statistics cache ----------------------------------------------------------------


def test_cache_reuses_and_recomputes_on_a_changed_key(tmp_path: Path) -> None:
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return torch.arange(4.0) * len(calls)

    key = {"dataset": "x", "split": "train", "n": 4, "extractor": "e:1"}
    first = cached(tmp_path, key, compute)
    again = cached(tmp_path, key, compute)
    assert len(calls) == 1 and torch.equal(first, again)
    changed = cached(tmp_path, key | {"n": 5}, compute)
    assert len(calls) == 2 and not torch.equal(changed, first)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".pt", ".pt"]  # no temporary files left


@pytest.mark.parametrize("failing", ["save", "rename"])
def test_a_failed_cache_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """A write that fails half-way (disk full) or a rename that fails: the error surfaces, nothing stays behind."""

    def half_save(obj: object, file: Any) -> None:
        file.write(b"half a tensor")
        raise OSError("No space left on device")

    def no_rename(src: str, dst: Path) -> None:
        raise PermissionError(dst)

    if failing == "save":
        monkeypatch.setattr(torch, "save", half_save)
    else:
        monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        cached(tmp_path / "cache", {"k": 1}, lambda: torch.ones(2))
    assert list((tmp_path / "cache").iterdir()) == []


def test_cache_recomputes_a_corrupt_file(tmp_path: Path) -> None:
    key = {"k": 1}
    cache_file(tmp_path, key).write_bytes(b"not a torch file")
    assert torch.equal(cached(tmp_path, key, lambda: torch.ones(2)), torch.ones(2))
    assert torch.equal(cached(tmp_path, key, lambda: torch.zeros(2)), torch.ones(2))


def test_split_features_are_cached_per_extractor_and_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dm = MNIST5kDataModule()
    extractor = DomainFeatures("mnist")
    loads = []
    original = dm.load_split
    monkeypatch.setattr(dm, "load_split", lambda train: loads.append(train) or original(train))
    a = split_features(dm, extractor, "test", 300, cache_dir=str(tmp_path))
    b = split_features(dm, extractor, "test", 300, cache_dir=str(tmp_path))
    assert len(loads) == 1 and torch.equal(a, b) and a.shape == (300, extractor.num_features)
    split_features(dm, extractor, "test", 200, cache_dir=str(tmp_path))
    assert len(loads) == 2


def test_auto_features_pick_the_domain_classifier_else_inception(random_inception_weights: Path) -> None:
    assert isinstance(auto_features("mnist"), DomainFeatures)
    assert isinstance(auto_features(None, str(random_inception_weights)), InceptionFeatures)


def test_class_accuracy_of_real_images_is_the_classifiers_accuracy() -> None:
    """A stand-in 'conditional generator' that returns real test images of the asked class scores the
    classifier's own test accuracy on them; shuffled labels score chance."""
    dm = MNIST5kDataModule()
    test = dm.load_split(train=False)
    images, labels = test.images.float().div(127.5).sub(1), test.labels
    _, logits = extract(DomainFeatures("mnist"), images.split(250))
    accuracy = class_accuracy(logits, labels)
    assert accuracy == pytest.approx(0.98, abs=0.005)  # the shipped classifier's recorded test accuracy
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    assert class_accuracy(logits, shuffled) < 0.2
    assert class_accuracy(torch.eye(3), torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)


def test_intra_class_fid_is_the_mean_of_per_class_fids() -> None:
    """Two classes with their own feature distributions: intra-FID is the mean of the two SciPy FIDs,
    and swapping the generated labels (right images, wrong classes) raises it sharply."""
    real = torch.cat([gaussian_features(600, 8, seed=0), gaussian_features(600, 8, seed=1, shift=3.0)])
    fake = torch.cat([gaussian_features(500, 8, seed=2, scale=1.1), gaussian_features(500, 8, seed=3, shift=2.8)])
    real_labels, fake_labels = torch.arange(1200) // 600, torch.arange(1000) // 500
    score = scorer(real, reference_labels=real_labels)
    expected = sum(
        scipy_fid(real[real_labels == k].double().numpy(), fake[fake_labels == k].double().numpy()) for k in (0, 1)
    )
    assert score.intra_class_fid(fake, fake_labels) == pytest.approx(expected / 2, rel=1e-3)
    assert score.score(fake, uniform_logits(1000), fake_labels)["intra_fid"] == pytest.approx(expected / 2, rel=1e-3)
    assert score.intra_class_fid(fake, 1 - fake_labels) > 10 * expected / 2
    assert "intra_fid" not in scorer(real).score(fake, uniform_logits(1000), fake_labels)


def test_intra_class_fid_without_a_class_of_two_is_nan_with_a_warning() -> None:
    """One generated sample per class leaves no per-class FID to average: NaN, and the warning names the fix."""
    real = gaussian_features(300, 8, seed=0)
    score = scorer(real, reference_labels=torch.arange(300) % 3)
    with pytest.warns(UserWarning, match=r"no class has two or more samples.*metrics\.n_samples"):
        assert math.isnan(score.intra_class_fid(gaussian_features(3, 8, seed=1), torch.arange(3)))


def test_split_labels_match_the_split_images() -> None:
    dm = MNIST5kDataModule()
    images = torch.cat(list(split_images(dm, "test", 300, seed=4, batch_size=128)))
    labels = split_labels(dm, "test", 300, seed=4)
    test = dm.load_split(train=False)
    for image, label in zip(images[:20], labels[:20], strict=True):
        matches = (test.images == image).flatten(1).all(1).nonzero().flatten()
        assert label in test.labels[matches]


@pytest.mark.parametrize(("ema_decay", "kind"), [("null", "generator"), ("0.999", "EMA generator")])
def test_results_name_the_generator_that_was_scored(
    tiny_cfg: Compose, tmp_path: Path, ema_decay: str, kind: str
) -> None:
    """Training's metrics.json and ganforge-eval of its checkpoint say "EMA generator" only when there is one."""
    train(tiny_cfg("max_gen_steps=2", f"ema_decay={ema_decay}"))
    protocol = json.loads((tmp_path / "run" / "metrics.json").read_text())["protocol"]
    assert protocol["generated"].startswith(f"100 samples of the {kind} (")
    counts = ["metrics.n_samples=100", "metrics.n_real=100", "metrics.scorer.kid_subset_size=50"]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    result = evaluate(compose_config("eval", [f"ckpt={ckpt}", f"out={tmp_path / 'eval.json'}", *counts]))
    assert result["protocol"]["generated"].startswith(f"100 samples of the {kind} of {ckpt}")


def test_a_run_continues_only_in_the_feature_space_it_was_scored_in(
    tiny_cfg: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """metrics.features.version=null follows the user cache, then the latest shipped classifier: when that changes
    between a run and its continuation, the continuation is refused with the version to pass, before it scores."""
    monkeypatch.setenv("GANFORGE_CACHE_DIR", str(tmp_path / "cache"))
    train(tiny_cfg("max_gen_steps=2"))
    assert ":v2:" in json.loads((tmp_path / "run" / "metrics.json").read_text())["protocol"]["extractor"]
    user_classifier = tmp_path / "cache" / "classifiers" / "fashion_mnist.pt"
    user_classifier.parent.mkdir(parents=True)
    user_classifier.write_bytes(packaged_weights("fashion_mnist", 1).read_bytes())
    written = (tmp_path / "run" / "metrics.json").read_text()
    with pytest.raises(GanforgeError, match=r"scored in domain:fashion_mnist:v2:.*continue it with the extractor it "
                       r"used: metrics.features.version=2"):  # fmt: skip
        train(tiny_cfg("max_gen_steps=4", "ckpt_path=last"))
    assert (tmp_path / "run" / "metrics.json").read_text() == written
    train(tiny_cfg("max_gen_steps=4", "ckpt_path=last", "metrics.features.version=2"))


#: Tiny runs at the data's 28x28 (DCGAN, tanh output) and at 32x32 (StyleGAN2, whose output is linear).
AGREEMENT_RUNS = {
    "28px dcgan": [],
    "32px stylegan2": ["experiment=fmnist_stylegan2", "model.generator.width=8", "model.discriminator.width=8",
                       "data.batch_size=16", "model.generator.max_width=16", "model.discriminator.max_width=16"],
}  # fmt: skip


@pytest.mark.parametrize("run", list(AGREEMENT_RUNS))
def test_training_and_ganforge_eval_agree_on_a_runs_checkpoint(run: str, tiny_cfg: Compose, tmp_path: Path) -> None:
    """The final in-training scores equal ganforge-eval's on the run's last.ckpt and on ganforge-sample's file of
    the same latents: generated floats are scored as the 8-bit pixels a file of them holds (they were scored as
    floats, so a 32x32 StyleGAN2, whose linear output leaves [-1, 1], scored better in training than from its file)."""
    train(tiny_cfg(*AGREEMENT_RUNS[run], "max_gen_steps=6", "~callbacks.best_checkpoint"))
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    counts = [o for o in TINY if o.startswith("metrics.")]
    from_ckpt = evaluate(compose_config("eval", [f"ckpt={ckpt}", f"out={tmp_path / 'ckpt.json'}", *counts]))
    assert from_ckpt["metrics"] == pytest.approx(final, rel=1e-5, abs=1e-8)
    assert from_ckpt["protocol"]["fit"] == "pad" and "resampling_floor_fid" not in from_ckpt["protocol"]

    samples = tmp_path / "samples.npz"
    sample(compose_config("sample", [f"ckpt={ckpt}", "n=100", f"out={samples}", "seed=0", "batch_size=50"]))
    resolution = int(np.load(samples)["arr_0"].shape[1])
    assert resolution == (32 if "32px" in run else 28)
    data = ["data=fashion_mnist", f"data.resolution={resolution}"]
    from_file = evaluate(compose_config("eval", [f"samples={samples}", *data, f"out={tmp_path / 'f.json'}", *counts]))
    assert from_file["metrics"] == pytest.approx(final, rel=1e-5, abs=1e-8)
