"""StyleGAN2's modulated convolution two ways: N per-sample kernels in one grouped convolution (the paper's
form) vs the shared kernel with styles on the activations and demodulation on the outputs (ganforge's).

For each synthesis layer of a StyleGAN2 generator (``--width``/``--max-width``/``--resolution`` as in
``model=stylegan2``; the layer shapes are read off the built generator), both forms run forward + backward
(gradients for the input, the kernel and the styles, as in training) on a batch of ``--batch`` samples,
alternating, ``--repeats`` times; each repeat times ``--steps`` calls with ``time.perf_counter``. The table
gives the median milliseconds per call of each form and their ratio, layer by layer and summed over G.

    .venv/bin/python benchmarks/modulated_conv.py --width 16 --max-width 64 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.nets import StyleGAN2Generator
from ganforge.nets.stylegan2 import ModulatedConv2d, modulated_conv2d

Form = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def grouped(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """The paper's form: each sample's modulated, demodulated kernel; the batch as groups of one convolution."""
    n, c_in, h, w = x.shape
    kernels = weight[None] * styles[:, None, :, None, None]
    kernels = kernels * torch.rsqrt(kernels.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    out = F.conv2d(x.reshape(1, n * c_in, h, w), kernels.flatten(0, 1), padding=weight.shape[-1] // 2, groups=n)
    return out.reshape(n, -1, h, w)


def layer_shapes(args: argparse.Namespace) -> list[tuple[int, int, int, int]]:
    """(C_in, C_out, kernel, resolution) of every demodulated convolution in the generator, in order."""
    g = StyleGAN2Generator(
        latent_dim=8, w_dim=8, width=args.width, max_width=args.max_width, channels=1, resolution=args.resolution
    )
    sizes: dict[ModulatedConv2d, int] = {}

    def record(layer: nn.Module, inputs: object, out: torch.Tensor) -> None:
        sizes[cast(ModulatedConv2d, layer)] = out.shape[-1]

    hooks = [
        m.register_forward_hook(record)
        for m in g.modules()
        if isinstance(m, ModulatedConv2d) and m.demodulate  # toRGB's 1x1 layers are not demodulated
    ]
    with torch.no_grad():
        g(torch.randn(1, 8))
    for hook in hooks:
        hook.remove()
    return [(m.conv.weight.shape[1], m.conv.weight.shape[0], m.conv.weight.shape[-1], r) for m, r in sizes.items()]


def time_form(form: Form, inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], steps: int) -> float:
    """Milliseconds per forward + backward call."""
    start = time.perf_counter()
    for _ in range(steps):
        form(*inputs).square().mean().backward()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--max-width", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="calls per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"batch {args.batch}, {torch.get_num_threads()} thread(s), median of {args.repeats} x {args.steps} calls")
    print("| layer (C_in -> C_out, k, resolution) | grouped (ms) | shared kernel (ms) | ratio |\n|---|---|---|---|")
    totals = {"grouped": 0.0, "shared": 0.0}
    for c_in, c_out, k, r in layer_shapes(args):
        x, weight, styles = (
            torch.randn(*shape, requires_grad=True)
            for shape in ((args.batch, c_in, r, r), (c_out, c_in, k, k), (args.batch, c_in))
        )
        inputs = (x, weight, styles)
        torch.testing.assert_close(grouped(*inputs), modulated_conv2d(*inputs), rtol=1e-4, atol=1e-4)
        times: dict[str, list[float]] = {"grouped": [], "shared": []}
        for _ in range(args.repeats):
            times["grouped"].append(time_form(grouped, inputs, args.steps))
            times["shared"].append(time_form(modulated_conv2d, inputs, args.steps))
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name in totals:
            totals[name] += medians[name]
        print(
            f"| {c_in} -> {c_out}, {k}, {r}x{r} | {medians['grouped']:.2f} | {medians['shared']:.2f} "
            f"| {medians['grouped'] / medians['shared']:.2f} |"
        )
    print(f"| **all layers** | {totals['grouped']:.1f} | {totals['shared']:.1f} |", end=" ")
    print(f"{totals['grouped'] / totals['shared']:.2f} |")
    print(f"ratio {totals['grouped'] / totals['shared']:.3f}")


if __name__ == "__main__":
    main()
