"""InfoGAN (Chen et al. 2016): latent codes the generator must keep recoverable from its images.

G's input is noise plus codes, categorical (uniform over K values) and continuous (uniform in [-1, 1]);
a head Q on D's features predicts the codes from an image, and both sides add ``lambda`` times the
negative variational lower bound of the mutual information I(c; G(z, c)) (up to the codes' constant
entropy): cross-entropy for each categorical code, Gaussian negative log-likelihood (Q predicts mean and
log-variance, the paper's factored Gaussian; or only the mean under a fixed ``continuous_std``, as the paper's
code and ``experiment=mnist_infogan`` do) for the continuous ones. Q trains with D (its trunk is D's),
G through the same term in the G step.

The codes are read off a standard-normal latent (:class:`CodedGenerator`): one coordinate per code,
through the normal CDF (cut into K equal bins for a categorical code, scaled to [-1, 1] for a continuous
one). The latent stays N(0, I) as everywhere else in ganforge, so seeded samples, grids, metrics and
resumes need nothing new, and :meth:`CodedGenerator.with_codes` fixes codes for drawing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import ConfigError
from ganforge.games import Game, Round
from ganforge.nets.mlp import categorical_code

if TYPE_CHECKING:
    from ganforge.module import GANModule


class CodedGenerator(nn.Module):
    """A generator net fed ``[noise, one-hot categorical codes, continuous codes]``, built from a standard
    normal latent ``[noise, one coordinate per categorical code, one per continuous code]``.

    ``net`` builds the generator given its input size (a partial of any ganforge generator). ``noise`` is how
    the net reads the noise coordinates: ``normal`` as they are, ``uniform`` through ``2 Phi(z) - 1``, uniform
    in [-1, 1] as in the InfoGAN paper's code, where the noise is no larger than the continuous codes and
    the one-hot codes stand out beside it.
    """

    def __init__(
        self,
        net: Callable[..., nn.Module],
        noise_dim: int,
        categorical: Sequence[int] = (10,),
        continuous: int = 0,
        noise: str = "normal",
    ) -> None:
        super().__init__()
        if noise_dim < 0 or continuous < 0 or any(k < 2 for k in categorical):
            raise ConfigError(
                f"InfoGAN codes: noise_dim={noise_dim} and continuous={continuous} must be >= 0, each categorical "
                f"code needs >= 2 values, got {list(categorical)}"
            )
        if noise not in ("normal", "uniform"):
            raise ConfigError(f"model.generator.noise={noise!r}: choose normal or uniform")
        self.noise_dim, self.categorical, self.continuous = noise_dim, list(categorical), continuous
        self.noise = noise
        self.net = net(latent_dim=noise_dim + sum(self.categorical) + continuous)
        self.latent_dim = noise_dim + len(self.categorical) + continuous
        self.num_classes = getattr(self.net, "num_classes", None)
        self.resolution = getattr(self.net, "resolution", None)

    def codes(self, z: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The codes ``z`` stands for: each categorical code's value (long, (N,)) and the continuous codes (N, C)."""
        first = self.noise_dim
        values = [
            categorical_code(z[:, first + i], k).argmax(dim=1) for i, k in enumerate(self.categorical)
        ]  # fmt: skip
        continuous = 2 * torch.special.ndtr(z[:, first + len(self.categorical) :]) - 1
        return values, continuous

    def with_codes(self, z: torch.Tensor, values: Sequence[float | None]) -> torch.Tensor:
        """``z`` with codes fixed: ``values`` lists the categorical codes' values (0..K-1), then the continuous
        codes' (in (-1, 1)); None keeps the code ``z`` has."""
        n_codes = len(self.categorical) + self.continuous
        if len(values) > n_codes:
            raise ConfigError(f"got {len(values)} code values, but the generator has {n_codes} codes")
        z = z.clone()
        for i, value in enumerate(values):
            if value is None:
                continue
            if i < len(self.categorical):
                k = self.categorical[i]
                if value != int(value) or not 0 <= value < k:
                    raise ConfigError(f"categorical code {i} takes the values 0..{k - 1}, got {value}")
                quantile = (value + 0.5) / k  # the middle of the value's bin
            else:
                if not -1 < value < 1:
                    raise ConfigError(f"continuous code {i - len(self.categorical)} lies in (-1, 1), got {value}")
                quantile = (value + 1) / 2
            z[:, self.noise_dim + i] = torch.special.ndtri(torch.tensor(quantile, dtype=z.dtype))
        return z

    def net_input(self, z: torch.Tensor) -> torch.Tensor:
        """What the net reads for latent ``z``: ``[noise, one-hot codes, continuous codes]``, of
        :attr:`net_input_dim` numbers."""
        z = z.flatten(1)
        first = self.noise_dim
        one_hots = [categorical_code(z[:, first + i], k) for i, k in enumerate(self.categorical)]
        continuous = 2 * torch.special.ndtr(z[:, first + len(self.categorical) :]) - 1
        noise = z[:, :first] if self.noise == "normal" else 2 * torch.special.ndtr(z[:, :first]) - 1
        return torch.cat([noise, *one_hots, continuous], dim=1)

    @property
    def net_input_dim(self) -> int:
        return self.noise_dim + sum(self.categorical) + self.continuous

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.net_input(z), y)


class QHead(nn.Module):
    """Q(c | x) from D's features: logits for each categorical code, mean and log-variance for each
    continuous one (one hidden layer, as the paper's Q on top of D's last hidden layer; with ``batch_norm``,
    BatchNorm after it as in the paper's MNIST Q). With ``continuous_std`` the Gaussian's standard deviation is
    that constant and Q predicts only the means (the paper's code, ``fix_std=True``); None: Q learns it."""

    def __init__(
        self,
        in_features: int,
        categorical: Sequence[int],
        continuous: int,
        hidden: int = 128,
        batch_norm: bool = False,
        continuous_std: float | None = None,
    ) -> None:
        super().__init__()
        if continuous_std is not None and continuous_std <= 0:
            raise ConfigError(f"game.continuous_std={continuous_std} must be > 0 (or null: Q learns it)")
        self.categorical, self.continuous = list(categorical), continuous
        self.fixed_log_var = None if continuous_std is None else 2 * math.log(continuous_std)
        outputs = sum(categorical) + continuous * (2 if continuous_std is None else 1)
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            *([nn.BatchNorm1d(hidden)] if batch_norm else []),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, outputs),
        )

    def forward(self, features: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        out = self.net(features)
        logits = list(out[:, : sum(self.categorical)].split(self.categorical, dim=1))
        gaussian = out[:, sum(self.categorical) :]
        if self.fixed_log_var is not None:
            return logits, gaussian, torch.full_like(gaussian, self.fixed_log_var)
        mean, log_var = gaussian.chunk(2, dim=1)
        return logits, mean, log_var


def information_loss(
    logits: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
    mean: torch.Tensor,
    log_var: torch.Tensor,
    continuous: torch.Tensor,
    continuous_weight: float = 1.0,
) -> torch.Tensor:
    """``-E[log Q(c | x)]`` per sample, averaged: each categorical code's cross-entropy plus
    ``continuous_weight`` times the Gaussian negative log-likelihood of the continuous codes (summed over them)."""
    loss = sum((F.cross_entropy(lg, v) for lg, v in zip(logits, values, strict=True)), mean.new_zeros(()))
    if continuous.shape[1]:
        nll = 0.5 * (log_var + (continuous - mean).square() * torch.exp(-log_var) + math.log(2 * math.pi))
        loss = loss + continuous_weight * nll.sum(dim=1).mean()
    return loss


class InfoGAN(Game):
    """D judges images as in the plain game; both sides add ``info_weight`` times :func:`information_loss`
    of Q's predictions for the fakes' codes (Q trains in D's step, G in its own)."""

    def __init__(
        self,
        info_weight: float = 1.0,
        continuous_weight: float = 0.1,
        q_hidden: int = 128,
        q_batch_norm: bool = False,
        continuous_std: float | None = None,
    ) -> None:
        super().__init__()
        self.info_weight, self.continuous_weight, self.q_hidden = info_weight, continuous_weight, q_hidden
        self.q_batch_norm, self.continuous_std = q_batch_norm, continuous_std

    def bind(self, gan: GANModule) -> None:
        super().bind(gan)
        generator, discriminator = gan.generator, gan.discriminator
        if not isinstance(generator, CodedGenerator):
            raise ConfigError(
                f"game=infogan needs a CodedGenerator (latent codes), got {type(generator).__name__}; "
                "use an InfoGAN experiment (e.g. experiment=mnist_infogan) or model=infogan"
            )
        if not hasattr(discriminator, "features") or not hasattr(discriminator, "num_features"):
            raise ConfigError(
                f"game=infogan puts Q on D's features, which {type(discriminator).__name__} does not expose; "
                "use a DCGAN, SAGAN or StyleGAN2 discriminator"
            )
        features = cast(int, discriminator.num_features)
        self.q_head = QHead(
            features, generator.categorical, generator.continuous, self.q_hidden, self.q_batch_norm, self.continuous_std
        )

    def discriminator_side(self) -> list[nn.Module]:
        return [self.q_head]

    def play(self, gan: GANModule, real: torch.Tensor, labels: torch.Tensor) -> Round:
        z, y = gan.sample_latent(real.shape[0]), self.condition(gan, labels)
        return Round(real=real, fake=gan.generator(z, y), saved={"z": z, **({"y": y} if y is not None else {})})

    def _info(self, gan: GANModule, round: Round) -> dict[str, torch.Tensor]:
        assert isinstance(round.fake, torch.Tensor)
        values, continuous = cast(CodedGenerator, gan.generator).codes(round.saved["z"])
        features = gan.discriminator.features(round.fake, round.saved.get("y"))  # type: ignore[operator]  # bind checked
        logits, mean, log_var = self.q_head(features)
        loss = information_loss(logits, values, mean, log_var, continuous, self.continuous_weight)
        return {"info": self.info_weight * loss}

    d_terms = _info
    g_terms = _info

    @torch.no_grad()
    def inferred_codes(self, discriminator: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
        """Q's most likely value of each categorical code for ``images`` (in [-1, 1]): on real images, the
        unsupervised classification the InfoGAN paper scores (about 5 % error on MNIST)."""
        logits, _, _ = self.q_head(discriminator.features(images))  # type: ignore[operator]  # bind checked it
        return [values.argmax(dim=1) for values in logits]


class WithCodes(nn.Module):
    """A :class:`CodedGenerator` that draws with some codes fixed (``ganforge-sample code=[3, null, 0.5]``)."""

    def __init__(self, generator: CodedGenerator, values: Sequence[float | None]) -> None:
        super().__init__()
        generator.with_codes(torch.zeros(1, generator.latent_dim), values)  # refuses wrong values now
        self.generator, self.values = generator, list(values)
        self.latent_dim, self.num_classes = generator.latent_dim, generator.num_classes
        self.resolution = generator.resolution

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(self.generator.with_codes(z, self.values), y)


def traversal_latents(generator: CodedGenerator, code: int, images: int, seed: int) -> tuple[torch.Tensor, int]:
    """Latents for a grid of about ``images`` in which each row keeps its noise and other codes and varies
    code ``code`` along the row (every value of a categorical code; evenly spaced values in (-1, 1) of a
    continuous one, as many as rows), and the row length. Row-major."""
    n_codes = len(generator.categorical) + generator.continuous
    if not 0 <= code < n_codes:
        raise ConfigError(f"traverse={code}: the generator has codes 0..{n_codes - 1}")
    if code < len(generator.categorical):
        values = [float(v) for v in range(generator.categorical[code])]
    else:
        values = torch.linspace(-0.9, 0.9, max(2, round(images**0.5))).tolist()
    rows = max(1, images // len(values))
    z = torch.randn(rows, generator.latent_dim, generator=torch.Generator().manual_seed(seed))
    fixed = [generator.with_codes(z, [None] * code + [value]) for value in values]
    return torch.stack(fixed, dim=1).flatten(0, 1), len(values)
