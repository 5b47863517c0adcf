"""Few-shot training with and without augmentation (issue 39): each run scored against the held-out images of its class
and against its own training images, with how far its D overfitted.

Takes the run folders of one comparison (``benchmarks/wall_time.py`` runs of ``fmnist_100shot_stylegan2``, one per
seed and setting, e.g. ``… seed=0``, ``… seed=0 augment=diffaugment``, ``… seed=0 augment=ada``). For each run:

- **held out**: its final evaluation (``metrics.json``: EMA samples against every held-out image of the class);
- **training images**: ``ganforge-eval`` of its last checkpoint against the training images themselves
  (``metrics.reference_split=train``, KID subsets as large as the training set);
- **r_t**: ``d/rt`` (E[sign(D(real))] on a step's real batch, logged for every run) averaged over the first and the
  last tenth of the logged steps: near 0 while D cannot tell real from generated, towards 1 once it has memorised
  its training images (ADA's target is 0.6); and ADA's ``augment/p`` at the end where ADA ran.

Runs whose folder names differ only in ``__seed-N`` are one setting; each setting's FID and KID are given as mean ±
standard error over its seeds, and against the setting named by ``--baseline`` (the runs without augmentation) as
the mean of the per-seed changes. ``--figure`` draws 64 of the training images beside the last sample grid of each
setting's run of the lowest seed, in the table's order.

    .venv/bin/python benchmarks/few_shot.py <wall_time's run folders> [--baseline NAME] [--figure f.png]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from ganforge.config import build, load_checkpoint

EVAL = Path(sys.executable).with_name("ganforge-eval")
SEED = re.compile(r"__seed-(\d+)")


def setting_and_seed(run: Path) -> tuple[str, int]:
    """A run folder's setting (its name without ``__seed-N``) and seed."""
    found = SEED.search(run.name)
    if found is None:
        raise SystemExit(f"{run}: no __seed-N in its name; pass runs written by benchmarks/wall_time.py")
    return SEED.sub("", run.name), int(found.group(1))


def logged(run: Path, key: str) -> list[float]:
    with open(run / "csv" / "metrics.csv") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def against_training_images(run: Path, options: list[str]) -> dict[str, float]:
    """FID, KID, precision and recall of the run's last checkpoint against its training images."""
    checkpoint = run / "checkpoints" / "last.ckpt"
    shots = load_checkpoint(checkpoint)["hyper_parameters"]["data"]["shots"]
    out = run / "eval_training_images.json"
    options = ["metrics.reference_split=train", f"metrics.scorer.kid_subset_size={shots}", *options]
    subprocess.run([str(EVAL), f"ckpt={checkpoint}", f"out={out}", *options], check=True, capture_output=True)
    return dict(json.loads(out.read_text())["metrics"])


def score(run: Path, options: list[str]) -> dict[str, Any]:
    saved = json.loads((run / "metrics.json").read_text())
    rt = logged(run, "d/rt")
    tenth = max(1, len(rt) // 10)
    p = logged(run, "augment/p")
    return {
        "steps": saved["gen_step"],
        "held_out": saved["metrics"],
        "training": against_training_images(run, options),
        "rt_first": statistics.fmean(rt[:tenth]),
        "rt_last": statistics.fmean(rt[-tenth:]),
        "p_end": p[-1] if p else None,
    }


def figure(runs: dict[str, dict[int, Path]], path: Path) -> None:
    """64 training images (the grid layout of the runs' own sample grids) and each setting's last grid, side by side."""
    from PIL import Image
    from torchvision.utils import make_grid

    first = [seeds[min(seeds)] for seeds in runs.values()]
    cfg = load_checkpoint(first[0] / "checkpoints" / "last.ckpt")["hyper_parameters"]
    images = build(cfg["data"]).load_split(train=True).images[:64]
    grid = make_grid(images.float() / 255, nrow=8, padding=2).mul(255).byte().permute(1, 2, 0).numpy()
    panels = [Image.fromarray(grid)] + [Image.open(max((run / "samples").glob("gen_step_*.png"))) for run in first]
    canvas = Image.new("RGB", (sum(p.width for p in panels) + 10 * (len(panels) - 1), panels[0].height), "white")
    for i, panel in enumerate(panels):
        canvas.paste(panel.convert("RGB"), (sum(p.width + 10 for p in panels[:i]), 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def mean_se(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values) / len(values) ** 0.5:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--baseline", help="the setting each other one is compared with (default: the shortest name)")
    parser.add_argument("--eval", nargs="*", default=[], help="extra ganforge-eval overrides (training images)")
    parser.add_argument("--figure", type=Path, help="draw the training images beside each setting's samples here")
    args = parser.parse_args()
    folders: dict[str, dict[int, Path]] = defaultdict(dict)
    for run in sorted(args.runs):
        setting, seed = setting_and_seed(run)
        folders[setting][seed] = run
    if args.figure:
        figure(folders, args.figure)
    runs = {setting: {seed: score(run, args.eval) for seed, run in seeds.items()} for setting, seeds in folders.items()}
    (args.runs[0].parent / "few_shot.json").write_text(json.dumps(runs, indent=2) + "\n")
    print("| run | gen steps | FID held out | KID×100 held out | FID training images | KID×100 training "
          "images | precision / recall held out | r_t first / last tenth | ADA p at the end |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for setting, seeds in runs.items():
        for seed, r in sorted(seeds.items()):
            held, own = r["held_out"], r["training"]
            p = "–" if r["p_end"] is None else f"{r['p_end']:.3f}"
            print(
                f"| {setting} seed {seed} | {r['steps']} | {held['fid']:.3f} | {100 * held['kid']:.3f} "
                f"| {own['fid']:.3f} | {100 * own['kid']:.3f} | {held['precision']:.3f} / {held['recall']:.3f} "
                f"| {r['rt_first']:.2f} / {r['rt_last']:.2f} | {p} |"
            )
    baseline = args.baseline or min(runs, key=len)
    print(f"\n| setting | FID held out | KID×100 held out | FID change vs {baseline} | KID change |")
    print("|---|---|---|---|---|")
    for setting, seeds in runs.items():
        fid = [r["held_out"]["fid"] for r in seeds.values()]
        kid = [100 * r["held_out"]["kid"] for r in seeds.values()]
        changes = {
            metric: [
                r["held_out"][metric] / runs[baseline][seed]["held_out"][metric] - 1
                for seed, r in seeds.items()
                if seed in runs.get(baseline, {})
            ]
            for metric in ("fid", "kid")
        }
        change = {m: f"{100 * statistics.fmean(c):+.1f} %" if c else "–" for m, c in changes.items()}
        print(f"| {setting} | {mean_se(fid)} | {mean_se(kid)} | {change['fid']} | {change['kid']} |")


if __name__ == "__main__":
    main()
