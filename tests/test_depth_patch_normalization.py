"""`depth_patch_normalization="valid_mean"`: sparse depth reaches the depth patch embedding at the strength of dense
depth (missing pixels 0, measured ones weighted by patch area / measured pixels), the same through the model and a
processor's precomputed encoding, and the authors' `"none"` stays the default."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from vanishing_depth import VanishingDepthConfig, VanishingDepthModel
from vanishing_depth.depth_encoding_vanishing_depth import encode_depth_input, valid_mean_patch_weights
from vanishing_depth.image_processing_vanishing_depth import VanishingDepthImageProcessor


def _sparse_depth() -> torch.Tensor:
    depth = torch.linspace(0.5, 4.0, 28 * 28).reshape(1, 1, 28, 28)
    depth[..., :14, :14] = 0.0  # top-left patch: one measured pixel
    depth[..., 3, 5] = 2.0
    depth[..., 14:, :14] = 0.0  # bottom-left patch: nothing measured
    return depth


def test_weights_fill_each_patch_and_leave_dense_patches_alone():
    weights = valid_mean_patch_weights(_sparse_depth(), 14)
    assert weights[0, 0, 3, 5] == 196.0 and weights[0, 0, :14, :14].sum() == 196.0
    assert torch.all(weights[0, 0, 14:, :14] == 0)  # an empty patch stays empty
    assert torch.all(weights[0, 0, :, 14:] == 1)  # dense patches are untouched
    with pytest.raises(ValueError, match="multiples of the patch size 14"):
        valid_mean_patch_weights(torch.ones(1, 1, 20, 28), 14)


def test_encoding_of_a_dense_map_equals_the_authors_and_sparse_pixels_are_scaled():
    dense = torch.linspace(0.5, 4.0, 28 * 28).reshape(1, 1, 28, 28)
    plain = encode_depth_input(dense, channels=16)
    assert torch.equal(encode_depth_input(dense, channels=16, patch_normalization="valid_mean", patch_size=14), plain)
    sparse = _sparse_depth()
    scaled = encode_depth_input(sparse, channels=16, patch_normalization="valid_mean", patch_size=14)
    reference = encode_depth_input(sparse, channels=16)
    torch.testing.assert_close(scaled[..., 3, 5], 196.0 * reference[..., 3, 5])
    assert torch.all(scaled[..., 14:, :14] == 0)  # missing pixels enter as 0, not as the code of 0 m
    with pytest.raises(ValueError, match="patch_size"):
        encode_depth_input(sparse, patch_normalization="valid_mean")
    with pytest.raises(ValueError, match="patch_normalization"):
        encode_depth_input(sparse, patch_normalization="mean")


def test_model_and_processor_agree_and_the_default_is_the_authors():
    assert VanishingDepthConfig().depth_patch_normalization == "none"
    with pytest.raises(ValueError, match="depth_patch_normalization"):
        tiny_config(depth_patch_normalization="sum")
    config = tiny_config(depth_patch_normalization="valid_mean")
    model = VanishingDepthModel(config).eval()
    processor = VanishingDepthImageProcessor.from_model_config(config, size={"height": 28, "width": 28})
    assert processor.depth_patch_normalization == "valid_mean"
    rgb = (torch.rand(28, 28, 3) * 255).to(torch.uint8).numpy()
    depth = _sparse_depth()[0, 0].numpy()
    metres = processor(images=rgb, depth=depth, return_tensors="pt")
    encoded = processor(images=rgb, depth=depth, do_depth_encoding=True, return_tensors="pt")
    with torch.no_grad():
        a = model(pixel_values=metres["pixel_values"], depth_values=metres["depth_values"]).last_hidden_state
        b = model(pixel_values=encoded["pixel_values"], depth_encoding=encoded["depth_encoding"]).last_hidden_state
    torch.testing.assert_close(a, b)
    # The one measured pixel of the sparse patch moves its patch's input 196x as strongly as in the authors' encoding.
    doubled = metres["depth_values"].clone()
    doubled[..., 3, 5] *= 2.0
    authors = VanishingDepthModel(tiny_config()).eval()
    change = (model.encode_depth(doubled) - model.encode_depth(metres["depth_values"])).abs().sum()
    authors_change = (authors.encode_depth(doubled) - authors.encode_depth(metres["depth_values"])).abs().sum()
    torch.testing.assert_close(change, 196.0 * authors_change)
