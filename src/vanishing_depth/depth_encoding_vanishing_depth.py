# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""The depth encodings of Vanishing Depth (arXiv 2503.19947): the positional depth encoding (PDE) of metric depth,
the 1-channel normalised baseline, the log-depth + validity baseline, the one dispatcher the model and the image
processor both call (`encode_depth_input`), and the dynamic-mode max-depth code for the depth CLS token.

A flat module of its own, imported by the modeling file and by the image processor alike (neither imports the other for
it), and self-contained for remote code: it needs torch and the config's constants only.
"""

from __future__ import annotations

import math
import struct

import torch

from .configuration_vanishing_depth import (
    DEPTH_ENCODINGS,
    DEPTH_PATCH_NORMALIZATIONS,
    LOG_DEPTH_MIN_M,
    NORMALIZED_DEPTH_MEAN_M,
    NORMALIZED_DEPTH_STD_M,
    depth_scale_code_positions,
)

# ----------------------------------------------------------------------------------------------------------------------
# Positional depth encoding
# ----------------------------------------------------------------------------------------------------------------------
#: `pde_float_order` values (the float32 arithmetic of the angles).
PDE_FLOAT_ORDERS = ("library", "authors")
#: The depth in metres the authors' code writes for a missing measurement (`zero_eps` of datasets/transforms.py).
AUTHORS_MISSING_DEPTH_M = 1e-6


def pde_inverse_periods(channels: int, temperature: float) -> torch.Tensor:
    """1 / tau_k = T^(-2k/C) for the C/2 sin/cos pairs, float32 (C/2,). Pair 0 is the slowest (one cycle over d_max).

    Computed in Python double precision and rounded once, so eager, compiled and exported graphs hold the same
    constants (a traced float32 `pow` lands one ulp away)."""
    return torch.tensor(
        [float(temperature) ** (-2.0 * k / channels) for k in range(channels // 2)], dtype=torch.float32
    )


def pde_authors_periods(channels: int, temperature: float) -> torch.Tensor:
    """tau_k = T^(2k/C) as the authors' `DepthPositionalEncoding` holds them: float32 `T ** e` with the exponent
    ``e = 2 * (i // 2) / C`` formed in float32, one value per sin/cos pair (C/2,).

    Written out as the correctly rounded float32 power of the float32 base and exponent (Python double precision,
    rounded once): the same constants in eager, compiled and exported graphs, and equal to torch's float32 `pow` on
    CPU for the official C = 32, T = 3e-4."""
    base = _to_float32(float(temperature))
    exponents = [_to_float32(2.0 * k / channels) for k in range(channels // 2)]  # float32(2 * (i // 2) / C), i = 2k
    return torch.tensor([base**exponent for exponent in exponents], dtype=torch.float32)


def _to_float32(value: float) -> float:
    """`value` rounded to the nearest float32 (pure Python: no tensor op, so nothing is traced when exporting)."""
    return struct.unpack("f", struct.pack("f", value))[0]


def positional_depth_encoding(
    depth_m: torch.Tensor,
    channels: int = 32,
    temperature: float = 3e-4,
    max_depth: float = 15.0,
    normalization: str = "global",
    channels_last: bool = False,
    missing_depth_m: float = 0.0,
    float_order: str = "library",
) -> torch.Tensor:
    """Sinusoidal positional depth encoding (PDE, "SDP" in the paper's v2).

    For pair k in 0..C/2-1 with tau_k = T^(2k/C) and x = 2*pi*d/d_max:
    ``PDE[2k] = sin(x / tau_k)``, ``PDE[2k+1] = cos(x / tau_k)``. With C=32, T=3e-4 and d_max=15 m the periods run
    geometrically from 15 m (pair 0) down to 7.5 mm (pair 15).

    Always computed in float32, also under bf16/fp16 autocast (sin/cos of large arguments lose millimetres in half
    precision). Missing depth (0) is encoded as if it measured `missing_depth_m`: with the default 0 that is
    (sin, cos) = (0, 1) in every pair; the authors' code writes 1e-6 m, whose code differs from it by up to 8e-4 in
    the fastest pairs. Valid depths are >= 0.05 m, so neither code collides with a measurement.

    Args:
        depth_m: `(B, 1, H, W)` depth in metres, 0 = missing.
        channels: C, even.
        temperature: T of the frequency ladder.
        max_depth: d_max in metres for ``normalization="global"``.
        normalization: ``"global"`` (d / max_depth) or ``"dynamic"`` (d / max(d) per image).
        channels_last: return `(B, H, W, C)` instead of `(B, C, H, W)`.
        missing_depth_m: the depth in metres a missing pixel (0) is encoded as (the authors: 1e-6). In dynamic mode
            it also takes part in max(d), as in the authors' code (it only matters for an all-missing map).
        float_order: ``"library"``: angles ``2 pi * (d * (1 / d_max)) * (1 / tau_k)`` with the inverse periods of
            `pde_inverse_periods`. ``"authors"``: ``((d / d_max) * 2 pi) / tau_k`` with the periods of
            `pde_authors_periods`, the float32 order of the authors' datasets/transforms.py. Equal to float32
            rounding; the fastest pairs turn that rounding into up to 5e-4 in the encoding.

    Returns:
        `(B, C, H, W)` float32 (or `(B, H, W, C)` with ``channels_last``).
    """
    if depth_m.ndim != 4 or depth_m.shape[1] != 1:
        raise ValueError(f"`depth_m` must have shape (B, 1, H, W) in metres, got {tuple(depth_m.shape)}.")
    if channels < 2 or channels % 2:
        raise ValueError(f"`channels` must be an even integer >= 2, got {channels}.")
    if normalization not in ("global", "dynamic"):
        raise ValueError(f"`normalization` must be 'global' or 'dynamic', got {normalization!r}.")
    if float_order not in PDE_FLOAT_ORDERS:
        raise ValueError(f"`float_order` must be one of {PDE_FLOAT_ORDERS}, got {float_order!r}.")
    if not 0.0 <= float(missing_depth_m) < float(max_depth):
        raise ValueError(
            f"`missing_depth_m` must be a depth in metres in [0, max_depth={max_depth}), got {missing_depth_m!r}."
        )
    depth = depth_m.float()
    if missing_depth_m:
        depth = torch.where(depth == 0, torch.full_like(depth, float(missing_depth_m)), depth)
    if normalization == "global":
        normalized = depth / float(max_depth) if float_order == "authors" else depth * (1.0 / float(max_depth))
    else:
        per_image_max = depth.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        normalized = depth / per_image_max
    # (B, H, W, 1) with (C/2,) -> (B, H, W, C/2): angles, in float32 whatever autocast says.
    normalized = normalized.permute(0, 2, 3, 1)
    if float_order == "authors":
        angles = (normalized * (2.0 * math.pi)) / pde_authors_periods(channels, temperature).to(depth.device)
    else:
        angles = (2.0 * math.pi) * normalized * pde_inverse_periods(channels, temperature).to(depth.device)
    encoding = torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1).flatten(-2)  # interleave sin/cos
    return encoding if channels_last else encoding.permute(0, 3, 1, 2)


def normalized_depth_encoding(depth_m: torch.Tensor) -> torch.Tensor:
    """The 1-channel baseline the paper compares the PDE against, (d - 5 m) / 5 m, float32 `(B, 1, H, W)`; kept for
    ablations."""
    return (depth_m.float() - NORMALIZED_DEPTH_MEAN_M) / NORMALIZED_DEPTH_STD_M


def log_validity_depth_encoding(depth_m: torch.Tensor, max_depth: float = 15.0) -> torch.Tensor:
    """Log-depth with a validity channel, the simple encoding OMNI-DC (arXiv 2411.19278) found best, `(B, 2, H, W)`
    float32 (also under autocast).

    Channel 0: ``2 * (ln d - ln 0.1 m) / (ln max_depth - ln 0.1 m) - 1``, so 0.1 m -> -1 and `max_depth` -> +1
    (depths outside that range are not clipped: they land a little outside [-1, 1]); 0 where depth is missing.
    Channel 1: 1 where depth was measured (d > 0), 0 where it is missing, so a missing pixel is never confused with
    the depth whose log code is 0 (sqrt(0.1 m * max_depth), 1.22 m at 15 m).

    Args:
        depth_m: `(B, 1, H, W)` depth in metres, 0 = missing.
        max_depth: the depth in metres mapped to +1 (the model's `max_depth`), > 0.1 m.
    """
    if depth_m.ndim != 4 or depth_m.shape[1] != 1:
        raise ValueError(f"`depth_m` must have shape (B, 1, H, W) in metres, got {tuple(depth_m.shape)}.")
    if not float(max_depth) > LOG_DEPTH_MIN_M:
        raise ValueError(f"`max_depth` must be a depth in metres above {LOG_DEPTH_MIN_M}, got {max_depth!r}.")
    depth = depth_m.float()
    valid = depth > 0
    log_low, log_high = math.log(LOG_DEPTH_MIN_M), math.log(float(max_depth))
    # log(1) = 0 at missing pixels keeps the log finite there; the where() then writes the 0 code.
    log_depth = torch.log(torch.where(valid, depth, torch.ones_like(depth)))
    code = (log_depth - log_low) * (2.0 / (log_high - log_low)) - 1.0
    return torch.cat((torch.where(valid, code, torch.zeros_like(code)), valid.float()), dim=1)


def valid_mean_patch_weights(depth_m: torch.Tensor, patch_size: int) -> torch.Tensor:
    """`depth_patch_normalization="valid_mean"`: per pixel, patch area / measured pixels of its patch where depth was
    measured, 0 where it is missing; `(B, 1, H, W)` float32 for `depth_m` `(B, 1, H, W)` metres with H and W multiples
    of `patch_size` (the patch grid the depth patch embedding cuts). A fully measured patch gets weight 1 everywhere."""
    height, width = depth_m.shape[-2:]
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"`depth_m` height and width must be multiples of the patch size {patch_size} for "
            f"depth_patch_normalization='valid_mean', got {height}x{width}."
        )
    valid = (depth_m > 0).float()
    area = float(patch_size * patch_size)
    counts = torch.nn.functional.avg_pool2d(valid, patch_size) * area  # exact: sums of 0/1 below 2^24
    per_patch = area / counts.clamp(min=1.0)
    return valid * per_patch.repeat_interleave(patch_size, dim=-2).repeat_interleave(patch_size, dim=-1)


def encode_depth_input(
    depth_m: torch.Tensor,
    encoding: str = "pde",
    *,
    channels: int = 32,
    temperature: float = 3e-4,
    max_depth: float = 15.0,
    normalization: str = "global",
    missing_depth_m: float = 0.0,
    float_order: str = "library",
    patch_normalization: str = "none",
    patch_size: int | None = None,
) -> torch.Tensor:
    """The depth ViT's input channels for `encoding` (a `VanishingDepthConfig.depth_encoding`), float32 `(B, C, H, W)`:
    `positional_depth_encoding` (C = `channels`, with the other PDE settings), `normalized_depth_encoding` (C = 1) or
    `log_validity_depth_encoding` (C = 2, `max_depth` mapped to +1). The one place that chooses, for the model's
    `encode_depth` and the image processor's precomputed `depth_encoding` alike.

    Args:
        depth_m: `(B, 1, H, W)` depth in metres, 0 = missing.
        encoding: one of ``"pde"``, ``"normalized"``, ``"log_validity"``.
        patch_normalization: ``"none"`` or ``"valid_mean"`` (`VanishingDepthConfig.depth_patch_normalization`): the
            encoding times `valid_mean_patch_weights`, so missing pixels enter the patch embedding as 0 and the
            measured ones of a patch as if they filled it. Needs `patch_size`.
    """
    if patch_normalization not in DEPTH_PATCH_NORMALIZATIONS:
        raise ValueError(
            f"`patch_normalization` must be one of {DEPTH_PATCH_NORMALIZATIONS}, got {patch_normalization!r}."
        )
    encoded = _encode(depth_m, encoding, channels, temperature, max_depth, normalization, missing_depth_m, float_order)
    if patch_normalization == "none":
        return encoded
    if patch_size is None:
        raise ValueError("`patch_size` (pixels) is needed for patch_normalization='valid_mean', got None.")
    return encoded * valid_mean_patch_weights(depth_m, int(patch_size))


def _encode(depth_m, encoding, channels, temperature, max_depth, normalization, missing_depth_m, float_order):
    if encoding == "normalized":
        return normalized_depth_encoding(depth_m)
    if encoding == "log_validity":
        return log_validity_depth_encoding(depth_m, max_depth=max_depth)
    if encoding != "pde":
        raise ValueError(f"`encoding` must be one of {DEPTH_ENCODINGS}, got {encoding!r}.")
    return positional_depth_encoding(
        depth_m,
        channels=channels,
        temperature=temperature,
        max_depth=max_depth,
        normalization=normalization,
        missing_depth_m=missing_depth_m,
        float_order=float_order,
    )


def depth_scale_cls_code(max_depth_m: torch.Tensor, hidden_size: int) -> torch.Tensor:
    """The dynamic-mode digit code of max(d) for the depth CLS token (the authors' datasets/transforms.py).

    max(d) is written with 6 decimals; digit v becomes 0.1 + v/10 (0 -> 0.1, 9 -> 1.0), positions without a digit stay
    0. The code sits in the last third of the vector: the integer digits (at most 3: < 1000 m) just left of the bin
    centre ``2D/3 + D/6``, units nearest to it; the decimals from the centre rightwards.

    Args:
        max_depth_m: `(B,)` per-image maximum depth in metres.
        hidden_size: D.

    Returns:
        `(B, D)` float32 code, added to (or replacing) the depth CLS token.
    """
    units, first_decimal = depth_scale_code_positions(hidden_size)
    # Integer micrometres: exact digits without float formatting, and no data-dependent Python control flow.
    micrometres = torch.round(max_depth_m.double() * 1e6).long()
    digit_values, positions = [], []
    for place in range(3):  # integer digits: units, tens, hundreds
        digit = torch.div(micrometres, 10 ** (6 + place), rounding_mode="floor") % 10
        present = (micrometres >= 10 ** (6 + place)) | (place == 0)
        digit_values.append(
            torch.where(present, 0.1 + digit.float() / 10.0, torch.zeros_like(digit, dtype=torch.float))
        )
        positions.append(units - place)
    for place in range(6):  # decimals, tenths first
        digit = torch.div(micrometres, 10 ** (5 - place), rounding_mode="floor") % 10
        digit_values.append(0.1 + digit.float() / 10.0)
        positions.append(first_decimal + place)
    code = torch.zeros(max_depth_m.shape[0], hidden_size, dtype=torch.float32, device=max_depth_m.device)
    code[:, positions] = torch.stack(digit_values, dim=1)
    return code


__all__ = [
    "AUTHORS_MISSING_DEPTH_M",
    "PDE_FLOAT_ORDERS",
    "depth_scale_cls_code",
    "encode_depth_input",
    "log_validity_depth_encoding",
    "normalized_depth_encoding",
    "pde_authors_periods",
    "pde_inverse_periods",
    "positional_depth_encoding",
    "valid_mean_patch_weights",
]
