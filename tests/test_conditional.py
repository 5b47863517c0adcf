"""Class-conditional GANs: label-concatenating nets, labels through training, sampling by class."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ganforge.config import build_module, generator_from_checkpoint, load_checkpoint
from ganforge.errors import ConfigError
from ganforge.evaluate import evaluate
from ganforge.generation import class_major_labels, generate_batches
from ganforge.metrics import DomainFeatures
from ganforge.module import GANModule
from ganforge.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from ganforge.objectives import NonSaturating
from ganforge.sample import sample
from ganforge.train import train
from tests.conftest import TINY, Compose, compose_config
from tests.test_cli import BIN, assert_clean_error, run

K = 10

NETS: dict[str, tuple[Callable[..., nn.Module], Callable[..., nn.Module], tuple[int, ...]]] = {
    "mlp-points": (
        lambda **k: MLPGenerator(latent_dim=3, width=16, depth=2, **k),
        lambda **k: MLPDiscriminator(width=16, depth=2, **k),
        (2,),
    ),
    "mlp-images": (
        lambda **k: MLPGenerator(latent_dim=3, channels=1, resolution=8, width=16, depth=2, latent_categories=4, **k),
        lambda **k: MLPDiscriminator(channels=1, resolution=8, width=16, depth=2, maxout=1, **k),
        (1, 8, 8),
    ),
    "dcgan": (
        lambda **k: DCGANGenerator(latent_dim=3, channels=1, resolution=28, width=8, **k),
        lambda **k: DCGANDiscriminator(channels=1, resolution=28, width=8, **k),
        (1, 28, 28),
    ),
}


@pytest.mark.parametrize("name", NETS)
def test_conditional_nets_shapes_and_labels_change_outputs(name: str) -> None:
    """G(z, y) has the data's shape and D(x, y) one logit per sample; changing only y changes both outputs."""
    make_g, make_d, shape = NETS[name]
    torch.manual_seed(0)
    g, d = make_g(num_classes=K).eval(), make_d(num_classes=K).eval()
    assert g.num_classes == d.num_classes == K
    z, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 3, 4, 9])
    x = g(z, y)
    assert x.shape == (6, *shape)
    assert d(x, y).shape == (6,)
    other = (y + 1) % K
    assert not torch.allclose(g(z, other), x)
    assert not torch.allclose(d(x, other), d(x, y))
    with pytest.raises(ValueError, match="num_classes=10"):
        g(z)


@pytest.mark.parametrize("name", NETS)
def test_labels_add_only_input_width_and_unconditional_layout_is_unchanged(name: str) -> None:
    """num_classes=None keeps every parameter (and num_classes=None); num_classes=K widens only the
    first layer's inputs by K (G: latent + one-hot; D: features or channels + one-hot)."""
    make_g, make_d, _ = NETS[name]
    for make in (make_g, make_d):
        plain, default, conditional = make(num_classes=None), make(), make(num_classes=K)
        assert plain.num_classes is None and default.num_classes is None
        assert {k: v.shape for k, v in plain.state_dict().items()} == {
            k: v.shape for k, v in default.state_dict().items()
        }
        widths = {k: v.shape for k, v in conditional.state_dict().items()}
        changed = [k for k, v in plain.state_dict().items() if widths[k] != v.shape]
        assert len(changed) == 1  # the first layer's weight
        old, new = plain.state_dict()[changed[0]].shape, widths[changed[0]]
        axis = 0 if isinstance(conditional.net[0], nn.ConvTranspose2d) else 1  # ConvTranspose weights are (in, out)
        assert new[axis] == old[axis] + K and new[1 - axis] == old[1 - axis]


def test_config_gives_nets_the_data_classes_only_when_conditional(tmp_path: Path) -> None:
    """model.conditional=true interpolates data.num_classes into both nets; false (default) gives null."""
    for model, data, classes in [("dcgan", "fashion_mnist", 10), ("mlp", "ring", 8)]:
        base = [f"model={model}", f"data={data}", f"paths.output_dir={tmp_path}"]
        plain = compose_config("train", base)
        assert plain.model.conditional is False
        assert plain.model.generator.num_classes is None and plain.model.discriminator.num_classes is None
        cond = compose_config("train", [*base, "model.conditional=true"])
        assert cond.model.generator.num_classes == cond.model.discriminator.num_classes == classes
        module = build_module(cond)
        assert module.num_classes == classes and module.discriminator.num_classes == classes


def test_conditional_model_on_data_without_classes_is_refused_before_reading_data(tiny_cfg: Compose) -> None:
    """CelebA declares num_classes: null; the run stops at start-up (its data_dir does not even exist)."""
    cfg = tiny_cfg("data=celeba", "model.conditional=true", "data.data_dir=/nonexistent/celeba")
    with pytest.raises(ConfigError, match=r"num_classes: null.*model\.conditional=false"):
        train(cfg)


def test_conditional_model_with_packing_is_refused(tiny_cfg: Compose) -> None:
    with pytest.raises(ConfigError, match=r"model\.pack=2 cannot be combined with model\.conditional=true"):
        build_module(tiny_cfg("model.conditional=true", "model.pack=2"))


def test_generator_and_discriminator_must_agree_on_classes() -> None:
    g, d = MLPGenerator(num_classes=K), MLPDiscriminator(num_classes=None)
    with pytest.raises(ConfigError, match="num_classes=10"):
        GANModule(g, d, NonSaturating(), torch.optim.SGD, torch.optim.SGD)  # type: ignore[arg-type]


class LabelRecorder(nn.Module):
    """A 'generator' that returns its latents and remembers the labels it was given."""

    latent_dim = 2

    def __init__(self, num_classes: int | None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.zeros(1))  # a parameter, so generate_batches finds the device
        self.labels: list[torch.Tensor | None] = []

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.labels.append(y)
        return z


def test_class_major_labels_are_balanced_and_sorted() -> None:
    assert class_major_labels(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    labels = class_major_labels(25, K)
    assert labels.tolist() == sorted(labels.tolist()) and set(labels.bincount().tolist()) == {2, 3}


def test_generate_batches_cycles_classes_with_the_unconditional_latent_stream() -> None:
    """Without labels, a conditional G gets class-major labels; the latents are the same seeded stream
    as for an unconditional G; given labels are passed batch by batch; an unconditional G refuses labels."""
    conditional, plain = LabelRecorder(num_classes=3), LabelRecorder(num_classes=None)
    z_cond = torch.cat(list(generate_batches(conditional, 6, seed=5, batch_size=4)))
    z_plain = torch.cat(list(generate_batches(plain, 6, seed=5, batch_size=4)))
    torch.testing.assert_close(z_cond, z_plain, rtol=0, atol=0)
    assert [y.tolist() for y in conditional.labels] == [[0, 0, 1, 1], [2, 2]]
    assert plain.labels == [None, None]
    conditional.labels.clear()
    list(generate_batches(conditional, 3, seed=0, labels=torch.tensor([2, 0, 1])))
    assert conditional.labels[0].tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="unconditional"):
        list(generate_batches(plain, 3, seed=0, labels=torch.tensor([2, 0, 1])))


def test_module_generate_uses_given_or_class_major_labels() -> None:
    g, d = MLPGenerator(latent_dim=2, width=8, depth=1, num_classes=3), MLPDiscriminator(width=8, num_classes=3)
    module = GANModule(g, d, NonSaturating(), torch.optim.SGD, torch.optim.SGD, ema_decay=None)  # type: ignore[arg-type]
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        g.eval()
        torch.testing.assert_close(module.generate(6, seed=1), g(z, torch.tensor([0, 0, 1, 1, 2, 2])))
        given = torch.tensor([2, 2, 2, 1, 1, 0])
        torch.testing.assert_close(module.generate(6, seed=1, y=given), g(z, given))


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """A tiny conditional DCGAN run on Fashion-MNIST (4 G steps, R1 every D step) with every G, D and
    training_step call recorded: which labels each net saw."""
    out = tmp_path_factory.mktemp("conditional")
    calls: list[dict[str, Any]] = []
    g_forward, d_forward, step = DCGANGenerator.forward, DCGANDiscriminator.forward, GANModule.training_step

    def spy(kind: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(self: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
            calls.append({"kind": kind, "n": len(x), "y": None if y is None else y.clone(), "training": self.training})
            return original(self, x, y)

        return wrapped

    def spy_step(self: GANModule, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        calls.append({"kind": "batch", "n": len(batch[0]), "y": batch[1].clone(), "training": True})
        step(self, batch, batch_idx)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DCGANGenerator, "forward", spy("G", g_forward))
        patch.setattr(DCGANDiscriminator, "forward", spy("D", d_forward))
        patch.setattr(GANModule, "training_step", spy_step)
        overrides = ["model.conditional=true", "max_gen_steps=4", "+loss/penalties=[r1]", "loss.penalties.r1.every=1"]
        train(compose_config("train", [*TINY, f"paths.output_dir={out}", *overrides]))
    return out, calls


def test_training_gives_g_d_and_penalties_the_real_batch_labels(
    conditional_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    """Per batch: G(z, y_real), D(real, y_real), D(fake, y_real), R1's D(real, y_real), and the G step's
    D(fake, y_real): every training-time net call gets exactly the real batch's labels."""
    _, calls = conditional_run
    batches = [i for i, c in enumerate(calls) if c["kind"] == "batch"]
    assert len(batches) == 4
    for start, end in zip(batches, [*batches[1:], None], strict=True):
        labels = calls[start]["y"]
        nets = [c for c in calls[start + 1 : end] if c["training"]]
        assert [c["kind"] for c in nets] == ["G", "D", "D", "D", "D"]
        for c in nets:
            assert c["n"] == 16 and torch.equal(c["y"].cpu(), labels)
    all_labels = torch.cat([calls[i]["y"] for i in batches])
    assert len(all_labels.unique()) > 3  # real labels of a shuffled dataset, not a constant


def test_sample_grid_and_metrics_of_a_conditional_run(conditional_run: tuple[Path, list[dict[str, Any]]]) -> None:
    """The grid holds 64 samples rounded up to 70: 10 rows (one per class) of 7; metrics are computed,
    with the domain classifier's accuracy on the generated classes."""
    out, _ = conditional_run
    grid = Image.open(out / "samples" / "gen_step_0000004.png")
    assert grid.size == (7 * 30 + 2, 10 * 30 + 2)
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert np.isfinite(metrics["fid"])
    generator, _ = generator_from_checkpoint(load_checkpoint(out / "checkpoints" / "last.ckpt"))
    labels = class_major_labels(100, 10)  # metrics.n_samples of TINY, in the evaluation's class-major order
    with torch.no_grad():
        images = torch.cat(list(generate_batches(generator, 100, seed=0, labels=labels)))
        drawn = DomainFeatures("fashion_mnist")(images)[1].argmax(dim=1)
    assert metrics["class_accuracy"] == pytest.approx((drawn == labels).double().mean().item())
    assert np.isfinite(metrics["intra_fid"]) and metrics["intra_fid"] > 0


def test_sample_one_class_writes_labels(conditional_run: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    """y=3: n samples of class 3, exactly G_ema(z, 3) for the seeded latents; arr_1 holds int64 labels."""
    ckpt = conditional_run[0] / "checkpoints" / "last.ckpt"
    sample(compose_config("sample", [f"ckpt={ckpt}", "n=20", "y=3", f"out={tmp_path / 's.npz'}"]))
    sample(compose_config("sample", [f"ckpt={ckpt}", "n=20", "y=4", f"out={tmp_path / 'other.npz'}"]))
    data = np.load(tmp_path / "s.npz")
    assert data["arr_0"].shape == (20, 28, 28, 1) and data["arr_0"].dtype == np.uint8
    assert data["arr_1"].dtype == np.int64 and data["arr_1"].tolist() == [3] * 20
    generator, _ = generator_from_checkpoint(load_checkpoint(ckpt))
    with torch.no_grad():
        z = torch.randn(20, generator.latent_dim, generator=torch.Generator().manual_seed(0))
        expected = generator(z, torch.full((20,), 3))
    expected = ((expected + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(data["arr_0"], expected)
    assert (np.load(tmp_path / "other.npz")["arr_0"] != data["arr_0"]).any()


def test_sample_all_classes_rounds_up_and_grids_one_row_per_class(
    conditional_run: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """y=all with n=25 draws 30 samples (3 per class, class-major) and a grid of 10 rows of 3."""
    ckpt = conditional_run[0] / "checkpoints" / "last.ckpt"
    out, grid = tmp_path / "s.npz", tmp_path / "g.png"
    sample(compose_config("sample", [f"ckpt={ckpt}", "n=25", "y=all", f"out={out}", f"grid={grid}"]))
    data = np.load(out)
    assert data["arr_0"].shape == (30, 28, 28, 1)
    assert data["arr_1"].tolist() == np.repeat(np.arange(10), 3).tolist()
    assert Image.open(grid).size == (3 * 30 + 2, 10 * 30 + 2)
    with pytest.raises(ConfigError, match=r"0\.\.9 or all, got y=10"):
        sample(compose_config("sample", [f"ckpt={ckpt}", "n=5", "y=10", f"out={out}"]))


def test_sample_class_of_an_unconditional_checkpoint_is_a_clear_error(tiny_cfg: Compose, tmp_path: Path) -> None:
    drop = ["~callbacks.image_metrics", "~callbacks.best_checkpoint", "~callbacks.samples"]
    train(tiny_cfg("max_gen_steps=1", *drop))
    result = run(
        str(BIN / "ganforge-sample"), f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}", "y=3", cwd=tmp_path
    )
    assert_clean_error(result, "ganforge-sample: error:", "trained unconditionally", "drop y=")
    assert not (tmp_path / "samples.npz").exists()


def test_ganforge_eval_of_a_conditional_checkpoint_reproduces_the_class_metrics(
    conditional_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    """ganforge-eval of last.ckpt with the run's metric settings gives the callback's final scores,
    class accuracy and intra-class FID included."""
    out, _ = conditional_run
    final = json.loads((out / "metrics.json").read_text())["metrics"]
    overrides = [o for o in TINY if o.startswith("metrics.")]
    result = evaluate(compose_config("eval", [f"ckpt={out / 'checkpoints' / 'last.ckpt'}", *overrides]))
    assert {"class_accuracy", "intra_fid"} <= result["metrics"].keys()
    assert result["metrics"] == pytest.approx(final, rel=1e-5)
