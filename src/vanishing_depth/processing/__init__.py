"""Deprecated: the names this package exported live elsewhere now.

- the image processor and `depth_to_metres`: `vanishing_depth.image_processing_vanishing_depth`;
- depth files and images (`load_depth`, `save_depth`, `encode_depth`, `decode_depth_array`, `DEPTH_FORMATS`,
  `DepthFormat`, `load_rgb`) and the sensor simulators (`keep_fraction`, `sample_uniform_points`,
  `simulate_edge_holes`, `simulate_lidar_lines`, `simulate_low_res_tof`): `vanishing_depth.data`;
- the pretraining augmentation (`RandomDepth`, `DepthNoise`, masks, `MaskingCurriculum`, `PretrainingDepthTransform`,
  `augment_rgbd_pair`, ...): `vanishing_depth.augment`.

``from vanishing_depth.processing import X`` still works for every old name, with a FutureWarning naming the new
import path. This package imports nothing until such a name is asked for.
"""

from .._deprecation import moved_names

# Every name this package used to export, and its one home now.
_MOVED = {
    "VanishingDepthImageProcessor": "vanishing_depth.image_processing_vanishing_depth",
    "depth_to_metres": "vanishing_depth.image_processing_vanishing_depth",
    "DEPTH_FORMATS": "vanishing_depth.data",
    "DepthFormat": "vanishing_depth.data",
    "decode_depth_array": "vanishing_depth.data",
    "encode_depth": "vanishing_depth.data",
    "load_depth": "vanishing_depth.data",
    "save_depth": "vanishing_depth.data",
    "load_rgb": "vanishing_depth.data",
    "keep_fraction": "vanishing_depth.data",
    "sample_uniform_points": "vanishing_depth.data",
    "simulate_edge_holes": "vanishing_depth.data",
    "simulate_lidar_lines": "vanishing_depth.data",
    "simulate_low_res_tof": "vanishing_depth.data",
    "DepthNoise": "vanishing_depth.augment",
    "MaskingCurriculum": "vanishing_depth.augment",
    "PretrainingDepthTransform": "vanishing_depth.augment",
    "RandomDepth": "vanishing_depth.augment",
    "VanishingDepthMasker": "vanishing_depth.augment",
    "augment_rgbd_pair": "vanishing_depth.augment",
    "blocky_mask": "vanishing_depth.augment",
    "color_jitter": "vanishing_depth.augment",
    "perlin_mask": "vanishing_depth.augment",
    "perlin_noise": "vanishing_depth.augment",
    "pixel_mask": "vanishing_depth.augment",
    "random_resized_crop_box": "vanishing_depth.augment",
    "rescale_far_depth": "vanishing_depth.augment",
}

__all__: list[str] = []

__getattr__ = moved_names(__name__, _MOVED)
