"""Numerical conventions a converted authors' checkpoint needs, each checked against a computation written out here.

* `position_interpolation="dinov2"`: upstream DINOv2's (and the authors' copy's) `scale_factor` bicubic resize of the
  position table, against `F.interpolate` called directly; `"transformers"` keeps the RGB stream equal to
  `Dinov2Model`.
* `pde_missing_depth_m` and `pde_float_order="authors"`: the PDE of their datasets/transforms.py written out with
  torch float32 ops (missing depth as 1e-6 m, `((d / d_max) * 2 pi) / T ** e`), followed by the model, the image
  processor's precomputed encoding and the exported graph alike.
* The image processor's precomputed PDE follows `depth_normalization="dynamic"`.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F
from transformers import Dinov2Model, Dinov2WithRegistersConfig, DINOv3ViTConfig, SiglipVisionConfig

from conftest import random_rgbd, tiny_config
from vanishing_depth import VanishingDepthConfig, VanishingDepthImageProcessor, VanishingDepthModel
from vanishing_depth.depth_encoding_vanishing_depth import positional_depth_encoding
from vanishing_depth.streams_vanishing_depth import _traceable_dinov2_grid, dinov2_position_grid

AUTHORS = dict(position_interpolation="dinov2", pde_missing_depth_m=1e-6, pde_float_order="authors")


def _model(seed: int = 0, **overrides) -> VanishingDepthModel:
    torch.manual_seed(seed)
    model = VanishingDepthModel(tiny_config(**overrides)).eval()
    with torch.no_grad():  # a position table far from smooth, so any other resampling rule shows
        for stream in (model.rgb_encoder, model.depth_encoder):
            stream.embeddings.position_embeddings.normal_(0.0, 1.0)
    return model


# ----------------------------------------------------------------------------------------------------------------------
# Position interpolation
# ----------------------------------------------------------------------------------------------------------------------
def _by_hand(table: torch.Tensor, cls_token: torch.Tensor, patches: torch.Tensor, grid_h: int, grid_w: int):
    """CLS + its position row, then the patch tokens + the table resized with a scale factor (offset 0.1)."""
    side = math.isqrt(table.shape[1] - 1)
    grid = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    if (grid_h, grid_w) != (side, side):
        grid = F.interpolate(grid, scale_factor=((grid_h + 0.1) / side, (grid_w + 0.1) / side), mode="bicubic")
    positions = torch.cat((table[:, :1], grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)), dim=1)
    return torch.cat((cls_token.expand(patches.shape[0], -1, -1), patches), dim=1) + positions


@pytest.mark.parametrize("size", [(84, 70), (28, 42), (56, 56), (56, 70)])
def test_dinov2_interpolation_matches_the_scale_factor_rule_by_hand(size):
    model = _model(**AUTHORS)
    embeddings = model.rgb_encoder.embeddings
    rgb = torch.randn(2, 3, *size)
    with torch.no_grad():
        got = model.stream_adapter.embed(model.rgb_encoder, rgb, position_interpolation="dinov2")
        patches = F.conv2d(
            rgb, embeddings.patch_embeddings.projection.weight, embeddings.patch_embeddings.projection.bias, stride=14
        )
        expected = _by_hand(
            embeddings.position_embeddings,
            embeddings.cls_token,
            patches.flatten(2).transpose(1, 2),
            size[0] // 14,
            size[1] // 14,
        )
        transformers_rule = model.stream_adapter.embed(model.rgb_encoder, rgb)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    if size == (56, 56):  # the table's own grid: both rules return it unchanged
        torch.testing.assert_close(got, transformers_rule, rtol=0, atol=1e-5)
    else:  # `size=` and `scale_factor=` sample the table at different points
        assert (got - transformers_rule).abs().max() > 1e-2


def test_traced_form_of_the_dinov2_rule_matches_the_eager_one():
    """Exported graphs run a branch-free form (scale 1 on the table's own grid); equal to float32 ulps."""
    table = torch.randn(1, 16, 8)
    for grid_h, grid_w in [(4, 4), (6, 5), (2, 3), (4, 5), (8, 8)]:
        eager = dinov2_position_grid(table, grid_h, grid_w)
        traced = _traceable_dinov2_grid(table.reshape(4, 4, 8), grid_h, grid_w, 0.1).reshape(1, -1, 8)
        torch.testing.assert_close(traced, eager, rtol=0, atol=1e-5)
    assert torch.equal(_traceable_dinov2_grid(table.reshape(4, 4, 8), 4, 4, 0.1).reshape(1, -1, 8), table)


def test_registers_are_inserted_after_the_cls_token():
    rgb_config = Dinov2WithRegistersConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=56, patch_size=14, num_register_tokens=2
    )
    config = VanishingDepthConfig(
        rgb_config=rgb_config, pde_channels=8, se_reduction=4, position_interpolation="dinov2"
    )
    model = VanishingDepthModel(config).eval()
    rgb = torch.randn(1, 3, 56, 56)
    with torch.no_grad():  # on the table's own grid both rules are the same tokens, registers included
        torch.testing.assert_close(
            model.stream_adapter.embed(model.rgb_encoder, rgb, "dinov2"), model.rgb_encoder.embeddings(rgb)
        )


def test_transformers_rule_keeps_the_rgb_stream_equal_to_dinov2model_and_dinov2_departs_from_it():
    rgb, depth = random_rgbd(height=42, width=70)
    for rule in ("transformers", "dinov2"):
        model = _model(position_interpolation=rule)
        plain = Dinov2Model(model.config.rgb_config).eval()
        plain.load_state_dict(model.rgb_encoder.state_dict())
        with torch.no_grad():
            ours = model(pixel_values=rgb, depth_values=depth).rgb_last_hidden_state
            reference = plain(pixel_values=rgb).last_hidden_state
        assert torch.equal(ours, reference) is (rule == "transformers")


@pytest.mark.parametrize(
    "rgb_config",
    [
        DINOv3ViTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=32,
            patch_size=16,
        ),
        SiglipVisionConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=32,
            patch_size=16,
        ),
    ],
)
def test_dinov2_rule_is_refused_without_a_square_position_table(rgb_config):
    with pytest.raises(ValueError, match="position_interpolation"):
        VanishingDepthConfig(rgb_config=rgb_config, pde_channels=8, se_reduction=4, position_interpolation="dinov2")
    with pytest.raises(ValueError, match="position_interpolation"):
        tiny_config(position_interpolation="bilinear")


# ----------------------------------------------------------------------------------------------------------------------
# Depth encoding conventions
# ----------------------------------------------------------------------------------------------------------------------
def _authors_pde(depth_m: torch.Tensor, channels: int, temperature: float, max_depth: float) -> torch.Tensor:
    """Their PDE, as datasets/transforms.py computes it: zeros -> 1e-6 m, / d_max, * 2 pi, / T ** (2 (i // 2) / C),
    sin of the even channels and cos of the odd ones, interleaved."""
    depth = depth_m[:, 0].clone()
    depth[depth == 0] = 1e-6
    dim_t = torch.arange(channels, dtype=torch.float32)
    dim_t = temperature ** ((2 * torch.div(dim_t, 2, rounding_mode="trunc")) / channels)
    angles = ((depth / max_depth) * (2 * math.pi))[..., None] / dim_t
    encoding = torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)
    return encoding.permute(0, 3, 1, 2)


def test_authors_conventions_reproduce_their_pde_bit_for_bit():
    _, depth = random_rgbd(height=28, width=42, seed=4)
    depth[0, 0, :2, :3] = 14.9  # the fastest pair's angles near their maximum
    expected = _authors_pde(depth, 32, 3e-4, 15.0)
    got = positional_depth_encoding(depth, 32, 3e-4, 15.0, missing_depth_m=1e-6, float_order="authors")
    assert torch.equal(got, expected)
    library = positional_depth_encoding(depth, 32, 3e-4, 15.0)
    assert not torch.equal(library, expected)
    # Missing pixels: (0, 1) everywhere in the library's default, the code of 1 micrometre with theirs.
    missing = depth == 0
    assert torch.equal(library[:, 0::2][missing.expand(-1, 16, -1, -1)], torch.zeros(int(missing.sum()) * 16))
    one_micrometre = positional_depth_encoding(torch.full((1, 1, 1, 1), 1e-6), 32, 3e-4, 15.0, float_order="authors")
    assert torch.equal(got[:, :, missing[0, 0]][0].T[0], one_micrometre.flatten())


def test_model_processor_and_export_follow_the_conventions(tmp_path):
    from vanishing_depth.export import export_model

    model = _model(**AUTHORS, pde_channels=32)
    rgb, depth = random_rgbd(batch=1, height=42, width=70, seed=5)
    with torch.no_grad():
        encoding = model.encode_depth(depth)
        assert torch.equal(encoding, _authors_pde(depth, 32, 3e-4, 15.0))
        from_metres = model(pixel_values=rgb, depth_values=depth)
        from_encoding = model(pixel_values=rgb, depth_encoding=encoding)
    assert torch.equal(from_metres.last_hidden_state, from_encoding.last_hidden_state)

    processor = VanishingDepthImageProcessor.from_model_config(model.config, do_depth_encoding=True, do_resize=False)
    image = (torch.rand(42, 70, 3) * 255).to(torch.uint8).numpy()
    batch = processor(images=image, depth=depth[0, 0].numpy())
    assert torch.equal(batch["depth_encoding"], _authors_pde(depth, 32, 3e-4, 15.0))

    program = torch.export.load(
        str(export_model(model, tmp_path / "vd.pt2", format="torch_export", height=42, width=70).path)
    ).module()
    for height, width in [(42, 70), (56, 56), (70, 42)]:  # another grid, the table's own one, and another
        rgb, depth = random_rgbd(batch=2, height=height, width=width, seed=6)
        with torch.no_grad():
            exported = program(rgb, depth)
            reference = model(pixel_values=rgb, depth_values=depth)
        for got, expected in zip(exported, (*reference.feature_maps, reference.last_hidden_state), strict=True):
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_processor_precomputed_pde_follows_dynamic_normalisation():
    config = tiny_config(rgb_overrides=dict(hidden_size=48, num_attention_heads=2), depth_normalization="dynamic")
    torch.manual_seed(0)
    model = VanishingDepthModel(config).eval()
    processor = VanishingDepthImageProcessor.from_model_config(config, do_depth_encoding=True, do_resize=False)
    assert processor.pde_normalization == "dynamic"
    _, depth = random_rgbd(batch=1, height=56, width=56, seed=7)
    image = (torch.rand(56, 56, 3) * 255).to(torch.uint8).numpy()
    batch = processor(images=image, depth=depth[0, 0].numpy())
    assert torch.equal(batch["depth_scale_m"], depth.amax(dim=(1, 2, 3)))
    assert torch.equal(batch["depth_encoding"], positional_depth_encoding(depth, 16, normalization="dynamic"))
    metres = VanishingDepthImageProcessor.from_model_config(config, do_resize=False)(
        images=image, depth=depth[0, 0].numpy()
    )
    with torch.no_grad():
        encoded = model(**batch).last_hidden_state
        reference = model(**metres).last_hidden_state
    assert torch.equal(encoded, reference)
