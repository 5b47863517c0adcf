"""The truncation trick's trade-off curve (BigGAN, Brock et al. 2019, section 3.1 and Fig. 4).

Each checkpoint is scored by ``ganforge-eval ckpt=… truncation=t`` at every threshold (first without
truncation): latents whose |z_i| exceeds t are drawn again, so a smaller t gives fewer kinds of sample, each
closer to the mode. IS and precision should rise and recall fall as t shrinks; FID reports the balance.

A checkpoint counts as **amenable to truncation** when, as the threshold shrinks, neither IS nor precision ever
falls by more than ``--tolerance`` of its untruncated value below the best reached at a larger threshold: the
paper's non-amenable models turn truncated noise into saturation artifacts instead of cleaner samples, which
lowers both.

    .venv/bin/python benchmarks/truncation.py RUN_A/checkpoints/last.ckpt RUN_B/checkpoints/last.ckpt
    .venv/bin/python benchmarks/truncation.py CKPT --thresholds 2 1 0.5 --eval metrics.n_samples=2000

Writes ``<out>/truncation.json`` and ``<out>/truncation.png`` (IS, FID, precision and recall against the
threshold, one line per checkpoint) and prints the Markdown table of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL = Path(sys.executable).with_name("ganforge-eval")
PLOTTED = ("is", "fid", "precision", "recall")
COLUMNS = ("is", "fid", "precision", "recall", "density", "coverage", "class_accuracy", "intra_fid")


def score(ckpt: Path, threshold: float | None, out: Path, extra: list[str]) -> dict[str, float]:
    """One ``ganforge-eval`` of ``ckpt`` at ``threshold`` (None: untruncated); its metrics."""
    json_path = out / f"{ckpt.parent.parent.name}_{threshold}.json"
    t = "null" if threshold is None else str(threshold)
    subprocess.run(
        [str(EVAL), f"ckpt={ckpt}", f"truncation={t}", f"out={json_path}", *extra], check=True, capture_output=True
    )
    return json.loads(json_path.read_text())["metrics"]


def amenable(rows: list[dict[str, float]], tolerance: float) -> bool:
    """Whether IS and precision, along thresholds that shrink (``rows[0]`` untruncated), never fall more than
    ``tolerance`` of their untruncated value below the best reached before."""
    for metric in ("is", "precision"):
        best, allowed = rows[0][metric], tolerance * abs(rows[0][metric])
        for row in rows[1:]:
            if row[metric] < best - allowed:
                return False
            best = max(best, row[metric])
    return True


def plot(curves: dict[str, list[dict[str, float]]], thresholds: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4 * len(PLOTTED), 3.2), dpi=100)
    # Untruncated is drawn one step beyond the largest threshold, at the left; the threshold shrinks to the right.
    xs = [max(thresholds) + 0.5, *thresholds]
    for ax, metric in zip(axes, PLOTTED, strict=True):
        for name, rows in curves.items():
            ax.plot(xs, [row[metric] for row in rows], marker="o", label=name)
        ax.set_xlim(max(xs) + 0.2, 0)
        ax.set_xticks(xs, ["none", *(f"{t:g}" for t in thresholds)], fontsize=7)
        ax.set_xlabel("truncation threshold")
        ax.set_title(metric)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def markdown(curves: dict[str, list[dict[str, float]]], thresholds: list[float], verdicts: dict[str, bool]) -> str:
    lines = [
        "| checkpoint | threshold | " + " | ".join(COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for name, rows in curves.items():
        for t, row in zip([None, *thresholds], rows, strict=True):
            cells = " | ".join(f"{row[c]:.4g}" if c in row else "–" for c in COLUMNS)
            lines.append(f"| {name} | {'none' if t is None else f'{t:g}'} | {cells} |")
    kept = [name for name, verdict in verdicts.items() if verdict]
    lines += ["", f"Amenable to truncation: {len(kept)} of {len(verdicts)} ({', '.join(kept)})"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpts", nargs="+", type=Path, help="checkpoints (named by their run folder)")
    parser.add_argument("--thresholds", nargs="+", type=float, default=[2.0, 1.5, 1.0, 0.75, 0.5, 0.25])
    parser.add_argument("--tolerance", type=float, default=0.02, help="allowed fall of IS / precision, relative")
    parser.add_argument("--eval", nargs="*", default=[], help="extra ganforge-eval overrides (e.g. metrics.n_samples)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "truncation")
    args = parser.parse_args()
    thresholds = sorted(args.thresholds, reverse=True)
    args.out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[dict[str, float]]] = {}
    for ckpt in args.ckpts:
        name = f"{ckpt.parent.parent.parent.name}/{ckpt.parent.parent.name}"
        curves[name] = [score(ckpt.absolute(), t, args.out, args.eval) for t in [None, *thresholds]]
        print(name, " ".join(f"{row['is']:.3f}/{row['fid']:.3f}" for row in curves[name]), flush=True)
    verdicts = {name: amenable(rows, args.tolerance) for name, rows in curves.items()}
    record = {"thresholds": thresholds, "tolerance": args.tolerance, "curves": curves, "amenable": verdicts}
    (args.out / "truncation.json").write_text(json.dumps(record, indent=2) + "\n")
    plot(curves, thresholds, args.out / "truncation.png")
    print(markdown(curves, thresholds, verdicts))


if __name__ == "__main__":
    main()
