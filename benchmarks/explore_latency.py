"""How long ``ganforge-explore`` takes to draw each picture of its page, on the CPU, at the shipped experiments' sizes.

For each experiment its module is built from the packaged config (untrained weights: a draw's cost does not depend on
them) and handed to the explorer as a checkpoint would be; each picture the page draws when a control moves is timed
(median of ``--repeats``, after one warm-up): the samples grid (16), the interpolation strip (8 steps), style mixing
(3 rows of 4) and a translation, with the settings that cost most where they apply (a class, InfoGAN codes, ψ, the
truncation threshold). A change of a control redraws the picture of the tab on show: its time is what a person
waits for (plus the page's round trip on this machine).

    .venv/bin/python benchmarks/explore_latency.py                        # every shipped family, ~1 min
    .venv/bin/python benchmarks/explore_latency.py fmnist_stylegan2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import torch
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from ganforge import kept_images
from ganforge.checkpoint_safety import RUN_SECTIONS
from ganforge.config import CONFIG_MODULE, build, build_module
from ganforge.explore.drawing import Draw, Explorer

#: The families the page has controls for, one experiment each.
EXPERIMENTS = (
    "fmnist_dcgan",
    "fmnist_sagan_cond",
    "fmnist_biggan",
    "fmnist_infogan",
    "fmnist_stylegan2",
    "fmnist_stylegan3",
    "fmnist_transgan",
    "fmnist_flowgan",
    "fmnist_bigan",
    "fmnist_cyclegan",
    "fmnist_srgan",
)


def explorer_of(experiment: str) -> Explorer:
    """The explorer on ``experiment``'s untrained module, passed as the checkpoint a run would write."""
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
        for section in RUN_SECTIONS:  # what a checkpoint's reader never builds (it names the run's folder)
            cfg.pop(section, None)
    module = build_module(cfg)
    hyper = OmegaConf.to_container(cfg, resolve=True)
    checkpoint = {"ganforge": {}, "hyper_parameters": hyper, "state_dict": module.state_dict()}
    if images := module.test_images_of(build(cfg.data)):  # what a translator's or encoder's run keeps
        checkpoint[kept_images.KEY] = images
    return Explorer(checkpoint)


def timed(draw: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``draw()`` over ``repeats`` calls, after one warm-up call."""
    draw()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        draw()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pictures(explorer: Explorer) -> dict[str, Callable[[], Any]]:
    """The pictures the page draws for this checkpoint, each with its costliest settings."""
    c = explorer.controls
    drawn: dict[str, Callable[[], Any]] = {}
    if c.translator or c.encoder:
        image = explorer.test_images()[0]
    if c.translator:
        drawn["translation"] = lambda: explorer.translation(image)
        if c.two_way:
            drawn["inverse"] = lambda: explorer.translation(image, inverse=True)
        return drawn
    codes = (*[1] * len(c.categorical), *[0.5] * c.continuous)
    draw = Draw(seed=1, label=3 if c.num_classes else None, psi=0.7 if c.style else None, truncation=1.0, codes=codes)
    drawn["samples (16)"] = lambda: explorer.samples(16, draw)
    drawn["interpolation (8)"] = lambda: explorer.interpolation(2, 8, draw)
    if c.style:
        drawn["mixing (3x4)"] = lambda: explorer.mixing(2, "middle", 4, draw)
    if c.encoder:
        drawn["reconstruction"] = lambda: explorer.reconstruction(image)
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="*", default=list(EXPERIMENTS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} CPU cores, "
        f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)); median of "
        f"{args.repeats} after a warm-up. Command: `python benchmarks/explore_latency.py "
        f"{' '.join(args.experiments)} --repeats {args.repeats}`.\n"
    )
    print("| experiment | picture | seconds |")
    print("|---|---|---|")
    for experiment in args.experiments:
        explorer = explorer_of(experiment)
        for i, (name, draw) in enumerate(pictures(explorer).items()):
            print(f"| {experiment if i == 0 else ''} | {name} | {timed(draw, args.repeats):.3f} |")


if __name__ == "__main__":
    main()
