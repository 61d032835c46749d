# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""The depth side of pretraining: far-scene rescale, depth-distribution randomisation, sensor noise, and the batched
transform that chains them with the masking (authors' datasets/transforms.py: Depth2distance, RandomDepth,
DepthGTCopy, DepthNoise, VanishingDepth; Vanishing Depth, arXiv 2503.19947).

Batched torch on any device, replayable through a ``torch.Generator`` (conventions: `vanishing_depth.augment._common`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from ._common import FractionLike, _check_depth, _log_dropped, _rand, _randint, _valid_count
from .masking import MaskingCurriculum, VanishingDepthMasker

logger = logging.getLogger(__name__)

__all__ = [
    "RANDOM_DEPTH_BRANCHES",
    "RANDOM_DEPTH_JITTERS",
    "DepthNoise",
    "PretrainingDepthTransform",
    "RandomDepth",
    "rescale_far_depth",
]

RANDOM_DEPTH_BRANCHES = ("offset", "range", "scale", "none")
#: `RandomDepth.jitter`: ``"symmetric"`` U(1 - j, 1 + j), or ``"authors"`` U(1, 1 + j) as their expression yields.
RANDOM_DEPTH_JITTERS = ("symmetric", "authors")


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
    """Fit far scenes into the working range (authors' datasets/transforms.py, Depth2distance, after its conversion
    to metres).

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
    """Depth-distribution randomisation (authors' datasets/transforms.py, RandomDepth), one branch per sample.

    Branches (probabilities ``p_offset``, ``p_range``, ``p_scale``, the rest unchanged; 0.25 each by default):

    * **offset**: add ``std(valid) * U(-offset_jitter, offset_jitter)``; if the minimum falls below ``min_depth``,
      shift the map so its minimum is ``min_depth``.
    * **range**: pick one of the non-empty ``range_bins`` (plus the far bin ``[far_bin_start, far_bin_max_fraction *
      max_depth]``, which is empty and dropped for ``max_depth=15``), draw ``a < b`` in it, multiply each by a
      jitter (``U(1 - range_jitter, 1 + range_jitter)`` = [0.9, 1.1] by default), clip to ``[min_depth, max_depth]``
      and min-max map the valid depths linearly onto ``[a, b]``. A constant map (one distinct depth) goes to ``a``.
    * **scale**: multiply by a jitter (``U(1 - scale_jitter, 1 + scale_jitter)`` = [0.8, 1.2] by default).

    ``jitter="symmetric"`` (default) is this project's choice; ``jitter="authors"`` draws ``U(1, 1 + j)``, what the
    authors' expression ``1 + U * ((2 j) - j)`` yields (it reads as a slip for ±j). The authors also draw the range
    ends as two distinct values of a list per bin (e.g. 1, 2, ..., 14 m); here they are uniform within the bin.
    Finally depths outside ``[min_depth, max_depth]`` become 0; missing pixels stay missing.
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
    jitter: str = "symmetric"

    def __post_init__(self) -> None:
        if self.jitter not in RANDOM_DEPTH_JITTERS:
            raise ValueError(f"`jitter` must be one of {RANDOM_DEPTH_JITTERS}, got {self.jitter!r}.")
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
        jitter_a = self._jitter(u[:, 5], self.range_jitter)
        jitter_b = self._jitter(u[:, 6], self.range_jitter)
        a = (torch.minimum(draw_a, draw_b) * jitter_a).clamp(self.min_depth, self.max_depth)
        b = (torch.maximum(draw_a, draw_b) * jitter_b).clamp(self.min_depth, self.max_depth)
        a, b = torch.minimum(a, b), torch.maximum(a, b)
        # out = a + (b - a) * (depth - low) / (high - low), written around `low` so that no large slope multiplies a
        # large depth; a constant map (high == low) has slope 0 and goes to a, inside the valid range.
        span = high - low
        range_alpha = torch.where(span > 0, (b - a) / span.clamp(min=1e-12), torch.zeros_like(span))

        scale = self._jitter(u[:, 7], self.scale_jitter)

        one, zero = torch.ones_like(mean), torch.zeros_like(mean)
        alpha = torch.stack([one, range_alpha, scale, one], 1).gather(1, branch_id[:, None])
        beta = torch.stack([offset, a, zero, zero], 1).gather(1, branch_id[:, None])
        pivot = torch.stack([zero, low, zero, zero], 1).gather(1, branch_id[:, None])
        out = torch.addcmul(beta, flat - pivot, alpha)
        keep = valid & (out >= self.min_depth) & (out <= self.max_depth)
        if logger.isEnabledFor(logging.DEBUG):
            _log_dropped("RandomDepth", torch.count_nonzero(valid & ~keep, dim=1))
        return torch.where(keep, out, 0.0).view_as(depth)

    def _jitter(self, uniform: torch.Tensor, amount: float) -> torch.Tensor:
        """A multiplicative jitter from U[0, 1) draws: U(1 - amount, 1 + amount), or U(1, 1 + amount) (authors)."""
        if self.jitter == "authors":
            return 1.0 + amount * uniform
        return 1.0 + amount * (2.0 * uniform - 1.0)


@dataclass
class DepthNoise:
    """Sensor-noise simulation for the network input only (authors' datasets/transforms.py, DepthNoise).

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
    """Batched depth side of the pretraining pipeline, usable after collation on any device (authors'
    datasets/transforms.py, Depth2distance to VanishingDepth).

    ``rescale_far_depth`` -> `RandomDepth` -> target copy -> `DepthNoise` -> `VanishingDepthMasker` (amount from the
    `MaskingCurriculum` at ``epoch`` unless ``fraction`` is given). With ``training=False`` the rescale uses its fixed
    eval factor and the randomisation and noise are skipped (validation masks clean depth). ``random_depth=None`` or
    ``noise=None`` leaves that step out (a recipe without depth randomisation or sensor noise).
    """

    max_depth: float = 15.0
    random_depth: RandomDepth | None = field(default_factory=RandomDepth)
    noise: DepthNoise | None = field(default_factory=DepthNoise)
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
        if training and self.random_depth is not None:
            depth = self.random_depth(depth, generator=generator)
        target = depth
        noisy = self.noise(depth, generator=generator) if training and self.noise is not None else depth
        mean, std = self.curriculum(epoch)
        masked, removed, _ = self.masker(noisy, fraction=fraction, mean=mean, std=std, generator=generator)
        removed_fraction = torch.count_nonzero(removed.flatten(1), dim=1) / _valid_count(noisy).clamp(min=1)
        return {
            "depth_values": masked,
            "target_depth": target,
            "removed_mask": removed,
            "removed_fraction": removed_fraction.float(),
        }
