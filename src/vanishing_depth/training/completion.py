"""Depth completion with a pretrained model: the pretext task of pretraining is completion, so
`VanishingDepthForPretraining` fills sparse or holed sensor depth directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def complete_depth(model, processor, rgb, depth_m: np.ndarray, keep_measured: bool = False) -> np.ndarray:
    """Complete one frame with the `depth-completion` pipeline. `rgb`: PIL/array (H, W, 3); `depth_m`: (h, w) metres,
    0 = missing, any resolution. Returns (H, W) float32 metres at the RGB image's resolution."""
    from ..pipeline_vanishing_depth import DepthCompletionPipeline

    completion = DepthCompletionPipeline(model=model, image_processor=processor)
    return completion(rgb, depth=depth_m, keep_measured=keep_measured)["predicted_depth"].numpy()


def side_by_side_picture(rgb: np.ndarray, depth_in_m: np.ndarray, depth_out_m: np.ndarray, path: str | Path) -> None:
    """RGB | input depth | completed depth, one shared colour scale (turbo), missing input drawn black."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # One colour scale for input and output, so a wrong completion shows as a colour change.
    valid = np.concatenate([depth_in_m[depth_in_m > 0], depth_out_m[depth_out_m > 0]])
    vmax = float(np.percentile(valid, 99)) if valid.size else 1.0
    figure = Figure(figsize=(12, 3.6))  # an Agg canvas of its own: no global matplotlib backend change
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    axes[0].imshow(rgb)
    axes[0].set_title("RGB")
    shown_in = np.ma.masked_where(depth_in_m <= 0, depth_in_m)
    cmap = colormaps["turbo"].with_extremes(bad="black")
    axes[1].imshow(shown_in, cmap=cmap, vmin=0, vmax=vmax)
    axes[1].set_title(f"input depth ({(depth_in_m > 0).mean() * 100:.1f}% valid)")
    image = axes[2].imshow(depth_out_m, cmap=cmap, vmin=0, vmax=vmax)
    axes[2].set_title("completed depth")
    for axis in axes:
        axis.axis("off")
    figure.colorbar(image, ax=axes, fraction=0.02, label="metres")
    figure.savefig(path, dpi=110, bbox_inches="tight")


def complete_depth_file(
    model_dir: str | Path,
    rgb_path: str | Path,
    depth_path: str | Path,
    out_path: str | Path,
    depth_format: str = "auto",
    size: int | None = None,
    keep_measured: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Read an RGB file and a depth file, write the completed map as a 16-bit millimetre PNG at `out_path` and a
    side-by-side picture next to it (``<out>_preview.png``). Returns the written paths.

    `model_dir` must hold a trained decoder (a pretraining or depth-head folder); an encoder folder is refused before
    anything is written (see `load_completion_model`). Existing output files are refused unless `overwrite`."""
    from PIL import Image

    from ..image_processing_vanishing_depth import VanishingDepthImageProcessor
    from ..output_paths import prepare_output_file
    from ..pipeline_vanishing_depth import load_completion_model
    from ..processing.depth_io import load_depth, save_depth
    from ..processing.image_io import load_rgb

    out_path = Path(out_path)
    preview = out_path.with_name(out_path.stem + "_preview.png")
    for target in (out_path, preview):
        prepare_output_file(target, overwrite=overwrite, what="completed-depth file")
    model = load_completion_model(str(model_dir))
    if (Path(model_dir) / "preprocessor_config.json").is_file():
        processor = VanishingDepthImageProcessor.from_pretrained(model_dir)
    else:
        processor = VanishingDepthImageProcessor.from_model_config(model.config)
    if size is not None:
        processor.size = {"shortest_edge": size}
    rgb = load_rgb(rgb_path)
    depth_in = load_depth(depth_path, format=depth_format)
    completed = complete_depth(model, processor, rgb, depth_in, keep_measured=keep_measured)
    completed = np.clip(completed, 0.0, 65.535)  # the 16-bit mm PNG holds 0 ... 65.535 m
    save_depth(out_path, completed, "mm")
    depth_on_rgb = np.asarray(Image.fromarray(depth_in).resize(rgb.size, Image.NEAREST))
    side_by_side_picture(np.asarray(rgb), depth_on_rgb, completed, preview)
    return [out_path, preview]


__all__ = ["complete_depth", "complete_depth_file", "side_by_side_picture"]
