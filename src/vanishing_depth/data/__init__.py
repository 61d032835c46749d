# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""RGB-D data: reading depth and images, the corpus schema, corpora as `datasets`, mixing, decoding, collators,
dataset adapters, sensor simulators and synthetic scenes.

Every depth quantity is float32 metres with 0 = no measurement. One decoder turns stored depth into metres
(`decode_depth`, built on the image processor's `depth_to_metres`) and one opener reads images (`open_image` /
`rgb_array` / `load_rgb`); the pretraining decoder, the fine-tuning collator, the pipeline and the CLI all call them.

- `depth_io`: the on-disk depth conventions (`DEPTH_FORMATS`: mm, kitti, tum, sunrgbd, nyu_raw, float),
  `load_depth` / `save_depth` / `encode_depth` / `decode_depth_array`, and `decode_depth`.
- `image_io`: `open_image`, `rgb_array`, `load_rgb`.
- `schema`: the corpus columns and features, `decode_rgbd_row`.
- `corpora`: `build_corpus_from_folder`, `to_corpus_schema`, `save_corpus` / `load_corpus`, the bundled demo corpus.
- `decoding`: `RGBDSampleDecoder`, which skips and counts unusable rows by cause, for long runs.
- `mixing`: `mix_corpora` and `prepare_pretraining_corpus` (equal probability per corpus, sharded per process).
- `collators`: `RGBDCollator`, the `Trainer` data collator; `adapters`: public datasets' columns, units and labels.
- `sensors`: what a sensor would measure of a dense ground truth (points, LiDAR lines, ToF, edge holes).
- `synthetic`: procedural RGB-D scenes with exactly known depth.
- `rosbag`: `read_rosbag_frames`, registered RGB-D frames of ROS 1 / ROS 2 (sqlite3, MCAP) recordings (the
  ``robotics`` extra); `corpora.build_corpus_from_rosbag` turns them into a corpus.
- `pointcloud`: `depth_to_pointcloud` (metres in the camera frame), `scale_intrinsics`, `write_ply` (binary PLY).
"""

from .adapters import (
    ADAPTERS,
    NYU40_CLASSES,
    NYU_SCENE_CLASSES,
    SUNRGBD37_CLASSES,
    RGBDDatasetAdapter,
    corpus_adapter,
    get_adapter,
    nyu_depth_v2_adapter,
    nyu_scene_label,
    sunrgbd_adapter,
    void_adapter,
)
from .collators import TASKS, ColumnMap, RGBDCollator
from .corpora import (
    DEMO_CORPUS_NAME,
    build_corpus_from_folder,
    build_corpus_from_rosbag,
    demo_corpus_path,
    load_corpus,
    load_demo_corpus,
    load_split,
    save_corpus,
    to_corpus_schema,
)
from .decoding import SKIP_CAUSES, DecodedRGBDBatch, RGBDSample, RGBDSampleDecoder, RGBDSkipStats
from .depth_io import (
    DEPTH_FORMATS,
    DepthFormat,
    decode_depth,
    decode_depth_array,
    encode_depth,
    load_depth,
    save_depth,
)
from .image_io import UNREADABLE_IMAGE_ERRORS, UnsupportedImageError, load_rgb, open_image, rgb_array
from .mixing import PretrainingCorpus, mix_corpora, prepare_pretraining_corpus
from .pointcloud import depth_to_pointcloud, scale_intrinsics, write_ply
from .rosbag import (
    SUPPORTED_DEPTH_ENCODINGS,
    SUPPORTED_RGB_ENCODINGS,
    RosbagFrame,
    RosbagFrameReader,
    read_rosbag_frames,
)
from .schema import (
    RGBD_CORPUS_COLUMNS,
    RGBD_CORPUS_FEATURES,
    RGBDCorpusFormatError,
    decode_rgbd_row,
    resize_depth_nearest,
    rgbd_corpus_features,
    same_view,
)
from .sensors import (
    DEPTH_INPUT_PATTERNS,
    keep_fraction,
    parse_depth_pattern,
    sample_uniform_points,
    simulate_depth_input,
    simulate_edge_holes,
    simulate_lidar_lines,
    simulate_low_res_tof,
)
from .synthetic import SYNTHETIC_SOURCE_NAME, as_numpy_generator, render_synthetic_scene, synthetic_corpus

__all__ = [
    "load_split",
    "ADAPTERS",
    "DEMO_CORPUS_NAME",
    "DEPTH_FORMATS",
    "DEPTH_INPUT_PATTERNS",
    "NYU40_CLASSES",
    "NYU_SCENE_CLASSES",
    "RGBD_CORPUS_COLUMNS",
    "RGBD_CORPUS_FEATURES",
    "SKIP_CAUSES",
    "SUNRGBD37_CLASSES",
    "SUPPORTED_DEPTH_ENCODINGS",
    "SUPPORTED_RGB_ENCODINGS",
    "SYNTHETIC_SOURCE_NAME",
    "TASKS",
    "UNREADABLE_IMAGE_ERRORS",
    "ColumnMap",
    "DecodedRGBDBatch",
    "DepthFormat",
    "PretrainingCorpus",
    "RGBDCollator",
    "RGBDCorpusFormatError",
    "RGBDDatasetAdapter",
    "RGBDSample",
    "RGBDSampleDecoder",
    "RGBDSkipStats",
    "RosbagFrame",
    "RosbagFrameReader",
    "UnsupportedImageError",
    "as_numpy_generator",
    "build_corpus_from_folder",
    "build_corpus_from_rosbag",
    "corpus_adapter",
    "depth_to_pointcloud",
    "decode_depth",
    "decode_depth_array",
    "decode_rgbd_row",
    "demo_corpus_path",
    "encode_depth",
    "get_adapter",
    "keep_fraction",
    "load_corpus",
    "load_demo_corpus",
    "load_depth",
    "load_rgb",
    "mix_corpora",
    "nyu_depth_v2_adapter",
    "nyu_scene_label",
    "open_image",
    "parse_depth_pattern",
    "prepare_pretraining_corpus",
    "render_synthetic_scene",
    "resize_depth_nearest",
    "rgb_array",
    "read_rosbag_frames",
    "rgbd_corpus_features",
    "same_view",
    "sample_uniform_points",
    "save_corpus",
    "save_depth",
    "scale_intrinsics",
    "simulate_depth_input",
    "simulate_edge_holes",
    "simulate_lidar_lines",
    "simulate_low_res_tof",
    "sunrgbd_adapter",
    "synthetic_corpus",
    "to_corpus_schema",
    "void_adapter",
    "write_ply",
]
