"""Point clouds from metric depth: a synthetic plane at known depth lies on that plane within a millimetre, through a
16-bit millimetre PNG and after resizing; the binary PLY reads back exactly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vanishing_depth.data import (
    depth_to_pointcloud,
    load_depth,
    save_depth,
    scale_intrinsics,
    write_ply,
)

HEIGHT, WIDTH = 48, 64
INTRINSICS = (55.0, 57.0, 31.2, 23.7)
# A tilted plane n . X = d (unit normal, metres) seen by the camera: 1.2 .. 3 m deep over the image.
NORMAL = np.array([0.25, -0.35, 0.9])
NORMAL = NORMAL / np.linalg.norm(NORMAL)
OFFSET_M = 1.8


def plane_depth(height=HEIGHT, width=WIDTH, intrinsics=INTRINSICS) -> np.ndarray:
    """Exact depth z of the plane along each pixel's ray ((u - cx) / fx, (v - cy) / fy, 1)."""
    fx, fy, cx, cy = intrinsics
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)
    return (OFFSET_M / (rays @ NORMAL)).astype(np.float32)


def _ply(path):
    data = path.read_bytes()
    header, body = data.split(b"end_header\n", 1)
    lines = header.decode("ascii").splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
    count = int(next(line for line in lines if line.startswith("element vertex")).split()[-1])
    names = [line.split()[-1] for line in lines if line.startswith("property")]
    types = {"float": "<f4", "uchar": "u1"}
    dtype = [(line.split()[-1], types[line.split()[1]]) for line in lines if line.startswith("property")]
    assert len(body) == count * np.dtype(dtype).itemsize
    return np.frombuffer(body, dtype=dtype, count=count), names


def test_a_plane_at_known_depth_back_projects_onto_that_plane():
    depth = plane_depth()
    assert 1.0 < depth.min() and depth.max() < 3.5
    points, colours = depth_to_pointcloud(depth, INTRINSICS)
    assert colours is None and points.dtype == np.float32 and points.shape == (HEIGHT * WIDTH, 3)
    assert np.abs(points.astype(np.float64) @ NORMAL - OFFSET_M).max() < 1e-5
    # Axes: x grows to the right of the principal point, y downwards, z is the depth itself.
    first, last = points[0], points[-1]
    assert first[0] < 0 and first[1] < 0 and last[0] > 0 and last[1] > 0
    np.testing.assert_allclose(points[:, 2], depth.reshape(-1))


def test_the_plane_survives_a_millimetre_png_and_resizing_within_a_millimetre(tmp_path):
    save_depth(tmp_path / "plane.png", plane_depth(), "mm")
    depth = load_depth(tmp_path / "plane.png", format="mm")
    points, _ = depth_to_pointcloud(depth, INTRINSICS)
    assert np.abs(points.astype(np.float64) @ NORMAL - OFFSET_M).max() < 1e-3
    # Half resolution: pixel (u', v') covers full-resolution pixels 2u', 2u' + 1, so its centre is at 2u' + 0.5. Its
    # exact plane depth, back-projected with the rescaled intrinsics, lies on the plane.
    fx, fy, cx, cy = INTRINSICS
    v, u = np.mgrid[0 : HEIGHT // 2, 0 : WIDTH // 2].astype(np.float64) * 2 + 0.5
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)
    half_depth = (OFFSET_M / (rays @ NORMAL)).astype(np.float32)
    half_intrinsics = scale_intrinsics(INTRINSICS, (HEIGHT, WIDTH), (HEIGHT // 2, WIDTH // 2))
    np.testing.assert_allclose(half_intrinsics, (27.5, 28.5, 15.35, 11.6))
    points, _ = depth_to_pointcloud(half_depth, half_intrinsics)
    assert np.abs(points.astype(np.float64) @ NORMAL - OFFSET_M).max() < 1e-5
    # Without the rescale the cloud leaves the plane by far more than a millimetre.
    points, _ = depth_to_pointcloud(half_depth, INTRINSICS)
    assert np.abs(points.astype(np.float64) @ NORMAL - OFFSET_M).max() > 0.05


def test_missing_pixels_give_no_point_and_colours_follow_their_pixels(tmp_path):
    depth = plane_depth()
    depth[5, 7] = 0.0
    depth[6, :3] = np.nan
    depth[7, 0] = np.inf
    rgb = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    points, colours = depth_to_pointcloud(depth, INTRINSICS, rgb=Image.fromarray(rgb))
    assert len(points) == HEIGHT * WIDTH - 5 and colours.shape == points.shape and colours.dtype == np.uint8
    keep = np.isfinite(depth) & (depth > 0)
    np.testing.assert_array_equal(colours, rgb[keep])
    path = write_ply(tmp_path / "cloud.ply", points, colours)
    vertices, names = _ply(path)
    assert names == ["x", "y", "z", "red", "green", "blue"]
    np.testing.assert_array_equal(np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1), points)
    np.testing.assert_array_equal(np.stack([vertices["red"], vertices["green"], vertices["blue"]], axis=1), colours)
    vertices, names = _ply(write_ply(tmp_path / "bare.ply", points))
    assert names == ["x", "y", "z"] and len(vertices) == len(points)


def test_bad_inputs_are_value_errors_naming_the_argument():
    depth = plane_depth()
    with pytest.raises(ValueError, match="`depth_m` must be a float"):
        depth_to_pointcloud((depth * 1000).astype(np.uint16), INTRINSICS)
    with pytest.raises(ValueError, match="`intrinsics` must be 4"):
        depth_to_pointcloud(depth, (55.0, 57.0, 31.2))
    with pytest.raises(ValueError, match="fx, fy > 0"):
        depth_to_pointcloud(depth, (0.0, 57.0, 31.2, 23.7))
    with pytest.raises(ValueError, match="`rgb` must be a uint8"):
        depth_to_pointcloud(depth, INTRINSICS, rgb=np.zeros((HEIGHT, WIDTH + 1, 3), np.uint8))
    with pytest.raises(ValueError, match="`points` must be"):
        write_ply("unused.ply", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="`colours` must be uint8"):
        write_ply("unused.ply", np.zeros((3, 3)), np.zeros((3, 3)))
