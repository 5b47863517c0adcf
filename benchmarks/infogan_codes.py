"""InfoGAN's categorical code against the data's classes: does the unsupervised code find the digits?

For each seed, ``ganforge-train experiment=<name> seed=<seed>`` trains for the experiment's step count
(no intermediate evaluation: image metrics and the best-checkpoint callback are switched off, as the figures
here need none). Two figures are then read off the run's ``last.ckpt``, each the accuracy of the best
one-to-one assignment of the code's values to the classes (``ganforge.metrics.codes``):

- **Q on real test images** (the InfoGAN paper's figure, about 5 % error on MNIST): Q's most likely value of
  categorical code 0 for every image of the data's test split (D's features in eval mode), against its label;
- **G's images per code value**: the EMA generator draws ``--per-value`` images for each value of code 0 (noise
  and the other codes random, from a stream seeded by ``--sample-seed``) and the data's domain classifier (the FID
  feature network, ``metrics/weights``) labels them.

Mean and standard error over the seeds. ``--runs DIR`` scores the seeds' runs of an earlier call (its dated folder
under ``--out``) instead of training.

    .venv/bin/python benchmarks/infogan_codes.py mnist_infogan --seeds 0 1 2 --concurrent 3
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

import torch
from omegaconf import DictConfig
from seeded_runs import add_arguments, mean_and_error, measured_line, runs_of, train_seeds

from ganforge.config import build, load_checkpoint, module_from_checkpoint
from ganforge.games.infogan import CodedGenerator, InfoGAN
from ganforge.metrics.classifier import classifier_path, load_classifier, to_unit_range
from ganforge.metrics.codes import best_assignment_accuracy, classify, confusion
from ganforge.metrics.image_metrics import split_images, split_labels
from ganforge.module import GANModule
from ganforge.resolvers import domain_of


@torch.no_grad()
def code_accuracy(module: GANModule, cfg: DictConfig, per_value: int, sample_seed: int) -> float:
    """Best one-to-one accuracy of categorical code 0 of the EMA generator's images against the domain classifier."""
    coded = cast(CodedGenerator, module.sampling_generator)
    domain = domain_of(cfg.data)
    if domain is None:
        raise SystemExit(f"{cfg.data._target_} has no domain classifier to name the classes")
    classifier, metadata = load_classifier(classifier_path(domain))
    rng = torch.Generator().manual_seed(sample_seed)
    n_values = coded.categorical[0]
    values, classes = [], []
    for value in range(n_values):
        z = coded.with_codes(torch.randn(per_value, coded.latent_dim, generator=rng), [value])
        classes.append(classify(classifier, coded(z)))
        values.append(torch.full((per_value,), value))
    counts = confusion(torch.cat(values), torch.cat(classes), n_values, metadata["num_classes"])
    return best_assignment_accuracy(counts)


@torch.no_grad()
def q_accuracy(module: GANModule, cfg: DictConfig, batch_size: int = 500) -> tuple[float, int]:
    """Best one-to-one accuracy of Q's inferred code 0 on every image of the test split against its label, and
    how many images that is."""
    game = cast(InfoGAN, module.game)
    datamodule = build(cfg.data)
    everything = 10**12  # split_images takes a seeded subset only when asked for fewer than the split holds
    images = split_images(datamodule, "test", everything, 0, batch_size)
    values = torch.cat([game.inferred_codes(module.discriminator, to_unit_range(batch))[0] for batch in images])
    labels = split_labels(datamodule, "test", everything, 0)
    counts = confusion(values, labels, game.q_head.categorical[0], int(datamodule.num_classes or 0))
    return best_assignment_accuracy(counts), len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, "infogan_codes")
    parser.add_argument("--per-value", type=int, default=1000, help="images drawn per code value")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, help="score the seeds' runs in this folder of an earlier call")
    args = parser.parse_args()
    checkpoints = runs_of(args.runs, args.seeds) if args.runs else train_seeds(args)
    q_accuracies, code_accuracies = [], []
    print("| seed | gen steps | Q on real test images | G's images per code value |\n|---|---|---|---|")
    for seed, checkpoint_file in checkpoints.items():
        checkpoint = load_checkpoint(checkpoint_file)
        module, cfg = module_from_checkpoint(checkpoint)
        (q, n_test), coded = q_accuracy(module, cfg), code_accuracy(module, cfg, args.per_value, args.sample_seed)
        q_accuracies.append(q)
        code_accuracies.append(coded)
        print(f"| {seed} | {checkpoint['ganforge']['generator_steps']} | {q:.3f} | {coded:.3f} |")
    print(
        "\n"
        + measured_line(
            "infogan_codes.py", f"; Q on all {n_test} test images; {args.per_value} generated images per code value"
        )
    )
    print(f"Q accuracy {mean_and_error(q_accuracies)}")
    print(f"code accuracy {mean_and_error(code_accuracies)}")


if __name__ == "__main__":
    main()
