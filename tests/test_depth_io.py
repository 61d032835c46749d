"""Tests for vanishing_depth.data.depth_io: real sensor frames, every format's round trip, every error."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vanishing_depth.data import (
    DEPTH_FORMATS,
    decode_depth_array,
    encode_depth,
    load_depth,
    save_depth,
)


def _shared_data() -> Path:
    override = os.environ.get("VANISHING_DEPTH_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


SHARED_DATA = _shared_data()
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"real RGB-D frames not found at {SHARED_DATA} (set VANISHING_DEPTH_SHARED_DATA to the shared/data folder)",
)


def _frames(pattern: str) -> list[Path]:
    frames = sorted(SHARED_DATA.glob(pattern))
    if not frames:
        pytest.skip(f"no files match {pattern} under {SHARED_DATA}")
    return frames


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def _mode(path: Path) -> str:
    with Image.open(path) as image:
        return image.mode


def _synthetic_depth(low: float, high: float, shape: tuple[int, int] = (24, 32), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(low, high, size=shape).astype(np.float32)
    depth[rng.random(shape) < 0.2] = 0.0  # holes must survive every round trip as 0
    return depth


# ----------------------------------------------------------------------------------------------------------------------
# Real frames
# ----------------------------------------------------------------------------------------------------------------------


@needs_shared_data
def test_nyu_frames_decode_to_plausible_metric_depth():
    for path in _frames("metric3d_nyu_demo/depth/*.png"):
        depth, valid = load_depth(path, "mm", return_valid_mask=True)
        assert depth.dtype == np.float32 and depth.shape == (480, 640)
        assert np.array_equal(valid, depth > 0)
        assert 0.60 <= valid.mean() <= 0.80, path.name
        assert depth[valid].min() >= 0.3 and depth[valid].max() <= 10.0, path.name
        raw = _pixels(path).astype(np.float64)
        np.testing.assert_allclose(depth, raw / 1000.0, rtol=1e-6)


@needs_shared_data
def test_redwood_clean_frames_decode_to_room_scale_depth():
    frames = _frames("open3d_redwood_livingroom1/depth_clean/*.png")
    assert len(frames) >= 5
    for path in frames:
        depth = load_depth(path, "mm")
        values = depth[depth > 0]
        assert values.size > 0.9 * depth.size, path.name
        assert values.min() >= 0.3 and values.max() <= 10.0, path.name


@needs_shared_data
def test_arkit_depth_is_256x192_between_1_5_and_3_6_m():
    (path,) = _frames("promptda_arkit/arkit_depth.png")
    depth = load_depth(path, "mm")
    assert depth.shape == (192, 256)  # (H, W) of ARKit's 256x192 LiDAR map
    assert (depth > 0).all()
    assert 1.5 <= depth.min() and depth.max() <= 3.6


@needs_shared_data
def test_auto_refuses_a_real_16_bit_png_and_lists_the_choices():
    path = _frames("metric3d_nyu_demo/depth/*.png")[0]
    with pytest.raises(ValueError, match="format='auto' is ambiguous") as error:
        load_depth(path)
    for name in ("mm", "kitti", "tum", "sunrgbd"):
        assert f"'{name}'" in str(error.value)


@needs_shared_data
def test_real_frame_survives_save_and_reload_bit_exactly(tmp_path):
    path = _frames("open3d_redwood_livingroom1/depth_noisy/*.png")[0]
    depth = load_depth(path, "mm")
    save_depth(tmp_path / "copy.png", depth, "mm")
    assert np.array_equal(_pixels(tmp_path / "copy.png"), _pixels(path))


# ----------------------------------------------------------------------------------------------------------------------
# Round trips of every format
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("format", "high"),
    [("mm", 60.0), ("kitti", 250.0), ("tum", 13.0), ("sunrgbd", 60.0)],
)
def test_png_formats_round_trip_within_half_a_step(tmp_path, format, high):
    depth = _synthetic_depth(0.05, high)
    path = tmp_path / f"depth_{format}.png"
    save_depth(path, depth, format)
    with open(path, "rb") as handle:
        header = handle.read(26)
    assert header[24] == 16 and header[25] == 0  # 16-bit greyscale PNG
    assert _mode(path) == "I;16"
    loaded = load_depth(path, format)
    step = DEPTH_FORMATS[format].metres_per_unit
    assert loaded.dtype == np.float32 and loaded.shape == depth.shape
    assert np.array_equal(loaded > 0, depth > 0)
    assert np.abs(loaded - depth).max() <= 0.5 * step + 1e-6 * high


def test_linear_formats_match_their_metres_per_unit():
    one = np.array([[1]], dtype=np.uint16)
    for name in ("mm", "kitti", "tum"):
        assert decode_depth_array(one, name)[0, 0] == pytest.approx(DEPTH_FORMATS[name].metres_per_unit, rel=1e-6)
    assert set(DEPTH_FORMATS) == {"mm", "kitti", "tum", "sunrgbd", "nyu_raw", "float"}
    assert DEPTH_FORMATS["nyu_raw"].metres_per_unit is None
    assert all(isinstance(entry.description, str) and entry.description for entry in DEPTH_FORMATS.values())


def test_sunrgbd_rotates_bits_as_the_toolbox_does():
    depth = np.array([[1.0, 10.0, 0.0]], dtype=np.float32)
    encoded = encode_depth(depth, "sunrgbd")
    # 1000 mm << 3 = 8000; 10000 mm needs the wrap: ((10000 << 3) & 0xFFFF) | (10000 >> 13) = 14464 | 1
    assert encoded.tolist() == [[8000, 14465, 0]]
    np.testing.assert_allclose(decode_depth_array(encoded, "sunrgbd"), depth)
    # and the same counts read as plain millimetres are wrong by the rotation
    assert decode_depth_array(encoded, "mm")[0, 0] == pytest.approx(8.0)


def test_nyu_raw_round_trip_and_byte_layout(tmp_path):
    depth = _synthetic_depth(0.35, 9.5)
    path = tmp_path / "d-1294886363.011060-3164794231.pgm"
    save_depth(path, depth, "nyu_raw")
    data = path.read_bytes()
    header = b"P5\n32 24\n65535\n"
    assert data.startswith(header) and len(data) == len(header) + 2 * depth.size
    disparity = encode_depth(depth, "nyu_raw")
    assert disparity.dtype == np.uint16 and (disparity[depth == 0] == 2047).all()
    # samples are little-endian although maxval 65535 means big-endian in the PGM standard
    assert data[len(header) : len(header) + 2] == int(disparity[0, 0]).to_bytes(2, "little")

    loaded = load_depth(path)  # .pgm -> nyu_raw
    assert np.array_equal(loaded > 0, depth > 0)
    valid = depth > 0
    # rounding the disparity by at most 0.5 moves depth by at most 0.5 * z_true * z_decoded / 351.3
    bound = 0.5 * depth[valid] * loaded[valid] / 351.3
    assert (np.abs(loaded[valid] - depth[valid]) <= bound * (1 + 1e-4) + 1e-6).all()


def test_nyu_raw_formula_invalid_value_and_byte_order_check():
    disparity = np.array([[0, 500, 1092, 1093, 2047]], dtype=np.uint16)
    depth = decode_depth_array(disparity, "nyu_raw")
    np.testing.assert_allclose(depth[0, :3], [351.3 / 1092.5, 351.3 / 592.5, 351.3 / 0.5], rtol=1e-5)
    assert depth[0, 3] == 0 and depth[0, 4] == 0  # beyond the formula's range, and the Kinect's "no reading"
    swapped = disparity[:, :2].byteswap()  # what a reader that trusts the PGM header gets
    with pytest.raises(ValueError, match="byte"):
        decode_depth_array(swapped, "nyu_raw")


def test_pil_reads_the_nyu_pgm_with_the_wrong_byte_order(tmp_path):
    depth = _synthetic_depth(0.5, 5.0, shape=(4, 6), seed=1)
    path = tmp_path / "raw.pgm"
    save_depth(path, depth, "nyu_raw")
    with Image.open(path) as image:
        through_pil = np.array(image).astype(np.uint16)
    assert not np.array_equal(through_pil, encode_depth(depth, "nyu_raw"))
    np.testing.assert_allclose(load_depth(path, "nyu_raw"), load_depth(path), rtol=0)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".tif"])
def test_float_files_round_trip_exactly_and_auto_detects_them(tmp_path, suffix, caplog):
    depth = _synthetic_depth(0.01, 80.0)
    path = tmp_path / f"depth{suffix}"
    save_depth(path, depth, "float")
    with caplog.at_level(logging.INFO, logger="vanishing_depth.data.depth_io"):
        loaded = load_depth(path)
    assert "'float'" in caplog.text and "auto" in caplog.text
    assert loaded.dtype == np.float32
    assert np.array_equal(loaded, depth)
    if suffix == ".tif":
        assert _mode(path) == "F"


def test_npz_with_a_single_array_under_another_key(tmp_path):
    depth = _synthetic_depth(0.5, 4.0)
    np.savez(tmp_path / "one.npz", whatever=depth)
    assert np.array_equal(load_depth(tmp_path / "one.npz"), depth)
    np.savez(tmp_path / "two.npz", a=depth, b=depth)
    with pytest.raises(ValueError, match="key 'depth'"):
        load_depth(tmp_path / "two.npz")


def test_decode_depth_array_accepts_datasets_style_pil_images():
    counts = (np.arange(12, dtype=np.uint16) * 700).reshape(3, 4)
    image = Image.fromarray(counts)
    assert image.mode == "I;16"
    np.testing.assert_allclose(decode_depth_array(image, "mm"), counts / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(decode_depth_array(counts[..., None], "kitti"), counts / 256.0, rtol=1e-6)
    as_int32 = Image.fromarray(counts.astype(np.int32))  # PIL mode "I", as older decoders give for 16-bit PNGs
    np.testing.assert_allclose(decode_depth_array(as_int32, "tum"), counts / 5000.0, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------------


def test_eight_bit_png_is_refused_as_a_visualisation(tmp_path):
    path = tmp_path / "vis.png"
    Image.fromarray(np.full((4, 5), 128, dtype=np.uint8)).save(path)
    for format in ("auto", "mm"):
        with pytest.raises(ValueError, match="depth needs 16 or 32 bits; this looks like a visualisation"):
            load_depth(path, format)
    with pytest.raises(ValueError, match="depth needs 16 or 32 bits"):
        decode_depth_array(np.zeros((4, 5), dtype=np.uint8), "mm")


def test_colour_image_is_refused(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(path)
    with pytest.raises(ValueError, match="RGB"):
        load_depth(path, "mm")
    with pytest.raises(ValueError, match="colour image"):
        decode_depth_array(np.zeros((4, 5, 3), dtype=np.uint16), "mm")


def test_negative_values_are_refused(tmp_path):
    depth = np.ones((3, 3), dtype=np.float32)
    depth[1, 1] = -0.5
    np.save(tmp_path / "neg.npy", depth)
    with pytest.raises(ValueError, match="negative"):
        load_depth(tmp_path / "neg.npy")
    with pytest.raises(ValueError, match="negative"):
        decode_depth_array(np.array([[-1, 2]], dtype=np.int32), "mm")
    with pytest.raises(ValueError, match="negative"):
        encode_depth(depth, "mm")


def test_nan_and_inf_become_missing_with_a_warning(tmp_path):
    depth = np.full((3, 4), 2.0, dtype=np.float32)
    depth[0, 0], depth[1, 1], depth[2, 2] = np.nan, np.inf, -np.inf
    np.save(tmp_path / "nan.npy", depth)
    with pytest.warns(RuntimeWarning, match="3 NaN/inf"):
        loaded = load_depth(tmp_path / "nan.npy")
    assert loaded[0, 0] == 0 and loaded[1, 1] == 0 and loaded[2, 2] == 0
    assert (loaded[loaded > 0] == 2.0).all() and np.count_nonzero(loaded) == 9
    with pytest.raises(ValueError, match="NaN"):
        encode_depth(depth, "mm")


def test_unknown_format_lists_the_valid_names(tmp_path):
    np.save(tmp_path / "d.npy", np.ones((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="`format` must be one of") as error:
        load_depth(tmp_path / "d.npy", "millimetres")
    for name in DEPTH_FORMATS:
        assert name in str(error.value)
    with pytest.raises(ValueError, match="`format` must be one of"):
        encode_depth(np.ones((2, 2), dtype=np.float32), "auto")


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        load_depth(tmp_path / "nothing.png", "mm")


@pytest.mark.parametrize(
    ("format", "value"),
    [("mm", 70.0), ("kitti", 300.0), ("tum", 14.0), ("sunrgbd", 70.0), ("mm", 1e-4), ("nyu_raw", 0.2)],
)
def test_values_that_do_not_fit_the_format_are_refused(format, value):
    depth = np.array([[1.0, value]], dtype=np.float32)
    with pytest.raises(ValueError, match="do not fit format"):
        encode_depth(depth, format)


def test_units_and_containers_must_match(tmp_path):
    with pytest.raises(ValueError, match="format='float'"):
        decode_depth_array(np.ones((2, 2), dtype=np.float32), "mm")
    with pytest.raises(ValueError, match="integer sensor counts"):
        decode_depth_array(np.ones((2, 2), dtype=np.uint16), "float")
    np.save(tmp_path / "counts.npy", np.ones((2, 2), dtype=np.uint16))
    with pytest.raises(ValueError, match="cannot tell the unit"):
        load_depth(tmp_path / "counts.npy")
    assert load_depth(tmp_path / "counts.npy", "mm")[0, 0] == pytest.approx(0.001)
    with pytest.raises(ValueError, match=r"\['.png'\]"):
        save_depth(tmp_path / "depth.npy", np.ones((2, 2), dtype=np.float32), "mm")
    with pytest.raises(ValueError, match="16-bit counts"):
        decode_depth_array(np.array([[70000]], dtype=np.int32), "mm")


# ----------------------------------------------------------------------------------------------------------------------
# The deprecated `vanishing_depth.processing` alias
# ----------------------------------------------------------------------------------------------------------------------


def test_processing_alias_forwards_every_old_name_with_a_future_warning():
    import importlib

    import vanishing_depth.processing as processing

    old_names = {  # what `vanishing_depth.processing` exported before the layout change
        "DEPTH_FORMATS", "DepthFormat", "DepthNoise", "MaskingCurriculum", "PretrainingDepthTransform", "RandomDepth",
        "VanishingDepthImageProcessor", "VanishingDepthMasker", "augment_rgbd_pair", "blocky_mask", "color_jitter",
        "decode_depth_array", "depth_to_metres", "encode_depth", "keep_fraction", "load_depth", "load_rgb",
        "perlin_mask", "perlin_noise", "pixel_mask", "random_resized_crop_box", "rescale_far_depth",
        "sample_uniform_points", "save_depth", "simulate_edge_holes", "simulate_lidar_lines", "simulate_low_res_tof",
    }  # fmt: skip
    assert set(processing._MOVED) == old_names
    for name, home in processing._MOVED.items():
        with pytest.warns(FutureWarning, match=rf"from {home} import {name}"):
            value = getattr(processing, name)
        assert value is getattr(importlib.import_module(home), name)
    with pytest.warns(FutureWarning, match="vanishing_depth.image_processing_vanishing_depth"):
        from vanishing_depth.processing import VanishingDepthImageProcessor
    from vanishing_depth import VanishingDepthImageProcessor as processor_class

    assert VanishingDepthImageProcessor is processor_class
    with pytest.warns(FutureWarning, match="from vanishing_depth.data import load_depth"):
        from vanishing_depth.processing import load_depth as old_load_depth
    assert old_load_depth is load_depth
    with pytest.raises(AttributeError, match="multiscale_targets"):
        processing.multiscale_targets  # noqa: B018 - removed (unused, and at odds with the model's target slicing)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("vanishing_depth.processing.depth_io")
