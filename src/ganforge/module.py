"""GANModule: the adversarial game as one LightningModule with manual optimization."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, Protocol, TypeVar, cast

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.optim.swa_utils import AveragedModel

from ganforge import kept_images
from ganforge.augment import Augmentation
from ganforge.distributed import keep_per_rank, per_rank_buffers
from ganforge.errors import ConfigError, TrainingDivergedError
from ganforge.games import Game, Judged, Round, batch_size
from ganforge.games.encoders import EncoderGame
from ganforge.generation import generate_batches
from ganforge.nets.layers import refresh_parametrized_weights
from ganforge.objectives import Objective
from ganforge.penalties import Critic, Penalty
from ganforge.regularizers import GeneratorRegularizer

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
Tensors = tuple[torch.Tensor, ...] | list[torch.Tensor]


class LazyTerm(Protocol):
    """A loss term added every ``every`` steps with ``weight`` (D's penalties, G's regularizers)."""

    weight: float
    every: int


Term = TypeVar("Term", bound=LazyTerm)

SchedulerFactory = Callable[[Optimizer], LRScheduler]


class GANModule(LightningModule):
    """Alternates ``n_critic`` discriminator steps with one generator step.

    Each batch of real images drives one D step; every ``n_critic``-th batch is followed by
    a G step that reuses that batch's fake images (the G forward pass is shared). Each
    step toggles its own optimizer, so the other network's parameters get no gradient.
    Progress is counted in generator steps and real images shown to D: Lightning's
    ``global_step`` counts every optimizer step, D and G alike.

    Conditional nets (``num_classes`` set) get the batch's labels: the fakes are generated with
    the real batch's labels (``y_fake = y_real``), so that real and fake rows pair up with one
    label per row, as penalties that mix them (GP interpolates) need, and the label distribution
    of the fakes is the data's. D scores ``(real, y)`` and ``(fake, y)``; penalties get a critic
    bound to ``y``.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        objective: Objective,
        g_optimizer: OptimizerFactory,
        d_optimizer: OptimizerFactory,
        n_critic: int = 1,
        ema_decay: float | None = 0.999,
        penalties: dict[str, Penalty] | None = None,
        pack: int = 1,
        scheduler: SchedulerFactory | None = None,
        augment: Augmentation | None = None,
        g_regularizers: dict[str, GeneratorRegularizer] | None = None,
        game: Game | None = None,
    ) -> None:
        super().__init__()
        if n_critic < 1:
            raise ConfigError(f"n_critic must be >= 1 (discriminator steps per generator step), got {n_critic}")
        if pack < 1:
            raise ConfigError(f"model.pack must be >= 1 (samples D judges at once), got {pack}")
        self.num_classes: int | None = getattr(generator, "num_classes", None)
        if getattr(discriminator, "num_classes", None) != self.num_classes:
            raise ConfigError(
                f"the generator has num_classes={self.num_classes} but the discriminator "
                f"{getattr(discriminator, 'num_classes', None)}; both must be conditional on the same classes"
            )
        if self.num_classes is not None and pack > 1:
            raise ConfigError(
                f"model.pack={pack} cannot be combined with model.conditional=true: a packed D would see "
                "several labels per logit; use model.pack=1 or model.conditional=false"
            )
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.objective = objective
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.n_critic = n_critic
        self.scheduler = scheduler
        self.penalties = dict(penalties or {})
        self.augment = augment or Augmentation()  # what D sees; the identity by default
        self.g_regularizers = nn.ModuleDict(g_regularizers or {})
        self.pack = pack
        self.game = game or Game()  # the plain two-player game by default
        self.game.bind(self)
        #: D steps per G step, as the game decides (0: a game without D, which also has no adversarial loss).
        self.critic_steps = self.game.critic_steps(n_critic)
        keep_per_rank(self)  # under DDP, state such as CycleGAN's image pools stays each rank's own
        self.generator_ema: AveragedModel | None = None
        if ema_decay is not None:
            self.generator_ema = AveragedModel(generator, multi_avg_fn=EMAWithWarmup(ema_decay), use_buffers=True)
            self.generator_ema.requires_grad_(False)
        self.generator_steps = 0
        self.discriminator_steps = 0
        self.images_shown = 0
        self._test_images: dict[str, torch.Tensor] | None = None  # what checkpoints keep to try E or G on

    @property
    def batches_per_gen_step(self) -> int:
        """Batches per generator step: one per D step, or one per G step in a game without D."""
        return max(self.critic_steps, 1)

    @property
    def optimizer_steps_per_gen_step(self) -> int:
        """What Lightning's step counter advances per generator step: every D and G optimizer step."""
        return self.critic_steps + 1

    @property
    def latent_dim(self) -> int:
        return cast(int, self.generator.latent_dim)  # every generator declares it; nn.Module's typing cannot see it

    @property
    def sampling_generator(self) -> nn.Module:
        """The generator used for samples and metrics: the EMA copy when there is one."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    @property
    def sampling_generator_name(self) -> str:
        """What :attr:`sampling_generator` is, for the protocols of results."""
        return "EMA generator" if self.generator_ema is not None else "generator"

    def sample_latent(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self.device)

    def generate(self, n: int, seed: int, y: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` samples (on the CPU) of the sampling generator, in eval mode, from latents seeded by ``seed``.

        A conditional generator draws class ``y[i]`` for sample ``i``; without ``y``, the classes in
        class-major order (:func:`~ganforge.generation.class_major_labels`), so a grid shows them all.
        """
        return torch.cat(list(generate_batches(self.sampling_generator, n, seed, batch_size=n, labels=y))).cpu()

    def critic(self, x: Judged, y: torch.Tensor | None = None) -> torch.Tensor:
        """D's logits for ``x`` (with labels ``y`` when conditional); with packing (PacGAN), one logit
        per ``pack`` consecutive samples (see :meth:`pack_samples`)."""
        return self.discriminator(self.pack_samples(x), y)

    def pack_samples(self, x: Judged) -> Judged:
        """What D sees of a batch: with packing, ``pack`` consecutive samples concatenated along the
        feature/channel axis, one D input per pack."""
        if self.pack == 1:
            return x
        assert isinstance(x, torch.Tensor)  # games whose D judges tuples refuse packing (Game.bind)
        if x.shape[0] % self.pack:
            raise ValueError(f"batch size {x.shape[0]} is not divisible by model.pack={self.pack}")
        return x.reshape(x.shape[0] // self.pack, self.pack * x.shape[1], *x.shape[2:])

    def unpack_samples(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`pack_samples`: one row per sample again."""
        return x if self.pack == 1 else x.reshape(x.shape[0] * self.pack, x.shape[1] // self.pack, *x.shape[2:])

    def setup(self, stage: str) -> None:
        """Under DDP, give each rank its own latent stream (``seed_everything`` seeds them all alike,
        which would make every rank generate the same fakes)."""
        if self.trainer.world_size > 1:
            torch.manual_seed(torch.initial_seed() + self.global_rank)

    def on_fit_start(self) -> None:
        """Record what one optimizer step sees: ``data.batch_size`` is per device (per rank)."""
        world_size = self.trainer.world_size
        batch_size = getattr(self.trainer.datamodule, "batch_size", None)  # type: ignore[attr-defined]  # set by fit
        for logger in self.loggers:
            logger.log_hyperparams(
                {"world_size": world_size, "global_batch_size": batch_size * world_size if batch_size else None}
            )

    def configure_optimizers(self) -> Any:
        """G's optimizer over G and the game's generator-side players, D's over D and its side's."""
        sides = ([self.generator, *self.game.generator_side()], [self.discriminator, *self.game.discriminator_side()])
        g_params, d_params = ([p for net in side for p in net.parameters()] for side in sides)
        optimizers = [self.g_optimizer(g_params), self.d_optimizer(d_params)]
        if self.scheduler is None:
            return optimizers
        return optimizers, [self.scheduler(optimizer) for optimizer in optimizers]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        real, labels = self.prepare_batch(*batch)
        y = self.game.condition(self, labels)  # class-conditional fakes take the real batch's labels
        critic = partial(self.critic, y=y)
        g_opt, d_opt = self.optimizer_list()
        g_step_follows = not self.critic_steps or (self.discriminator_steps + 1) % self.critic_steps == 0
        log_now = self._logs_this_batch(g_step_follows)
        with torch.set_grad_enabled(g_step_follows):  # the G step reuses this forward pass
            played = self.game.play(self, real, labels)

        logs = (
            self._discriminator_step(d_opt, critic, self.game.discriminator_round(played), y, log_now)
            if self.critic_steps
            else {}
        )
        self.images_shown += batch_size(played.real) * self.trainer.world_size
        if g_step_follows:
            logs |= self._generator_step(g_opt, critic, played, y, log_now)
        if log_now:
            self.log_dict(logs | self.progress())

    def progress(self) -> dict[str, float]:
        """How far training has come, logged with the losses. ``step`` is the row's x-axis in every logger
        (Lightning's own key for it; it would take its batch count): the generator step, as ``gen_step``."""
        step = float(self.generator_steps)
        return {"step": step, "gen_step": step, "kimg": self.images_shown / 1000.0}

    def prepare_batch(self, real: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch as this step trains on it (a hook: progressive growing reduces its resolution)."""
        return real, labels

    def _logs_this_batch(self, g_step_follows: bool) -> bool:
        """Log on the batches that end with a generator step (every logger's x-axis is the generator step) and that
        Lightning writes to the loggers, and on the last one. ``ganforge-train`` gives Lightning
        ``trainer.log_every_n_steps`` generator steps' worth of batches, so a row is logged every that many
        generator steps.

        ``self.log`` costs ~0.3 ms per key on the CPU, so logging every batch would slow
        small nets by several percent (benchmarks/RESULTS.md) for values nobody sees.
        """
        if not g_step_follows:
            return False
        trainer = self.trainer
        every = trainer.log_every_n_steps  # type: ignore[attr-defined]  # set by Lightning's logger connector
        batches = (self.discriminator_steps if self.critic_steps else self.generator_steps) + 1
        if every > 0 and batches % every == 0:
            return True
        last_step = 0 < trainer.max_steps <= trainer.global_step + int(self.critic_steps > 0) + 1
        last_epoch = trainer.is_last_batch and trainer.current_epoch + 1 == trainer.max_epochs
        if last_step or last_epoch:
            trainer.should_stop = True  # as it does after this batch; Lightning then writes this row too
        return last_step or last_epoch

    def _discriminator_step(
        self, d_opt: Any, critic: Critic, played: Round, y: torch.Tensor | None, log: bool
    ) -> dict[str, Any]:
        real, fake = self.augment(played.real), self.augment(played.fake)
        with self.toggled_optimizer(d_opt):
            real_logits = critic(real)
            fake_logits = critic(fake)
            loss = self.game.d_adversarial(self.objective, real_logits, fake_logits)
            terms = self.game.d_terms(self, played)
            logs = {"loss/d_adversarial": loss.detach()} if log and (self.penalties or terms) else {}
            loss = self._add_terms(loss, terms, logs if log else None)

            # Penalties take D's inputs before augmentation, and a critic that augments them afresh: R1's
            # gradient is w.r.t. the real images through the augmentation, as in StyleGAN2-ADA (whose lazy R1
            # runs its own augmented pass) and DiffAugment. With packing, a pack is one sample (GP
            # interpolates whole packs and takes gradient norms over a pack's inputs). Games whose D judges
            # tuples refuse penalties (Game.bind).
            def packed_critic(x: torch.Tensor) -> torch.Tensor:
                return self.discriminator(self.pack_samples(self.augment(self.unpack_samples(x))), y)

            packed_real, packed_fake = (
                cast(torch.Tensor, self.pack_samples(side)) for side in (played.real, played.fake)
            )
            loss = self._add_due_terms(
                loss, self.penalties, self.discriminator_steps, "penalty", logs if log else None,
                lambda penalty: penalty.value(packed_critic, packed_real.float(), packed_fake.float(), real_logits),
            )  # fmt: skip
            self._check_finite(loss, "discriminator")
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            if log:
                logs["grad_norm/d"] = self._grad_norm(self.discriminator)
            d_opt.step()
            self.objective.constrain(self.discriminator)
        self.discriminator_steps += 1
        observed = self.augment.observe(real_logits.detach())
        if log:
            logs |= observed | {
                "loss/d": loss.detach(),
                "d/real": real_logits.detach().mean(),
                "d/fake": fake_logits.detach().mean(),
                # E[sign(D(real))], ADA's overfitting heuristic r_t on this batch, logged whether or not ADA runs
                "d/rt": real_logits.detach().sign().mean(),
            }
        return logs

    def _add_due_terms(
        self,
        loss: torch.Tensor,
        terms: Mapping[str, Term],
        step: int,
        prefix: str,
        logs: dict[str, Any] | None,
        value_of: Callable[[Term], torch.Tensor],
    ) -> torch.Tensor:
        """``loss`` plus ``weight * every * value`` of each term due at ``step`` (lazy regularization: D's
        penalties, G's regularizers), computed in float32; each value logged as ``<prefix>/<name>``."""
        for name, term in terms.items():
            if step % term.every == 0:
                with torch.autocast(self.device.type, enabled=False):
                    value = value_of(term)
                loss = loss + term.weight * term.every * value
                if logs is not None:
                    logs[f"{prefix}/{name}"] = value.detach()
        return loss

    @staticmethod
    def _add_terms(loss: torch.Tensor, terms: dict[str, torch.Tensor], logs: dict[str, Any] | None) -> torch.Tensor:
        """``loss`` plus a game's (already weighted) terms, each logged as ``loss/<name>``."""
        for name, value in terms.items():
            loss = loss + value
            if logs is not None:
                logs[f"loss/{name}"] = value.detach()
        return loss

    def _generator_step(
        self, g_opt: Any, critic: Critic, played: Round, y: torch.Tensor | None, log: bool
    ) -> dict[str, Any]:
        with self.toggled_optimizer(g_opt):
            if self.critic_steps:
                loss = self.game.g_adversarial(self.objective, lambda side: critic(self.augment(side)), played)
            else:  # no D, so nothing to fool
                loss = torch.zeros((), device=self.device)
            terms = self.game.g_terms(self, played)
            logs = {"loss/g_adversarial": loss.detach()} if log and (len(self.g_regularizers) or terms) else {}
            loss = self._add_terms(loss, terms, logs if log else None)
            regularizers = cast(dict[str, GeneratorRegularizer], dict(self.g_regularizers.items()))
            loss = self._add_due_terms(
                loss, regularizers, self.generator_steps, "regularizer", logs if log else None,
                lambda regularizer: regularizer.value(self.generator, batch_size(played.fake), y),
            )  # fmt: skip
            self._check_finite(loss, "generator")
            g_opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            if log:
                logs |= {"loss/g": loss.detach(), "grad_norm/g": self._grad_norm(self.generator)}
            g_opt.step()
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(self.generator)
            refresh_parametrized_weights(self.generator_ema.module)  # spectral norm's estimates, for averaged weights
        self.step_schedulers()
        self.generator_steps += 1
        return logs

    def step_schedulers(self) -> None:
        """Step the learning-rate schedulers (if any): once per generator step, for G and D alike."""
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        # What optim.scheduler builds (SchedulerFactory): schedulers that step without a metric.
        for scheduler in cast(list[LRScheduler], schedulers if isinstance(schedulers, list) else [schedulers]):
            scheduler.step()

    def optimizer_list(self) -> list[LightningOptimizer]:
        """G's and D's optimizers (``optimizers()`` types a single one as a possible result too)."""
        optimizers = self.optimizers()
        return optimizers if isinstance(optimizers, list) else [optimizers]

    def _grad_norm(self, net: nn.Module) -> torch.Tensor:
        """The norm of ``net``'s gradients as the optimizer applies them: under ``16-mixed`` they are still
        multiplied by the loss scale here (the optimizer step unscales them), so it is divided out."""
        norm = torch.nn.utils.get_total_norm([p.grad for p in net.parameters() if p.grad is not None])
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        return norm if scaler is None else norm / scaler.get_scale()

    def _check_finite(self, loss: torch.Tensor, player: str) -> None:
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"the {player} loss is {loss.item()} at generator step {self.generator_steps}: training diverged. "
                "Lower the learning rates (optim.*.lr), add a penalty or spectral norm, or resume from an "
                "earlier checkpoint; checkpoints written so far are kept."
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        cuda = self._cuda_device()
        checkpoint["ganforge"] = {
            "generator_steps": self.generator_steps,
            "discriminator_steps": self.discriminator_steps,
            "images_shown": self.images_shown,
            # Resuming continues the same random streams (latents; one per rank), so a resumed
            # run matches an uninterrupted one.
            "torch_rng": self._gather_per_rank(torch.get_rng_state()),
            "cuda_rng": self._gather_per_rank(torch.cuda.get_rng_state(cuda)) if cuda is not None else [],
            # The state_dict holds rank 0's copy of the per-rank buffers; here every rank's, so each resumes its own.
            "per_rank_buffers": {name: self._gather_per_rank(b) for name, b in per_rank_buffers(self).items()},
        }
        if self._test_images is None:  # read once a run
            self._test_images = self.test_images_of(getattr(self._trainer, "datamodule", None))
        if self._test_images:
            checkpoint[kept_images.KEY] = self._test_images

    def test_images_of(self, datamodule: Any) -> dict[str, torch.Tensor]:
        """A few of ``datamodule``'s test images (:func:`ganforge.kept_images.spread`) where a player reads
        images, a translator's G or an encoder game's E, for checkpoints to keep so that tools can try it on real
        inputs from the checkpoint alone; empty for players that read noise only, or data without a test split."""
        translator = hasattr(self.generator, "source_shape")
        if not (translator or isinstance(self.game, EncoderGame)) or not hasattr(datamodule, "load_split"):
            return {}
        return kept_images.spread(datamodule.load_split(train=False), translator)

    def _cuda_device(self) -> torch.device | None:
        """The CUDA device this rank trains on, None off CUDA. The strategy's: ``on_load_checkpoint``
        runs before the module is moved there."""
        device = self.trainer.strategy.root_device if self._trainer is not None else self.device
        return device if device.type == "cuda" else None

    def _gather_per_rank(self, state: torch.Tensor) -> torch.Tensor:
        """This process's ``state`` (RNG states, per-rank buffers), or under DDP every rank's, stacked in rank
        order (every rank takes part in saving a checkpoint; rank 0 writes it)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return state[None]
        return self.trainer.strategy.all_gather(state.to(self.device)).cpu()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["ganforge"]
        self.generator_steps = state["generator_steps"]
        self.discriminator_steps = state["discriminator_steps"]
        self.images_shown = state["images_shown"]
        for name, rows in state.get("per_rank_buffers", {}).items():  # absent from checkpoints before issue 32
            # Each rank loads its own row (a rank beyond those saved, a saved one's); the hook runs before the
            # state_dict is loaded, and DDP does not broadcast these buffers over it.
            checkpoint["state_dict"][name] = rows[self.global_rank % len(rows)]
        states = state["torch_rng"]
        states = states[None] if states.dim() == 1 else states  # checkpoints from before per-rank states
        # A copy of the row: set_rng_state reads a tensor's storage from its start, ignoring the row's offset.
        torch.set_rng_state(states[self.global_rank % len(states)].clone())
        if self.global_rank >= len(states):  # more ranks than when saved: derive a distinct stream (CUDA's too)
            torch.manual_seed(int(torch.randint(2**62, (1,))) + self.global_rank)
            return
        cuda, cuda_states = self._cuda_device(), state["cuda_rng"]
        if cuda is None or len(cuda_states) == 0:
            return
        if isinstance(cuda_states, list):  # checkpoints from before per-rank states: every device's, of rank 0
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            torch.cuda.set_rng_state(cuda_states[self.global_rank], cuda)


class EMAWithWarmup:
    """EMA update for ``AveragedModel`` whose decay ramps up as ``min(decay, (1 + n) / (10 + n))``.

    torch's ``get_ema_multi_avg_fn`` uses a fixed decay, so G_ema would stay close to the
    random initial G for the first ~1/(1 - decay) steps; the ramp (as in TensorFlow's
    ExponentialMovingAverage) makes G_ema useful from the first samples of a short run.
    A class rather than a closure, so that the module pickles (``trainer=ddp_spawn``).
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def __call__(self, ema: Tensors, current: Tensors, num_averaged: torch.Tensor | int) -> None:
        n = float(num_averaged)
        weight = 1.0 - min(self.decay, (1.0 + n) / (10.0 + n))
        if torch.is_floating_point(ema[0]):
            torch._foreach_lerp_(ema, current, weight)
        else:  # integer buffers such as BatchNorm's num_batches_tracked
            for e, c in zip(ema, current, strict=True):
                e.copy_(c)
