# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Vanishing Depth Analyzer: a local Gradio web app to look at what a trained adapter does with depth.

```bash
pip install -e ".[app]"
vanishing-depth app --model outputs/vanishing-depth-demo/pretraining   # http://127.0.0.1:7860
python app.py          # the same app as a Hugging Face Space starts it (model from $VANISHING_DEPTH_MODEL)
```

One frame at a time: an RGB image with a depth map (any file `vanishing_depth.data.load_depth` reads, or a 16-bit
PNG with a `depth_scale`), or one of the bundled Redwood frames (`load_demo_corpus("test")`) with one click. The depth
map is the ground truth; a removal pattern (`vanishing_depth.data.simulate_depth_input`; the blocky pretraining mask
`vanishing_depth.augment.blocky_mask`) keeps ``density`` percent of it as the model's input, and depth cues clicked on
the image (a depth in metres each) are added to that input. The page shows the completed depth on a fixed metric
colour scale, the input and the error map, RMSE / MAE on the observed, removed and all valid pixels (metres,
`vanishing_depth.evaluation.compute_depth_metrics`), PCA maps of the RGB and depth tokens at every fusion layer
(`vanishing_depth.evaluation.studies.probe_fusion_layers`) with the depth share of each fusion (`VanishingDepthFusion.depth_share`),
a 16-bit millimetre PNG to download and, with intrinsics, a point cloud (PLY) in a 3D viewer.

The main action is also an API endpoint (``api_name="complete"``) with the parameters ``rgb``, ``depth``,
``depth_format``, ``pattern``, ``density`` (percent of the valid pixels kept, 0.1 to 100) and ``seed``::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    result = client.predict(rgb=handle_file("rgb.png"), depth=handle_file("depth.png"), depth_format="mm",
                            pattern="uniform", density=1.0, seed=0, api_name="/complete")

The app binds 127.0.0.1 unless told otherwise, reads only files uploaded to Gradio's upload folder and writes only into
its own temporary folder. Gradio is an optional dependency (the ``app`` extra), imported at the top of this module
because the module is the app; `vanishing_depth.cli.app` imports it only when the command runs.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F
from gradio.utils import get_upload_folder
from PIL import Image

from .augment.masking import blocky_mask
from .data import (
    DEPTH_FORMATS,
    decode_depth,
    decode_rgbd_row,
    depth_to_pointcloud,
    load_demo_corpus,
    load_depth,
    load_rgb,
    save_depth,
    simulate_depth_input,
    write_ply,
)
from .data.pointcloud import check_intrinsics
from .demo import DEMO_MODEL_FOLDER
from .evaluation.depth import compute_depth_metrics
from .evaluation.studies import probe_fusion_layers
from .image_processing_vanishing_depth import VanishingDepthImageProcessor
from .inference import MAX_PNG_DEPTH_M
from .pipeline_vanishing_depth import DepthCompletionPipeline, colorize_depth, load_completion_model

logger = logging.getLogger(__name__)

__all__ = [
    "APP_PATTERNS",
    "DEFAULT_DEMO_MODEL",
    "Completion",
    "DepthAnalyzer",
    "build_app",
    "launch_app",
    "pattern_spec",
    "read_depth_upload",
    "resolve_model_dir",
]

#: The demo model `make demo` writes (``vanishing-depth demo --output-dir outputs``, relative to the working directory).
DEFAULT_DEMO_MODEL = Path("outputs") / DEMO_MODEL_FOLDER / "pretraining"
#: Removal patterns of the page and the API: value -> label. ``none`` gives the depth map as it is; ``rgb_only``
#: gives no depth (the map stays the ground truth of the metrics).
APP_PATTERNS = {
    "uniform": "uniform points",
    "perlin": "Perlin holes",
    "blocky": "blocky holes",
    "lidar": "LiDAR lines",
    "tof": "low-resolution ToF",
    "none": "none (depth as given)",
    "rgb_only": "RGB only (no depth input)",
}
#: Kept share of the valid pixels, percent.
MIN_DENSITY_PERCENT, MAX_DENSITY_PERCENT = 0.1, 100.0
#: Far end of the depth colour scale (metres) unless set in the page: a room (the bundled Redwood frames: 1 to 4 m).
DEFAULT_COLOUR_SCALE_M = 5.0
#: Far end of the error colour scale (metres).
DEFAULT_ERROR_SCALE_M = 1.0
#: Radius (pixels) of the disc a hand-given depth cue covers in the input map.
CUE_RADIUS_PX = 3
#: Points written to the PLY at most (the map is subsampled on a regular grid beyond that).
MAX_PLY_POINTS = 100_000
_MIN_EVAL_DEPTH_M = 1e-3
_KEEP_FILES_S = 3600.0
_CUE_COLUMNS = ["x_px", "y_px", "depth_m"]
_DEPTH_FILE_TYPES = [".png", ".tif", ".tiff", ".npy", ".npz", ".pgm"]
_NON_IMAGE_DEPTH_SUFFIXES = (".npy", ".npz", ".pgm")


# ----------------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------------
def resolve_model_dir(model: str | os.PathLike | None) -> str:
    """The model to serve: `model` as given (a folder or a Hub id), or the demo model `make demo` writes. Raises a
    `FileNotFoundError` saying how to get one when neither is there."""
    if model:
        return str(model)
    if (DEFAULT_DEMO_MODEL / "config.json").is_file():
        return str(DEFAULT_DEMO_MODEL)
    raise FileNotFoundError(
        f"no --model given and no demo model at {DEFAULT_DEMO_MODEL}: run `make demo` (or `vanishing-depth demo "
        "--output-dir outputs`, a few minutes on a CPU) to train one, or pass --model RUN/pretraining (a folder "
        "written by `vanishing-depth pretrain`) or a depth head folder (`vanishing-depth finetune --task depth`)."
    )


def read_depth_upload(path: str | os.PathLike, depth_format: str = "auto", depth_scale: float | None = None):
    """A depth file -> (H, W) float32 metres, 0 = missing. With a positive `depth_scale` (metres per stored unit) an
    image file (16-bit PNG, TIFF) is decoded with it (`decode_depth`); otherwise the file is read with `depth_format`
    (`load_depth`: a `DEPTH_FORMATS` name or ``"auto"``). 8-bit and colour images are refused with a `ValueError`."""
    path = Path(path)
    if depth_scale:
        if path.suffix.lower() in _NON_IMAGE_DEPTH_SUFFIXES:
            raise ValueError(
                f"{path.name}: `depth_scale` applies to 16-bit PNG / TIFF images; a {path.suffix} file is read with "
                "`depth_format` ('float' for .npy / .npz metres, 'nyu_raw' for .pgm): set depth_scale to 0."
            )
        return decode_depth(str(path), depth_scale=float(depth_scale), what=f"depth file {path.name}")
    return load_depth(path, format=depth_format or "auto")


def pattern_spec(pattern: str, density_percent: float, height: int) -> str:
    """The sensor-pattern spec (`vanishing_depth.data.parse_depth_pattern`) that keeps `density_percent` of the valid
    pixels: ``uniform`` -> ``fraction:P``; ``perlin`` -> ``perlin:1-P`` (removed share); ``lidar`` -> as many scan
    lines as P of the `height` rows; ``tof`` -> a sensor ``1/sqrt(P)`` times coarser per axis; ``none`` -> ``dense``;
    ``rgb_only`` -> ``none``; ``blocky`` -> ``blocky:1-P`` (the pretraining blocky mask, applied by the app)."""
    if pattern not in APP_PATTERNS:
        raise ValueError(f"`pattern` must be one of {list(APP_PATTERNS)}, got {pattern!r}.")
    density = _check_density(density_percent)
    kept = density / 100.0
    if pattern == "uniform":
        return f"fraction:{kept:g}"
    if pattern in ("perlin", "blocky"):
        return f"{pattern}:{round(1.0 - kept, 6):g}"
    if pattern == "lidar":
        return f"lidar:{min(height, max(1, round(kept * height)))}"
    if pattern == "tof":
        return f"tof:{1.0 / math.sqrt(kept):.4g}"
    return "dense" if pattern == "none" else "none"


def _check_density(density_percent: Any) -> float:
    try:
        density = float(density_percent)
    except (TypeError, ValueError):
        density = float("nan")
    if not MIN_DENSITY_PERCENT <= density <= MAX_DENSITY_PERCENT:
        raise ValueError(
            f"`density` must be the percent of valid pixels kept, {MIN_DENSITY_PERCENT:g} to "
            f"{MAX_DENSITY_PERCENT:g}, got {density_percent!r}."
        )
    return density


def parse_cues(cues: Any, size: tuple[int, int]) -> list[tuple[int, int, float]]:
    """Hand-given depth cues -> ``[(x_px, y_px, depth_m)]``: rows of three numbers (a list, a NumPy array or a pandas
    DataFrame with the columns ``x_px``, ``y_px``, ``depth_m``); empty rows are skipped. `size` is the image's
    (height, width)."""
    if cues is None:
        return []
    if hasattr(cues, "to_numpy"):
        cues = cues.to_numpy().tolist()
    elif isinstance(cues, dict) and "data" in cues:  # the Dataframe component's JSON form
        cues = cues["data"]
    height, width = size
    parsed = []
    for index, row in enumerate(cues):
        if all(_blank(value) for value in row):  # an empty row of the table
            continue
        try:
            x, y, depth = (float(value) for value in row)
        except (TypeError, ValueError):
            raise ValueError(f"depth cue {index + 1} must be three numbers x_px, y_px, depth_m, got {row!r}.") from None
        if not (math.isfinite(depth) and depth > 0):
            raise ValueError(f"depth cue {index + 1} needs a positive depth in metres, got {row[2]!r}.")
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"depth cue {index + 1} at ({x:g}, {y:g}) px is outside the {width}x{height} image.")
        parsed.append((int(x), int(y), depth))
    return parsed


def _blank(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def parse_intrinsics(text: str | Sequence[float] | None) -> list[float] | None:
    """``"fx, fy, cx, cy"`` in pixels (or four numbers) -> ``[fx, fy, cx, cy]`` (`check_intrinsics`), None when empty."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    return check_intrinsics(text.replace(",", " ").split() if isinstance(text, str) else text, "intrinsics")


def apply_cues(depth_m: np.ndarray, cues: Sequence[tuple[int, int, float]], radius_px: int = CUE_RADIUS_PX):
    """The input map with each cue's depth written over a disc of `radius_px` pixels around it (a copy)."""
    out = depth_m.copy()
    if not cues:
        return out
    rows, cols = np.ogrid[: out.shape[0], : out.shape[1]]
    for x, y, depth in cues:
        out[(rows - y) ** 2 + (cols - x) ** 2 <= radius_px**2] = depth
    return out


# ----------------------------------------------------------------------------------------------------------------------
# The analysis
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class Completion:
    """One analysed frame. Depth maps are (H, W) float32 metres at the RGB image's size, 0 = no value."""

    rgb: np.ndarray
    input_m: np.ndarray
    completed_m: np.ndarray
    ground_truth_m: np.ndarray | None
    pattern: str
    #: ``{"observed" | "removed" | "all": {"rmse_m", "mae_m", "pixels"}}``; empty without ground truth.
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Fusion layer (0-based block) -> ``|SE_depth| / (|SE_rgb| + |SE_depth|)``.
    depth_share: dict[int, float] = field(default_factory=dict)
    #: ``"RGB L<k>"`` / ``"depth L<k>"`` -> (h, w, 3) PCA colours in [0, 1] on the patch grid.
    feature_maps: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


def _training_note(model_dir: str) -> str:
    """What the folder says about its training; never a claim of quality."""
    folder = Path(model_dir)
    for record in (folder / "pretraining_summary.json", folder.parent / "pretraining_summary.json"):
        if record.is_file():
            try:
                steps = json.loads(record.read_text()).get("steps")
            except (OSError, ValueError):
                steps = None
            if steps == 0:
                return "**untrained**: its training record (`pretraining_summary.json`) counts 0 steps"
            if steps is not None:
                return f"pretrained for {steps} steps (`{record.name}` beside the model)"
    if (folder / "finetune_results.json").is_file():
        return "a fine-tuned head (`finetune_results.json` beside the model)"
    return (
        "**no training record beside the model** (no `pretraining_summary.json`): the weights may be untrained or "
        "randomly initialised; judge them by the metrics, not by the pictures"
    )


class DepthAnalyzer:
    """A completion model loaded once (`load_completion_model`: folders without a trained decoder are refused) and
    the analysis of one frame (`analyze`). GPU when present."""

    def __init__(self, model: str | os.PathLike, device: str | torch.device | None = None) -> None:
        self.model_dir = str(model)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_completion_model(self.model_dir).to(self.device)
        try:  # the processor saved with the model (its training size), from a folder or the Hub
            self.processor = VanishingDepthImageProcessor.from_pretrained(self.model_dir)
        except OSError:  # none saved: the model's defaults
            self.processor = VanishingDepthImageProcessor.from_model_config(self.model.config)
        self.pipeline = DepthCompletionPipeline(model=self.model, image_processor=self.processor, device=self.device)
        self.encoder = self.model.vanishing_depth
        self.training_note = _training_note(self.model_dir)

    def warm_up(self, size: tuple[int, int] = (480, 640)) -> None:
        """One analysis of a synthetic frame, so the first request does not pay for the kernels' first runs."""
        height, width = size
        rgb = np.full((height, width, 3), 128, np.uint8)
        depth = np.full((height, width), 2.0, np.float32)
        self.analyze(rgb, depth, "uniform", 1.0, 0)

    def describe(self) -> str:
        config = self.model.config
        size = self.processor.size
        edge = size.get("shortest_edge") or f"{size.get('height')}x{size.get('width')}"
        return (
            f"Model `{self.model_dir}`: {type(self.model).__name__}, {config.rgb_config.model_type} hidden "
            f"{config.rgb_config.hidden_size}, {config.rgb_config.num_hidden_layers} blocks, fusion layers "
            f"{list(config.fusion_layers)}, input short edge {edge} px, on {self.device.type}; {self.training_note}."
        )

    def analyze(
        self,
        rgb: Image.Image | np.ndarray,
        depth_m: np.ndarray | None,
        pattern: str = "uniform",
        density: float = 1.0,
        seed: int = 0,
        cues: Sequence[tuple[int, int, float]] = (),
        feature_maps: bool = True,
    ) -> Completion:
        """Simulate the input from `depth_m` (the ground truth, or None), add `cues`, complete, score and probe.

        Args:
            rgb: the frame, PIL or (H, W, 3) uint8.
            depth_m: (H, W) metres at the RGB image's size (0 = missing), or None (RGB and cues only, no metrics).
            pattern / density: an `APP_PATTERNS` name and the percent of valid pixels kept (`pattern_spec`).
            seed: seeds the random patterns.
            cues: ``(x_px, y_px, depth_m)`` written into the input (`apply_cues`).
            feature_maps: also compute the PCA maps and depth shares of the fusion layers.
        """
        start = time.perf_counter()
        rgb_array = np.asarray(rgb.convert("RGB") if isinstance(rgb, Image.Image) else rgb)
        if rgb_array.ndim != 3 or rgb_array.shape[-1] != 3 or rgb_array.dtype != np.uint8:
            raise ValueError(f"`rgb` must be an (H, W, 3) uint8 image, got {rgb_array.dtype} {rgb_array.shape}.")
        height, width = rgb_array.shape[:2]
        if depth_m is not None and tuple(depth_m.shape) != (height, width):
            raise ValueError(
                f"the depth map is {depth_m.shape[1]}x{depth_m.shape[0]} px but the RGB image is {width}x{height} px: "
                "give the depth map of this frame at the image's size."
            )
        spec = pattern_spec(pattern, density, height)
        if depth_m is None:
            sparse = np.zeros((height, width), np.float32)
        else:
            truth = torch.from_numpy(np.ascontiguousarray(depth_m, dtype=np.float32))[None, None]
            generator = torch.Generator().manual_seed(int(seed))
            if pattern == "blocky":
                removed = blocky_mask(truth, 1.0 - density / 100.0, generator=generator)
                sparse = torch.where(removed, torch.zeros_like(truth), truth)[0, 0].numpy()
            else:
                sparse = simulate_depth_input(truth, spec, generator=generator)[0, 0].numpy()
        sparse = apply_cues(sparse, cues)
        model_inputs = self.pipeline.preprocess({"image": Image.fromarray(rgb_array), "depth": sparse})
        with torch.inference_mode():
            captured = self._capture_fusions() if feature_maps else None
            try:
                outputs = self.pipeline.forward(model_inputs)
            finally:
                for handle in (captured or {}).pop("handles", []):
                    handle.remove()
            completed = self.pipeline.postprocess(outputs)["predicted_depth"].cpu().numpy().astype(np.float32)
            shares, maps = (
                self._fusion_probe(captured, model_inputs["pixel_values"].shape[-2:]) if captured else ({}, {})
            )
        result = Completion(
            rgb=rgb_array,
            input_m=sparse,
            completed_m=completed,
            ground_truth_m=None if depth_m is None else np.asarray(depth_m, np.float32),
            pattern=spec,
            depth_share=shares,
            feature_maps=maps,
        )
        if depth_m is not None:
            result.metrics = region_metrics(completed, result.ground_truth_m, sparse)
        result.seconds = time.perf_counter() - start
        return result

    def _capture_fusions(self) -> dict:
        """Forward hooks on the fusion modules that keep, per fusion layer, the tokens they see and give during the
        one forward pass: (depth tokens before fusion, RGB tokens, depth tokens after fusion)."""
        captured: dict = {"handles": []}
        for layer, fusion in zip(self.encoder.config.fusion_layers, self.encoder.fusions):

            def keep(module, args, output, layer=layer):
                captured[layer] = (args[0], args[1], output)

            captured["handles"].append(fusion.register_forward_hook(keep))
        return captured

    def _fusion_probe(self, captured: dict, size) -> tuple[dict[int, float], dict[str, np.ndarray]]:
        """Depth share and PCA maps at each fusion layer (`probe_fusion_layers`, as the feature study draws them),
        labelled ``RGB L<layer>`` / ``depth L<layer>`` for the page."""
        probe = probe_fusion_layers(self.encoder, captured, *size)
        labels = {"rgb": "RGB", "depth": "depth"}
        maps = {}
        for name, colours in probe["pictures"].items():
            stream, layer = name.split(" ")
            maps[f"{labels[stream]} {layer}"] = colours[0]
        return probe["depth_share"], maps


def region_metrics(completed_m: np.ndarray, ground_truth_m: np.ndarray, input_m: np.ndarray):
    """RMSE and MAE (metres) of `completed_m` against `ground_truth_m` on the observed pixels (input > 0), the removed
    pixels (valid ground truth that was not an input) and all valid pixels; NaN where a region has no pixel."""
    valid = ground_truth_m > _MIN_EVAL_DEPTH_M
    regions = {"observed": valid & (input_m > 0), "removed": valid & ~(input_m > 0), "all": valid}
    metrics = {}
    for name, mask in regions.items():
        pixels = int(mask.sum())
        if pixels == 0:
            metrics[name] = {"rmse_m": float("nan"), "mae_m": float("nan"), "pixels": 0}
            continue
        # The region's pixels as one (1, N) map: the metrics of one image, computed on those pixels only.
        values = compute_depth_metrics(
            torch.from_numpy(completed_m[mask][None]),
            torch.from_numpy(ground_truth_m[mask][None]),
            min_depth_m=_MIN_EVAL_DEPTH_M,
        )
        metrics[name] = {"rmse_m": values["rmse_m"], "mae_m": values["mae_m"], "pixels": pixels}
    return metrics


def format_metrics(result: Completion) -> str:
    """The metrics as a Markdown table (metres), or a line saying why there are none."""
    lines = [
        f"Input pattern `{result.pattern}`: {int((result.input_m > 0).sum())} input pixels; {result.seconds:.2f} s."
    ]
    if not result.metrics:
        lines.append("\nNo ground truth (no depth map given): no errors to show.")
        return "\n".join(lines)
    lines += ["", "| pixels | RMSE (m) | MAE (m) | count |", "|---|---|---|---|"]
    for name, values in result.metrics.items():
        if values["pixels"] == 0:
            lines.append(f"| {name} | n/a | n/a | 0 |")
        else:
            lines.append(f"| {name} | {values['rmse_m']:.4f} | {values['mae_m']:.4f} | {values['pixels']} |")
    return "\n".join(lines)


def format_depth_share(result: Completion) -> str:
    if not result.depth_share:
        return ""
    lines = ["| fusion layer | depth share |", "|---|---|"]
    lines += [f"| {layer} | {share:.3f} |" for layer, share in result.depth_share.items()]
    return "Share of the fused tokens that comes from depth, |SE_depth| / (|SE_rgb| + |SE_depth|):\n\n" + "\n".join(
        lines
    )


# ----------------------------------------------------------------------------------------------------------------------
# Pictures and files
# ----------------------------------------------------------------------------------------------------------------------
def _visible_points(depth_m: np.ndarray) -> np.ndarray:
    """Sparse inputs drawn with each point grown to 3x3 pixels (a picture only; the model saw single pixels)."""
    if (depth_m > 0).mean() >= 0.1:
        return depth_m
    grown = F.max_pool2d(torch.from_numpy(depth_m)[None, None], kernel_size=3, stride=1, padding=1)[0, 0].numpy()
    return np.where(depth_m > 0, depth_m, grown)


def millimetre_range(depth_m: np.ndarray) -> np.ndarray:
    """Depth as a 16-bit millimetre PNG can hold it: clipped to 65.535 m, and below half a millimetre (it would round
    to the PNG's 0 = no value) set to 0."""
    return np.where(depth_m >= 0.0005, np.minimum(depth_m, MAX_PNG_DEPTH_M), 0.0).astype(np.float32)


def error_map(result: Completion) -> np.ndarray | None:
    """|completed - ground truth| in metres where the ground truth is valid, else 0."""
    if result.ground_truth_m is None:
        return None
    valid = result.ground_truth_m > _MIN_EVAL_DEPTH_M
    return np.where(valid, np.abs(result.completed_m - result.ground_truth_m), 0.0).astype(np.float32)


def feature_pictures(result: Completion, width_px: int = 224) -> list[tuple[Image.Image, str]]:
    """The PCA maps as pictures (nearest-upscaled patch grids) with their captions."""
    pictures = []
    for name, colours in result.feature_maps.items():
        height = max(1, round(width_px * colours.shape[0] / colours.shape[1]))
        image = Image.fromarray((colours * 255.0 + 0.5).astype(np.uint8))
        pictures.append((image.resize((width_px, height), Image.NEAREST), name))
    return pictures


def point_cloud_file(
    path: str | os.PathLike, depth_m: np.ndarray, rgb: np.ndarray, intrinsics, max_points: int = MAX_PLY_POINTS
) -> Path:
    """The completed map as a coloured binary PLY (`vanishing_depth.data.depth_to_pointcloud`, `write_ply`), the pixel
    grid subsampled to `max_points` at most, written with y up and z toward the viewer (x, -y, -z: the convention of
    3D viewers, where the camera frame has y down and z forward)."""
    height, width = depth_m.shape
    step = max(1, math.ceil(math.sqrt(height * width / max_points)))
    on_grid = np.zeros_like(depth_m)
    on_grid[::step, ::step] = depth_m[::step, ::step]
    points, colours = depth_to_pointcloud(on_grid, intrinsics, rgb)
    return write_ply(path, points * np.array([1.0, -1.0, -1.0], np.float32), colours)


# ----------------------------------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------------------------------
class _Session:
    """The app's handlers around one `DepthAnalyzer`, with the temporary folder all its files go to."""

    def __init__(self, analyzer: DepthAnalyzer, temp_dir: str | os.PathLike | None = None) -> None:
        self.analyzer = analyzer
        if temp_dir is None:
            temp_dir = tempfile.mkdtemp(prefix="vanishing-depth-app-")
            atexit.register(shutil.rmtree, temp_dir, ignore_errors=True)
        self.temp_dir = Path(temp_dir).resolve()
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self._frames = None

    # -- files ---------------------------------------------------------------------------------------------------------
    def _readable(self, path: str | os.PathLike, what: str) -> Path:
        """Only files in Gradio's upload folder or the app's temporary folder are read."""
        resolved = Path(path).resolve()
        roots = (self.temp_dir, Path(get_upload_folder()).resolve())
        if not any(resolved.is_relative_to(root) for root in roots):
            raise gr.Error(f"{what}: the app reads only files uploaded through the page or the API.")
        if not resolved.is_file():
            raise gr.Error(f"{what}: the uploaded file is gone; upload it again.")
        return resolved

    def _new_folder(self) -> Path:
        """A fresh folder for one request's files; folders of requests older than `_KEEP_FILES_S` are removed (Gradio
        has copied what it serves into its own cache by then)."""
        now = time.time()
        for old in self.temp_dir.iterdir():
            if old.is_dir() and now - old.stat().st_mtime > _KEEP_FILES_S:
                shutil.rmtree(old, ignore_errors=True)
        folder = self.temp_dir / uuid.uuid4().hex
        folder.mkdir()
        return folder

    def bundled_frames(self):
        if self._frames is None:
            self._frames = load_demo_corpus("test")
        return self._frames

    def bundled_frame(self, index: int) -> tuple[str, str, str, float, str, list]:
        """Write bundled frame `index` into the temporary folder: (RGB path, 16-bit mm depth path, format, scale,
        intrinsics text, no cues)."""
        row = self.bundled_frames()[int(index)]
        rgb, depth_m = decode_rgbd_row(row)
        folder = self._new_folder()
        name = str(row.get("frame_id") or index)
        rgb_path, depth_path = folder / f"{name}_rgb.png", folder / f"{name}_depth_mm.png"
        Image.fromarray(rgb).save(rgb_path)
        save_depth(depth_path, depth_m, "mm")
        intrinsics = row.get("intrinsics")
        text = ", ".join(f"{value:g}" for value in intrinsics) if intrinsics else ""
        return str(rgb_path), str(depth_path), "mm", 0.0, text, []

    # -- the main action -----------------------------------------------------------------------------------------------
    def complete(
        self,
        rgb,
        depth,
        depth_format: str = "mm",
        pattern: str = "uniform",
        density: float = 1.0,
        seed: float = 0,
        depth_scale: float = 0.0,
        cues=None,
        intrinsics: str = "",
        colour_scale_m: float = DEFAULT_COLOUR_SCALE_M,
        error_scale_m: float = DEFAULT_ERROR_SCALE_M,
        feature_maps: bool = True,
    ):
        """Complete one frame; errors become `gr.Error` messages in the page. Returns the page's outputs: completed
        depth, input, error map (pictures), metrics (Markdown), PCA maps (gallery), depth share (Markdown), the
        16-bit millimetre PNG, the PLY (or None) and a status line."""
        try:
            return self._complete(
                rgb,
                depth,
                depth_format,
                pattern,
                density,
                seed,
                depth_scale,
                cues,
                intrinsics,
                colour_scale_m,
                error_scale_m,
                feature_maps,
            )
        except gr.Error:
            raise
        except (ValueError, FileNotFoundError, OSError) as error:
            raise gr.Error(self._clean(str(error))) from None

    def _clean(self, message: str) -> str:
        """Error messages name uploaded files by their names, not by the server's temporary paths."""
        for root in (str(self.temp_dir), str(Path(get_upload_folder()).resolve()), get_upload_folder()):
            message = re.sub(re.escape(root.rstrip(os.sep) + os.sep) + r"(?:[^/\\\s]+[/\\])*", "", message)
        return message

    def _complete(
        self,
        rgb,
        depth,
        depth_format,
        pattern,
        density,
        seed,
        depth_scale,
        cues,
        intrinsics,
        colour_scale_m,
        error_scale_m,
        feature_maps,
    ):
        if not rgb:
            raise gr.Error("Give an RGB image (upload one or pick a bundled frame).")
        image = load_rgb(self._readable(_file_path(rgb), "rgb"))
        depth_m = None
        if depth:
            depth_path = self._readable(_file_path(depth), "depth")
            if depth_format not in ("auto", *DEPTH_FORMATS):
                raise ValueError(f"`depth_format` must be one of {['auto', *DEPTH_FORMATS]}, got {depth_format!r}.")
            depth_m = read_depth_upload(depth_path, depth_format, depth_scale or None)
        if not (isinstance(seed, (int, float)) and math.isfinite(seed)):
            raise ValueError(f"`seed` must be an integer, got {seed!r}.")
        far = _positive(colour_scale_m, "colour scale", DEFAULT_COLOUR_SCALE_M)
        error_far = _positive(error_scale_m, "error scale", DEFAULT_ERROR_SCALE_M)
        camera = parse_intrinsics(intrinsics)
        result = self.analyzer.analyze(
            image,
            depth_m,
            pattern,
            density,
            int(seed),
            parse_cues(cues, (image.height, image.width)),
            feature_maps=bool(feature_maps),
        )
        folder = self._new_folder()
        png = folder / "completed_depth_mm.png"
        save_depth(png, millimetre_range(result.completed_m), "mm")
        ply = None
        if camera is not None:
            ply = str(point_cloud_file(folder / "completed_depth.ply", result.completed_m, result.rgb, camera))
        errors = error_map(result)
        return (
            colorize_depth(result.completed_m, far),
            colorize_depth(_visible_points(result.input_m), far),
            None if errors is None else colorize_depth(errors, error_far),
            format_metrics(result),
            feature_pictures(result),
            format_depth_share(result),
            str(png),
            ply,
            self.analyzer.describe(),
        )


def _file_path(value: Any) -> str:
    """A path from what Gradio hands a handler: a string, or a file dict / object with a ``path``."""
    if isinstance(value, dict):
        value = value.get("path") or value.get("name")
    return str(getattr(value, "path", value))


def _positive(value: Any, name: str, default: float) -> float:
    if value in (None, "", 0):
        return default
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"the {name} must be a positive number of metres, got {value!r}.")
    return number


def _add_cue(cues, cue_depth_m, event: gr.SelectData):
    """A click on the image adds a cue at the clicked pixel with the depth set beside it."""
    rows = [] if cues is None else (cues.to_numpy().tolist() if hasattr(cues, "to_numpy") else list(cues))
    rows = [row for row in rows if not all(_blank(value) for value in row)]
    x, y = event.index[:2]
    rows.append([int(x), int(y), float(cue_depth_m or 0.0)])
    return rows


def build_app(analyzer: DepthAnalyzer, temp_dir: str | os.PathLike | None = None) -> gr.Blocks:
    """The page around `analyzer`. Its main action is the API endpoint ``complete``."""
    session = _Session(analyzer, temp_dir)
    frames = session.bundled_frames()
    # No telemetry and no version check: the page talks to this machine only.
    with gr.Blocks(title="Vanishing Depth Analyzer", delete_cache=(3600, 3600), analytics_enabled=False) as demo:
        demo.session = session  # for tests and `launch_app`
        gr.Markdown(
            "# Vanishing Depth Analyzer\nAn RGB image and a depth map (the ground truth); a removal pattern keeps "
            "`density` % of it as the model's input, clicked points add depth cues. Depth in metres throughout."
        )
        status = gr.Markdown(analyzer.describe(), elem_id="status")
        with gr.Row():
            with gr.Column(scale=1):
                rgb = gr.Image(type="filepath", label="RGB image (click to add a depth cue)", elem_id="rgb")
                depth = gr.File(label="Depth map (ground truth)", file_types=_DEPTH_FILE_TYPES, elem_id="depth")
                gr.Markdown("Bundled Redwood frames (one click):")
                with gr.Row():
                    frame_buttons = [
                        gr.Button(f"frame {row}", size="sm", elem_id=f"frame-{index}")
                        for index, row in enumerate(frames["frame_id"])
                    ]
                with gr.Row():
                    depth_format = gr.Dropdown(
                        ["auto", *DEPTH_FORMATS], value="mm", label="depth format", elem_id="depth-format"
                    )
                    depth_scale = gr.Number(0.0, label="depth_scale (m per unit; 0 = use the format)")
                pattern = gr.Dropdown(
                    [(label, value) for value, label in APP_PATTERNS.items()],
                    value="uniform",
                    label="removal pattern",
                    elem_id="pattern",
                )
                density = gr.Slider(
                    MIN_DENSITY_PERCENT,
                    MAX_DENSITY_PERCENT,
                    value=10.0,
                    step=0.1,
                    label="density: % of the valid pixels kept",
                    elem_id="density",
                )
                seed = gr.Number(0, precision=0, label="seed")
                with gr.Accordion("Depth cues by hand", open=False):
                    cue_depth = gr.Number(2.0, label="depth of the next clicked point (m)")
                    cues = gr.Dataframe(
                        headers=_CUE_COLUMNS,
                        datatype=["number", "number", "number"],
                        value=None,
                        label="cues (x_px, y_px, depth_m)",
                        interactive=True,
                    )
                    clear = gr.Button("clear cues", size="sm")
                with gr.Accordion("Display and camera", open=False):
                    intrinsics = gr.Textbox("", label="intrinsics fx, fy, cx, cy (px) for the point cloud")
                    colour_scale = gr.Number(DEFAULT_COLOUR_SCALE_M, label="depth colour scale: far end (m)")
                    error_scale = gr.Number(DEFAULT_ERROR_SCALE_M, label="error colour scale: far end (m)")
                    show_features = gr.Checkbox(True, label="PCA maps and depth share of the fusion layers")
                run = gr.Button("Complete depth", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                completed = gr.Image(label="completed depth (m)", type="pil", elem_id="completed", format="png")
                metrics = gr.Markdown(elem_id="metrics")
                with gr.Row():
                    shown_input = gr.Image(label="input depth (m)", type="pil", elem_id="input", format="png")
                    errors = gr.Image(label="|error| (m)", type="pil", elem_id="error", format="png")
                features = gr.Gallery(
                    label="PCA of the RGB and depth tokens per fusion layer", columns=4, object_fit="contain"
                )
                share = gr.Markdown(elem_id="depth-share")
                with gr.Row():
                    download = gr.File(label="completed depth, 16-bit PNG in mm", elem_id="download")
                    cloud = gr.Model3D(label="point cloud (needs intrinsics)", display_mode="point_cloud")

        for index, button in enumerate(frame_buttons):
            button.click(
                lambda index=index: session.bundled_frame(index),
                outputs=[rgb, depth, depth_format, depth_scale, intrinsics, cues],
                api_name=False,
            )
        rgb.select(_add_cue, inputs=[cues, cue_depth], outputs=[cues], api_name=False)
        clear.click(lambda: [], outputs=[cues], api_name=False)
        run.click(
            session.complete,
            inputs=[
                rgb,
                depth,
                depth_format,
                pattern,
                density,
                seed,
                depth_scale,
                cues,
                intrinsics,
                colour_scale,
                error_scale,
                show_features,
            ],
            outputs=[completed, shown_input, errors, metrics, features, share, download, cloud, status],
            api_name="complete",
        )
    return demo


def launch_app(
    model: str | os.PathLike | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    **launch_kwargs: Any,
):
    """Load `model` (`resolve_model_dir`), build the page and serve it on `host`:`port` (a public Gradio link only
    with `share`)."""
    analyzer = DepthAnalyzer(resolve_model_dir(model))
    analyzer.warm_up()
    demo = build_app(analyzer)
    return demo.launch(
        server_name=host,
        server_port=int(port),
        share=bool(share),
        allowed_paths=[str(demo.session.temp_dir)],
        **launch_kwargs,
    )
