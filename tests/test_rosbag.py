"""ROS bags in: bags written here with `rosbags` (ROS 1, ROS 2 sqlite3, MCAP; every supported encoding, raw and
compressed, NaN depth, unaligned depth, a gap in time), read back pixel for pixel; corpora and batch completion from
them, through the library and the command line."""

from __future__ import annotations

import io
import json
import logging
import struct

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("rosbags")

from rosbags.rosbag1 import Writer as Writer1  # noqa: E402
from rosbags.rosbag2 import StoragePlugin  # noqa: E402
from rosbags.rosbag2 import Writer as Writer2  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from conftest import tiny_config  # noqa: E402
from vanishing_depth import VanishingDepthForPretraining, VanishingDepthImageProcessor  # noqa: E402
from vanishing_depth.cli import main  # noqa: E402
from vanishing_depth.data import (  # noqa: E402
    SUPPORTED_DEPTH_ENCODINGS,
    build_corpus_from_rosbag,
    decode_rgbd_row,
    load_corpus,
    load_depth,
    read_rosbag_frames,
    save_corpus,
)

HEIGHT, WIDTH = 12, 16
FRAMES = 6
START_NS = 1_700_000_000_000_000_000
PERIOD_NS = 100_000_000  # 10 Hz
DEPTH_DELAY_NS = 3_000_000  # depth stamped 3 ms after colour
GAP_FRAME = 3  # the 16UC1 topic misses this frame: a gap in time
K = (20.0, 21.0, 7.5, 5.5)  # fx, fy, cx, cy of the 16x12 colour image
FORMATS = ("ros1", "sqlite3", "mcap")

# --------------------------------------------------------------------------------------------------------------------
# What is written: ground truth per frame
# --------------------------------------------------------------------------------------------------------------------
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
DEPTH_MM = RNG.integers(300, 9000, (FRAMES, HEIGHT, WIDTH)).astype(np.uint16)
DEPTH_MM[RNG.random(DEPTH_MM.shape) < 0.2] = 0
DEPTH_F = RNG.uniform(0.3, 9.0, (FRAMES, HEIGHT, WIDTH)).astype(np.float32)
DEPTH_F[:, 0, :4] = np.nan
DEPTH_F[:, 1, :2] = np.inf
DEPTH_F[:, 1, 2:4] = -np.inf
GREY = RGB[..., 0]
# Unaligned depth: half resolution (same view) and full resolution with another camera.
DEPTH_HALF_MM = DEPTH_MM[:, ::2, ::2].copy()
# compressedDepth 32FC1: quantised inverse depth, depth = A / (v - B) (compressed_depth_image_transport codec.cpp).
QUANT, DEPTH_MAX = 100.0, 10.0
QUANT_A = QUANT * (QUANT + 1.0)
QUANT_B = 1.0 - QUANT_A / DEPTH_MAX


def _stamp(index: int, depth: bool = False) -> int:
    return START_NS + index * PERIOD_NS + (DEPTH_DELAY_NS if depth else 0)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    if array.dtype == np.uint16:
        Image.frombytes("I;16", (array.shape[1], array.shape[0]), array.astype("<u2").tobytes()).save(buffer, "PNG")
    else:
        Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _compressed_depth_16(mm: np.ndarray) -> bytes:
    return struct.pack("<iff", 0, 0.0, 0.0) + _png(mm)


def _compressed_depth_32(depth_m: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The payload and the depth it decodes to exactly (metres, 0 = missing)."""
    valid = np.isfinite(depth_m) & (depth_m > 0)
    inverse = np.where(valid, np.rint(QUANT_A / np.where(valid, depth_m, 1.0) + QUANT_B), 0).astype(np.uint16)
    expected = np.where(inverse > 0, (QUANT_A / (inverse.astype(np.float64) - QUANT_B)).astype(np.float32), 0.0)
    return struct.pack("<iff", 0, QUANT_A, QUANT_B) + _png(inverse), expected.astype(np.float32)


def _raw(encoding: str, array: np.ndarray, big_endian: bool = False, pad: int = 0) -> dict:
    """Fields of a sensor_msgs/Image: rows padded by `pad` bytes (``step`` > width * bytes per pixel)."""
    height, width = array.shape[:2]
    dtype = array.dtype.newbyteorder(">" if big_endian else "<")
    rows = array.astype(dtype).reshape(height, -1).view(np.uint8)
    rows = np.concatenate([rows, np.full((height, pad), 7, np.uint8)], axis=1)
    return dict(encoding=encoding, height=height, width=width, is_bigendian=int(big_endian), step=rows.shape[1],
                data=np.ascontiguousarray(rows).reshape(-1))  # fmt: skip


# topic -> (message kind, frames it has, fields of frame i, expected decoded value of frame i)
def _topics() -> dict:
    topics = {
        "/cam/color/image_raw": ("Image", range(FRAMES), lambda i: _raw("rgb8", RGB[i]), lambda i: RGB[i]),
        "/cam/color_bgr": ("Image", range(FRAMES), lambda i: _raw("bgr8", RGB[i][..., ::-1], pad=3), lambda i: RGB[i]),
        "/cam/color_rgba": (
            "Image", range(FRAMES), lambda i: _raw("rgba8", np.dstack([RGB[i], np.full((HEIGHT, WIDTH), 9, np.uint8)])),
            lambda i: RGB[i],
        ),
        "/cam/color_bgra": (
            "Image", range(FRAMES),
            lambda i: _raw("bgra8", np.dstack([RGB[i][..., ::-1], np.full((HEIGHT, WIDTH), 9, np.uint8)])),
            lambda i: RGB[i],
        ),
        "/cam/mono": ("Image", range(FRAMES), lambda i: _raw("mono8", GREY[i]), lambda i: np.dstack([GREY[i]] * 3)),
        "/cam/color/compressed": (
            "CompressedImage", range(FRAMES), lambda i: dict(format="rgb8; jpeg compressed bgr8", data=_jpeg(RGB[i])),
            lambda i: np.asarray(Image.open(io.BytesIO(_jpeg(RGB[i]))).convert("RGB")),
        ),
        "/cam/color/png": (
            "CompressedImage", range(FRAMES), lambda i: dict(format="png", data=_png(RGB[i])), lambda i: RGB[i]
        ),
        "/cam/aligned_depth_to_color/image_raw": (
            "Image", [i for i in range(FRAMES) if i != GAP_FRAME], lambda i: _raw("16UC1", DEPTH_MM[i]),
            lambda i: DEPTH_MM[i].astype(np.float64) / 1000.0,
        ),
        "/cam/depth_be": (
            "Image", range(FRAMES), lambda i: _raw("16UC1", DEPTH_MM[i], big_endian=True, pad=2),
            lambda i: DEPTH_MM[i].astype(np.float64) / 1000.0,
        ),
        "/cam/depth_mono16": (
            "Image", range(FRAMES), lambda i: _raw("mono16", DEPTH_MM[i]), lambda i: DEPTH_MM[i] / 1000.0
        ),
        "/cam/depth_float": (
            "Image", range(FRAMES), lambda i: _raw("32FC1", DEPTH_F[i]),
            lambda i: np.where(np.isfinite(DEPTH_F[i]), DEPTH_F[i], 0.0),
        ),
        "/cam/depth/compressedDepth": (
            "CompressedImage", range(FRAMES),
            lambda i: dict(format="16UC1; compressedDepth png", data=_compressed_depth_16(DEPTH_MM[i])),
            lambda i: DEPTH_MM[i] / 1000.0,
        ),
        "/cam/depth_float/compressedDepth": (
            "CompressedImage", range(FRAMES),
            lambda i: dict(format="32FC1; compressedDepth png", data=_compressed_depth_32(DEPTH_F[i])[0]),
            lambda i: _compressed_depth_32(DEPTH_F[i])[1],
        ),
        "/cam/depth/png": (
            "CompressedImage", range(FRAMES), lambda i: dict(format="16UC1; png compressed", data=_png(DEPTH_MM[i])),
            lambda i: DEPTH_MM[i] / 1000.0,
        ),
        # Not registered to colour: half resolution (same view), and full size with other intrinsics.
        "/cam/depth/image_rect_raw": ("Image", range(FRAMES), lambda i: _raw("16UC1", DEPTH_HALF_MM[i]), None),
        "/cam/ir_depth/image_raw": ("Image", range(FRAMES), lambda i: _raw("16UC1", DEPTH_MM[i]), None),
        "/cam/bayer": ("Image", range(FRAMES), lambda i: _raw("bayer_rggb8", GREY[i]), None),
    }  # fmt: skip
    return topics


CAMERA_INFOS = {
    "/cam/color/camera_info": (HEIGHT, WIDTH, K),
    "/cam/aligned_depth_to_color/camera_info": (HEIGHT, WIDTH, K),
    "/cam/ir_depth/camera_info": (HEIGHT, WIDTH, (18.0, 18.0, 8.0, 6.0)),
    "/cam/color_double/camera_info": (2 * HEIGHT, 2 * WIDTH, (40.0, 42.0, 15.5, 11.5)),
}


def _message(typestore, kind: str, stamp_ns: int, ros1: bool, **fields):
    types = typestore.types
    time = types["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    header_fields = dict(stamp=time, frame_id="camera_color_optical_frame")
    if ros1:
        header_fields["seq"] = 0
    header = types["std_msgs/msg/Header"](**header_fields)
    if kind == "Image":
        return types["sensor_msgs/msg/Image"](header=header, **fields)
    if kind == "CompressedImage":
        data = np.frombuffer(fields["data"], dtype=np.uint8)
        return types["sensor_msgs/msg/CompressedImage"](header=header, format=fields["format"], data=data)
    height, width, (fx, fy, cx, cy) = fields["info"]
    names = ("D", "K", "R", "P") if ros1 else ("d", "k", "r", "p")
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    matrices = dict(
        zip(
            names,
            (
                np.zeros(5),
                np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1.0]),
                np.eye(3).reshape(-1),
                np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1.0, 0]),
            ),
        )
    )
    return types["sensor_msgs/msg/CameraInfo"](
        header=header, height=height, width=width, distortion_model="plumb_bob", binning_x=0, binning_y=0, roi=roi,
        **matrices,
    )  # fmt: skip


def write_bag(path, storage: str, topics: dict | None = None, infos: dict | None = None):
    """A bag with `topics` (default: all of `_topics()`) and the camera infos, in time order."""
    ros1 = storage == "ros1"
    typestore = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    topics = _topics() if topics is None else topics
    infos = CAMERA_INFOS if infos is None else infos
    records = []
    for topic, (kind, indices, fields, _) in topics.items():
        depth = "depth" in topic
        records += [(_stamp(i, depth), topic, kind, fields(i)) for i in indices]
    for topic, info in infos.items():
        records += [(_stamp(i), topic, "CameraInfo", {"info": info}) for i in range(FRAMES)]
    records.sort(key=lambda record: (record[0], record[1]))
    msgtypes = {"Image": "sensor_msgs/msg/Image", "CompressedImage": "sensor_msgs/msg/CompressedImage",
                "CameraInfo": "sensor_msgs/msg/CameraInfo"}  # fmt: skip
    if ros1:
        writer = Writer1(path)
        serialize = typestore.serialize_ros1
    else:
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        writer = Writer2(path, version=9, storage_plugin=plugin)
        serialize = typestore.serialize_cdr
    with writer:
        connections = {}
        for stamp, topic, kind, fields in records:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtypes[kind], typestore=typestore)
            message = _message(typestore, kind, stamp, ros1, **fields)
            writer.write(connections[topic], stamp, serialize(message, msgtypes[kind]))
    return path


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    return {
        "ros1": write_bag(root / "run.bag", "ros1"),
        "sqlite3": write_bag(root / "run_sqlite3", "sqlite3"),
        "mcap": write_bag(root / "run_mcap", "mcap"),
    }


def _read(path, rgb_topic="/cam/color/image_raw", depth_topic="/cam/depth_be", **kwargs):
    return list(read_rosbag_frames(path, rgb_topic=rgb_topic, depth_topic=depth_topic, **kwargs))


# --------------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", FORMATS)
def test_every_colour_encoding_reads_back_pixel_for_pixel(bags, storage):
    topics = _topics()
    for rgb_topic in ("/cam/color/image_raw", "/cam/color_bgr", "/cam/color_rgba", "/cam/color_bgra", "/cam/mono",
                      "/cam/color/compressed", "/cam/color/png"):  # fmt: skip
        frames = _read(bags[storage], rgb_topic=rgb_topic)
        assert len(frames) == FRAMES, rgb_topic
        expected = topics[rgb_topic][3]
        for index, frame in enumerate(frames):
            assert frame.rgb.dtype == np.uint8 and frame.rgb.shape == (HEIGHT, WIDTH, 3)
            np.testing.assert_array_equal(frame.rgb, expected(index), err_msg=f"{storage} {rgb_topic} frame {index}")
            assert frame.stamp_ns == _stamp(index) and frame.depth_stamp_ns == _stamp(index, depth=True)


@pytest.mark.parametrize("storage", FORMATS)
def test_every_depth_encoding_reads_back_in_metres_with_nan_and_inf_missing(bags, storage):
    topics = _topics()
    for depth_topic in ("/cam/depth_be", "/cam/depth_mono16", "/cam/depth_float", "/cam/depth/compressedDepth",
                        "/cam/depth_float/compressedDepth", "/cam/depth/png"):  # fmt: skip
        frames = _read(bags[storage], depth_topic=depth_topic, camera_info_topic="/cam/color/camera_info")
        assert len(frames) == FRAMES, depth_topic
        expected = topics[depth_topic][3]
        for index, frame in enumerate(frames):
            assert frame.depth_m.dtype == np.float32 and frame.depth_m.shape == (HEIGHT, WIDTH)
            truth = np.asarray(expected(index)).astype(np.float32)
            np.testing.assert_array_equal(frame.depth_m, truth, err_msg=f"{storage} {depth_topic} frame {index}")
            assert frame.intrinsics == K
        if "float" in depth_topic:
            assert (frames[0].depth_m[0, :4] == 0).all() and (frames[0].depth_m[1, :4] == 0).all()


def test_compressed_32fc1_depth_is_within_its_quantisation_of_the_truth(bags):
    (frame, *_) = _read(bags["mcap"], depth_topic="/cam/depth_float/compressedDepth")
    valid = np.isfinite(DEPTH_F[0])
    # Inverse-depth quantisation: a step of d^2 / A metres at depth d.
    tolerance = DEPTH_F[0][valid] ** 2 / QUANT_A
    assert np.all(np.abs(frame.depth_m[valid] - DEPTH_F[0][valid]) <= tolerance)


@pytest.mark.parametrize("storage", FORMATS)
def test_a_gap_in_time_leaves_frames_unpaired_counted_and_logged(bags, storage, caplog):
    with caplog.at_level(logging.WARNING):
        reader = read_rosbag_frames(
            bags[storage], rgb_topic="/cam/color/image_raw", depth_topic="/cam/aligned_depth_to_color/image_raw"
        )
    assert (reader.num_rgb, reader.num_depth, reader.num_paired) == (FRAMES, FRAMES - 1, FRAMES - 1)
    assert (reader.unpaired_rgb, reader.unpaired_depth) == (1, 0)
    assert "1 of 6 colour frames have no depth frame within 20 ms" in caplog.text
    frames = list(reader)
    assert [f.stamp_ns for f in frames] == [_stamp(i) for i in range(FRAMES) if i != GAP_FRAME]
    for frame in frames:
        index = (frame.stamp_ns - START_NS) // PERIOD_NS
        np.testing.assert_array_equal(frame.rgb, RGB[index])
        np.testing.assert_array_equal(frame.depth_m, (DEPTH_MM[index] / 1000.0).astype(np.float32))
    # A wide offset lets frame 3 reach the depth of frames 2 and 4, but each depth frame stays with its nearest colour
    # frame: still one unpaired colour frame.
    wide = read_rosbag_frames(bags[storage], "/cam/color/image_raw", "/cam/aligned_depth_to_color/image_raw",
                              max_time_offset_ms=150)  # fmt: skip
    assert (wide.num_paired, wide.unpaired_rgb) == (FRAMES - 1, 1) and wide.stamps_ns == reader.stamps_ns
    # A tighter offset than the 3 ms delay pairs nothing, and says so.
    with pytest.raises(ValueError, match="within 2 ms"):
        read_rosbag_frames(bags[storage], rgb_topic="/cam/color/image_raw", depth_topic="/cam/depth_be",
                           max_time_offset_ms=2)  # fmt: skip


def test_every_nth_and_skipping_frames_already_done(bags):
    reader = read_rosbag_frames(bags["ros1"], "/cam/color/image_raw", "/cam/depth_be", every_nth=2)
    assert len(reader) == 3 and reader.stamps_ns == [_stamp(0), _stamp(2), _stamp(4)]
    assert [f.stamp_ns for f in reader.frames(skip_stamps_ns={_stamp(2)})] == [_stamp(0), _stamp(4)]


@pytest.mark.parametrize("storage", FORMATS)
def test_unaligned_depth_is_refused_naming_the_aligned_topic_unless_resized(bags, storage):
    with pytest.raises(ValueError, match=r"not aligned.*8x6.*16x12.*aligned_depth_to_color/image_raw.*resize-depth"):
        _read(bags[storage], depth_topic="/cam/depth/image_rect_raw")
    # Same size, other intrinsics: refused when both CameraInfos are in the bag.
    with pytest.raises(ValueError, match=r"intrinsics .* differ .*aligned_depth_to_color/image_raw"):
        _read(bags[storage], depth_topic="/cam/ir_depth/image_raw", camera_info_topic="/cam/color/camera_info")
    frames = _read(bags[storage], depth_topic="/cam/depth/image_rect_raw", resize_depth=True)
    # Nearest neighbour: every 2x2 block of the colour grid takes its one depth pixel.
    np.testing.assert_array_equal(
        frames[1].depth_m, np.kron(DEPTH_HALF_MM[1], np.ones((2, 2))).astype(np.float32) / 1000
    )


def test_unsupported_encodings_and_topics_are_named(bags):
    with pytest.raises(ValueError, match=r"'/cam/bayer' has encoding 'bayer_rggb8'.*supported depth encodings.*16UC1"):
        _read(bags["mcap"], depth_topic="/cam/bayer")
    with pytest.raises(ValueError, match=r"'/cam/bayer' has encoding 'bayer_rggb8'.*supported colour encodings.*rgb8"):
        _read(bags["mcap"], rgb_topic="/cam/bayer")
    with pytest.raises(ValueError, match=r"colour topic '/cam/depth_be' has encoding '16UC1'.*depth topic"):
        _read(bags["mcap"], rgb_topic="/cam/depth_be", depth_topic="/cam/depth_mono16")
    with pytest.raises(ValueError, match=r"'/cam/nope' is not in .*topics are"):
        _read(bags["mcap"], depth_topic="/cam/nope")
    with pytest.raises(ValueError, match=r"carries sensor_msgs/msg/Image, expected .*CameraInfo"):
        _read(bags["mcap"], camera_info_topic="/cam/depth_be")
    with pytest.raises(ValueError, match="every_nth"):
        _read(bags["mcap"], every_nth=0)
    assert "compressedDepth" in SUPPORTED_DEPTH_ENCODINGS


def test_camera_info_of_another_size_is_rescaled_to_the_colour_image(bags):
    (frame, *_) = _read(bags["sqlite3"], camera_info_topic="/cam/color_double/camera_info")
    np.testing.assert_allclose(frame.intrinsics, (20.0, 21.0, 7.5, 5.5))


# --------------------------------------------------------------------------------------------------------------------
# Corpora and completion
# --------------------------------------------------------------------------------------------------------------------
def test_corpus_from_a_bag_keeps_pixels_units_and_intrinsics(bags, tmp_path):
    corpus = build_corpus_from_rosbag(bags["mcap"], "/cam/color/compressed", "/cam/depth_float", "robot",
                                      camera_info_topic="/cam/color/camera_info", cache_dir=tmp_path / "cache")  # fmt: skip
    save_corpus(corpus, tmp_path / "corpus")
    rows = load_corpus(tmp_path / "corpus")
    assert len(rows) == FRAMES
    expected_rgb = _topics()["/cam/color/compressed"][3]
    for index, row in enumerate(rows):
        rgb, depth_m = decode_rgbd_row(row)
        np.testing.assert_array_equal(rgb, expected_rgb(index))
        np.testing.assert_array_equal(depth_m, np.where(np.isfinite(DEPTH_F[index]), DEPTH_F[index], 0))
        assert row["depth_scale"] == 1.0 and row["source"] == "robot" and row["frame_id"] == f"{_stamp(index):019d}"
        np.testing.assert_allclose(row["intrinsics"], K)


def test_build_corpus_command_from_a_ros1_bag(bags, tmp_path, capsys):
    out = tmp_path / "corpus"
    command = ["build-corpus", "--rosbag", str(bags["ros1"]), "--rgb-topic", "/cam/color/image_raw", "--depth-topic",
               "/cam/aligned_depth_to_color/image_raw", "--camera-info-topic", "/cam/color/camera_info",
               "--max-time-offset-ms", "20", "--every-nth", "2", "--source-name", "ur5e-d405", "--output-dir", str(out)]  # fmt: skip
    assert main(command) == 0, capsys.readouterr().err
    rows = load_corpus(out)
    # Frames 0..5 without the gap frame 3 -> paired 0, 1, 2, 4, 5 -> every 2nd: 0, 2, 5.
    assert [row["frame_id"] for row in rows] == [f"{_stamp(i):019d}" for i in (0, 2, 5)]
    row = rows[2]
    rgb, depth_m = decode_rgbd_row(row)
    np.testing.assert_array_equal(rgb, RGB[5])
    np.testing.assert_array_equal(depth_m, (DEPTH_MM[5] / 1000.0).astype(np.float32))
    assert abs(row["depth_scale"] - 0.001) < 1e-9 and row["source"] == "ur5e-d405"
    # Unaligned depth: the command fails with the refusal and writes nothing.
    command[command.index("/cam/aligned_depth_to_color/image_raw")] = "/cam/depth/image_rect_raw"
    assert main([*command[:-1], str(tmp_path / "other")]) == 2
    assert "not aligned" in capsys.readouterr().err and not (tmp_path / "other").exists()


@pytest.fixture(scope="module")
def completion_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("completion_model")
    torch.manual_seed(0)
    config = tiny_config()
    VanishingDepthForPretraining(config).eval().save_pretrained(folder)
    VanishingDepthImageProcessor.from_model_config(config, size={"shortest_edge": 28}).save_pretrained(folder)
    return folder


def _ply(path):
    data = path.read_bytes()
    header, body = data.split(b"end_header\n", 1)
    assert b"format binary_little_endian 1.0" in header
    count = int(header.split(b"element vertex ")[1].split(b"\n")[0])
    dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    return np.frombuffer(body, dtype=dtype, count=count)


def test_complete_command_over_a_bag_writes_depth_and_point_clouds_and_resumes(bags, completion_model, tmp_path,
                                                                                capsys):  # fmt: skip
    out = tmp_path / "completed"
    command = ["complete", "--model", str(completion_model), "--rosbag", str(bags["mcap"]), "--rgb-topic",
               "/cam/color/image_raw", "--depth-topic", "/cam/depth/compressedDepth", "--camera-info-topic",
               "/cam/color/camera_info", "--output-dir", str(out), "--pointcloud", "--batch-size", "4",
               "--keep-measured"]  # fmt: skip
    assert main(command) == 0, capsys.readouterr().err
    assert "6 frame(s) completed, 0 skipped" in capsys.readouterr().out
    names = sorted(p.stem for p in (out / "depth").glob("*.png"))
    assert names == [f"{_stamp(i):019d}" for i in range(FRAMES)]
    assert sorted(p.stem for p in (out / "pointcloud").glob("*.ply")) == names
    completed = load_depth(out / "depth" / f"{names[2]}.png", format="mm")
    measured = DEPTH_MM[2] > 0
    np.testing.assert_allclose(completed[measured], DEPTH_MM[2][measured] / 1000.0, atol=1e-6)  # --keep-measured
    cloud = _ply(out / "pointcloud" / f"{names[2]}.ply")
    assert len(cloud) == int((completed > 0).sum())
    # The cloud keeps the float depth; the PNG rounds it to whole millimetres.
    np.testing.assert_allclose(np.sort(cloud["z"]), np.sort(completed[completed > 0]), atol=5e-4 + 1e-6)
    # Interrupted run: two frames lost (one of them mid-write). The rerun redoes those two only.
    kept = {p: p.stat().st_mtime_ns for p in (out / "depth").glob("*.png")}
    (out / "depth" / f"{names[1]}.png").unlink()
    (out / "pointcloud" / f"{names[4]}.ply").rename(out / "pointcloud" / f"{names[4]}.partial.ply")
    assert main(command) == 0
    assert "2 frame(s) completed, 4 skipped" in capsys.readouterr().out
    for path, mtime in kept.items():
        if path.stem not in (names[1], names[4]):
            assert path.stat().st_mtime_ns == mtime, path
    assert not list(out.rglob("*.partial.*"))
    assert main(command) == 0 and "0 frame(s) completed, 6 skipped" in capsys.readouterr().out
    # Without intrinsics there is no point cloud to write: refused before the model runs.
    no_info = [c for c in command if c not in ("--camera-info-topic", "/cam/color/camera_info")]
    assert main([*no_info[:-1], "--overwrite"]) == 2 and "--camera-info-topic" in capsys.readouterr().err


def test_complete_command_refuses_an_encoder_folder_for_a_bag(bags, tmp_path, capsys):
    from vanishing_depth import VanishingDepthModel

    encoder = tmp_path / "encoder"
    VanishingDepthModel(tiny_config()).save_pretrained(encoder)
    out = tmp_path / "completed"
    command = ["complete", "--model", str(encoder), "--rosbag", str(bags["ros1"]), "--rgb-topic",
               "/cam/color/image_raw", "--depth-topic", "/cam/depth_be", "--output-dir", str(out)]  # fmt: skip
    assert main(command) == 2 and "no depth decoder" in capsys.readouterr().err
    assert not out.exists() or not any(out.rglob("*.png"))
    assert json.loads((encoder / "config.json").read_text())["architectures"] == ["VanishingDepthModel"]


def test_without_rosbags_the_reader_says_which_extra_to_install(bags, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "rosbags.highlevel", None)  # as if the package were not installed
    with pytest.raises(ImportError, match=r"vanishing-depth\[robotics\]"):
        _read(bags["mcap"])


def test_a_bare_mcap_or_db3_file_reads_like_its_bag_folder(bags):
    for storage, suffix in (("mcap", "*.mcap"), ("sqlite3", "*.db3")):
        (bare,) = bags[storage].glob(suffix)
        frames = _read(bare, rgb_topic="/cam/color/png", camera_info_topic="/cam/color/camera_info")
        assert [f.stamp_ns for f in frames] == [_stamp(i) for i in range(FRAMES)]
        np.testing.assert_array_equal(frames[4].rgb, RGB[4])
        np.testing.assert_array_equal(frames[4].depth_m, (DEPTH_MM[4] / 1000.0).astype(np.float32))
        assert frames[4].intrinsics == K


def test_complete_command_logs_each_frame_to_a_rerun_recording(bags, completion_model, tmp_path, capsys):
    pytest.importorskip("rerun")
    from rerun.chunk import RrdReader

    recording = tmp_path / "run.rrd"
    command = ["complete", "--model", str(completion_model), "--rosbag", str(bags["ros1"]), "--rgb-topic",
               "/cam/color/png", "--depth-topic", "/cam/depth_float", "--camera-info-topic", "/cam/color/camera_info",
               "--output-dir", str(tmp_path / "completed"), "--every-nth", "3", "--rerun", str(recording)]  # fmt: skip
    assert main(command) == 0, capsys.readouterr().err
    entities = {chunk.entity_path for chunk in RrdReader(recording).stream()}
    assert {"/camera/image", "/camera/image/rgb", "/camera/image/depth_input", "/camera/image/depth_completed",
            "/camera/points"} <= entities  # fmt: skip
    # An existing recording is not replaced, and a recording inside the output folder is refused.
    assert main(command) == 2 and "already exists" in capsys.readouterr().err
    command[-1] = str(tmp_path / "completed" / "run.rrd")
    assert main(command) == 2 and "outside --output-dir" in capsys.readouterr().err
