"""Games with an encoder: BiGAN/ALI, the adversarial autoencoder, VAE-GAN (and its VAE baseline),
ganforge-encode."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence
from torch.optim import SGD

from ganforge.config import build, build_module, load_checkpoint
from ganforge.encode import encode
from ganforge.errors import ConfigError
from ganforge.games.aae import AdversarialAutoencoder, squared_error
from ganforge.games.bigan import BiGAN
from ganforge.games.encoders import EncoderGame
from ganforge.games.infogan import CodedGenerator
from ganforge.games.vaegan import VAEGAN, gaussian_kl
from ganforge.metrics.image_metrics import split_images
from ganforge.module import GANModule
from ganforge.nets import DCGANDiscriminator, DCGANGenerator, JointDiscriminator, MLPDiscriminator
from ganforge.objectives import NonSaturating
from ganforge.penalties import R1
from ganforge.train import train
from tests.conftest import TINY, compose_config
from tests.test_module import fit

RES, LATENT = 8, 4
#: Experiments whose D has no ``width`` of its own (BiGAN's joint D, AAE's D on codes) drop TINY's.
TINY_ENCODING = [o for o in TINY if not o.startswith("model.discriminator.width")] + ["game.encoder.width=8"]


def encoder(outputs: int) -> DCGANDiscriminator:
    return DCGANDiscriminator(channels=1, resolution=RES, width=8, outputs=outputs)


def generator() -> DCGANGenerator:
    return DCGANGenerator(latent_dim=LATENT, channels=1, resolution=RES, width=8)


def module(game: object, discriminator: torch.nn.Module, gen: torch.nn.Module | None = None, **kw: object) -> GANModule:
    torch.manual_seed(0)
    return GANModule(
        generator=gen or generator(), discriminator=discriminator, objective=NonSaturating(),
        g_optimizer=partial(SGD, lr=0.05), d_optimizer=partial(SGD, lr=0.05), ema_decay=None, game=game, **kw,
    )  # fmt: skip


def joint() -> JointDiscriminator:
    return JointDiscriminator(encoder(0), latent_dim=LATENT, hidden=16, dropout=0.0)


def test_dcgan_discriminator_outputs_k_numbers_or_a_trunk_and_keeps_its_keys() -> None:
    x = torch.randn(5, 1, RES, RES)
    assert DCGANDiscriminator(channels=1, resolution=RES, width=8)(x).shape == (5,)
    assert encoder(6)(x).shape == (5, 6)
    trunk = encoder(0)
    assert trunk.features(x).shape == (5, trunk.num_features)
    with pytest.raises(ConfigError, match="features"):
        trunk(x)
    # outputs=1 keeps the state-dict keys of checkpoints written before outputs existed
    assert list(DCGANDiscriminator(channels=1, resolution=28, width=8).state_dict())[-1] == "net.5.bias"


def test_joint_discriminator_judges_the_pair() -> None:
    d = joint().eval()
    x, z = torch.randn(3, 1, RES, RES), torch.randn(3, LATENT)
    logits = d((x, z))
    assert logits.shape == (3,)
    assert not torch.allclose(logits, d((x, z + 1))) and not torch.allclose(logits, d((x + 1, z)))


def test_bigan_pairs_and_flipped_labels_for_the_generator_side() -> None:
    gan = module(BiGAN(encoder(LATENT)), joint())
    real = torch.rand(8, 1, RES, RES) * 2 - 1
    played = gan.game.play(gan, real, None)
    (x, e), (g, z) = played.real, played.fake
    assert x is real and e.shape == z.shape == (8, LATENT) and g.shape == real.shape
    real_logits, fake_logits = gan.critic(played.real), gan.critic(played.fake)
    # non-saturating, labels flipped: -log(1 - D(x, E(x))) - log D(G(z), z)
    expected = (F.softplus(real_logits) + F.softplus(-fake_logits)).mean()
    assert torch.allclose(gan.game.g_adversarial(gan.objective, gan.critic, played), expected)


def test_bigan_trains_the_encoder_with_g_and_refuses_what_cannot_judge_pairs() -> None:
    gan = module(BiGAN(encoder(LATENT)), joint())
    before = [p.detach().clone() for p in gan.game.encoder.parameters()]
    assert set(map(id, gan.game.generator_side())) == {id(gan.game.encoder)}
    fit(gan, 2)
    assert all(not torch.equal(a, b) for a, b in zip(before, gan.game.encoder.parameters(), strict=True))
    with pytest.raises(ConfigError, match="encoder gives 3 numbers"):
        module(BiGAN(encoder(3)), joint())
    with pytest.raises(ConfigError, match="penalties"):
        module(BiGAN(encoder(LATENT)), joint(), penalties={"r1": R1(weight=1.0)})


def coded_decoder() -> CodedGenerator:
    net = partial(DCGANGenerator, channels=1, resolution=RES, width=8)
    return CodedGenerator(net, noise_dim=LATENT, categorical=(5,), continuous=0)


def test_aae_codes_are_style_and_category_probabilities_judged_against_the_prior() -> None:
    gan = module(AdversarialAutoencoder(encoder(LATENT + 5), reconstruction_weight=2.0),
                 MLPDiscriminator(channels=LATENT + 5, width=16, depth=1, maxout=1), gen=coded_decoder())  # fmt: skip
    real = torch.rand(6, 1, RES, RES) * 2 - 1
    played = gan.game.play(gan, real, None)
    prior, code = played.real, played.fake
    assert prior.shape == code.shape == (6, LATENT + 5)
    assert torch.equal(prior[:, LATENT:].sum(1), torch.ones(6)) and set(prior[:, LATENT:].unique().tolist()) == {0, 1}
    assert torch.allclose(code[:, LATENT:].sum(1), torch.ones(6)) and (code[:, LATENT:] > 0).all()  # a softmax
    reconstruction = played.saved["reconstruction"]
    assert torch.allclose(reconstruction, gan.generator.net(code))
    expected = 2.0 * ((reconstruction - real) ** 2).sum(dim=(1, 2, 3)).mean()
    assert torch.allclose(gan.game.g_terms(gan, played)["reconstruction"], expected)
    assert torch.equal(gan.game.clusters(gan.generator, real), code[:, LATENT:].argmax(1))
    with pytest.raises(ConfigError, match="continuous=0"):
        net = partial(DCGANGenerator, channels=1, resolution=RES, width=8)
        module(AdversarialAutoencoder(encoder(LATENT + 6)), MLPDiscriminator(channels=LATENT + 6),
               gen=CodedGenerator(net, noise_dim=LATENT, categorical=(5,), continuous=1))  # fmt: skip


def test_squared_error_and_gaussian_kl_against_hand_computations() -> None:
    x, target = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    assert squared_error(x, target).item() == pytest.approx(((1 + 4) + 9) / 2)
    mean, log_var = torch.randn(7, 3), torch.randn(7, 3)
    reference = kl_divergence(Normal(mean, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum(1).mean()
    assert gaussian_kl(mean, log_var).item() == pytest.approx(reference.item(), rel=1e-5)
    assert gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).item() == 0.0


def test_vaegan_reconstructs_in_d_features_and_the_vae_in_pixels() -> None:
    d = DCGANDiscriminator(channels=1, resolution=RES, width=8)
    gan = module(VAEGAN(encoder(2 * LATENT), kl_weight=0.5, reconstruction_weight=3.0), d)
    real = torch.rand(6, 1, RES, RES) * 2 - 1
    played = gan.game.play(gan, real, None)
    mean, log_var, reconstruction = (played.saved[k] for k in ("mean", "log_var", "reconstruction"))
    assert torch.equal(gan.game.encode(gan.generator, real), mean)
    terms = gan.game.g_terms(gan, played)
    assert torch.allclose(terms["kl"], 0.5 * gaussian_kl(mean, log_var))
    features = 3.0 * ((d.features(reconstruction) - d.features(real)) ** 2).sum(1).mean()
    assert torch.allclose(terms["reconstruction"], features)
    assert not torch.equal(played.fake, reconstruction)  # D judges prior samples

    vae = module(VAEGAN(encoder(2 * LATENT), reconstruction_weight=3.0, similarity="pixels", adversarial=False), d)
    played = vae.game.play(vae, real, None)
    assert played.fake is played.saved["reconstruction"]  # no prior sample drawn: nothing judges it
    pixels = 3.0 * ((played.saved["reconstruction"] - real) ** 2).sum((1, 2, 3)).mean()
    assert torch.allclose(vae.game.g_terms(vae, played)["reconstruction"], pixels)


def test_the_vae_baseline_runs_no_d_step() -> None:
    d = DCGANDiscriminator(channels=1, resolution=RES, width=8)
    vae = module(VAEGAN(encoder(2 * LATENT), similarity="pixels", adversarial=False), d)
    d_before = [p.detach().clone() for p in d.parameters()]
    trainer = fit(vae, 4)
    assert vae.generator_steps == 4 and vae.discriminator_steps == 0 and trainer.global_step == 4
    assert vae.batches_per_gen_step == vae.optimizer_steps_per_gen_step == 1
    assert all(torch.equal(a, b) for a, b in zip(d_before, d.parameters(), strict=True))
    with pytest.raises(ConfigError, match="similarity=pixels"):
        VAEGAN(encoder(2 * LATENT), adversarial=False)
    with pytest.raises(ConfigError, match="n_critic=1"):
        module(VAEGAN(encoder(2 * LATENT), similarity="pixels", adversarial=False), d, n_critic=2)


@pytest.mark.parametrize(
    ("experiment", "extra"),
    [
        ("fmnist_bigan", ["model.discriminator.image.width=8"]),
        ("mnist_aae", []),
        ("mnist_aae_clusters", ["model.generator.net.width=8"]),
        ("fmnist_vaegan", ["model.discriminator.width=8"]),
        ("fmnist_vae", ["model.discriminator.width=8"]),
    ],
)
def test_encoder_experiments_train_and_encode(experiment: str, extra: list[str], tmp_path: Path) -> None:
    """Each experiment trains a few steps; ganforge-encode's codes and errors match the game's own encoder
    and generator run on the same images."""
    tiny = [o for o in TINY_ENCODING if not (experiment == "mnist_aae_clusters" and "generator.width" in o)]
    run = tmp_path / "run"
    cfg = compose_config("train", [*tiny, f"experiment={experiment}", "max_gen_steps=3", "~callbacks.image_metrics",
                                   "~callbacks.best_checkpoint", f"paths.output_dir={run}", *extra])  # fmt: skip
    train(cfg)
    ckpt = run / "checkpoints" / "last.ckpt"
    assert load_checkpoint(ckpt)["ganforge"]["generator_steps"] == 3
    out, grid = tmp_path / "codes.npz", tmp_path / "recon.png"
    encode(compose_config("encode", [f"ckpt={ckpt}", "n=40", f"out={out}", f"reconstructions={grid}",
                                     "grid_n=16", "device=cpu"]))  # fmt: skip
    codes = np.load(out)
    assert codes["z"].shape[0] == codes["error"].shape[0] == codes["labels"].shape[0] == 40 and grid.is_file()

    module = build_module(cfg)  # the run's own players, loaded by hand (not by ganforge-encode's loader)
    module.load_state_dict(load_checkpoint(ckpt)["state_dict"])
    game, gen = module.game.eval(), module.generator.eval()
    assert isinstance(game, EncoderGame)
    images = next(split_images(build(cfg.data), "test", 40, 0, 40))
    x = images.float() / 127.5 - 1
    with torch.no_grad():
        z = game.encode(gen, x)
        error = (game.decode(gen, z) - x).square().flatten(1).mean(1)
    assert np.allclose(codes["z"], z.flatten(1).numpy(), atol=1e-5)
    assert np.allclose(codes["error"], error.numpy(), atol=1e-5)


def test_encode_refuses_a_checkpoint_without_an_encoder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(compose_config("train", [*TINY, "max_gen_steps=1", "~callbacks.image_metrics", "~callbacks.best_checkpoint",
                                   f"paths.output_dir={run}"]))  # fmt: skip
    with pytest.raises(ConfigError, match="plain game"):
        encode(compose_config("encode", [f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "device=cpu"]))


@pytest.mark.parametrize(
    ("experiment", "game", "extra"),
    [
        (
            "mnist_infogan",
            "InfoGAN",
            ["model.generator.net.width=8", "model.generator.net.hidden=16", "~callbacks.image_metrics"],
        ),
        (
            "fmnist_cyclegan",
            "CycleGAN",
            ["model.generator.ab.width=4", "model.discriminator.a.width=4", "~callbacks.translation_metrics"],
        ),
    ],
)
def test_encode_refuses_games_whose_players_bind_to_the_nets(
    experiment: str, game: str, extra: list[str], tmp_path: Path
) -> None:
    """InfoGAN's Q head and CycleGAN's pools are built when the game binds to the nets: the checkpoint still loads
    whole, and ganforge-encode says in one line that the game has no encoder (it was a state_dict traceback)."""
    run = tmp_path / "run"
    overrides = [*TINY, f"experiment={experiment}", "max_gen_steps=1", "data.batch_size=8", f"paths.output_dir={run}"]
    overrides = [o for o in overrides if not o.startswith(("model.generator.width", "model.discriminator.width"))]
    train(compose_config("train", [*overrides, *extra, "~callbacks.best_checkpoint"]))
    with pytest.raises(ConfigError, match=rf"trained with game {game}, which has no encoder; ganforge-encode reads"):
        encode(compose_config("encode", [f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "device=cpu"]))
