"""Depth randomisation, sensor noise and "vanishing" masks for Vanishing Depth pretraining (METHOD §2.1-§2.4),
plus sensor-pattern simulators for evaluation.

Conventions shared by every function here:

* ``depth`` is a float tensor of shape ``(B, 1, H, W)`` in **metres**; ``0`` means "no measurement". Values are
  expected finite and ``>= 0`` (`vanishing_depth.processing.depth_io` produces such maps); the ops do not re-check this
  per call because that would cost a host sync on GPU.
* Everything is batched and runs on any device. Per-sample choices (branch, fraction, lattice size, ...) are tensors,
  not Python loops. The only loop over the batch is the exact k-th-value selection on CPU (`select_by_rank`).
* Randomness: every randomised op takes ``generator=`` (a ``torch.Generator``). **Random numbers are drawn on the
  generator's device and then moved to the depth's device**, so a CPU generator replays the same masks for CPU and
  GPU tensors, and a CUDA generator keeps everything on the GPU. ``generator=None`` uses torch's global RNG on the
  depth's device. Each op draws a fixed number of values per call (independent of which branches are taken), so one
  generator seeded once replays a whole pipeline.
* Nothing is dropped silently: counts of pixels set to 0 by a range rule are logged at DEBUG (they are part of the
  method), and `rescale_far_depth` returns its count.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = [
    "DepthNoise",
    "MaskingCurriculum",
    "PretrainingDepthTransform",
    "RandomDepth",
    "VanishingDepthMasker",
    "blocky_mask",
    "blocky_noise",
    "keep_fraction",
    "multiscale_targets",
    "perlin_mask",
    "perlin_noise",
    "pixel_mask",
    "rescale_far_depth",
    "sample_uniform_points",
    "select_by_rank",
    "simulate_edge_holes",
    "simulate_lidar_lines",
    "simulate_low_res_tof",
]

MASK_KINDS = ("perlin", "blocky", "pixel")
RANDOM_DEPTH_BRANCHES = ("offset", "range", "scale", "none")
FractionLike = float | Sequence[float] | torch.Tensor


# ----------------------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------------------


def _check_depth(depth: torch.Tensor, name: str = "depth") -> None:
    if not isinstance(depth, torch.Tensor):
        raise ValueError(
            f"`{name}` must be a torch.Tensor of shape (B, 1, H, W) in metres, got {type(depth).__name__}."
        )
    if depth.ndim != 4 or depth.shape[1] != 1 or not depth.is_floating_point():
        raise ValueError(
            f"`{name}` must be a float tensor of shape (B, 1, H, W) in metres (0 = missing), "
            f"got dtype {depth.dtype} and shape {tuple(depth.shape)}."
        )


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """U[0, 1) float32 drawn on the generator's device, returned on ``device``."""
    return torch.rand(shape, generator=generator, device=_draw_device(generator, device)).to(device)


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=_draw_device(generator, device)).to(device)


def _randint(
    high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=generator, device=_draw_device(generator, device)).to(device)


def _per_sample(value: FractionLike, batch_size: int, device: torch.device, name: str) -> torch.Tensor:
    """A scalar or (B,) fraction in [0, 1] as a (B,) float32 tensor."""
    tensor = torch.as_tensor(value, dtype=torch.float32, device=device)
    if tensor.ndim == 0:
        tensor = tensor.expand(batch_size)
    if tensor.shape != (batch_size,):
        raise ValueError(f"`{name}` must be a float or a ({batch_size},) tensor, got shape {tuple(tensor.shape)}.")
    if bool(((tensor < 0) | (tensor > 1) | tensor.isnan()).any()):
        raise ValueError(f"`{name}` must lie in [0, 1], got {tensor.tolist()}.")
    return tensor


def _valid_count(depth: torch.Tensor) -> torch.Tensor:
    return torch.count_nonzero(depth.flatten(1) > 0, dim=1)


def _log_dropped(what: str, dropped: torch.Tensor) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("%s: set %s pixel(s) per sample to 0.", what, dropped.tolist())


# ----------------------------------------------------------------------------------------------------------------------
# Exact selection of a fraction of the valid pixels
# ----------------------------------------------------------------------------------------------------------------------


def _select_top_k(
    scores: torch.Tensor, valid: torch.Tensor, k: torch.Tensor, method: str | None = None
) -> torch.Tensor:
    """Select, per row, the ``k[b]`` valid entries with the highest score; ties go to the lower index.

    Args:
        scores: (B, N) float scores.
        valid: (B, N) bool; only these can be selected.
        k: (B,) int64 counts, ``0 <= k[b] <= valid[b].sum()``.
        method: ``"sort"`` (one batched stable sort; used on GPU) or ``"kthvalue"`` (per-row quickselect, about 6x
            faster on CPU). Both select exactly the same pixels.

    Returns:
        (B, N) bool selection with exactly ``k[b]`` True entries per row.
    """
    batch_size, count = scores.shape
    masked = scores.float().masked_fill(~valid, float("-inf"))
    method = method or ("kthvalue" if scores.device.type == "cpu" else "sort")
    if method == "sort":
        order = torch.sort(masked, dim=1, descending=True, stable=True).indices
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(count, device=scores.device).expand(batch_size, count))
        return (ranks < k[:, None]) & valid
    if method != "kthvalue":
        raise ValueError(f"`method` must be 'sort' or 'kthvalue', got {method!r}.")
    selected = torch.zeros_like(valid)
    # Per-sample k differs, so the quantile is found per row (an O(N) quickselect, no full sort).
    for row, k_row in enumerate(k.tolist()):
        if k_row == 0:
            continue
        values = masked[row]
        threshold = torch.kthvalue(values, count - k_row + 1).values
        above = values > threshold
        selected[row] = above
        missing = k_row - int(above.sum())
        if missing > 0:  # ties at the threshold: take the first ones in raster order, like the stable sort
            ties = (values == threshold).nonzero().squeeze(1)[:missing]
            selected[row, ties] = True
    return selected & valid


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
    (METHOD §2.4). Unit gradients have uniform random angles; corners are blended with the quintic fade and lerp.
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
    """Uniform noise at a random low resolution, nearest-upsampled to (H, W) (METHOD §2.4 "blocky random").

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
    """Schedule of the masking amount ``t ~ N(mean, std)`` (METHOD §2.4).

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
    """The "vanishing depth" masking of METHOD §2.4.

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


def multiscale_targets(
    depth: torch.Tensor, removed_mask: torch.Tensor, num_scales: int = 4
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Nearest-downsample the target and the removed mask by 2, ``num_scales - 1`` times (METHOD §2.4).

    Nearest with factor 2 keeps every second pixel starting at 0 (``F.interpolate(scale_factor=0.5,
    mode="nearest")``): for an odd size the last row / column has no counterpart at the next scale.

    Args:
        depth: (B, 1, H, W) target metres.
        removed_mask: (B, 1, H, W) bool, True = removed.
        num_scales: number of levels, full resolution included.

    Returns:
        ``(targets, masks)``: lists of ``num_scales`` tensors (B, 1, H // 2**s, W // 2**s), full resolution first.
    """
    _check_depth(depth)
    if removed_mask.shape != depth.shape:
        raise ValueError(f"`removed_mask` {tuple(removed_mask.shape)} must match `depth` {tuple(depth.shape)}.")
    if num_scales < 1:
        raise ValueError(f"`num_scales` must be >= 1, got {num_scales}.")
    height, width = depth.shape[-2:]
    if min(height, width) >> (num_scales - 1) < 1:
        raise ValueError(f"a {height}x{width} map cannot be halved {num_scales - 1} times (`num_scales`={num_scales}).")
    targets, masks = [depth], [removed_mask]
    for _ in range(num_scales - 1):
        h, w = targets[-1].shape[-2] // 2, targets[-1].shape[-1] // 2
        targets.append(targets[-1][..., ::2, ::2][..., :h, :w])
        masks.append(masks[-1][..., ::2, ::2][..., :h, :w])
    return targets, masks


# ----------------------------------------------------------------------------------------------------------------------
# Depth2distance rescale, distribution randomisation, sensor noise
# ----------------------------------------------------------------------------------------------------------------------


def rescale_far_depth(
    depth: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    max_depth: float = 15.0,
    trigger_fraction: float = 0.95,
    target_range: tuple[float, float] = (0.9, 1.0),
    eval_fraction: float = 0.95,
    training: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 3 of METHOD §2.1 ("Depth2distance"): fit far scenes into the working range.

    Per sample, if ``max(depth) > trigger_fraction * max_depth`` the whole map is scaled so its max becomes
    ``max_depth * U(*target_range)`` (``max_depth * eval_fraction`` when ``training=False``); then any depth above
    ``max_depth`` is set to 0. With the defaults the second rule only guards against a user-supplied ``target_range``
    above 1.

    Returns:
        ``(depth, dropped)``: the (B, 1, H, W) map and (B,) int64 counts of pixels set to 0.
    """
    _check_depth(depth)
    batch_size = depth.shape[0]
    peak = depth.flatten(1).amax(1)
    if training:
        low, high = target_range
        target = max_depth * (low + (high - low) * _rand((batch_size,), generator, depth.device))
    else:
        target = torch.full((batch_size,), max_depth * eval_fraction, device=depth.device)
    far = peak > trigger_fraction * max_depth
    scale = torch.where(far, target / peak.clamp(min=1e-12), torch.ones_like(peak))
    scaled = depth * scale[:, None, None, None]
    beyond = scaled > max_depth
    dropped = torch.count_nonzero(beyond.flatten(1), dim=1)
    _log_dropped("rescale_far_depth", dropped)
    return scaled.masked_fill(beyond, 0.0), dropped


@dataclass
class RandomDepth:
    """Depth-distribution randomisation (METHOD §2.2), one branch per sample.

    Branches (probabilities ``p_offset``, ``p_range``, ``p_scale``, the rest unchanged; 0.25 each by default):

    * **offset**: add ``std(valid) * U(-offset_jitter, offset_jitter)``; if the minimum falls below ``min_depth``,
      shift the map so its minimum is ``min_depth``.
    * **range**: pick one of the non-empty ``range_bins`` (plus the far bin ``[far_bin_start, far_bin_max_fraction *
      max_depth]``, which is empty and dropped for ``max_depth=15``), draw ``a < b`` in it, multiply each by a
      **symmetric** jitter ``U(1 - range_jitter, 1 + range_jitter)`` = [0.9, 1.1], clip to ``[min_depth, max_depth]``
      and min-max map the valid depths linearly onto ``[a, b]``.
    * **scale**: multiply by a **symmetric** ``U(1 - scale_jitter, 1 + scale_jitter)`` = [0.8, 1.2].

    The jitters are symmetric by choice (METHOD §5 #16): the official expression ``1 + U * (2j - j)`` only yields
    ``[1, 1 + j]``, which looks like a bug against the evident ±j intent. Finally depths outside ``[min_depth,
    max_depth]`` become 0; missing pixels stay missing.
    """

    min_depth: float = 0.05
    max_depth: float = 15.0
    p_offset: float = 0.25
    p_range: float = 0.25
    p_scale: float = 0.25
    offset_jitter: float = 1.0
    scale_jitter: float = 0.2
    range_jitter: float = 0.1
    range_bins: tuple[tuple[float, float], ...] = ((0.055, 0.955), (0.5, 2.1), (0.5, 5.0), (1.0, 15.0))
    far_bin_start: float = 50.0
    far_bin_max_fraction: float = 0.75

    def __post_init__(self) -> None:
        probabilities = (self.p_offset, self.p_range, self.p_scale)
        if min(probabilities) < 0 or sum(probabilities) > 1.0 + 1e-9:
            raise ValueError(f"`p_offset`, `p_range`, `p_scale` must be >= 0 and sum to <= 1, got {probabilities}.")
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(f"need 0 < `min_depth` < `max_depth`, got {self.min_depth} and {self.max_depth}.")

    def active_bins(self) -> list[tuple[float, float]]:
        """The range bins actually drawn from: the fixed bins plus the far bin when it is not empty."""
        bins = [(float(low), float(high)) for low, high in self.range_bins if high > low]
        far_high = self.far_bin_max_fraction * self.max_depth
        if far_high > self.far_bin_start:
            bins.append((self.far_bin_start, far_high))
        if not bins:
            raise ValueError(f"`range_bins` has no non-empty bin: {self.range_bins}.")
        return bins

    def __call__(
        self, depth: torch.Tensor, *, generator: torch.Generator | None = None, branch: str | None = None
    ) -> torch.Tensor:
        """Randomise a batch.

        Args:
            depth: (B, 1, H, W) metres, 0 = missing.
            generator: see the module docstring (8 uniforms per sample are drawn on every call).
            branch: force ``"offset"``, ``"range"``, ``"scale"`` or ``"none"`` for every sample.

        Returns:
            (B, 1, H, W) metres in ``[min_depth, max_depth]`` or 0.
        """
        _check_depth(depth)
        if branch is not None and branch not in RANDOM_DEPTH_BRANCHES:
            raise ValueError(f"`branch` must be one of {RANDOM_DEPTH_BRANCHES} or None, got {branch!r}.")
        batch_size = depth.shape[0]
        device = depth.device
        flat = depth.flatten(1)
        valid = flat > 0
        count = torch.count_nonzero(valid, dim=1)
        has_valid = count > 0
        n = count.clamp(min=1).float()
        u = _rand((batch_size, 8), generator, device)

        if branch is None:
            cumulative = [self.p_offset, self.p_offset + self.p_range, self.p_offset + self.p_range + self.p_scale]
            branch_id = (u[:, :1] >= torch.tensor(cumulative, device=device)).sum(1)  # 0 offset .. 3 unchanged
        else:
            branch_id = torch.full((batch_size,), RANDOM_DEPTH_BRANCHES.index(branch), device=device)

        # Every branch is an affine map per sample, out = alpha * depth + beta, so the map is touched once.
        mean = flat.sum(1) / n  # missing pixels are 0 and add nothing
        std = (flat.square().sum(1) / n - mean.square()).clamp(min=0).sqrt()
        low = torch.where(has_valid, flat.masked_fill(~valid, float("inf")).amin(1), torch.zeros_like(mean))
        high = flat.amax(1)

        # offset: shift, then lift the map so its minimum stays at min_depth
        offset = std * self.offset_jitter * (2.0 * u[:, 1] - 1.0)
        offset = offset + (self.min_depth - (low + offset)).clamp(min=0)

        # range: a < b from a random bin, symmetric jitter, clip, then min-max remap of [low, high] onto [a, b]
        bins = torch.tensor(self.active_bins(), device=device)
        chosen = bins[(u[:, 2] * len(bins)).long().clamp(max=len(bins) - 1)]
        draw_a = chosen[:, 0] + (chosen[:, 1] - chosen[:, 0]) * u[:, 3]
        draw_b = chosen[:, 0] + (chosen[:, 1] - chosen[:, 0]) * u[:, 4]
        jitter_a = 1.0 + self.range_jitter * (2.0 * u[:, 5] - 1.0)
        jitter_b = 1.0 + self.range_jitter * (2.0 * u[:, 6] - 1.0)
        a = (torch.minimum(draw_a, draw_b) * jitter_a).clamp(self.min_depth, self.max_depth)
        b = (torch.maximum(draw_a, draw_b) * jitter_b).clamp(self.min_depth, self.max_depth)
        a, b = torch.minimum(a, b), torch.maximum(a, b)
        range_alpha = (b - a) / (high - low).clamp(min=1e-12)  # a constant map goes to a
        range_beta = a - low * range_alpha

        scale = 1.0 + self.scale_jitter * (2.0 * u[:, 7] - 1.0)

        one, zero = torch.ones_like(mean), torch.zeros_like(mean)
        alpha = torch.stack([one, range_alpha, scale, one], 1).gather(1, branch_id[:, None])
        beta = torch.stack([offset, range_beta, zero, zero], 1).gather(1, branch_id[:, None])
        out = torch.addcmul(beta, flat, alpha)
        keep = valid & (out >= self.min_depth) & (out <= self.max_depth)
        if logger.isEnabledFor(logging.DEBUG):
            _log_dropped("RandomDepth", torch.count_nonzero(valid & ~keep, dim=1))
        return torch.where(keep, out, 0.0).view_as(depth)


@dataclass
class DepthNoise:
    """Sensor-noise simulation for the network input only (METHOD §2.3).

    Uniform noise in ``±amplitude`` (3 mm) on valid pixels; with probability ``p_chaos`` per sample, ``chaos_fraction``
    (1e-4) of all pixels get random values, drawn (one choice per sample, 50/50) as ``U * chaos_max_depth`` (14.25 m)
    or ``U * chaos_max_factor * max(depth)`` (1.5 x max); positions are uniform with replacement. Then values below
    ``min_depth`` become 0 and values above ``max_depth`` (14.25 m) are clamped to it, as in the method.
    """

    amplitude: float = 0.003
    p_chaos: float = 0.5
    chaos_fraction: float = 1e-4
    chaos_max_depth: float = 14.25
    chaos_max_factor: float = 1.5
    min_depth: float = 0.05
    max_depth: float = 14.25

    def __call__(
        self, depth: torch.Tensor, *, generator: torch.Generator | None = None, chaos: bool | None = None
    ) -> torch.Tensor:
        """Add noise to a batch (out of place).

        Args:
            depth: (B, 1, H, W) metres, 0 = missing.
            chaos: force chaos on (True) or off (False) for every sample; None draws it with ``p_chaos``.

        Returns:
            (B, 1, H, W) noisy metres.
        """
        _check_depth(depth)
        batch_size, _, height, width = depth.shape
        device = depth.device
        flat = depth.flatten(1)
        valid = flat > 0
        noise = _rand(tuple(flat.shape), generator, device).mul_(2.0 * self.amplitude).sub_(self.amplitude)
        out = torch.where(valid, flat + noise, flat)

        count = int(round(self.chaos_fraction * height * width))
        u = _rand((batch_size, 2), generator, device)
        positions = _randint(height * width, (batch_size, count), generator, device)
        values = _rand((batch_size, count), generator, device)
        if count > 0:
            on = u[:, 0] < self.p_chaos if chaos is None else torch.full((batch_size,), bool(chaos), device=device)
            ceiling = torch.where(
                u[:, 1] < 0.5, torch.full_like(u[:, 1], self.chaos_max_depth), self.chaos_max_factor * flat.amax(1)
            )
            values = torch.where(on[:, None], values * ceiling[:, None], out.gather(1, positions))
            out = out.scatter(1, positions, values)

        too_close = out < self.min_depth  # all values are >= 0 here, so this also keeps missing pixels at 0
        if logger.isEnabledFor(logging.DEBUG):
            _log_dropped("DepthNoise", torch.count_nonzero(too_close & (out > 0), dim=1))
        return out.masked_fill_(too_close, 0.0).clamp_(max=self.max_depth).view_as(depth)


@dataclass
class PretrainingDepthTransform:
    """Batched depth side of the pretraining pipeline (METHOD §2.1 steps 3-7), usable after collation on any device.

    ``rescale_far_depth`` -> `RandomDepth` -> target copy -> `DepthNoise` -> `VanishingDepthMasker` (amount from the
    `MaskingCurriculum` at ``epoch`` unless ``fraction`` is given). With ``training=False`` the rescale uses its fixed
    eval factor and the randomisation and noise are skipped (validation masks clean depth).
    """

    max_depth: float = 15.0
    random_depth: RandomDepth = field(default_factory=RandomDepth)
    noise: DepthNoise = field(default_factory=DepthNoise)
    masker: VanishingDepthMasker = field(default_factory=VanishingDepthMasker)
    curriculum: MaskingCurriculum = field(default_factory=MaskingCurriculum)

    def __call__(
        self,
        depth: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        epoch: float = 0.0,
        fraction: FractionLike | None = None,
        training: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Transform a batch of (B, 1, H, W) metric depth.

        Returns:
            dict with ``"depth_values"`` (B, 1, H, W) masked noisy input, ``"target_depth"`` (B, 1, H, W) clean
            randomised target, ``"removed_mask"`` (B, 1, H, W) bool (True = removed), ``"removed_fraction"`` (B,) the
            removed share of the input's valid pixels.
        """
        _check_depth(depth)
        depth, _ = rescale_far_depth(depth, generator=generator, max_depth=self.max_depth, training=training)
        if training:
            depth = self.random_depth(depth, generator=generator)
        target = depth
        noisy = self.noise(depth, generator=generator) if training else depth
        mean, std = self.curriculum(epoch)
        masked, removed, _ = self.masker(noisy, fraction=fraction, mean=mean, std=std, generator=generator)
        removed_fraction = torch.count_nonzero(removed.flatten(1), dim=1) / _valid_count(noisy).clamp(min=1)
        return {
            "depth_values": masked,
            "target_depth": target,
            "removed_mask": removed,
            "removed_fraction": removed_fraction.float(),
        }


# ----------------------------------------------------------------------------------------------------------------------
# Sensor-pattern simulators for evaluation
# ----------------------------------------------------------------------------------------------------------------------


def _keep_top_k(depth: torch.Tensor, k: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    valid = (depth > 0).flatten(1)
    scores = _rand(tuple(valid.shape), generator, depth.device)
    keep = _select_top_k(scores, valid, k).view_as(depth)
    return torch.where(keep, depth, torch.zeros_like(depth))


def sample_uniform_points(
    depth: torch.Tensor, num_points: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Keep ``num_points`` valid pixels per sample, uniformly at random (VOID-like 150 / 500 / 1500 points).

    A sample with fewer valid pixels keeps all of them, with a warning naming the samples.

    Returns:
        (B, 1, H, W) sparse metres with exactly ``min(num_points, n_valid)`` non-zero pixels per sample.
    """
    _check_depth(depth)
    if num_points < 0:
        raise ValueError(f"`num_points` must be >= 0, got {num_points}.")
    n_valid = _valid_count(depth)
    short = (n_valid < num_points).nonzero().squeeze(1).tolist()
    if short:
        warnings.warn(
            f"sample_uniform_points: sample(s) {short} have fewer than {num_points} valid pixels "
            f"({n_valid[short].tolist()}); keeping all of them.",
            RuntimeWarning,
            stacklevel=2,
        )
    return _keep_top_k(depth, n_valid.clamp(max=num_points), generator)


def keep_fraction(
    depth: torch.Tensor, fraction: FractionLike, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Keep exactly ``round(fraction * n_valid)`` valid pixels per sample, uniformly (density sweeps).

    Args:
        fraction: scalar or (B,) kept share in [0, 1].

    Returns:
        (B, 1, H, W) sparse metres.
    """
    _check_depth(depth)
    n_valid = _valid_count(depth)
    fraction = _per_sample(fraction, depth.shape[0], depth.device, "fraction")
    return _keep_top_k(depth, torch.minimum(torch.round(fraction * n_valid).long(), n_valid), generator)


def simulate_lidar_lines(
    depth: torch.Tensor, num_lines: int, *, generator: torch.Generator | None = None, max_offset: int | None = None
) -> torch.Tensor:
    """Keep ``num_lines`` evenly spaced horizontal scan lines, like a spinning LiDAR projected into the image.

    Line i sits at row ``floor((i + 0.5) * H / num_lines)`` plus one random integer offset per sample in
    ``[-max_offset, max_offset]`` (default: a quarter of the line spacing, limited so every line stays inside).

    Returns:
        (B, 1, H, W) metres that are non-zero only on the ``num_lines`` rows of each sample.
    """
    _check_depth(depth)
    batch_size, _, height, _ = depth.shape
    if not 1 <= num_lines <= height:
        raise ValueError(f"`num_lines` must be in [1, {height}] for a map of height {height}, got {num_lines}.")
    centres = ((torch.arange(num_lines, device=depth.device) * 2 + 1) * height) // (2 * num_lines)
    room = min(int(centres[0]), height - 1 - int(centres[-1]))
    if max_offset is None:
        max_offset = min(room, height // (4 * num_lines))
    if not 0 <= max_offset <= room:
        raise ValueError(f"`max_offset` must be in [0, {room}] so {num_lines} lines stay inside, got {max_offset}.")
    offset = _randint(2 * max_offset + 1, (batch_size,), generator, depth.device) - max_offset
    rows = centres[None] + offset[:, None]
    on_line = torch.zeros(batch_size, height, dtype=torch.bool, device=depth.device)
    on_line.scatter_(1, rows, True)
    return torch.where(on_line[:, None, :, None], depth, torch.zeros_like(depth))


def simulate_low_res_tof(
    depth: torch.Tensor, size: tuple[int, int] = (192, 256), *, return_low_res: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Simulate a low-resolution ToF sensor (ARKit LiDAR: 256x192) at full image size. Deterministic.

    The map is nearest-downsampled to ``size`` = (H, W) and nearest-upsampled back (``mode="nearest-exact"``, i.e.
    the sample nearest each cell centre). Missing pixels are never averaged in: a cell whose nearest sample is
    missing stays 0.

    Returns:
        (B, 1, H, W) metres carrying only ``size`` worth of information; with ``return_low_res`` also the
        (B, 1, *size) low-resolution map.
    """
    _check_depth(depth)
    height, width = depth.shape[-2:]
    if len(size) != 2 or not (1 <= size[0] <= height and 1 <= size[1] <= width):
        raise ValueError(f"`size` must be (h, w) with 1 <= h <= {height} and 1 <= w <= {width}, got {tuple(size)}.")
    low = F.interpolate(depth, size=tuple(size), mode="nearest-exact")
    full = F.interpolate(low, size=(height, width), mode="nearest-exact")
    return (full, low) if return_low_res else full


def simulate_edge_holes(depth: torch.Tensor, *, relative_jump: float = 0.05, dilation: int = 2) -> torch.Tensor:
    """Remove pixels along depth discontinuities, like structured-light sensors (Kinect v1) do. Deterministic.

    A valid pixel is an edge when, for a valid 4-neighbour n, ``|d - d_n| / min(d, d_n) > relative_jump``. A slanted
    floor changes by ~1 % per pixel at 640x480, a step between objects by far more, so 5 % separates the two. Edges
    are dilated by ``dilation`` pixels (square) and set to 0.

    Returns:
        (B, 1, H, W) metres with holes along edges; pixels that were valid elsewhere are unchanged.
    """
    _check_depth(depth)
    if relative_jump <= 0 or dilation < 0:
        raise ValueError(f"need `relative_jump` > 0 and `dilation` >= 0, got {relative_jump} and {dilation}.")
    valid = depth > 0
    edge = torch.zeros_like(valid)
    for dim in (-2, -1):
        ahead, behind = depth.narrow(dim, 1, depth.shape[dim] - 1), depth.narrow(dim, 0, depth.shape[dim] - 1)
        both = (ahead > 0) & (behind > 0)
        jump = both & ((ahead - behind).abs() > relative_jump * torch.minimum(ahead, behind))
        edge.narrow(dim, 1, depth.shape[dim] - 1).logical_or_(jump)
        edge.narrow(dim, 0, depth.shape[dim] - 1).logical_or_(jump)
    if dilation > 0:
        edge = F.max_pool2d(edge.float(), kernel_size=2 * dilation + 1, stride=1, padding=dilation) > 0
    return torch.where(edge, torch.zeros_like(depth), depth)
