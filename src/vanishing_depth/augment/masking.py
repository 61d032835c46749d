# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""The "vanishing" depth masks of pretraining: Perlin, blocky and per-pixel masks, their masking amount and its
curriculum (Vanishing Depth, arXiv 2503.19947: Perlin vs random masks, Fig. 1; authors' datasets/transforms.py,
VanishingDepth, and utils/perlin_noise.py).

Batched torch on any device, replayable through a ``torch.Generator`` (conventions: `vanishing_depth.augment._common`).
Masks are True where a pixel is removed; exactly ``round(fraction * n_valid)`` valid pixels per sample are removed
(rank selection, `select_by_rank`), never a missing one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ._common import FractionLike, _check_depth, _per_sample, _rand, _randint, _randn, _select_top_k

logger = logging.getLogger(__name__)

__all__ = [
    "MASK_KINDS",
    "MaskingCurriculum",
    "VanishingDepthMasker",
    "blocky_mask",
    "blocky_noise",
    "perlin_mask",
    "perlin_noise",
    "pixel_mask",
    "select_by_rank",
]

MASK_KINDS = ("perlin", "blocky", "pixel")


# ----------------------------------------------------------------------------------------------------------------------
# Exact selection of a fraction of the valid pixels
# ----------------------------------------------------------------------------------------------------------------------


def select_by_rank(
    scores: torch.Tensor, valid: torch.Tensor, fraction: FractionLike, *, method: str | None = None
) -> torch.Tensor:
    """Select exactly ``round(fraction * n_valid)`` valid pixels per sample: those with the highest ``scores``.

    Rank-based, not a float threshold, so ties (e.g. the flat blocks of `blocky_noise`) cannot change the count.

    Args:
        scores: (B, ...) float scores, e.g. (B, 1, H, W) noise.
        valid: bool tensor of the same shape; invalid pixels are never selected.
        fraction: scalar or (B,) in [0, 1].
        method: ``None`` picks ``"kthvalue"`` on CPU and ``"sort"`` elsewhere; both give identical selections.

    Returns:
        bool tensor shaped like ``scores``.
    """
    if scores.shape != valid.shape:
        raise ValueError(f"`scores` {tuple(scores.shape)} and `valid` {tuple(valid.shape)} must have the same shape.")
    batch_size = scores.shape[0]
    valid_flat = valid.reshape(batch_size, -1)
    n_valid = torch.count_nonzero(valid_flat, dim=1)
    fraction = _per_sample(fraction, batch_size, scores.device, "fraction")
    k = torch.minimum(torch.round(fraction * n_valid).long(), n_valid)
    return _select_top_k(scores.reshape(batch_size, -1), valid_flat, k, method).view(scores.shape)


# ----------------------------------------------------------------------------------------------------------------------
# Noise fields
# ----------------------------------------------------------------------------------------------------------------------


def _fade(t: torch.Tensor) -> torch.Tensor:
    """Perlin's quintic fade 6t^5 - 15t^4 + 10t^3 (zero first and second derivative at the lattice)."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _axis_weights(resolution: torch.Tensor, size: int, lattice: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-axis interpolation weights of gradient noise, as (B, size, lattice) matrices.

    Along one axis, pixel p lies in cell ``c`` at fraction ``f``; its two lattice neighbours ``c`` and ``c + 1`` get
    the fade weights ``1 - fade(f)`` and ``fade(f)`` (``plain``), and the same weights times the signed offsets ``f``
    and ``f - 1`` (``signed``). Samples are taken at pixel centres, so no pixel sits exactly on a lattice point
    (where gradient noise is always 0).
    """
    batch_size = resolution.shape[0]
    position = (torch.arange(size, device=resolution.device, dtype=torch.float32) + 0.5)[None]
    position = position * (resolution[:, None].float() / size)
    cell = position.floor()
    frac = position - cell
    cell = cell.long()[..., None]
    upper = _fade(frac)
    lower = 1.0 - upper
    plain = torch.zeros(batch_size, size, lattice, device=resolution.device)
    signed = torch.zeros_like(plain)
    plain.scatter_(2, cell, lower[..., None]).scatter_(2, cell + 1, upper[..., None])
    signed.scatter_(2, cell, (lower * frac)[..., None]).scatter_(2, cell + 1, (upper * (frac - 1.0))[..., None])
    return plain, signed


def _perlin_layer(resolution: torch.Tensor, height: int, width: int, angles: torch.Tensor) -> torch.Tensor:
    """One layer of 2-D gradient (Perlin) noise with a per-sample lattice.

    The noise at a pixel is the fade-weighted blend of the four corner terms ``g_corner . (pixel - corner)``. Each
    term factorises into a row weight times a column weight times a lattice value, so the whole field is two batched
    matrix products per gradient component (``rows @ G @ cols^T``) instead of eight per-pixel gathers: the same
    numbers, about 10x faster on CPU.

    Args:
        resolution: (B, 2) int64 cells along (H, W) per sample.
        angles: (B, L, L) gradient angles on a lattice at least ``resolution + 1`` points wide.

    Returns:
        (B, H, W) float32 noise in about [-1, 1].
    """
    lattice = angles.shape[-1]
    rows_plain, rows_signed = _axis_weights(resolution[:, 0], height, lattice)
    cols_plain, cols_signed = _axis_weights(resolution[:, 1], width, lattice)
    # gradient . offset = g_y * (y offset) + g_x * (x offset)
    noise = rows_signed @ torch.sin(angles) @ cols_plain.transpose(1, 2)
    noise = noise + rows_plain @ torch.cos(angles) @ cols_signed.transpose(1, 2)
    return noise * math.sqrt(2.0)


def perlin_noise(
    batch_size: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator | None = None,
    resolutions: Sequence[int] = (2, 4, 8, 16),
    octaves: int = 1,
    persistence: float = 0.5,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Batched 2-D Perlin (gradient) noise with a random lattice per sample.

    Per sample, the lattice has ``(r1, r2)`` cells along (H, W), each drawn independently from ``resolutions``
    (authors' utils/perlin_noise.py). Unit gradients have uniform random angles; corners are blended with the quintic
    fade and lerp.
    ``octaves > 1`` adds layers at 2x, 4x, ... the resolution with amplitude ``persistence ** octave``.

    Returns:
        (B, H, W) float32 noise, roughly in [-1, 1], on ``device`` (default CPU).
    """
    if octaves < 1 or not resolutions or min(resolutions) < 1:
        raise ValueError(f"need octaves >= 1 and resolutions >= 1, got octaves={octaves}, resolutions={resolutions}.")
    device = torch.device(device) if device is not None else torch.device("cpu")
    choices = torch.as_tensor(list(resolutions), dtype=torch.long, device=device)
    resolution = choices[_randint(len(resolutions), (batch_size, 2), generator, device)]
    noise = torch.zeros(batch_size, height, width, device=device)
    for octave in range(octaves):
        lattice = max(resolutions) * 2**octave + 1
        angles = _rand((batch_size, lattice, lattice), generator, device) * (2.0 * math.pi)
        noise += persistence**octave * _perlin_layer(resolution * 2**octave, height, width, angles)
    return noise


def _blocky_size_bounds(size: int, max_fraction: float, min_size: int) -> tuple[int, int]:
    low = min(min_size, size)  # an image smaller than min_size gets per-pixel blocks
    return low, max(low, int(max_fraction * size))


def blocky_noise(
    batch_size: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator | None = None,
    max_fraction: float = 0.75,
    min_size: int = 10,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Uniform noise at a random low resolution, nearest-upsampled to (H, W): the "blocky random" mask of the
    authors' datasets/transforms.py, VanishingDepth.

    Per sample the low resolution is ``(U * max_fraction * H, U * max_fraction * W)`` with independent U, clamped to
    ``[min(min_size, H), max(that, int(max_fraction * H))]`` (same for W), so tiny images still get a valid size.
    Upsampling follows ``F.interpolate(mode="nearest")``: pixel y reads low-res row ``floor(y * h / H)``.

    Returns:
        (B, H, W) float32 noise in [0, 1), piecewise constant over blocks.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    low_h, high_h = _blocky_size_bounds(height, max_fraction, min_size)
    low_w, high_w = _blocky_size_bounds(width, max_fraction, min_size)
    u = _rand((batch_size, 2), generator, device)
    size_h = (u[:, 0] * (max_fraction * height)).long().clamp(low_h, high_h)
    size_w = (u[:, 1] * (max_fraction * width)).long().clamp(low_w, high_w)
    cells = _rand((batch_size, high_h, high_w), generator, device)
    row = (torch.arange(height, device=device)[None] * size_h[:, None]) // height
    col = (torch.arange(width, device=device)[None] * size_w[:, None]) // width
    index = (row * high_w)[:, :, None] + col[:, None, :]
    return cells.reshape(batch_size, -1).gather(1, index.reshape(batch_size, -1)).view(batch_size, height, width)


# ----------------------------------------------------------------------------------------------------------------------
# Masks (True = removed)
# ----------------------------------------------------------------------------------------------------------------------


def _mask_from_scores(depth: torch.Tensor, scores: torch.Tensor, fraction: FractionLike) -> torch.Tensor:
    return select_by_rank(scores.unsqueeze(1), depth > 0, fraction)


def perlin_mask(
    depth: torch.Tensor,
    fraction: FractionLike,
    *,
    generator: torch.Generator | None = None,
    resolutions: Sequence[int] = (2, 4, 8, 16),
    octaves: int = 1,
) -> torch.Tensor:
    """Spatially coherent mask: the ``fraction`` of valid pixels with the highest Perlin noise.

    Args:
        depth: (B, 1, H, W) metres, 0 = missing.
        fraction: scalar or (B,) share of the valid pixels to remove, in [0, 1].

    Returns:
        (B, 1, H, W) bool, True = removed; exactly ``round(fraction * n_valid)`` per sample, never a missing pixel.
    """
    _check_depth(depth)
    batch_size, _, height, width = depth.shape
    noise = perlin_noise(
        batch_size, height, width, generator=generator, resolutions=resolutions, octaves=octaves, device=depth.device
    )
    return _mask_from_scores(depth, noise, fraction)


def blocky_mask(
    depth: torch.Tensor,
    fraction: FractionLike,
    *,
    generator: torch.Generator | None = None,
    max_fraction: float = 0.75,
    min_size: int = 10,
) -> torch.Tensor:
    """Blocky random mask (see `blocky_noise`); same contract as `perlin_mask`."""
    _check_depth(depth)
    batch_size, _, height, width = depth.shape
    noise = blocky_noise(
        batch_size,
        height,
        width,
        generator=generator,
        max_fraction=max_fraction,
        min_size=min_size,
        device=depth.device,
    )
    return _mask_from_scores(depth, noise, fraction)


def pixel_mask(
    depth: torch.Tensor, fraction: FractionLike, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-pixel i.i.d. mask (exactly ``fraction`` of the valid pixels, uniformly); same contract as `perlin_mask`."""
    _check_depth(depth)
    batch_size, _, height, width = depth.shape
    return _mask_from_scores(depth, _rand((batch_size, height, width), generator, depth.device), fraction)


@dataclass
class MaskingCurriculum:
    """Schedule of the masking amount ``t ~ N(mean, std)`` (the curriculum options of the authors' main.py).

    Constant ``(mean_start, std_start)`` during ``warmup_epochs``, then linear to ``(mean_end, std_end)`` over
    ``ramp_epochs``, then constant. Official names: ``gaussian_mean``, ``max_gaussian_mean``, ``gaussian_std``,
    ``max_gaussian_std``, ``warmup_epochs``, ``max_gaussian_epoch``.
    """

    mean_start: float = 0.3
    mean_end: float = 0.5
    std_start: float = 0.1
    std_end: float = 0.3
    warmup_epochs: float = 10.0
    ramp_epochs: float = 10.0

    def __post_init__(self) -> None:
        if self.warmup_epochs < 0 or self.ramp_epochs < 0:
            raise ValueError(
                f"`warmup_epochs` and `ramp_epochs` must be >= 0, got {self.warmup_epochs} and {self.ramp_epochs}."
            )
        if min(self.std_start, self.std_end) < 0:
            raise ValueError(f"`std_start` / `std_end` must be >= 0, got {self.std_start} / {self.std_end}.")

    def __call__(self, epoch: float) -> tuple[float, float]:
        """(mean, std) of the removed fraction at a (fractional) epoch."""
        if epoch < 0:
            raise ValueError(f"`epoch` must be >= 0, got {epoch}.")
        if self.ramp_epochs == 0:
            progress = 1.0 if epoch >= self.warmup_epochs else 0.0
        else:
            progress = min(max((epoch - self.warmup_epochs) / self.ramp_epochs, 0.0), 1.0)
        mean = self.mean_start + progress * (self.mean_end - self.mean_start)
        std = self.std_start + progress * (self.std_end - self.std_start)
        return mean, std


@dataclass
class VanishingDepthMasker:
    """The "vanishing depth" masking (authors' datasets/transforms.py, VanishingDepth).

    Per sample, the removed fraction ``t ~ N(mean, std)`` is clipped to ``[min_fraction, max_fraction]`` (the method's
    [0.10, 0.99]) and the mask kind is i.i.d. pixels with ``p_pixel``, else Perlin with ``p_perlin``, else blocky.
    Exactly ``round(t * n_valid)`` valid pixels are removed (rank selection), never a missing one. The validation mix
    of the method (i.i.d. 50 %, Perlin 25 %, blocky 25 % at fixed t) is ``p_pixel=0.5, p_perlin=0.5`` with
    ``fraction=t``.
    """

    p_perlin: float = 0.5
    p_pixel: float = 0.0
    mean: float = 0.3
    std: float = 0.1
    min_fraction: float = 0.10
    max_fraction: float = 0.99
    perlin_resolutions: tuple[int, ...] = (2, 4, 8, 16)
    perlin_octaves: int = 1
    blocky_max_fraction: float = 0.75
    blocky_min_size: int = 10

    def __post_init__(self) -> None:
        for name in ("p_perlin", "p_pixel", "min_fraction", "max_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` must lie in [0, 1], got {value}.")
        if self.min_fraction > self.max_fraction:
            raise ValueError(f"`min_fraction` {self.min_fraction} must be <= `max_fraction` {self.max_fraction}.")

    def sample_fraction(
        self,
        batch_size: int,
        *,
        mean: float | None = None,
        std: float | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """(B,) removed fractions ``t ~ N(mean, std)`` clipped to ``[min_fraction, max_fraction]``."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        mean = self.mean if mean is None else mean
        std = self.std if std is None else std
        t = mean + std * _randn((batch_size,), generator, device)
        return t.clamp(self.min_fraction, self.max_fraction)

    def __call__(
        self,
        depth: torch.Tensor,
        *,
        fraction: FractionLike | None = None,
        mean: float | None = None,
        std: float | None = None,
        kind: str | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask a batch.

        Args:
            depth: (B, 1, H, W) metres, 0 = missing.
            fraction: fixed removed fraction(s), scalar or (B,); when given, ``mean`` / ``std`` are ignored and no
                clipping is applied (validation uses t in {0.1, ..., 0.9}).
            mean, std: override the masker's normal distribution (e.g. from a `MaskingCurriculum`).
            kind: force one of ``"perlin"``, ``"blocky"``, ``"pixel"`` for every sample.
            generator: see the module docstring.

        Returns:
            ``(masked_depth, removed_mask, t)``: the input with removed pixels set to 0 (B, 1, H, W), the bool mask
            (True = removed, only on valid pixels) and the (B,) target fractions.
        """
        _check_depth(depth)
        batch_size, _, height, width = depth.shape
        device = depth.device
        if fraction is None:
            t = self.sample_fraction(batch_size, mean=mean, std=std, generator=generator, device=device)
        else:
            t = _per_sample(fraction, batch_size, device, "fraction")
        if kind is not None:
            if kind not in MASK_KINDS:
                raise ValueError(f"`kind` must be one of {MASK_KINDS} or None, got {kind!r}.")
            kinds = torch.full((batch_size,), MASK_KINDS.index(kind), device=device)
        else:
            u = _rand((batch_size,), generator, device)
            p_perlin = (1.0 - self.p_pixel) * self.p_perlin
            kinds = torch.where(u < self.p_pixel, 2, torch.where(u < self.p_pixel + p_perlin, 0, 1))
        # Each kind that can occur is computed for the whole batch (a fixed number of random draws, no host sync).
        if kind is not None:
            possible = [kind]
        else:
            chances = ((1.0 - self.p_pixel) * self.p_perlin, (1.0 - self.p_pixel) * (1.0 - self.p_perlin), self.p_pixel)
            possible = [name for name, chance in zip(MASK_KINDS, chances) if chance > 0]
        scores = torch.zeros(batch_size, height, width, device=device)
        for name in possible:
            if name == "perlin":
                noise = perlin_noise(
                    batch_size,
                    height,
                    width,
                    generator=generator,
                    resolutions=self.perlin_resolutions,
                    octaves=self.perlin_octaves,
                    device=device,
                )
            elif name == "blocky":
                noise = blocky_noise(
                    batch_size,
                    height,
                    width,
                    generator=generator,
                    max_fraction=self.blocky_max_fraction,
                    min_size=self.blocky_min_size,
                    device=device,
                )
            else:
                noise = _rand((batch_size, height, width), generator, device)
            scores = torch.where((kinds == MASK_KINDS.index(name))[:, None, None], noise, scores)
        removed = _mask_from_scores(depth, scores, t)
        return depth.masked_fill(removed, 0.0), removed, t
