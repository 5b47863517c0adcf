"""StyleGAN2 generator and discriminator (Karras et al., 2020, "Analyzing and Improving the Image Quality of StyleGAN").

Where the parts come from:

- StyleGAN (Karras et al., 2019): the mapping network ``z -> w`` (pixel-normalised ``z``, fully connected
  layers with a learning-rate multiplier of 0.01), one style per layer, per-layer noise inputs with a
  learned strength, style-mixing regularization, the truncation trick around the tracked ``w_avg``.
- StyleGAN2 (Karras et al., 2020): weight modulation and demodulation in place of AdaIN (computed with the
  shared kernel: styles scale the input activations, demodulation the outputs), bias and noise outside the
  style block, a learned constant input, skip-connected toRGB outputs in G, a residual D; the [1, 3, 3, 1]
  resampling filter.
- Progressive GAN (Karras et al., 2018): the equalized learning rate and minibatch standard deviation,
  reused from :mod:`ganforge.nets.progan`.
- StyleGAN2-ADA (Karras et al., 2020b): class conditioning of G's mapping network by an embedded one-hot
  label, pixel-normalised and concatenated with ``z``.
- Projection discriminator (Miyato & Koyama, 2018) for class conditioning of D, as SAGAN's D does it
  (StyleGAN2-ADA instead maps the label through a second mapping network); scaled by ``1/sqrt(features)``.

Simplified: plain PyTorch ops (no fused bias-act or upfirdn CUDA kernels, no fp16 layers or activation
clamping). Resampling uses the paper's [1, 3, 3, 1] filter as separate depthwise convolutions (2x
upsampling is then bilinear interpolation, zero-padded at the border): G upsamples its features and then
applies the modulated 3x3 convolution (the paper fuses a transposed modulated convolution with the
filter), D applies its 3x3 convolution and then the filtered downsampling (the paper filters, then
convolves with stride 2). These are the same linear maps up to the borders, at about four times the cost
of the convolution, which does not matter at the widths a CPU trains. Truncation applies to every layer
(no cutoff). Path length regularization and lazy R1 belong to the training loop
(``loss.g_regularizers``, ``loss.penalties``), not to the nets.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import ConfigError
from ganforge.nets.conditioning import label_code
from ganforge.nets.fourier import FourierInput
from ganforge.nets.layers import base_resolution, level_widths
from ganforge.nets.progan import MinibatchStdDev, PixelNorm, conv, equalized

SQRT2 = math.sqrt(2.0)
NOISE_MODES = ("auto", "random", "const", "none")
INPUTS = ("const", "fourier")


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """LeakyReLU(0.2) times sqrt(2): the gain that keeps unit-variance activations with gain-1 weights."""
    return F.leaky_relu(x, 0.2) * SQRT2


def _fir(x: torch.Tensor) -> torch.Tensor:
    """The paper's separable [1, 3, 3, 1] low-pass filter, summing to 1, one copy per channel of ``x``."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=x.dtype, device=x.device)
    kernel = torch.outer(taps, taps)
    return (kernel / kernel.sum()).repeat(x.shape[1], 1, 1, 1)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Twice the size: zeros between the pixels, then the filter (times 4, which keeps the mean) - that is
    bilinear interpolation, with zero padding at the border."""
    return F.conv_transpose2d(x, _fir(x) * 4, stride=2, padding=1, groups=x.shape[1])


def downsample2(x: torch.Tensor) -> torch.Tensor:
    """Half the size: the filter, then every second pixel (zero padding at the border)."""
    return F.conv2d(x, _fir(x), stride=2, padding=1, groups=x.shape[1])


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    eps: float = 1e-8,
    padding: int | None = None,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution: sample ``i``'s kernel is ``weight`` with input channel ``c``
    scaled by ``styles[i, c]`` and, with ``demodulate``, each output channel's kernel rescaled to unit L2
    norm (so unit-variance inputs give unit-variance outputs, without AdaIN's normalisation of the data).

    Computed without building N kernels: the style scales the input channels, the shared kernel convolves,
    and the demodulation factor ``1 / sqrt(sum_c styles[i, c]^2 * sum_k weight[o, c, k]^2)`` scales the
    outputs; the same linear map as the per-sample (grouped) convolution, 1.4x faster over fmnist_stylegan2's G
    on one CPU thread (3-6x at 4x4 and 8x8, slower only at 32x32; ``benchmarks/modulated_conv.py``,
    RESULTS.md). ``padding`` defaults to keeping the size (odd kernels).
    """
    padding = weight.shape[-1] // 2 if padding is None else padding
    out = F.conv2d(x * styles[:, :, None, None], weight, padding=padding)
    if demodulate:
        energy = styles.square() @ weight.square().sum(dim=(2, 3)).T  # N, C_out
        out = out * torch.rsqrt(energy + eps)[:, :, None, None]
    return out


class ModulatedConv2d(nn.Module):
    """A convolution whose per-sample input-channel scales (the style) are an affine map of ``w``.

    The affine map's bias starts at 1, so a fresh layer starts as its plain convolution. Weights have
    the equalized learning rate with gain 1 (the activation carries sqrt(2)).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, w_dim: int, demodulate: bool = True) -> None:
        super().__init__()
        self.affine = equalized(nn.Linear(w_dim, c_in), gain=1.0)
        nn.init.ones_(self.affine.bias)
        self.conv = equalized(nn.Conv2d(c_in, c_out, kernel, bias=False), gain=1.0)  # holds the scaled weight
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return modulated_conv2d(x, self.conv.weight, self.affine(w), self.demodulate)


STYLE_BLOCKS = ("modulate", "adain")


class AdaIN(nn.Module):
    """StyleGAN's adaptive instance normalisation: each channel of each sample normalised to zero mean and unit
    variance over its pixels, then scaled and shifted by the style, an affine map of ``w`` (its scales start at 1,
    its shifts at 0)."""

    def __init__(self, channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = equalized(nn.Linear(w_dim, 2 * channels), gain=1.0)
        with torch.no_grad():
            self.affine.bias.copy_(torch.cat([torch.ones(channels), torch.zeros(channels)]))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scale, shift = self.affine(w)[:, :, None, None].chunk(2, dim=1)
        return F.instance_norm(x, eps=1e-8) * scale + shift


class SynthesisLayer(nn.Module):
    """(2x upsampling), a 3x3 convolution styled by ``w``, noise times a learned strength (0 at first: noise only
    takes part once training gives it weight), bias, LeakyReLU. The style block is the one place StyleGAN and
    StyleGAN2 differ here: ``modulate`` (StyleGAN2) scales the convolution's weights by the style and demodulates,
    with one noise strength per layer; ``adain`` (StyleGAN) convolves plainly, adds noise with one strength per
    channel, and normalises each channel and applies the style after the activation (:class:`AdaIN`)."""

    noise_const: torch.Tensor

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, up: bool, style: str = "modulate") -> None:
        super().__init__()
        if style not in STYLE_BLOCKS:
            raise ConfigError(f"the style block must be one of {STYLE_BLOCKS}, got {style!r}")
        self.up = up
        self.conv: nn.Module
        if style == "modulate":
            self.conv, self.adain = ModulatedConv2d(c_in, c_out, 3, w_dim), None
        else:
            self.conv = equalized(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), gain=1.0)
            self.adain = AdaIN(c_out, w_dim)
        self.noise_strength = nn.Parameter(torch.zeros((c_out, 1, 1) if style == "adain" else ()))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        x = upsample2(x) if self.up else x
        x = self.conv(x) if self.adain is not None else self.conv(x, w)
        if noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        x = lrelu(x + self.bias[:, None, None])
        return x if self.adain is None else self.adain(x, w)


class ToRGB(nn.Module):
    """1x1 modulated convolution without demodulation, plus bias: the block's contribution to the image."""

    def __init__(self, c_in: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(c_in, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[:, None, None]


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: the first block has one layer on the constant input,
    later ones an upsampling layer and a second layer; every block adds its toRGB to the image so far,
    upsampled (the skip architecture). Takes ``num_conv + 1`` ws; the toRGB's w is the next block's first."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, channels: int, first: bool) -> None:
        super().__init__()
        layers = [] if first else [SynthesisLayer(c_in, c_out, w_dim, resolution, up=True)]
        layers.append(SynthesisLayer(c_out, c_out, w_dim, resolution, up=False))
        self.convs = nn.ModuleList(layers)
        self.num_conv = len(layers)
        self.to_rgb = ToRGB(c_out, channels, w_dim)

    def forward(
        self, x: torch.Tensor, image: torch.Tensor | None, ws: torch.Tensor, noise_mode: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for i, layer in enumerate(self.convs):
            x = layer(x, ws[:, i], noise_mode)
        rgb = self.to_rgb(x, ws[:, self.num_conv])
        return x, (rgb if image is None else upsample2(image) + rgb)


class StyleBasedGenerator(nn.Module):
    """What StyleGAN and StyleGAN2 share: the mapping network ``z (, y) -> w`` broadcast to :attr:`num_ws` copies,
    the tracked ``w_avg`` and the truncation trick around it, style mixing in training, and the noise modes. A
    subclass builds its synthesis network ``ws -> image`` and says how many ws it reads (``num_ws``).

    ``truncation_psi`` (1: none), ``truncation_cutoff`` (the first ws it applies to; None: all) and
    ``noise_mode`` are plain attributes that sampling code may set: ``random`` draws fresh noise from torch's
    global RNG at every call, ``const`` uses fixed per-layer noise maps (drawn at construction, saved in the state
    dict), ``none`` leaves noise out; ``auto`` (the default) is ``random`` in training and ``const`` in eval mode,
    so that seeded sampling (:func:`ganforge.generation.generate_batches`) stays reproducible and leaves the global
    RNG alone. Keyword arguments it does not take go on to the next class (cooperative ``__init__``:
    StyleGAN's generator is also :class:`~ganforge.nets.progan.Growing`).
    """

    w_avg: torch.Tensor

    def __init__(
        self,
        *,
        num_ws: int,
        latent_dim: int = 128,
        w_dim: int = 128,
        mapping_layers: int = 8,
        lr_mul: float = 0.01,
        num_classes: int | None = None,
        mixing_prob: float = 0.9,
        w_avg_beta: float = 0.995,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mapping_layers < 1:
            raise ConfigError(f"model.generator.mapping_layers must be at least 1, got {mapping_layers}")
        if not 0.0 <= mixing_prob <= 1.0:
            raise ConfigError(f"model.generator.mixing_prob is a probability in [0, 1], got {mixing_prob}")
        if truncation_cutoff is not None and not 1 <= truncation_cutoff <= num_ws:
            raise ConfigError(
                f"model.generator.truncation_cutoff counts the first of the {num_ws} ws that truncation moves: "
                f"1 to {num_ws}, or null for all; got {truncation_cutoff}"
            )
        self.num_ws = num_ws
        self.latent_dim = latent_dim
        self.w_dim = w_dim
        self.num_classes = num_classes
        self.mixing_prob = mixing_prob
        self.w_avg_beta = w_avg_beta
        self.truncation_psi = truncation_psi
        self.truncation_cutoff = truncation_cutoff
        self.noise_mode = "auto"
        self.norm = PixelNorm()
        self.embed = equalized(nn.Linear(num_classes, w_dim), gain=1.0) if num_classes is not None else None
        features = [latent_dim + (w_dim if num_classes is not None else 0)] + [w_dim] * mapping_layers
        self.mapping_net = nn.ModuleList(
            equalized(nn.Linear(a, b), gain=1.0, lr_mul=lr_mul) for a, b in pairwise(features)
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def mapping(self, z: torch.Tensor, y: torch.Tensor | None = None, *, update_w_avg: bool = True) -> torch.Tensor:
        """``(N, num_ws, w_dim)``: ``w`` of each sample, repeated once per synthesis input.

        In training mode the batch mean of ``w`` moves :attr:`w_avg` (an EMA with ``w_avg_beta``; not for
        the second latents of style mixing, as in the paper's code); with ``truncation_psi != 1``, ``w`` is
        drawn towards it, ``w_avg + psi (w - w_avg)``, in the first ``truncation_cutoff`` ws (all by default).
        """
        x = self.norm(z.reshape(z.shape[0], self.latent_dim))
        if self.embed is not None:
            x = torch.cat([x, self.norm(self.embed(label_code(y, self.embed.in_features, x)))], dim=1)
        for layer in self.mapping_net:
            x = lrelu(layer(x))
        if self.training and update_w_avg:
            with torch.no_grad():
                self.w_avg.lerp_(x.detach().mean(dim=0).to(self.w_avg.dtype), 1.0 - self.w_avg_beta)
        ws = x[:, None].repeat(1, self.num_ws, 1)
        if self.truncation_psi == 1.0:
            return ws
        cutoff = self.num_ws if self.truncation_cutoff is None else self.truncation_cutoff
        truncated = self.w_avg.to(x.dtype).lerp(ws[:, :cutoff], self.truncation_psi)
        return torch.cat([truncated, ws[:, cutoff:]], dim=1)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_ws(self, ws: torch.Tensor) -> None:
        if ws.dim() != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"synthesis takes ws of shape (N, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Mapping and synthesis; in training, with probability ``mixing_prob``, style mixing: the ws from
        a crossover layer drawn uniformly in [1, num_ws) on come from a second latent (same labels)."""
        ws = self.mapping(z, y)
        if self.training and self.mixing_prob > 0 and torch.rand(()).item() < self.mixing_prob:
            cutoff = int(torch.randint(1, self.num_ws, ()).item())
            mixed = self.mapping(torch.randn_like(z), y, update_w_avg=False)
            ws = torch.cat([ws[:, :cutoff], mixed[:, cutoff:]], dim=1)
        return self.synthesis(ws)

    def _noise_mode(self) -> str:
        if self.noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {self.noise_mode!r}")
        if self.noise_mode == "auto":
            return "random" if self.training else "const"
        return self.noise_mode


class StyleGAN2Generator(StyleBasedGenerator):
    """The mapping network (:class:`StyleBasedGenerator`, which takes the ``mapping`` keywords: ``latent_dim``,
    ``w_dim``, ``num_classes``, ...), then StyleGAN2's synthesis network ``ws -> image`` at ``resolution`` (a base
    of 4 to 7 pixels doubled, see :func:`base_resolution`): a learned constant (``input=fourier``: StyleGAN3's
    Fourier features on the base grid, whose transform can move the image, the paper's baseline for equivariance),
    one block per resolution of modulated convolutions, skip-connected toRGB outputs.

    The output is linear (no tanh, as in the paper); images of real data in [-1, 1] are what it learns.
    """

    def __init__(
        self,
        width: int = 32,
        max_width: int = 128,
        channels: int = 3,
        resolution: int = 32,
        input: str = "const",
        **mapping: Any,
    ) -> None:
        if input not in INPUTS:
            raise ConfigError(f"model.generator.input={input!r}: choose const (StyleGAN2's) or fourier (StyleGAN3's)")
        base, doublings = base_resolution(resolution)
        # ws: one per layer (1 + 2 per doubling) and one for the last toRGB
        super().__init__(num_ws=2 * doublings + 2, **mapping)
        w_dim = self.w_dim
        self.channels = channels
        self.resolution = resolution
        self.base = base
        widths = level_widths(width, doublings, max_width)
        if input == "const":
            self.const = nn.Parameter(torch.randn(widths[0], self.base, self.base))
        else:  # the base grid spans the image, frequencies up to a quarter of its sampling rate
            self.input = FourierInput(w_dim, widths[0], self.base, sampling_rate=self.base, bandwidth=self.base / 4)
        self.blocks = nn.ModuleList(
            [SynthesisBlock(widths[0], widths[0], w_dim, self.base, channels, first=True)]
            + [
                SynthesisBlock(c_in, c_out, w_dim, self.base * 2 ** (i + 1), channels, first=False)
                for i, (c_in, c_out) in enumerate(pairwise(widths))
            ]
        )

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """``(N, channels, resolution, resolution)`` images from ``ws`` of shape ``(N, num_ws, w_dim)``."""
        self.check_ws(ws)
        noise_mode = self._noise_mode()
        x = self.input(ws[:, 0]) if hasattr(self, "input") else self.const[None].expand(ws.shape[0], -1, -1, -1)
        x, image = self.blocks[0](x, None, ws[:, :2], noise_mode)
        for j, block in enumerate(self.blocks[1:], start=1):
            x, image = block(x, image, ws[:, 2 * j - 1 : 2 * j + 2], noise_mode)
        return image


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convolutions with LeakyReLU, the second one followed by 2x downsampling,
    plus a shortcut (downsampling, then a 1x1 convolution without bias); the sum is scaled by
    ``1/sqrt(2)`` so that it keeps the variance of its terms."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv0 = conv(c_in, c_in, 3, gain=1.0)
        # no bias inside: it is added after downsampling, where the zero-padded filter would dim it at the border
        self.conv1 = equalized(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), gain=1.0)
        self.bias1 = nn.Parameter(torch.zeros(c_out))
        self.skip = equalized(nn.Conv2d(c_in, c_out, 1, bias=False), gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = lrelu(downsample2(self.conv1(lrelu(self.conv0(x)))) + self.bias1[:, None, None])
        return (self.skip(downsample2(x)) + h) / SQRT2


class StyleGAN2Discriminator(nn.Module):
    """1x1 fromRGB, one residual block per halving down to the ``base x base`` resolution, then minibatch
    standard deviation, a 3x3 convolution, a dense layer and a linear logit. With ``num_classes``, plus
    the projection term ``<embed(y), features> / sqrt(features)`` (``embed``: an equalized linear layer
    of the one-hot label). Equalized learning rate throughout."""

    def __init__(
        self,
        width: int = 32,
        max_width: int = 128,
        channels: int = 3,
        resolution: int = 32,
        num_classes: int | None = None,
        group_size: int = 4,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.base, doublings = base_resolution(resolution)
        widths = level_widths(width, doublings, max_width)[::-1]  # finest first
        self.from_rgb = conv(channels, widths[0], 1, gain=1.0)
        self.blocks = nn.Sequential(*(DiscriminatorBlock(c_in, c_out) for c_in, c_out in pairwise(widths)))
        c = self.num_features = widths[-1]
        self.mbstd = MinibatchStdDev(group_size)
        self.conv = conv(c + 1, c, 3, gain=1.0)
        self.fc = equalized(nn.Linear(c * self.base**2, c), gain=1.0)
        self.out = equalized(nn.Linear(c, 1), gain=1.0)
        self.embed = equalized(nn.Linear(num_classes, c, bias=False), gain=1.0) if num_classes is not None else None

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, num_features)``: what the logit (and the projection, which reads ``y`` after them) read."""
        h = self.blocks(lrelu(self.from_rgb(x)))
        h = lrelu(self.conv(self.mbstd(h)))
        return lrelu(self.fc(h.flatten(1)))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        logits = self.out(h).flatten()
        if self.embed is not None:
            projection = (self.embed(label_code(y, self.embed.in_features, h)) * h).sum(dim=1)
            logits = logits + projection / math.sqrt(self.num_features)
        return logits
