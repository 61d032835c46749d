# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Opening images: one opener, so every reader (the corpus decoder, the fine-tuning collator, the CLI, the depth
decoder of `depth_io`) sees a frame the same way.

- `open_image`: whatever an RGB-D row or a caller holds (a PIL image, an undecoded ``datasets.Image`` cell
  ``{"bytes", "path"}``, a path, an array, a tensor) -> a decoded PIL image, upright per its EXIF orientation tag (as
  ``datasets.Image`` decodes it), or a NumPy array. Decoding happens at once, so a truncated file fails here.
- `rgb_array`: the same, as an RGB uint8 array (H, W, 3).
- `load_rgb`: an RGB image file as a PIL image in mode ``RGB``; every error names the file.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

__all__ = ["UNREADABLE_IMAGE_ERRORS", "UnsupportedImageError", "load_rgb", "open_image", "rgb_array"]

# What damaged image bytes raise inside PIL / NumPy (corrupt, truncated, decompression bombs).
UNREADABLE_IMAGE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)

_EXIF_ORIENTATION = 0x0112


class UnsupportedImageError(ValueError):
    """A value that is not the kind of image asked for: an unsupported type, an RGB array that is not uint8, an 8-bit
    or colour map where depth is expected.

    It says how the data is stored, not that one file is damaged, so a corpus decoder raises it instead of skipping
    the row.
    """


def open_image(value: Any, what: str = "image") -> Image.Image | np.ndarray:
    """Open what an RGB-D row or a caller holds as a decoded image.

    Args:
        value: a PIL image, a ``{"bytes", "path"}`` dict (an undecoded ``datasets.Image`` cell), a file path, a NumPy
            array, a torch tensor or a nested list.
        what: how error messages name the value (e.g. ``"row['depth']"``).

    Returns:
        A PIL image, decoded now (so truncated bytes fail here) and turned upright when its EXIF orientation tag says
        so (as ``datasets.Image`` decodes files), in its stored mode (``RGB``, ``I;16``, ``F``, ...); or a NumPy array
        for array-like input.

    Raises:
        UnsupportedImageError: a value of another type.
        ValueError: ``None``, or a dict with neither bytes nor a path.
        OSError (e.g. PIL.UnidentifiedImageError, FileNotFoundError) and the other `UNREADABLE_IMAGE_ERRORS`: bytes
            or files that cannot be decoded.
    """
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, list):
        return np.asarray(value)
    if isinstance(value, Image.Image):
        image = value
    elif isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        if data is not None:
            image = Image.open(io.BytesIO(data))
        elif path:
            image = Image.open(path)
        else:
            raise ValueError(f"{what} holds neither bytes nor a path: {sorted(value)}.")
    elif isinstance(value, (str, os.PathLike)):
        image = Image.open(value)
    elif value is None:
        raise ValueError(f"{what} is None; expected an image.")
    else:
        raise UnsupportedImageError(
            f"{what} must be a PIL image, a {{'bytes', 'path'}} dict, a path, an array or a tensor, "
            f"got {type(value).__name__}."
        )
    image.load()
    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    return image


def rgb_array(value: Any, what: str = "image") -> np.ndarray:
    """Open an RGB frame (anything `open_image` accepts) as a uint8 array (H, W, 3).

    PIL images of any mode are converted to ``RGB`` (grey is repeated, alpha dropped). Arrays hold integer grey levels
    0..255 (uint8, or the int64 that ``datasets``' numpy and torch formats give) of shape (H, W, 3), (H, W, 4) (alpha
    dropped) or (H, W) (grey, repeated); torch tensors may also be channel-first (3, H, W), as ``datasets``' torch format
    gives them. Float arrays are refused: [0, 1] and [0, 255] cannot be told apart.

    Raises:
        UnsupportedImageError: an array of another dtype, range or shape (the message names `what`), or a value of an
            unsupported type.
        ValueError, OSError: as `open_image`.
    """
    image = open_image(value, what)
    if isinstance(image, Image.Image):
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    array = image
    if isinstance(value, torch.Tensor) and array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] > 4:
        array = array.transpose(1, 2, 0)  # channel-first torch layout
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or not np.issubdtype(array.dtype, np.integer):
        raise UnsupportedImageError(
            f"{what} as an array must hold integer grey levels 0..255 (uint8) of shape (H, W, 3), (H, W, 4) or (H, W), "
            f"got {array.dtype} {array.shape}."
        )
    if array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise UnsupportedImageError(
                f"{what} as an integer array must hold grey levels 0..255, got values in "
                f"[{int(array.min())}, {int(array.max())}] ({array.dtype})."
            )
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array[..., :3])


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an RGB image file (JPEG, PNG, ...) as a decoded PIL image in mode ``RGB``, upright per its EXIF tag.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is truncated, corrupt or not an image; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RGB image file not found: {path}")
    try:
        image = open_image(path, str(path))
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot be decoded as an RGB image ({type(error).__name__}: {error}).") from None
    return image.convert("RGB")
