# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""The `depth-completion` pipeline: an RGB image plus whatever depth a sensor gives -> dense metric depth.

```python
import vanishing_depth  # registers the task with transformers' PIPELINE_REGISTRY
from transformers import pipeline

complete = pipeline("depth-completion", model="runs/vits/pretraining")  # pretraining or depth-head folder, Hub id
out = complete(rgb, depth=sparse_m)          # out["predicted_depth"]: (H, W) metres; out["depth"]: PIL picture
```

Saved folders carry this file and declare it in `config.json` (`custom_pipelines`), so
`pipeline("depth-completion", model=repo, trust_remote_code=True)` also works where the package is not installed.
This module imports only the flat modules saved next to it and transformers, torch, NumPy and PIL.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoConfig, Pipeline
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator
from transformers.utils import logging

from .image_processing_vanishing_depth import VanishingDepthImageProcessor, depth_to_metres
from .modeling_vanishing_depth import VanishingDepthForDepthEstimation, VanishingDepthForPretraining

logger = logging.get_logger(__name__)

COMPLETION_ARCHITECTURES = ("VanishingDepthForPretraining", "VanishingDepthForDepthEstimation")
_HUB_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "trust_remote_code", "subfolder")
_USE_INSTEAD = (
    "Depth completion needs a trained decoder: use a pretraining folder (RUN/pretraining, a VanishingDepthForPretraining "
    "written by `vanishing-depth pretrain`) or a depth-completion head (a VanishingDepthForDepthEstimation written by "
    "`vanishing-depth finetune --task depth`)."
)


# ----------------------------------------------------------------------------------------------------------------------
# Loading a completion model: the class follows the folder's architecture, and untrained decoders are refused
# ----------------------------------------------------------------------------------------------------------------------
def load_completion_model(pretrained_model_name_or_path, **kwargs):
    """Load a depth-completion model with the class its `config.json` names, refusing folders without a trained decoder.

    A pretraining folder (`VanishingDepthForPretraining`) completes depth through its U-Net decoder, a depth head folder
    (`VanishingDepthForDepthEstimation`) through its DPT-style head. An encoder, segmentation or classification folder
    holds no depth decoder: loading it as a completion model would run a randomly initialised one, so it raises a
    `ValueError` naming what is missing and which folder to use. `kwargs` go to `from_pretrained`.
    """
    config = kwargs.pop("config", None)
    if not hasattr(config, "architectures"):
        hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
        config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
    architecture = (getattr(config, "architectures", None) or ["VanishingDepthModel"])[0]
    if architecture not in COMPLETION_ARCHITECTURES:
        raise ValueError(
            f"{str(pretrained_model_name_or_path)!r} holds a {architecture}, which has no depth decoder; loading it for "
            f"depth completion would run a randomly initialised one. {_USE_INSTEAD}"
        )
    model_class = {
        "VanishingDepthForPretraining": VanishingDepthForPretraining,
        "VanishingDepthForDepthEstimation": VanishingDepthForDepthEstimation,
    }[architecture]
    kwargs.pop("_from_pipeline", None)
    model = model_class.from_pretrained(pretrained_model_name_or_path, config=config, **kwargs)
    model.check_trained_weights("depth completion", instead=_USE_INSTEAD)
    return model.eval()


def completed_depth(predicted_depth) -> torch.Tensor:
    """The completed map `(B, H, W)` metres of a completion model's `predicted_depth`: the full-resolution one of the
    pretraining decoder's four scales (`(B, 1, H, W)` each, full resolution first), or a depth head's `(B, H, W)`."""
    if isinstance(predicted_depth, (tuple, list)):
        predicted_depth = predicted_depth[0]
    return predicted_depth[:, 0] if predicted_depth.ndim == 4 else predicted_depth


class AutoModelForDepthCompletion:
    """`from_pretrained` picks the completion class a folder was saved with (see `load_completion_model`); the model
    class `PIPELINE_REGISTRY` loads the `depth-completion` task with."""

    from_pretrained = staticmethod(load_completion_model)

    def __init__(self, *args, **kwargs) -> None:
        raise OSError(
            "AutoModelForDepthCompletion is not instantiated: use AutoModelForDepthCompletion.from_pretrained."
        )


# ----------------------------------------------------------------------------------------------------------------------
# A fixed metric colour scale with a legend in metres
# ----------------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _colour_table() -> np.ndarray:
    """(256, 3) uint8 'turbo' colours (matplotlib, a dependency of the package); grey levels without matplotlib."""
    try:
        from matplotlib import colormaps

        return (colormaps["turbo"](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)
    except ImportError:
        logger.warning_once("matplotlib is not installed: depth pictures are drawn in grey levels.")
        return np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)


def _tick_step(max_depth_m: float) -> float:
    """A 1-2-5 step giving 3 to 8 ticks over [0, max_depth_m]."""
    for magnitude in (10.0**k for k in range(-2, 4)):
        for step in (1.0, 2.0, 5.0):
            if max_depth_m / (step * magnitude) <= 7:
                return step * magnitude
    return max_depth_m


def colorize_depth(depth_m, max_depth_m: float, legend: bool = True):
    """Metric depth `(H, W)` -> an RGB PIL image on the FIXED scale 0 .. `max_depth_m` metres ('turbo' colours, far
    red; 0 = no value drawn black), with a colour bar in metres under it. Two maps drawn with the same `max_depth_m`
    are comparable pixel by pixel, unlike a per-image min-max picture."""
    from PIL import Image, ImageDraw

    depth = depth_m.detach().float().cpu().numpy() if isinstance(depth_m, torch.Tensor) else np.asarray(depth_m)
    if depth.ndim != 2:
        raise ValueError(f"`depth_m` must be a (H, W) map in metres, got shape {depth.shape}.")
    if not max_depth_m > 0:
        raise ValueError(f"`max_depth_m` must be a positive number of metres, got {max_depth_m!r}.")
    table = _colour_table()
    indices = np.clip(np.nan_to_num(depth, nan=0.0) / max_depth_m * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rgb = table[indices]
    rgb[~(depth > 0)] = 0
    picture = Image.fromarray(rgb, mode="RGB")
    if not legend:
        return picture
    height, width = depth.shape
    bar_height, label_height = max(8, height // 24), 14
    canvas = Image.new("RGB", (width, height + bar_height + label_height + 4), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    bar = table[np.linspace(0, 255, width).astype(np.int64)][None].repeat(bar_height, axis=0)
    canvas.paste(Image.fromarray(np.ascontiguousarray(bar), mode="RGB"), (0, height + 2))
    draw = ImageDraw.Draw(canvas)
    step = _tick_step(max_depth_m)
    for tick in np.arange(0.0, max_depth_m + 1e-9, step):
        x = min(width - 1, int(round(tick / max_depth_m * (width - 1))))
        draw.line([(x, height + 2), (x, height + 2 + bar_height)], fill=(0, 0, 0))
        label = f"{tick:g} m"
        text_width = draw.textlength(label)
        draw.text((min(max(0, x - text_width / 2), width - text_width), height + bar_height + 3), label, fill=(0, 0, 0))
    return canvas


# ----------------------------------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------------------------------
def _read_depth_file(path: str, depth_format: str | None) -> np.ndarray:
    try:
        from vanishing_depth.data.depth_io import load_depth
    except ImportError as error:
        raise ValueError(
            f"`depth` is a path ({path!r}): reading depth files needs the vanishing-depth package "
            "(`pip install vanishing-depth`); without it pass the map itself (NumPy / torch / PIL, float metres or an "
            "integer map with `depth_scale`)."
        ) from error
    return load_depth(path, format=depth_format or "auto")


def _read_image_file(path: str, timeout: float | None):
    """An RGB path (with the package: `load_rgb`, EXIF orientation applied) or URL, errors naming it."""
    from transformers.image_utils import load_image

    if not path.startswith(("http://", "https://")):
        try:
            from vanishing_depth.data.image_io import load_rgb
        except ImportError:
            pass
        else:
            return load_rgb(path)
    try:
        return load_image(path, timeout=timeout)
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot be read as an RGB image ({type(error).__name__}: {error}).") from None


def _decode_depth(depth: Any, depth_format: str | None) -> Any:
    """Paths are read with `load_depth`; in-memory integer maps with a `depth_format` are decoded by its rules."""
    if isinstance(depth, str) or hasattr(depth, "__fspath__"):
        return _read_depth_file(str(depth), depth_format)
    if depth_format is None or depth is None:
        return depth
    try:
        from vanishing_depth.data.depth_io import decode_depth_array
    except ImportError as error:
        raise ValueError(
            "`depth_format` needs the vanishing-depth package; without it pass float metres, or an integer map with "
            "`depth_scale` (metres per unit)."
        ) from error
    if isinstance(depth, torch.Tensor):
        depth = depth.detach().cpu().numpy()
    return decode_depth_array(depth, depth_format)


class DepthCompletionPipeline(Pipeline):
    """Depth completion: an RGB image plus sparse, holed or no depth -> dense metric depth in metres.

    Inputs: one image (PIL, NumPy (H, W, 3), torch (3, H, W), a path or URL) with `depth=` (NumPy / torch / PIL maps
    in float metres, integer sensor maps with `depth_scale=` metres per unit or `depth_format=`, or a depth file path
    read with `vanishing_depth.data.load_depth(path, format=depth_format)`); or a list of
    `{"image": ..., "depth": ...}` dicts (`batch_size=` batches them). Without depth the model runs on RGB alone.

    Parameters per call: `depth_format`, `depth_scale`, `keep_measured` (measured pixels pass through unchanged; a depth
    map coarser than the image gives one measurement per depth pixel, at the image pixel under its centre),
    `depth_range_m` (the colour scale of the picture, default 0 .. the model's `max_depth`), `timeout` (image URLs).

    Returns one dict per input: `predicted_depth` (`torch.FloatTensor` `(H, W)`, metres, at the input image's size with
    the processor's padding removed), `depth` (a PIL picture on a fixed metric colour scale with a legend in metres).
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False
    _load_video_processor = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.image_processor is None:
            self.image_processor = VanishingDepthImageProcessor.from_model_config(self.model.config)
        architecture = type(self.model).__name__
        if architecture not in COMPLETION_ARCHITECTURES:
            raise ValueError(
                f"The depth-completion pipeline runs a VanishingDepthForPretraining or VanishingDepthForDepthEstimation, "
                f"got a {architecture}. {_USE_INSTEAD}"
            )
        self.model.check_trained_weights("depth completion", instead=_USE_INSTEAD)

    # -- call and parameters -------------------------------------------------------------------------------------------
    def __call__(self, inputs: Any = None, depth: Any = None, **kwargs):
        """Complete one image (`inputs` with `depth=`) or a list of images / `{"image", "depth"}` dicts."""
        if inputs is None:
            inputs = kwargs.pop("images", None)
        if inputs is None:
            raise ValueError("`inputs` must be an RGB image (PIL, array, path) or a list of {'image', 'depth'} dicts.")
        if isinstance(inputs, (list, tuple)):
            depths = (
                list(depth) if isinstance(depth, (list, tuple)) else [depth] * len(inputs) if depth is None else None
            )
            if depths is None or len(depths) != len(inputs):
                raise ValueError(
                    f"`depth` must be None or a list with one map per image ({len(inputs)} images); got "
                    f"{type(depth).__name__}. Or pass a list of {{'image': ..., 'depth': ...}} dicts."
                )
            items = [self._as_item(item, item_depth) for item, item_depth in zip(inputs, depths)]
            return super().__call__(items, **kwargs)
        return super().__call__(self._as_item(inputs, depth), **kwargs)

    @staticmethod
    def _as_item(item: Any, depth: Any) -> dict:
        if isinstance(item, Mapping):
            if "image" not in item:
                raise ValueError(
                    f"Each input dict needs an 'image' (and optionally a 'depth'), got keys {sorted(item)}."
                )
            if depth is not None and item.get("depth") is not None:
                raise ValueError("Depth was given twice: in the input dict and as `depth=`.")
            return {"image": item["image"], "depth": item.get("depth", depth)}
        return {"image": item, "depth": depth}

    def _sanitize_parameters(
        self, depth_format=None, depth_scale=None, keep_measured=None, depth_range_m=None, timeout=None, **kwargs
    ):
        if kwargs:
            raise ValueError(f"Unknown arguments to the depth-completion pipeline: {sorted(kwargs)}.")
        preprocess, postprocess = {}, {}
        if depth_format is not None:
            preprocess["depth_format"] = depth_format
        if depth_scale is not None:
            preprocess["depth_scale"] = depth_scale
        if timeout is not None:
            preprocess["timeout"] = timeout
        if keep_measured is not None:
            preprocess["keep_measured"] = bool(keep_measured)
            postprocess["keep_measured"] = bool(keep_measured)
        if depth_range_m is not None:
            if not (isinstance(depth_range_m, (int, float)) and depth_range_m > 0):
                raise ValueError(
                    f"`depth_range_m` must be the far end of the colour scale in metres, got {depth_range_m!r}."
                )
            postprocess["depth_range_m"] = float(depth_range_m)
        return preprocess, {}, postprocess

    # -- the three stages ----------------------------------------------------------------------------------------------
    def preprocess(self, item, depth_format=None, depth_scale=None, keep_measured=False, timeout=None):

        image = item["image"]
        if isinstance(image, str) or hasattr(image, "__fspath__"):
            image = _read_image_file(str(image), timeout)
        processor = self.image_processor
        depth = _decode_depth(item["depth"], depth_format)
        if depth is not None:
            # Metres once, with the processor's unit and range rules (its checks pass again quietly below).
            depth = depth_to_metres(
                depth,
                depth_scale if depth_scale is not None else processor.depth_scale,
                scale_applies_to_float=depth_scale is not None,
                max_depth_m=processor.max_valid_depth,
            )
            depth = processor.handle_far_depth(depth)
        inputs = processor(images=image, depth=depth, return_tensors="pt")
        height, width = _image_size(image)
        model_inputs = {
            "pixel_values": inputs["pixel_values"].to(self.dtype),
            "depth_values": inputs["depth_values"],
            "resized_sizes": inputs["resized_sizes"],
            "target_sizes": torch.tensor([[height, width]]),
        }
        if keep_measured:
            measured = np.zeros((height, width), np.float32) if depth is None else depth
            model_inputs["measured_depth"] = [_measurements_on_image_grid(measured, (height, width))]
        return model_inputs

    def _forward(self, model_inputs):
        outputs = self.model(pixel_values=model_inputs["pixel_values"], depth_values=model_inputs["depth_values"])
        predicted = completed_depth(outputs.predicted_depth)
        result = {
            "predicted_depth": predicted.float(),
            "resized_sizes": model_inputs["resized_sizes"],
            "padded_size": torch.tensor([list(model_inputs["pixel_values"].shape[-2:])] * predicted.shape[0]),
            "target_sizes": model_inputs["target_sizes"],
        }
        if "measured_depth" in model_inputs:
            result["measured_depth"] = model_inputs["measured_depth"]
        return result

    def postprocess(self, model_outputs, keep_measured=False, depth_range_m=None):
        predicted = model_outputs["predicted_depth"]
        (depth,) = self.image_processor.post_process_depth_estimation(
            {"predicted_depth": predicted[:1]},
            target_sizes=model_outputs["target_sizes"][:1].tolist(),
            resized_sizes=model_outputs["resized_sizes"][:1],
            padded_size=tuple(model_outputs["padded_size"][0].tolist()),
        )
        depth = depth["predicted_depth"].float().clamp_min(0.0)
        if keep_measured:
            measured = torch.from_numpy(np.asarray(model_outputs["measured_depth"][0], dtype=np.float32))
            measured = measured.reshape(depth.shape)
            depth = torch.where(measured > 0, measured, depth)
        far = depth_range_m or float(self.model.config.max_depth)
        return {"predicted_depth": depth, "depth": colorize_depth(depth, far)}

    # -- batching: images of different sizes are padded like the image processor pads a batch ------------------------
    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        if batch_size == 1:
            return super().get_iterator(
                inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params
            )
        from torch.utils.data import DataLoader

        dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=_collate)
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)


def _measurements_on_image_grid(depth_m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The measured depth (metres, 0 = none) on the image's `(height, width)` grid, for `keep_measured`.

    A map at least as fine as the image is sampled with nearest neighbour. A coarser map (a low-resolution ToF or
    LiDAR map, e.g. ARKit's 256x192 under a 1920x1440 image) holds one measurement per depth pixel, not one per image
    pixel: each lands on the image pixel under its centre and the pixels between stay unmeasured, so the model's
    completion is kept there instead of a blocky upsampling."""
    height, width = size
    depth_h, depth_w = depth_m.shape
    if depth_h >= height and depth_w >= width:
        rows = np.minimum(((np.arange(height) + 0.5) * depth_h / height).astype(np.int64), depth_h - 1)
        cols = np.minimum(((np.arange(width) + 0.5) * depth_w / width).astype(np.int64), depth_w - 1)
        return np.ascontiguousarray(depth_m[rows[:, None], cols[None, :]], dtype=np.float32)
    rows = np.minimum(((np.arange(depth_h) + 0.5) * height / depth_h).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(depth_w) + 0.5) * width / depth_w).astype(np.int64), width - 1)
    on_image = np.zeros((height, width), dtype=np.float32)
    on_image[rows[:, None], cols[None, :]] = depth_m
    return on_image


def _image_size(image: Any) -> tuple[int, int]:
    """(height, width) of a PIL image, an (H, W, 3) array or a (3, H, W) tensor, as the image processor reads it."""
    if hasattr(image, "size") and not isinstance(image, (np.ndarray, torch.Tensor)):
        width, height = image.size
        return int(height), int(width)
    shape = tuple(image.shape)
    if isinstance(image, torch.Tensor) and len(shape) == 3 and shape[0] in (1, 3) and shape[-1] not in (1, 3):
        return int(shape[1]), int(shape[2])
    return int(shape[0]), int(shape[1])


def _collate(items: Sequence[dict]) -> dict:
    """Pad `pixel_values` / `depth_values` of single-image inputs to the largest (zeros: missing depth) and stack."""
    height = max(item["pixel_values"].shape[-2] for item in items)
    width = max(item["pixel_values"].shape[-1] for item in items)

    def pad(tensor: torch.Tensor) -> torch.Tensor:
        return F.pad(tensor, (0, width - tensor.shape[-1], 0, height - tensor.shape[-2]))

    batch = {
        "pixel_values": torch.cat([pad(item["pixel_values"]) for item in items]),
        "depth_values": torch.cat([pad(item["depth_values"]) for item in items]),
        "resized_sizes": torch.cat([item["resized_sizes"] for item in items]),
        "target_sizes": torch.cat([item["target_sizes"] for item in items]),
    }
    if "measured_depth" in items[0]:
        batch["measured_depth"] = [item["measured_depth"][0] for item in items]
    return batch


__all__ = [
    "AutoModelForDepthCompletion",
    "COMPLETION_ARCHITECTURES",
    "DepthCompletionPipeline",
    "colorize_depth",
    "completed_depth",
    "load_completion_model",
]
