"""TransGAN (Jiang, Chang & Wang, 2021, "TransGAN: Two Pure Transformers Can Make One Strong GAN, and That Can
Scale Up"): a generator and a discriminator made of transformer blocks only, no convolutions.

- Blocks: pre-LayerNorm multi-head self-attention and a GELU MLP, each residual, over a grid of tokens. Attention
  runs in non-overlapping ``window x window`` squares of the grid (the paper's grid self-attention) once the grid
  is larger than ``full_attention_max`` tokens a side, over the whole grid below that (a window the size of the
  grid); a learned relative position bias per head and offset inside a window (the paper's final version), and a
  learned absolute position embedding per stage. Attention is ``torch.nn.functional.scaled_dot_product_attention``.
- G: z -> a linear layer -> a ``base x base`` grid of ``width``-dim tokens; stages of ``depths[i]`` blocks, a
  pixel shuffle between them (twice the grid, a quarter of the dimension: 8^2 x 384 -> 16^2 x 96 -> 32^2 x 24 in
  the paper's CIFAR model); each final token -> a linear map to the image's channels, tanh.
- D: the paper's multi-scale D. The image cut into patches of ``patch * 2^i`` pixels, each scale embedded by a
  linear map of its patches (a strided convolution is that map; it is the only convolution, as in ViT's patch
  embedding): stage 0 sees the finest patches, every later stage the previous stage's tokens pooled 2x2
  concatenated with the next scale's embedding (the dimension doubles per stage, up to ``width``); a class token
  through one last block, LayerNorm, a linear score.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import ConfigError


class GridAttention(nn.Module):
    """Multi-head self-attention of a ``(N, H, W, dim)`` token grid within ``window x window`` squares, with a
    learned bias per head for each relative offset inside a window. ``window`` equal to the grid's side is full
    attention."""

    index: torch.Tensor

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"TransGAN: a token dimension of {dim} does not split into {heads} heads")
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros(heads, (2 * window - 1) ** 2))
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        cells = torch.stack([ys.flatten(), xs.flatten()])  # (2, window^2)
        offset = cells[:, :, None] - cells[:, None, :] + window - 1  # (2, L, L), each in [0, 2 window - 2]
        self.register_buffer("index", offset[0] * (2 * window - 1) + offset[1], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, dim = x.shape
        s = self.window
        if h % s or w % s:
            raise ConfigError(f"TransGAN: a {h}x{w} token grid does not split into {s}x{s} attention windows")
        windows = x.reshape(n, h // s, s, w // s, s, dim).transpose(2, 3).reshape(-1, s * s, dim)
        q, k, v = self.qkv(windows).reshape(windows.shape[0], s * s, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        # index_select, not bias[:, index]: advanced indexing's backward accumulates in a thread-dependent order,
        # which breaks bitwise resumes; 4-D, which the fused kernels take where no gradient is needed.
        bias = self.bias.index_select(1, self.index.flatten()).view(1, self.heads, s * s, s * s).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = self.proj(out.transpose(1, 2).reshape(windows.shape))
        return out.reshape(n, h // s, w // s, s, s, dim).transpose(2, 3).reshape(n, h, w, dim)


class Block(nn.Module):
    """x + attention(LayerNorm(x)), then x + MLP(LayerNorm(x)) with a GELU: a pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = GridAttention(dim, heads, window)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Stage(nn.Module):
    """A learned position embedding added to a ``grid x grid`` grid of ``dim``-dim tokens, then ``depth`` blocks:
    full attention up to ``full_attention_max`` tokens a side, ``window x window`` windows above."""

    def __init__(
        self, grid: int, dim: int, depth: int, heads: int, window: int, full_attention_max: int, mlp_ratio: float
    ) -> None:
        super().__init__()
        if grid > full_attention_max and grid % window:
            raise ConfigError(f"TransGAN: a {grid}x{grid} token grid does not split into {window}x{window} windows")
        side = grid if grid <= full_attention_max else window
        self.position = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, grid, grid, dim), std=0.02))
        self.blocks = nn.Sequential(*(Block(dim, heads, side, mlp_ratio) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x + self.position)


def _refuse_labels(num_classes: int | None) -> None:
    if num_classes:
        raise ConfigError("model=transgan is unconditional (as in the paper): set model.conditional=false")


class TransGANGenerator(nn.Module):
    """z -> ``base x base`` tokens of ``width`` dims -> one stage per entry of ``depths``, a pixel shuffle between
    stages (grid x2, dimension /4) -> a linear map of each token to a pixel -> tanh. ``len(depths) - 1`` doublings
    reach ``resolution`` from ``base``."""

    def __init__(
        self,
        latent_dim: int = 256,
        width: int = 384,
        depths: tuple[int, ...] | list[int] = (5, 4, 2),
        heads: int = 4,
        window: int = 16,
        full_attention_max: int = 16,
        mlp_ratio: float = 4.0,
        channels: int = 3,
        resolution: int = 32,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        _refuse_labels(num_classes)
        self.latent_dim, self.num_classes = latent_dim, None
        doublings = len(depths) - 1
        if resolution % 2**doublings or width % 4**doublings:
            raise ConfigError(
                f"TransGAN: {len(depths)} stages double the grid {doublings} times and quarter the token dimension "
                f"as often, so data.resolution ({resolution}) must divide by {2**doublings} and "
                f"model.generator.width ({width}) by {4**doublings}"
            )
        self.base = resolution // 2**doublings
        grids = [self.base * 2**i for i in range(len(depths))]
        dims = [width // 4**i for i in range(len(depths))]
        self.input = nn.Linear(latent_dim, self.base**2 * width)
        self.stages = nn.ModuleList(
            Stage(g, d, depth, heads, window, full_attention_max, mlp_ratio)
            for g, d, depth in zip(grids, dims, depths, strict=True)
        )
        self.to_pixels = nn.Linear(dims[-1], channels)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = self.input(z.reshape(z.shape[0], self.latent_dim)).reshape(z.shape[0], self.base, self.base, -1)
        for i, stage in enumerate(self.stages):
            if i:  # (N, H, W, C) -> (N, 2H, 2W, C / 4)
                x = F.pixel_shuffle(x.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
            x = stage(x)
        return torch.tanh(self.to_pixels(x)).permute(0, 3, 1, 2)


class TransGANDiscriminator(nn.Module):
    """The multi-scale transformer D: ``len(depths)`` stages on grids of ``resolution / (patch * 2^i)`` tokens,
    stage i adding the embedding of the image's ``patch * 2^i``-pixel patches to the pooled tokens of stage i - 1;
    the last stage's dimension is ``width``, each earlier one half the next. A class token, one last block
    (``features``), a linear score."""

    def __init__(
        self,
        width: int = 384,
        depths: tuple[int, ...] | list[int] = (3, 3, 3),
        heads: int = 4,
        patch: int = 2,
        window: int = 16,
        full_attention_max: int = 16,
        mlp_ratio: float = 4.0,
        channels: int = 3,
        resolution: int = 32,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        _refuse_labels(num_classes)
        self.num_classes = None
        stages = len(depths)
        if resolution % (patch * 2 ** (stages - 1)) or width % 2 ** (stages - 1):
            raise ConfigError(
                f"TransGAN's D cuts the image into patches of {patch} to {patch * 2 ** (stages - 1)} pixels and "
                f"doubles its dimension per stage: data.resolution ({resolution}) must divide by "
                f"{patch * 2 ** (stages - 1)} and model.discriminator.width ({width}) by {2 ** (stages - 1)}"
            )
        grids = [resolution // (patch * 2**i) for i in range(stages)]
        dims = [width // 2 ** (stages - 1 - i) for i in range(stages)]
        embedded = [dims[0]] + [d - d_prev for d_prev, d in pairwise(dims)]  # new dimensions per stage
        self.embeddings = nn.ModuleList(
            nn.Conv2d(channels, e, patch * 2**i, stride=patch * 2**i) for i, e in enumerate(embedded)
        )
        self.stages = nn.ModuleList(
            Stage(g, d, depth, heads, window, full_attention_max, mlp_ratio)
            for g, d, depth in zip(grids, dims, depths, strict=True)
        )
        self.cls = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, 1, width), std=0.02))
        self.last = nn.TransformerEncoderLayer(
            width, heads, int(width * mlp_ratio), dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.norm = nn.LayerNorm(width)
        self.score = nn.Linear(width, 1)

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The class token after the last block and LayerNorm: ``(N, width)``."""
        h: torch.Tensor | None = None
        for embed, stage in zip(self.embeddings, self.stages, strict=True):
            tokens = embed(x).permute(0, 2, 3, 1)
            if h is not None:  # pool the previous grid 2x2 and append the new scale's embedding
                h = F.avg_pool2d(h.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
                tokens = torch.cat([h, tokens], dim=-1)
            h = stage(tokens)
        assert h is not None
        sequence = torch.cat([self.cls.expand(x.shape[0], -1, -1), h.flatten(1, 2)], dim=1)
        return self.norm(self.last(sequence)[:, 0])

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.score(self.features(x)).flatten()
