"""InfoGAN's categorical code against the data's classes: does the unsupervised code find the digits?

For each seed, ``ganforge-train experiment=<name> seed=<seed>`` trains for the experiment's step count
(no intermediate evaluation: image metrics and the best-checkpoint callback are switched off, as the figure
here needs none). Then, from the run's ``last.ckpt``, the EMA generator draws ``--per-value`` images for each
value of categorical code 0 (noise and the other codes random, from a stream seeded by ``--sample-seed``),
the data's domain classifier (the FID feature network, ``metrics/weights``) classifies them, and the
accuracy is that of the best one-to-one assignment of code values to classes (``ganforge.metrics.codes``;
the InfoGAN paper reports about 95 % on MNIST). Mean and standard error over the seeds.

    .venv/bin/python benchmarks/infogan_codes.py mnist_infogan --seeds 0 1 2 --concurrent 2
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

import torch
from seeded_runs import add_arguments, mean_and_error, measured_line, train_seeds

from ganforge.config import domain_of, generator_from_checkpoint, load_checkpoint
from ganforge.games.infogan import CodedGenerator
from ganforge.generation import eval_mode
from ganforge.metrics.classifier import classifier_path, load_classifier
from ganforge.metrics.codes import best_assignment_accuracy, classify, confusion


@torch.no_grad()
def code_accuracy(checkpoint_file: Path, per_value: int, sample_seed: int) -> tuple[float, int]:
    """Best one-to-one accuracy of categorical code 0 against the domain classifier, and the run's G steps."""
    checkpoint = load_checkpoint(checkpoint_file)
    generator, cfg = generator_from_checkpoint(checkpoint)
    coded = cast(CodedGenerator, generator)
    domain = domain_of(cfg.data)
    if domain is None:
        raise SystemExit(f"{cfg.data._target_} has no domain classifier to name the classes")
    classifier, metadata = load_classifier(classifier_path(domain))
    rng = torch.Generator().manual_seed(sample_seed)
    n_values = coded.categorical[0]
    values, classes = [], []
    with eval_mode(coded):
        for value in range(n_values):
            z = coded.with_codes(torch.randn(per_value, coded.latent_dim, generator=rng), [value])
            classes.append(classify(classifier, coded(z)))
            values.append(torch.full((per_value,), value))
    counts = confusion(torch.cat(values), torch.cat(classes), n_values, metadata["num_classes"])
    return best_assignment_accuracy(counts), checkpoint["ganforge"]["generator_steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, "infogan_codes")
    parser.add_argument("--per-value", type=int, default=1000, help="images drawn per code value")
    parser.add_argument("--sample-seed", type=int, default=0)
    args = parser.parse_args()
    checkpoints = train_seeds(args)
    accuracies = []
    print("| seed | gen steps | code accuracy |\n|---|---|---|")
    for seed, checkpoint in checkpoints.items():
        accuracy, steps = code_accuracy(checkpoint, args.per_value, args.sample_seed)
        accuracies.append(accuracy)
        print(f"| {seed} | {steps} | {accuracy:.3f} |")
    print("\n" + measured_line("infogan_codes.py", f"; {args.per_value} images per code value"))
    print(f"accuracy {mean_and_error(accuracies)}")


if __name__ == "__main__":
    main()
