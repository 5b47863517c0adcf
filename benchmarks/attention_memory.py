"""Memory of TransGAN's grid self-attention against full attention (issue 38): one ``GridAttention`` layer's
forward and backward on a ``--grid``² token grid (the paper's last G stage at 32×32: 1,024 tokens of 24 dims),
with windows the size of the grid (full attention) and smaller.

Each measurement runs in a fresh process: after a warm-up step on one window, the peak resident memory of the
step (``ru_maxrss``) minus the resident memory just before it, so it counts everything the step allocated: the
attention maps where a backend materialises them, the relative-position bias expanded to one (L x L) map per
head. Two SDPA backends: ``math`` (PyTorch's reference, which materialises the L x L scores) and ``default``
(whatever ``scaled_dot_product_attention`` picks on this machine; with a learned bias as the mask, the CPU picks
the math backend too). Median of ``--repeats``.

    .venv/bin/python benchmarks/attention_memory.py --grid 32 --windows 32 16 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ganforge.nets.transgan import GridAttention

BACKENDS = ("math", "default")


def resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def step(grid: int, window: int, dim: int, heads: int, batch: int, backend: str) -> float:
    """MB the step added to this process's peak resident memory."""
    torch.manual_seed(0)
    attention = GridAttention(dim, heads, window)
    x = torch.randn(batch, grid, grid, dim, requires_grad=True)
    attention(x[:1, :window, :window]).sum().backward()  # warm-up: the first backward's own allocations
    before = resident_mb()
    if backend == "math":
        with sdpa_kernel(SDPBackend.MATH):
            attention(x).square().sum().backward()
    else:
        attention(x).square().sum().backward()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before  # ru_maxrss: KB on Linux


def measure(args: argparse.Namespace, window: int, backend: str) -> float:
    command = [sys.executable, __file__, "--child", str(window), backend, "--grid", str(args.grid)]
    command += ["--dim", str(args.dim), "--heads", str(args.heads), "--batch", str(args.batch)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=32, help="tokens per side")
    parser.add_argument("--windows", type=int, nargs="+", default=[32, 16, 8], help="window sides (the grid: full)")
    parser.add_argument("--dim", type=int, default=24, help="token dimension (the paper's 32x32 stage: 24)")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("WINDOW", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        torch.set_num_threads(1)
        print(step(args.grid, int(args.child[0]), args.dim, args.heads, args.batch, args.child[1]))
        return
    results: dict[str, dict[int, float]] = {}
    for backend in BACKENDS:
        results[backend] = {
            w: statistics.median(measure(args, w, backend) for _ in range(args.repeats)) for w in args.windows
        }
    full = args.windows[0]
    print(f"{platform.machine()}, torch {torch.__version__}: grid {args.grid}^2, dim {args.dim}, {args.heads} heads, "
          f"batch {args.batch}, median of {args.repeats} fresh processes")  # fmt: skip
    print("| window | " + " | ".join(f"{b} backend (MB) | vs window {full}" for b in BACKENDS) + " |")
    print("|---|" + "---|---|" * len(BACKENDS))
    for w in args.windows:
        cells = " | ".join(f"{results[b][w]:.1f} | {results[b][full] / results[b][w]:.1f}x" for b in BACKENDS)
        print(f"| {w} | {cells} |")
    print(json.dumps({b: {str(w): mb for w, mb in r.items()} for b, r in results.items()}))


if __name__ == "__main__":
    main()
