"""GANModule: gradient isolation, n_critic cadence, EMA, divergence, eval_mode and checkpoint state."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn
from torch.optim import SGD
from torch.utils.data import DataLoader, TensorDataset

from ganforge.errors import ConfigError, TrainingDivergedError
from ganforge.generation import eval_mode
from ganforge.module import EMAWithWarmup, GANModule, OptimizerFactory
from ganforge.nets import DCGANDiscriminator, DCGANGenerator
from ganforge.objectives import NonSaturating

LATENT, RES, BATCH = 8, 8, 4  # resolution 8 = base 4 doubled once: the smallest DCGAN


def make_module(
    n_critic: int = 1,
    ema_decay: float | None = 0.999,
    objective: NonSaturating | None = None,
    g_optimizer: OptimizerFactory | None = None,
    d_optimizer: OptimizerFactory | None = None,
) -> GANModule:
    """A GANModule with tiny DCGAN nets for 1-channel 8x8 images."""
    torch.manual_seed(0)
    return GANModule(
        generator=DCGANGenerator(latent_dim=LATENT, channels=1, resolution=RES, width=8),
        discriminator=DCGANDiscriminator(channels=1, resolution=RES, width=8),
        objective=objective or NonSaturating(),
        g_optimizer=g_optimizer or (lambda params: SGD(params, lr=0.01)),
        d_optimizer=d_optimizer or (lambda params: SGD(params, lr=0.01)),
        n_critic=n_critic,
        ema_decay=ema_decay,
    )


def random_images(n_batches: int) -> DataLoader:
    """``n_batches`` batches of random images in [-1, 1] with integer labels, in a fixed order."""
    g = torch.Generator().manual_seed(1)
    images = torch.rand(n_batches * BATCH, 1, RES, RES, generator=g) * 2 - 1
    return DataLoader(TensorDataset(images, torch.arange(n_batches * BATCH) % 10), batch_size=BATCH)


def fit(module: GANModule, n_batches: int) -> Trainer:
    """One epoch of ``n_batches`` batches on the CPU, with no logger, checkpoints or progress bar."""
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, random_images(n_batches))
    return trainer


def recording_sgd(label: str, log: list[str]) -> OptimizerFactory:
    """An SGD factory whose step() appends ``step:<label>`` to ``log``."""

    class RecordingSGD(SGD):
        def step(self, closure: Callable[[], float] | None = None) -> float | None:
            log.append(f"step:{label}")
            return super().step(closure)

    def factory(params: Iterable[nn.Parameter]) -> SGD:
        return RecordingSGD(params, lr=0.01)

    return factory


def record_grads(net: nn.Module, label: str, log: list[str]) -> None:
    """Append ``grad:<label>:<name>`` to ``log`` whenever a gradient is accumulated into a parameter of ``net``."""
    for name, p in net.named_parameters():
        p.register_post_accumulate_grad_hook(lambda _, name=name: log.append(f"grad:{label}:{name}"))


def segments(log: list[str]) -> list[tuple[str, set[str]]]:
    """Split the event log at optimizer steps: (stepped label, gradient events since the previous step)."""
    out, grads = [], set()
    for event in log:
        if event.startswith("step:"):
            out.append((event.removeprefix("step:"), grads))
            grads = set()
        else:
            grads.add(event)
    return out


# --- gradient isolation and cadence ----------------------------------------------------------


@pytest.mark.parametrize("n_critic", [1, 2])
def test_each_step_only_computes_its_own_gradients(n_critic: int) -> None:
    """Between optimizer steps, only the stepped network's parameters receive gradients (all of them)."""
    log: list[str] = []
    module = make_module(n_critic, g_optimizer=recording_sgd("G", log), d_optimizer=recording_sgd("D", log))
    record_grads(module.generator, "G", log)
    record_grads(module.discriminator, "D", log)
    fit(module, 4)
    expected = {
        "G": {f"grad:G:{n}" for n, _ in module.generator.named_parameters()},
        "D": {f"grad:D:{n}" for n, _ in module.discriminator.named_parameters()},
    }
    steps = segments(log)
    assert len(steps) == 4 + 4 // n_critic
    for stepped, grads in steps:
        assert grads == expected[stepped]


def test_generator_step_leaves_discriminator_grads_untouched() -> None:
    """At G's step() the D gradients are exactly those D stepped with, and vice versa."""
    module = make_module()
    snapshots: dict[str, list[torch.Tensor | None]] = {}
    mismatches: list[str] = []

    def grads(net: nn.Module) -> list[torch.Tensor | None]:
        return [None if p.grad is None else p.grad.clone() for p in net.parameters()]

    def same(a: list[torch.Tensor | None], b: list[torch.Tensor | None]) -> bool:
        return all(
            (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
            for x, y in zip(a, b, strict=True)
        )

    def checking_sgd(own: str, other: str) -> OptimizerFactory:
        nets = {"G": module.generator, "D": module.discriminator}

        class CheckingSGD(SGD):
            def step(self, closure: Callable[[], float] | None = None) -> float | None:
                if not same(grads(nets[other]), snapshots.get(other, grads(nets[other]))):
                    mismatches.append(f"{other} grads changed before {own}.step()")
                snapshots[own] = grads(nets[own])
                return super().step(closure)

        return lambda params: CheckingSGD(params, lr=0.01)

    module.g_optimizer, module.d_optimizer = checking_sgd("G", "D"), checking_sgd("D", "G")
    fit(module, 3)
    assert set(snapshots) == {"G", "D"}
    assert mismatches == []


def test_n_critic_cadence_and_counters() -> None:
    """n_critic=3 over 6 batches: steps D D D G D D D G, 8 Lightning steps, 6*batch images shown."""
    log: list[str] = []
    module = make_module(3, g_optimizer=recording_sgd("G", log), d_optimizer=recording_sgd("D", log))
    trainer = fit(module, 6)
    assert log == ["step:D"] * 3 + ["step:G"] + ["step:D"] * 3 + ["step:G"]
    assert module.discriminator_steps == 6
    assert module.generator_steps == 2
    assert trainer.global_step == 8
    assert module.images_shown == 6 * BATCH
    assert module.generator_ema.n_averaged.item() == 2


def test_training_logs_losses_and_progress() -> None:
    """A step logs both losses, D's mean logits, the generator step and kimg."""
    trainer = fit(make_module(), 2)
    metrics = trainer.callback_metrics
    assert {"loss/d", "loss/g", "d/real", "d/fake", "grad_norm/d", "grad_norm/g"} <= set(metrics)
    assert metrics["gen_step"].item() == 2.0
    assert metrics["kimg"].item() == pytest.approx(2 * BATCH / 1000)


class RecordingRealLogits(NonSaturating):
    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        self.real_logits = real_logits.detach()
        return super().d_loss(real_logits, fake_logits)


def test_d_rt_is_the_share_of_positive_real_logits_minus_the_negative() -> None:
    """``d/rt``, ADA's r_t = E[sign(D(real))] on the step's real batch, logged for every run (D overfitting)."""
    objective = RecordingRealLogits()
    metrics = fit(make_module(objective=objective), 3).callback_metrics
    signs = objective.real_logits.sign()
    assert metrics["d/rt"].item() == pytest.approx(signs.mean().item())
    assert metrics["d/rt"].item() == pytest.approx(((signs > 0).sum() - (signs < 0).sum()).item() / BATCH)


def test_n_critic_must_be_positive() -> None:
    """n_critic < 1 is rejected at construction."""
    with pytest.raises(ConfigError, match="n_critic"):
        make_module(n_critic=0)


# --- EMA -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decay", "n", "effective"),
    [(0.999, 0, 0.1), (0.999, 8, 0.5), (0.999, 90, 0.91), (0.9, 1_000_000, 0.9), (0.5, 0, 0.1)],
)
def test_ema_with_warmup_formula(decay: float, n: int, effective: float) -> None:
    """ema <- d * ema + (1 - d) * current with d = min(decay, (1 + n) / (10 + n))."""
    ema, current = [torch.tensor([0.0, 10.0]), torch.tensor([[2.0]])], [torch.tensor([1.0, 0.0]), torch.tensor([[4.0]])]
    EMAWithWarmup(decay)(ema, current, torch.tensor(n))
    torch.testing.assert_close(ema[0], torch.tensor([1 - effective, 10 * effective]))
    torch.testing.assert_close(ema[1], torch.tensor([[2 * effective + 4 * (1 - effective)]]))
    assert torch.equal(current[0], torch.tensor([1.0, 0.0]))  # the live weights are read, not written


def test_ema_with_warmup_copies_integer_buffers() -> None:
    """Integer buffers (BatchNorm's num_batches_tracked) are copied, not averaged."""
    ema, current = [torch.tensor(3), torch.tensor(5)], [torch.tensor(17), torch.tensor(20)]
    EMAWithWarmup(0.999)(ema, current, torch.tensor(100))
    assert ema[0].item() == 17
    assert ema[1].item() == 20


def test_generator_ema_follows_generator_with_warmup() -> None:
    """The first update copies G; the second moves G_ema by 1 - 2/11 towards G; int buffers are copied."""
    module = make_module(ema_decay=0.999)
    g = module.generator
    module.generator_ema.update_parameters(g)
    before = [p.detach().clone() for p in module.sampling_generator.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, g.parameters(), strict=True))
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    g.net[1].num_batches_tracked.fill_(7)
    module.generator_ema.update_parameters(g)
    for averaged, old in zip(module.sampling_generator.parameters(), before, strict=True):
        torch.testing.assert_close(averaged, old + 9 / 11)  # decay_1 = (1 + 1) / (10 + 1)
    assert module.sampling_generator.net[1].num_batches_tracked.item() == 7


def test_ema_copy_is_frozen_and_used_for_sampling() -> None:
    """G_ema is a separate, gradient-free copy and is what sampling_generator returns."""
    module = make_module(ema_decay=0.99)
    assert module.sampling_generator is module.generator_ema.module
    assert module.sampling_generator is not module.generator
    assert not any(p.requires_grad for p in module.generator_ema.parameters())
    assert all(p.requires_grad for p in module.generator.parameters())


def test_no_ema_samples_from_generator() -> None:
    """ema_decay=None builds no EMA copy; sampling_generator is the generator itself."""
    module = make_module(ema_decay=None)
    assert module.generator_ema is None
    assert module.sampling_generator is module.generator
    assert not any(name.startswith("generator_ema") for name in module.state_dict())


def test_sample_latent_shape_and_generate_is_seeded() -> None:
    """sample_latent gives (n, latent_dim); generate(n, seed) is reproducible, differs across seeds,
    leaves the global random stream untouched and restores training mode."""
    module = make_module()
    assert module.sample_latent(5).shape == (5, LATENT)
    module.train()
    state = torch.random.get_rng_state()
    a, b, c = module.generate(4, seed=2), module.generate(4, seed=2), module.generate(4, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert module.sampling_generator.training


# --- divergence ------------------------------------------------------------------------------


class NaNDiscriminatorLoss(NonSaturating):
    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return super().d_loss(real_logits, fake_logits) * float("nan")


class InfGeneratorLoss(NonSaturating):
    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return super().g_loss(fake_logits) + float("inf")


@pytest.mark.parametrize(
    ("objective", "player"), [(NaNDiscriminatorLoss(), "discriminator"), (InfGeneratorLoss(), "generator")]
)
def test_non_finite_loss_raises_training_diverged(objective: NonSaturating, player: str) -> None:
    """A NaN or infinite loss stops training with a TrainingDivergedError naming the player and the fix."""
    module = make_module(objective=objective)
    with pytest.raises(TrainingDivergedError) as info:
        fit(module, 2)
    message = str(info.value)
    assert f"the {player} loss" in message
    assert "diverged" in message
    assert "optim" in message


def test_nan_loss_does_not_step_the_optimizer() -> None:
    """The divergence check fires before the discriminator's weights are updated."""
    module = make_module(objective=NaNDiscriminatorLoss())
    before = [p.detach().clone() for p in module.discriminator.parameters()]
    with pytest.raises(TrainingDivergedError):
        fit(module, 1)
    assert all(torch.equal(a, b) for a, b in zip(before, module.discriminator.parameters(), strict=True))
    assert module.discriminator_steps == 0


# --- eval_mode and checkpoint state ----------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_restores_training_flag(training: bool) -> None:
    """eval_mode switches to eval without autograd inside, and restores the previous mode after."""
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).train(training)
    with eval_mode(net) as inner:
        assert inner is net
        assert not net.training
        assert not net[1].training
        assert not torch.is_grad_enabled()
    assert net.training is training
    assert net[1].training is training
    assert torch.is_grad_enabled()


def test_eval_mode_restores_after_exception() -> None:
    """An exception inside eval_mode still restores training mode."""
    net = nn.Linear(2, 2).train()
    with pytest.raises(RuntimeError), eval_mode(net):
        raise RuntimeError("boom")
    assert net.training


def test_checkpoint_round_trips_counters_and_rng() -> None:
    """on_save_checkpoint / on_load_checkpoint restore the counters and the torch RNG stream."""
    module = make_module()
    module.generator_steps, module.discriminator_steps, module.images_shown = 5, 15, 960
    checkpoint: dict[str, object] = {}
    module.on_save_checkpoint(checkpoint)
    expected = torch.rand(4)
    restored = make_module()
    torch.manual_seed(123)  # move the global RNG elsewhere
    assert (restored.generator_steps, restored.discriminator_steps, restored.images_shown) == (0, 0, 0)
    restored.on_load_checkpoint(checkpoint)
    assert (restored.generator_steps, restored.discriminator_steps, restored.images_shown) == (5, 15, 960)
    assert torch.equal(torch.rand(4), expected)


def test_checkpoint_state_is_a_snapshot() -> None:
    """The saved RNG state is a copy: drawing numbers after saving does not change it."""
    module = make_module()
    checkpoint: dict[str, dict[str, object]] = {}
    module.on_save_checkpoint(checkpoint)
    saved = checkpoint["ganforge"]["torch_rng"].clone()
    torch.rand(10)
    assert torch.equal(checkpoint["ganforge"]["torch_rng"], saved)


def test_checkpoint_saves_and_restores_each_ranks_own_cuda_rng(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under DDP on CUDA (faked: two ranks, one device each), the checkpoint holds every rank's CUDA RNG
    state in rank order, and each resumed rank sets its own device's state from its own row."""
    cuda_states = {i: torch.full((6,), 10 + i, dtype=torch.uint8) for i in range(2)}  # device i's stream
    restored: list[tuple[int, list[int]]] = []

    def set_rng_state(state: torch.Tensor, device: torch.device) -> None:
        restored.append((device.index, state.tolist()))

    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: cuda_states[device.index].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)

    def on_rank(rank: int) -> GANModule:
        def all_gather(state: torch.Tensor) -> torch.Tensor:
            """The peer holds its own device's CUDA state (and, here, the same torch state)."""
            peer = cuda_states[1 - rank] if torch.equal(state, cuda_states[rank]) else state
            return torch.stack([state, peer] if rank == 0 else [peer, state])

        module = make_module()
        strategy = SimpleNamespace(root_device=torch.device("cuda", rank), all_gather=all_gather)
        module._trainer = SimpleNamespace(world_size=2, global_rank=rank, strategy=strategy)  # type: ignore[assignment]
        return module

    checkpoint: dict[str, dict[str, torch.Tensor]] = {}
    on_rank(0).on_save_checkpoint(checkpoint)
    assert checkpoint["ganforge"]["cuda_rng"].tolist() == [[10] * 6, [11] * 6]
    for rank in (0, 1):
        on_rank(rank).on_load_checkpoint(checkpoint)
    assert restored == [(0, [10] * 6), (1, [11] * 6)]
