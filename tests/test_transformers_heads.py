"""transformers' own heads on the RGB-D backbone: RGB-D `pixel_values`, backbone output forms, loading (tiny configs).

UperNet, Mask2Former and Depth Anything pass only `pixel_values` to their backbone, so the depth rides in channel 3.
"""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoBackbone,
    DepthAnythingConfig,
    DepthAnythingForDepthEstimation,
    Dinov2WithRegistersConfig,
    DPTConfig,
    DPTForDepthEstimation,
    UperNetConfig,
    UperNetForSemanticSegmentation,
)

from conftest import random_rgbd, tiny_config
from vanishing_depth import (
    VanishingDepthBackbone,
    VanishingDepthConfig,
    VanishingDepthModel,
    positional_depth_encoding,
)
from vanishing_depth.configuration_vanishing_depth import block_index, stage_index

HIDDEN = 32  # tiny_config's RGB width: every feature has 2 * HIDDEN channels


def _seeded(cls, config):
    torch.manual_seed(0)
    return cls(config).eval()


@pytest.fixture(scope="module")
def model():
    return _seeded(VanishingDepthModel, tiny_config())


def _assert_outputs_equal(a, b):
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)
    assert torch.equal(a.pooler_output, b.pooler_output)
    assert all(torch.equal(x, y) for x, y in zip(a.feature_maps, b.feature_maps, strict=True))


def _rgbd(rgb, depth):
    return torch.cat((rgb, depth), dim=1)


# ---------------------------------------------------------------------------------------------------------------------
# RGB-D pixel_values
# ---------------------------------------------------------------------------------------------------------------------
def test_rgbd_pixel_values_are_bit_identical_to_separate_depth_values(model):
    rgb, depth = random_rgbd(batch=2, height=56, width=70)
    _assert_outputs_equal(model(pixel_values=_rgbd(rgb, depth)), model(pixel_values=rgb, depth_values=depth))
    backbone = _seeded(VanishingDepthBackbone, tiny_config())
    packed = backbone(pixel_values=_rgbd(rgb, depth)).feature_maps
    separate = backbone(pixel_values=rgb, depth_values=depth).feature_maps
    assert all(torch.equal(x, y) for x, y in zip(packed, separate, strict=True))
    # The split happens in forward_streams, the seam every head and the pretraining decoder use.
    streams = model.forward_streams(_rgbd(rgb, depth))
    reference = model.forward_streams(rgb, depth)
    assert all(torch.equal(streams.depth_post_fusion[k], v) for k, v in reference.depth_post_fusion.items())


def test_rgbd_pixel_values_with_a_precomputed_pde(model):
    rgb, depth = random_rgbd()
    config = model.config
    encoding = positional_depth_encoding(
        depth, channels=config.pde_channels, temperature=config.pde_temperature, max_depth=config.max_depth
    )
    assert encoding.shape[1] == config.depth_input_channels == 16
    _assert_outputs_equal(model(pixel_values=_rgbd(rgb, encoding)), model(pixel_values=rgb, depth_encoding=encoding))


def test_three_channel_pixel_values_mean_rgb_only(model):
    rgb, depth = random_rgbd()
    rgb_only = model(pixel_values=rgb)
    _assert_outputs_equal(rgb_only, model(pixel_values=rgb, depth_values=None))
    _assert_outputs_equal(rgb_only, model(pixel_values=_rgbd(rgb, torch.zeros_like(depth))))
    assert not torch.equal(rgb_only.last_hidden_state, model(pixel_values=_rgbd(rgb, depth)).last_hidden_state)


def test_rgbd_pixel_values_errors_name_the_forms_and_arguments(model):
    rgb, depth = random_rgbd()
    with pytest.raises(
        ValueError, match=r"\(B, 4, H, W\) RGB \+ depth in metres.*\(B, 19, H, W\).*got \(2, 5, 56, 56\)"
    ):
        model(pixel_values=torch.cat((rgb, depth, depth), dim=1))
    with pytest.raises(ValueError, match=r"twice.*`pixel_values`.*`depth_values`"):
        model(pixel_values=_rgbd(rgb, depth), depth_values=depth)
    with pytest.raises(ValueError, match=r"twice.*`pixel_values`.*`depth_encoding`"):
        model(pixel_values=_rgbd(rgb, depth), depth_encoding=torch.zeros(2, 16, 56, 56))
    with pytest.raises(ValueError, match=r"`pixel_values` channel 3 \(depth in metres\) must be finite and >= 0"):
        model(pixel_values=_rgbd(rgb, depth - 1.0))
    with pytest.raises(ValueError, match=r"`pixel_values` channel 3 .*NaN"):
        model(pixel_values=_rgbd(rgb, torch.full_like(depth, float("inf"))))


def test_resized_sizes_is_accepted_and_ignored(model):
    rgb, depth = random_rgbd()
    sizes = torch.tensor([[56, 50], [40, 56]])
    _assert_outputs_equal(
        model(pixel_values=rgb, depth_values=depth, resized_sizes=sizes), model(pixel_values=rgb, depth_values=depth)
    )
    backbone = _seeded(VanishingDepthBackbone, tiny_config())
    a = backbone(pixel_values=_rgbd(rgb, depth), resized_sizes=sizes).feature_maps
    assert all(torch.equal(x, y) for x, y in zip(a, backbone(pixel_values=_rgbd(rgb, depth)).feature_maps))


# ---------------------------------------------------------------------------------------------------------------------
# Backbone output forms
# ---------------------------------------------------------------------------------------------------------------------
def test_backbone_channels_are_rgb_plus_depth():
    backbone = AutoBackbone.from_config(tiny_config(out_indices=[1, 3]))
    assert isinstance(backbone, VanishingDepthBackbone)
    assert backbone.channels == [2 * HIDDEN] * 2


def test_one_layer_numbering_block_indices_with_stages_derived(model):
    """0-based block indices everywhere; `out_indices` is transformers' stage numbering, derived (stage = block + 1)."""
    config = tiny_config(fusion_layers=[1, 3])
    assert config.out_indices == [stage_index(block) for block in config.fusion_layers] == [2, 4]
    assert config.backbone_blocks == [block_index(stage) for stage in config.out_indices] == [1, 3]
    backbone = _seeded(VanishingDepthBackbone, config)
    encoder = backbone.vanishing_depth
    rgb, depth = random_rgbd(batch=1, height=28, width=28)
    backbone.out_indices = [1, 3]  # stages 1 and 3 = blocks 0 and 2
    from_backbone = backbone(pixel_values=rgb, depth_values=depth).feature_maps
    from_encoder = encoder(pixel_values=rgb, depth_values=depth, feature_layers=[0, 2]).feature_maps
    assert all(torch.equal(a, b) for a, b in zip(from_backbone, from_encoder, strict=True))
    backbone.out_indices = [0, 2]
    with pytest.raises(ValueError, match="stage 0"):
        backbone(pixel_values=rgb, depth_values=depth)


def test_token_sequences_drop_registers_and_match_the_maps():
    rgb_config = Dinov2WithRegistersConfig(
        hidden_size=HIDDEN,
        num_hidden_layers=4,
        num_attention_heads=2,
        image_size=56,
        patch_size=14,
        num_register_tokens=2,
    )
    maps_backbone = _seeded(VanishingDepthBackbone, tiny_config(rgb_config=rgb_config))
    token_backbone = VanishingDepthBackbone(tiny_config(rgb_config=rgb_config, reshape_hidden_states=False)).eval()
    token_backbone.load_state_dict(maps_backbone.state_dict())
    rgb, depth = random_rgbd(batch=2, height=56, width=70)
    maps = maps_backbone(pixel_values=_rgbd(rgb, depth)).feature_maps
    tokens = token_backbone(pixel_values=_rgbd(rgb, depth)).feature_maps
    assert [tuple(t.shape) for t in tokens] == [(2, 1 + 4 * 5, 2 * HIDDEN)] * 4
    encoder = token_backbone.vanishing_depth
    streams = encoder.forward_streams(rgb, depth)
    for layer, (token_seq, feature_map) in enumerate(zip(tokens, maps)):
        # Patch tokens = the 4-D map's pixels, row-major (what Depth Anything's neck reshapes).
        assert torch.equal(token_seq[:, 1:].unflatten(1, (4, 5)).permute(0, 3, 1, 2), feature_map)
        # CLS first: RGB CLS then depth CLS, layer-normed like the maps.
        rgb_cls = encoder.rgb_encoder.layernorm(streams.rgb[layer])[:, 0]
        depth_cls = encoder.depth_encoder.layernorm(streams.depth_post_fusion[layer])[:, 0]
        assert torch.equal(token_seq[:, 0], torch.cat((rgb_cls, depth_cls), dim=-1))


def test_multiscale_feature_strides():
    base = _seeded(VanishingDepthBackbone, tiny_config())
    pyramid = VanishingDepthBackbone(tiny_config(backbone_feature_strides=[4, 8, 16, 32])).eval()
    pyramid.load_state_dict(base.state_dict())
    rgb, depth = random_rgbd(batch=1, height=56, width=70)
    maps = base(pixel_values=_rgbd(rgb, depth)).feature_maps
    resized = pyramid(pixel_values=_rgbd(rgb, depth)).feature_maps
    assert [tuple(f.shape[-2:]) for f in resized] == [(14, 18), (7, 9), (4, 5), (2, 3)]  # ceil(H / s), ceil(W / s)
    for original, scaled in zip(maps, resized):
        expected = torch.nn.functional.interpolate(
            original, size=scaled.shape[-2:], mode="bilinear", align_corners=False
        )
        assert scaled.shape[1] == 2 * HIDDEN and torch.equal(scaled, expected)
    assert torch.equal(resized[2], maps[2])  # stride 16 of a 56x70 input is the 4x5 patch grid: untouched


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(backbone_feature_strides=[4, 8, 16]),  # one per out_index (4)
        dict(backbone_feature_strides=[4, 8, 0, 32]),
        dict(backbone_feature_strides=[4, 8, 16, 32], reshape_hidden_states=False),
        dict(backbone_feature_strides=[4, 8], out_indices=[1, 2, 3]),
    ],
)
def test_backbone_feature_strides_are_validated(kwargs):
    with pytest.raises(ValueError, match="backbone_feature_strides"):
        tiny_config(**kwargs)


def test_backbone_fields_validated_again_after_out_indices_change():
    backbone = VanishingDepthBackbone(tiny_config(backbone_feature_strides=[4, 8, 16, 32])).eval()
    backbone.out_indices = [2, 4]
    rgb, depth = random_rgbd(batch=1)
    with pytest.raises(ValueError, match="backbone_feature_strides"):
        backbone(pixel_values=_rgbd(rgb, depth))


def test_backbone_fields_round_trip(tmp_path):
    config = tiny_config(out_indices=[2, 4], backbone_feature_strides=[8, 16])
    config.save_pretrained(tmp_path)
    loaded = VanishingDepthConfig.from_pretrained(tmp_path)
    assert loaded.backbone_feature_strides == [8, 16] and loaded.reshape_hidden_states is True
    assert tiny_config(reshape_hidden_states=False).reshape_hidden_states is False


# ---------------------------------------------------------------------------------------------------------------------
# transformers' own heads
# ---------------------------------------------------------------------------------------------------------------------
def _assert_depth_reaches_the_head(head, output_name, expected_shape):
    rgb, depth = random_rgbd(batch=1, height=56, width=56)
    with torch.no_grad():
        first = getattr(head(pixel_values=_rgbd(rgb, depth)), output_name)
        again = getattr(head(pixel_values=_rgbd(rgb, depth)), output_name)
        other = getattr(head(pixel_values=_rgbd(rgb, torch.flip(depth, dims=(-1,)))), output_name)
    assert tuple(first.shape) == expected_shape
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_upernet_receives_depth():
    config = UperNetConfig(
        backbone_config=tiny_config(out_indices=[1, 2, 3, 4]),
        num_labels=5,
        hidden_size=16,
        pool_scales=[1, 2],
        use_auxiliary_head=True,
        auxiliary_in_channels=2 * HIDDEN,
        auxiliary_channels=16,
    )
    head = _seeded(UperNetForSemanticSegmentation, config)
    assert head.backbone.channels == [2 * HIDDEN] * 4
    _assert_depth_reaches_the_head(head, "logits", (1, 5, 56, 56))


def test_mask2former_receives_depth():
    pytest.importorskip("scipy", reason="Mask2Former's loss (built in __init__) needs scipy")
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

    config = Mask2FormerConfig(
        backbone_config=tiny_config(out_indices=[1, 2, 3, 4], backbone_feature_strides=[4, 8, 16, 32]),
        num_labels=5,
        feature_size=32,  # GroupNorm(32, ...) in the pixel decoder
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=64,
        dim_feedforward=64,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        num_queries=4,
    )
    head = _seeded(Mask2FormerForUniversalSegmentation, config)
    _assert_depth_reaches_the_head(head, "masks_queries_logits", (1, 4, 14, 14))  # stride 4, like Swin
    _assert_depth_reaches_the_head(head, "class_queries_logits", (1, 4, 6))


def test_depth_anything_receives_depth():
    config = DepthAnythingConfig(
        backbone_config=tiny_config(out_indices=[1, 2, 3, 4], reshape_hidden_states=False),
        reassemble_hidden_size=2 * HIDDEN,
        neck_hidden_sizes=[8, 16, 32, 64],
        fusion_hidden_size=16,
        head_hidden_size=8,
        depth_estimation_type="metric",
        max_depth=15,
        initializer_range=0.1,  # at the default 0.02 the tiny random neck + head output a constant sigmoid(0) * 15 m
    )
    head = _seeded(DepthAnythingForDepthEstimation, config)
    _assert_depth_reaches_the_head(head, "predicted_depth", (1, 56, 56))


def test_dpt_neck_does_not_fit_the_rgbd_width():
    # DPT sizes its reassemble projections from backbone_config.hidden_size (the RGB width), while the backbone returns
    # RGB + depth (2x wider); there is no config seam to change that. Depth Anything is the working DPT-style head.
    config = DPTConfig(
        backbone_config=tiny_config(out_indices=[1, 2, 3, 4], reshape_hidden_states=False),
        is_hybrid=False,
        neck_hidden_sizes=[8, 16, 32, 64],
        fusion_hidden_size=16,
        head_hidden_size=8,
    )
    head = _seeded(DPTForDepthEstimation, config)
    rgb, depth = random_rgbd(batch=1)
    with pytest.raises(RuntimeError):
        head(pixel_values=_rgbd(rgb, depth))


# ---------------------------------------------------------------------------------------------------------------------
# Loading trained weights into the backbone
# ---------------------------------------------------------------------------------------------------------------------
def _assert_same_features(backbone, encoder):
    rgb, depth = random_rgbd()
    expected = encoder(pixel_values=rgb, depth_values=depth).feature_maps
    got = backbone(pixel_values=_rgbd(rgb, depth)).feature_maps
    assert all(torch.equal(x, y) for x, y in zip(got, expected, strict=True))


def test_backbone_from_pretrained_loads_a_saved_encoder_and_a_saved_backbone(model, tmp_path):
    model.save_pretrained(tmp_path / "encoder")
    backbone, info = VanishingDepthBackbone.from_pretrained(tmp_path / "encoder", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert not backbone.training and all(not p.requires_grad for p in backbone.vanishing_depth.rgb_encoder.parameters())
    _assert_same_features(backbone, model)

    backbone.save_pretrained(tmp_path / "backbone")
    again = VanishingDepthBackbone.from_pretrained(tmp_path / "backbone")
    _assert_same_features(again, model)
    encoder = VanishingDepthModel.from_pretrained(tmp_path / "backbone")  # and back: the prefix is stripped
    _assert_same_features(backbone, encoder)


def test_auto_backbone_from_pretrained_local_folder(model, tmp_path):
    # transformers 5.25's AutoBackbone.from_pretrained asks the Hub whether the path is a repository before loading,
    # which rejects an absolute local path; VanishingDepthBackbone.from_pretrained is the documented call. Should a
    # later transformers load it, the weights must be the real ones.
    from huggingface_hub.errors import HFValidationError

    model.save_pretrained(tmp_path)
    try:
        backbone = AutoBackbone.from_pretrained(str(tmp_path.resolve()))
    except HFValidationError:
        return
    assert isinstance(backbone, VanishingDepthBackbone)
    _assert_same_features(backbone.eval(), model)
