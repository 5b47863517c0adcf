"""What the encoders of BiGAN/ALI, the adversarial autoencoder and VAE-GAN learn: linear probes, 1-NN and
clusters on their codes, against the same encoder at initialisation.

For each seed (``seeded_runs``: ``ganforge-train experiment=<name> seed=<seed>``), the run's ``last.ckpt``
encoder (``ganforge.encode``, the code E(x) in eval mode) encodes ``--train-images`` images of the data's
training split (a seeded subset) and the whole test split. Scores on the test split:

- linear probe: multinomial logistic regression (scikit-learn, standardized codes) fitted on the training
  codes, its test accuracy;
- 1-NN: each test code's label is that of its nearest training code (Euclidean);
- reconstruction: the mean squared error of ``G(E(x))`` against x, pixels in [-1, 1];
- clusters (a coded generator's categorical code, the adversarial autoencoder's clustering): each test image's
  most likely category, scored by majority vote of the categories to classes (``ganforge.metrics.codes``).

"init" is the same encoder built as the training run built it (same config and seed) before any step.
``--supervised-epochs N`` adds a third row, "supervised": that initial encoder trained for N epochs with the
labels of the probes' training images (cross-entropy through a linear layer on E(x), Adam 1e-3): what this
architecture's codes reach when the classes are given, the ceiling an unsupervised encoder is measured against.

    .venv/bin/python benchmarks/encoders.py fmnist_bigan --seeds 0 1 2 --concurrent 2
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
from lightning.pytorch import seed_everything
from seeded_runs import add_arguments, mean_and_error, measured_line, train_seeds
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ganforge.config import build, build_module, checkpoint_config, load_checkpoint, module_from_checkpoint
from ganforge.encode import encode_split, encoder_game
from ganforge.games.aae import AdversarialAutoencoder
from ganforge.games.encoders import EncoderGame
from ganforge.games.infogan import CodedGenerator
from ganforge.metrics.classifier import to_unit_range
from ganforge.metrics.codes import best_assignment_accuracy, confusion
from ganforge.metrics.image_metrics import split_images, split_labels

DEVICE = torch.device("cpu")


def linear_probe(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray) -> float:
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(train, train_labels)
    return float(probe.score(test, test_labels))


def nearest_neighbour(
    train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor
) -> float:
    nearest = torch.cat([torch.cdist(chunk, train).argmin(dim=1) for chunk in test.split(1000)])
    return (train_labels[nearest] == test_labels).float().mean().item()


def scores(game: EncoderGame, generator: torch.nn.Module, data: Any, train_images: int) -> dict[str, float]:
    def codes(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z, error, _ = encode_split(game, generator, split_images(data, split, n, 0, 500), DEVICE)
        return z, split_labels(data, split, n, 0), error

    train, train_labels, _ = codes("train", train_images)
    test, test_labels, error = codes("test", 10**12)
    found = {
        "probe": linear_probe(train.numpy(), train_labels.numpy(), test.numpy(), test_labels.numpy()),
        "1-NN": nearest_neighbour(train, train_labels, test, test_labels),
        "reconstruction MSE": error.mean().item(),
    }
    if isinstance(game, AdversarialAutoencoder) and isinstance(generator, CodedGenerator):
        first = generator.noise_dim
        clusters = test[:, first : first + generator.categorical[0]].argmax(dim=1)
        counts = confusion(clusters, test_labels, generator.categorical[0], data.num_classes)
        found["cluster accuracy"] = best_assignment_accuracy(counts)
    return found


def at_init(checkpoint: dict[str, Any]) -> tuple[EncoderGame, torch.nn.Module]:
    """The run's game and generator as its config and seed build them, before training."""
    cfg = checkpoint_config(checkpoint)
    seed_everything(cfg.seed)
    module = build_module(cfg)
    return module.game, module.generator  # type: ignore[return-value]  # an encoder game: checked by the caller


def supervised(
    game: EncoderGame, generator: torch.nn.Module, data: Any, train_images: int, epochs: int, seed: int
) -> None:
    """Trains ``game``'s encoder in place on the labels of the probes' training images (see the module doc)."""
    torch.manual_seed(seed)
    images = torch.cat(list(split_images(data, "train", train_images, 0, 500)))
    labels = split_labels(data, "train", train_images, 0)
    with torch.no_grad():
        outputs = game.encode(generator, to_unit_range(images[:2])).flatten(1).shape[1]
    head = torch.nn.Linear(outputs, data.num_classes)
    optimizer = torch.optim.Adam([*game.encoder.parameters(), *head.parameters()], lr=1e-3)
    game.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(images)).split(64):
            code = game.encode(generator, to_unit_range(images[batch])).flatten(1)
            loss = torch.nn.functional.cross_entropy(head(code), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, "encoders")
    parser.add_argument("--train-images", type=int, default=10000, help="training-split images the probes fit")
    parser.add_argument("--supervised-epochs", type=int, default=0, help="also score the encoder trained on labels")
    args = parser.parse_args()
    checkpoints = train_seeds(args)
    table: dict[str, list[float]] = {}
    for seed, path in checkpoints.items():
        checkpoint = load_checkpoint(path)
        module, cfg = module_from_checkpoint(checkpoint)
        game, generator = encoder_game(module.game, str(path)), module.generator
        data = build(cfg.data)
        trained = scores(game, generator, data, args.train_images)
        initial, its_generator = at_init(checkpoint)
        found = {"trained": trained, "at init": scores(initial, its_generator, data, args.train_images)}
        if args.supervised_epochs:  # the initial encoder, now trained on labels
            supervised(initial, its_generator, data, args.train_images, args.supervised_epochs, seed)
            found["supervised"] = scores(initial, its_generator, data, args.train_images)
        steps = checkpoint["ganforge"]["generator_steps"]
        print(f"seed {seed} ({steps} gen steps): {found}", flush=True)
        for when, its_scores in found.items():
            for name in ("probe", "1-NN") if when == "supervised" else its_scores:
                table.setdefault(f"{name}, {when}", []).append(its_scores[name])
    print("\n| score (test split) | mean ± s.e. over seeds |\n|---|---|")
    for name, values in table.items():
        print(f"| {name} | {mean_and_error(values)} |")
    gains = [a - b for a, b in zip(table["probe, trained"], table["probe, at init"], strict=True)]
    print(f"| probe gain over init | {mean_and_error(gains)} |")
    print("\n" + measured_line("encoders.py", f"; probes fit on {args.train_images} training images"))


if __name__ == "__main__":
    main()
