"""Is any precision/recall estimator monotone under the disturbances? Issue 34 asks every metric of
``benchmarks/disturbances.py`` to move monotonically with the damage; ganforge's improved precision and recall step
back in places. This scores the same disturbed sets, in the same feature space, with every estimator of those names
in the literature, and applies the same rule (``disturbances.monotone``: no step back beyond ``--sigmas`` standard
deviations of the estimator's own noise over disjoint clean sets; fidelity must not fall when only diversity is
taken away):

- ``improved k=3/5/10``: improved precision and recall (Kynkaanniemi et al. 2019), k-NN balls; k = 3 is ganforge's
  (``metrics.scorer.pr_neighbourhood``);
- ``probabilistic``: P-precision and P-recall (Park & Kim 2023), one radius per set (1.2 x its mean distance to the
  4th neighbour) and a membership that falls linearly to 0 at that radius, so outlying points get no larger balls;
- ``PRD``: precision and recall for distributions (Sajjadi et al. 2018), F_1/8 and F_8 of the PR curve of the two
  sets' histograms over 20 k-means clusters of both, averaged over 10 clusterings;
- ``density/coverage`` (Naeem et al. 2020, k = 5): what every ganforge evaluation reports beside precision/recall.

    .venv/bin/python benchmarks/pr_estimators.py --seeds 0 1 2      # 45 min per seed on one core beside other jobs

Prints, per seed and estimator, the steps back and where, as a Markdown table; writes ``<out>/pr_estimators.json``.
Hand-written: the probabilistic estimator and PRD (no maintained package ships them; scikit-learn's k-means does
PRD's clustering) and improved precision/recall for several k from one distance matrix (torch-fidelity's, which
ganforge's evaluation uses, computes them one k at a time; tests check that the two agree).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from disturbances import DIVERSITY, EXTRA, STRENGTHS, disturbed, load, monotone
from sklearn.cluster import MiniBatchKMeans

from ganforge.metrics.classifier import VERSIONS, packaged_weights
from ganforge.metrics.features import DomainFeatures
from ganforge.metrics.image_metrics import density_coverage, extract

ROOT = Path(__file__).resolve().parents[1]
IMPROVED_KS = (3, 5, 10)
#: Park & Kim's defaults: the radius is ``PROBABILISTIC_SCALE`` x the mean distance to the ``PROBABILISTIC_K``-th
#: neighbour.
PROBABILISTIC_K, PROBABILISTIC_SCALE = 4, 1.2
#: Sajjadi et al.'s defaults: clusters, clusterings averaged, angles of the PR curve.
PRD_CLUSTERS, PRD_RUNS, PRD_ANGLES = 20, 10, 1001
#: The same density/coverage neighbourhood as ganforge's scorer (``metrics.scorer.dc_neighbourhood``).
DC_K = 5

#: Checks per estimator and seed: each disturbance of the issue's list, fidelity and diversity.
CHECKS = 2 * len([name for name in STRENGTHS if name not in EXTRA])

Scores = dict[str, tuple[float, float]]  # estimator -> (fidelity, diversity)


def kth_neighbour(distances: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's distance to its k-th nearest other point (the row's own point, at distance 0, excluded)."""
    return distances.kthvalue(k + 1, dim=1).values


class Reference:
    """The real features and what every estimator needs of them, computed once."""

    def __init__(self, real: torch.Tensor) -> None:
        self.real = real
        within = torch.cdist(real, real)
        self.radii = {k: kth_neighbour(within, k) for k in IMPROVED_KS}
        self.mean_radius = kth_neighbour(within, PROBABILISTIC_K).mean()
        self.dc_radii = kth_neighbour(within, DC_K)  # neighbour_radii's, from the distances at hand

    def scores(self, fake: torch.Tensor, seed: int) -> Scores:
        """Every estimator's (fidelity, diversity) of ``fake``: (precision, recall), or (density, coverage)."""
        between, within = torch.cdist(fake, self.real), torch.cdist(fake, fake)
        out = {}
        for k in IMPROVED_KS:
            precision = (between <= self.radii[k][None, :]).any(dim=1).double().mean().item()
            recall = (between <= kth_neighbour(within, k)[:, None]).any(dim=0).double().mean().item()
            out[f"improved k={k}"] = (precision, recall)
        out["probabilistic"] = (
            probabilistic(between, PROBABILISTIC_SCALE * self.mean_radius, dim=1),
            probabilistic(between, PROBABILISTIC_SCALE * kth_neighbour(within, PROBABILISTIC_K).mean(), dim=0),
        )
        out["PRD"] = prd(self.real.numpy(), fake.numpy(), seed)
        dc = density_coverage(fake, self.real, self.dc_radii, DC_K)
        out["density/coverage"] = (dc["density"], dc["coverage"])
        return out


def probabilistic(distances: torch.Tensor, radius: torch.Tensor, dim: int) -> float:
    """Park & Kim's P-precision (``dim=1``: each generated point, over the real balls of ``radius``) or P-recall
    (``dim=0``): the mean over points of 1 - prod over the other set's balls of (1 - max(0, 1 - d / radius))."""
    membership = (1 - distances / radius).clamp(0, 1 - 1e-7)  # 1 - 1e-7: a duplicate keeps the log finite
    return (1 - torch.log1p(-membership).sum(dim=dim).exp()).mean().item()


def prd(real: np.ndarray, fake: np.ndarray, seed: int) -> tuple[float, float]:
    """Sajjadi et al.'s PRD summarised as (F_1/8, F_8): precision- and recall-weighted maxima of the PR curve of the
    two sets' cluster histograms, the curve averaged over ``PRD_RUNS`` k-means clusterings of both sets together."""
    slopes = np.tan(np.linspace(1e-10, math.pi / 2 - 1e-10, PRD_ANGLES))[:, None]
    precision, recall = np.zeros(PRD_ANGLES), np.zeros(PRD_ANGLES)
    for run in range(PRD_RUNS):
        clusters = MiniBatchKMeans(PRD_CLUSTERS, n_init=10, random_state=seed * PRD_RUNS + run)
        labels = clusters.fit_predict(np.concatenate([real, fake]))
        p_real = np.bincount(labels[: len(real)], minlength=PRD_CLUSTERS) / len(real)
        p_fake = np.bincount(labels[len(real) :], minlength=PRD_CLUSTERS) / len(fake)
        curve = np.minimum(slopes * p_real, p_fake).sum(axis=1)
        precision += curve / PRD_RUNS
        recall += curve / slopes[:, 0] / PRD_RUNS

    def f_beta(beta: float) -> float:
        return float(np.max((1 + beta**2) * precision * recall / np.maximum(beta**2 * precision + recall, 1e-10)))

    return f_beta(1 / 8), f_beta(8)


def score_seed(extractor: DomainFeatures, domain: str, n: int, seed: int, draws: int) -> dict:
    """Every estimator on the clean draws (their noise), on each class of the clean set (fidelity's spread over
    classes) and on every disturbed set of ``disturbances.py`` drawn with ``seed``."""
    reference_images, pool = load(domain, n, seed)
    features = lambda images: extract(extractor, images.split(500))[0].float()  # noqa: E731
    reference = Reference(features(reference_images))
    clean_images, clean_labels = pool.clean()
    clean = features(clean_images)
    sets = min(draws, len(pool.images) // pool.n)
    others = [pool.images[i * pool.n : (i + 1) * pool.n] for i in range(1, sets)]
    draw_scores = [reference.scores(clean, seed)] + [reference.scores(features(images), seed) for images in others]
    per_class = [reference.scores(clean[clean_labels == k], seed) for k in clean_labels.unique()]
    every_class = len(pool.drop_order)
    first = {"distinct": len(clean_images.flatten(1).unique(dim=0)), "classes": every_class}
    disturbances: dict[str, list[dict]] = {}
    for index, (name, strengths) in enumerate(STRENGTHS.items()):
        rng = torch.Generator().manual_seed(seed * 1000 + index)  # disturbances.py's draws, image for image
        rows = [first | {"scores": draw_scores[0]}]
        for strength in strengths:
            images = disturbed(pool, name, strength, rng)
            classes = every_class - int(strength) if name.startswith("classes") else every_class
            rows.append(
                {"distinct": len(images.flatten(1).unique(dim=0)), "classes": classes}
                | {"scores": reference.scores(features(images), seed)}
            )
        disturbances[name] = rows
        print(f"  seed {seed}: {name}", flush=True)
    estimators = list(draw_scores[0])
    noise = {e: [float(np.std([d[e][i] for d in draw_scores], ddof=1)) for i in (0, 1)] for e in estimators}
    spread = {e: float(np.std([c[e][0] for c in per_class], ddof=1)) for e in estimators}
    return {"noise": noise, "class spread": spread, "disturbances": disturbances}


def steps_back(result: dict, sigmas: float) -> dict[str, list[str]]:
    """Per estimator, each disturbance (of the issue's list) and side where it steps back beyond the rule."""
    out: dict[str, list[str]] = {}
    for estimator, noise in result["noise"].items():
        failures = []
        for name, rows in result["disturbances"].items():
            if name in EXTRA:
                continue
            for side, label in enumerate(("fidelity", "diversity")):
                values = [{"v": row["scores"][estimator][side], **row} for row in rows]
                direction = 1 if side == 0 and name in DIVERSITY else -1
                spread = result["class spread"][estimator] if side == 0 else 0.0
                if not monotone(values, "v", direction, noise[side], spread, sigmas):
                    trail = " → ".join(f"{v['v']:.3f}" for v in values)
                    failures.append(f"{label} under {name}: {trail}")
        out[estimator] = failures
    return out


def markdown(verdicts: dict[int, dict[str, list[str]]]) -> str:
    lines = ["| estimator | " + " | ".join(f"steps back, seed {s}" for s in verdicts) + " |"]
    lines.append("|---|" + "---|" * len(verdicts))
    for estimator in next(iter(verdicts.values())):
        cells = [f"{len(v[estimator])} of {CHECKS}" for v in verdicts.values()]
        lines.append(f"| {estimator} | " + " | ".join(cells) + " |")
    lines.append("")
    for seed, verdict in verdicts.items():
        for estimator, failures in verdict.items():
            lines += [f"- seed {seed}, {estimator}: {failure}" for failure in failures]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--domain", choices=("fashion_mnist", "mnist"), default="fashion_mnist")
    parser.add_argument("--n", type=int, help="images on each side (default: 10,000; MNIST-5k: 500)")
    parser.add_argument("--weights", help="a domain classifier file (default: the shipped, latest version)")
    parser.add_argument("--draws", type=int, default=5, help="disjoint clean sets that measure the noise")
    parser.add_argument("--sigmas", type=float, default=3.0, help="steps back allowed, in standard deviations")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "disturbances")
    args = parser.parse_args()
    n = args.n or (10_000 if args.domain == "fashion_mnist" else 500)
    extractor = DomainFeatures(args.domain, str(args.weights or packaged_weights(args.domain, VERSIONS[-1])))
    print(f"{extractor.identity}, {n} a side", flush=True)
    results = {seed: score_seed(extractor, args.domain, n, seed, args.draws) for seed in args.seeds}
    verdicts = {seed: steps_back(result, args.sigmas) for seed, result in results.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"domain": args.domain, "n": n, "extractor": extractor.identity, "sigmas": args.sigmas}
    record |= {"results": results, "steps back": verdicts}
    (args.out / "pr_estimators.json").write_text(json.dumps(record, indent=1, ensure_ascii=False))
    print(markdown(verdicts))


if __name__ == "__main__":
    main()
