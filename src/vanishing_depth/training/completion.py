"""Depth completion with a pretrained model: the pretext task of pretraining is completion, so
`VanishingDepthForPretraining` fills sparse or holed sensor depth directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


@torch.no_grad()
def complete_depth(model, processor, rgb, depth_m: np.ndarray) -> np.ndarray:
    """Complete one frame. `rgb`: PIL/array (H, W, 3); `depth_m`: (h, w) metres, 0 = missing, any resolution.
    Returns (H, W) float32 metres at the RGB image's resolution."""
    from PIL import Image

    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(np.asarray(rgb))
    inputs = processor(images=image, depth=depth_m)
    outputs = model(pixel_values=inputs["pixel_values"], depth_values=inputs["depth_values"])
    result = processor.post_process_depth_estimation(
        {"predicted_depth": outputs.predicted_depth[0]},
        target_sizes=[(image.height, image.width)],
        resized_sizes=inputs["resized_sizes"],
    )
    return result[0]["predicted_depth"].float().numpy()


def side_by_side_picture(rgb: np.ndarray, depth_in_m: np.ndarray, depth_out_m: np.ndarray, path: str | Path) -> None:
    """RGB | input depth | completed depth, one shared colour scale (turbo), missing input drawn black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One colour scale for input and output, so a wrong completion shows as a colour change.
    valid = np.concatenate([depth_in_m[depth_in_m > 0], depth_out_m[depth_out_m > 0]])
    vmax = float(np.percentile(valid, 99)) if valid.size else 1.0
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    axes[0].imshow(rgb)
    axes[0].set_title("RGB")
    shown_in = np.ma.masked_where(depth_in_m <= 0, depth_in_m)
    cmap = plt.get_cmap("turbo").copy()
    cmap.set_bad("black")
    axes[1].imshow(shown_in, cmap=cmap, vmin=0, vmax=vmax)
    axes[1].set_title(f"input depth ({(depth_in_m > 0).mean() * 100:.1f}% valid)")
    image = axes[2].imshow(depth_out_m, cmap=cmap, vmin=0, vmax=vmax)
    axes[2].set_title("completed depth")
    for axis in axes:
        axis.axis("off")
    figure.colorbar(image, ax=axes, fraction=0.02, label="metres")
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def complete_depth_file(
    model_dir: str | Path,
    rgb_path: str | Path,
    depth_path: str | Path,
    out_path: str | Path,
    depth_format: str = "auto",
    size: int | None = None,
) -> list[Path]:
    """Read an RGB file and a depth file, write the completed map as a 16-bit millimetre PNG at `out_path` and a
    side-by-side picture next to it (``<out>_preview.png``). Returns the written paths."""
    from PIL import Image

    from ..image_processing_vanishing_depth import VanishingDepthImageProcessor
    from ..modeling_vanishing_depth import VanishingDepthForPretraining
    from ..processing.depth_io import load_depth, save_depth

    model = VanishingDepthForPretraining.from_pretrained(model_dir).eval()
    try:
        processor = VanishingDepthImageProcessor.from_pretrained(model_dir)
    except OSError:
        processor = VanishingDepthImageProcessor.from_model_config(model.config)
    if size is not None:
        processor.size = {"shortest_edge": size}
    rgb = Image.open(rgb_path).convert("RGB")
    depth_in = load_depth(depth_path, format=depth_format)
    completed = complete_depth(model, processor, rgb, depth_in)
    out_path = Path(out_path)
    completed = np.clip(completed, 0.0, 65.535)  # the 16-bit mm PNG holds 0 ... 65.535 m
    save_depth(out_path, completed, "mm")
    preview = out_path.with_name(out_path.stem + "_preview.png")
    depth_on_rgb = np.asarray(Image.fromarray(depth_in).resize(rgb.size, Image.NEAREST))
    side_by_side_picture(np.asarray(rgb), depth_on_rgb, completed, preview)
    return [out_path, preview]


__all__ = ["complete_depth", "complete_depth_file", "side_by_side_picture"]
