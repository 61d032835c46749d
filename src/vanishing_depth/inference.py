"""Depth completion with a trained model, one frame at a time: the pretext task of pretraining is completion, so
`VanishingDepthForPretraining` fills sparse or holed sensor depth directly, as does a depth head
(`VanishingDepthForDepthEstimation`). ``vanishing-depth complete`` runs `complete_depth_file` from the shell.

Depth is float metres, 0 = no measurement.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .data import load_depth, load_rgb, save_depth
from .evaluation.plots import side_by_side_picture
from .image_processing_vanishing_depth import VanishingDepthImageProcessor
from .output_paths import prepare_output_file
from .pipeline_vanishing_depth import DepthCompletionPipeline, load_completion_model

__all__ = ["complete_depth", "complete_depth_file", "load_completion_processor"]

# The 16-bit millimetre PNG holds 0 ... 65.535 m.
MAX_PNG_DEPTH_M = 65.535


def load_completion_processor(model_dir: str | os.PathLike, model, size: int | None = None):
    """The image processor saved with a completion model (its ``preprocessor_config.json``), or the one its config
    implies; `size` overrides the processing short edge in pixels."""
    if (Path(model_dir) / "preprocessor_config.json").is_file():
        processor = VanishingDepthImageProcessor.from_pretrained(model_dir)
    else:
        processor = VanishingDepthImageProcessor.from_model_config(model.config)
    if size is not None:
        processor.size = {"shortest_edge": size}
    return processor


def complete_depth(model, processor, rgb, depth_m: np.ndarray, keep_measured: bool = False) -> np.ndarray:
    """Complete one frame with the `depth-completion` pipeline. `rgb`: PIL/array (H, W, 3); `depth_m`: (h, w) metres,
    0 = missing, any resolution. Returns (H, W) float32 metres at the RGB image's resolution."""
    completion = DepthCompletionPipeline(model=model, image_processor=processor)
    return completion(rgb, depth=depth_m, keep_measured=keep_measured)["predicted_depth"].numpy()


def complete_depth_file(
    model_dir: str | os.PathLike,
    rgb_path: str | os.PathLike,
    depth_path: str | os.PathLike,
    out_path: str | os.PathLike,
    depth_format: str = "auto",
    size: int | None = None,
    keep_measured: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Read an RGB file and a depth file, write the completed map as a 16-bit millimetre PNG at `out_path` and a
    side-by-side picture next to it (``<out>_preview.png``). Returns the written paths.

    `model_dir` must hold a trained decoder (a pretraining or depth-head folder); an encoder folder is refused before
    anything is written (see `load_completion_model`). Existing output files are refused unless `overwrite`."""
    out_path = Path(out_path)
    preview = out_path.with_name(out_path.stem + "_preview.png")
    for target in (out_path, preview):
        prepare_output_file(target, overwrite=overwrite, what="completed-depth file")
    model = load_completion_model(str(model_dir))
    processor = load_completion_processor(model_dir, model, size=size)
    rgb = load_rgb(rgb_path)
    depth_in = load_depth(depth_path, format=depth_format)
    completed = complete_depth(model, processor, rgb, depth_in, keep_measured=keep_measured)
    completed = np.clip(completed, 0.0, MAX_PNG_DEPTH_M)
    save_depth(out_path, completed, "mm")
    depth_on_rgb = np.asarray(Image.fromarray(depth_in).resize(rgb.size, Image.NEAREST))
    side_by_side_picture(np.asarray(rgb), depth_on_rgb, completed, preview)
    return [out_path, preview]
