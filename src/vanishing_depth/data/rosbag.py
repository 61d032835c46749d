# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""RGB-D frames straight from robot recordings: ROS 1 bags, ROS 2 bags (sqlite3 or MCAP) and bare ``.mcap`` / ``.db3``
files, read with the pure-Python `rosbags` package (no ROS install; ``pip install 'vanishing-depth[robotics]'``).

```python
from vanishing_depth.data import read_rosbag_frames

frames = read_rosbag_frames(
    "run_0412.mcap",
    rgb_topic="/camera/color/image_raw",
    depth_topic="/camera/aligned_depth_to_color/image_raw",
    camera_info_topic="/camera/color/camera_info",
)
for frame in frames:  # len(frames) is known before the first frame is decoded
    frame.rgb, frame.depth_m, frame.intrinsics, frame.stamp_ns
```

Encodings (`SUPPORTED_DEPTH_ENCODINGS`, `SUPPORTED_RGB_ENCODINGS`):

- depth, ``sensor_msgs/Image``: ``16UC1`` and ``mono16`` (millimetres, the ROS depth convention of REP 118),
  ``32FC1`` (metres; NaN and +-inf mean "no measurement", REP 117, and become 0);
- depth, ``sensor_msgs/CompressedImage``: ``compressedDepth`` (``compressed_depth_image_transport``: a 12-byte header,
  then a PNG of the 16-bit millimetres for ``16UC1``, or of quantised inverse depth for ``32FC1``), or a plain 16-bit
  PNG;
- colour, ``sensor_msgs/Image``: ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``; ``sensor_msgs/CompressedImage``:
  JPEG or PNG.

Anything else raises a ValueError naming the topic, the encoding and the supported list.

Pairing: each colour frame takes the depth frame with the nearest timestamp (``header.stamp``, or the bag's receive
time where the stamp is 0) if it lies within `max_time_offset_ms`; a depth frame serves at most one colour frame (the
nearest). Frames left without a partner are counted (`RosbagFrameReader.unpaired_rgb` / `unpaired_depth`) and
logged as a WARNING with the counts.

Alignment: depth must be registered to the colour camera (RealSense ``aligned_depth_to_color``, Azure Kinect
``depth_to_rgb``, ``depth_registered``): the same size, and the same intrinsics where both ``CameraInfo`` topics are
in the bag. Other depth is refused with a message naming the aligned topic, unless ``resize_depth=True``, which takes
depth of the colour's aspect ratio as the same view and resizes it with nearest neighbour (`resize_depth_nearest`).
"""

from __future__ import annotations

import io
import logging
import os
import struct
import warnings
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .depth_io import decode_depth_array
from .image_io import rgb_array
from .pointcloud import check_intrinsics, scale_intrinsics
from .schema import resize_depth_nearest, same_view

logger = logging.getLogger(__name__)

__all__ = [
    "SUPPORTED_DEPTH_ENCODINGS",
    "SUPPORTED_RGB_ENCODINGS",
    "RosbagFrame",
    "RosbagFrameReader",
    "read_rosbag_frames",
]

#: Depth encodings `read_rosbag_frames` decodes (``compressedDepth``: a ``CompressedImage`` of
#: ``compressed_depth_image_transport``; ``png``: a ``CompressedImage`` holding a 16-bit millimetre PNG).
SUPPORTED_DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1", "compressedDepth", "png")
#: Colour encodings `read_rosbag_frames` decodes (``jpeg`` / ``png``: a ``CompressedImage``).
SUPPORTED_RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "jpeg", "png")

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"

# compressed_depth_image_transport (image_transport_plugins, compression_common.h): struct ConfigHeader
# { int32 format; float depthParam[2]; } precedes the PNG.
COMPRESSED_DEPTH_HEADER_BYTES = 12
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Topics that usually carry depth registered to the colour camera, for the refusal message.
_ALIGNED_HINTS = ("aligned_depth_to_color", "depth_to_rgb", "depth_registered", "registered")
# Two intrinsics agree when every entry differs by less than this share of fx (pixels).
_INTRINSICS_TOLERANCE = 1e-3
_INSTALL_HINT = (
    "reading ROS bags needs the `rosbags` package: pip install 'vanishing-depth[robotics]' (or pip install rosbags)."
)


@dataclass(frozen=True)
class RosbagFrame:
    """One registered RGB-D frame of a recording.

    Attributes:
        rgb: (H, W, 3) uint8 colour image.
        depth_m: (H, W) float32 depth in metres at the colour image's size, 0 = no measurement.
        intrinsics: ``(fx, fy, cx, cy)`` in pixels of `rgb` (from the colour ``CameraInfo``), or None.
        stamp_ns: timestamp of the colour image in nanoseconds (``header.stamp``, or the bag time where it is 0).
        depth_stamp_ns: timestamp of the paired depth image in nanoseconds.
        depth_encoding: the depth message's encoding (``16UC1``, ``32FC1``, ``compressedDepth 16UC1``, ...).
    """

    rgb: np.ndarray
    depth_m: np.ndarray
    intrinsics: tuple[float, float, float, float] | None
    stamp_ns: int
    depth_stamp_ns: int
    depth_encoding: str

    @property
    def frame_id(self) -> str:
        """The colour timestamp as 19 digits: sorts in time order and names the frame's files."""
        return f"{self.stamp_ns:019d}"

    @property
    def depth_is_millimetres(self) -> bool:
        """Whether depth came as integer millimetres (``16UC1`` / ``mono16``), so a 16-bit mm PNG stores it exactly."""
        return "32FC1" not in self.depth_encoding


def _open_reader(path: Path):
    try:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore
    except ImportError as error:  # an optional extra: imported where it is used
        raise ImportError(_INSTALL_HINT) from error
    if not path.exists():
        raise FileNotFoundError(
            f"`path` {str(path)!r} does not exist (a .bag, .mcap, .db3 file or a ROS 2 bag folder)."
        )
    # Bags without embedded message definitions (old ROS 2 sqlite3 bags) decode with the standard message types.
    return AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))


def _stamp_ns(message: Any, bag_time_ns: int) -> int:
    stamp = message.header.stamp
    nanoseconds = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return nanoseconds if nanoseconds > 0 else int(bag_time_ns)


def _encoding(message: Any) -> str:
    """The encoding of an Image (``encoding``) or the format of a CompressedImage, as stored."""
    if message.__msgtype__ == COMPRESSED_TYPE:
        return str(message.format)
    return str(message.encoding)


def _unsupported(topic: str, encoding: str, role: str) -> ValueError:
    supported = SUPPORTED_DEPTH_ENCODINGS if role == "depth" else SUPPORTED_RGB_ENCODINGS
    other = "a colour" if role == "depth" else "a depth"
    return ValueError(
        f"{role} topic {topic!r} has encoding {encoding!r}, which is not supported for {role}; supported {role} "
        f"encodings: {list(supported)} (CompressedImage: JPEG / PNG for colour, compressedDepth PNG or 16-bit PNG for "
        f"depth). Is {topic!r} {other} topic?"
    )


def _raw_pixels(message: Any, dtype: str, channels: int, topic: str) -> np.ndarray:
    """The pixels of a raw ``sensor_msgs/Image`` as (H, W, channels) of `dtype`, honouring ``step`` (row padding) and
    ``is_bigendian``."""
    height, width, step = int(message.height), int(message.width), int(message.step)
    item = np.dtype(dtype).itemsize
    data = np.asarray(message.data, dtype=np.uint8)
    if height * step > data.size or width * channels * item > step:
        raise ValueError(
            f"topic {topic!r}: image message of {width}x{height} ({message.encoding}) has step {step} and {data.size} bytes; expected "
            f"at least {width * channels * item} bytes per row."
        )
    rows = data[: height * step].reshape(height, step)[:, : width * channels * item]
    order = ">" if int(message.is_bigendian) else "<"
    values = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order) if item > 1 else dtype)
    return values.reshape(height, width, channels).astype(np.dtype(dtype).newbyteorder("="), copy=False)


def _decode_rgb(message: Any, topic: str) -> np.ndarray:
    encoding = _encoding(message)
    if message.__msgtype__ == COMPRESSED_TYPE:
        payload = bytes(np.asarray(message.data, dtype=np.uint8))
        if "compressedDepth" in encoding:
            raise _unsupported(topic, encoding, "colour")
        try:
            return rgb_array({"bytes": payload, "path": None}, f"colour topic {topic!r}")
        except (OSError, SyntaxError) as error:
            raise ValueError(
                f"colour topic {topic!r}: CompressedImage ({encoding!r}) cannot be decoded as JPEG / PNG: {error}"
            ) from None
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(encoding)
    if channels is None:
        raise _unsupported(topic, encoding, "colour")
    pixels = _raw_pixels(message, "uint8", channels, topic)
    if encoding == "mono8":
        return np.ascontiguousarray(np.repeat(pixels, 3, axis=2))
    if encoding.startswith("bgr"):
        pixels = pixels[..., 2::-1]
    return np.ascontiguousarray(pixels[..., :3])


def _decode_compressed_depth(payload: bytes, topic: str, encoding: str) -> tuple[np.ndarray, str]:
    """compressed_depth_image_transport: the 12-byte ConfigHeader, then a PNG. ``16UC1``: the PNG holds the
    millimetres. ``32FC1``: it holds quantised inverse depth, depth = A / (v - B) with (A, B) the header's two floats,
    v = 0 missing (the plugin's codec.cpp)."""
    if "rvl" in encoding.lower():
        raise _unsupported(topic, encoding, "depth")
    header, png = payload[:COMPRESSED_DEPTH_HEADER_BYTES], payload[COMPRESSED_DEPTH_HEADER_BYTES:]
    if not png.startswith(_PNG_SIGNATURE):
        raise ValueError(
            f"depth topic {topic!r}: compressedDepth message ({encoding!r}) holds no PNG after its "
            f"{COMPRESSED_DEPTH_HEADER_BYTES}-byte header."
        )
    values = np.asarray(Image.open(io.BytesIO(png)))
    if encoding.split(";")[0].strip() == "32FC1":
        _, quant_a, quant_b = struct.unpack("<iff", header)
        inverse = values.astype(np.float64)
        with np.errstate(divide="ignore"):
            depth = np.where(inverse > 0, quant_a / (inverse - quant_b), 0.0)
        return decode_depth_array(depth.astype(np.float32), "float"), "compressedDepth 32FC1"
    return decode_depth_array(values, "mm"), "compressedDepth 16UC1"


def _decode_depth(message: Any, topic: str) -> tuple[np.ndarray, str]:
    """A depth message -> ((H, W) float32 metres, 0 = missing; the encoding), through `decode_depth_array`."""
    with warnings.catch_warnings():
        # NaN / inf are the ROS way of saying "no measurement" (REP 117): they become 0 without a warning per frame.
        warnings.filterwarnings("ignore", message=".*NaN/inf values treated as missing", category=RuntimeWarning)
        return _decode_depth_message(message, topic)


def _decode_depth_message(message: Any, topic: str) -> tuple[np.ndarray, str]:
    encoding = _encoding(message)
    if message.__msgtype__ == COMPRESSED_TYPE:
        payload = bytes(np.asarray(message.data, dtype=np.uint8))
        if "compressedDepth" in encoding:
            return _decode_compressed_depth(payload, topic, encoding)
        if not payload.startswith(_PNG_SIGNATURE):
            raise _unsupported(topic, encoding, "depth")  # JPEG cannot hold metric depth
        return decode_depth_array(Image.open(io.BytesIO(payload)), "mm"), "png 16UC1"
    if encoding in ("16UC1", "mono16"):
        return decode_depth_array(_raw_pixels(message, "uint16", 1, topic)[..., 0], "mm"), encoding
    if encoding == "32FC1":
        return decode_depth_array(_raw_pixels(message, "float32", 1, topic)[..., 0], "float"), encoding
    raise _unsupported(topic, encoding, "depth")


def _camera_matrix(message: Any) -> tuple[tuple[float, float, float, float] | None, tuple[int, int], bool]:
    """(fx, fy, cx, cy) or None (uncalibrated: K all 0), the (height, width) it is for, and whether it has
    distortion coefficients other than 0."""
    k = np.asarray(getattr(message, "k", None) if hasattr(message, "k") else message.K, dtype=np.float64)
    d = np.asarray(getattr(message, "d", None) if hasattr(message, "d") else message.D, dtype=np.float64)
    size = (int(message.height), int(message.width))
    if k.size != 9 or k[0] <= 0 or k[4] <= 0:
        return None, size, False
    return (float(k[0]), float(k[4]), float(k[2]), float(k[5])), size, bool(d.size and np.any(d != 0))


def _same_intrinsics(first, second) -> bool:
    return all(abs(a - b) <= _INTRINSICS_TOLERANCE * first[0] for a, b in zip(first, second))


def _pair(rgb_stamps: list[int], depth_stamps: list[int], max_offset_ns: int) -> list[tuple[int, int]]:
    """Index pairs (rgb, depth): each colour stamp's nearest depth stamp within `max_offset_ns`; a depth frame claimed
    by several colour frames stays with the nearest one."""
    order = sorted(range(len(depth_stamps)), key=depth_stamps.__getitem__)
    sorted_stamps = [depth_stamps[i] for i in order]
    best: dict[int, tuple[int, int]] = {}  # depth index -> (offset, rgb index)
    for rgb_index, stamp in enumerate(rgb_stamps):
        position = bisect_left(sorted_stamps, stamp)
        candidates = [p for p in (position - 1, position) if 0 <= p < len(sorted_stamps)]
        if not candidates:
            continue
        nearest = min(candidates, key=lambda p: (abs(sorted_stamps[p] - stamp), p))
        offset = abs(sorted_stamps[nearest] - stamp)
        if offset > max_offset_ns:
            continue
        depth_index = order[nearest]
        if depth_index not in best or offset < best[depth_index][0]:
            best[depth_index] = (offset, rgb_index)
    return sorted((rgb_index, depth_index) for depth_index, (_, rgb_index) in best.items())


class RosbagFrameReader:
    """The paired RGB-D frames of one recording; iterate over it for `RosbagFrame` objects (see `read_rosbag_frames`).

    Building it reads the bag once for timestamps, sizes, encodings and camera info (checking topics, encodings and
    alignment before any frame is decoded); iterating reads it again and decodes only the frames it yields, holding
    at most the messages of one pairing window in memory.

    Attributes:
        path: the bag.
        num_rgb, num_depth: messages on the colour and depth topics.
        num_paired: colour frames that found a depth frame within the offset.
        unpaired_rgb, unpaired_depth: frames of either topic left without a partner.
        stamps_ns: the colour timestamps of the frames iteration yields (after `every_nth`), in order.
        intrinsics: the colour camera's ``(fx, fy, cx, cy)`` at the colour size, or None.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        rgb_topic: str,
        depth_topic: str,
        camera_info_topic: str | None = None,
        max_time_offset_ms: float = 20.0,
        every_nth: int = 1,
        resize_depth: bool = False,
        depth_camera_info_topic: str | None = None,
    ) -> None:
        for name, value in (("rgb_topic", rgb_topic), ("depth_topic", depth_topic)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"`{name}` must be a topic name such as '/camera/color/image_raw', got {value!r}.")
        if not (isinstance(max_time_offset_ms, (int, float)) and np.isfinite(max_time_offset_ms)):
            raise ValueError(f"`max_time_offset_ms` must be a number of milliseconds >= 0, got {max_time_offset_ms!r}.")
        if max_time_offset_ms < 0:
            raise ValueError(f"`max_time_offset_ms` must be >= 0 milliseconds, got {max_time_offset_ms!r}.")
        if isinstance(every_nth, bool) or not isinstance(every_nth, int) or every_nth < 1:
            raise ValueError(f"`every_nth` must be an integer >= 1 (keep every n-th paired frame), got {every_nth!r}.")
        if rgb_topic == depth_topic:
            raise ValueError(f"`rgb_topic` and `depth_topic` must differ, both are {rgb_topic!r}.")
        self.path = Path(path)
        self.rgb_topic, self.depth_topic = rgb_topic, depth_topic
        self.camera_info_topic = camera_info_topic
        self.max_time_offset_ms = float(max_time_offset_ms)
        self.every_nth = every_nth
        self.resize_depth = bool(resize_depth)
        self.depth_camera_info_topic = depth_camera_info_topic
        self._scan()

    # -- the first pass: stamps, sizes, encodings, camera info ---------------------------------------------------------
    def _scan(self) -> None:
        rgb_stamps: list[int] = []
        depth_stamps: list[int] = []
        first: dict[str, Any] = {}
        infos: dict[str, Any] = {}
        with _open_reader(self.path) as reader:
            topics = {c.topic: c.msgtype for c in reader.connections}
            self.topics = topics
            self._check_topics(topics)
            depth_info_topic = self.depth_camera_info_topic
            if depth_info_topic is None:
                sibling = self.depth_topic.rsplit("/", 1)[0] + "/camera_info"
                depth_info_topic = sibling if topics.get(sibling) == CAMERA_INFO_TYPE else None
            wanted = {self.rgb_topic, self.depth_topic} | {t for t in (self.camera_info_topic, depth_info_topic) if t}
            connections = [c for c in reader.connections if c.topic in wanted]
            for connection, bag_time, raw in reader.messages(connections=connections):
                topic = connection.topic
                message = reader.deserialize(raw, connection.msgtype)
                if topic == self.rgb_topic:
                    rgb_stamps.append(_stamp_ns(message, bag_time))
                    first.setdefault(topic, message)
                elif topic == self.depth_topic:
                    depth_stamps.append(_stamp_ns(message, bag_time))
                    first.setdefault(topic, message)
                else:
                    infos.setdefault(topic, message)
        if not rgb_stamps or not depth_stamps:
            empty = self.rgb_topic if not rgb_stamps else self.depth_topic
            raise ValueError(f"topic {empty!r} of {str(self.path)!r} holds no messages.")
        # Decoding the first message of each topic checks its encoding and gives the sizes.
        rgb_size = _decode_rgb(first[self.rgb_topic], self.rgb_topic).shape[:2]
        depth_size = _decode_depth(first[self.depth_topic], self.depth_topic)[0].shape
        self.rgb_size, self.depth_size = tuple(rgb_size), tuple(depth_size)
        self.intrinsics = self._colour_intrinsics(infos.get(self.camera_info_topic))
        depth_intrinsics = None
        if depth_info_topic and depth_info_topic in infos:
            depth_intrinsics, depth_info_size, _ = _camera_matrix(infos[depth_info_topic])
            if depth_intrinsics is not None and depth_info_size != (0, 0) and depth_info_size != self.depth_size:
                depth_intrinsics = scale_intrinsics(depth_intrinsics, depth_info_size, self.depth_size)
        self._check_alignment(depth_info_topic, depth_intrinsics)

        pairs = _pair(rgb_stamps, depth_stamps, int(round(self.max_time_offset_ms * 1e6)))
        self.num_rgb, self.num_depth, self.num_paired = len(rgb_stamps), len(depth_stamps), len(pairs)
        self.unpaired_rgb = len(rgb_stamps) - len(pairs)
        self.unpaired_depth = len(depth_stamps) - len(pairs)
        if not pairs:
            raise ValueError(
                f"no colour frame of {self.rgb_topic!r} has a depth frame of {self.depth_topic!r} within "
                f"{self.max_time_offset_ms:g} ms ({len(rgb_stamps)} colour, {len(depth_stamps)} depth messages; colour "
                f"stamps {rgb_stamps[0]}..{rgb_stamps[-1]} ns, depth {min(depth_stamps)}..{max(depth_stamps)} ns). "
                "Raise max_time_offset_ms (--max-time-offset-ms) or check the topics."
            )
        if self.unpaired_rgb or self.unpaired_depth:
            logger.warning(
                "%s: %d of %d colour frames have no depth frame within %g ms and %d of %d depth frames no colour frame; "
                "%d frames paired.",
                self.path,
                self.unpaired_rgb,
                len(rgb_stamps),
                self.max_time_offset_ms,
                self.unpaired_depth,
                len(depth_stamps),
                len(pairs),
            )
        kept, seen = [], set()
        for rgb, depth in pairs[:: self.every_nth]:
            if rgb_stamps[rgb] not in seen:  # a repeated colour stamp would name two frames alike
                seen.add(rgb_stamps[rgb])
                kept.append((rgb, depth))
        if len(kept) < len(pairs[:: self.every_nth]):
            logger.warning(
                "%s: %d colour frames repeat the stamp of an earlier one; only the first is kept.",
                self.rgb_topic,
                len(pairs[:: self.every_nth]) - len(kept),
            )
        # Message ordinals on each topic -> which frames to decode.
        self._rgb_keep = {rgb: depth for rgb, depth in kept}
        self._depth_keep = {depth for _, depth in kept}
        self.stamps_ns = [rgb_stamps[rgb] for rgb, _ in kept]
        logger.info(
            "%s: %d paired frames, %d kept (every %d-th); colour %dx%d, depth %dx%d.",
            self.path,
            len(pairs),
            len(kept),
            self.every_nth,
            self.rgb_size[1],
            self.rgb_size[0],
            self.depth_size[1],
            self.depth_size[0],
        )

    def _check_topics(self, topics: dict[str, str]) -> None:
        listed = ", ".join(f"{t} ({m})" for t, m in sorted(topics.items()))
        for argument, topic, allowed in (
            ("rgb_topic", self.rgb_topic, (IMAGE_TYPE, COMPRESSED_TYPE)),
            ("depth_topic", self.depth_topic, (IMAGE_TYPE, COMPRESSED_TYPE)),
            ("camera_info_topic", self.camera_info_topic, (CAMERA_INFO_TYPE,)),
            ("depth_camera_info_topic", self.depth_camera_info_topic, (CAMERA_INFO_TYPE,)),
        ):
            if topic is None:
                continue
            if topic not in topics:
                raise ValueError(f"`{argument}` {topic!r} is not in {str(self.path)!r}; its topics are: {listed}.")
            if topics[topic] not in allowed:
                raise ValueError(f"`{argument}` {topic!r} carries {topics[topic]}, expected one of {list(allowed)}.")

    def _colour_intrinsics(self, message: Any) -> tuple[float, float, float, float] | None:
        if self.camera_info_topic is None:
            return None
        if message is None:
            raise ValueError(f"`camera_info_topic` {self.camera_info_topic!r} holds no messages.")
        intrinsics, info_size, distorted = _camera_matrix(message)
        if intrinsics is None:
            logger.warning(
                "%s: the camera is uncalibrated (K = 0); frames carry no intrinsics.", self.camera_info_topic
            )
            return None
        if distorted:
            logger.warning(
                "%s: the camera has distortion coefficients; intrinsics (and point clouds) use the pinhole model only. "
                "Record the rectified topic (image_rect) for exact geometry.",
                self.camera_info_topic,
            )
        if info_size != (0, 0) and info_size != self.rgb_size:
            logger.warning(
                "%s is for %dx%d images, %r holds %dx%d: intrinsics rescaled to the colour size.",
                self.camera_info_topic,
                info_size[1],
                info_size[0],
                self.rgb_topic,
                self.rgb_size[1],
                self.rgb_size[0],
            )
            intrinsics = scale_intrinsics(intrinsics, info_size, self.rgb_size)
        return tuple(check_intrinsics(intrinsics, "camera_info_topic"))

    def _check_alignment(self, depth_info_topic: str | None, depth_intrinsics) -> None:
        problem = None
        if self.depth_size != self.rgb_size:
            problem = (
                f"depth is {self.depth_size[1]}x{self.depth_size[0]} but colour {self.rgb_size[1]}x{self.rgb_size[0]}"
            )
        elif self.intrinsics is not None and depth_intrinsics is not None:
            if not _same_intrinsics(self.intrinsics, depth_intrinsics):
                problem = (
                    f"depth intrinsics {tuple(round(v, 3) for v in depth_intrinsics)} ({depth_info_topic}) differ from "
                    f"colour intrinsics {tuple(round(v, 3) for v in self.intrinsics)} ({self.camera_info_topic})"
                )
        if problem is None:
            return
        candidates = [t for t in sorted(self.topics) if t != self.depth_topic and any(h in t for h in _ALIGNED_HINTS)]
        candidates = [t for t in candidates if self.topics[t] in (IMAGE_TYPE, COMPRESSED_TYPE)]
        where = (
            f" This bag has {candidates}."
            if candidates
            else " Record the depth registered to colour (RealSense: align_depth:=true -> "
            "/camera/aligned_depth_to_color/image_raw; Azure Kinect: /depth_to_rgb/image_raw)."
        )
        if self.resize_depth and same_view(self.rgb_size, self.depth_size):
            logger.warning(
                "%s is not aligned to %s (%s); resize_depth: taken as the same view and resized (nearest neighbour).",
                self.depth_topic,
                self.rgb_topic,
                problem,
            )
            return
        extra = (
            " resize_depth cannot help: the aspect ratios differ, so depth cannot be the colour view."
            if self.resize_depth
            else " If it is the same view at another resolution, pass resize_depth=True (--resize-depth)."
        )
        raise ValueError(
            f"depth topic {self.depth_topic!r} is not aligned to colour topic {self.rgb_topic!r}: {problem}. Use the "
            f"depth topic registered to the colour camera.{where}{extra}"
        )

    # -- the second pass: decode the kept frames ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.stamps_ns)

    def __iter__(self) -> Iterator[RosbagFrame]:
        return self.frames()

    def frames(self, skip_stamps_ns=()) -> Iterator[RosbagFrame]:
        """Yield the kept frames as their two halves arrive (colour-time order for a recording whose messages are
        in time order), leaving out, without decoding them, those whose colour stamp is in `skip_stamps_ns` (frames a
        resumed job has already written)."""
        skip = {int(s) for s in skip_stamps_ns}
        rgb_keep = dict(self._rgb_keep)  # colour ordinal -> depth ordinal
        depth_needed = set(self._depth_keep)
        rgb_pending: dict[int, tuple[np.ndarray, int]] = {}  # colour ordinal -> (rgb, stamp)
        depth_pending: dict[int, tuple[np.ndarray, int, str]] = {}  # depth ordinal -> (depth_m, stamp, encoding)
        rgb_count = depth_count = 0
        with _open_reader(self.path) as reader:
            connections = [c for c in reader.connections if c.topic in (self.rgb_topic, self.depth_topic)]
            for connection, bag_time, raw in reader.messages(connections=connections):
                if connection.topic == self.rgb_topic:
                    ordinal, rgb_count = rgb_count, rgb_count + 1
                    if ordinal not in rgb_keep:
                        continue
                    message = reader.deserialize(raw, connection.msgtype)
                    stamp = _stamp_ns(message, bag_time)
                    if stamp in skip:
                        depth_ordinal = rgb_keep.pop(ordinal)
                        depth_needed.discard(depth_ordinal)
                        depth_pending.pop(depth_ordinal, None)
                        continue
                    rgb_pending[ordinal] = (_decode_rgb(message, self.rgb_topic), stamp)
                else:
                    ordinal, depth_count = depth_count, depth_count + 1
                    if ordinal not in depth_needed:
                        continue
                    message = reader.deserialize(raw, connection.msgtype)
                    depth_m, encoding = self._depth_metres(message)
                    depth_pending[ordinal] = (depth_m, _stamp_ns(message, bag_time), encoding)
                for rgb_ordinal in sorted(rgb_pending):
                    depth_ordinal = rgb_keep[rgb_ordinal]
                    if depth_ordinal not in depth_pending:
                        continue
                    rgb, stamp = rgb_pending.pop(rgb_ordinal)
                    depth_m, depth_stamp, encoding = depth_pending.pop(depth_ordinal)
                    del rgb_keep[rgb_ordinal]
                    depth_needed.discard(depth_ordinal)
                    yield RosbagFrame(rgb, depth_m, self.intrinsics, stamp, depth_stamp, encoding)

    def _depth_metres(self, message: Any) -> tuple[np.ndarray, str]:
        depth_m, encoding = _decode_depth(message, self.depth_topic)
        if depth_m.shape != self.rgb_size:
            if depth_m.shape != self.depth_size:
                raise ValueError(
                    f"depth topic {self.depth_topic!r} changed size mid-recording: {depth_m.shape} after "
                    f"{self.depth_size}."
                )
            depth_m = resize_depth_nearest(depth_m, *self.rgb_size)
        return depth_m, encoding


def read_rosbag_frames(
    path: str | os.PathLike,
    rgb_topic: str,
    depth_topic: str,
    camera_info_topic: str | None = None,
    max_time_offset_ms: float = 20.0,
    every_nth: int = 1,
    resize_depth: bool = False,
    depth_camera_info_topic: str | None = None,
) -> RosbagFrameReader:
    """The registered RGB-D frames of a ROS 1 bag (``.bag``), a ROS 2 bag folder (sqlite3 or MCAP) or a bare ``.mcap``
    / ``.db3`` file, read with `rosbags` (no ROS install needed).

    Args:
        path: the recording.
        rgb_topic: a ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8) or ``CompressedImage`` (JPEG / PNG) topic.
        depth_topic: a ``sensor_msgs/Image`` (16UC1 / mono16 millimetres, 32FC1 metres) or ``CompressedImage``
            (compressedDepth, 16-bit PNG) topic, registered to the colour camera.
        camera_info_topic: the colour camera's ``sensor_msgs/CameraInfo``: gives `RosbagFrame.intrinsics`.
        max_time_offset_ms: largest colour-depth timestamp difference of a pair, in milliseconds.
        every_nth: keep every n-th paired frame (1 = all).
        resize_depth: accept depth that is not registered to colour if it has the colour's aspect ratio, resizing it
            (nearest neighbour) to the colour size; without it such depth is refused.
        depth_camera_info_topic: the depth camera's ``CameraInfo`` for the alignment check; by default
            ``<depth topic's namespace>/camera_info`` where the bag has it.

    Returns:
        A `RosbagFrameReader`: iterate it for `RosbagFrame` objects (``rgb``, ``depth_m``, ``intrinsics``,
        ``stamp_ns``); ``len()`` and the pairing counts are known before the first frame is decoded.

    Raises:
        ImportError: `rosbags` is not installed. FileNotFoundError: no such path.
        ValueError: an unknown topic or message type, an unsupported encoding (naming the topic, the encoding and the
            supported list), depth not aligned to colour, no pair within the offset, bad arguments.
    """
    return RosbagFrameReader(
        path,
        rgb_topic,
        depth_topic,
        camera_info_topic=camera_info_topic,
        max_time_offset_ms=max_time_offset_ms,
        every_nth=every_nth,
        resize_depth=resize_depth,
        depth_camera_info_topic=depth_camera_info_topic,
    )
