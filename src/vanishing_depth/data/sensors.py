# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""What a depth sensor would measure of a dense ground truth: the input patterns of depth-completion evaluation and
fine-tuning, and of robustness studies.

One spec string per pattern ([`parse_depth_pattern`], [`simulate_depth_input`]): ``"uniform:500"`` (500 random
points, VOID-like), ``"lidar:16"`` (16 scan lines), ``"tof:8"`` (a ToF sensor 8x coarser than the image),
``"holes"`` (dense with holes along depth edges, like a structured-light sensor), ``"perlin:0.5"`` (half the valid
pixels removed in Perlin-noise blobs, the pretraining masks' spatially coherent holes), ``"fraction:0.05"`` (5 % of the
valid pixels), ``"dense"`` (the ground truth itself) and ``"none"`` (no depth: RGB only). Each pattern is also a
function of its own (`sample_uniform_points`, `simulate_lidar_lines`, `simulate_low_res_tof`, `simulate_edge_holes`,
`keep_fraction`).

Depth is a float tensor ``(B, 1, H, W)`` in metres, 0 = no measurement; batched on any device, random patterns
replayable through a ``torch.Generator`` (the conventions of `vanishing_depth.augment._common`, whose helpers these
simulators share with the pretraining masks).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from ..augment._common import FractionLike, _check_depth, _per_sample, _rand, _randint, _select_top_k, _valid_count
from ..augment.masking import perlin_mask

__all__ = [
    "DEPTH_INPUT_PATTERNS",
    "keep_fraction",
    "parse_depth_pattern",
    "sample_uniform_points",
    "simulate_depth_input",
    "simulate_edge_holes",
    "simulate_lidar_lines",
    "simulate_low_res_tof",
]

DEPTH_INPUT_PATTERNS = ("uniform", "lidar", "tof", "holes", "perlin", "fraction", "dense", "none")


# ----------------------------------------------------------------------------------------------------------------------
# Sensor patterns by name
# ----------------------------------------------------------------------------------------------------------------------


def parse_depth_pattern(spec: str) -> tuple[str, float | None]:
    """Parse a sensor-pattern spec such as ``"uniform:500"`` into ``("uniform", 500)``.

    Patterns: ``uniform:N`` points, ``lidar:N`` lines, ``tof:F`` (a low-resolution sensor F times coarser than the
    image grid, F >= 1), ``fraction:P`` (kept share of valid pixels in [0, 1]), ``perlin:P`` (removed share of valid
    pixels in [0, 1], in Perlin-noise blobs), ``holes``, ``dense``, ``none``.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"`pattern` must be a string such as 'uniform:500', got {spec!r}.")
    kind, _, value = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in DEPTH_INPUT_PATTERNS:
        raise ValueError(f"`pattern` kind must be one of {DEPTH_INPUT_PATTERNS}, got {spec!r}.")
    needs_value = kind in ("uniform", "lidar", "tof", "fraction", "perlin")
    if not needs_value:
        if value:
            raise ValueError(f"`pattern` {kind!r} takes no value, got {spec!r}.")
        return kind, None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"`pattern` {kind!r} needs a number after ':', e.g. '{kind}:8', got {spec!r}.") from None
    if kind in ("uniform", "lidar") and (number < 1 or number != int(number)):
        raise ValueError(f"`pattern` {kind!r} needs a positive integer count, got {spec!r}.")
    if kind == "tof" and number < 1:
        raise ValueError(f"`pattern` 'tof' needs a downsampling factor >= 1, got {spec!r}.")
    if kind in ("fraction", "perlin") and not 0.0 <= number <= 1.0:
        raise ValueError(f"`pattern` {kind!r} needs a share in [0, 1], got {spec!r}.")
    return kind, int(number) if kind in ("uniform", "lidar") else number


def simulate_depth_input(depth_m: torch.Tensor, pattern: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Simulate what a sensor would measure of a dense ground truth.

    Args:
        depth_m: `(B, 1, H, W)` ground-truth depth in metres, 0 = no measurement.
        pattern: a spec of [`parse_depth_pattern`] (``"uniform:500"``, ``"lidar:16"``, ``"tof:8"``, ``"holes"``,
            ``"fraction:0.05"``, ``"dense"``, ``"none"``).
        generator: drives the random patterns (``uniform``, ``lidar``, ``fraction``, ``perlin``), so a run can be
            replayed.

    Returns:
        `(B, 1, H, W)` metres; only valid ground-truth pixels can be non-zero (``tof`` copies each cell's value over
        the cell, where the cell centre is valid).
    """
    kind, value = parse_depth_pattern(pattern)
    if depth_m.ndim != 4 or depth_m.shape[1] != 1:
        raise ValueError(f"`depth_m` must have shape (B, 1, H, W) in metres, got {tuple(depth_m.shape)}.")
    height, width = depth_m.shape[-2:]
    if kind == "uniform":
        return sample_uniform_points(depth_m, int(value), generator=generator)
    if kind == "lidar":
        if value > height:
            raise ValueError(f"`pattern` {pattern!r} asks for more scan lines than the {height} image rows.")
        return simulate_lidar_lines(depth_m, int(value), generator=generator)
    if kind == "tof":
        size = (max(1, round(height / value)), max(1, round(width / value)))
        return simulate_low_res_tof(depth_m, size=size)
    if kind == "fraction":
        return keep_fraction(depth_m, float(value), generator=generator)
    if kind == "holes":
        return simulate_edge_holes(depth_m)
    if kind == "perlin":
        removed = perlin_mask(depth_m, float(value), generator=generator)
        return torch.where(removed, torch.zeros_like(depth_m), depth_m)
    if kind == "dense":
        return depth_m.clone()
    return torch.zeros_like(depth_m)  # "none": RGB only


# ----------------------------------------------------------------------------------------------------------------------
# The simulators
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
