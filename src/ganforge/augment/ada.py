"""ADA: adaptive discriminator augmentation (Karras et al. 2020, "Training Generative Adversarial Networks with
Limited Data").

Every op of the paper's pipeline (its Appendix B, with the strengths of its reference implementation) is
applied to each sample independently with probability ``p``; an applied op draws its own parameter, whose range
includes the identity for the discrete ones (an applied x-flip flips with probability 1/2). The geometric ops
(groups ``blit`` and ``geom``) compose into one 3x3 matrix per sample, applied with one bilinear
``F.grid_sample`` per batch with reflection padding; the colour ops (``color``) into one 4x4 matrix per sample on
the homogeneous RGB vector; ``cutout`` multiplies by a mask last. Every op is linear in the pixels for fixed
parameters, so gradients reach G through any of them. Nothing is clamped, as in the paper: geometric ops and
cutout keep values in the input's range (bilinear samples are convex combinations, cutout writes 0), colour ops
may leave [-1, 1].

Plain torch rather than kornia (its augmentation module, 0.9, was considered): kornia applies each geometric op as
its own warp, resampling the image once per op, where the paper composes the applied ops into one matrix and
resamples once (compounded bilinear blur would be something D can tell real from fake by); and here both kinds of
op are a matrix product and one ``grid_sample``, so the library would add a dependency and nothing else.
Left out, as in the paper's default ``bgc``: image-space
filtering and additive noise. Unlike the reference code, there is no 2x supersampling with a wavelet low-pass
filter around the warp (an anti-aliasing refinement), and ``grid_sample``'s reflection mirrors about the image's
edges (the border pixel repeats) where the reference pads by mirroring about the border pixel's centre.

The adaptive controller (Section 3 of the paper): D's logits on real images are observed after each D step;
every ``interval`` steps ``r_t = E[sign(D(real))]`` over them, and ``p`` moves by
``sign(r_t - target) * N / (speed_kimg * 1000)``, ``N`` the real images of the interval (batch size times
``interval``, summed over ranks), so ``p`` can go from 0 to 1 in ``speed_kimg`` thousand images; then ``p`` is
clamped to [0, 1]. ``N`` is counted in D's real logits, which are images unless D packs them (``model.pack`` > 1:
then packs, and ``p`` moves ``pack`` times slower per image).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ganforge.augment import Augmentation
from ganforge.errors import ConfigError

#: The paper's op groups (its default, bgc, is blit + geom + color), each op in pipeline order.
OP_GROUPS: dict[str, tuple[str, ...]] = {
    "blit": ("xflip", "rotate90", "xint"),
    "geom": ("scale", "rotate", "aniso", "xfrac"),
    "color": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
    "cutout": ("cutout",),
}
OPS = tuple(op for group in OP_GROUPS.values() for op in group)
GEOMETRIC_OPS = OP_GROUPS["blit"] + OP_GROUPS["geom"]
COLOR_OPS = OP_GROUPS["color"]


@dataclass
class ADAParams:
    """One draw of the pipeline's random parameters for a batch; ``None`` for a stage with no op enabled.
    Drawn apart from their application so a test (gradcheck) can hold them fixed."""

    geometric: torch.Tensor | None = None  # (B, 3, 3): centred pixel coordinates of the output -> of the input
    color: torch.Tensor | None = None  # (B, 4, 4): homogeneous RGB of the input -> of the output
    cutout: torch.Tensor | None = None  # (B, 1, H, W) mask: 0 inside the cut rectangle


def _affine2d(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor, e: torch.Tensor, f: torch.Tensor
) -> torch.Tensor:
    """Batched homogeneous 2D matrices ``[[a, b, c], [d, e, f], [0, 0, 1]]`` from (B,) tensors."""
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([a, b, c, d, e, f, zero, zero, one], dim=-1).view(-1, 3, 3)


def _translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    zero, one = torch.zeros_like(tx), torch.ones_like(tx)
    return _affine2d(one, zero, tx, zero, one, ty)


def _scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(sx)
    return _affine2d(sx, zero, zero, zero, sy, zero)


def _rotate2d(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(cos)
    return _affine2d(cos, -sin, zero, sin, cos, zero)


def _color_matrix(linear: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 4, 4) homogeneous colour transforms ``rgb -> linear @ rgb + offset`` from (B, 3, 3) and (B, 3)."""
    out = torch.zeros(linear.shape[0], 4, 4, dtype=linear.dtype, device=linear.device)
    out[:, :3, :3] = linear
    if offset is not None:
        out[:, :3, 3] = offset
    out[:, 3, 3] = 1
    return out


def _expand_ops(ops: Iterable[str]) -> tuple[str, ...]:
    """Op names, in pipeline order, from a list of group names (blit, geom, color, cutout) and op names."""
    chosen: set[str] = set()
    for name in ops:
        if name in OP_GROUPS:
            chosen.update(OP_GROUPS[name])
        elif name in OPS:
            chosen.add(name)
        else:
            raise ConfigError(
                f"augment.ops names {name!r}; ADA's op groups are {', '.join(OP_GROUPS)} (the paper's default "
                f"bgc is [blit, geom, color]) and its ops {', '.join(OPS)}"
            )
    return tuple(op for op in OPS if op in chosen)


def _check_fraction(name: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ConfigError(f"augment.{name}={value} is a probability; it must lie in [0, 1]")


class ADA(Augmentation):
    """The ADA pipeline with its adaptive probability ``p`` (a buffer, with all the controller's state, so a
    resumed run continues bitwise). ``fixed_p`` set: ``p`` stays there and only ``r_t`` is tracked.

    Strengths (the paper's, Appendix B): ``xint_max`` (integer translation, fraction of the size, uniform),
    ``scale_std`` / ``aniso_std`` (log2 std of the scale factors), ``rotate_max`` (rotation range, 1 = full
    circle), ``xfrac_std`` (std of the fractional translation, fraction of the size), ``brightness_std``,
    ``contrast_std`` (log2), ``hue_max`` (1 = full circle), ``saturation_std`` (log2), ``cutout_size`` (side of
    the cut rectangle, fraction of the size).
    """

    p: torch.Tensor
    sign_sum: torch.Tensor
    sign_count: torch.Tensor
    steps: torch.Tensor
    rt: torch.Tensor

    def __init__(
        self,
        ops: Iterable[str] = ("blit", "geom", "color"),
        initial_p: float = 0.0,
        fixed_p: float | None = None,
        target: float = 0.6,
        interval: int = 4,
        speed_kimg: float = 500.0,
        xint_max: float = 0.125,
        scale_std: float = 0.2,
        rotate_max: float = 1.0,
        aniso_std: float = 0.2,
        xfrac_std: float = 0.125,
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,
        hue_max: float = 1.0,
        saturation_std: float = 1.0,
        cutout_size: float = 0.5,
    ) -> None:
        super().__init__()
        self.ops = _expand_ops(ops)
        _check_fraction("initial_p", initial_p)
        if fixed_p is not None:
            _check_fraction("fixed_p", fixed_p)
        if interval < 1:
            raise ConfigError(f"augment.interval={interval} counts D steps between updates of p; it must be >= 1")
        if speed_kimg <= 0:
            raise ConfigError(f"augment.speed_kimg={speed_kimg} must be > 0 (thousands of real images for p 0 -> 1)")
        self.fixed_p = fixed_p
        self.target = target
        self.interval = interval
        self.speed_kimg = speed_kimg
        self.xint_max = xint_max
        self.scale_std = scale_std
        self.rotate_max = rotate_max
        self.aniso_std = aniso_std
        self.xfrac_std = xfrac_std
        self.brightness_std = brightness_std
        self.contrast_std = contrast_std
        self.hue_max = hue_max
        self.saturation_std = saturation_std
        self.cutout_size = cutout_size
        self.register_buffer("p", torch.tensor(float(initial_p if fixed_p is None else fixed_p)))
        # The sums of sign(D(real)) and of the logits counted over the current interval, its D steps so far,
        # and the last interval's r_t (NaN before the first).
        self.register_buffer("sign_sum", torch.tensor(0.0))
        self.register_buffer("sign_count", torch.tensor(0.0))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long))
        self.register_buffer("rt", torch.tensor(float("nan")))

    def extra_repr(self) -> str:
        mode = f"fixed_p={self.fixed_p}" if self.fixed_p is not None else f"target={self.target}"
        return f"ops={list(self.ops)}, {mode}"

    # ----------------------------------------------------------------------------------------------
    # The pipeline: parameters drawn in sample(), applied in transform() (apply() is nn.Module's, run on children).

    def _applied(self, b: int, device: torch.device, probability: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) booleans: which samples an op is applied to, each with probability ``p`` (or ``probability``)."""
        return torch.rand(b, device=device) < (self.p if probability is None else probability)

    def _geometric(self, b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """The inverse warps (output -> input pixel coordinates, centred on the image), ops in pipeline order.

        ``g = g @ inverse(op)`` for each op, so the image undergoes the first op first. Definitions: the paper's
        Appendix B, parameters per sample.
        """
        if not any(op in self.ops for op in GEOMETRIC_OPS):
            return None

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, device=device, dtype=dtype)

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, device=device, dtype=dtype)

        g = torch.eye(3, device=device, dtype=dtype).expand(b, 3, 3)
        one = torch.ones(b, device=device, dtype=dtype)
        if "xflip" in self.ops:  # x-flip: x -> -x with i ~ U{0, 1}
            flip = torch.where(self._applied(b, device), torch.randint(0, 2, (b,), device=device), 0)
            g = g @ _scale2d(1 - 2 * flip.to(dtype), one)  # its own inverse
        if "rotate90" in self.ops:  # rotation by i quarter turns, i ~ U{0, 1, 2, 3}
            turns = torch.where(self._applied(b, device), torch.randint(0, 4, (b,), device=device), 0)
            # cos and sin of the quarter turns exactly (cos(pi / 2) in floating point is not 0: a blit stays exact)
            cos = (turns == 0).to(dtype) - (turns == 2).to(dtype)
            sin = (turns == 1).to(dtype) - (turns == 3).to(dtype)
            g = g @ _rotate2d(cos, -sin)
        if "xint" in self.ops:  # integer translation, t ~ U(-0.125, 0.125)^2 of the size, rounded to whole pixels
            t = (rand(b, 2) * 2 - 1) * self.xint_max
            t = torch.where(self._applied(b, device).unsqueeze(1), t, 0)
            g = g @ _translate2d(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h))
        if "scale" in self.ops:  # isotropic scaling, s ~ lognormal(0, (0.2 ln 2)^2)
            s = torch.where(self._applied(b, device), torch.exp2(randn(b) * self.scale_std), 1)
            g = g @ _scale2d(1 / s, 1 / s)
        # The rotation is split in two, before and after the anisotropic scaling (so that the latter acts along
        # an arbitrary axis), each with p_rot = 1 - sqrt(1 - p): either happens with probability p.
        p_rot = 1 - torch.sqrt((1 - self.p).clamp(0, 1))
        for stage in ("pre", "post"):
            if stage == "post" and "aniso" in self.ops:  # anisotropic scaling, s ~ lognormal(0, (0.2 ln 2)^2)
                s = torch.where(self._applied(b, device), torch.exp2(randn(b) * self.aniso_std), 1)
                g = g @ _scale2d(1 / s, s)
            if "rotate" in self.ops:  # arbitrary rotation, theta ~ U(-pi, pi)
                theta = (rand(b) * 2 - 1) * math.pi * self.rotate_max
                theta = torch.where(self._applied(b, device, p_rot), theta, 0)
                g = g @ _rotate2d(torch.cos(theta), -torch.sin(theta))
        if "xfrac" in self.ops:  # fractional translation, t ~ N(0, 0.125^2) of the size
            t = torch.where(self._applied(b, device).unsqueeze(1), randn(b, 2) * self.xfrac_std, 0)
            g = g @ _translate2d(-t[:, 0] * w, -t[:, 1] * h)
        return g

    def _color(self, b: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """The colour transforms (homogeneous RGB in -> out), ``c = op @ c`` for each op in pipeline order.

        Definitions: the paper's Appendix B, on images in [-1, 1], so the origin that contrast, luma flip, hue and
        saturation act about is mid-grey.
        """
        if not any(op in self.ops for op in COLOR_OPS):
            return None
        # Built on the device, not copied from the host: a host-to-device copy would wait for the GPU each batch.
        eye3 = torch.eye(3, device=device, dtype=dtype)
        along_luma = torch.full((3, 3), 1.0 / 3.0, device=device, dtype=dtype)  # v v^T, v = (1, 1, 1) / sqrt(3)
        c = torch.eye(4, device=device, dtype=dtype).expand(b, 4, 4)
        if "brightness" in self.ops:  # b ~ N(0, 0.2^2) added to every channel
            shift = torch.where(self._applied(b, device), torch.randn(b, device=device, dtype=dtype), 0)
            c = _color_matrix(eye3.expand(b, 3, 3), (shift * self.brightness_std).unsqueeze(1).expand(b, 3)) @ c
        if "contrast" in self.ops:  # every channel times c ~ lognormal(0, (0.5 ln 2)^2)
            factor = torch.exp2(torch.randn(b, device=device, dtype=dtype) * self.contrast_std)
            factor = torch.where(self._applied(b, device), factor, 1)
            c = _color_matrix(eye3 * factor.view(b, 1, 1)) @ c
        if "lumaflip" in self.ops:  # the Householder reflection I - 2 v v^T of the luma, with i ~ U{0, 1}
            flip = torch.where(self._applied(b, device), torch.randint(0, 2, (b,), device=device), 0).to(dtype)
            c = _color_matrix(eye3 - 2 * along_luma * flip.view(b, 1, 1)) @ c
        if "hue" in self.ops:  # rotation about the luma axis by theta ~ U(-pi, pi) (Rodrigues' formula)
            theta = (torch.rand(b, device=device, dtype=dtype) * 2 - 1) * math.pi * self.hue_max
            theta = torch.where(self._applied(b, device), theta, 0).view(b, 1, 1)
            # v x . for the luma axis v: [[0, -1, 1], [1, 0, -1], [-1, 1, 0]] / sqrt(3)
            cross = (eye3.roll(-1, dims=1) - eye3.roll(1, dims=1)) / math.sqrt(3.0)
            rotation = torch.cos(theta) * eye3 + torch.sin(theta) * cross + (1 - torch.cos(theta)) * along_luma
            c = _color_matrix(rotation) @ c
        if "saturation" in self.ops:  # the chroma (off the luma axis) times s ~ lognormal(0, (1 ln 2)^2)
            factor = torch.exp2(torch.randn(b, device=device, dtype=dtype) * self.saturation_std)
            factor = torch.where(self._applied(b, device), factor, 1).view(b, 1, 1)
            c = _color_matrix(along_luma + (eye3 - along_luma) * factor) @ c
        return c

    def _cutout(self, b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """Cutout (DeVries & Taylor 2017, as the paper's Appendix B uses it): a rectangle of ``cutout_size``
        times the image's sides, centred uniformly in the image, set to 0 (mid-grey); pixels count as inside by
        their centres."""
        if "cutout" not in self.ops:
            return None
        size = (self._applied(b, device).to(dtype) * self.cutout_size).view(b, 1, 1, 1)  # 0: no cutout
        centre = torch.rand(b, 2, 1, 1, device=device, dtype=dtype)
        ys = (torch.arange(h, device=device, dtype=dtype).view(1, 1, h, 1) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=dtype).view(1, 1, 1, w) + 0.5) / w
        outside = ((ys - centre[:, 1:2]).abs() >= size / 2) | ((xs - centre[:, 0:1]).abs() >= size / 2)
        return outside.to(dtype)

    def sample(self, images: torch.Tensor) -> ADAParams:
        """Fresh parameters for each sample of ``images`` (B, C, H, W) at the current ``p``."""
        b, _, h, w = images.shape
        device = images.device
        dtype = _work_dtype(images)
        return ADAParams(
            geometric=self._geometric(b, h, w, device, dtype),
            color=self._color(b, device, dtype),
            cutout=self._cutout(b, h, w, device, dtype),
        )

    def transform(self, images: torch.Tensor, params: ADAParams) -> torch.Tensor:
        """``images`` augmented with ``params``: differentiable (and linear) in the images. Computed in float32
        at least (``grid_sample`` in half precision is coarse), returned in the input's dtype."""
        x = images.to(_work_dtype(images))
        b, channels, h, w = x.shape
        if params.geometric is not None:
            # From centred pixel coordinates to grid_sample's [-1, 1] (align_corners=False: +-1 are the image's
            # edges): theta = S^-1 G S with S = diag(W/2, H/2, 1), elementwise on G's top two rows.
            ratio = torch.ones(2, 3, device=x.device, dtype=x.dtype)  # filled in place: no host-to-device copy
            ratio[0, 1], ratio[0, 2], ratio[1, 0], ratio[1, 2] = h / w, 2.0 / w, w / h, 2.0 / h
            theta = params.geometric[:, :2, :].to(x.dtype) * ratio
            grid = F.affine_grid(theta, [b, channels, h, w], align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        if params.color is not None:
            c = params.color.to(x.dtype)
            if channels == 3:
                x = (c[:, :3, :3] @ x.flatten(2) + c[:, :3, 3:]).view(b, channels, h, w)
            elif channels == 1:
                # A grey pixel g is the RGB (g, g, g); transformed, the mean of its three channels is the grey
                # out. Every colour op maps grey to grey, so this is exact: brightness and contrast act as on
                # RGB, luma flip negates (g -> -g), and hue rotation and saturation leave grey unchanged.
                gain = c[:, :3, :3].sum(dim=2).mean(dim=1).view(b, 1, 1, 1)
                offset = c[:, :3, 3].mean(dim=1).view(b, 1, 1, 1)
                x = x * gain + offset
            else:
                raise ConfigError(
                    f"ADA's colour ops are defined on 1- or 3-channel images, and these have {channels}; "
                    "leave out the color group (augment.ops=[blit,geom])"
                )
        if params.cutout is not None:
            x = x * params.cutout.to(x.dtype)
        return x.to(images.dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Out of autocast: the matrix products would run in half precision and blur the warp and the colours.
        with torch.autocast(images.device.type, enabled=False):
            return self.transform(images, self.sample(images))

    # ----------------------------------------------------------------------------------------------
    # The controller.

    @torch.no_grad()
    def observe(self, real_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Count the signs of D's logits on a real batch; every ``interval`` D steps, update ``r_t`` and ``p``.

        Under torch.distributed the step's sums are all-reduced at once, so the accumulators are the same on
        every rank at all times: every rank steps ``p`` identically, and DDP's broadcast of rank 0's buffers
        before each forward pass changes nothing. Tensor ops only (no ``.item()``): no host sync on a GPU.
        """
        signs = real_logits.detach().float().sign().flatten()
        totals = torch.stack([signs.sum(), torch.full((), float(signs.numel()), device=signs.device)])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(totals)
        totals = totals.to(self.sign_sum)
        self.sign_sum += totals[0]
        self.sign_count += totals[1]
        self.steps += 1
        due = self.steps >= self.interval
        rt = self.sign_sum / self.sign_count.clamp(min=1)
        if self.fixed_p is None:
            adjust = torch.sign(rt - self.target) * self.sign_count / (self.speed_kimg * 1000)
            self.p.copy_(torch.where(due, (self.p + adjust).clamp(0, 1), self.p))
        self.rt.copy_(torch.where(due, rt, self.rt))
        self.sign_sum.copy_(torch.where(due, 0.0, self.sign_sum))
        self.sign_count.copy_(torch.where(due, 0.0, self.sign_count))
        self.steps.copy_(torch.where(due, 0, self.steps))
        return {"augment/p": self.p.clone(), "augment/rt": self.rt.clone()}


def _work_dtype(images: torch.Tensor) -> torch.dtype:
    return images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
