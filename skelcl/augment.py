"""The seven AS-CAL skeleton augmentations (paper III-A), batched and exact.

Every augmentation works on a batch ``x`` of shape (B, T, M, V, C) with ``lengths`` (B,) int64 on any
device, draws its own random parameters per sample from an explicit :class:`torch.Generator` (on the
same device as ``x``, or on the CPU: draws are moved to ``x``'s device), and never loops in Python over
samples or frames. Same generator state, same output.

Each augmentation is a frozen dataclass with three methods:

* ``draw(x, lengths, gen) -> dict[str, Tensor]``: the random parameters, each with leading dim B
  (a sample's parameters are a slice: ``{k: v[i:i+1]}``). Masks report here exactly what they zero.
* ``apply(x, lengths, params) -> Tensor``: the deterministic transform given those parameters.
* ``__call__(x, lengths, gen=None) -> Tensor``: ``apply(x, lengths, draw(x, lengths, gen))``.

Invariants kept by all of them: dtype, shape and device are unchanged; padding frames
(``t >= lengths[b]``) stay zero; a person who is all zeros in a frame (absent, or padding) stays zero.
Temporal operations (reverse, blur, joint mask) act on the valid frames only.

The paper's text is the default; where the authors' released code differs in a defensible way it is
an option (``variant="released-code"`` or an explicit parameter). Defects of the released code
(reverse moving padding to the front, noise added to padding and absent persons) are not copied.

Beyond the paper: ``swap_persons`` (exchange persons 1 and 2), ``crop`` (temporal crop-resize),
``mirror`` (the body's left-right mirror image; its joint pairs come from the layout's joint names)
and ``decimate`` (a recording with fewer frames, resampled back: the smoothness of a short recording).

Configs name a composition as a list: ``build_augment(["reverse", {"shear": {"amplitude": 0.5}}])``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from .errors import ConfigError

Params = dict[str, torch.Tensor]

VARIANTS = ("paper", "released-code")

# Which default composition the paper (and the released code) use for both query and key.
DEFAULT_AUGMENT: tuple[str, ...] = ("reverse", "shear")


# ----------------------------------------------------------------------------------------- helpers


def _gen_device(gen: torch.Generator | None, device: torch.device) -> torch.device:
    return gen.device if gen is not None else device


def _rand(gen: torch.Generator | None, shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """U[0, 1) float32 of ``shape``, drawn on the generator's device and moved to ``device``."""
    return torch.rand(tuple(shape), generator=gen, device=_gen_device(gen, device)).to(device)


def _uniform(gen: torch.Generator | None, shape: Sequence[int], lo: float, hi: float,
             device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * _rand(gen, shape, device)


def _randint(gen: torch.Generator | None, shape: Sequence[int], lo: int, hi: int,
             device: torch.device) -> torch.Tensor:
    """Integers uniform in [lo, hi] (inclusive), int64."""
    return torch.randint(lo, hi + 1, tuple(shape), generator=gen,
                         device=_gen_device(gen, device)).to(device)


def valid_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, T) bool: frame t of sample b is within its true length."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def presence(x: torch.Tensor) -> torch.Tensor:
    """(B, T, M, 1, 1) bool: person m is present in frame t (any non-zero coordinate).

    Padding frames and absent persons are all zeros in canonical data, so this mask is what keeps
    them zero through non-linear-in-zero augmentations (noise, blur).
    """
    return (x != 0).flatten(3).any(-1)[..., None, None]


def persons_present(x: torch.Tensor) -> torch.Tensor:
    """(B, M) bool: person m appears in at least one frame of sample b."""
    return presence(x)[..., 0, 0].any(1)


def _check(x: torch.Tensor, lengths: torch.Tensor) -> None:
    if x.ndim != 5:
        raise ValueError(f"augmentations expect x of shape (B, T, M, V, C), got {tuple(x.shape)}")
    if lengths.shape != (x.shape[0],):
        raise ValueError(f"lengths must have shape ({x.shape[0]},), got {tuple(lengths.shape)}")


def _need(ok: bool, what: str, value: object) -> None:
    """Raise a ConfigError for a parameter out of range."""
    if not ok:
        raise ConfigError(f"augmentation parameter {what}, got {value!r}")


def _resolve_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return variant


# ------------------------------------------------------------------------------------ base class


@dataclass(frozen=True)
class Augmentation:
    """Base: ``__call__`` draws per-sample parameters then applies them."""

    name: ClassVar[str] = ""

    def draw(self, x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator | None = None) -> Params:
        return {}

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, params: Params) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor,
                 gen: torch.Generator | None = None) -> torch.Tensor:
        _check(x, lengths)
        lengths = lengths.to(x.device)
        return self.apply(x, lengths, self.draw(x, lengths, gen))


def _bmm3(x: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    """Per-sample linear map of the coordinate axis: x' = A x for every joint.

    x: (B, T, M, V, C=3); mat: (B, 3, 3). One batched matmul per batch. On the CPU, k joints are
    grouped into rows of 3k against the block-diagonal kron(I_k, A^T): a 3-wide GEMM is badly shaped
    for BLAS and this is ~2-3x faster; the extra terms are exact zeros (inputs are finite).
    """
    b = x.shape[0]
    n = x.shape[1] * x.shape[2] * x.shape[3]
    at = mat.to(x.dtype).transpose(1, 2)
    k = 1 if x.is_cuda else next(k for k in (5, 4, 3, 2, 1) if n % k == 0)
    if k > 1:
        eye = torch.eye(k, dtype=x.dtype, device=x.device)
        at = torch.einsum("ij,bpq->bipjq", eye, at).reshape(b, 3 * k, 3 * k)
    out = torch.bmm(x.reshape(b, n // k, 3 * k), at)
    return out.view(x.shape)


def _need_xyz(x: torch.Tensor, what: str) -> None:
    if x.shape[-1] != 3:
        raise ValueError(f"{what} needs 3D coordinates (C=3), got C={x.shape[-1]}")


# -------------------------------------------------------------------------------- augmentations


def rotation_matrix(alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """R = Rz(gamma) Ry(beta) Rx(alpha) with the paper's Eqs. 1-4; angles (B,) -> (B, 3, 3)."""
    ca, sa = torch.cos(alpha), torch.sin(alpha)
    cb, sb = torch.cos(beta), torch.sin(beta)
    cg, sg = torch.cos(gamma), torch.sin(gamma)
    one, zero = torch.ones_like(alpha), torch.zeros_like(alpha)
    rx = torch.stack([one, zero, zero, zero, ca, sa, zero, -sa, ca], -1).view(-1, 3, 3)
    ry = torch.stack([cb, zero, -sb, zero, one, zero, sb, zero, cb], -1).view(-1, 3, 3)
    rz = torch.stack([cg, sg, zero, -sg, cg, zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ ry @ rx


@dataclass(frozen=True)
class Rotate(Augmentation):
    """Random 3D rotation of the whole sequence: simulates a change of camera viewpoint.

    Paper: a main axis drawn from {X, Y, Z} gets an angle U[0, max_angle] (pi/6), the two others
    U[0, minor_angle] (pi/180); R = Rz Ry Rx; one rotation per sequence.
    ``variant="released-code"``: the two other axes are not rotated (minor_angle = 0).
    Params: ``angles`` (B, 3) radians about X, Y, Z; ``matrix`` (B, 3, 3).
    """

    name: ClassVar[str] = "rotate"
    max_angle: float = math.pi / 6
    minor_angle: float | None = None  # None: pi/180 (paper) or 0 (released code)
    variant: str = "paper"

    def __post_init__(self) -> None:
        _resolve_variant(self.variant)
        _need(self.max_angle >= 0, "rotate.max_angle must be >= 0 (radians)", self.max_angle)
        _need(self.minor_angle is None or self.minor_angle >= 0, "rotate.minor_angle must be >= 0",
              self.minor_angle)

    @property
    def minor(self) -> float:
        if self.minor_angle is not None:
            return float(self.minor_angle)
        return math.pi / 180 if self.variant == "paper" else 0.0

    def draw(self, x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator | None = None) -> Params:
        b, dev = x.shape[0], x.device
        axis = _randint(gen, (b,), 0, 2, dev)
        main = _uniform(gen, (b,), 0.0, self.max_angle, dev)
        minor = _uniform(gen, (b, 3), 0.0, self.minor, dev)
        is_main = F.one_hot(axis, 3).bool()
        angles = torch.where(is_main, main[:, None], minor)
        return {"axis": axis, "angles": angles,
                "matrix": rotation_matrix(*angles.double().unbind(1))}  # float64: orthonormal to 1e-16

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, params: Params) -> torch.Tensor:
        _need_xyz(x, "rotate")
        return _bmm3(x, params["matrix"])


def shear_matrix(factors: torch.Tensor) -> torch.Tensor:
    """Eq. 5 from six factors (B, 6) ordered (s_YX, s_ZX, s_XY, s_ZY, s_XZ, s_YZ) -> (B, 3, 3).

    S = [[1, s_YX, s_ZX], [s_XY, 1, s_ZY], [s_XZ, s_YZ, 1]].
    """
    one = torch.ones_like(factors[:, 0])
    s = factors
    return torch.stack([one, s[:, 0], s[:, 1], s[:, 2], one, s[:, 3], s[:, 4], s[:, 5], one], -1).view(-1, 3, 3)


@dataclass(frozen=True)
class Shear(Augmentation):
    """Random shear x' = S x (Eq. 5, unit diagonal): slants the body as a skewed viewpoint would.

    Six off-diagonal factors U[-amplitude, amplitude] (paper and released code: 1).
    Params: ``factors`` (B, 6); ``matrix`` (B, 3, 3).
    """

    name: ClassVar[str] = "shear"
    amplitude: float = 1.0

    def __post_init__(self) -> None:
        _need(self.amplitude >= 0, "shear.amplitude must be >= 0", self.amplitude)

    def draw(self, x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator | None = None) -> Params:
        f = _uniform(gen, (x.shape[0], 6), -self.amplitude, self.amplitude, x.device)
        return {"factors": f, "matrix": shear_matrix(f)}

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, params: Params) -> torch.Tensor:
        _need_xyz(x, "shear")
        return _bmm3(x, params["matrix"])


def reverse_index(lengths: torch.Tensor, frames: int, flip: torch.Tensor) -> torch.Tensor:
    """(B, T) frame index: t -> len-1-t on valid frames of flipped samples, identity elsewhere."""
    t = torch.arange(frames, device=lengths.device)[None, :]
    rev = lengths[:, None] - 1 - t
    return torch.where(flip[:, None] & (t < lengths[:, None]), rev, t)


@dataclass(frozen=True)
class Reverse(Augmentation):
    """Reverse the temporal order of the valid frames with probability p: a temporal "flip".

    Frames 0..len-1 are reversed in place; padding stays at the end (the released code also flips
    the padding to the front, a defect not copied). Params: ``flip`` (B,) bool.
    """

    name: ClassVar[str] = "reverse"
    p: float = 0.5

    def __post_init__(self) -> None:
        _need(0 <= self.p <= 1, "reverse.p must be in [0, 1]", self.p)

    def draw(self, x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator | None = None) -> Params:
        return {"flip": _rand(gen, (x.shape[0],), x.device) < self.p}

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, params: Params) -> torch.Tensor:
        b, t = x.shape[:2]
        idx = reverse_index(lengths, t, params["flip"])
        rows = torch.arange(b, device=x.device)[:, None]
        return x[rows, idx]  # (B, T, M, V, C): gathers whole frames


def time_reversed(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) with every sample's valid frames in reverse order; padding stays at the end.

    The deterministic half of :class:`Reverse` (p = 1), used by the both-directions readout.
    """
    return Reverse().apply(x, lengths.to(x.device), {"flip": torch.ones(x.shape[0], dtype=torch.bool,
                                                                         device=x.device)})


@dataclass(frozen=True)
class Noise(Augmentation):
    """Add Gaussian noise N(0, std^2) to every coordinate: simulates pose-estimation jitter.

    ``std`` is the standard deviation (paper: "N(0, 0.05)", read as std 0.05, as in the released
    code). Only present persons in valid frames get noise; padding and absent persons stay zero.
    Params: ``noise`` (B, T, M, V, C) before masking.
    """

    name: ClassVar[str] = "noise"
    std: float = 0.05

    def __post_init__(self) -> None:
        _need(self.std >= 0, "noise.std must be >= 0", self.std)

    def draw(self, x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator | None = None) -> Params:
        noise = torch.randn(x.shape, generator=gen, device=_gen_device(gen, x.device)).to(x.device)
        return {"noise": noise.mul_(self.std)}

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, params: Params) -> torch.Tensor:
        keep = presence(x) & valid_mask(lengths, x.shape[1])[:, :, None, None, None]
        return x + params["noise"].to(x.dtype) * keep


def gaussian_kernels(sigma: torch.Tensor, taps: int = 15, normalize: bool = True) -> torch.Tensor:
    """(B,) sigmas -> (B, taps) kernels G(t) = exp(-t^2 / 2 sigma^2), t = -(taps//2)..taps//2 (Eq. 6)."""
    half = taps // 2
    t = torch.arange(-half, half + 1, device=sigma.device, dtype=sigma.dtype)
    k = torch.exp(-(t[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    # weights below 1e-20 of the peak are set to 0: negligible, and denormals make CPU arithmetic slow
    k = k.masked_fill(k < 1e-20, 0.0)
    return k / k.sum(-1, keepdim=True) if normalize else k


def _time_conv(y: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve (B, T, ...) along T with a per-sample symmetric kernel (B, K), zero boundary.

    A loop over the K taps (not over samples or frames) of fused multiply-adds of shifted views:
    on the CPU this is ~10x faster than a depthwise conv1d with B x F groups.
    """
    k = kernels.shape[1]
    t = y.shape[1]
    half = k // 2
    w = kernels.to(y.dtype).view(-1, k, *([1] * (y.ndim - 1)))
    yp = torch.cat([y.new_zeros((y.shape[0], half) + y.shape[2:]), y,
                    y.new_zeros((y.shape[0], half) + y.shape[2:])], 1)
    out = yp[:, 0:t] * w[:, 0]
    for j in range(1, k):
        out.addcmul_(yp[:, j:j + t], w[:, j])
    return out


@dataclass(frozen=True)
class Blur(Augmentation):
    """Gaussian blur along time with probability p: smooths joint trajectories, removing detail.

    Kernel of ``taps`` (15) samples, t = -7..7, sigma U[sigma_min, sigma_max] = U[0.1, 2.0] (Eq. 6).
    Default (paper): the kernel is normalised; at the ends of a sequence and around frames where a
    person is absent it is renormalised over the present frames (a normalised convolution), so a
    constant signal stays constant and padding never leaks in.
    ``normalize=False`` or ``variant="released-code"``: the released code's raw exp(-t^2/2sigma^2)
    weights (gain up to ~5x), zero beyond the valid frames.
    Params: ``apply`` (B,) bool; ``sigma`` (B,); ``kernel`` (B, taps).
    """

    name: ClassVar[str] = "blur"
    p: float = 0.5
    sigma_min: float = 0.1
    sigma_max: float = 2.0
    taps: int = 15
    normalize: bool | None = None  # None: True (paper) or False (released code)
    variant: str = "paper"

    def __post_init__(self) -> None:
        _resolve_variant(self.variant)
        _need(self.taps >= 1 and self.taps % 2 == 1, "blur.taps must be a positive odd number", self.taps)
        _need(0 <= self.p <= 1, "blur.p must be in [0, 1]", self.p)
        _need(0 < self.sigma_min <= self.sigma_max, "blur needs 0 < sigma_min <= sigma_max",
              (self.sigma_min, self.sigma_max))

    @property
    def normalized(self) -> bool:
        return self.normalize if self.normalize is not None else self.variant == "paper"

    def draw(self, x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator | None = None) -> Params:
        b, dev = x.shape[0], x.device
        on = _rand(gen, (b,), dev) < self.p
        sigma = _uniform(gen, (b,), self.sigma_min, self.sigma_max, dev)
        return {"apply": on, "sigma": sigma,
                "kernel": gaussian_kernels(sigma, self.taps, normalize=self.normalized)}

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, params: Params) -> torch.Tensor:
        on = params["apply"]
        kernel = params["kernel"]
        # samples drawn "off" get the unit impulse: their output is exactly x (sums of exact zeros)
        delta = torch.zeros_like(kernel)
        delta[:, kernel.shape[1] // 2] = 1
        kernel = torch.where(on[:, None], kernel, delta)
        pres = (presence(x)[..., 0, 0] & valid_mask(lengths, x.shape[1])[:, :, None]).to(x.dtype)  # (B, T, M)
        # x is zero wherever pres is (canonical data), so the numerator sees present frames only
        num = _time_conv(x, kernel)
        if self.normalized:
            den = _time_conv(pres, kernel)  # kernel mass on present frames, (B, T, M)
            factor = pres / den.clamp_min(torch.finfo(x.dtype).tiny)
        else:
            factor = pres
        return num * factor[..., None, None]


def _random_subset(gen: torch.Generator | None, n: int, count: torch.Tensor, allowed: torch.Tensor | None,
                   device: torch.device) -> torch.Tensor:
    """(B, n) bool with exactly ``count[b]`` True entries chosen uniformly among ``allowed[b]``.

    Random keys are ranked per row; disallowed positions get key 2 so they rank last.
    """
    keys = _rand(gen, (count.shape[0], n), device)
    if allowed is not None:
        keys = torch.where(allowed, keys, torch.full_like(keys, 2.0))
    rank = keys.argsort(-1).argsort(-1)
    return rank < count[:, None]


@dataclass(frozen=True)
class JointMask(Augmentation):
    """Zero V random joints on L random valid frames (both persons): joint-level "Cutout".

    Paper: V in {joints_min..joints_max} = {5..15}, L in {frames_min..frames_max} = {50..100}; the
    frames need not be contiguous and the same joints are zeroed on each chosen frame.
    ``variant="released-code"``: L in {20..50} when the array has fewer than 100 frames (T < 100).
    L is clipped to each sample's valid length (a 40-frame sequence with L = 70 has all 40 frames
    masked) and V to the number of joints.
    Params: ``mask`` (B, T, V) bool, exactly the zeroed (frame, joint) pairs (all persons and axes);
    ``joints`` (B,) and ``frames`` (B,) counts actually used.
    """

    name: ClassVar[str] = "joint_mask"
    joints_min: int = 5
    joints_max: int = 15
    frames_min: int | None = None  # None: 50 (paper), or 20 when T < 100 in the released code
    frames_max: int | None = None  # None: 100 (paper), or 50 when T < 100 in the released code
    variant: str = "paper"

    def __post_init__(self) -> None:
        _resolve_variant(self.variant)
        lo, hi = self.frame_range(150)
        if not (0 <= self.joints_min <= self.joints_max) or not (0 <= lo <= hi):
            raise ConfigError(f"joint_mask: need 0 <= joints_min <= joints_max and 0 <= frames_min <= "
                              f"frames_max, got {self}")

    def frame_range(self, frames: int) -> tuple[int, int]:
        short = self.variant == "released-code" and frames < 100
        lo = self.frames_min if self.frames_min is not None else (20 if short else 50)
        hi = self.frames_max if self.frames_max is not None else (50 if short else 100)
        return lo, hi

    def draw(self, x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator | None = None) -> Params:
        b, t, _, v, _ = x.shape
        dev = x.device
        lo, hi = self.frame_range(t)
        nj = _randint(gen, (b,), self.joints_min, self.joints_max, dev).clamp_max(v)
        nf = torch.minimum(_randint(gen, (b,), lo, hi, dev), lengths)
        jsel = _random_subset(gen, v, nj, None, dev)
        fsel = _random_subset(gen, t, nf, valid_mask(lengths, t), dev)
        return {"mask": fsel[:, :, None] & jsel[:, None, :], "joints": nj, "frames": nf}

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, params: Params) -> torch.Tensor:
        return x.masked_fill(params["mask"][:, :, None, :, None], 0)


@dataclass(frozen=True)
class ChannelMask(Augmentation):
    """Zero one random coordinate axis for the whole sequence: a 2D projection of the motion.

    Params: ``mask`` (B, C) bool, the zeroed axis; ``axis`` (B,).
    """

    name: ClassVar[str] = "channel_mask"

    def draw(self, x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator | None = None) -> Params:
        axis = _randint(gen, (x.shape[0],), 0, x.shape[-1] - 1, x.device)
        return {"axis": axis, "mask": F.one_hot(axis, x.shape[-1]).bool()}

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, params: Params) -> torch.Tensor:
        return x.masked_fill(params["mask"][:, None, None, None, :], 0)


@dataclass(frozen=True)
class SwapPersons(Augmentation):
    """Swap the first two persons with probability p: which actor the sensor listed first is arbitrary.

    Not one of the paper's seven. In two-person interactions (SBU, NTU mutual actions) it teaches the
    encoder that the order of the persons carries no meaning. Samples whose second person is absent
    are left alone. Params: ``swap`` (B,) bool.
    """

    name: ClassVar[str] = "swap_persons"
    p: float = 0.5

    def __post_init__(self) -> None:
        _need(0 <= self.p <= 1, "swap_persons.p must be in [0, 1]", self.p)

    def draw(self, x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator | None = None) -> Params:
        swap = _rand(gen, (x.shape[0],), x.device) < self.p
        if x.shape[2] < 2:
            return {"swap": torch.zeros_like(swap)}
        return {"swap": swap & persons_present(x)[:, 1]}

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, params: Params) -> torch.Tensor:
        if x.shape[2] < 2:
            return x
        order = torch.arange(x.shape[2], device=x.device)
        swapped = order.clone()
        swapped[0], swapped[1] = 1, 0
        return torch.where(params["swap"][:, None, None, None, None], x[:, :, swapped], x)


def swap_two_persons(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, M, V, C) with persons 1 and 2 swapped in every sample that has a second person.

    The deterministic half of :class:`SwapPersons` (p = 1), used where an output must not depend on
    the person order: the person-symmetric probe and the ``symmetric`` encoder.
    """
    if x.shape[2] < 2:
        return x
    return SwapPersons().apply(x, lengths, {"swap": persons_present(x)[:, 1]})


def lerp_frames(x: torch.Tensor, lengths: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, T, M, V, C) linearly interpolated in time at source positions ``pos`` (B, T') in frames,
    clamped to each sample's valid frames, and the presence (B, T', M, 1, 1) of the nearer source
    frame, so a person absent there can stay absent. Used by ``crop`` and ``decimate``."""
    last = (lengths - 1).clamp(min=0)[:, None]
    pos = torch.minimum(pos.clamp(min=0), last.to(pos.dtype))
    lo = pos.floor().long()
    hi = torch.minimum(lo + 1, last)
    w = (pos - lo.to(pos.dtype)).to(x.dtype)[:, :, None, None, None]
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    xlo, xhi = x[rows, lo], x[rows, hi]
    return xlo + (xhi - xlo) * w, torch.where(w >= 0.5, presence(xhi), presence(xlo))


@dataclass(frozen=True)
class Crop(Augmentation):
    """Temporal crop-and-resize: a random window of the valid frames stretched back to full length.

    Not one of the paper's seven; the temporal augmentation of later skeleton contrastive methods
    (SkeletonCLR, AimCLR). The window covers a fraction U[min_ratio, 1] of each sample's valid
    frames at a uniform random start, and is resampled by linear interpolation to the sample's own
    length, so the length and the padding are unchanged. It makes the two views differ in speed and
    extent, which a reversed/sheared pair never does. A person absent in the nearer source frame
    stays absent. Params: ``start`` (B,) and ``span`` (B,) in frames (float).
    """

    name: ClassVar[str] = "crop"
    min_ratio: float = 0.5

    def __post_init__(self) -> None:
        _need(0 < self.min_ratio <= 1, "crop.min_ratio must be in (0, 1]", self.min_ratio)

    def draw(self, x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator | None = None) -> Params:
        b = x.shape[0]
        n = lengths.to(torch.float32).clamp(min=1)
        span = _uniform(gen, (b,), self.min_ratio, 1.0, x.device) * n
        start = _rand(gen, (b,), x.device) * (n - span)
        return {"start": start, "span": span}

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, params: Params) -> torch.Tensor:
        t = x.shape[1]
        n = lengths.to(torch.float32).clamp(min=1)
        tt = torch.arange(t, device=x.device, dtype=torch.float32)[None, :]
        # output frame j of a length-n sample samples source position start + j * (span - 1) / (n - 1)
        step = (params["span"] - 1).clamp(min=0) / (n - 1).clamp(min=1)
        pos = params["start"][:, None] + tt * step[:, None]
        out, near = lerp_frames(x, lengths, pos)
        out = out * near.to(x.dtype)
        return out * valid_mask(lengths, t)[:, :, None, None, None].to(x.dtype)


@dataclass(frozen=True)
class Mirror(Augmentation):
    """Left-right mirror image of the body with probability p: one axis negated and every left
    joint swapped with its right twin, so a right-handed action becomes the same action done
    left-handed (a body seen in a mirror, not a rotation; no joint moves off its limb).

    ``axis`` is the body's left-right axis: x (0) once ``view_align`` has turned the body's
    left-to-right vector onto +x. ``pairs`` are (left, right) joint indices; pretraining fills them
    from the layout's joint names (``*_left`` / ``*_right``) when not given. With no pairs only the
    axis is negated (joint identities kept). Params: ``flip`` (B,) bool.
    """

    name: ClassVar[str] = "mirror"
    p: float = 0.5
    axis: int = 0
    pairs: tuple = ()

    def __post_init__(self) -> None:
        _need(0 <= self.p <= 1, "mirror.p must be in [0, 1]", self.p)
        _need(self.axis in (0, 1, 2), "mirror.axis must be 0, 1 or 2", self.axis)
        pairs = tuple(tuple(int(j) for j in pair) for pair in self.pairs)
        _need(all(len(pair) == 2 and min(pair) >= 0 for pair in pairs),
              "mirror.pairs must be [left, right] joint index pairs", self.pairs)
        flat = [j for pair in pairs for j in pair]
        _need(len(flat) == len(set(flat)), "mirror.pairs must name each joint once", self.pairs)
        object.__setattr__(self, "pairs", pairs)

    def permutation(self, joints: int) -> torch.Tensor:
        """(V,) joint order of the mirror image: each pair swapped, other joints in place."""
        perm = torch.arange(joints)
        for left, right in self.pairs:
            if max(left, right) >= joints:
                raise ConfigError(f"mirror.pairs name joint {max(left, right)}, but the data has {joints} joints")
            perm[left], perm[right] = right, left
        return perm

    def draw(self, x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator | None = None) -> Params:
        return {"flip": _rand(gen, (x.shape[0],), x.device) < self.p}

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, params: Params) -> torch.Tensor:
        _need(x.shape[-1] > self.axis, f"mirror.axis {self.axis} needs that many coordinates", x.shape[-1])
        sign = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
        sign[self.axis] = -1
        mirrored = x[:, :, :, self.permutation(x.shape[3]).to(x.device)] * sign
        return torch.where(params["flip"].view(-1, 1, 1, 1, 1), mirrored, x)


def mirror_pairs(joint_names: Sequence[str]) -> list[tuple[int, int]]:
    """(left, right) index pairs of joints named ``<part>_left`` / ``<part>_right`` (any case)."""
    index = {name.lower(): i for i, name in enumerate(joint_names)}
    return [(i, index[name[:-5] + "_right"]) for name, i in index.items()
            if name.endswith("_left") and name[:-5] + "_right" in index]


@dataclass(frozen=True)
class Decimate(Augmentation):
    """A recording with fewer frames, resampled back to its length, with probability p.

    Not one of the paper's seven. Sequences resampled to T frames from a short recording are
    smoother than ones from a long recording: N-UCLA's v03 recordings (median 25 raw frames) are
    interpolated more than v01's (40), and their second differences are less than half as large.
    Each chosen sample's valid frames are sampled at n = max(2, round(f * length)) evenly spaced
    points, f ~ U[min_fraction, 1], and linearly interpolated back onto the same frames, as
    preprocessing does with a recording of n frames. Unlike ``crop`` nothing moves in time: the
    first and last frames are kept and every frame stays near its own time. A person absent in the
    nearer source frame stays absent. Params: ``apply`` (B,) bool; ``points`` (B,) float (n).
    It did not help the distilled N-UCLA student (docs/RESULTS.md, "Thirty-seventh round").
    """

    name: ClassVar[str] = "decimate"
    p: float = 0.5
    min_fraction: float = 0.4

    def __post_init__(self) -> None:
        _need(0 <= self.p <= 1, "decimate.p must be in [0, 1]", self.p)
        _need(0 < self.min_fraction <= 1, "decimate.min_fraction must be in (0, 1]", self.min_fraction)

    def draw(self, x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator | None = None) -> Params:
        b = x.shape[0]
        on = _rand(gen, (b,), x.device) < self.p
        n = lengths.to(torch.float32)
        points = (_uniform(gen, (b,), self.min_fraction, 1.0, x.device) * n).round().clamp(min=2)
        return {"apply": on, "points": torch.minimum(points, n.clamp(min=2))}

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, params: Params) -> torch.Tensor:
        t = x.shape[1]
        last = (lengths - 1).clamp(min=0).to(torch.float32)[:, None]  # (B, 1)
        gaps = (params["points"] - 1).clamp(min=1).to(torch.float32)[:, None]  # (B, 1) gaps of the coarse grid
        tt = torch.arange(t, device=x.device, dtype=torch.float32)[None, :]
        u = tt * gaps / last.clamp(min=1)  # position of each frame on the coarse grid
        k0 = u.floor().clamp(max=gaps - 1)
        w = (u - k0).clamp(0, 1)
        left, pres_l = lerp_frames(x, lengths, k0 * last / gaps)
        right, pres_r = lerp_frames(x, lengths, (k0 + 1) * last / gaps)
        wx = w.to(x.dtype)[:, :, None, None, None]
        out = (left + (right - left) * wx) * torch.where(wx >= 0.5, pres_r, pres_l).to(x.dtype)
        out = out * valid_mask(lengths, t)[:, :, None, None, None].to(x.dtype)
        return torch.where(params["apply"].view(-1, 1, 1, 1, 1), out, x)


@dataclass(frozen=True)
class Identity(Augmentation):
    """No augmentation: the baseline the paper compares against."""

    name: ClassVar[str] = "none"

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, params: Params) -> torch.Tensor:
        return x


AUGMENTATIONS: dict[str, type[Augmentation]] = {
    cls.name: cls for cls in (Rotate, Shear, Reverse, Noise, Blur, JointMask, ChannelMask, SwapPersons, Crop,
                               Mirror, Decimate, Identity)
}

# The paper's order of presentation (Fig. 2), used by plots and benchmarks.
ALL_SEVEN: tuple[str, ...] = ("rotate", "shear", "reverse", "noise", "blur", "joint_mask", "channel_mask")


@dataclass(frozen=True)
class Compose:
    """Apply augmentations in order, each with its own draws from the same generator."""

    ops: tuple[Augmentation, ...] = field(default_factory=tuple)

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor,
                 gen: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x, lengths, self.draw(x, lengths, gen))

    def draw(self, x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator | None = None) -> list[Params]:
        """Every op's parameters for a batch (B, T, M, V, C), in order. Draws depend on the batch's
        shape and lengths only (no op changes them), so the same parameters can be applied to another
        preprocessing of the same sequences (``distill.consistent``)."""
        _check(x, lengths)
        lengths = lengths.to(x.device)
        return [op.draw(x, lengths, gen) for op in self.ops]

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, params: Sequence[Params]) -> torch.Tensor:
        """Apply the ops with parameters from :meth:`draw` (one entry per op)."""
        _check(x, lengths)
        if len(params) != len(self.ops):
            raise ValueError(f"{len(self.ops)} augmentations, {len(params)} parameter sets")
        lengths = lengths.to(x.device)
        for op, p in zip(self.ops, params):
            x = op.apply(x, lengths, p)
        return x

    def __len__(self) -> int:
        return len(self.ops)

    @property
    def names(self) -> list[str]:
        return [op.name for op in self.ops]


def _make(name: Any, params: Any, where: str) -> Augmentation:
    if not isinstance(name, str) or name not in AUGMENTATIONS:
        raise ConfigError(f"{where}: unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}: parameters of {name!r} must be a mapping, got {params!r}")
    cls = AUGMENTATIONS[name]
    known = [f.name for f in fields(cls)]
    bad = sorted(set(params) - set(known))
    if bad:
        raise ConfigError(f"{where}: unknown parameter(s) {bad} for augmentation {name!r}; "
                          f"known: {', '.join(known) or 'none'}")
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: bad parameters for augmentation {name!r}: {exc}") from None


def build_augment(spec: str | Iterable[Any] | Compose | None,
                  joint_names: Sequence[str] | None = None) -> Compose:
    """Build a :class:`Compose` from a config spec.

    Args:
        spec: a list whose items are names (``"reverse"``), one-key mappings of a name to its
            parameters (``{"shear": {"amplitude": 0.5}}``) or augmentation objects; a single name;
            ``None`` or ``[]`` for no augmentation.
        joint_names: the data's joint names (its layout); a ``mirror`` without ``pairs`` takes its
            left/right pairs from them, and it is an error when they name none.

    Raises:
        ConfigError: an unknown name or parameter, naming the known ones.
    """
    if spec is None:
        return Compose(())
    if isinstance(spec, Compose):
        return spec
    if isinstance(spec, (str, Mapping, Augmentation)):
        spec = [spec]
    ops: list[Augmentation] = []
    for i, item in enumerate(spec):
        where = f"augment[{i}]"
        if isinstance(item, Augmentation):
            ops.append(item)
        elif isinstance(item, str):
            ops.append(_make(item, None, where))
        elif isinstance(item, Mapping) and len(item) == 1:
            (name, params), = item.items()
            ops.append(_make(name, params, where))
        else:
            raise ConfigError(f"{where}: expected an augmentation name or a one-key mapping "
                              f"{{name: {{param: value}}}}, got {item!r}; known names: {', '.join(AUGMENTATIONS)}")
    if joint_names is not None:
        ops = [_with_pairs(op, joint_names) if isinstance(op, Mirror) and not op.pairs else op for op in ops]
    return Compose(tuple(op for op in ops if not isinstance(op, Identity)))


def _with_pairs(op: Mirror, joint_names: Sequence[str]) -> Mirror:
    pairs = mirror_pairs(joint_names)
    if not pairs:
        raise ConfigError("augmentation mirror: this layout names no *_left / *_right joints; give the pairs "
                          "yourself, e.g. augment: [{mirror: {pairs: [[4, 8], [5, 9]]}}] (0-based joint indices)")
    return replace(op, pairs=tuple(pairs))
