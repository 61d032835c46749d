# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Reading RGB files: one function, so every command opens a frame the same way (EXIF orientation applied, as
`datasets.Image` does; decoded at once, so a truncated file fails here; every error names the file)."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageOps

__all__ = ["load_rgb"]


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
        with Image.open(path) as image:
            image.load()
            if image.getexif().get(0x0112, 1) != 1:
                image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot be decoded as an RGB image ({type(error).__name__}: {error}).") from None
