"""What the explorer draws from one checkpoint, as uint8 (H, W, C) pictures, with no web framework in sight.

:class:`Explorer` loads a checkpoint through the safe loader once and answers the questions a researcher asks a
trained GAN first: samples of a seed, a walk between two seeds, a class, InfoGAN's codes, StyleGAN's truncation
and style mixing, BigGAN's truncation threshold, an encoder's ``E(x)`` and ``G(E(x))``, a translator's output.
:class:`Controls` says which of these the checkpoint has, so that a page shows only the controls that apply.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torchvision.transforms import v2
from torchvision.utils import make_grid

from ganforge.config import module_from_checkpoint
from ganforge.errors import ConfigError
from ganforge.games.encoders import EncoderGame
from ganforge.games.infogan import CodedGenerator, WithCodes
from ganforge.generation import at_full_resolution, check_truncation, eval_mode, truncated_normal
from ganforge.kept_images import kept_images
from ganforge.metrics.classifier import to_pixels
from ganforge.plots import scatter_plot
from ganforge.sample import truncate

#: Style mixing's bands, as fractions of a style-based generator's ws (Karras et al. 2019, Fig. 3: coarse styles
#: set pose and shape, middle ones features, fine ones colour and texture).
BANDS = {"coarse": (0.0, 1 / 3), "middle": (1 / 3, 2 / 3), "fine": (2 / 3, 1.0)}
#: The size, in screen pixels, that small samples are enlarged to.
TILE = 96


@dataclass(frozen=True)
class Controls:
    """What a checkpoint's generator takes beyond a seed: the app shows a control for each that is set."""

    translator: bool  # reads images (pix2pix, CycleGAN, SRGAN), not noise
    two_way: bool  # a translator with an inverse (CycleGAN's B -> A)
    encoder: bool  # a game with an encoder (BiGAN, AAE, VAE-GAN): E(x) and G(E(x))
    ema: bool  # an EMA copy of the generator beside the trained one
    num_classes: int | None  # a class-conditional generator
    categorical: tuple[int, ...]  # InfoGAN's categorical codes (values each)
    continuous: int  # InfoGAN's continuous codes
    style: bool  # a style-based generator: psi and style mixing
    vectors: bool  # samples are points (2-D mixtures), drawn as a scatter plot


@dataclass(frozen=True)
class Draw:
    """How to draw from a noise generator: the settings every picture of a page shares."""

    seed: int = 0
    ema: bool = True
    label: int | None = None  # None: every class in turn (conditional models)
    psi: float | None = None  # style-based generators: the truncation psi (None or 1: none)
    truncation: float | None = None  # BigGAN's threshold on |z_i| (None: none)
    codes: tuple[float | None, ...] = ()  # InfoGAN: categorical values, then continuous ones (None: random)


class Explorer:
    """A checkpoint's players, loaded once (:func:`ganforge.config.module_from_checkpoint` refuses what is unsafe or
    does not fit), and the pictures they draw on ``device``."""

    def __init__(self, checkpoint: dict[str, Any], device: str = "cpu") -> None:
        module, self.config = module_from_checkpoint(checkpoint)
        self.kept = kept_images(checkpoint)  # test images to pick from: the dataset itself is never read
        self.module = module.to(device)
        self.device = torch.device(device)
        trained = self.module.generator
        coded = trained if isinstance(trained, CodedGenerator) else None
        self.controls = Controls(
            translator=hasattr(trained, "source_shape"),
            two_way=hasattr(trained, "inverse"),
            encoder=isinstance(self.module.game, EncoderGame),
            ema=self.module.generator_ema is not None,
            num_classes=getattr(trained, "num_classes", None),
            categorical=tuple(coded.categorical) if coded is not None else (),
            continuous=coded.continuous if coded is not None else 0,
            style=all(hasattr(trained, name) for name in ("mapping", "synthesis", "num_ws")),
            vectors=False,
        )
        if not self.controls.translator:  # 2-D mixtures' generators draw points, not images
            vectors = self.render(self.latents(1, Draw()), Draw()).dim() == 2
            self.controls = replace(self.controls, vectors=vectors)

    def generator(self, ema: bool) -> nn.Module:
        """The EMA generator when asked for and present, else the trained one."""
        return self.module.sampling_generator if ema else self.module.generator

    # --- noise generators --------------------------------------------------------------------------------------

    def latents(self, n: int, draw: Draw) -> torch.Tensor:
        """``n`` latents of ``draw.seed`` as ``ganforge-sample`` draws them (the first ``n`` of its stream)."""
        check_truncation(draw.truncation)
        dim = cast(int, self.module.generator.latent_dim)
        return truncated_normal((n, dim), draw.truncation, torch.Generator().manual_seed(draw.seed))

    def samples(self, n: int, draw: Draw) -> np.ndarray:
        """A square grid of ``n`` samples (a scatter plot of ``n`` points for a 2-D mixture)."""
        images = self.render(self.latents(n, draw), draw)
        if self.controls.vectors:
            from PIL import Image

            with Image.open(io.BytesIO(scatter_plot(images, title=f"{n} samples, seed {draw.seed}"))) as plot:
                return np.asarray(plot.convert("RGB"))
        by_class = self.controls.num_classes is not None and draw.label is None  # a column per class
        return picture(images, columns=cast(int, self.controls.num_classes) if by_class else int(np.ceil(np.sqrt(n))))

    def interpolation(self, second_seed: int, steps: int, draw: Draw) -> np.ndarray:
        """A strip of ``steps`` images along the great circle from the latent of ``samples(1, draw)`` to that of
        ``samples(1, second seed)`` (spherical interpolation: Gaussian latents live near a sphere, White 2016)."""
        if steps < 2:
            raise ConfigError(f"an interpolation needs at least 2 steps, got {steps}")
        start = self.latents(1, draw)[0]
        end = self.latents(1, replace(draw, seed=second_seed))[0]
        path = torch.stack([slerp(start, end, t) for t in torch.linspace(0, 1, steps).tolist()])
        return picture(self.render(path, draw), columns=steps)

    def mixing(self, second_seed: int, band: str, n: int, draw: Draw) -> np.ndarray:
        """Style mixing: a row of ``n`` samples of ``draw.seed``, the row of ``second_seed`` under it, and under
        both the first row with the ``band`` (coarse, middle or fine) of its styles taken from the second."""
        if not self.controls.style:
            raise ConfigError("style mixing needs a style-based generator (model=stylegan, stylegan2 or stylegan3)")
        if band not in BANDS:
            raise ConfigError(f"band={band!r}: choose one of {', '.join(BANDS)}")
        style = cast(Any, self.generator(draw.ema))
        labels = self.labels(n, draw)
        with eval_mode(style), truncated_psi(style, draw.psi):
            first = style.mapping(self.latents(n, draw).to(self.device), labels)
            second = style.mapping(self.latents(n, replace(draw, seed=second_seed)).to(self.device), labels)
            low, high = (round(edge * style.num_ws) for edge in BANDS[band])
            mixed = first.clone()
            mixed[:, low:high] = second[:, low:high]
            rows = style.synthesis(torch.cat([first, second, mixed])).float()  # one batch: the three rows
        return picture(rows.cpu(), columns=n)

    def labels(self, n: int, draw: Draw) -> torch.Tensor | None:
        """Class ``draw.label`` for all ``n`` (None: the classes in turn), or None for an unconditional generator."""
        classes = self.controls.num_classes
        if classes is None:
            return None
        if draw.label is None:
            return (torch.arange(n) % classes).to(self.device)
        if not 0 <= draw.label < classes:
            raise ConfigError(f"class {draw.label}: this generator draws classes 0..{classes - 1}")
        return torch.full((n,), draw.label, dtype=torch.int64, device=self.device)

    @torch.no_grad()
    def render(self, latents: torch.Tensor, draw: Draw) -> torch.Tensor:
        """The generator's images (float, [-1, 1], on the CPU) for ``latents`` under ``draw``'s settings."""
        if self.controls.translator:
            raise ConfigError("this checkpoint's generator translates images: give it an image, not a seed")
        generator = self.generator(draw.ema)
        if draw.codes:
            generator = WithCodes(cast(CodedGenerator, generator), list(draw.codes))
        with eval_mode(generator), truncated_psi(generator, draw.psi):
            images = generator(latents.to(self.device), self.labels(len(latents), draw)).float()
        return at_full_resolution(images, getattr(generator, "resolution", None)).cpu()

    # --- image readers -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def reconstruction(self, image: np.ndarray, ema: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """An encoder game's ``x`` beside ``G(E(x))`` for an uploaded picture, and the code ``E(x)``."""
        if not self.controls.encoder:
            raise ConfigError("this checkpoint's game has no encoder (game=bigan, aae or vaegan have one)")
        game = cast(EncoderGame, self.module.game)
        generator = self.generator(ema)
        channels = int(self.config.data.get("channels", 1))
        resolution = cast(int, getattr(generator, "resolution", None) or self.config.data.resolution)
        x = as_input(image, channels, resolution).to(self.device)
        with eval_mode(game), eval_mode(generator):
            code = game.encode(generator, x)
            redrawn = game.decode(generator, code).float()
        return picture(torch.cat([x, redrawn]).cpu(), columns=2), code.flatten().float().cpu().numpy()

    @torch.no_grad()
    def translation(self, image: np.ndarray, inverse: bool = False, ema: bool = True) -> np.ndarray:
        """A translator's input (resized to what it reads) beside its output; ``inverse``: CycleGAN's B -> A."""
        if not self.controls.translator:
            raise ConfigError("this checkpoint's generator reads noise, not images: draw it from a seed")
        if inverse and not self.controls.two_way:
            raise ConfigError("this checkpoint's generator translates one way (only CycleGAN's has an inverse)")
        generator = cast(Any, self.generator(ema))
        channels, size, _ = generator.target_shape if inverse else generator.source_shape
        x = as_input(image, channels, size).to(self.device)
        with eval_mode(generator):
            y = (generator.inverse if inverse else generator)(x).float()
        if y.shape[1] != x.shape[1] or y.shape[-1] != x.shape[-1]:  # SRGAN: the input enlarged to match its output
            x = nn.functional.interpolate(x, size=y.shape[-2:], mode="nearest").expand(-1, y.shape[1], -1, -1)
        return picture(torch.cat([x, y]).cpu(), columns=2)

    def test_images(self, targets: bool = False) -> list[np.ndarray]:
        """The test images the checkpoint keeps (:mod:`ganforge.kept_images`) as uint8 RGB (H, W, 3), the inputs
        a page offers to pick from: a translator's sources (its targets with ``targets``: the inputs of
        CycleGAN's other direction), an encoder's images. None kept (checkpoints from before them): empty."""
        images = self.kept.get("targets" if targets else "inputs")
        return [] if images is None else [image.expand(3, -1, -1).permute(1, 2, 0).numpy() for image in images]


def slerp(start: torch.Tensor, end: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between two latents (linear where they are parallel); exactly them at t = 0 and 1."""
    if t in (0.0, 1.0):
        return (start if t == 0.0 else end).clone()
    cos = torch.dot(start, end) / (start.norm() * end.norm()).clamp_min(1e-12)
    angle = torch.arccos(cos.clamp(-1, 1))
    if angle.abs() < 1e-6:
        return torch.lerp(start, end, t)
    return (torch.sin((1 - t) * angle) * start + torch.sin(t * angle) * end) / torch.sin(angle)


@contextmanager
def truncated_psi(generator: nn.Module, psi: float | None) -> Iterator[None]:
    """A style-based generator drawing with truncation ``psi`` for the block (checked as ``ganforge-sample psi=``
    checks it), its own setting restored after."""
    if psi is None:
        yield
        return
    before = getattr(generator, "truncation_psi", None)
    truncate(generator, psi, "this checkpoint")
    try:
        yield
    finally:
        cast(Any, generator).truncation_psi = before


def picture(images: torch.Tensor, columns: int) -> np.ndarray:
    """Images in [-1, 1] (N, C, H, W) as one uint8 (H, W, 3) grid, ``columns`` to a row, each enlarged to about
    :data:`TILE` pixels by repeating pixels (28x28 samples are too small to judge on a screen; no smoothing
    invented)."""
    zoom = max(1, TILE // images.shape[-1])
    images = images.repeat_interleave(zoom, dim=-1).repeat_interleave(zoom, dim=-2)
    images = nn.functional.pad(images.clamp(-1, 1), (2, 0, 2, 0), value=1.0)  # make_grid pads only between images
    grid = nn.functional.pad(make_grid(images, nrow=columns, padding=0), (0, 2, 0, 2), value=1.0)
    return to_pixels(grid[None])[0].permute(1, 2, 0).numpy()


def as_input(image: np.ndarray, channels: int, size: int) -> torch.Tensor:
    """An uploaded uint8 picture (H, W) or (H, W, 3|4) as a (1, channels, size, size) batch in [-1, 1]."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ConfigError(f"an image is uint8 (H, W) or (H, W, C); got {array.dtype} {array.shape}")
    tensor = torch.from_numpy(array if array.ndim == 3 else array[..., None]).permute(2, 0, 1)[:3]
    if tensor.shape[0] != channels:
        tensor = (
            tensor.float().mean(dim=0, keepdim=True).round().to(torch.uint8)
            if channels == 1
            else tensor[:1].expand(3, -1, -1)
        )
    tensor = v2.functional.resize(tensor, [size, size], antialias=True)
    return (tensor.float() / 127.5 - 1)[None]
