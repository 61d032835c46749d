# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Image processor for Vanishing Depth: RGB + metric depth (+ optional segmentation labels) -> model inputs.

Pure torch / NumPy / PIL: no torchvision. RGB is resized (bicubic, antialiased), rescaled and ImageNet-normalised;
depth is converted to float metres and moved onto the RGB grid with nearest-neighbour sampling only (averaging depth
across an edge invents surfaces that do not exist); both are padded (or resized) to a multiple of the patch size. The
padding is recorded in ``resized_sizes`` so the ``post_process_*`` methods can undo it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.utils import logging

from .configuration_vanishing_depth import DEPTH_ENCODINGS, DEPTH_PATCH_NORMALIZATIONS
from .depth_encoding_vanishing_depth import PDE_FLOAT_ORDERS, encode_depth_input

logger = logging.get_logger(__name__)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
FAR_DEPTH_MODES = ("drop", "rescale", "keep")
MULTIPLE_MODES = ("pad", "resize")


def _rgb_to_float_hwc(image: Any, index: int) -> np.ndarray:
    """One RGB image as float32 (H, W, 3) in [0, 255]."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    elif isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
            image = image.transpose(1, 2, 0)  # CHW -> HWC
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"`images[{index}]` must be an RGB image (H, W, 3) or (3, H, W), got shape {image.shape}.")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"`images[{index}]` is empty (shape {image.shape}); an RGB image needs H, W >= 1.")
    if np.issubdtype(image.dtype, np.floating) and image.size and float(np.nanmax(image)) <= 1.0:
        image = image * 255.0  # float images in [0, 1]
    return image.astype(np.float32)


# A float map whose median valid depth exceeds the far limit by this factor is not metres (millimetres passed as metres).
UNIT_MISMATCH_FACTOR = 10.0
# Dropping more than this share of the valid pixels as "too far" is logged at WARNING level, with the count.
FAR_DROP_WARNING_FRACTION = 0.10


def depth_to_metres(
    depth: Any,
    depth_scale: float | None,
    index: int = 0,
    *,
    scale_applies_to_float: bool = False,
    max_depth_m: float | None = None,
    name: str | None = None,
) -> np.ndarray:
    """One depth map as float32 metres (H, W), 0 = missing: the unit checks every depth map of the package goes
    through (`vanishing_depth.data.depth_io` builds its file formats and row decoding on this function).

    Float input is metres. Integer sensor maps need `depth_scale` (metres per unit, e.g. 0.001 for mm PNGs; the product
    is taken in float64 and rounded once to float32); 8-bit maps are refused (they are visualisations, not
    measurements). NaN and inf become 0 with a `RuntimeWarning`; negative values raise.

    Args:
        depth: NumPy / torch / PIL (mode ``I;16``, ``I`` or ``F``) map of shape (H, W) or (1, H, W).
        depth_scale: metres per unit of an integer map.
        index: position in the batch, for messages.
        scale_applies_to_float: `depth_scale` was passed explicitly for this call. It applies to integer maps only,
            so passing it with a float map raises (float maps are metres already); a processor-level default
            (False here) is simply not applied to float maps.
        max_depth_m: the far limit in metres; a map whose median valid depth exceeds it `UNIT_MISMATCH_FACTOR` times
            is refused as a probable unit mix-up (millimetres passed as metres). None skips the check.
        name: how messages name the map (default ``depth[index]``), e.g. ``"row 3 column 'depth'"``.
    """
    label = name if name is not None else f"`depth[{index}]`"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(depth, Image.Image):
        if depth.mode in ("L", "P", "1", "LA", "PA"):
            raise ValueError(
                f"{label} is an 8-bit image (mode {depth.mode}): depth needs 16 or 32 bits; this looks like a "
                "visualisation. Load the sensor's 16-bit PNG or float map instead."
            )
        if depth.mode in ("RGB", "RGBA"):
            raise ValueError(f"{label} is a colour image (mode {depth.mode}); depth must be single-channel.")
        depth = np.asarray(depth)
        if depth.dtype.byteorder == ">":
            depth = depth.astype(depth.dtype.newbyteorder("="))
    elif isinstance(depth, torch.Tensor):
        depth = depth.detach().cpu().numpy()
    depth = np.asarray(depth)
    if depth.ndim == 3 and 1 in (depth.shape[0], depth.shape[-1]):
        depth = depth.reshape(depth.shape[1:] if depth.shape[0] == 1 else depth.shape[:-1])
    if depth.ndim != 2:
        raise ValueError(f"{label} must be a single-channel map (H, W) or (1, H, W), got shape {depth.shape}.")
    if depth.size == 0:
        raise ValueError(f"{label} is empty (shape {depth.shape}); expected an (H, W) map with H, W >= 1.")
    if depth.dtype == np.uint8 or depth.dtype == bool:
        raise ValueError(
            f"{label} is 8-bit: depth needs 16 or 32 bits; this looks like a visualisation, not a measurement."
        )
    if np.issubdtype(depth.dtype, np.integer):
        if depth_scale is None:
            raise ValueError(
                f"{label} holds integer sensor units ({depth.dtype}); pass `depth_scale` in metres per unit "
                "(0.001 for millimetre PNGs, 1/256 for KITTI, 1/5000 for TUM) or convert to float metres first."
            )
        depth = (depth.astype(np.float64) * float(depth_scale)).astype(np.float32)
    elif np.issubdtype(depth.dtype, np.floating):
        if depth_scale is not None and scale_applies_to_float:
            raise ValueError(
                f"`depth_scale` ({depth_scale} m per unit) applies to integer sensor maps only, but {label} is "
                f"{depth.dtype}: float depth is taken as metres. Drop `depth_scale`, or pass the raw integer map "
                "(e.g. the uint16 millimetre PNG) with it."
            )
        depth = depth.astype(np.float32)
    else:
        raise ValueError(f"{label} must be a float (metres) or integer (sensor units) map, got {depth.dtype}.")
    non_finite = ~np.isfinite(depth)
    if non_finite.any():
        warnings.warn(
            f"{label}: {int(non_finite.sum())} NaN/inf values treated as missing (0).", RuntimeWarning, stacklevel=3
        )
        depth = np.where(non_finite, 0.0, depth).astype(np.float32)
    if (depth < 0).any():
        raise ValueError(
            f"{label} has {int((depth < 0).sum())} negative values; depth is metres >= 0 with 0 = missing."
        )
    if max_depth_m is not None:
        valid = depth[depth > 0]
        median = float(np.median(valid)) if valid.size else 0.0
        if median > UNIT_MISMATCH_FACTOR * float(max_depth_m):
            raise ValueError(
                f"{label}: the median valid depth is {median:.4g} m, more than {UNIT_MISMATCH_FACTOR:g} times "
                f"the far limit of {float(max_depth_m):g} m. This is almost certainly depth in millimetres (or another "
                "sensor unit) passed as float metres. Pass metres (e.g. `depth_mm / 1000.0`), or the raw integer map "
                "with `depth_scale=0.001` (or `load_depth(path, format='mm')`). If the scene really is this far, use "
                "a model and processor with a larger `max_depth` / `max_valid_depth`."
            )
    return depth


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 4:
        return list(value)
    return [value]


class VanishingDepthImageProcessor(BaseImageProcessor):
    r"""
    Prepares RGB images, metric depth maps and (optionally) segmentation maps for [`VanishingDepthModel`] and its heads.

    Args:
        do_resize (`bool`, defaults to `True`): resize RGB (bicubic, antialiased) and depth (nearest) to `size`.
        size (`dict`, defaults to `{"shortest_edge": 224}`): `{"shortest_edge": s}` keeps the aspect ratio;
            `{"height": h, "width": w}` forces a size.
        ensure_multiple_of (`str`, defaults to `"pad"`): make H and W multiples of `patch_size` by zero-padding bottom
            and right (recorded in `resized_sizes`, undone by post-processing) or by `"resize"` to the nearest multiple.
        patch_size (`int`, defaults to 14).
        do_rescale / rescale_factor / do_normalize / image_mean / image_std: RGB scaling and ImageNet normalisation.
        depth_scale (`float`, *optional*): metres per unit of integer depth maps (0.001 for millimetre PNGs). Float
            maps are metres already.
        max_valid_depth (`float`, defaults to 15.0): depth in metres beyond which measurements are handled by
            `far_depth`: `"drop"` sets them to 0 (missing); `"rescale"` scales a map whose maximum exceeds
            0.95 * max_valid_depth so that its maximum becomes 0.95 * max_valid_depth (the authors' datasets/transforms.py rescales far depth this way; eval
            variant); `"keep"` leaves them. Every change is logged with its pixel count.
        do_depth_encoding (`bool`, defaults to `False`): return the encoded depth (`depth_encoding`, `(B, C, H, W)`,
            the official pipeline's layout) instead of metres (`depth_values`, `(B, 1, H, W)`).
        depth_encoding (`str`, defaults to `"pde"`): the model's `depth_encoding`, the encoding `do_depth_encoding`
            computes (`"pde"`, `"normalized"` or `"log_validity"`; see `encode_depth_input`).
        pde_channels / pde_temperature / pde_max_depth: PDE settings for `do_depth_encoding` (match the model config);
            `pde_max_depth` is also the depth mapped to +1 by `"log_validity"`.
        pde_normalization (`str`, defaults to `"global"`): the model's `depth_normalization`. With `"dynamic"` the PDE
            is normalised by each map's maximum and the batch also holds `depth_scale_m` `(B,)`, that maximum in
            metres, which the model writes into the depth CLS token.
        pde_missing_depth_m / pde_float_order: the model's `pde_missing_depth_m` and `pde_float_order` (the code of
            a missing pixel, and the float32 arithmetic of the angles; see `positional_depth_encoding`).
        depth_patch_normalization (`str`, defaults to `"none"`): the model's `depth_patch_normalization`, applied to a
            precomputed `depth_encoding` (`"valid_mean"`: missing pixels 0, measured ones weighted up to fill their
            patch; see `encode_depth_input`).
        do_reduce_labels (`bool`, defaults to `False`): segmentation label 0 -> 255 (ignored), others shifted down by 1.
        ignore_index (`int`, defaults to 255): label of padded and ignored segmentation pixels.
    """

    model_input_names = ["pixel_values", "depth_values"]

    def __init__(
        self,
        do_resize: bool = True,
        size: dict[str, int] | None = None,
        resample: str = "bicubic",
        ensure_multiple_of: str = "pad",
        patch_size: int = 14,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        depth_scale: float | None = None,
        max_valid_depth: float | None = 15.0,
        far_depth: str = "drop",
        do_depth_encoding: bool = False,
        depth_encoding: str = "pde",
        pde_channels: int = 32,
        pde_temperature: float = 3e-4,
        pde_max_depth: float = 15.0,
        pde_normalization: str = "global",
        pde_missing_depth_m: float = 0.0,
        pde_float_order: str = "library",
        depth_patch_normalization: str = "none",
        do_reduce_labels: bool = False,
        ignore_index: int = 255,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.do_resize = do_resize
        self.size = dict(size) if size is not None else {"shortest_edge": 224}
        self.resample = resample
        self.ensure_multiple_of = ensure_multiple_of
        self.patch_size = patch_size
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean) if image_mean is not None else list(IMAGENET_MEAN)
        self.image_std = list(image_std) if image_std is not None else list(IMAGENET_STD)
        self.depth_scale = depth_scale
        self.max_valid_depth = max_valid_depth
        self.far_depth = far_depth
        self.do_depth_encoding = do_depth_encoding
        self.depth_encoding = depth_encoding
        self.pde_channels = pde_channels
        self.pde_temperature = pde_temperature
        self.pde_max_depth = pde_max_depth
        self.pde_normalization = pde_normalization
        self.pde_missing_depth_m = pde_missing_depth_m
        self.pde_float_order = pde_float_order
        self.depth_patch_normalization = depth_patch_normalization
        self.do_reduce_labels = do_reduce_labels
        self.ignore_index = ignore_index
        self._validate_settings()

    @classmethod
    def from_model_config(cls, config, **kwargs) -> VanishingDepthImageProcessor:
        """A processor whose patch size, RGB normalisation (the RGB family's mean/std, from its stream adapter: ImageNet
        for DINOv2/DINOv3, 0.5 for SigLIP) and PDE settings match a `VanishingDepthConfig`. Keyword arguments win."""
        adapter = config.stream_adapter
        kwargs.setdefault("image_mean", list(adapter.image_mean))
        kwargs.setdefault("image_std", list(adapter.image_std))
        return cls(
            patch_size=config.patch_size,
            depth_encoding=config.depth_encoding,
            pde_channels=config.pde_channels,
            pde_temperature=config.pde_temperature,
            pde_max_depth=config.max_depth,
            pde_normalization=config.depth_normalization,
            pde_missing_depth_m=config.pde_missing_depth_m,
            pde_float_order=config.pde_float_order,
            depth_patch_normalization=config.depth_patch_normalization,
            max_valid_depth=kwargs.pop("max_valid_depth", config.max_depth),
            **kwargs,
        )

    def _validate_settings(self) -> None:
        if self.far_depth not in FAR_DEPTH_MODES:
            raise ValueError(f"`far_depth` must be one of {FAR_DEPTH_MODES}, got {self.far_depth!r}.")
        if self.ensure_multiple_of not in MULTIPLE_MODES:
            raise ValueError(f"`ensure_multiple_of` must be one of {MULTIPLE_MODES}, got {self.ensure_multiple_of!r}.")
        if not ({"shortest_edge"} == set(self.size) or {"height", "width"} == set(self.size)):
            raise ValueError(f"`size` must be {{'shortest_edge': s}} or {{'height': h, 'width': w}}, got {self.size}.")
        if self.resample not in ("bicubic", "bilinear"):
            raise ValueError(f"`resample` must be 'bicubic' or 'bilinear' for RGB, got {self.resample!r}.")
        if self.depth_scale is not None and not self.depth_scale > 0:
            raise ValueError(f"`depth_scale` must be a positive number of metres per unit, got {self.depth_scale!r}.")
        if self.depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"`depth_encoding` must be one of {DEPTH_ENCODINGS}, got {self.depth_encoding!r}.")
        if self.depth_patch_normalization not in DEPTH_PATCH_NORMALIZATIONS:
            raise ValueError(
                f"`depth_patch_normalization` must be one of {DEPTH_PATCH_NORMALIZATIONS}, got "
                f"{self.depth_patch_normalization!r}."
            )
        if self.pde_normalization not in ("global", "dynamic"):
            raise ValueError(f"`pde_normalization` must be 'global' or 'dynamic', got {self.pde_normalization!r}.")
        if self.pde_float_order not in PDE_FLOAT_ORDERS:
            raise ValueError(f"`pde_float_order` must be one of {PDE_FLOAT_ORDERS}, got {self.pde_float_order!r}.")
        if not 0.0 <= float(self.pde_missing_depth_m) < float(self.pde_max_depth):
            raise ValueError(
                f"`pde_missing_depth_m` must be a depth in metres in [0, pde_max_depth={self.pde_max_depth}), got "
                f"{self.pde_missing_depth_m!r}."
            )

    # ------------------------------------------------------------------------------------------------------------------
    def _target_size(self, height: int, width: int) -> tuple[int, int]:
        if not self.do_resize:
            new_h, new_w = height, width
        elif "shortest_edge" in self.size:
            scale = self.size["shortest_edge"] / min(height, width)
            new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        else:
            new_h, new_w = self.size["height"], self.size["width"]
        if self.ensure_multiple_of == "resize":
            p = self.patch_size
            new_h, new_w = max(p, round(new_h / p) * p), max(p, round(new_w / p) * p)
        return new_h, new_w

    def _resize_rgb(self, rgb_hwc: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(rgb_hwc)).permute(2, 0, 1)[None]
        if tuple(tensor.shape[-2:]) != size:
            tensor = F.interpolate(tensor, size=size, mode=self.resample, align_corners=False, antialias=True)
            tensor = tensor.clamp(0.0, 255.0)  # bicubic overshoot; PIL clamps the same way for 8-bit images
        tensor = tensor[0]
        if self.do_rescale:
            tensor = tensor * self.rescale_factor
        if self.do_normalize:
            mean = torch.tensor(self.image_mean, dtype=tensor.dtype)[:, None, None]
            std = torch.tensor(self.image_std, dtype=tensor.dtype)[:, None, None]
            tensor = (tensor - mean) / std
        return tensor

    @staticmethod
    def resize_depth_nearest(depth_m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Nearest-neighbour resize of `(H, W)` metres to `size`: every output value is one of the input values."""
        if tuple(depth_m.shape[-2:]) == tuple(size):
            return depth_m
        return F.interpolate(depth_m[None, None], size=size, mode="nearest-exact")[0, 0]

    def handle_far_depth(self, depth_m: np.ndarray, index: int = 0) -> np.ndarray:
        """Apply `far_depth` to one map in metres beyond `max_valid_depth` (drop, rescale or keep), logging what changed
        (WARNING when more than 10 % of the valid pixels are dropped, or when a map is rescaled)."""
        limit = self.max_valid_depth
        if limit is None or self.far_depth == "keep":
            return depth_m
        if self.far_depth == "rescale":
            maximum = float(depth_m.max()) if depth_m.size else 0.0
            if maximum > 0.95 * limit:
                # Every pixel changes: never silent.
                logger.warning(
                    "depth[%d]: every depth value scaled by %.4f so that the maximum %.2f m becomes %.2f m "
                    "(far_depth='rescale'; use far_depth='drop' to keep metric scale).",
                    index,
                    0.95 * limit / maximum,
                    maximum,
                    0.95 * limit,
                )
                depth_m = depth_m * np.float32(0.95 * limit / maximum)
            return depth_m
        far = depth_m > limit
        if far.any():
            count, valid = int(far.sum()), int(np.count_nonzero(depth_m > 0))
            share = count / max(valid, 1)
            log = logger.warning if share > FAR_DROP_WARNING_FRACTION else logger.info
            log(
                "depth[%d]: %d of %d valid pixels (%.1f%%) lie beyond max_valid_depth=%.2f m and are set to missing "
                "(far_depth='drop').",
                index,
                count,
                valid,
                100.0 * share,
                limit,
            )
            depth_m = np.where(far, 0.0, depth_m).astype(np.float32)
        return depth_m

    # ------------------------------------------------------------------------------------------------------------------
    def preprocess(
        self,
        images: Any,
        depth: Any = None,
        segmentation_maps: Any = None,
        depth_scale: float | None = None,
        do_depth_encoding: bool | None = None,
        return_rgbd_pixel_values: bool = False,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Prepare a batch.

        Args:
            images: one RGB image or a list (PIL, NumPy (H, W, 3) uint8 / float in [0, 1], torch (3, H, W)).
            depth: one depth map per image, or `None` for "no depth at all" (an all-missing map: the model then runs
                on RGB alone); a `None` entry in a list means no depth for that image. Float **metres** (NumPy,
                torch, PIL mode F) or integer sensor maps (uint16 PNG, PIL mode I;16) with `depth_scale`. Any
                resolution: it is sampled onto the RGB grid with nearest neighbour.
            segmentation_maps: optional label maps (H, W) per image, resized with nearest neighbour.
            depth_scale: metres per unit of *integer* depth maps, for this call (overrides the processor's setting).
                Passing it with a float map is an error: float maps are metres. The processor-level `depth_scale`
                applies to integer maps only and leaves float maps alone.
            do_depth_encoding: override the processor setting for this call.
            return_rgbd_pixel_values: return RGB and depth in one `pixel_values` tensor `(B, 3 + 1, H, W)`: channels
                0-2 normalised RGB, channel 3 depth in metres (or `(B, 3 + C, H, W)` with the PDE channels when
                `do_depth_encoding`). This is the input of transformers' own heads (UperNet, Mask2Former, Depth
                Anything) built on `VanishingDepthBackbone`, which pass only `pixel_values` to their backbone.
            return_tensors: "pt" (default) or "np".

        Unit rules (depth is never dropped or rescaled silently): a map whose median valid depth exceeds
        `max_valid_depth` ten times over is refused as a probable unit mix-up (millimetres passed as metres);
        dropping more than 10 % of a map's valid pixels as beyond `max_valid_depth` is logged at WARNING level with
        the count; NaN / inf become missing with a warning; negative depth raises.

        Returns:
            `BatchFeature` with `pixel_values` `(B, 3, H, W)`, `depth_values` `(B, 1, H, W)` metres (or
            `depth_encoding` `(B, C, H, W)`, or both inside `pixel_values` with `return_rgbd_pixel_values`; an encoded
            batch with `pde_normalization="dynamic"` also holds `depth_scale_m` `(B,)` in metres), `labels`
            `(B, H, W)` int64 if segmentation maps were given, and `resized_sizes` `(B, 2)`: the (height, width) of
            the content before padding, for post-processing (the models accept and ignore it, so
            `model(**processor(...))` works).
        """
        if kwargs:
            unknown = sorted(kwargs)
            raise ValueError(f"Unknown arguments to VanishingDepthImageProcessor.preprocess: {unknown}.")
        if return_tensors not in ("pt", "np", None):
            raise ValueError(f"`return_tensors` must be 'pt' or 'np', got {return_tensors!r}.")
        image_list = _as_list(images)
        if not image_list:
            raise ValueError("`images` must hold at least one RGB image.")
        depth_list = _as_list(depth) if depth is not None else [None] * len(image_list)
        if len(depth_list) != len(image_list):
            raise ValueError(
                f"`depth` must hold one map per image: got {len(depth_list)} maps for {len(image_list)} images."
            )
        label_list = _as_list(segmentation_maps) if segmentation_maps is not None else None
        if label_list is not None and len(label_list) != len(image_list):
            raise ValueError(
                f"`segmentation_maps` must hold one map per image: got {len(label_list)} for {len(image_list)} images."
            )
        scale = depth_scale if depth_scale is not None else self.depth_scale
        unit_limit = self.max_valid_depth
        encode = self.do_depth_encoding if do_depth_encoding is None else do_depth_encoding

        pixel_values, depth_values, labels, sizes = [], [], [], []
        for index, image in enumerate(image_list):
            rgb = _rgb_to_float_hwc(image, index)
            height, width = rgb.shape[:2]
            size = self._target_size(height, width)
            pixel_values.append(self._resize_rgb(rgb, size))
            if depth_list[index] is None:
                depth_m = torch.zeros(size, dtype=torch.float32)
            else:
                depth_np = depth_to_metres(
                    depth_list[index],
                    scale,
                    index,
                    scale_applies_to_float=depth_scale is not None,
                    max_depth_m=unit_limit,
                )
                depth_np = self.handle_far_depth(depth_np, index)
                d_h, d_w = depth_np.shape
                if abs(d_h / d_w - height / width) > 0.02 * (height / width):
                    logger.warning(
                        "depth[%d] is %dx%d but the image is %dx%d: aspect ratios differ, depth is stretched onto the "
                        "RGB grid (nearest neighbour).",
                        index,
                        d_w,
                        d_h,
                        width,
                        height,
                    )
                depth_m = self.resize_depth_nearest(torch.from_numpy(depth_np), size)
            depth_values.append(depth_m)
            if label_list is not None:
                label = torch.as_tensor(np.asarray(label_list[index]), dtype=torch.int64)
                if label.ndim == 3 and label.shape[-1] == 1:
                    label = label[..., 0]
                if label.shape != (height, width):
                    raise ValueError(
                        f"`segmentation_maps[{index}]` is {tuple(label.shape)} but the image is {(height, width)}."
                    )
                if self.do_reduce_labels:
                    label = torch.where(label == 0, self.ignore_index, label - 1)
                    label = torch.where(label == self.ignore_index - 1, self.ignore_index, label)
                labels.append(F.interpolate(label[None, None].float(), size=size, mode="nearest-exact")[0, 0].long())
            sizes.append(size)

        p = self.patch_size
        out_h = math.ceil(max(s[0] for s in sizes) / p) * p
        out_w = math.ceil(max(s[1] for s in sizes) / p) * p
        if any(s != sizes[0] for s in sizes) or (out_h, out_w) != sizes[0]:
            logger.debug("Padding batch to %dx%d (multiple of %d).", out_h, out_w, p)

        def pad(tensor: torch.Tensor, value: float) -> torch.Tensor:
            return F.pad(tensor, (0, out_w - tensor.shape[-1], 0, out_h - tensor.shape[-2]), value=value)

        batch = {
            "pixel_values": torch.stack([pad(t, 0.0) for t in pixel_values]),
            "resized_sizes": torch.tensor(sizes, dtype=torch.int64),
        }
        depth_batch = torch.stack([pad(d, 0.0) for d in depth_values])[:, None]  # padding = missing depth
        if encode:
            if self.pde_normalization == "dynamic":  # the per-image maximum the encoding is normalised by
                batch["depth_scale_m"] = depth_batch.amax(dim=(1, 2, 3))
            depth_key = "depth_encoding"
            depth_batch = encode_depth_input(
                depth_batch,
                self.depth_encoding,
                channels=self.pde_channels,
                temperature=self.pde_temperature,
                max_depth=self.pde_max_depth,
                normalization=self.pde_normalization,
                missing_depth_m=self.pde_missing_depth_m,
                float_order=self.pde_float_order,
                patch_normalization=self.depth_patch_normalization,
                patch_size=self.patch_size,
            )
        else:
            depth_key = "depth_values"
        if return_rgbd_pixel_values:
            batch["pixel_values"] = torch.cat((batch["pixel_values"], depth_batch.to(batch["pixel_values"].dtype)), 1)
        else:
            batch[depth_key] = depth_batch
        if label_list is not None:
            batch["labels"] = torch.stack([pad(lab, self.ignore_index) for lab in labels])
        if return_tensors == "np":
            batch = {key: value.numpy() for key, value in batch.items()}
        return BatchFeature(data=batch, tensor_type=return_tensors)

    # ------------------------------------------------------------------------------------------------------------------
    def post_process_depth_estimation(
        self,
        outputs: Any,
        target_sizes: Sequence[tuple[int, int]] | None = None,
        resized_sizes: Any = None,
        padded_size: tuple[int, int] | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Undo padding and resize: `outputs.predicted_depth` `(B, H, W)` or `(B, 1, H, W)` metres -> a list of
        `{"predicted_depth": (h, w)}` at `target_sizes` (the original image sizes), bilinear.

        `resized_sizes` is the processor output of the same name (the content size of each sample before the batch
        was padded); without it, the content sizes are recomputed from `target_sizes` taken as the original image
        sizes (this is what transformers' `depth-estimation` pipeline relies on). `padded_size` is the (height,
        width) of the model input (default: the largest content of the batch rounded up to the patch size, as
        `preprocess` pads). Predictions at any fraction of the input resolution are cropped proportionally."""
        predicted = (
            outputs["predicted_depth"] if isinstance(outputs, dict) else getattr(outputs, "predicted_depth", outputs)
        )
        if isinstance(predicted, (list, tuple)):
            predicted = predicted[0]
        if predicted.ndim == 4:
            predicted = predicted[:, 0]
        results = []
        resized_sizes = self._content_sizes(resized_sizes, target_sizes)
        padded = padded_size or (self._padded_size(resized_sizes) if resized_sizes is not None else None)
        for index in range(predicted.shape[0]):
            depth = predicted[index]
            if resized_sizes is not None:
                # Predictions may come at another resolution than the input grid: crop proportionally.
                depth = self._crop_scaled(depth, resized_sizes[index], padded)
            if target_sizes is not None:
                depth = F.interpolate(
                    depth[None, None],
                    size=tuple(int(v) for v in target_sizes[index]),
                    mode="bilinear",
                    align_corners=False,
                )[0, 0]
            results.append({"predicted_depth": depth})
        return results

    def post_process_semantic_segmentation(
        self,
        outputs: Any,
        target_sizes: Sequence[tuple[int, int]] | None = None,
        resized_sizes: Any = None,
        padded_size: tuple[int, int] | None = None,
    ) -> list[torch.Tensor]:
        """Undo padding and resize: logits `(B, C, h, w)` -> a list of `(H, W)` int64 label maps at `target_sizes`
        (the original image sizes; padding is removed as in `post_process_depth_estimation`)."""
        logits = outputs["logits"] if isinstance(outputs, dict) else getattr(outputs, "logits", outputs)
        results = []
        resized_sizes = self._content_sizes(resized_sizes, target_sizes)
        padded = padded_size or (self._padded_size(resized_sizes) if resized_sizes is not None else None)
        for index in range(logits.shape[0]):
            item = logits[index]
            if resized_sizes is not None:
                item = self._crop_scaled(item, resized_sizes[index], padded)
            if target_sizes is not None:
                item = F.interpolate(
                    item[None], size=tuple(int(v) for v in target_sizes[index]), mode="bilinear", align_corners=False
                )[0]
            results.append(item.argmax(dim=0))
        return results

    def _content_sizes(self, resized_sizes: Any, target_sizes: Sequence[tuple[int, int]] | None) -> Any:
        """`resized_sizes` as given, else the content sizes `preprocess` gives images of the `target_sizes`."""
        if resized_sizes is not None or target_sizes is None:
            return resized_sizes
        return [self._target_size(int(height), int(width)) for height, width in target_sizes]

    def _padded_size(self, resized_sizes: Any) -> tuple[int, int]:
        """The padded input size of a batch: its largest content, rounded up to the patch size (as `preprocess`)."""
        sizes = torch.as_tensor(resized_sizes).reshape(-1, 2)
        p = self.patch_size
        return math.ceil(int(sizes[:, 0].max()) / p) * p, math.ceil(int(sizes[:, 1].max()) / p) * p

    def _crop_scaled(self, tensor: torch.Tensor, resized_size, padded_size: tuple[int, int]) -> torch.Tensor:
        """Crop the un-padded region of a map whose resolution may be a fraction of the padded input's (e.g. logits
        at 1/14 of the input)."""
        content_h, content_w = (int(v) for v in resized_size)
        scale_h, scale_w = tensor.shape[-2] / padded_size[0], tensor.shape[-1] / padded_size[1]
        return tensor[..., : max(1, round(content_h * scale_h)), : max(1, round(content_w * scale_w))]


__all__ = ["VanishingDepthImageProcessor", "depth_to_metres"]
