"""Inference the transformers way: the stock `depth-estimation` pipeline, the `depth-completion` pipeline (with the
package and, in a subprocess, without it), `model(**processor(...))` for every class, the unit rules of the processor,
and the refusals of everything that would compute from randomly initialised weights."""

from __future__ import annotations

import builtins
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import vanishing_depth  # noqa: F401  (registers the Auto classes and the depth-completion task)
from conftest import HIDE_PACKAGE, shared_data_dir, tiny_config
from vanishing_depth import (
    VanishingDepthBackbone,
    VanishingDepthForDepthEstimation,
    VanishingDepthForImageClassification,
    VanishingDepthForPretraining,
    VanishingDepthForSemanticSegmentation,
    VanishingDepthImageProcessor,
    VanishingDepthModel,
    colorize_depth,
)


def _image(height=60, width=80, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))


def _sparse_depth_m(height=60, width=80, seed=1, keep=0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 6.0, (height, width)).astype(np.float32)
    depth[rng.random((height, width)) > keep] = 0.0
    return depth


def _save(model_class, folder, seed=0, **config_overrides):
    torch.manual_seed(seed)
    config = tiny_config(**config_overrides)
    model = model_class(config).eval()
    model.save_pretrained(folder)
    VanishingDepthImageProcessor.from_model_config(config, size={"shortest_edge": 56}).save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    saved = {}
    for name, model_class in (
        ("encoder", VanishingDepthModel),
        ("pretraining", VanishingDepthForPretraining),
        ("depth_head", VanishingDepthForDepthEstimation),
    ):
        _save(model_class, root / name)
        saved[name] = root / name
    # A depth-head folder whose weights lack the head: loading it would initialise the head randomly.
    headless = root / "headless"
    _save(VanishingDepthForDepthEstimation, headless)
    weights = load_file(str(headless / "model.safetensors"))
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("depth_head.")}, str(headless / "model.safetensors")
    )
    saved["headless"] = headless
    return saved


@pytest.fixture
def no_prompt(monkeypatch):
    """Fail if anything asks the user 'run custom code? [y/N]'."""
    asked = []
    monkeypatch.setattr(builtins, "input", lambda *args, **kwargs: asked.append(args) or "n")
    yield asked
    assert not asked, f"prompted: {asked}"


# ----------------------------------------------------------------------------------------------------------------------
# The stock depth-estimation pipeline
# ----------------------------------------------------------------------------------------------------------------------
def test_stock_depth_estimation_pipeline_runs_rgb_only_with_metric_output_at_input_size(folders, no_prompt):
    from transformers import pipeline

    estimator = pipeline("depth-estimation", model=str(folders["depth_head"]))
    assert type(estimator.model) is VanishingDepthForDepthEstimation
    out = estimator(_image(60, 80))
    assert out["predicted_depth"].shape == (60, 80)
    assert isinstance(out["depth"], Image.Image) and out["depth"].size == (80, 60)
    # Metric, not normalised: the same numbers as the model on an empty depth map, padding removed.
    processor = VanishingDepthImageProcessor.from_pretrained(folders["depth_head"])
    model = VanishingDepthForDepthEstimation.from_pretrained(folders["depth_head"]).eval()
    inputs = processor(images=_image(60, 80), return_tensors="pt")
    with torch.no_grad():
        predicted = model(**inputs).predicted_depth
    expected = processor.post_process_depth_estimation(
        {"predicted_depth": predicted}, target_sizes=[(60, 80)], resized_sizes=inputs["resized_sizes"]
    )[0]["predicted_depth"]
    torch.testing.assert_close(out["predicted_depth"], expected)


# ----------------------------------------------------------------------------------------------------------------------
# The depth-completion pipeline
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["pretraining", "depth_head"])
def test_depth_completion_pipeline_from_a_folder(folders, kind, no_prompt):
    from transformers import pipeline

    complete = pipeline("depth-completion", model=str(folders[kind]))
    assert type(complete.model).__name__ == {"pretraining": "VanishingDepthForPretraining"}.get(
        kind, "VanishingDepthForDepthEstimation"
    )
    rgb, depth = _image(60, 80), _sparse_depth_m(60, 80)
    out = complete(rgb, depth=depth)
    assert out["predicted_depth"].dtype == torch.float32 and out["predicted_depth"].shape == (60, 80)
    assert torch.isfinite(out["predicted_depth"]).all() and (out["predicted_depth"] >= 0).all()
    assert isinstance(out["depth"], Image.Image) and out["depth"].size[0] == 80 and out["depth"].size[1] > 60

    # The depth is used: other depth gives another prediction; no depth at all runs too.
    other = complete(rgb, depth=_sparse_depth_m(60, 80, seed=7))
    assert not torch.equal(other["predicted_depth"], out["predicted_depth"])
    assert complete(rgb)["predicted_depth"].shape == (60, 80)

    # keep_measured: the measured pixels pass through unchanged, the others are the model's.
    kept = complete(rgb, depth=depth, keep_measured=True)["predicted_depth"]
    measured = torch.from_numpy(depth) > 0
    assert torch.equal(kept[measured], torch.from_numpy(depth)[measured])
    assert torch.equal(kept[~measured], out["predicted_depth"][~measured])

    # Batches: one dict per input, each at its own image size; equal-size frames give the single-frame result.
    frames = [
        {"image": rgb, "depth": depth},
        {"image": _image(60, 80, seed=3), "depth": None},
        {"image": _image(70, 50)},
    ]
    batched = complete(frames, batch_size=2)
    assert [tuple(item["predicted_depth"].shape) for item in batched] == [(60, 80), (60, 80), (70, 50)]
    torch.testing.assert_close(batched[0]["predicted_depth"], out["predicted_depth"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        batched[1]["predicted_depth"], complete(_image(60, 80, seed=3))["predicted_depth"], atol=1e-5, rtol=1e-5
    )


def test_keep_measured_places_coarse_depth_pixels_at_their_centres(folders):
    from transformers import pipeline

    complete = pipeline("depth-completion", model=str(folders["pretraining"]))
    rgb = _image(60, 80)
    coarse = np.random.default_rng(2).uniform(1.0, 4.0, (15, 20)).astype(np.float32)  # a 4x coarser ToF map
    model_only = complete(rgb, depth=coarse)["predicted_depth"]
    kept = complete(rgb, depth=coarse, keep_measured=True)["predicted_depth"]
    # One measurement per depth pixel, at the image pixel under its centre (row 4i + 2, column 4j + 2) ...
    torch.testing.assert_close(kept[2::4, 2::4], torch.from_numpy(coarse), rtol=0, atol=0)
    # ... and the model's completion everywhere else, not a blocky upsampling of the coarse map.
    between = torch.ones(60, 80, dtype=torch.bool)
    between[2::4, 2::4] = False
    assert torch.equal(kept[between], model_only[between])


def test_depth_completion_reads_paths_sensor_units_and_tensors(folders, tmp_path, no_prompt):
    from transformers import pipeline

    from vanishing_depth.data import save_depth

    complete = pipeline("depth-completion", model=str(folders["pretraining"]))
    rgb, depth = _image(60, 80), _sparse_depth_m(60, 80)
    depth = np.round(depth * 1000.0) / 1000.0  # exact in millimetres
    reference = complete(rgb, depth=depth)["predicted_depth"]
    rgb_path, depth_path = tmp_path / "rgb.png", tmp_path / "depth.png"
    rgb.save(rgb_path)
    save_depth(depth_path, depth, "mm")
    millimetres = np.round(depth * 1000.0).astype(np.uint16)
    for result in (
        complete(str(rgb_path), depth=str(depth_path), depth_format="mm"),
        complete(rgb, depth=millimetres, depth_scale=0.001),
        complete(rgb, depth=millimetres, depth_format="mm"),
        complete(np.asarray(rgb), depth=torch.from_numpy(depth)),
    ):
        torch.testing.assert_close(result["predicted_depth"], reference, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="depth_scale"):
        complete(rgb, depth=millimetres)  # integer units without a scale
    with pytest.raises(ValueError, match="millimetres"):
        complete(rgb, depth=millimetres.astype(np.float32))  # millimetres passed as float metres


@pytest.mark.parametrize(
    "rgb_name, depth_name",
    [
        ("metric3d_nyu_demo/rgb/rgb_00000.jpg", "metric3d_nyu_demo/depth/sync_depth_00000.png"),  # Kinect v1
        ("promptda_arkit/image.jpg", "promptda_arkit/arkit_depth.png"),  # 256x192 LiDAR under 1920x1440 RGB
        ("open3d_redwood_livingroom1/color/00000.jpg", "open3d_redwood_livingroom1/depth_noisy/00000.png"),
    ],
)
def test_depth_completion_on_real_sensor_frames(folders, rgb_name, depth_name):
    from transformers import pipeline

    from vanishing_depth.data import load_depth

    data = shared_data_dir()
    if data is None or not (data / depth_name).is_file():
        pytest.skip("the real frames in ../shared/data are not available")
    complete = pipeline("depth-completion", model=str(folders["pretraining"]))
    width, height = Image.open(data / rgb_name).size
    out = complete(str(data / rgb_name), depth=str(data / depth_name), depth_format="mm", keep_measured=True)
    assert out["predicted_depth"].shape == (height, width) and torch.isfinite(out["predicted_depth"]).all()
    measured = load_depth(data / depth_name, format="mm")
    assert float(out["predicted_depth"].max()) >= float(measured.max()) - 1e-3  # the measurements passed through
    # The classic mistake on a real frame: the raw millimetre PNG cast to float and passed as metres.
    raw = np.asarray(Image.open(data / depth_name)).astype(np.float32)
    with pytest.raises(ValueError, match="millimetres"):
        complete(str(data / rgb_name), depth=raw)


def test_truncated_files_are_named(folders, tmp_path):
    from transformers import pipeline

    from vanishing_depth.data import load_depth, load_rgb, save_depth

    rgb_path, depth_path = tmp_path / "rgb.jpg", tmp_path / "depth.png"
    _image().save(rgb_path)
    save_depth(depth_path, _sparse_depth_m(), "mm")
    for path in (rgb_path, depth_path):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"{depth_path}: cannot be decoded"):
        load_depth(depth_path, format="mm")
    with pytest.raises(ValueError, match=f"{rgb_path}: cannot be decoded"):
        load_rgb(rgb_path)
    complete = pipeline("depth-completion", model=str(folders["pretraining"]))
    with pytest.raises(ValueError, match=str(rgb_path)):
        complete(str(rgb_path))
    with pytest.raises(ValueError, match=str(depth_path)):
        complete(_image(), depth=str(depth_path), depth_format="mm")


def test_depth_completion_picture_uses_a_fixed_metric_scale():
    ramp = np.tile(np.linspace(0.0, 15.0, 64, dtype=np.float32), (32, 1))
    near = np.full((32, 64), 3.0, dtype=np.float32)
    left = np.asarray(colorize_depth(ramp, 15.0, legend=False))
    right = np.asarray(colorize_depth(np.where(ramp > 7.5, ramp, near), 15.0, legend=False))
    # The same depth gets the same colour whatever else is in the picture (no per-image min-max).
    assert np.array_equal(left[:, 40:], right[:, 40:])
    assert (left[:, 0] == 0).all()  # 0 m = no value = black
    with_legend = colorize_depth(ramp, 15.0)
    assert with_legend.size[0] == 64 and with_legend.size[1] > 32


def test_depth_completion_refuses_folders_without_a_trained_decoder(folders, no_prompt):
    from transformers import pipeline

    with pytest.raises(ValueError, match="VanishingDepthModel, which has no depth decoder"):
        pipeline("depth-completion", model=str(folders["encoder"]))
    with pytest.raises(ValueError, match=r"depth_head\.\* \(\d+ tensors\)"):
        pipeline("depth-completion", model=str(folders["headless"]))
    model = VanishingDepthForDepthEstimation.from_pretrained(str(folders["headless"]))
    with pytest.raises(ValueError, match="randomly initialised"):
        pipeline("depth-completion", model=model, image_processor=VanishingDepthImageProcessor())


def test_stock_pipelines_refuse_a_randomly_initialised_head(folders, no_prompt):
    from transformers import pipeline

    for folder in (folders["encoder"], folders["headless"]):
        with pytest.raises(ValueError, match=r"depth_head\.\* \(\d+ tensors\)"):
            pipeline("depth-estimation", model=str(folder))
    # The encoder itself is complete: feature extraction from any folder runs.
    features = pipeline("image-feature-extraction", model=str(folders["depth_head"]))
    assert np.asarray(features(_image())).ndim == 3


def test_depth_completion_pipeline_runs_in_bfloat16(folders):
    from transformers import pipeline

    complete = pipeline("depth-completion", model=str(folders["pretraining"]), dtype=torch.bfloat16)
    assert complete.model.dtype == torch.bfloat16
    out = complete(_image(), depth=_sparse_depth_m())["predicted_depth"]
    reference = pipeline("depth-completion", model=str(folders["pretraining"]))(_image(), depth=_sparse_depth_m())
    assert out.dtype == torch.float32 and out.shape == (60, 80)
    assert float((out - reference["predicted_depth"]).abs().mean()) < 0.1 * float(reference["predicted_depth"].mean())


def test_saved_folders_declare_every_auto_class_and_the_pipeline(folders):
    config = json.loads((folders["encoder"] / "config.json").read_text())
    assert {
        "AutoModel",
        "AutoBackbone",
        "AutoModelForDepthEstimation",
        "AutoModelForSemanticSegmentation",
        "AutoModelForImageClassification",
        "AutoModelForPreTraining",
    } <= set(config["auto_map"])
    assert config["custom_pipelines"]["depth-completion"]["impl"] == "pipeline_vanishing_depth.DepthCompletionPipeline"
    assert (folders["encoder"] / "pipeline_vanishing_depth.py").is_file()
    # With the package imported the folder's declaration gives way to the registered pipeline (no remote code).
    loaded = VanishingDepthModel.from_pretrained(str(folders["encoder"]))
    assert "depth-completion" not in (getattr(loaded.config, "custom_pipelines", None) or {})


REMOTE = """
{hide}
import json, sys
import numpy as np, torch
from PIL import Image
from transformers import AutoModelForDepthEstimation, AutoModelForSemanticSegmentation, pipeline
folders = json.loads(sys.argv[1])
rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
depth = np.random.default_rng(1).uniform(0.5, 6.0, (60, 80)).astype(np.float32)
result = {{}}
for kind in ("pretraining", "depth_head"):
    complete = pipeline("depth-completion", model=folders[kind], trust_remote_code=True)
    assert "transformers_modules" in type(complete).__module__, type(complete).__module__
    assert "transformers_modules" in type(complete.model).__module__
    out = complete(rgb, depth=depth)
    result[kind] = out["predicted_depth"].tolist()
estimate = pipeline("depth-estimation", model=folders["depth_head"], trust_remote_code=True)  # a Hub widget's call
assert "transformers_modules" in type(estimate.model).__module__
result["estimated"] = list(estimate(rgb)["predicted_depth"].shape)
head = AutoModelForDepthEstimation.from_pretrained(folders["encoder"], trust_remote_code=True)
seg = AutoModelForSemanticSegmentation.from_pretrained(folders["encoder"], trust_remote_code=True, num_labels=3)
result["heads"] = [type(head).__name__, type(seg).__name__]
print(json.dumps(result))
"""


def test_pipeline_and_heads_load_without_the_package(folders, tmp_path):
    from transformers import pipeline

    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    code = REMOTE.format(hide=HIDE_PACKAGE)
    arg = json.dumps({k: str(v) for k, v in folders.items()})
    result = subprocess.run(
        [sys.executable, "-c", code, arg], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote["heads"] == ["VanishingDepthForDepthEstimation", "VanishingDepthForSemanticSegmentation"]
    assert remote["estimated"] == [60, 80]
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    depth = np.random.default_rng(1).uniform(0.5, 6.0, (60, 80)).astype(np.float32)
    for kind in ("pretraining", "depth_head"):
        local = pipeline("depth-completion", model=str(folders[kind]))(rgb, depth=depth)["predicted_depth"]
        torch.testing.assert_close(torch.tensor(remote[kind]), local, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# model(**processor(...)) for every class
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model_class",
    [
        VanishingDepthModel,
        VanishingDepthBackbone,
        VanishingDepthForPretraining,
        VanishingDepthForDepthEstimation,
        VanishingDepthForSemanticSegmentation,
        VanishingDepthForImageClassification,
    ],
)
def test_model_accepts_the_processor_output(model_class):
    torch.manual_seed(0)
    config = tiny_config(num_labels=3)
    model = model_class(config).eval()
    processor = VanishingDepthImageProcessor.from_model_config(config, size={"shortest_edge": 56})
    rgb, depth = _image(60, 80), _sparse_depth_m(60, 80)
    with torch.no_grad():
        out = model(**processor(images=rgb, depth=depth, return_tensors="pt"))
        without = model(**processor(images=rgb, return_tensors="pt"))
    first = next(value for value in out.values() if value is not None)
    other = next(value for value in without.values() if value is not None)
    first, other = (first[0], other[0]) if isinstance(first, tuple) else (first, other)
    assert not torch.equal(first, other)  # the depth reached the model


def test_a_misspelt_depth_argument_is_an_error_not_a_silent_drop():
    torch.manual_seed(0)
    rgb, depth = torch.randn(1, 3, 56, 56), torch.rand(1, 1, 56, 56) * 4.0
    for model_class in (VanishingDepthModel, VanishingDepthBackbone, VanishingDepthForPretraining):
        model = model_class(tiny_config()).eval()
        with pytest.raises(ValueError, match=r"unexpected keyword arguments \['depth'\]\. Depth goes in `depth_values`"):
            model(pixel_values=rgb, depth=depth)
    with pytest.raises(ValueError, match="output_attentions"):
        VanishingDepthModel(tiny_config())(pixel_values=rgb, output_attentions=True)


def test_empty_inputs_and_bad_feature_layers_are_value_errors_naming_the_argument():
    model = VanishingDepthModel(tiny_config()).eval()
    with pytest.raises(ValueError, match="`pixel_values` is empty"):
        model(pixel_values=torch.zeros(0, 3, 56, 56))
    for layers in ([99], [], [1.5], "2"):
        with pytest.raises(ValueError, match="`feature_layers` must be a non-empty list of 0-based block indices"):
            model(pixel_values=torch.zeros(1, 3, 56, 56), feature_layers=layers)
    processor = VanishingDepthImageProcessor(size={"shortest_edge": 56})
    with pytest.raises(ValueError, match=r"`depth\[0\]` is empty"):
        processor(images=_image(), depth=np.zeros((0, 0), np.float32))
    with pytest.raises(ValueError, match=r"`images\[0\]` is empty"):
        processor(images=np.zeros((0, 0, 3), np.uint8))


# ----------------------------------------------------------------------------------------------------------------------
# Units are loud
# ----------------------------------------------------------------------------------------------------------------------
def test_millimetres_passed_as_metres_are_refused():
    processor = VanishingDepthImageProcessor(size={"shortest_edge": 56})
    millimetres = np.random.default_rng(0).uniform(500, 4000, (60, 80)).astype(np.float32)
    with pytest.raises(ValueError, match=r"millimetres.*depth_scale=0\.001"):
        processor(images=_image(), depth=millimetres)
    # The same map in metres, and the raw integer map with its scale, are fine and identical.
    as_metres = processor(images=_image(), depth=np.round(millimetres) / 1000.0)["depth_values"]
    from_uint16 = processor(images=_image(), depth=np.round(millimetres).astype(np.uint16), depth_scale=0.001)
    torch.testing.assert_close(as_metres, from_uint16["depth_values"])


def test_depth_scale_applies_to_integer_maps_only():
    metres = _sparse_depth_m()
    with pytest.raises(ValueError, match="applies to integer sensor maps only"):
        VanishingDepthImageProcessor(size={"shortest_edge": 56})(images=_image(), depth=metres, depth_scale=0.001)
    # A processor saved with depth_scale=0.001 (for its uint16 PNGs) leaves float metres alone.
    saved = VanishingDepthImageProcessor(size={"shortest_edge": 56}, depth_scale=0.001)
    plain = VanishingDepthImageProcessor(size={"shortest_edge": 56})
    torch.testing.assert_close(
        saved(images=_image(), depth=metres)["depth_values"], plain(images=_image(), depth=metres)["depth_values"]
    )


def test_dropping_far_depth_warns_with_the_count(caplog):
    processor = VanishingDepthImageProcessor(size={"shortest_edge": 56}, max_valid_depth=10.0)
    depth = np.full((60, 80), 4.0, dtype=np.float32)
    depth[:, :20] = 12.0  # 25 % of the valid pixels beyond 10 m
    with caplog.at_level(logging.INFO, logger="vanishing_depth"):
        processor(images=_image(), depth=depth)
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "beyond max_valid_depth" in r.getMessage()
    ]
    assert len(warnings) == 1 and "1200 of 4800 valid pixels" in warnings[0].getMessage()
    caplog.clear()
    depth[:, :20] = 4.0
    depth[0, 0] = 12.0  # one pixel: logged, but not a warning
    with caplog.at_level(logging.INFO, logger="vanishing_depth"):
        processor(images=_image(), depth=depth)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("1 of 4800 valid pixels" in r.getMessage() for r in caplog.records)


def test_post_processing_removes_padding_from_target_sizes_alone():
    processor = VanishingDepthImageProcessor(size={"shortest_edge": 56})
    inputs = processor(images=[_image(60, 80)], return_tensors="pt")
    predicted = torch.arange(float(inputs["pixel_values"].shape[-2] * inputs["pixel_values"].shape[-1]))
    predicted = predicted.reshape(1, *inputs["pixel_values"].shape[-2:])
    with_sizes = processor.post_process_depth_estimation(
        {"predicted_depth": predicted}, target_sizes=[(60, 80)], resized_sizes=inputs["resized_sizes"]
    )
    inferred = processor.post_process_depth_estimation({"predicted_depth": predicted}, target_sizes=[(60, 80)])
    torch.testing.assert_close(with_sizes[0]["predicted_depth"], inferred[0]["predicted_depth"])


# ----------------------------------------------------------------------------------------------------------------------
# Commands refuse randomly initialised decoders and heads, and write nothing
# ----------------------------------------------------------------------------------------------------------------------
def test_complete_command_refuses_an_encoder_folder_and_writes_nothing(folders, tmp_path, capsys):
    from vanishing_depth.cli import main
    from vanishing_depth.data import save_depth

    _image().save(tmp_path / "rgb.png")
    save_depth(tmp_path / "depth.png", _sparse_depth_m(), "mm")
    out = tmp_path / "completed.png"
    for folder in (folders["encoder"], folders["headless"]):
        code = main(
            ["complete", "--model", str(folder), "--rgb", str(tmp_path / "rgb.png"), "--depth", str(tmp_path / "depth.png"),
             "--depth-format", "mm", "--out", str(out)]
        )  # fmt: skip
        assert code == 2 and not out.exists() and not (tmp_path / "completed_preview.png").exists()
    assert "no depth decoder" in capsys.readouterr().err
    code = main(
        ["complete", "--model", str(folders["pretraining"]), "--rgb", str(tmp_path / "rgb.png"), "--depth",
         str(tmp_path / "depth.png"), "--depth-format", "mm", "--out", str(out), "--keep-measured"]
    )  # fmt: skip
    assert code == 0 and out.is_file() and (tmp_path / "completed_preview.png").is_file()
    # A second run does not replace the first one's files unless asked to.
    before = out.read_bytes()
    again = ["complete", "--model", str(folders["depth_head"]), "--rgb", str(tmp_path / "rgb.png"), "--depth",
             str(tmp_path / "depth.png"), "--depth-format", "mm", "--out", str(out)]  # fmt: skip
    assert main(again) == 2 and out.read_bytes() == before
    assert "already exists" in capsys.readouterr().err
    assert main([*again, "--overwrite"]) == 0 and out.read_bytes() != before


def test_evaluate_completion_refuses_an_encoder_and_scores_a_pretraining_folder(folders, tmp_path, capsys):
    from vanishing_depth.cli import main

    refused = tmp_path / "refused"
    args = ["--dataset", "redwood_demo", "--split", "test", "--max-samples", "1", "--patterns", "uniform:150",
            "--image-size", "56"]  # fmt: skip
    assert main(["evaluate-completion", "--model", str(folders["encoder"]), "--output-dir", str(refused), *args]) == 2
    assert not refused.exists()
    assert "no depth decoder" in capsys.readouterr().err
    scored = tmp_path / "scored"
    assert (
        main(["evaluate-completion", "--model", str(folders["pretraining"]), "--output-dir", str(scored), *args]) == 0
    )
    metrics = json.loads((scored / "completion_metrics.json").read_text())["metrics"]
    assert np.isfinite(metrics["uniform:150"]["rmse_mm"])


def test_completion_sweep_scores_a_tof_on_the_pixels_it_only_interpolates(folders):
    from vanishing_depth.data import load_demo_corpus
    from vanishing_depth.evaluation import evaluate_completion, model_predictor

    frames = load_demo_corpus("test").select([0])
    model = VanishingDepthForPretraining.from_pretrained(folders["pretraining"])
    result = evaluate_completion(
        model, frames, VanishingDepthImageProcessor(size={"shortest_edge": 56}), patterns=["tof:8", "fraction:0.1"],
        predictors={"keep": model_predictor(model, keep_measured=True)}, print_table=False, min_depth_m=1e-3,
    )  # fmt: skip
    tof, fraction = result.metrics["tof:8"], result.metrics["fraction:0.1"]
    # The upsampled ToF map covers every pixel, but only about 1/64 of them carry their own depth: the others count
    # as removed, so the removed-pixel score exists and is not the all-pixel score.
    assert np.isfinite(tof["removed_rmse_m"]) and tof["removed_rmse_m"] > 0 and tof["removed_rmse_m"] != tof["rmse_m"]
    assert np.isfinite(fraction["removed_rmse_m"])
    # keep_measured keeps every input pixel, so with a ToF it returns the upsampled map: off on the removed pixels.
    assert result.methods["keep"]["tof:8"]["removed_rmse_m"] > 0


def test_model_card_refuses_a_folder_without_its_head_weights(folders):
    from vanishing_depth.hub import build_model_card

    with pytest.raises(ValueError, match=r"nothing for \['depth_head'\]"):
        build_model_card(folders["headless"])
    assert "depth-estimation" in str(build_model_card(folders["depth_head"]))


def test_complete_command_over_folders_is_batched_and_resumes_without_redoing_frames(folders, tmp_path, capsys):
    from vanishing_depth.cli import main
    from vanishing_depth.data import load_depth, save_depth

    rgb_dir, depth_dir, first_dir = tmp_path / "rgb", tmp_path / "depth", tmp_path / "first_three"
    for folder in (rgb_dir, depth_dir, first_dir / "rgb", first_dir / "depth"):
        folder.mkdir(parents=True)
    for index in range(5):
        image, depth = _image(48, 64, seed=index), _sparse_depth_m(48, 64, seed=10 + index)
        for root in (tmp_path, first_dir) if index < 3 else (tmp_path,):
            image.save(root / "rgb" / f"{index:05d}.png")
            save_depth(root / "depth" / f"{index:05d}.png", depth, "mm")
    out = tmp_path / "completed"
    command = ["complete", "--model", str(folders["pretraining"]), "--depth-format", "mm", "--output-dir", str(out),
               "--batch-size", "2", "--pointcloud", "--intrinsics", "50", "50", "31.5", "23.5"]  # fmt: skip
    # An interrupted run: only the first three frames were done.
    assert main([*command, "--rgb-dir", str(first_dir / "rgb"), "--depth-dir", str(first_dir / "depth")]) == 0
    assert "3 frame(s) completed, 0 skipped" in capsys.readouterr().out
    before = {path.name: path.stat().st_mtime_ns for path in out.rglob("*.p*")}
    assert len(before) == 6
    assert main([*command, "--rgb-dir", str(rgb_dir), "--depth-dir", str(depth_dir)]) == 0
    assert "2 frame(s) completed, 3 skipped" in capsys.readouterr().out
    assert {name: (out / ("depth" if name.endswith(".png") else "pointcloud") / name).stat().st_mtime_ns
            for name in before} == before  # fmt: skip
    assert sorted(p.name for p in (out / "depth").iterdir()) == [f"{i:05d}.png" for i in range(5)]
    # Batched completion gives what one frame at a time gives.
    single = tmp_path / "single.png"
    assert main(["complete", "--model", str(folders["pretraining"]), "--rgb", str(rgb_dir / "00004.png"), "--depth",
                 str(depth_dir / "00004.png"), "--depth-format", "mm", "--out", str(single)]) == 0  # fmt: skip
    batched = load_depth(out / "depth" / "00004.png", format="mm")
    assert np.abs(batched - load_depth(single, format="mm")).max() <= 0.0011
    # The unit rules hold here too: millimetres given as float metres are refused, naming the unit.
    np.save(depth_dir / "00005.npy", _sparse_depth_m(48, 64) * 1000.0)
    _image(48, 64).save(rgb_dir / "00005.png")
    (depth_dir / "00005.png").unlink(missing_ok=True)
    for index in range(5):
        (depth_dir / f"{index:05d}.png").rename(depth_dir / f"{index:05d}.keep")
        (rgb_dir / f"{index:05d}.png").rename(rgb_dir / f"{index:05d}.keep")
    capsys.readouterr()
    assert main([*command, "--rgb-dir", str(rgb_dir), "--depth-dir", str(depth_dir), "--depth-format", "float"]) == 2
    assert "millimetres" in capsys.readouterr().err and not (out / "depth" / "00005.png").exists()
