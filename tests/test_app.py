"""The Vanishing Depth Analyzer's functions (`vanishing_depth.app`), without a browser: the removal patterns, the
analysis of a bundled frame, the metrics, the errors shown in the page, the files it writes, the CLI and the API."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import hub_offline, tiny_config
from vanishing_depth import VanishingDepthForPretraining, VanishingDepthModel
from vanishing_depth.cli import build_parser
from vanishing_depth.data import load_demo_corpus, load_depth, save_depth
from vanishing_depth.data.schema import decode_rgbd_row
from vanishing_depth.image_processing_vanishing_depth import VanishingDepthImageProcessor

gr = pytest.importorskip("gradio", reason="the app's tests need the `app` extra: pip install -e '.[app]'")

from vanishing_depth.app import (  # noqa: E402
    DepthAnalyzer,
    _Session,
    _training_note,
    apply_cues,
    build_app,
    format_metrics,
    millimetre_range,
    parse_cues,
    parse_intrinsics,
    pattern_spec,
    read_depth_upload,
    region_metrics,
    resolve_model_dir,
)


@pytest.fixture(scope="module", autouse=True)
def _no_network():
    with hub_offline():
        yield


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny random-init pretraining model (with its decoder) and a 56 px processor, as a saved folder."""
    folder = tmp_path_factory.mktemp("tiny") / "pretraining"
    torch.manual_seed(0)
    model = VanishingDepthForPretraining(tiny_config())
    model.save_pretrained(folder)
    VanishingDepthImageProcessor.from_model_config(model.config, size={"shortest_edge": 56}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def analyzer(model_dir) -> DepthAnalyzer:
    return DepthAnalyzer(model_dir, device="cpu")


@pytest.fixture(scope="module")
def frame():
    """A bundled Redwood frame at half size (320x240), to keep the tests quick."""
    rgb, depth_m = decode_rgbd_row(load_demo_corpus("test")[0])
    return np.ascontiguousarray(rgb[::2, ::2]), np.ascontiguousarray(depth_m[::2, ::2])


@pytest.fixture
def session(analyzer, tmp_path) -> _Session:
    return _Session(analyzer, tmp_path / "app")


# ----------------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------------
def test_pattern_spec_keeps_the_asked_density():
    assert pattern_spec("uniform", 1.0, 480) == "fraction:0.01"
    assert pattern_spec("perlin", 10.0, 480) == "perlin:0.9"
    assert pattern_spec("blocky", 0.1, 480) == "blocky:0.999"
    assert pattern_spec("lidar", 10.0, 480) == "lidar:48"
    assert pattern_spec("lidar", 0.1, 480) == "lidar:1"  # at least one line
    assert pattern_spec("tof", 1.0, 480) == "tof:10"  # 1/10 per axis keeps 1 % of the cells
    assert pattern_spec("tof", 100.0, 480) == "tof:1"
    assert pattern_spec("none", 1.0, 480) == "dense"
    assert pattern_spec("rgb_only", 1.0, 480) == "none"
    for bad in (0.05, 100.5, float("nan"), "a lot"):
        with pytest.raises(ValueError, match="density"):
            pattern_spec("uniform", bad, 480)
    with pytest.raises(ValueError, match="pattern"):
        pattern_spec("stripes", 1.0, 480)


def test_cues_and_intrinsics_are_parsed_and_checked():
    assert parse_cues(None, (10, 20)) == []
    assert parse_cues([[3, 4, 1.5], [None, None, None], [float("nan")] * 3], (10, 20)) == [(3, 4, 1.5)]
    with pytest.raises(ValueError, match="positive depth in metres"):
        parse_cues([[3, 4, 0.0]], (10, 20))
    with pytest.raises(ValueError, match="outside the 20x10 image"):
        parse_cues([[25, 4, 1.0]], (10, 20))
    depth = apply_cues(np.zeros((10, 20), np.float32), [(5, 5, 2.0)], radius_px=1)
    assert depth[5, 5] == 2.0 and depth[4, 5] == 2.0 and depth[4, 4] == 0.0 and int((depth > 0).sum()) == 5
    assert parse_intrinsics("") is None
    assert parse_intrinsics("525, 525, 319.5, 239.5") == [525.0, 525.0, 319.5, 239.5]
    with pytest.raises(ValueError, match="fx, fy, cx, cy"):
        parse_intrinsics("525, 525")


def test_region_metrics_are_rmse_and_mae_in_metres_on_each_region():
    truth = np.array([[1.0, 2.0], [3.0, 0.0]], np.float32)  # 0 = no ground truth
    completed = np.array([[1.5, 2.0], [2.0, 9.0]], np.float32)
    given = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)  # one observed pixel
    metrics = region_metrics(completed, truth, given)
    assert metrics["observed"]["pixels"] == 1 and metrics["removed"]["pixels"] == 2 and metrics["all"]["pixels"] == 3
    assert metrics["observed"]["rmse_m"] == pytest.approx(0.5) and metrics["observed"]["mae_m"] == pytest.approx(0.5)
    assert metrics["removed"]["rmse_m"] == pytest.approx(math.sqrt(0.5)) and metrics["removed"]["mae_m"] == 0.5
    assert metrics["all"]["rmse_m"] == pytest.approx(math.sqrt(1.25 / 3))
    assert metrics["all"]["mae_m"] == pytest.approx(1.5 / 3)


def test_depth_files_and_the_millimetre_png_range(tmp_path):
    np.save(tmp_path / "depth.npy", np.full((4, 5), 1.5, np.float32))
    assert read_depth_upload(tmp_path / "depth.npy", "auto").max() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="depth_scale` applies to 16-bit PNG / TIFF"):
        read_depth_upload(tmp_path / "depth.npy", "auto", depth_scale=0.001)
    save_depth(tmp_path / "depth.png", np.full((4, 5), 1.5, np.float32), "mm")
    assert read_depth_upload(tmp_path / "depth.png", "mm", depth_scale=0.002).max() == pytest.approx(3.0)
    depth = np.array([[0.0, 0.0004, 0.0006, 2.0, 80.0]], np.float32)
    np.testing.assert_allclose(millimetre_range(depth), [[0.0, 0.0, 0.0006, 2.0, 65.535]], rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# The analysis
# ----------------------------------------------------------------------------------------------------------------------
def test_analyze_a_bundled_frame_at_one_percent(analyzer, frame):
    rgb, truth = frame
    result = analyzer.analyze(rgb, truth, "uniform", 1.0, seed=0)
    valid = int((truth > 0).sum())
    assert result.pattern == "fraction:0.01"
    assert int((result.input_m > 0).sum()) == round(0.01 * valid)
    assert np.all(result.input_m[result.input_m > 0] == truth[result.input_m > 0])  # kept pixels are the truth
    assert result.completed_m.shape == truth.shape and np.isfinite(result.completed_m).all()
    assert result.completed_m.min() >= 0.0
    metrics = result.metrics
    assert metrics["observed"]["pixels"] + metrics["removed"]["pixels"] == metrics["all"]["pixels"]
    assert all(math.isfinite(metrics[region][key]) for region in metrics for key in ("rmse_m", "mae_m"))
    layers = list(analyzer.model.config.fusion_layers)
    assert list(result.depth_share) == layers and all(0.0 <= share <= 1.0 for share in result.depth_share.values())
    assert sorted(result.feature_maps) == sorted([f"RGB L{k}" for k in layers] + [f"depth L{k}" for k in layers])
    for colours in result.feature_maps.values():
        assert colours.ndim == 3 and colours.shape[-1] == 3 and 0.0 <= colours.min() and colours.max() <= 1.0
    again = analyzer.analyze(rgb, truth, "uniform", 1.0, seed=0, feature_maps=False)
    np.testing.assert_array_equal(again.input_m, result.input_m)  # the seed replays the input
    np.testing.assert_allclose(again.completed_m, result.completed_m, rtol=1e-5, atol=1e-5)
    other = analyzer.analyze(rgb, truth, "uniform", 1.0, seed=1, feature_maps=False)
    assert not np.array_equal(other.input_m, result.input_m)


@pytest.mark.parametrize("pattern", ["perlin", "blocky", "lidar", "tof"])
def test_every_removal_pattern_keeps_about_the_density(analyzer, frame, pattern):
    rgb, truth = frame
    result = analyzer.analyze(rgb, truth, pattern, 10.0, seed=0, feature_maps=False)
    if pattern == "tof":  # a coarse sensor covers the frame: 10 % of the cells, each copied over its block
        cells = round(240 / math.sqrt(10)) * round(320 / math.sqrt(10))
        assert np.unique(result.input_m).size <= cells + 1 < 0.15 * (truth > 0).sum()
        return
    kept = (result.input_m > 0).sum() / (truth > 0).sum()
    assert 0.05 < kept < 0.15, (pattern, kept)
    assert np.all((result.input_m == 0) | (result.input_m == truth))


def test_no_removal_rgb_only_and_hand_cues(analyzer, frame):
    rgb, truth = frame
    dense = analyzer.analyze(rgb, truth, "none", 1.0, feature_maps=False)
    np.testing.assert_array_equal(dense.input_m, truth)
    assert dense.metrics["removed"]["pixels"] == 0 and math.isnan(dense.metrics["removed"]["rmse_m"])
    assert "| removed | n/a | n/a | 0 |" in format_metrics(dense)
    cues = [(100, 200, 2.5), (300, 100, 1.25)]
    rgb_only = analyzer.analyze(rgb, truth, "rgb_only", 50.0, cues=cues, feature_maps=False)
    assert set(np.unique(rgb_only.input_m).tolist()) == {0.0, 1.25, 2.5}
    assert rgb_only.input_m[200, 100] == 2.5 and rgb_only.input_m[100, 300] == 1.25
    no_truth = analyzer.analyze(rgb, None, "uniform", 1.0, cues=cues, feature_maps=False)
    assert no_truth.metrics == {} and "No ground truth" in format_metrics(no_truth)


def test_mismatched_sizes_are_refused(analyzer, frame):
    rgb, truth = frame
    with pytest.raises(ValueError, match="depth map is 160x120 px but the RGB image is 320x240 px"):
        analyzer.analyze(rgb, truth[::2, ::2], "uniform", 1.0)


# ----------------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------------
def test_folder_without_a_decoder_is_refused(tmp_path):
    torch.manual_seed(0)
    VanishingDepthModel(tiny_config()).save_pretrained(tmp_path / "encoder")
    with pytest.raises(ValueError, match="no depth decoder"):
        DepthAnalyzer(tmp_path / "encoder", device="cpu")


def test_training_record_is_reported_never_quality(tmp_path, model_dir, analyzer):
    assert "no training record" in _training_note(str(model_dir)) and "no training record" in analyzer.describe()
    run = tmp_path / "run"
    (run / "pretraining").mkdir(parents=True)
    (run / "pretraining_summary.json").write_text(json.dumps({"steps": 0}))
    assert "untrained" in _training_note(str(run / "pretraining"))
    (run / "pretraining_summary.json").write_text(json.dumps({"steps": 1800}))
    assert "pretrained for 1800 steps" in _training_note(str(run / "pretraining"))


def test_default_model_is_the_demo_model_or_a_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="make demo"):
        resolve_model_dir(None)
    demo = tmp_path / "outputs" / "vanishing-depth-demo" / "pretraining"
    demo.mkdir(parents=True)
    (demo / "config.json").write_text("{}")
    assert Path(resolve_model_dir(None)) == Path("outputs/vanishing-depth-demo/pretraining")
    assert resolve_model_dir("some/folder") == "some/folder"


# ----------------------------------------------------------------------------------------------------------------------
# The page's handlers: files and errors
# ----------------------------------------------------------------------------------------------------------------------
def test_complete_writes_the_millimetre_png_and_the_point_cloud(session):
    rgb_path, depth_path, depth_format, scale, intrinsics, cues = session.bundled_frame(0)
    assert Path(rgb_path).is_relative_to(session.temp_dir) and depth_format == "mm" and cues == []
    assert parse_intrinsics(intrinsics) is not None
    outputs = session.complete(rgb_path, depth_path, depth_format, "uniform", 1.0, 0, scale, None, intrinsics)
    completed, shown_input, errors, metrics, features, share, png, ply, status = outputs
    assert all(isinstance(picture, Image.Image) for picture in (completed, shown_input, errors))
    assert completed.width == 640 and completed.height > 480  # the legend in metres under the map
    assert "RMSE (m)" in metrics and "| all |" in metrics and "depth share" in share
    assert len(features) == 2 * len(session.analyzer.model.config.fusion_layers)
    assert Path(png).is_relative_to(session.temp_dir) and Path(ply).is_relative_to(session.temp_dir)
    written = load_depth(png, format="mm")
    assert written.shape == (480, 640) and written.max() > 0
    header = Path(ply).read_bytes().split(b"end_header\n")[0].decode()
    vertices = int(header.split("element vertex ")[1].split()[0])
    assert 0 < vertices <= 100_000 and "property uchar red" in header
    assert "no training record" in status
    without = session.complete(rgb_path, depth_path, "mm", "uniform", 1.0, 0, 0.0, None, "")
    assert without[7] is None  # no intrinsics, no point cloud


def test_errors_are_messages_in_the_page(session, tmp_path):
    rgb_path, depth_path, *_ = session.bundled_frame(1)
    folder = session.temp_dir / "uploads"
    folder.mkdir()
    eight_bit = folder / "depth_8bit.png"
    Image.fromarray(np.full((480, 640), 7, np.uint8)).save(eight_bit)
    with pytest.raises(gr.Error, match="16 or 32 bits") as error:
        session.complete(rgb_path, str(eight_bit), "mm", "uniform", 1.0, 0)
    assert str(session.temp_dir) not in str(error.value)  # files named by name, not by server path
    small = folder / "depth_small.png"
    save_depth(small, np.full((240, 320), 2.0, np.float32), "mm")
    with pytest.raises(gr.Error, match="320x240 px but the RGB image is 640x480"):
        session.complete(rgb_path, str(small), "mm", "uniform", 1.0, 0)
    with pytest.raises(gr.Error, match="ambiguous"):
        session.complete(rgb_path, depth_path, "auto", "uniform", 1.0, 0)
    with pytest.raises(gr.Error, match="density"):
        session.complete(rgb_path, depth_path, "mm", "uniform", 0.01, 0)
    with pytest.raises(gr.Error, match="intrinsics"):
        session.complete(rgb_path, depth_path, "mm", "uniform", 1.0, 0, 0.0, None, "1, 2, 3")
    with pytest.raises(gr.Error, match="RGB image"):
        session.complete(None, depth_path, "mm", "uniform", 1.0, 0)
    outside = tmp_path / "outside.png"  # not in the app's or Gradio's upload folder
    save_depth(outside, np.full((480, 640), 2.0, np.float32), "mm")
    with pytest.raises(gr.Error, match="reads only files uploaded"):
        session.complete(rgb_path, str(outside), "mm", "uniform", 1.0, 0)


def test_depth_scale_reads_a_16_bit_png_in_any_unit(session):
    rgb_path, depth_path, *_ = session.bundled_frame(0)
    truth = load_depth(depth_path, format="mm")
    tum = session.temp_dir / "depth_tum.png"
    save_depth(tum, truth, "tum")
    by_format = session.complete(rgb_path, str(tum), "tum", "none", 100.0, 0)[3]
    by_scale = session.complete(rgb_path, str(tum), "mm", "none", 100.0, 0, 1.0 / 5000.0)[3]
    assert by_format.split("\n", 1)[1] == by_scale.split("\n", 1)[1]  # the same table (timing aside)


# ----------------------------------------------------------------------------------------------------------------------
# The command and the API
# ----------------------------------------------------------------------------------------------------------------------
def test_cli_defaults_bind_localhost():
    args = build_parser().parse_args(["app", "--model", "run/pretraining"])
    assert (args.host, args.port, args.share, args.model) == ("127.0.0.1", 7860, False, "run/pretraining")
    assert build_parser().parse_args(["app", "--share", "true"]).share is True
    with pytest.raises(SystemExit):
        build_parser().parse_args(["app", "--share", "maybe"])


def test_api_endpoint_complete_answers_gradio_client(analyzer, tmp_path):
    from gradio_client import Client, handle_file

    demo = build_app(analyzer, tmp_path / "app")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        endpoint = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/complete"]
        names = [parameter["parameter_name"] for parameter in endpoint["parameters"]]
        assert names[:6] == ["rgb", "depth", "depth_format", "pattern", "density", "seed"]
        rgb_path, depth_path, *_ = demo.session.bundled_frame(2)
        result = client.predict(
            rgb=handle_file(rgb_path),
            depth=handle_file(depth_path),
            depth_format="mm",
            pattern="perlin",
            density=5.0,
            seed=3,
            api_name="/complete",
        )
        metrics = result[3]
        assert "perlin:0.95" in metrics
        rmse = [float(line.split("|")[2]) for line in metrics.splitlines() if line.startswith("| all |")]
        assert len(rmse) == 1 and math.isfinite(rmse[0])
        assert load_depth(result[6], format="mm").shape == (480, 640)
    finally:
        demo.close()
