"""Training throughput (images/s) of GANModule under a Lightning Trainer vs a plain PyTorch loop.

Both sides train the nets of the default experiment (``ganforge.conf``, ``train.yaml`` composed
with Hydra's compose API) on the real Fashion-MNIST training split, with the same batch size,
optimizers, seed and algorithm:

* one D step per batch on ``real`` and ``fake.detach()``, then (every ``n_critic`` batches) a G
  step that reuses the same fakes; non-saturating loss; the other net's parameters are kept
  out of each step (``requires_grad`` toggling);
* an EMA copy of G via ``AveragedModel`` with ganforge's own ``EMAWithWarmup``;
* real images held in memory as uint8 and scaled to [-1, 1] per batch.

The ganforge side is what ``ganforge-train`` runs: ``build_module(cfg)`` and the configured
``FashionMNISTDataModule``, fitted by a ``lightning.Trainer`` built from ``cfg.trainer`` with no
logger (or a CSV logger, ``--logger csv``), no checkpointing, no progress bar, no model summary
and none of ganforge's callbacks, so that only the training loop is measured (``--metrics`` adds
the image-metrics callback with its evaluations scheduled after the timed steps: what it costs
the training steps between two evaluations). Its extras over
the plain loop (gradient norms, finiteness checks, ``self.log_dict``, Lightning's loop, hooks and
DataLoader) are exactly the overhead this benchmark is meant to expose.

The two sides alternate in one process: plain, ganforge, plain, ganforge, ... (``--repeats``
pairs). Each repeat runs ``--warmup`` untimed steps and then ``--steps`` timed steps.

How the time is taken (``time.perf_counter`` around whole blocks of steps):

* plain: around the loop of ``--steps`` steps, after the warm-up steps;
* ganforge: every repeat is one ``trainer.fit`` of ``warmup + steps`` batches with a fresh Trainer
  (the same module and datamodule carry on from the previous repeat). A small callback reads the
  clock in ``on_train_batch_end`` of batch ``warmup - 1`` and of batch ``warmup + steps - 1``, so
  the timed region is exactly ``--steps`` whole iterations of Lightning's training loop (data
  fetch, transfer hook, ``training_step``, all hooks) between two identical points; Trainer
  construction, ``fit`` setup (``configure_optimizers``, dataloader creation, first iterator) and
  teardown lie outside it.

CPU only (``trainer=cpu``, as configured): a CUDA run would also need ``torch.cuda.synchronize()`` at
each clock reading.

The last printed line is ``ratio <median ganforge images/s / median plain images/s>``.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, open_dict
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ganforge.config import CONFIG_MODULE, build_module
from ganforge.module import EMAWithWarmup, GANModule


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps (batches) per repeat (default: 60)")
    parser.add_argument("--repeats", type=int, default=7, help="repeats of each side, interleaved (default: 7)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before each repeat, >= 1 (default: 5)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the experiment's data.batch_size")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    parser.add_argument("--logger", choices=["none", "csv"], default="none", help="Lightning logger (default: none)")
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="add the image-metrics callback (FID/KID/IS) to the ganforge side, scheduled after the timed steps",
    )
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE", help="extra Hydra override (repeatable)"
    )
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1 or args.repeats < 1:
        parser.error("--warmup, --steps and --repeats must be >= 1")
    return args


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_machine() -> None:
    print(f"platform: {platform.platform()} (python {platform.python_version()})")
    print(f"cpu: {cpu_model()} ({os.cpu_count()} logical cores)")
    print(f"torch: {torch.__version__}, threads: {torch.get_num_threads()} (interop {torch.get_num_interop_threads()})")
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC")


def compose_config(args: argparse.Namespace, output_dir: str) -> DictConfig:
    """The default training config (``train.yaml`` + ``experiment=fmnist_dcgan``), as ganforge-train sees it."""
    overrides = [f"paths.output_dir={output_dir}", *args.override]  # no Hydra run dir outside @hydra.main
    if args.batch_size is not None:
        overrides.append(f"data.batch_size={args.batch_size}")
    overrides.append("trainer=cpu")
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # as in a run: ${hydra:...} interpolations resolve
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


# --------------------------------------------------------------------------------------------
# The plain PyTorch loop
# --------------------------------------------------------------------------------------------


class PlainGAN:
    """The same GAN training step written directly in PyTorch, without Lightning or GANModule."""

    def __init__(self, cfg: DictConfig, images: torch.Tensor) -> None:
        torch.manual_seed(cfg.seed)  # what seed_everything(cfg.seed) does for torch; G, then D, as build_module
        self.generator: nn.Module = instantiate(cfg.model.generator)
        self.discriminator: nn.Module = instantiate(cfg.model.discriminator)
        self.g_opt = instantiate(cfg.optim.generator)(self.generator.parameters())
        self.d_opt = instantiate(cfg.optim.discriminator)(self.discriminator.parameters())
        self.ema: AveragedModel | None = None
        if cfg.ema_decay is not None:
            self.ema = AveragedModel(self.generator, multi_avg_fn=EMAWithWarmup(cfg.ema_decay), use_buffers=True)
            self.ema.requires_grad_(False)
        self.n_critic = cfg.n_critic
        self.latent_dim = cfg.model.generator.latent_dim
        self.batch_size = cfg.data.batch_size
        self.images = images  # the uint8 training split
        self.shuffle = torch.Generator().manual_seed(cfg.seed)
        self.order = torch.empty(0, dtype=torch.int64)
        self.position = 0
        self.discriminator_steps = 0

    def next_batch(self) -> torch.Tensor:
        if self.position + self.batch_size > len(self.order):  # new epoch, drop_last
            self.order = torch.randperm(len(self.images), generator=self.shuffle)
            self.position = 0
        index = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return self.images[index].float().div_(127.5).sub_(1.0)

    def step(self) -> None:
        real = self.next_batch()
        g_step_follows = (self.discriminator_steps + 1) % self.n_critic == 0
        z = torch.randn(real.shape[0], self.latent_dim)
        with torch.set_grad_enabled(g_step_follows):
            fake = self.generator(z)

        # D step: fake.detach() keeps G out of it.
        d_loss = F.softplus(-self.discriminator(real)).mean() + F.softplus(self.discriminator(fake.detach())).mean()
        self.d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_opt.step()
        self.discriminator_steps += 1

        if g_step_follows:  # G step on the same fakes; D's parameters get no gradient.
            self.discriminator.requires_grad_(False)
            g_loss = F.softplus(-self.discriminator(fake)).mean()
            self.g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            self.g_opt.step()
            self.discriminator.requires_grad_(True)
            if self.ema is not None:
                self.ema.update_parameters(self.generator)

    def timed_repeat(self, warmup: int, steps: int) -> float:
        """Seconds for ``steps`` steps after ``warmup`` untimed ones."""
        for _ in range(warmup):
            self.step()
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# GANModule under a Lightning Trainer
# --------------------------------------------------------------------------------------------


class BlockTimer(Callback):
    """Clock readings at the end of batch ``warmup - 1`` and of batch ``warmup + steps - 1`` of a fit."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup = warmup
        self.steps = steps
        self.batches = 0
        self.start: float | None = None
        self.elapsed: float | None = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any) -> None:
        self.batches += 1
        if self.batches == self.warmup:
            self.start = time.perf_counter()
        elif self.batches == self.warmup + self.steps:
            assert self.start is not None
            self.elapsed = time.perf_counter() - self.start
            trainer.should_stop = True


def optimizer_steps(module: GANModule, batches: int) -> int:
    """Lightning's ``global_step`` after ``batches`` more batches: it counts D and G steps alike."""
    d0, n = module.discriminator_steps, module.n_critic
    return batches + sum((d0 + k + 1) % n == 0 for k in range(batches))


def ganforge_repeat(
    cfg: DictConfig, module: GANModule, datamodule: Any, args: argparse.Namespace, output_dir: str
) -> float:
    """Seconds for ``--steps`` iterations of Lightning's training loop, inside one ``trainer.fit``."""
    timer = BlockTimer(args.warmup, args.steps)
    logger: CSVLogger | bool = CSVLogger(output_dir, name="csv") if args.logger == "csv" else False
    callbacks: list[Callback] = [timer]
    if args.metrics:  # its per-batch schedule check is timed; its evaluations (at fit end) are not
        callbacks.append(instantiate(cfg.callbacks.image_metrics, every_n_gen_steps=10**9))
    trainer: Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=logger,
        max_steps=optimizer_steps(module, args.warmup + args.steps),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    d_before = module.discriminator_steps
    trainer.fit(module, datamodule=datamodule)
    done = module.discriminator_steps - d_before
    if timer.elapsed is None or done != args.warmup + args.steps:
        raise RuntimeError(f"the fit ran {done} batches, expected {args.warmup + args.steps}")
    return timer.elapsed


# --------------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    # Keep the report readable: Lightning's per-fit banners (GPU available, tips, "fit stopped") and warnings.
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print_machine()

    with tempfile.TemporaryDirectory(prefix="ganforge-bench-") as output_dir:
        cfg = compose_config(args, output_dir)
        batch_size = cfg.data.batch_size

        # As ganforge.train.train: seed, datamodule, module.
        seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = instantiate(cfg.data)
        module = build_module(cfg)
        datamodule.setup("fit")
        images = datamodule.train_set.images  # the same uint8 split the datamodule serves

        plain = PlainGAN(cfg, images)
        ours, theirs = module.state_dict(), plain_state(plain)
        if ours.keys() != theirs.keys() or not all(torch.equal(ours[k], theirs[k]) for k in ours):
            raise RuntimeError("the plain nets do not start identical to GANModule's")

        print(
            f"config: {cfg.task_name} | G {type(module.generator).__name__}, D {type(module.discriminator).__name__}"
            f" | batch {batch_size} | n_critic {cfg.n_critic} | ema_decay {cfg.ema_decay}"
            f" | train images {len(images)} {tuple(images.shape[1:])} {images.dtype}"
        )
        print(
            f"logger: {args.logger} | metrics callback: {'on' if args.metrics else 'off'} | steps/repeat {args.steps}"
            f" | warm-up {args.warmup} | repeats {args.repeats}"
        )
        print()
        print(f"{'repeat':>6}  {'plain img/s':>12}  {'ganforge img/s':>14}  {'ratio':>6}")
        plain_rates: list[float] = []
        ganforge_rates: list[float] = []
        for r in range(1, args.repeats + 1):
            plain_rates.append(args.steps * batch_size / plain.timed_repeat(args.warmup, args.steps))
            ganforge_rates.append(args.steps * batch_size / ganforge_repeat(cfg, module, datamodule, args, output_dir))
            p, g = plain_rates[-1], ganforge_rates[-1]
            print(f"{r:>6}  {p:>12.1f}  {g:>14.1f}  {g / p:>6.3f}", flush=True)

    plain_median = statistics.median(plain_rates)
    ganforge_median = statistics.median(ganforge_rates)
    print(f"{'median':>6}  {plain_median:>12.1f}  {ganforge_median:>14.1f}")
    pair_ratios = [g / p for g, p in zip(ganforge_rates, plain_rates, strict=True)]
    print(f"median of the per-repeat ratios: {statistics.median(pair_ratios):.3f}")
    print(f"threads after the runs: {torch.get_num_threads()}")
    print(f"ratio {ganforge_median / plain_median:.3f}")


def plain_state(plain: PlainGAN) -> dict[str, torch.Tensor]:
    """The plain nets' tensors in GANModule's state_dict order, to check both start identical."""
    state: dict[str, torch.Tensor] = {}
    for prefix, net in (("generator", plain.generator), ("discriminator", plain.discriminator)):
        state.update({f"{prefix}.{k}": v for k, v in net.state_dict().items()})
    if plain.ema is not None:
        state.update({f"generator_ema.{k}": v for k, v in plain.ema.state_dict().items()})
    return state


if __name__ == "__main__":
    main()
