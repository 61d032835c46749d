"""Read and write depth maps in the unit conventions real RGB-D sensors and datasets use.

Every decoder returns a ``float32`` NumPy array of shape ``(H, W)`` in **metres**, with ``0`` meaning "no measurement".
One ``format=`` name per on-disk convention (see `DEPTH_FORMATS`):

======== ================================================ ===========================================================
name     storage                                          where it comes from
======== ================================================ ===========================================================
mm       16-bit PNG, value = millimetres                  NYU Depth v2 exports (BTS / Metric3D ``sync_depth_*.png``),
                                                          ScanNet, Redwood / Augmented ICL-NUIM, ARKit depth PNGs
                                                          (PromptDA divides by 1000)
kitti    16-bit PNG, value / 256 = metres, 0 = missing    KITTI depth completion devkit (``depth = png / 256``)
tum      16-bit PNG, value / 5000 = metres                TUM RGB-D benchmark ("depth images are scaled by 5000")
sunrgbd  16-bit PNG, bits rotated right by 3 -> mm        SUN RGB-D toolbox ``read3dPoints.m``:
                                                          ``mm = (v >> 3) | (v << 13)`` (16-bit), ``/ 1000`` -> m
nyu_raw  PGM (P5) Kinect v1 disparity, bytes little-       NYU Depth v2 raw dump (``d-*.pgm``) and its toolbox:
         endian despite the header; 2047 = invalid        ``swapbytes`` then ``depth_rel2depth_abs``:
                                                          ``351.3 / (1092.5 - d)`` metres
float    float32 TIFF (PIL mode ``F``), ``.npy``, ``.npz`` metres already (``datasets.Image`` stores float32 depth as
         (one array or key ``"depth"``)                   TIFF mode ``F``; DIODE ships ``.npy``)
======== ================================================ ===========================================================

``format="auto"`` is only allowed where the file itself leaves no doubt (``.npy`` / ``.npz`` / float TIFF -> ``float``,
``.pgm`` -> ``nyu_raw``). A 16-bit PNG can be any of ``mm``, ``kitti``, ``tum`` or ``sunrgbd``, which differ by factors
of 4 to 5 or by a bit rotation, so ``auto`` refuses it instead of guessing.

One decoder into metres: `decode_depth` takes a depth map as any RGB-D row or caller holds it (an undecoded
``datasets.Image`` cell, a path, a PIL image, an array) with its unit (a ``depth_scale`` in metres per stored unit,
or a ``format`` above) and is what the corpus decoder, the fine-tuning collator and the pipeline call. The checks
every map goes through (integer maps need a unit, 8-bit and colour maps are refused, NaN / inf become 0 with a
warning, negative depth raises) are those of the image processor's `depth_to_metres`, on which this module builds.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from ..image_processing_vanishing_depth import depth_to_metres
from .image_io import UnsupportedImageError, open_image

logger = logging.getLogger(__name__)

__all__ = [
    "DEPTH_FORMATS",
    "DepthFormat",
    "decode_depth",
    "decode_depth_array",
    "encode_depth",
    "load_depth",
    "save_depth",
]


class DepthFormat(NamedTuple):
    """Description of one on-disk depth convention.

    Attributes:
        description: one line saying how the values are stored and which datasets use it.
        metres_per_unit: metres per stored integer step for the linear formats (``mm`` 0.001, ``kitti`` 1/256,
            ``tum`` 1/5000, ``sunrgbd`` 0.001 *after* undoing the bit rotation), 1.0 for ``float`` and ``None`` for
            ``nyu_raw``, whose disparity-to-depth mapping is not linear.
    """

    description: str
    metres_per_unit: float | None


DEPTH_FORMATS: dict[str, DepthFormat] = {
    "mm": DepthFormat("16-bit PNG in millimetres (NYU Depth v2 exports, ScanNet, Redwood/ICL-NUIM, ARKit PNGs)", 1e-3),
    "kitti": DepthFormat("16-bit PNG, value / 256 = metres, 0 = missing (KITTI depth completion)", 1.0 / 256.0),
    "tum": DepthFormat("16-bit PNG, value / 5000 = metres (TUM RGB-D)", 1.0 / 5000.0),
    "sunrgbd": DepthFormat("16-bit PNG, mm = (v >> 3) | (v << 13) as uint16 (SUN RGB-D toolbox read3dPoints.m)", 1e-3),
    "nyu_raw": DepthFormat(
        "Kinect v1 disparity PGM of the NYU raw dump: little-endian bytes, 2047 = invalid, depth = 351.3 / (1092.5 - d)",
        None,
    ),
    "float": DepthFormat("float32 metres: TIFF mode F, .npy, or .npz (single array or key 'depth')", 1.0),
}

# Divisors of the linear 16-bit formats: metres = value / divisor.
_UNITS_PER_METRE = {"mm": 1000.0, "kitti": 256.0, "tum": 5000.0, "sunrgbd": 1000.0}
_INTEGER_FORMATS = ("mm", "kitti", "tum", "sunrgbd", "nyu_raw")
_AMBIGUOUS_16BIT_HINT = (
    "a 16-bit image does not say its unit; pass format= one of "
    "'mm' (NYU Depth v2 exports, ScanNet, Redwood/ICL-NUIM, ARKit), 'kitti' (value / 256), 'tum' (value / 5000) "
    "or 'sunrgbd' (bit-rotated millimetres)"
)

# NYU toolbox camera_params.m: depthParam1 / depthParam2, and 2047 = no reading (the Kinect's 11-bit maximum).
NYU_RAW_PARAM_1 = 351.3
NYU_RAW_PARAM_2 = 1092.5
NYU_RAW_INVALID = 2047
_NYU_RAW_MAX_VALID = int(np.ceil(NYU_RAW_PARAM_2)) - 1  # d >= 1092.5 gives no positive finite depth

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}
_FLOAT_SUFFIXES = (".npy", ".npz")
_TIFF_SUFFIXES = (".tif", ".tiff")
_EIGHT_BIT_MODES = ("1", "L", "P", "LA", "PA")


def _check_format(format: str, *, allow_auto: bool) -> None:
    names = list(DEPTH_FORMATS) + (["auto"] if allow_auto else [])
    if format not in names:
        raise ValueError(f"`format` must be one of {names}, got {format!r}.")


def _visualisation_error(what: str) -> UnsupportedImageError:
    return UnsupportedImageError(
        f"depth needs 16 or 32 bits; this looks like a visualisation ({what}), not a depth map: 8-bit data cannot "
        "hold metric depth. Use the sensor's 16-bit PNG / PGM or a float32 TIFF / .npy instead."
    )


def _colour_error(what: str) -> UnsupportedImageError:
    return UnsupportedImageError(
        f"depth must be a single-channel map of shape (H, W), got a colour image ({what}). "
        "Pass the depth file, not the RGB frame or a colourised depth visualisation."
    )


# ----------------------------------------------------------------------------------------------------------------------
# Decoding arrays
# ----------------------------------------------------------------------------------------------------------------------


def _to_2d(array: np.ndarray) -> np.ndarray:
    """Accept (H, W), (H, W, 1) and (1, H, W); refuse colour and anything else."""
    if array.ndim == 3 and array.shape[-1] == 1:
        return array[..., 0]
    if array.ndim == 3 and array.shape[0] == 1:
        return array[0]
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        raise _colour_error(f"array of shape {array.shape}")
    if array.ndim != 2:
        raise UnsupportedImageError(f"depth must be a map of shape (H, W), got shape {array.shape}.")
    return array


def _stored_values(value: np.ndarray | Image.Image) -> np.ndarray:
    """The stored values of a depth map as an (H, W) integer or float array, refusing what cannot hold depth (8-bit,
    boolean, colour or non-numeric data) with an `UnsupportedImageError`."""
    if isinstance(value, Image.Image):
        mode = value.mode
        if mode in _EIGHT_BIT_MODES:
            raise _visualisation_error(f"PIL mode {mode}")
        if mode not in ("I", "F") and not mode.startswith("I;16"):
            raise _colour_error(f"PIL mode {mode}")
        array = np.asarray(value)
        if mode.startswith("I;16"):
            array = array.astype(np.uint16)  # I;16B decodes to a big-endian dtype; normalise it
    else:
        array = np.asarray(value)
    array = _to_2d(array)
    if array.dtype == np.bool_ or (np.issubdtype(array.dtype, np.integer) and array.dtype.itemsize == 1):
        raise _visualisation_error(f"{array.dtype} array")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise UnsupportedImageError(
            f"depth must hold integer sensor counts or float metres, got a {array.dtype} array."
        )
    return array


def _check_integer_counts(values: np.ndarray, format: str) -> np.ndarray:
    """Check an integer array from a 16-bit image and return it as uint16."""
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(
            f"format {format!r} decodes integer sensor counts, got a {values.dtype} array. "
            "Use format='float' for maps already in metres."
        )
    if values.size and values.min() < 0:
        raise ValueError(
            f"depth counts must be >= 0, got {int(np.count_nonzero(values < 0))} negative value(s), "
            f"min {int(values.min())}."
        )
    if values.size and values.max() > 0xFFFF:
        raise ValueError(f"format {format!r} stores 16-bit counts (<= 65535), got a maximum of {int(values.max())}.")
    return values.astype(np.uint16, copy=False)


def _decode_stored(values: np.ndarray, format: str, name: str) -> np.ndarray:
    """Stored values (from `_stored_values`) in the convention `format` -> float32 metres."""
    if format == "float":
        if not np.issubdtype(values.dtype, np.floating):
            raise ValueError(
                f"format 'float' expects metres as a float array, got {values.dtype}; integer sensor counts need "
                f"one of {list(_INTEGER_FORMATS)}."
            )
        return depth_to_metres(values, None, name=name)
    counts = _check_integer_counts(values, format)
    if format == "nyu_raw":
        return _decode_nyu_raw(counts)
    if format == "sunrgbd":
        # Undo SUN RGB-D's 3-bit right rotation; uint16 shifts drop the overflowing bits as the toolbox does.
        counts = (counts >> np.uint16(3)) | (counts << np.uint16(13))
    return depth_to_metres(counts, DEPTH_FORMATS[format].metres_per_unit, name=name)


def decode_depth_array(array: np.ndarray | Image.Image, format: str) -> np.ndarray:
    """Convert an already-decoded depth array to float32 metres, with the rules of `load_depth`.

    Use it on data that is already in memory, e.g. a ``datasets.Image`` column of mode ``I;16`` (uint16) or ``F``.

    Args:
        array: (H, W) array (or a PIL image; (H, W, 1) and (1, H, W) are accepted too). For the integer formats
            (``mm``, ``kitti``, ``tum``, ``sunrgbd``, ``nyu_raw``) it must hold integer counts in [0, 65535]; for
            ``nyu_raw`` the counts must already be in the right byte order (0..2047). For ``float`` it holds metres.
        format: one of `DEPTH_FORMATS` (``"auto"`` is not accepted: an array carries no file type).

    Returns:
        (H, W) float32 depth in metres, 0 = missing.

    Raises:
        UnsupportedImageError (a ValueError): 8-bit or colour data.
        ValueError: unknown format, negative values, integers for ``float`` or floats for an integer format, values
            that do not fit the format.
    """
    _check_format(format, allow_auto=False)
    return _decode_stored(_stored_values(array), format, "depth")


def decode_depth(
    value: Any, depth_scale: float | None = None, format: str | None = None, *, what: str = "depth"
) -> np.ndarray:
    """One depth map, as an RGB-D row or a caller holds it, to float32 metres (H, W), 0 = missing.

    The decoder of every reader: the corpus decoder (`vanishing_depth.data.decoding`), the fine-tuning collator and
    the pipeline call it, so a row decodes the same way in pretraining and fine-tuning.

    Args:
        value: anything `open_image` accepts: an undecoded ``datasets.Image`` cell ``{"bytes", "path"}``, a PIL image
            (mode ``I;16``, ``I`` or ``F``), a path, a NumPy array or a torch tensor of shape (H, W), (H, W, 1) or
            (1, H, W). Image cells are opened like RGB frames (decoded at once, EXIF orientation applied).
        depth_scale: metres per stored unit (the corpus schema's ``depth_scale``): required for integer maps (0.001
            for millimetre PNGs, 1/256 for KITTI, 1/5000 for TUM); a float map is taken as ``value * depth_scale``
            metres (metres as stored when it is None or 1.0).
        format: a `DEPTH_FORMATS` name instead of `depth_scale`, for conventions that are not a plain scale
            (``"sunrgbd"``, ``"nyu_raw"``) or to declare the unit by name (``"mm"``, ``"kitti"``, ``"float"``, ...).
        what: how error messages name the map, e.g. ``"row 3 column 'depth'"``.

    Raises:
        UnsupportedImageError (a ValueError): 8-bit, colour or non-numeric data, or a value of an unsupported type.
        ValueError: an integer map without a unit, both `depth_scale` and `format`, a bad scale or format, negative
            depth, counts that do not fit the format.
        OSError and the other `vanishing_depth.data.image_io.UNREADABLE_IMAGE_ERRORS`: bytes that cannot be decoded.
        NaN / inf become 0 (missing) with a `RuntimeWarning`.
    """
    if format is not None:
        _check_format(format, allow_auto=False)
        if depth_scale is not None:
            raise ValueError(f"{what}: pass either `format` or `depth_scale`, not both ({format!r}, {depth_scale!r}).")
    if depth_scale is not None:
        try:
            scale = float(depth_scale)
        except (TypeError, ValueError):
            scale = float("nan")
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(
                f"{what}: `depth_scale` must be a positive number of metres per stored unit, got {depth_scale!r}."
            )
        depth_scale = scale
    opened = open_image(value, what)
    try:
        values = _stored_values(opened)
        if format is not None:
            return _decode_stored(values, format, what)
        if np.issubdtype(values.dtype, np.floating):
            if depth_scale is not None and depth_scale != 1.0:
                values = values.astype(np.float64) * depth_scale  # stored float units -> metres
            return depth_to_metres(values, None, name=what)
        return depth_to_metres(values, depth_scale, name=what)
    except ValueError as error:  # every message names the map
        message = str(error)
        if message.startswith(what):
            raise
        raise type(error)(f"{what}: {message}") from None


def _decode_nyu_raw(disparity: np.ndarray) -> np.ndarray:
    if disparity.size and disparity.max() > NYU_RAW_INVALID:
        raise ValueError(
            f"format 'nyu_raw' expects Kinect v1 disparities in 0..{NYU_RAW_INVALID}, got a maximum of "
            f"{int(disparity.max())}: the bytes are probably swapped (the NYU PGMs are little-endian although the "
            "header says big-endian). Use load_depth() on the .pgm, or pass array.byteswap()."
        )
    valid = disparity <= _NYU_RAW_MAX_VALID
    beyond = int(np.count_nonzero(disparity != NYU_RAW_INVALID) - np.count_nonzero(valid))
    if beyond:
        logger.info(
            "nyu_raw: %d pixel(s) with disparity in %d..%d have no positive depth; set to 0 (missing).",
            beyond,
            _NYU_RAW_MAX_VALID + 1,
            NYU_RAW_INVALID - 1,
        )
    d = disparity.astype(np.float32)
    depth = np.float32(NYU_RAW_PARAM_1) / (np.float32(NYU_RAW_PARAM_2) - np.where(valid, d, np.float32(0.0)))
    return np.where(valid, depth, np.float32(0.0)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------------------------------


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from the PNG IHDR chunk, or None if the file is not a PNG."""
    with open(path, "rb") as handle:
        head = handle.read(26)
    if not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _read_pgm(path: Path, *, little_endian: bool) -> np.ndarray:
    """Read a binary PGM (P5) by hand, so the byte order is ours to choose (PIL follows the header)."""
    data = path.read_bytes()
    if not data.startswith(b"P5"):
        raise ValueError(f"{path}: expected a binary PGM starting with 'P5', got {data[:2]!r}.")
    fields: list[int] = []
    position = 2
    token = re.compile(rb"\s*(?:#[^\n]*\n\s*)*(\d+)")
    while len(fields) < 3:
        match = token.match(data, position)
        if match is None:
            raise ValueError(f"{path}: malformed PGM header (need width, height and maxval after 'P5').")
        fields.append(int(match.group(1)))
        position = match.end()
    width, height, maxval = fields
    position += 1  # exactly one whitespace byte separates maxval from the raster
    if maxval < 256:
        raise _visualisation_error(f"8-bit PGM, maxval {maxval}")
    count = width * height
    raster = data[position : position + 2 * count]
    if len(raster) != 2 * count:
        raise ValueError(
            f"{path}: PGM raster truncated: expected {2 * count} bytes for {width}x{height}, got {len(raster)}."
        )
    dtype = "<u2" if little_endian else ">u2"
    return np.frombuffer(raster, dtype=dtype).reshape(height, width).astype(np.uint16)


def _read_numpy(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.keys())
        if "depth" in keys:
            return archive["depth"]
        if len(keys) == 1:
            return archive[keys[0]]
    raise ValueError(f"{path}: an .npz depth file needs a single array or a key 'depth', found keys {keys}.")


def _read_image(path: Path) -> np.ndarray:
    """Read a PNG / TIFF / other PIL image, refusing 8-bit and colour images before decoding pixels."""
    header = _png_header(path)
    if header is not None:
        bit_depth, colour_type = header
        if colour_type != 0:
            what = f"PNG colour type {_PNG_COLOUR_TYPES.get(colour_type, colour_type)}, {bit_depth}-bit"
            if colour_type == 3 or bit_depth < 16:
                raise _visualisation_error(what)
            raise _colour_error(what)
        if bit_depth < 16:
            raise _visualisation_error(f"{bit_depth}-bit greyscale PNG")
    try:
        with Image.open(path) as image:
            return _stored_values(image)  # checks the mode before decoding the pixels
    except (OSError, SyntaxError) as error:  # truncated or corrupt files: PIL's messages do not name the file
        raise ValueError(f"{path}: cannot be decoded as a depth image ({type(error).__name__}: {error}).") from None


def _read_raw(path: Path, format: str) -> tuple[np.ndarray, str]:
    """Return the stored values and the container kind ("numpy", "pgm" or "image")."""
    suffix = path.suffix.lower()
    if suffix in _FLOAT_SUFFIXES:
        return _read_numpy(path), "numpy"
    if suffix == ".pgm":
        return _read_pgm(path, little_endian=format in ("nyu_raw", "auto")), "pgm"
    return _read_image(path), "image"


def _resolve_auto(path: Path, raw: np.ndarray, container: str) -> str:
    if container == "pgm":
        return "nyu_raw"
    if np.issubdtype(raw.dtype, np.floating):
        return "float"
    if container == "numpy":
        raise ValueError(
            f"{path}: format='auto' cannot tell the unit of an integer ({raw.dtype}) array; pass format= one of "
            f"{list(DEPTH_FORMATS)}."
        )
    raise ValueError(f"{path}: format='auto' is ambiguous here: {_AMBIGUOUS_16BIT_HINT}.")


def load_depth(
    path: str | os.PathLike, format: str = "auto", *, return_valid_mask: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Load a depth file into float32 metres.

    Args:
        path: ``.png`` / ``.tif`` (16-bit or float), ``.pgm`` (NYU raw), ``.npy`` or ``.npz``.
        format: a name from `DEPTH_FORMATS` (see the module docstring for the source of each convention), or
            ``"auto"`` where the file type decides (``.npy`` / ``.npz`` / float TIFF -> ``float``, ``.pgm`` ->
            ``nyu_raw``). ``"auto"`` on a 16-bit image raises, because mm / kitti / tum / sunrgbd look alike.
        return_valid_mask: also return the (H, W) bool mask ``depth > 0``.

    Returns:
        (H, W) float32 depth in metres, 0 = missing; with ``return_valid_mask`` a tuple ``(depth, valid)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown or ambiguous format, 8-bit visualisation, colour image, negative values, or data that
            does not match the chosen format. NaN / inf in float files become 0 with a warning.
    """
    _check_format(format, allow_auto=True)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"depth file not found: {path}")
    try:
        raw, container = _read_raw(path, format)
        chosen = _resolve_auto(path, raw, container) if format == "auto" else format
        if chosen == "nyu_raw" and container == "image":
            raise ValueError(f"format 'nyu_raw' reads the NYU raw .pgm files, got a {path.suffix} image.")
        logger.info("load_depth(%s): format %r%s.", path, chosen, " (auto)" if format == "auto" else "")
        depth = decode_depth_array(raw, chosen)
    except ValueError as error:  # every error about the file names it
        message = str(error)
        raise ValueError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    if return_valid_mask:
        return depth, depth > 0
    return depth


# ----------------------------------------------------------------------------------------------------------------------
# Encoding and writing
# ----------------------------------------------------------------------------------------------------------------------


def _encode_checked(counts: np.ndarray, depth: np.ndarray, format: str, low: int, high: int) -> np.ndarray:
    valid = depth > 0
    rounded = np.rint(counts)
    bad = valid & ((rounded < low) | (rounded > high))
    if bad.any():
        values = depth[bad]
        raise ValueError(
            f"{int(bad.sum())} depth value(s) in [{values.min():.6g}, {values.max():.6g}] m do not fit format "
            f"{format!r}, which stores {_representable_range(format)}."
        )
    return np.where(valid, rounded, 0).astype(np.uint16)


def _representable_range(format: str) -> str:
    if format == "nyu_raw":
        low = NYU_RAW_PARAM_1 / NYU_RAW_PARAM_2
        high = NYU_RAW_PARAM_1 / (NYU_RAW_PARAM_2 - _NYU_RAW_MAX_VALID)
        return f"{low:.4f} .. {high:.1f} m"
    step = 1.0 / _UNITS_PER_METRE[format]
    return f"steps of {step:.6g} m from 1 to 65535 steps ({step:.6g} .. {0xFFFF * step:.6g} m)"


def encode_depth(depth_m: np.ndarray, format: str) -> np.ndarray:
    """Inverse of `decode_depth_array`: float metres to the stored values of ``format``.

    Args:
        depth_m: (H, W) depth in metres, 0 = missing. Must be finite and >= 0.
        format: one of `DEPTH_FORMATS`.

    Returns:
        (H, W) uint16 counts for ``mm`` / ``kitti`` / ``tum`` / ``sunrgbd`` (rounded to the nearest step, then
        bit-rotated for ``sunrgbd``), uint16 disparities with 2047 = missing for ``nyu_raw`` (rounded), and float32
        metres for ``float``.

    Raises:
        ValueError: unknown format, wrong shape, NaN / inf / negative values, or a valid depth that would round to
            0 or beyond the format's largest value (it would silently become "missing" or wrap).
    """
    _check_format(format, allow_auto=False)
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise ValueError(f"`depth_m` must have shape (H, W), got {depth.shape}.")
    if not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"`depth_m` must be a float array of metres, got {depth.dtype}.")
    if not np.isfinite(depth).all():
        raise ValueError(f"`depth_m` has {int((~np.isfinite(depth)).sum())} NaN/inf value(s); set them to 0 first.")
    if (depth < 0).any():
        raise ValueError(f"`depth_m` must be >= 0 metres, got {int((depth < 0).sum())} negative value(s).")
    if format == "float":
        return depth.astype(np.float32)
    depth64 = depth.astype(np.float64)  # exact rounding of e.g. 1.2345 m * 1000
    if format == "nyu_raw":
        with np.errstate(divide="ignore"):
            disparity = NYU_RAW_PARAM_2 - NYU_RAW_PARAM_1 / np.where(depth64 > 0, depth64, 1.0)
        encoded = _encode_checked(disparity, depth64, format, 0, _NYU_RAW_MAX_VALID)
        return np.where(depth64 > 0, encoded, NYU_RAW_INVALID).astype(np.uint16)
    counts = _encode_checked(depth64 * _UNITS_PER_METRE[format], depth64, format, 1, 0xFFFF)
    if format == "sunrgbd":
        counts = (counts << np.uint16(3)) | (counts >> np.uint16(13))
    return counts


def save_depth(path: str | os.PathLike, depth_m: np.ndarray, format: str) -> None:
    """Write a metric depth map in the layout of ``format``.

    ``mm`` / ``kitti`` / ``tum`` / ``sunrgbd`` write a 16-bit greyscale PNG (PIL mode ``I;16``); ``nyu_raw`` writes a
    P5 PGM with the NYU raw dump's byte layout (header maxval 65535, little-endian samples); ``float`` writes
    ``.npy``, ``.npz`` (key ``"depth"``) or a float32 TIFF, chosen by the suffix.

    Args:
        path: destination; its suffix must match the format.
        depth_m: (H, W) float depth in metres, 0 = missing.
        format: one of `DEPTH_FORMATS`.

    Raises:
        ValueError: unknown format, a suffix that does not match the format, or values `encode_depth` refuses.
    """
    _check_format(format, allow_auto=False)
    path = Path(path)
    suffix = path.suffix.lower()
    allowed = {"nyu_raw": (".pgm",), "float": _FLOAT_SUFFIXES + _TIFF_SUFFIXES}.get(format, (".png",))
    if suffix not in allowed:
        raise ValueError(f"format {format!r} is written to {list(allowed)} files, got path {str(path)!r}.")
    encoded = encode_depth(depth_m, format)
    height, width = encoded.shape
    if format == "nyu_raw":
        header = f"P5\n{width} {height}\n65535\n".encode("ascii")
        path.write_bytes(header + encoded.astype("<u2").tobytes())
    elif format == "float":
        if suffix == ".npy":
            np.save(path, encoded)
        elif suffix == ".npz":
            np.savez_compressed(path, depth=encoded)
        else:
            Image.fromarray(encoded).save(path)
    else:
        Image.frombytes("I;16", (width, height), encoded.astype("<u2").tobytes()).save(path, format="PNG")
    logger.info("save_depth(%s): format %r, %dx%d.", path, format, width, height)
