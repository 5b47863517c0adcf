"""StyleGAN3's generator (Karras et al., 2021, "Alias-Free Generative Adversarial Networks"), written from the paper.

The synthesis network treats its feature maps as samples of continuous signals and keeps every operation band-
limited, so that details move with the content instead of sticking to the pixel grid (equivariance):

- **Fourier-feature input** (:class:`FourierInput`): sinusoids of frequencies drawn inside the first layer's band,
  on a grid of the input's sampling rate plus a margin. An affine map of the first w rotates and translates their
  coordinates, as does a user transform (``transform``, a 3x3 matrix: how the equivariance metrics move the image).
- **Filtered nonlinearities** (:func:`filtered_lrelu`): the leaky ReLU runs at ``lrelu_upsampling`` x the layer's
  sampling rate, between an upsampling low-pass filter at the input's cutoff and a downsampling one at the
  output's; the filters are Kaiser-windowed sinc filters (scipy's ``firwin``), or, in config R, radially symmetric
  jinc filters.
- **The cutoff schedule** (section 3.2 and appendix F): cutoffs grow geometrically from ``first_cutoff`` (2) to
  half the output resolution over the layers, reached ``num_critical`` layers before the end (the last layers are
  critically sampled: the cutoff is half the sampling rate, the stopband at ``last_stopband_rel`` above it), the
  stopbands from ``first_stopband`` (2^2.1); each layer's sampling rate is the power of two above twice its
  stopband (at most the resolution), its maps carry a ``margin`` of pixels on every side, and its channels are
  ``width`` at the full-resolution layers, in inverse proportion to the cutoff below them, at most ``max_width``
  (the paper's channel_base / 2 / cutoff, with channel_base = width x resolution: 32768 is width 32 at 1024).
- Modulated convolutions (StyleGAN2's, :func:`~.stylegan2.modulated_conv2d`, without padding: the margin takes the
  border effects) with 3x3 kernels (config T) or 1x1 (config R, which also doubles the channels), inputs normalised
  by a running mean of their squared magnitude, no noise inputs, no skip connections; a last 1x1 toRGB without
  demodulation and an output scale of 0.25.

Pure PyTorch: resampling is zero insertion, padding (negative: cropping) and a convolution with the filter
(:func:`upfirdn2d`), which is what the paper's fused CUDA kernels compute; in float32 throughout, without their
activation clamping (a guard for float16). The mapping network, w_avg, truncation and
style mixing are :class:`~.stylegan2.StyleBasedGenerator`'s.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.signal
import scipy.special
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import ConfigError
from ganforge.nets.fourier import FourierInput
from ganforge.nets.progan import equalized
from ganforge.nets.stylegan2 import StyleBasedGenerator, modulated_conv2d

CONFIGS = ("t", "r")


def lowpass_filter(taps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> torch.Tensor | None:
    """A low-pass FIR filter of ``taps`` taps at sampling rate ``fs``: Kaiser-windowed sinc with its transition band
    ``width`` wide (1-D, applied along both axes), or ``radial``: a jinc, windowed by the same Kaiser window in both
    axes (2-D). None for one tap (no filtering)."""
    if taps == 1:
        return None
    if not radial:
        return torch.as_tensor(scipy.signal.firwin(taps, cutoff, width=width, fs=fs), dtype=torch.float32)
    x = (np.arange(taps) - (taps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    with np.errstate(invalid="ignore", divide="ignore"):
        jinc = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    jinc[r == 0] = cutoff  # the limit at the centre
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(taps, width / (fs / 2)))
    window = np.kaiser(taps, beta)
    f = jinc * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


def resampling_matrix(
    n: int, f: torch.Tensor | None, up: int, down: int, low: int, high: int, gain: float = 1.0
) -> torch.Tensor:
    """The linear map of :func:`upfirdn2d` along one axis of ``n`` samples, as a matrix (out x n): zero insertion,
    padding by ``low`` / ``high`` (negative: cropping), convolution with ``f`` times ``gain``, every ``down``-th
    sample. Built by sending the identity through those steps."""
    x = torch.eye(n, dtype=torch.float64)[:, None]  # n signals, one per input sample
    if up > 1:
        x = F.pad(x[..., None], [0, up - 1]).reshape(n, 1, n * up)
    x = F.pad(x, [max(low, 0), max(high, 0)])
    x = x[..., max(-low, 0) : x.shape[-1] - max(-high, 0)]
    if f is not None:
        x = F.conv1d(x, (f.double() * gain).flip(0).view(1, 1, -1))
    elif gain != 1.0:
        x = x * gain
    return x[:, 0, ::down].T.contiguous().float()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by inserting ``up - 1`` zeros after every pixel, pad by ``padding`` (left, right, top, bottom;
    negative values crop), convolve with ``f`` times ``gain`` (1-D: along both axes; None: no filter) and keep
    every ``down``-th pixel. The filters here are symmetric, so convolution and correlation agree.

    A 1-D filter (or none) makes the whole operation separable: it runs as one matrix product per axis
    (:func:`resampling_matrix`), which on a CPU is some hundred times faster than a depthwise convolution with a
    12-tap kernel followed by striding; a 2-D (radial) filter runs as a depthwise convolution."""
    left, right, top, bottom = padding
    if f is None or f.ndim == 1:
        rows = resampling_matrix(x.shape[2], f, up, down, top, bottom, math.sqrt(gain)).to(x)
        columns = resampling_matrix(x.shape[3], f, up, down, left, right, math.sqrt(gain)).to(x)
        return torch.matmul(torch.matmul(rows, x), columns.T)
    n, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(left, 0), max(right, 0), max(top, 0), max(bottom, 0)])
    x = x[:, :, max(-top, 0) : x.shape[2] - max(-bottom, 0), max(-left, 0) : x.shape[3] - max(-right, 0)]
    x = F.conv2d(x, (f.to(x) * gain).flip(0, 1)[None, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def filtered_lrelu(
    x: torch.Tensor,
    up_filter: torch.Tensor | None,
    down_filter: torch.Tensor | None,
    bias: torch.Tensor,
    up: int,
    down: int,
    padding: tuple[int, int, int, int],
    gain: float = math.sqrt(2.0),
    slope: float = 0.2,
) -> torch.Tensor:
    """The alias-free nonlinearity: bias, upsampling by ``up`` through ``up_filter`` (padded by ``padding``), the
    leaky ReLU times ``gain``, downsampling by ``down`` through ``down_filter``."""
    x = upfirdn2d(x + bias[:, None, None], up_filter, up=up, padding=padding, gain=up**2)
    return upfirdn2d(F.leaky_relu(x, slope) * gain, down_filter, down=down)


class AliasFreeLayer(nn.Module):
    """Synthesis layer ``index`` of ``plan`` (:func:`layer_schedule`; it reads entry ``index - 1``, layer 0 entry
    0, and writes entry ``index``): a modulated convolution (no padding) of the
    input, normalised by the running mean of its squared magnitude, then :func:`filtered_lrelu` from the input's
    sampling rate and cutoff to the output's (the toRGB layer: a 1x1 convolution without demodulation, the
    nonlinearity's filters and gain left out)."""

    magnitude_ema: torch.Tensor

    def __init__(
        self,
        w_dim: int,
        plan: dict[str, np.ndarray],
        index: int,
        kernel: int = 3,
        torgb: bool = False,
        radial: bool = False,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        magnitude_ema_beta: float = 0.999,
    ) -> None:
        super().__init__()
        i, o = max(index - 1, 0), index  # the plan's entries this layer reads and writes (layer 0: 0 to 0)
        in_channels, out_channels = int(plan["channels"][i]), int(plan["channels"][o])
        in_size, out_size = int(plan["sizes"][i]), int(plan["sizes"][o])
        in_rate, out_rate = float(plan["rates"][i]), float(plan["rates"][o])
        in_cutoff, out_cutoff = float(plan["cutoffs"][i]), float(plan["cutoffs"][o])
        in_half_width, out_half_width = float(plan["half_widths"][i]), float(plan["half_widths"][o])
        self.torgb, self.kernel, self.beta = torgb, kernel, magnitude_ema_beta
        self.affine = equalized(nn.Linear(w_dim, in_channels), gain=1.0)
        nn.init.ones_(self.affine.bias)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("magnitude_ema", torch.ones(()))
        rate = max(in_rate, out_rate) * (1 if torgb else lrelu_upsampling)
        self.up, self.down = round(rate / in_rate), round(rate / out_rate)
        up_taps = filter_size * self.up if self.up > 1 and not torgb else 1
        down_taps = filter_size * self.down if self.down > 1 and not torgb else 1
        self.up_filter = lowpass_filter(up_taps, in_cutoff, 2 * in_half_width, rate)
        self.down_filter = lowpass_filter(down_taps, out_cutoff, 2 * out_half_width, rate, radial=radial)
        # The padding that brings (in_size + kernel - 1) samples, upsampled and filtered, to out_size after the
        # downsampling filter and stride.
        total = (out_size - 1) * self.down + 1 - (in_size + kernel - 1) * self.up + up_taps + down_taps - 2
        low = (total + self.up) // 2
        self.padding = (low, total - low, low, total - low)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.magnitude_ema.lerp_(x.detach().square().mean(), 1 - self.beta)
        styles = self.affine(w)
        if self.torgb:
            styles = styles / math.sqrt(self.weight[0].numel())
        x = modulated_conv2d(x, self.weight, styles, demodulate=not self.torgb, padding=self.kernel - 1)
        x = x * self.magnitude_ema.rsqrt()
        up, down = (f if f is None else f.to(x.device) for f in (self.up_filter, self.down_filter))
        gain, slope = (1.0, 1.0) if self.torgb else (math.sqrt(2.0), 0.2)
        return filtered_lrelu(x, up, down, self.bias, self.up, self.down, self.padding, gain, slope)


def layer_schedule(
    resolution: int,
    num_layers: int,
    num_critical: int,
    first_cutoff: float,
    first_stopband: float,
    last_stopband_rel: float,
    margin: int,
    width: int,
    max_width: int,
    channels: int,
) -> dict[str, np.ndarray]:
    """Cutoff, stopband, sampling rate, transition half-width, map size and channels of the input (entry 0) and of
    every layer (the module's docstring; the paper's appendix F)."""
    last_cutoff = resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1.0)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = (rates + margin * 2).astype(int)
    sizes[-2:] = resolution
    widths = np.rint(np.minimum(width * last_cutoff / cutoffs, max_width)).astype(int)
    widths[-1] = channels
    return {"cutoffs": cutoffs, "rates": rates, "half_widths": half_widths, "sizes": sizes, "channels": widths}


class StyleGAN3Generator(StyleBasedGenerator):
    """The mapping network (:class:`StyleBasedGenerator`, its ``mapping`` keywords), then the alias-free synthesis
    network: :class:`FourierInput`, ``num_layers + 1`` :class:`AliasFreeLayer` (layer 0 at the input's rate and
    cutoff, layer k from entry k - 1 of :func:`layer_schedule` to entry k, the last one toRGB), times
    ``output_scale``. ``config`` ``t`` (translation equivariance: 3x3 convolutions, separable filters) or ``r``
    (rotation too: 1x1 convolutions, radially symmetric downsampling filters outside the critically sampled layers,
    twice the channels). ``num_ws`` is ``num_layers + 2`` (the input's and each layer's), as in the paper."""

    def __init__(
        self,
        config: str = "t",
        channels: int = 3,
        resolution: int = 32,
        num_layers: int = 14,
        num_critical: int = 2,
        first_cutoff: float = 2.0,
        first_stopband: float = 2**2.1,
        last_stopband_rel: float = 2**0.3,
        margin: int = 10,
        width: int = 32,
        max_width: int = 512,
        output_scale: float = 0.25,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        **mapping: Any,
    ) -> None:
        if config not in CONFIGS:
            raise ConfigError(f"model.generator.config={config!r}: choose t (translation) or r (rotation too)")
        if not 0 < num_critical < num_layers:
            raise ConfigError(
                f"model.generator.num_critical={num_critical} must be between 0 and num_layers={num_layers}"
            )
        super().__init__(num_ws=num_layers + 2, **mapping)
        self.config, self.channels, self.resolution, self.output_scale = config, channels, resolution, output_scale
        rotation = config == "r"
        scale = 2 if rotation else 1
        plan = layer_schedule(
            resolution, num_layers, num_critical, first_cutoff, first_stopband, last_stopband_rel, margin,
            width * scale, max_width * scale, channels,
        )  # fmt: skip
        self.plan = plan
        self.input = FourierInput(
            self.w_dim,
            int(plan["channels"][0]),
            int(plan["sizes"][0]),
            float(plan["rates"][0]),
            float(plan["cutoffs"][0]),
        )
        self.layers = nn.ModuleList(
            AliasFreeLayer(
                self.w_dim,
                plan,
                i,
                kernel=1 if rotation or i == num_layers else 3,
                torgb=i == num_layers,
                radial=rotation and i < num_layers - num_critical,
                filter_size=filter_size,
                lrelu_upsampling=lrelu_upsampling,
            )
            for i in range(num_layers + 1)
        )

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """``(N, channels, resolution, resolution)`` images from ``ws`` of shape ``(N, num_ws, w_dim)``."""
        self.check_ws(ws)
        x = self.input(ws[:, 0])
        for i, layer in enumerate(self.layers, start=1):
            x = layer(x, ws[:, i])
        return x * self.output_scale
