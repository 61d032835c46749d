"""Processing: the image processor, real sensor depth file formats, and the depth randomisation of pretraining.

- `VanishingDepthImageProcessor`: RGB + metric depth (+ labels) -> model inputs, and post-processing.
- `load_depth` / `save_depth` / `encode_depth` / `decode_depth_array`: the real file conventions (mm, kitti, tum,
  sunrgbd, nyu_raw, float), always float32 metres with 0 = missing.
- Randomisation (`RandomDepth`, `DepthNoise`, masks, `MaskingCurriculum`, `PretrainingDepthTransform`) and sensor
  simulators for evaluation; batched torch, replayable through a `torch.Generator`.
"""

from ..image_processing_vanishing_depth import VanishingDepthImageProcessor, depth_to_metres
from .augmentation import (
    DepthNoise,
    MaskingCurriculum,
    PretrainingDepthTransform,
    RandomDepth,
    VanishingDepthMasker,
    blocky_mask,
    keep_fraction,
    multiscale_targets,
    perlin_mask,
    perlin_noise,
    pixel_mask,
    rescale_far_depth,
    sample_uniform_points,
    simulate_edge_holes,
    simulate_lidar_lines,
    simulate_low_res_tof,
)
from .depth_io import DEPTH_FORMATS, DepthFormat, decode_depth_array, encode_depth, load_depth, save_depth
from .image_io import load_rgb
from .rgb_augmentation import augment_rgbd_pair, color_jitter, random_resized_crop_box

__all__ = [
    "DEPTH_FORMATS",
    "DepthFormat",
    "DepthNoise",
    "MaskingCurriculum",
    "PretrainingDepthTransform",
    "RandomDepth",
    "VanishingDepthImageProcessor",
    "VanishingDepthMasker",
    "augment_rgbd_pair",
    "blocky_mask",
    "color_jitter",
    "decode_depth_array",
    "depth_to_metres",
    "encode_depth",
    "keep_fraction",
    "load_depth",
    "load_rgb",
    "multiscale_targets",
    "perlin_mask",
    "perlin_noise",
    "pixel_mask",
    "random_resized_crop_box",
    "rescale_far_depth",
    "sample_uniform_points",
    "save_depth",
    "simulate_edge_holes",
    "simulate_lidar_lines",
    "simulate_low_res_tof",
]
