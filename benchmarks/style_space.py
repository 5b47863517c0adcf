"""What StyleGAN's intermediate latent space W is for, measured on checkpoints (Karras et al. 2019, sections 3.1
and 4.2): the perceptual path length in W against Z, and the FID penalty of style mixing.

Each checkpoint gets three ``ganforge-eval`` runs under one protocol (``--eval`` adds overrides to all three):
``ppl=w`` (FID and the path length in W), ``ppl=z`` (the path length in Z) and ``mixing=true`` (the FID of samples
whose ws come from two latents at a crossover uniform in [1, num_ws)). The paper's claims: a disentangled W has
the shorter paths (FFHQ, end-point paths: 412.0 in W against 415.3 in Z without mixing regularization; the full
paths differ far more), and mixing regularization makes mixed styles cost less FID (FFHQ: +0.7 with it at 90 %,
+3.8 without, two latents).

    .venv/bin/python benchmarks/style_space.py RUN_A/checkpoints/last.ckpt RUN_B/checkpoints/last.ckpt
    .venv/bin/python benchmarks/style_space.py CKPT --eval path_length.sampling=full path_length.n=2000

Writes ``<out>/style_space.json`` and prints the Markdown table of benchmarks/RESULTS.md; ``--figure PATH`` also
draws the first checkpoint's style-mixing grid (the paper's Figure 3: coarse styles from a top row, the rest from a
left column).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import torch
from torchvision.utils import save_image

from ganforge.config import generator_from_checkpoint, load_checkpoint
from ganforge.generation import at_full_resolution

ROOT = Path(__file__).resolve().parents[1]
EVAL = Path(sys.executable).with_name("ganforge-eval")
RUNS = {"w": ["ppl=w"], "z": ["ppl=z"], "mixed": ["mixing=true"]}


def run_name(ckpt: Path) -> str:
    """A checkpoint named by its run folder (the folder above ``checkpoints/``)."""
    return ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else ckpt.stem


def score(ckpt: Path, out: Path, extra: list[str]) -> dict[str, float]:
    """The three evaluations of ``ckpt``; FID, mixing FID, their difference and both path lengths."""
    results = {}
    for key, overrides in RUNS.items():
        json_path = out / f"{run_name(ckpt)}_{key}.json"
        command = [str(EVAL), f"ckpt={ckpt}", *overrides, f"out={json_path}", *extra]
        subprocess.run(command, check=True, capture_output=True)
        results[key] = json.loads(json_path.read_text())["metrics"]
    fid, mixed = results["w"]["fid"], results["mixed"]["fid"]
    return {
        "fid": fid,
        "mixing_fid": mixed,
        "mixing_penalty": mixed - fid,
        "ppl_w": results["w"]["ppl_w"],
        "ppl_z": results["z"]["ppl_z"],
    }


@torch.no_grad()
def mixing_grid(ckpt: Path, path: Path, n: int = 5, crossover: int | None = None, seed: int = 0) -> None:
    """The paper's Figure 3: a row of source images B, a column of source images A, and in cell (A, B) the image
    whose first ``crossover`` ws (the coarse styles; default half of them) come from B and the rest from A."""
    generator, _ = generator_from_checkpoint(load_checkpoint(ckpt))
    style = cast(Any, generator.eval())
    rng = torch.Generator().manual_seed(seed)
    ws_a, ws_b = (style.mapping(torch.randn(n, style.latent_dim, generator=rng)) for _ in range(2))
    c = crossover or style.num_ws // 2

    def draw(ws: torch.Tensor) -> torch.Tensor:
        return at_full_resolution(style.synthesis(ws), style.resolution).clamp(-1, 1)

    rows = [torch.cat([torch.full_like(draw(ws_b[:1]), -1.0), draw(ws_b)])]
    for i in range(n):
        mixed = torch.cat([ws_b[:, :c], ws_a[i : i + 1, c:].expand(n, -1, -1)], dim=1)
        rows.append(torch.cat([draw(ws_a[i : i + 1]), draw(mixed)]))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat(rows), path, nrow=n + 1, padding=2, normalize=True, value_range=(-1, 1))


def markdown(rows: dict[str, dict[str, float]]) -> str:
    lines = [
        "| checkpoint | FID | FID, styles mixed | mixing penalty | PPL in W | PPL in Z | W below Z |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        below = "yes" if r["ppl_w"] < r["ppl_z"] else "no"
        lines.append(
            f"| {name} | {r['fid']:.4g} | {r['mixing_fid']:.4g} | {r['mixing_penalty']:+.4g} | {r['ppl_w']:.4g} | "
            f"{r['ppl_z']:.4g} | {below} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpts", nargs="+", type=Path, help="checkpoints of style-based generators")
    parser.add_argument("--eval", nargs="*", default=[], help="extra ganforge-eval overrides for every evaluation")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "style_space")
    parser.add_argument("--figure", type=Path, help="draw the first checkpoint's style-mixing grid here (a PNG)")
    parser.add_argument("--crossover", type=int, help="ws the grid takes from the top row (default: half)")
    args = parser.parse_args()
    if args.figure:
        mixing_grid(args.ckpts[0], args.figure, crossover=args.crossover)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = {run_name(ckpt): score(ckpt, args.out, args.eval) for ckpt in args.ckpts}
    record = {"ckpts": [str(c) for c in args.ckpts], "eval_overrides": args.eval, "rows": rows}
    (args.out / "style_space.json").write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
