# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Pretraining augmentation: batched torch on any device, replayable through a ``torch.Generator``.

- `rgbd`: joint RGB-D crop, flips, colour jitter and random gray of one frame (`augment_rgbd_pair`).
- `depth`: far-scene rescale, depth-distribution randomisation, sensor noise, and `PretrainingDepthTransform`, which
  chains them with the masking.
- `masking`: the "vanishing" masks (Perlin, blocky, per-pixel), exact rank selection, and the masking curriculum.

The sensor patterns of evaluation and fine-tuning (LiDAR lines, low-resolution ToF, uniform points, edge holes) are
data, not augmentation: `vanishing_depth.data.sensors`.
"""

from .depth import (
    RANDOM_DEPTH_BRANCHES,
    RANDOM_DEPTH_JITTERS,
    DepthNoise,
    PretrainingDepthTransform,
    RandomDepth,
    rescale_far_depth,
)
from .masking import (
    MASK_KINDS,
    MaskingCurriculum,
    VanishingDepthMasker,
    blocky_mask,
    blocky_noise,
    perlin_mask,
    perlin_noise,
    pixel_mask,
    select_by_rank,
)
from .rgbd import CROP_MODES, augment_rgbd_pair, color_jitter, crop_and_resize_rgbd, random_resized_crop_box

__all__ = [
    "CROP_MODES",
    "MASK_KINDS",
    "RANDOM_DEPTH_BRANCHES",
    "RANDOM_DEPTH_JITTERS",
    "DepthNoise",
    "MaskingCurriculum",
    "PretrainingDepthTransform",
    "RandomDepth",
    "VanishingDepthMasker",
    "augment_rgbd_pair",
    "blocky_mask",
    "blocky_noise",
    "color_jitter",
    "crop_and_resize_rgbd",
    "perlin_mask",
    "perlin_noise",
    "pixel_mask",
    "random_resized_crop_box",
    "rescale_far_depth",
    "select_by_rank",
]
