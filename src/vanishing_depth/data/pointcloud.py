# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Pinhole-camera geometry of a metric depth map: intrinsics checks and rescaling, back-projection to a point cloud,
and a binary PLY writer.

Intrinsics are ``(fx, fy, cx, cy)`` in pixels with the OpenCV / ROS ``CameraInfo`` convention: pixel ``(u, v)`` (column,
row) has its centre at ``(u, v)``, so a point at depth ``z`` metres is ``x = (u - cx) z / fx``, ``y = (v - cy) z / fy``
in the camera frame (x right, y down, z forward; ROS ``optical`` frames).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["check_intrinsics", "depth_to_pointcloud", "scale_intrinsics", "write_ply"]


def check_intrinsics(value: Any, name: str = "intrinsics") -> list[float]:
    """`value` as ``[fx, fy, cx, cy]`` floats, or a ValueError naming `name`: 4 finite numbers with fx, fy > 0."""
    try:
        values = [float(x) for x in value]
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be 4 numbers (fx, fy, cx, cy) in pixels, got {value!r}.") from None
    if len(values) != 4 or not all(np.isfinite(values)) or values[0] <= 0 or values[1] <= 0:
        raise ValueError(
            f"`{name}` must be 4 finite numbers (fx, fy, cx, cy) in pixels with fx, fy > 0, got {value!r}."
        )
    return values


def scale_intrinsics(
    intrinsics: Sequence[float], from_size: tuple[int, int], to_size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """The intrinsics of an image of (H, W) `from_size` resized to `to_size`: focal lengths scale with the size, the
    principal point keeps its place relative to the pixel grid (``cx' = (cx + 0.5) * sx - 0.5``, pixel centres at
    integer coordinates)."""
    fx, fy, cx, cy = check_intrinsics(intrinsics)
    (from_h, from_w), (to_h, to_w) = from_size, to_size
    if min(from_h, from_w, to_h, to_w) <= 0:
        raise ValueError(f"sizes must be positive (H, W), got from_size={from_size!r}, to_size={to_size!r}.")
    sx, sy = to_w / from_w, to_h / from_h
    return fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5


def depth_to_pointcloud(
    depth_m: np.ndarray, intrinsics: Sequence[float], rgb: Any = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Back-project a metric depth map to a point cloud in the camera frame.

    Args:
        depth_m: (H, W) depth in metres, 0 (or NaN / inf) = no measurement; those pixels give no point.
        intrinsics: ``(fx, fy, cx, cy)`` in pixels of `depth_m`.
        rgb: optional colour image of the same (H, W): a uint8 (H, W, 3) array or a PIL image.

    Returns:
        ``(points, colours)``: float32 (N, 3) metres (x right, y down, z forward), one row per measured pixel in
        row-major order, and uint8 (N, 3) colours of those pixels (None without `rgb`).
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2 or depth.size == 0 or not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(
            f"`depth_m` must be a float (H, W) map in metres, got {depth.dtype} of shape {depth.shape}; decode sensor "
            "units first (vanishing_depth.data.decode_depth_array)."
        )
    fx, fy, cx, cy = check_intrinsics(intrinsics)
    rows, cols = np.nonzero(np.isfinite(depth) & (depth > 0))
    z = depth[rows, cols].astype(np.float64)
    points = np.stack([(cols - cx) * z / fx, (rows - cy) * z / fy, z], axis=1).astype(np.float32)
    if rgb is None:
        return points, None
    colours = np.asarray(rgb.convert("RGB") if hasattr(rgb, "convert") else rgb)
    if colours.dtype != np.uint8 or colours.shape != (*depth.shape, 3):
        raise ValueError(
            f"`rgb` must be a uint8 (H, W, 3) image of the depth map's size {depth.shape}, got {colours.dtype} of shape "
            f"{colours.shape}."
        )
    return points, np.ascontiguousarray(colours[rows, cols])


def write_ply(path: str | os.PathLike, points: np.ndarray, colours: np.ndarray | None = None) -> Path:
    """Write a point cloud as a binary little-endian PLY: float32 ``x y z`` (metres) and, with `colours`, uchar
    ``red green blue`` per vertex. Readable by Open3D, MeshLab, CloudCompare and Rerun. Returns the path."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or not np.issubdtype(points.dtype, np.number):
        raise ValueError(f"`points` must be a numeric (N, 3) array of metres, got {points.dtype} {points.shape}.")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colours is not None:
        colours = np.asarray(colours)
        if colours.shape != points.shape or colours.dtype != np.uint8:
            raise ValueError(
                f"`colours` must be uint8 of the points' shape {points.shape}, got {colours.dtype} {colours.shape}."
            )
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(points), dtype=fields)
    for axis, name in enumerate("xyz"):
        vertices[name] = points[:, axis]
    if colours is not None:
        for channel, name in enumerate(("red", "green", "blue")):
            vertices[name] = colours[:, channel]
    properties = "".join(f"property {'float' if dtype == '<f4' else 'uchar'} {name}\n" for name, dtype in fields)
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment vanishing-depth point cloud, metres, camera frame\n"
        f"element vertex {len(points)}\n{properties}end_header\n"
    )
    path = Path(path)
    with open(path, "wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(vertices.tobytes())
    return path
