"""VanishingDepthImageProcessor: RGB + metric depth -> model inputs, on synthetic maps and the real frames."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor

import vanishing_depth  # noqa: F401
from conftest import shared_data_dir, tiny_config
from vanishing_depth import VanishingDepthImageProcessor, VanishingDepthModel, positional_depth_encoding
from vanishing_depth.data import load_depth


def _rgb(height=120, width=160, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _depth(height=120, width=160, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 8.0, (height, width)).astype(np.float32)
    depth[rng.random((height, width)) < 0.2] = 0
    return depth


def test_output_shapes_multiple_of_14_and_normalisation():
    processor = VanishingDepthImageProcessor(size={"shortest_edge": 112})
    out = processor(images=_rgb(), depth=_depth(), return_tensors="pt")
    assert out["pixel_values"].shape == (1, 3, 112, 154)  # 160x120 -> 149x112, padded to 154
    assert out["depth_values"].shape == (1, 1, 112, 154) and out["depth_values"].dtype == torch.float32
    assert out["resized_sizes"].tolist() == [[112, 149]]
    assert torch.all(out["depth_values"][..., 149:] == 0)  # padding is missing depth
    white = processor(images=Image.new("RGB", (28, 28), (255, 255, 255)))["pixel_values"]
    expected = (1.0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(white[0, :, 5, 5], expected, atol=1e-4, rtol=1e-4)


def test_resize_mode_gives_multiples_without_padding():
    processor = VanishingDepthImageProcessor(size={"shortest_edge": 112}, ensure_multiple_of="resize")
    out = processor(images=_rgb(), depth=_depth())
    assert out["pixel_values"].shape == (1, 3, 112, 154) and out["resized_sizes"].tolist() == [[112, 154]]


def test_nearest_resize_keeps_only_input_values():
    depth = _depth(seed=1)
    processor = VanishingDepthImageProcessor(size={"shortest_edge": 70})
    out = processor(images=_rgb(), depth=depth)["depth_values"]
    assert set(np.unique(out.numpy())) <= set(np.unique(depth)) | {0.0}


def test_save_and_load_through_auto_image_processor(tmp_path):
    processor = VanishingDepthImageProcessor.from_model_config(
        tiny_config(), size={"shortest_edge": 56}, depth_scale=0.001
    )
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").is_file()
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, VanishingDepthImageProcessor)
    assert loaded.to_dict() == processor.to_dict()
    depth_mm = (np.arange(120 * 160).reshape(120, 160) % 5000).astype(np.uint16)
    a = processor(images=_rgb(), depth=depth_mm)
    b = loaded(images=_rgb(), depth=depth_mm)
    assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["depth_values"], b["depth_values"])


def test_integer_depth_needs_depth_scale_and_8bit_is_refused():
    processor = VanishingDepthImageProcessor()
    with pytest.raises(ValueError, match="depth_scale"):
        processor(images=_rgb(), depth=np.ones((120, 160), dtype=np.uint16))
    with pytest.raises(ValueError, match="16 or 32 bits"):
        processor(images=_rgb(), depth=np.ones((120, 160), dtype=np.uint8))
    with pytest.raises(ValueError, match="16 or 32 bits"):
        processor(images=_rgb(), depth=Image.new("L", (160, 120)))
    with pytest.raises(ValueError, match="colour"):
        processor(images=_rgb(), depth=Image.new("RGB", (160, 120)))
    out = processor(images=_rgb(), depth=np.full((120, 160), 2500, dtype=np.uint16), depth_scale=0.001)
    assert torch.allclose(out["depth_values"][..., :10, :10], torch.tensor(2.5))


def test_negative_nan_and_count_errors():
    processor = VanishingDepthImageProcessor()
    with pytest.raises(ValueError, match="negative"):
        processor(images=_rgb(), depth=-_depth())
    bad = _depth()
    bad[0, 0] = np.nan
    bad[0, 1] = np.inf
    with pytest.warns(RuntimeWarning, match="NaN/inf"):
        out = processor(images=_rgb(), depth=bad, return_tensors="pt")
    assert torch.isfinite(out["depth_values"]).all()
    with pytest.raises(ValueError, match="one map per image"):
        processor(images=[_rgb(), _rgb()], depth=[_depth()])
    with pytest.raises(ValueError, match="far_depth"):
        VanishingDepthImageProcessor(far_depth="clip")


def test_far_depth_drop_and_rescale_are_logged(caplog):
    depth = _depth()
    depth[:10] = 30.0
    drop = VanishingDepthImageProcessor(size={"shortest_edge": 120}, max_valid_depth=15.0, far_depth="drop")
    with caplog.at_level(logging.INFO):
        out = drop(images=_rgb(), depth=depth)["depth_values"]
    assert out.max() <= 15.0 and "beyond max_valid_depth" in caplog.text
    rescale = VanishingDepthImageProcessor(size={"shortest_edge": 120}, max_valid_depth=15.0, far_depth="rescale")
    out = rescale(images=_rgb(), depth=depth)["depth_values"]
    assert out.max().item() == pytest.approx(0.95 * 15.0, rel=1e-5)


def test_depth_none_gives_all_missing_map_and_the_model_runs():
    processor = VanishingDepthImageProcessor(size={"shortest_edge": 56})
    out = processor(images=[_rgb(), _rgb(seed=1)])
    assert torch.all(out["depth_values"] == 0)
    model = VanishingDepthModel(tiny_config()).eval()
    features = model(**out).feature_maps
    assert features[0].shape[0] == 2


def test_depth_encoding_output_matches_the_model_function():
    config = tiny_config()
    processor = VanishingDepthImageProcessor.from_model_config(
        config, size={"shortest_edge": 56}, do_depth_encoding=True
    )
    out = processor(images=_rgb(), depth=_depth())
    assert "depth_encoding" in out and out["depth_encoding"].shape[1] == config.pde_channels
    metres = processor(images=_rgb(), depth=_depth(), do_depth_encoding=False)["depth_values"]
    expected = positional_depth_encoding(metres, channels=config.pde_channels, temperature=config.pde_temperature)
    torch.testing.assert_close(out["depth_encoding"], expected)
    model = VanishingDepthModel(config).eval()
    torch.testing.assert_close(
        model(pixel_values=out["pixel_values"], depth_encoding=out["depth_encoding"]).last_hidden_state,
        model(pixel_values=out["pixel_values"], depth_values=metres).last_hidden_state,
    )


def test_batch_of_different_sizes_pads_and_post_processing_undoes_it():
    processor = VanishingDepthImageProcessor(size={"shortest_edge": 56})
    images = [_rgb(120, 160), _rgb(160, 120, seed=1)]
    out = processor(images=images, depth=[_depth(120, 160), _depth(160, 120, seed=1)])
    assert out["pixel_values"].shape == (2, 3, 84, 84)
    assert out["resized_sizes"].tolist() == [[56, 75], [75, 56]]
    # A "prediction" equal to the processed depth must map back onto each original grid.
    predicted = out["depth_values"][:, 0]
    results = processor.post_process_depth_estimation(
        {"predicted_depth": predicted}, target_sizes=[(120, 160), (160, 120)], resized_sizes=out["resized_sizes"]
    )
    assert results[0]["predicted_depth"].shape == (120, 160) and results[1]["predicted_depth"].shape == (160, 120)
    logits = torch.zeros(2, 3, 84, 84)
    logits[0, 2, :56, :75] = 1.0  # class 2 over the content, nothing in the padding
    labels = processor.post_process_semantic_segmentation(
        {"logits": logits}, [(120, 160), (160, 120)], out["resized_sizes"]
    )
    assert labels[0].shape == (120, 160) and torch.all(labels[0] == 2)


def test_segmentation_maps_reduce_labels_and_padding():
    processor = VanishingDepthImageProcessor(size={"shortest_edge": 56}, do_reduce_labels=True)
    label = np.zeros((120, 160), dtype=np.int64)
    label[:, 80:] = 5
    out = processor(images=_rgb(), depth=_depth(), segmentation_maps=label)
    labels = out["labels"][0]
    assert set(labels.unique().tolist()) == {4, 255}  # 0 -> ignored, 5 -> 4, padding -> 255
    assert torch.all(labels[:, 75:] == 255)


@pytest.mark.skipif(shared_data_dir() is None, reason="the real frames in ../shared/data are not available")
def test_arkit_low_res_depth_lands_on_the_photo_grid():
    data = shared_data_dir() / "promptda_arkit"
    rgb = Image.open(data / "image.jpg")
    depth = load_depth(data / "arkit_depth.png", format="mm")
    assert rgb.size == (1920, 1440) and depth.shape == (192, 256)
    processor = VanishingDepthImageProcessor(size={"shortest_edge": 192})
    out = processor(images=rgb, depth=depth)
    assert out["resized_sizes"].tolist() == [[192, 256]]
    on_grid = out["depth_values"][0, 0, :192, :256].numpy()
    # 256x192 -> 256x192: the sensor map lands pixel for pixel; a 4:3 map beside a 4:3 photo needs no stretch.
    np.testing.assert_array_equal(on_grid, depth)
    assert 1.5 <= on_grid[on_grid > 0].min() and on_grid.max() <= 3.6
    smaller = VanishingDepthImageProcessor(size={"shortest_edge": 98})(images=rgb, depth=depth)["depth_values"]
    assert set(np.unique(smaller.numpy())) <= set(np.unique(depth)) | {0.0}


@pytest.mark.skipif(shared_data_dir() is None, reason="the real frames in ../shared/data are not available")
def test_real_nyu_frame_through_processor_and_model():
    data = shared_data_dir() / "metric3d_nyu_demo"
    rgb = Image.open(data / "rgb" / "rgb_00000.jpg")
    depth = load_depth(data / "depth" / "sync_depth_00000.png", format="mm")
    processor = VanishingDepthImageProcessor(size={"shortest_edge": 56})
    out = processor(images=rgb, depth=depth)
    valid = out["depth_values"][out["depth_values"] > 0]
    assert 0.3 < valid.min() and valid.max() < 10.0
    model = VanishingDepthModel(tiny_config()).eval()
    assert torch.isfinite(model(**out).feature_maps[-1]).all()
