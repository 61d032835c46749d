"""The core encoder: config, PDE, fusion, freezing, save/load, remote code, export (tiny configs)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoBackbone, AutoConfig, AutoModel, Dinov2Model, Dinov2WithRegistersConfig

import vanishing_depth
from conftest import random_rgbd, tiny_config, tiny_rgb_config
from vanishing_depth import (
    VanishingDepthBackbone,
    VanishingDepthConfig,
    VanishingDepthModel,
    default_fusion_layers,
    depth_scale_cls_code,
    positional_depth_encoding,
)
from vanishing_depth.modeling_vanishing_depth import VanishingDepthPatchProjection


# ---------------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------------
def test_default_config_is_vit_b_with_paper_fusion_layers():
    config = VanishingDepthConfig()
    assert config.hidden_size == 768 and config.num_hidden_layers == 12
    assert config.fusion_layers == [2, 5, 8, 11]
    assert (config.pde_channels, config.pde_temperature, config.max_depth) == (32, 3e-4, 15.0)
    assert config.out_indices == [3, 6, 9, 12]


def test_default_fusion_layers_for_deeper_models():
    assert default_fusion_layers(12) == [2, 5, 8, 11]
    assert default_fusion_layers(24) == [5, 11, 17, 23]
    assert default_fusion_layers(40) == [9, 19, 29, 39]


def test_config_round_trip(tmp_path):
    config = tiny_config(fusion_layers=[1, 3], depth_normalization="dynamic", fuse_cls_token=True)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, VanishingDepthConfig)
    assert loaded.fusion_layers == [1, 3] and loaded.depth_normalization == "dynamic" and loaded.fuse_cls_token
    assert loaded.rgb_config.hidden_size == 32 and loaded.rgb_config.model_type == "dinov2"
    assert loaded.to_diff_dict() == config.to_diff_dict()


def test_config_with_registers_round_trip(tmp_path):
    rgb = Dinov2WithRegistersConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=56)
    config = VanishingDepthConfig(rgb_config=rgb, pde_channels=8, se_reduction=4)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert loaded.rgb_config.model_type == "dinov2_with_registers" and loaded.num_register_tokens == 4


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"fusion_layers": [1, 4]}, "fusion_layers"),
        ({"fusion_layers": [-1]}, "fusion_layers"),
        ({"fusion_layers": [2, 1]}, "fusion_layers"),
        ({"fusion_layers": []}, "fusion_layers"),
        ({"pde_channels": 15}, "pde_channels"),
        ({"pde_channels": 0}, "pde_channels"),
        ({"depth_normalization": "local"}, "depth_normalization"),
        ({"depth_encoding": "xyz"}, "depth_encoding"),
        ({"feature_source": "middle"}, "feature_source"),
        ({"max_depth": -1.0}, "max_depth"),
        ({"pde_temperature": 0.0}, "pde_temperature"),
        ({"se_reduction": 0}, "se_reduction"),
        ({"depth_encoding": "normalized", "depth_normalization": "dynamic"}, "depth_normalization"),
    ],
)
def test_config_rejects_invalid_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        tiny_config(**kwargs)


def test_config_rejects_indivisible_heads_and_foreign_backbones():
    with pytest.raises(ValueError, match="num_attention_heads"):
        tiny_config(rgb_overrides={"hidden_size": 64, "num_attention_heads": 3})
    with pytest.raises(ValueError, match="rgb_config"):
        VanishingDepthConfig(rgb_config={"model_type": "vit", "hidden_size": 32})


# ---------------------------------------------------------------------------------------------------------------------
# Positional depth encoding
# ---------------------------------------------------------------------------------------------------------------------
def test_pde_matches_closed_form_for_hand_picked_depths():
    depths = [0.05, 0.5, 1.0, 3.7, 9.999, 15.0]
    depth = torch.tensor(depths).reshape(1, 1, 1, -1)
    encoding = positional_depth_encoding(depth, channels=32, temperature=3e-4, max_depth=15.0)
    assert encoding.shape == (1, 32, 1, len(depths)) and encoding.dtype == torch.float32
    for column, d in enumerate(depths):
        for k in range(16):
            angle = 2 * math.pi * d / (15.0 * 3e-4 ** (2 * k / 32))
            # float32 angles of up to ~8400 rad carry ~5e-4 rad of rounding: 0.6 micrometres at the 7.5 mm period.
            assert encoding[0, 2 * k, 0, column].item() == pytest.approx(math.sin(angle), abs=1e-3)
            assert encoding[0, 2 * k + 1, 0, column].item() == pytest.approx(math.cos(angle), abs=1e-3)


def test_pde_periods_follow_the_geometric_ladder():
    # METHOD §1.2 table: pair 0 has a 15 m period, pair 15 a 7.5 mm period.
    period_first = 15.0 * 3e-4 ** (0 / 16)
    period_last = 15.0 * 3e-4 ** (15 / 16)
    assert period_first == pytest.approx(15.0) and period_last == pytest.approx(0.0075, rel=0.01)
    depth = torch.tensor([0.0, period_last]).reshape(1, 1, 1, 2)
    encoding = positional_depth_encoding(depth)
    assert torch.allclose(encoding[0, 30:32, 0, 0], encoding[0, 30:32, 0, 1], atol=1e-3)  # one full cycle


def test_pde_missing_depth_code_is_sin0_cos1_in_every_pair():
    encoding = positional_depth_encoding(torch.zeros(2, 1, 3, 3), channels=16)
    assert torch.equal(encoding[:, 0::2], torch.zeros_like(encoding[:, 0::2]))
    assert torch.equal(encoding[:, 1::2], torch.ones_like(encoding[:, 1::2]))


def test_pde_dynamic_normalisation_uses_per_image_max():
    depth = torch.stack([torch.full((1, 2, 2), 2.0), torch.full((1, 2, 2), 8.0)])
    encoding = positional_depth_encoding(depth, normalization="dynamic")
    assert torch.allclose(encoding[0], encoding[1])  # both images are "all at their max"


def test_pde_is_float32_under_bf16_autocast():
    depth = torch.rand(1, 1, 4, 4, dtype=torch.bfloat16) * 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        encoding = positional_depth_encoding(depth)
    assert encoding.dtype == torch.float32
    reference = positional_depth_encoding(depth.float())
    assert torch.equal(encoding, reference)


def test_pde_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="depth_m"):
        positional_depth_encoding(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        positional_depth_encoding(torch.zeros(1, 1, 4, 4), channels=7)


def test_depth_scale_cls_code_writes_digits_around_the_bin_centre():
    hidden = 96
    code = depth_scale_cls_code(torch.tensor([3.456, 12.5]), hidden)
    centre = 2 * hidden // 3 + hidden // 6  # 80
    # 3.456000: units digit 3 left of the centre, then decimals 4 5 6 0 0 0 from the centre.
    assert code[0, centre - 1].item() == pytest.approx(0.4)
    assert code[0, centre - 2].item() == 0.0 and code[0, centre - 3].item() == 0.0
    assert [round(v, 4) for v in code[0, centre : centre + 6].tolist()] == [0.5, 0.6, 0.7, 0.1, 0.1, 0.1]
    # 12.500000: tens digit present.
    assert code[1, centre - 1].item() == pytest.approx(0.3) and code[1, centre - 2].item() == pytest.approx(0.2)
    assert code[:, : 2 * hidden // 3].abs().sum() == 0  # only the last third is used


# ---------------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------------
def test_output_shapes(tiny_model):
    rgb, depth = random_rgbd(batch=2, height=56, width=70)
    out = tiny_model(pixel_values=rgb, depth_values=depth)
    assert len(out.feature_maps) == 4
    assert all(f.shape == (2, 64, 4, 5) for f in out.feature_maps)
    assert out.last_hidden_state.shape == (2, 21, 32)
    assert out.rgb_last_hidden_state.shape == (2, 21, 32)
    assert out.pooler_output.shape == (2, 64)


def test_batch_equals_single_sample(tiny_model):
    # Catches the transformers 4.x habit `layer(x)[0]`, which on 5.x silently takes sample 0 of the batch.
    rgb, depth = random_rgbd(batch=3)
    batched = tiny_model(pixel_values=rgb, depth_values=depth)
    for i in range(3):
        single = tiny_model(pixel_values=rgb[i : i + 1], depth_values=depth[i : i + 1])
        torch.testing.assert_close(single.last_hidden_state, batched.last_hidden_state[i : i + 1], atol=1e-5, rtol=1e-5)
        for a, b in zip(single.feature_maps, batched.feature_maps):
            torch.testing.assert_close(a, b[i : i + 1], atol=1e-5, rtol=1e-5)


def test_rgb_stream_is_bit_identical_to_plain_dinov2(tiny_model):
    plain = Dinov2Model(tiny_model.config.rgb_config).eval()
    plain.load_state_dict(tiny_model.rgb_encoder.state_dict())
    rgb, depth = random_rgbd()
    out = tiny_model(pixel_values=rgb, depth_values=depth)
    assert torch.equal(out.rgb_last_hidden_state, plain(pixel_values=rgb).last_hidden_state)
    # ... and independent of the depth input.
    other = tiny_model(pixel_values=rgb, depth_values=depth * 0.5)
    assert torch.equal(out.rgb_last_hidden_state, other.rgb_last_hidden_state)
    assert not torch.equal(out.last_hidden_state, other.last_hidden_state)


def test_depth_none_runs_rgb_only(tiny_model):
    rgb, _ = random_rgbd()
    out = tiny_model(pixel_values=rgb)
    explicit = tiny_model(pixel_values=rgb, depth_values=torch.zeros(2, 1, 56, 56))
    assert torch.equal(out.last_hidden_state, explicit.last_hidden_state)


def test_precomputed_depth_encoding_equals_metres(tiny_model):
    rgb, depth = random_rgbd()
    config = tiny_model.config
    encoding = positional_depth_encoding(depth, channels=config.pde_channels, temperature=config.pde_temperature)
    a = tiny_model(pixel_values=rgb, depth_values=depth).last_hidden_state
    b = tiny_model(pixel_values=rgb, depth_encoding=encoding).last_hidden_state
    torch.testing.assert_close(a, b)


def test_patch_projection_equals_convolution():
    projection = VanishingDepthPatchProjection(16, 32, kernel_size=14, stride=14)
    conv = torch.nn.Conv2d(16, 32, kernel_size=14, stride=14)
    conv.load_state_dict(projection.state_dict())
    x = torch.randn(2, 16, 42, 56)
    torch.testing.assert_close(projection(x), conv(x), atol=1e-4, rtol=1e-4)


def test_gradients_reach_only_depth_stream_and_fusion():
    model = VanishingDepthModel(tiny_config()).train()
    assert not model.rgb_encoder.training and model.depth_encoder.training  # RGB stays in eval under .train()
    assert all(not p.requires_grad for p in model.rgb_encoder.parameters())
    rgb, depth = random_rgbd()
    out = model(pixel_values=rgb, depth_values=depth)
    (sum(f.square().mean() for f in out.feature_maps) + out.last_hidden_state.mean()).backward()
    assert all(p.grad is None for p in model.rgb_encoder.parameters())
    assert all(p.grad is not None for p in model.fusions.parameters())
    projection = model.depth_encoder.embeddings.patch_embeddings.projection
    assert projection.weight.grad is not None and projection.weight.grad.abs().sum() > 0


def test_unfrozen_rgb_stream_trains_when_configured():
    model = VanishingDepthModel(tiny_config(freeze_rgb_encoder=False)).train()
    assert model.rgb_encoder.training
    rgb, depth = random_rgbd()
    model(pixel_values=rgb, depth_values=depth).feature_maps[-1].mean().backward()
    assert model.rgb_encoder.encoder.layer[0].attention.q_proj.weight.grad is not None


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = VanishingDepthModel(tiny_config()).train()
    rgb, depth = random_rgbd()

    def grads():
        model.zero_grad()
        out = model(pixel_values=rgb, depth_values=depth)
        (out.feature_maps[-1].square().mean() + out.last_hidden_state.mean()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    reference = grads()
    # transformers 5 renamed the switch; both names reach the same mechanism.
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    assert model.depth_encoder.encoder.layer[0].gradient_checkpointing
    checkpointed = grads()
    assert reference.keys() == checkpointed.keys()
    for name in reference:
        torch.testing.assert_close(checkpointed[name], reference[name], atol=1e-6, rtol=1e-5)


def test_eager_and_sdpa_attention_agree():
    torch.manual_seed(0)
    config = tiny_config()
    sdpa = VanishingDepthModel(config).eval()
    eager = VanishingDepthModel.from_pretrained  # noqa: F841 (documented path below)
    config_eager = tiny_config()
    config_eager._attn_implementation = "eager"
    config_eager.rgb_config._attn_implementation = "eager"
    eager_model = VanishingDepthModel(config_eager).eval()
    eager_model.load_state_dict(sdpa.state_dict())
    rgb, depth = random_rgbd()
    torch.testing.assert_close(
        sdpa(pixel_values=rgb, depth_values=depth).last_hidden_state,
        eager_model(pixel_values=rgb, depth_values=depth).last_hidden_state,
        atol=1e-5,
        rtol=1e-4,
    )


def test_bf16_autocast_forward(tiny_model):
    rgb, depth = random_rgbd()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny_model(pixel_values=rgb, depth_values=depth)
    reference = tiny_model(pixel_values=rgb, depth_values=depth)
    assert torch.isfinite(out.feature_maps[-1]).all()
    cosine = torch.nn.functional.cosine_similarity(
        out.feature_maps[-1].float().flatten(), reference.feature_maps[-1].flatten(), dim=0
    )
    assert cosine > 0.99


def test_dynamic_normalisation_puts_max_depth_code_into_cls():
    torch.manual_seed(0)
    model = VanishingDepthModel(tiny_config(depth_normalization="dynamic")).eval()
    rgb, depth = random_rgbd(batch=1)
    near = model(pixel_values=rgb, depth_values=depth, output_hidden_states=True)
    far = model(pixel_values=rgb, depth_values=depth * 2.0, output_hidden_states=True)
    # Per-image normalisation makes the patch tokens scale-invariant; only the CLS code tells metres apart.
    torch.testing.assert_close(near.hidden_states[0][:, 1:], far.hidden_states[0][:, 1:])
    code_difference = far.hidden_states[0][:, 0] - near.hidden_states[0][:, 0]
    max_near, max_far = depth.amax(), (depth * 2).amax()
    expected = depth_scale_cls_code(max_far[None], 32) - depth_scale_cls_code(max_near[None], 32)
    torch.testing.assert_close(code_difference, expected, atol=1e-5, rtol=1e-5)


def test_normalized_baseline_uses_one_channel():
    model = VanishingDepthModel(tiny_config(depth_encoding="normalized")).eval()
    assert model.depth_encoder.embeddings.patch_embeddings.projection.in_channels == 1
    rgb, depth = random_rgbd()
    assert model(pixel_values=rgb, depth_values=depth).feature_maps[0].shape == (2, 64, 4, 4)


def test_pre_fusion_features_differ_from_post_fusion():
    torch.manual_seed(0)
    post = VanishingDepthModel(tiny_config()).eval()
    pre = VanishingDepthModel(tiny_config(feature_source="pre_fusion")).eval()
    pre.load_state_dict(post.state_dict())
    rgb, depth = random_rgbd()
    a, b = post(pixel_values=rgb, depth_values=depth), pre(pixel_values=rgb, depth_values=depth)
    assert torch.equal(a.feature_maps[0][:, :32], b.feature_maps[0][:, :32])  # RGB half identical
    assert not torch.equal(a.feature_maps[0][:, 32:], b.feature_maps[0][:, 32:])


def test_registers_model_runs_and_skips_prefix_tokens_in_fusion():
    rgb_config = Dinov2WithRegistersConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=56, num_register_tokens=2, patch_size=14
    )
    model = VanishingDepthModel(VanishingDepthConfig(rgb_config=rgb_config, pde_channels=8, se_reduction=4)).eval()
    rgb, depth = random_rgbd()
    out = model(pixel_values=rgb, depth_values=depth)
    assert out.last_hidden_state.shape == (2, 1 + 2 + 16, 32)
    assert out.feature_maps[0].shape == (2, 64, 4, 4)


# ---------------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------------
def test_forward_errors_name_the_argument(tiny_model):
    rgb, depth = random_rgbd()
    cases = [
        (dict(pixel_values=rgb[:, :2], depth_values=depth), "pixel_values"),
        (dict(pixel_values=rgb, depth_values=depth.repeat(1, 3, 1, 1)), "depth_values"),
        (dict(pixel_values=rgb, depth_values=depth[..., :42]), "match"),
        (dict(pixel_values=rgb[..., :50], depth_values=depth[..., :50]), "multiples of the patch size"),
        (dict(pixel_values=rgb, depth_values=(depth * 10).to(torch.uint8)), "8-bit"),
        (dict(pixel_values=rgb, depth_values=(depth * 1000).to(torch.int32)), "integer"),
        (dict(pixel_values=rgb, depth_values=depth - 1.0), "negative"),
        (dict(pixel_values=rgb, depth_values=torch.full_like(depth, float("nan"))), "NaN"),
        (dict(pixel_values=rgb, depth_values=depth, depth_encoding=torch.zeros(2, 16, 56, 56)), "not both"),
        (dict(pixel_values=rgb, depth_encoding=torch.zeros(2, 3, 56, 56)), "depth_encoding"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            tiny_model(**kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Save / load / Auto / remote code
# ---------------------------------------------------------------------------------------------------------------------
def test_save_and_load_through_auto_model_is_bit_exact(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, VanishingDepthModel) and not loaded.training
    assert all(not p.requires_grad for p in loaded.rgb_encoder.parameters())
    rgb, depth = random_rgbd()
    a, b = tiny_model(pixel_values=rgb, depth_values=depth), loaded(pixel_values=rgb, depth_values=depth)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)
    assert all(torch.equal(x, y) for x, y in zip(a.feature_maps, b.feature_maps))


def test_auto_backbone_feature_maps(tmp_path):
    config = tiny_config()
    backbone = AutoBackbone.from_config(config)
    assert isinstance(backbone, VanishingDepthBackbone)
    assert backbone.out_features == ["stage1", "stage2", "stage3", "stage4"] and backbone.channels == [64] * 4
    backbone.eval()
    rgb, depth = random_rgbd()
    out = backbone(pixel_values=rgb, depth_values=depth)
    assert len(out.feature_maps) == 4 and out.feature_maps[0].shape == (2, 64, 4, 4)
    two = AutoBackbone.from_config(tiny_config(out_indices=[2, 4])).eval()
    two.load_state_dict(backbone.state_dict())
    out_two = two(pixel_values=rgb, depth_values=depth)
    assert torch.equal(out_two.feature_maps[1], out.feature_maps[3])


# ---------------------------------------------------------------------------------------------------------------------
# from_rgb_backbone and checkpoint layouts
# ---------------------------------------------------------------------------------------------------------------------
def _random_dinov2(**overrides) -> Dinov2Model:
    torch.manual_seed(1)
    return Dinov2Model(tiny_rgb_config(**overrides)).eval()


def _check_initialised_from(model: VanishingDepthModel, rgb_model) -> None:
    source = rgb_model.state_dict()
    for key, value in model.rgb_encoder.state_dict().items():
        assert torch.equal(value, source[key]), key
    for key, value in model.depth_encoder.state_dict().items():
        if key == "embeddings.patch_embeddings.projection.weight":
            assert value.shape[1] == model.config.pde_channels
        else:
            assert torch.equal(value, source[key]), key


def test_from_rgb_backbone_instance_and_local_folder(tmp_path):
    rgb_model = _random_dinov2()
    from_instance = VanishingDepthModel.from_rgb_backbone(rgb_model, pde_channels=16, se_reduction=4)
    _check_initialised_from(from_instance, rgb_model)
    rgb_model.save_pretrained(tmp_path / "dinov2")
    from_folder = VanishingDepthModel.from_rgb_backbone(str(tmp_path / "dinov2"), pde_channels=16, se_reduction=4)
    _check_initialised_from(from_folder, rgb_model)
    assert from_folder.config.rgb_backbone_name_or_path == str(tmp_path / "dinov2")
    rgb, _ = random_rgbd()
    reference = rgb_model(pixel_values=rgb).last_hidden_state
    assert torch.equal(from_folder(pixel_values=rgb).rgb_last_hidden_state, reference)


def test_from_rgb_backbone_interpolates_position_embeddings():
    rgb_model = _random_dinov2(image_size=112)
    model = VanishingDepthModel.from_rgb_backbone(rgb_model, image_size=56, pde_channels=16, se_reduction=4)
    assert model.rgb_encoder.embeddings.position_embeddings.shape == (1, 17, 32)
    assert torch.equal(
        model.rgb_encoder.embeddings.position_embeddings[:, 0], rgb_model.embeddings.position_embeddings[:, 0]
    )


def _to_original_layout(rgb_model: Dinov2Model) -> dict[str, torch.Tensor]:
    """Write a v5 DINOv2 back into facebookresearch/dinov2's key layout (the `.pth` release format)."""
    sd = rgb_model.state_dict()
    out = {
        "cls_token": sd["embeddings.cls_token"],
        "pos_embed": sd["embeddings.position_embeddings"],
        "mask_token": sd["embeddings.mask_token"],
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    for i in range(rgb_model.config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        q = f"blocks.{i}."
        for kind in ("weight", "bias"):
            out[q + f"attn.qkv.{kind}"] = torch.cat(
                [sd[p + f"attention.{n}.{kind}"] for n in ("q_proj", "k_proj", "v_proj")], dim=0
            )
            out[q + f"attn.proj.{kind}"] = sd[p + f"attention.o_proj.{kind}"]
            for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[q + f"{name}.{kind}"] = sd[p + f"{name}.{kind}"]
        out[q + "ls1.gamma"] = sd[p + "layer_scale1.lambda1"]
        out[q + "ls2.gamma"] = sd[p + "layer_scale2.lambda1"]
    return out


def test_from_original_dinov2_pth_layout_requires_opt_in(tmp_path):
    rgb_model = _random_dinov2(num_attention_heads=2)
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(_to_original_layout(rgb_model), path)
    with pytest.raises(ValueError, match="pickle"):
        VanishingDepthModel.from_rgb_backbone(str(path))
    # The head count cannot be read from weights: a width outside the DINOv2 table falls back to 64-wide heads,
    # so pass the tiny test model through a safetensors file of the same layout with a known table width.
    model = VanishingDepthModel.from_rgb_backbone(str(path), allow_pickle=True, pde_channels=16, se_reduction=4)
    assert model.config.num_hidden_layers == 4 and model.config.rgb_config.image_size == 56
    for key, value in model.rgb_encoder.state_dict().items():
        if "attention" not in key:
            assert torch.equal(value, rgb_model.state_dict()[key]), key
    q = model.rgb_encoder.encoder.layer[2].attention.q_proj.weight
    assert torch.equal(q, rgb_model.encoder.layer[2].attention.q_proj.weight)


def test_from_transformers_v4_key_names(tmp_path):
    from safetensors.torch import save_file

    rgb_model = _random_dinov2()
    renamed = {}
    for key, value in rgb_model.state_dict().items():
        key = (
            key.replace("attention.q_proj", "attention.attention.query")
            .replace("attention.k_proj", "attention.attention.key")
            .replace("attention.v_proj", "attention.attention.value")
            .replace("attention.o_proj", "attention.output.dense")
        )
        renamed["dinov2." + key] = value.contiguous()
    save_file(renamed, str(tmp_path / "v4.safetensors"))
    model = VanishingDepthModel.from_rgb_backbone(str(tmp_path / "v4.safetensors"), pde_channels=16, se_reduction=4)
    rgb, _ = random_rgbd()
    # Width 32 is not a DINOv2 size, so the head count differs (1 head of 32 vs 2 of 16): compare weights only.
    for key, value in model.rgb_encoder.state_dict().items():
        assert torch.equal(value, rgb_model.state_dict()[key]), key


def test_package_exports_and_registration():
    assert AutoConfig.for_model("vanishing_depth").__class__ is VanishingDepthConfig
    assert set(vanishing_depth.__all__) >= {"VanishingDepthConfig", "VanishingDepthModel", "positional_depth_encoding"}


# ---------------------------------------------------------------------------------------------------------------------
# Export / compile
# ---------------------------------------------------------------------------------------------------------------------
def test_torch_export_of_a_tiny_model(tiny_model):
    rgb, depth = random_rgbd(batch=1)
    exported = torch.export.export(tiny_model, args=(), kwargs={"pixel_values": rgb, "depth_values": depth})
    out = exported.module()(pixel_values=rgb, depth_values=depth)
    reference = tiny_model(pixel_values=rgb, depth_values=depth)
    torch.testing.assert_close(
        out.feature_maps[-1] if hasattr(out, "feature_maps") else out[3][-1],
        reference.feature_maps[-1],
        atol=1e-5,
        rtol=1e-5,
    )


def test_torch_compile_matches_eager(tiny_model):
    rgb, depth = random_rgbd(batch=1)
    compiled = torch.compile(tiny_model, backend="eager", fullgraph=True)
    torch.testing.assert_close(
        compiled(pixel_values=rgb, depth_values=depth).last_hidden_state,
        tiny_model(pixel_values=rgb, depth_values=depth).last_hidden_state,
    )


def test_dynamic_cls_digit_positions_name_where_the_code_writes_the_digits():
    from vanishing_depth import depth_scale_cls_code

    config = tiny_config(rgb_overrides={"hidden_size": 48, "num_attention_heads": 2}, depth_normalization="dynamic")
    units, first_decimal = config.dynamic_cls_digit_positions()
    code = depth_scale_cls_code(torch.tensor([123.4375]), config.hidden_size)[0]  # exact in float32
    digit = lambda value: 0.1 + value / 10.0  # noqa: E731  (the code's digit mapping)
    assert [round(float(v), 4) for v in code[units - 2 : units + 1]] == [round(digit(d), 4) for d in (1, 2, 3)]
    assert [round(float(v), 4) for v in code[first_decimal : first_decimal + 6]] == [
        round(digit(d), 4) for d in (4, 3, 7, 5, 0, 0)
    ]
    assert int((code != 0).sum()) == 9


def test_config_accepts_every_family_with_a_stream_adapter():
    from transformers import DINOv3ViTConfig, SiglipVisionConfig

    from vanishing_depth.configuration_vanishing_depth import SUPPORTED_RGB_MODEL_TYPES

    assert {"dinov2", "dinov2_with_registers", "dinov3_vit", "siglip_vision_model"} <= set(SUPPORTED_RGB_MODEL_TYPES)
    small = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=32)
    assert VanishingDepthConfig(rgb_config=DINOv3ViTConfig(**small)).num_prefix_tokens == 1
    siglip = VanishingDepthConfig(rgb_config=SiglipVisionConfig(**small))
    assert siglip.num_prefix_tokens == 0 and siglip.patch_size == 16
    with pytest.raises(ValueError, match="'siglip'.*no CLS token"):
        VanishingDepthConfig(rgb_config=SiglipVisionConfig(**small), depth_normalization="dynamic")
