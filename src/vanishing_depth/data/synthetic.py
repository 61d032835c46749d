# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Procedural synthetic RGB-D scenes: a pinhole camera inside a textured room with boxes and spheres.

The scenes add cheap geometric variety to a pretraining mix and give tests RGB-D frames with an exactly known
depth. Every frame is a ray-cast (vectorised numpy, no per-pixel Python loop) of:

- a room-like axis-aligned box (floor, ceiling, four walls), 3-9.5 m long by default (`room_length_m`), 3-7 m wide,
  2.4-3.4 m high, each face with its own material;
- 1-5 boxes (rotated about the vertical axis, standing on the floor or floating) and 0-3 spheres, each at least
  1.2 m in front of the camera, or with `near_object_probability` as close as 0.3 m (a hand, a chair back);
- per-surface materials: plain, checker, stripes or smooth noise colour patterns, evaluated in the surface's own
  coordinates so that patterns stick to objects; pattern edges are colour edges without a depth edge, and with
  `shared_material_probability` an object takes the material of a room face, so that a depth edge has no colour
  edge beyond the shading (texture correlates with geometry only partly, as in real rooms);
- Lambertian shading by the surface normal (a directional light plus ambient light, and a mild fall-off with
  distance) so that RGB edges coincide with depth edges and normal changes, plus a little pixel noise;
- optional sensor holes: depth is set to 0 on grazing surfaces and on very dark surfaces (where active sensors lose
  the signal) with some probability, in a few random blobs, and beyond ``max_depth_m``.

Depth is z-depth (distance along the optical axis) in metres, 0 = no measurement, the same convention as every real
RGB-D sensor format. Everything random is drawn from one generator, so a seed replays the same frame.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset
from PIL import Image

from .depth_io import encode_depth
from .schema import RGBD_CORPUS_FEATURES

logger = logging.getLogger(__name__)

SYNTHETIC_SOURCE_NAME = "synthetic"
#: The folder the demo renders its procedural corpus into (under its output root).
DEMO_SYNTHETIC_FOLDER = "vanishing-depth-demo-synthetic"

# Bumped whenever the renderer's output changes, so that cached `datasets` builds are not reused across versions.
_RENDERER_VERSION = "2"

GeneratorLike = torch.Generator | np.random.Generator | int


def as_numpy_generator(generator: GeneratorLike) -> np.random.Generator:
    """Turn a `torch.Generator`, a `np.random.Generator` or an integer seed into a numpy generator.

    A `torch.Generator` is advanced by one draw (a 62-bit seed), so replaying the torch generator replays the scene.
    A `np.random.Generator` is used as is (and advanced); an int seeds a fresh `np.random.default_rng(seed)`.
    """
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        return np.random.default_rng(seed)
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        if generator < 0:
            raise ValueError(f"`generator` as an integer seed must be >= 0, got {generator}.")
        return np.random.default_rng(int(generator))
    raise ValueError(
        "`generator` must be a torch.Generator, a numpy.random.Generator or a non-negative int seed, "
        f"got {type(generator).__name__}."
    )


@dataclass
class _Material:
    color_a: np.ndarray  # (3,) albedo in [0, 1]
    color_b: np.ndarray  # (3,) second colour of the pattern
    pattern: str  # "plain" | "checker" | "stripes" | "noise"
    scale_m: float  # pattern period in metres
    direction: np.ndarray  # (3,) unit vector, for stripes
    waves: np.ndarray  # (3, 4) rows: wave vector (3) + phase, for noise


def _random_material(rng: np.random.Generator) -> _Material:
    color_a = rng.uniform(0.08, 1.0, size=3)
    # The second colour differs clearly in brightness or hue so patterns are visible after shading.
    color_b = np.clip(color_a * rng.uniform(0.2, 0.7) + rng.uniform(0.0, 0.5, size=3), 0.0, 1.0)
    pattern = str(rng.choice(["plain", "checker", "stripes", "noise"], p=[0.25, 0.25, 0.25, 0.25]))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction) + 1e-12
    wave_dirs = rng.normal(size=(3, 3))
    wave_dirs /= np.linalg.norm(wave_dirs, axis=1, keepdims=True) + 1e-12
    wave_freq = rng.uniform(2.0, 9.0, size=(3, 1))  # radians per metre
    waves = np.concatenate([wave_dirs * wave_freq, rng.uniform(0, 2 * np.pi, size=(3, 1))], axis=1)
    return _Material(color_a, color_b, pattern, float(rng.uniform(0.1, 0.6)), direction, waves)


def _object_material(rng: np.random.Generator, materials: list[_Material], shared_probability: float) -> _Material:
    # An object's own material, or (with `shared_probability`) one of the room faces' (the first six materials).
    # The object's own material is drawn either way, so the stream of random numbers does not depend on the choice.
    own = _random_material(rng)
    if shared_probability > 0 and rng.random() < shared_probability:
        return materials[int(rng.integers(0, 6))]
    return own


def _pattern_weight(material: _Material, points: np.ndarray) -> np.ndarray:
    """Mixing weight in [0, 1] between the material's two colours at `points` (N, 3), in surface coordinates."""
    if material.pattern == "plain":
        return np.zeros(points.shape[0])
    if material.pattern == "checker":
        # A small offset keeps cell borders away from faces that lie exactly on a multiple of the period.
        cells = np.floor((points + 1e-3) / material.scale_m).astype(np.int64)
        return (cells.sum(axis=1) % 2).astype(np.float64)
    if material.pattern == "stripes":
        phase = points @ material.direction / material.scale_m
        return (np.sin(2 * np.pi * phase) > 0).astype(np.float64)
    # "noise": a smooth pseudo-noise from three random plane waves.
    values = np.sin(points @ material.waves[:, :3].T + material.waves[:, 3]).sum(axis=1)
    return np.clip(0.5 + values / 6.0, 0.0, 1.0)


def _look_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation (3, 3); columns are the camera's right, down and forward axes in a y-up world."""
    forward = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
    right = np.cross(np.array([0.0, 1.0, 0.0]), forward)
    right /= np.linalg.norm(right)
    down = np.cross(right, forward)
    cos_r, sin_r = math.cos(roll), math.sin(roll)
    right, down = cos_r * right + sin_r * down, -sin_r * right + cos_r * down
    return np.stack([right, down, forward], axis=1)


def _yaw_matrix(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def render_synthetic_scene(
    height: int,
    width: int,
    generator: GeneratorLike,
    fx: float | None = None,
    fy: float | None = None,
    cx: float | None = None,
    cy: float | None = None,
    missing_pixels: bool = True,
    max_depth_m: float = 10.0,
    return_intrinsics: bool = False,
    room_length_m: tuple[float, float] = (3.0, 9.5),
    near_object_probability: float = 0.0,
    shared_material_probability: float = 0.0,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """Render one random room scene as an aligned RGB image and metric depth map.

    Args:
        height, width: image size in pixels (each >= 8).
        generator: `torch.Generator`, `np.random.Generator` or int seed; the same seed gives the same frame.
        fx, fy: focal lengths in pixels. `fx=None` draws a horizontal field of view of 55-80 degrees;
            `fy=None` uses `fx` (square pixels).
        cx, cy: principal point in pixels; default the image centre `((width - 1) / 2, (height - 1) / 2)`.
        missing_pixels: if True, simulate sensor holes (grazing and dark surfaces, a few blobs) as depth 0.
        max_depth_m: sensor range; depth beyond it is 0.
        return_intrinsics: also return `(fx, fy, cx, cy)` in pixels.
        room_length_m: `(low, high)` metres the room's length (along the view) is drawn from; with (3, 12) and
            `max_depth_m=12` the depth spans an indoor sensor's range.
        near_object_probability: chance that each box or sphere stands 0.3-1.2 m in front of the camera instead of
            at least 1.2 m (0: never; draws nothing, so the default keeps the scenes of a seed unchanged).
        shared_material_probability: chance that each box or sphere takes the material of a random room face.

    Returns:
        `rgb`: uint8 array (height, width, 3); `depth_m`: float32 array (height, width), z-depth in metres with
        0 = no measurement (valid values lie roughly in 0.5-10 m); and `(fx, fy, cx, cy)` if `return_intrinsics`.
    """
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 8:
            raise ValueError(f"`{name}` must be an int >= 8 (pixels), got {value!r}.")
    if not max_depth_m > 0:
        raise ValueError(f"`max_depth_m` must be > 0 metres, got {max_depth_m!r}.")
    if len(room_length_m) != 2 or not 1.7 < room_length_m[0] <= room_length_m[1]:
        raise ValueError(f"`room_length_m` must be (low, high) metres with 1.7 < low <= high, got {room_length_m!r}.")
    for name, value in (
        ("near_object_probability", near_object_probability),
        ("shared_material_probability", shared_material_probability),
    ):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"`{name}` must be a probability in [0, 1], got {value!r}.")
    rng = as_numpy_generator(generator)
    height, width = int(height), int(width)

    # Camera. The field of view is drawn even when fx is given, so a seed gives the same scene either way.
    fov_x = math.radians(rng.uniform(55.0, 80.0))
    fx = float(fx) if fx is not None else (width / 2.0) / math.tan(fov_x / 2.0)
    fy = float(fy) if fy is not None else fx
    cx = float(cx) if cx is not None else (width - 1) / 2.0
    cy = float(cy) if cy is not None else (height - 1) / 2.0
    if fx <= 0 or fy <= 0:
        raise ValueError(f"`fx` and `fy` must be > 0 pixels, got fx={fx}, fy={fy}.")

    # Room: [0, room_w] x [0, room_h] x [0, room_l] in a y-up world.
    room_w, room_h, room_l = rng.uniform(3.0, 7.0), rng.uniform(2.4, 3.4), rng.uniform(*room_length_m)
    room_lo = np.zeros(3)
    room_hi = np.array([room_w, room_h, room_l])
    cam_pos = np.array(
        [rng.uniform(0.8, room_w - 0.8), rng.uniform(1.0, min(1.8, room_h - 0.5)), rng.uniform(0.2, 0.8)]
    )
    rotation = _look_rotation(
        yaw=math.radians(rng.uniform(-30.0, 30.0)),
        pitch=math.radians(rng.uniform(-20.0, 5.0)),
        roll=math.radians(rng.uniform(-5.0, 5.0)),
    )

    # Rays: unnormalised directions whose camera-frame z is 1, so the ray parameter t equals z-depth.
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    dirs_cam = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1).reshape(-1, 3)
    dirs = dirs_cam @ rotation.T  # (N, 3) world frame
    num_rays = dirs.shape[0]

    t_hit = np.full(num_rays, np.inf)
    normals = np.zeros((num_rays, 3))
    surface_id = np.full(num_rays, -1, dtype=np.int64)
    local_points = np.zeros((num_rays, 3))  # hit points in each surface's own frame, for textures

    # Room interior: leave through the nearest face; normals point into the room.
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(dirs > 0, room_hi, room_lo)
        t_axes = np.where(dirs != 0, (bound - cam_pos) / dirs, np.inf)
    axis = np.argmin(t_axes, axis=1)
    t_room = t_axes[np.arange(num_rays), axis]
    face = axis * 2 + (dirs[np.arange(num_rays), axis] > 0)  # 0..5: (x-,x+,y-,y+,z-,z+)
    t_hit[:] = t_room
    normals[np.arange(num_rays), axis] = -np.sign(dirs[np.arange(num_rays), axis])
    surface_id[:] = face
    local_points[:] = cam_pos + t_room[:, None] * dirs
    materials = [_random_material(rng) for _ in range(6)]
    # Make floor and ceiling a little distinct (darker floor, lighter ceiling) like real rooms.
    materials[2].color_a = materials[2].color_a * 0.7
    materials[3].color_a = np.clip(materials[3].color_a * 0.4 + 0.6, 0.0, 1.0)

    # Boxes, rotated about the vertical axis, standing on the floor or floating.
    num_boxes = int(rng.integers(1, 6))
    for _ in range(num_boxes):
        half = rng.uniform(0.15, 0.75, size=3)
        half[1] = min(half[1], room_h / 2 - 0.05)
        center = np.array(
            [
                rng.uniform(half[0], room_w - half[0]),
                half[1] if rng.random() < 0.7 else rng.uniform(half[1], room_h - half[1]),
                rng.uniform(min(cam_pos[2] + 1.2 + half[2], room_l - half[2]), room_l - half[2]),
            ]
        )
        if near_object_probability > 0 and rng.random() < near_object_probability:
            # Its whole footprint (any yaw) 0.3-1.2 m in front of the camera.
            reach = math.hypot(half[0], half[2])
            center[2] = min(cam_pos[2] + rng.uniform(0.3, 1.2) + reach, room_l - reach)
        yaw = _yaw_matrix(rng.uniform(0, np.pi / 2))
        origin_local = (cam_pos - center) @ yaw
        dirs_local = dirs @ yaw
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (-half - origin_local) / dirs_local
            t2 = (half - origin_local) / dirs_local
        t_min = np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2))
        t_max = np.where(np.isnan(t1), np.inf, np.maximum(t1, t2))
        entry_axis = np.argmax(t_min, axis=1)
        t_near = t_min[np.arange(num_rays), entry_axis]
        t_far = np.min(t_max, axis=1)
        hit = (t_near <= t_far) & (t_near > 1e-6) & (t_near < t_hit)
        if np.any(hit):
            idx = np.nonzero(hit)[0]
            n_local = np.zeros((idx.size, 3))
            n_local[np.arange(idx.size), entry_axis[idx]] = -np.sign(dirs_local[idx, entry_axis[idx]])
            t_hit[idx] = t_near[idx]
            normals[idx] = n_local @ yaw.T
            surface_id[idx] = len(materials)
            local_points[idx] = origin_local + t_near[idx, None] * dirs_local[idx]
        materials.append(_object_material(rng, materials, shared_material_probability))

    # Spheres.
    num_spheres = int(rng.integers(0, 4))
    for _ in range(num_spheres):
        radius = rng.uniform(0.2, 0.7)
        radius = min(radius, room_h / 2 - 0.05, room_w / 2 - 0.05)
        center = np.array(
            [
                rng.uniform(radius, room_w - radius),
                radius if rng.random() < 0.6 else rng.uniform(radius, room_h - radius),
                rng.uniform(min(cam_pos[2] + 1.2 + radius, room_l - radius), room_l - radius),
            ]
        )
        if near_object_probability > 0 and rng.random() < near_object_probability:
            center[2] = min(cam_pos[2] + rng.uniform(0.3, 1.2) + radius, room_l - radius)
        oc = cam_pos - center
        a = np.einsum("ij,ij->i", dirs, dirs)
        b = 2.0 * dirs @ oc
        c = oc @ oc - radius**2
        disc = b * b - 4 * a * c
        with np.errstate(invalid="ignore"):
            t_sphere = (-b - np.sqrt(disc)) / (2 * a)
        hit = (disc >= 0) & (t_sphere > 1e-6) & (t_sphere < t_hit)
        if np.any(hit):
            idx = np.nonzero(hit)[0]
            points = cam_pos + t_sphere[idx, None] * dirs[idx]
            t_hit[idx] = t_sphere[idx]
            normals[idx] = (points - center) / radius
            surface_id[idx] = len(materials)
            local_points[idx] = points - center
        materials.append(_object_material(rng, materials, shared_material_probability))

    # Albedo from each surface's material and pattern.
    albedo = np.zeros((num_rays, 3))
    for sid, material in enumerate(materials):
        idx = np.nonzero(surface_id == sid)[0]
        if idx.size == 0:
            continue
        weight = _pattern_weight(material, local_points[idx])[:, None]
        albedo[idx] = material.color_a * (1 - weight) + material.color_b * weight

    # Shading: ambient + Lambertian directional light + gentle distance fall-off; normals face the camera.
    light = np.array([rng.uniform(-0.6, 0.6), 1.0, rng.uniform(-0.8, 0.3)])
    light /= np.linalg.norm(light)
    # `light` points towards a light above the scene; normals point to the side the camera sees.
    lambert = np.clip(normals @ light, 0.0, 1.0)
    ambient = rng.uniform(0.25, 0.45)
    dir_norm = np.linalg.norm(dirs, axis=1)
    distance = t_hit * dir_norm
    shading = (ambient + (1 - ambient) * lambert) / (1.0 + 0.01 * distance**2)
    rgb = albedo * shading[:, None]
    rgb = rgb + rng.normal(0.0, 0.008, size=rgb.shape)  # camera noise
    rgb_u8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8).reshape(height, width, 3)

    depth = t_hit.copy()
    if missing_pixels:
        cos_incidence = np.abs(np.einsum("ij,ij->i", normals, dirs)) / dir_norm
        grazing = (cos_incidence < 0.2) & (rng.random(num_rays) < 0.6)
        luminance = rgb @ np.array([0.299, 0.587, 0.114])
        dark = (luminance < 0.06) & (rng.random(num_rays) < 0.8)
        depth[grazing | dark] = 0.0
        depth_img = depth.reshape(height, width)
        for _ in range(int(rng.integers(0, 4))):  # a few blobs: specular or absorbing spots
            by, bx = rng.uniform(0, height), rng.uniform(0, width)
            radius = rng.uniform(0.02, 0.06) * min(height, width)
            depth_img[(v - by) ** 2 + (u - bx) ** 2 < radius**2] = 0.0
        depth = depth_img.reshape(-1)
    depth[~np.isfinite(depth) | (depth > max_depth_m)] = 0.0
    depth_m = depth.reshape(height, width).astype(np.float32)

    if return_intrinsics:
        return rgb_u8, depth_m, (fx, fy, cx, cy)
    return rgb_u8, depth_m


def _encode_png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _synthetic_rows(
    num_frames: int,
    height: int,
    width: int,
    seed: int,
    missing_pixels: bool,
    renderer_version: str,
    scene_options: dict | None = None,
) -> Iterator[dict]:
    for index in range(num_frames):
        # One independent stream per frame, so frame i does not depend on how many frames come before it.
        rgb, depth_m, intrinsics = render_synthetic_scene(
            height,
            width,
            np.random.default_rng([seed, index]),
            missing_pixels=missing_pixels,
            return_intrinsics=True,
            **(scene_options or {}),
        )
        frame_id = f"{seed}-{index:06d}"
        yield {
            "image": {"bytes": _encode_png(rgb), "path": f"{frame_id}.png"},
            "depth": {"bytes": _encode_png(encode_depth(depth_m, "mm")), "path": f"{frame_id}_depth.png"},
            "depth_scale": 0.001,
            "intrinsics": [float(x) for x in intrinsics],
            "source": SYNTHETIC_SOURCE_NAME,
            "frame_id": frame_id,
        }


def synthetic_corpus(
    num_frames: int,
    height: int,
    width: int,
    seed: int = 0,
    missing_pixels: bool = True,
    keep_in_memory: bool = False,
    cache_dir: str | None = None,
    **scene_options,
):
    """Build a `datasets.Dataset` of synthetic frames in the RGB-D corpus schema (see `vanishing_depth.data.schema`).

    RGB is stored as a lossless PNG, depth as a 16-bit millimetre PNG with `depth_scale` 0.001 (so depth is
    quantised to 1 mm), `intrinsics` are the frame's `(fx, fy, cx, cy)` in pixels, `source` is "synthetic" and
    `frame_id` is "<seed>-<index>". Frame `i` is rendered from `np.random.default_rng([seed, i])`, so the corpus is
    deterministic for a seed and its frames do not depend on `num_frames`. `scene_options` go to
    `render_synthetic_scene` (``max_depth_m``, ``room_length_m``, ``near_object_probability``,
    ``shared_material_probability``).
    """
    if not isinstance(num_frames, (int, np.integer)) or isinstance(num_frames, bool) or num_frames < 1:
        raise ValueError(f"`num_frames` must be an int >= 1, got {num_frames!r}.")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0, got {seed!r}.")
    return Dataset.from_generator(
        _synthetic_rows,
        features=RGBD_CORPUS_FEATURES,
        keep_in_memory=keep_in_memory,
        cache_dir=cache_dir,
        gen_kwargs={
            "num_frames": int(num_frames),
            "height": int(height),
            "width": int(width),
            "seed": int(seed),
            "missing_pixels": bool(missing_pixels),
            # Part of the `datasets` cache key, so a changed renderer does not reuse old cached frames.
            "renderer_version": _RENDERER_VERSION,
            "scene_options": dict(scene_options),
        },
    )


__all__ = [
    "SYNTHETIC_SOURCE_NAME",
    "as_numpy_generator",
    "render_synthetic_scene",
    "synthetic_corpus",
]
