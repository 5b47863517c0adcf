"""Progressive growing (Karras et al., 2018): the schedule and the module that follows it.

Everything about growth is derived from one number, the real images shown to D so far
(``GANModule.images_shown``, which checkpoints store): :class:`ProgressiveSchedule` maps it to the
stage, the fade-in factor alpha, the batch size and the learning rate, and
:class:`ProgressiveGANModule` applies that before every batch. A resumed run therefore continues
exactly where it stopped, mid-fade included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch

from ganforge.errors import ConfigError
from ganforge.games import Game
from ganforge.module import GANModule
from ganforge.nets.layers import base_resolution
from ganforge.nets.progan import Growing, ProGANDiscriminator


@dataclass(frozen=True)
class Phase:
    """Where training stands: ``stage`` (0 = base resolution), ``alpha`` (1 = the stage fully faded in)."""

    stage: int
    alpha: float
    resolution: int
    batch_size: int
    lr: float | None  # None: the optimizers' configured (or scheduled) learning rates


class ProgressiveSchedule:
    """Stage 0 trains for ``stable_kimg``; every later stage first fades in over ``fade_kimg`` (alpha
    0 -> 1, linear in images shown) and then trains for ``stable_kimg``; the last stage trains on
    until the run ends. (The original's ``lod_training_kimg`` and ``lod_transition_kimg``.)

    ``batch_size`` and ``lr`` map a resolution to that stage's batch size and learning rate (for G
    and D); a resolution missing from ``batch_size`` uses ``default_batch_size`` (the data's), one
    missing from ``lr`` the optimizers' configured rates. A fade uses the new stage's values. With
    ``optim.scheduler``, a stage's ``lr`` stands for the configured rate: the scheduled rates scale by
    ``lr / optim.*.lr``.
    """

    def __init__(
        self,
        resolution: int,
        default_batch_size: int,
        stable_kimg: float = 600.0,
        fade_kimg: float = 600.0,
        batch_size: Mapping[int, int] | None = None,
        lr: Mapping[int, float] | None = None,
    ) -> None:
        self.base, self.max_stage = base_resolution(resolution)
        self.resolutions = [self.base * 2**s for s in range(self.max_stage + 1)]
        if stable_kimg <= 0 or fade_kimg < 0:
            raise ConfigError(f"stable_kimg must be > 0 and fade_kimg >= 0, got {stable_kimg} and {fade_kimg}")
        self.stable = stable_kimg * 1000
        self.fade = fade_kimg * 1000
        self.default_batch_size = default_batch_size
        self.batch_size = self._per_resolution("batch_size", batch_size)
        self.lr = self._per_resolution("lr", lr)
        too_big = {r: b for r, b in self.batch_size.items() if b > default_batch_size}
        if too_big:
            raise ConfigError(
                f"progressive batch sizes {too_big} exceed data.batch_size={default_batch_size}, the size the "
                f"data loader serves; set data.batch_size={max(too_big.values())}"
            )

    def _per_resolution(self, name: str, values: Mapping[int, Any] | None) -> dict[int, Any]:
        values = {int(r): v for r, v in (values or {}).items()}
        unknown = sorted(set(values) - set(self.resolutions))
        if unknown:
            raise ConfigError(f"{name} names resolutions {unknown}; this run grows through {self.resolutions}")
        return values

    def phase(self, images_shown: int) -> Phase:
        """The phase at ``images_shown`` real images: boundaries belong to the phase they start."""
        period = self.stable + self.fade
        stage = 0 if images_shown < self.stable else int((images_shown - self.stable) // period) + 1
        stage = min(stage, self.max_stage)
        into_stage = images_shown - self.stable - (stage - 1) * period  # images since stage's fade began
        alpha = 1.0 if stage == 0 or self.fade == 0 else min(1.0, into_stage / self.fade)
        resolution = self.resolutions[stage]
        return Phase(
            stage, alpha, resolution, self.batch_size.get(resolution, self.default_batch_size), self.lr.get(resolution)
        )


class ProgressiveGANModule(GANModule):
    """A :class:`GANModule` whose nets grow by ``schedule``: before every batch the phase for the images
    shown so far sets the nets' stage and alpha (the EMA generator's too), the learning rate, and how
    many of the loader's images the batch uses; real images are reduced to the current resolution.

    The data loader serves ``data.batch_size`` images per batch; a stage with a smaller batch size uses
    the first ones (simple, and the data stream stays resumable; for decoded image folders it costs
    the decoding of the unused images).
    """

    generator: Growing
    discriminator: ProGANDiscriminator

    def __init__(self, *args: Any, schedule: ProgressiveSchedule, **kwargs: Any) -> None:
        game = kwargs.get("game")
        if game is not None and type(game) is not Game:
            raise ConfigError(
                f"progressive growing is built for the plain two-player game, not {type(game).__name__}; "
                "set game=null or use a model without a growth schedule"
            )
        super().__init__(*args, **kwargs)
        for name, net, kind in (
            ("generator", self.generator, Growing),
            ("discriminator", self.discriminator, ProGANDiscriminator),
        ):
            if not isinstance(net, kind):
                raise ConfigError(f"a progressive schedule needs growing nets, but the {name} is {type(net).__name__}")
            if net.max_stage != schedule.max_stage:
                raise ConfigError(f"the {name} grows to stage {net.max_stage} but the schedule to {schedule.max_stage}")
        self.schedule = schedule
        self.current: Phase = schedule.phase(0)

    def configure_optimizers(self) -> Any:
        configured = super().configure_optimizers()
        for optimizer in configured if isinstance(configured, list) else configured[0]:
            for group in optimizer.param_groups:
                # Kept in the optimizer's state (checkpoints): the configured rate, and the rate the
                # scheduler (if any) sets, which a stage's own lr scales by phase.lr / base_lr.
                group["base_lr"] = group.get("initial_lr", group["lr"])
                group["scheduled_lr"] = group["lr"]
        return configured

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        phase = self.schedule.phase(self.images_shown)
        nets = [self.generator, self.discriminator]
        if self.generator_ema is not None:
            nets.append(cast(Growing, self.generator_ema.module))  # a copy of the generator
        for net in nets:
            net.set_progress(phase.stage, phase.alpha)
        self.current = phase
        self._apply_stage_lr()

    def step_schedulers(self) -> None:
        """The schedulers step from their own rates (chainable ones read ``lr``); the stage's then applies."""
        groups = [group for optimizer in self.optimizer_list() for group in optimizer.param_groups]
        for group in groups:
            group["lr"] = group["scheduled_lr"]
        super().step_schedulers()
        for group in groups:
            group["scheduled_lr"] = group["lr"]
        self._apply_stage_lr()

    def _apply_stage_lr(self) -> None:
        """``lr`` = the scheduled rate, scaled by the current stage's lr relative to the configured one."""
        stage_lr = self.current.lr
        for optimizer in self.optimizer_list():
            for group in optimizer.param_groups:
                scheduled = group.setdefault("scheduled_lr", group["base_lr"])  # checkpoints from before it
                group["lr"] = scheduled if stage_lr is None else stage_lr * (scheduled / group["base_lr"])

    def progress(self) -> dict[str, float]:
        p = self.current
        growth = {"stage": p.stage, "alpha": p.alpha, "resolution": p.resolution, "batch_size": p.batch_size}
        return super().progress() | {f"progress/{k}": float(v) for k, v in growth.items()}

    def prepare_batch(self, real: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.current.batch_size
        return self.discriminator.prepare_real(real[:n]), labels[:n]
