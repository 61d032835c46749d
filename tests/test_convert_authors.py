"""Converting the authors' released RGB-D encoder checkpoints (two original-layout DINOv2 ViTs + ESANet SE fusions).

No authors' checkpoint is reachable here, so each test writes a random tiny `VanishingDepthModel` into that key layout
(the inverse mapping below), converts it back and checks the converted model computes exactly what the original did.
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModel

from conftest import random_rgbd, tiny_config
from vanishing_depth import VanishingDepthModel
from vanishing_depth.convert_authors_checkpoint import (
    add_convert_subcommand,
    convert_authors_checkpoint,
    convert_authors_state_dict,
    detect_authors_layout,
)


def _randomised_model(**config_overrides) -> VanishingDepthModel:
    """A tiny model whose every tensor is random, so any key mixed up in the conversion changes the outputs."""
    model = VanishingDepthModel(tiny_config(**config_overrides)).eval()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model


def _dinov2_to_original(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """transformers-v5 `Dinov2Model` keys -> facebookresearch/dinov2 keys (inverse of convert_dinov2_state_dict)."""
    out = {
        "cls_token": state["embeddings.cls_token"],
        "pos_embed": state["embeddings.position_embeddings"],
        "mask_token": state["embeddings.mask_token"],
        "patch_embed.proj.weight": state["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": state["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": state["layernorm.weight"],
        "norm.bias": state["layernorm.bias"],
    }
    layers = 1 + max(int(key.split(".")[2]) for key in state if key.startswith("encoder.layer."))
    for i in range(layers):
        v5, orig = f"encoder.layer.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            out[orig + f"attn.qkv.{kind}"] = torch.cat(
                [state[v5 + f"attention.{name}.{kind}"] for name in ("q_proj", "k_proj", "v_proj")]
            )
            for ours, theirs in (
                ("norm1", "norm1"),
                ("norm2", "norm2"),
                ("attention.o_proj", "attn.proj"),
                ("mlp.fc1", "mlp.fc1"),
                ("mlp.fc2", "mlp.fc2"),
            ):
                out[orig + f"{theirs}.{kind}"] = state[v5 + f"{ours}.{kind}"]
        out[orig + "ls1.gamma"] = state[v5 + "layer_scale1.lambda1"]
        out[orig + "ls2.gamma"] = state[v5 + "layer_scale2.lambda1"]
    return {prefix + key: value.clone().contiguous() for key, value in out.items()}


def to_authors_layout(
    model: VanishingDepthModel,
    rgb_prefix: str | None = "color_encoder.",
    depth_prefix: str = "depth_encoder.",
    fusion_prefix: str = "fusion_layers.",
    number_by_block: bool = False,
) -> dict[str, torch.Tensor]:
    """Write a `VanishingDepthModel` in the authors' key layout; ``rgb_prefix=None`` leaves the RGB stream out."""
    state = model.state_dict()

    def stream(name: str) -> dict[str, torch.Tensor]:
        return {key[len(name) + 1 :]: value for key, value in state.items() if key.startswith(name + ".")}

    out = _dinov2_to_original(stream("depth_encoder"), depth_prefix)
    if rgb_prefix is not None:
        out.update(_dinov2_to_original(stream("rgb_encoder"), rgb_prefix))
    for ordinal, block in enumerate(model.config.fusion_layers):
        index = block if number_by_block else ordinal
        for side in ("rgb", "depth"):
            ours, theirs = f"fusions.{ordinal}.se_{side}.", f"{fusion_prefix}{index}.se_{side}.fc."
            for layer, part in (("0", "squeeze"), ("2", "excite")):
                weight = state[ours + f"{part}.weight"]
                out[theirs + f"{layer}.weight"] = weight.reshape(*weight.shape, 1, 1).clone()  # 1x1 conv
                out[theirs + f"{layer}.bias"] = state[ours + f"{part}.bias"].clone()
    return out


def _outputs(model, seed: int = 0) -> tuple[torch.Tensor, ...]:
    rgb, depth = random_rgbd(seed=seed)
    with torch.no_grad():
        out = model(pixel_values=rgb, depth_values=depth)
    return (*out.feature_maps, out.last_hidden_state, out.rgb_last_hidden_state)


def _assert_same_outputs(converted, original) -> None:
    for got, expected in zip(_outputs(converted), _outputs(original), strict=True):
        assert torch.equal(got, expected)


@pytest.mark.parametrize(
    "layout",
    [
        dict(rgb_prefix="color_encoder.", depth_prefix="depth_encoder.", fusion_prefix="fusion_layers."),
        # DataParallel prefixes, fusions inside the depth ViT and numbered by the block they follow, plus a decoder.
        dict(
            rgb_prefix="module.rgb_encoder.",
            depth_prefix="module.encoder.",
            fusion_prefix="module.encoder.fusion_layers.",
            number_by_block=True,
            six_blocks=True,
        ),
    ],
)
def test_converted_checkpoint_computes_what_the_original_did(layout, tmp_path, caplog):
    six_blocks = layout.pop("six_blocks", False)
    overrides = dict(rgb_overrides=dict(num_hidden_layers=6), fusion_layers=[1, 3, 5]) if six_blocks else {}
    original = _randomised_model(**overrides)
    state = to_authors_layout(original, **layout)
    if six_blocks:
        state["module.decoder.head.weight"] = torch.zeros(4, 4)  # pretraining decoder: reported, not converted
    save_file(state, str(tmp_path / "vd_authors.safetensors"))

    convert_authors_checkpoint(tmp_path / "vd_authors.safetensors", tmp_path / "converted", num_attention_heads=2)

    converted = AutoModel.from_pretrained(str(tmp_path / "converted")).eval()
    assert type(converted) is VanishingDepthModel
    config = converted.config
    assert (config.pde_channels, config.se_reduction, config.fuse_cls_token) == (16, 4, False)
    assert config.fusion_layers == original.config.fusion_layers
    _assert_same_outputs(converted, original)
    assert config.converted_from["file"] == "vd_authors.safetensors"
    assert config.converted_from["depth_prefix"] == layout["depth_prefix"]
    assert len(config.converted_from["sha256"]) == 64
    card = (tmp_path / "converted" / "README.md").read_text()
    assert "vd_authors.safetensors" in card and config.converted_from["sha256"] in card
    assert (tmp_path / "converted" / "preprocessor_config.json").is_file()
    if six_blocks:
        assert "module.decoder.head.weight" in caplog.text


def test_prefixes_are_detected_or_must_be_given():
    original = _randomised_model()
    state = to_authors_layout(original)
    layout = detect_authors_layout(state)
    assert (layout.rgb_prefix, layout.depth_prefix, layout.fusion_prefix) == (
        "color_encoder.",
        "depth_encoder.",
        "fusion_layers.",
    )
    assert layout.fusion_indices == [0, 1, 2, 3]

    # A second depth-like ViT makes detection ambiguous: the error asks for the prefix, which then resolves it.
    ambiguous = dict(state)
    ambiguous.update(to_authors_layout(original, rgb_prefix=None, depth_prefix="teacher.", fusion_prefix="x."))
    ambiguous = {k: v for k, v in ambiguous.items() if not k.startswith("x.")}
    with pytest.raises(ValueError, match="depth_prefix"):
        detect_authors_layout(ambiguous)
    converted, config = convert_authors_state_dict(ambiguous, depth_prefix="depth_encoder.", num_attention_heads=2)
    model = VanishingDepthModel(config).eval()
    model.load_state_dict(converted, strict=True)
    _assert_same_outputs(model, original)

    with pytest.raises(ValueError, match="rgb_prefix"):
        detect_authors_layout(state, rgb_prefix="rgb.")
    with pytest.raises(ValueError, match="SE fusion"):
        detect_authors_layout({k: v for k, v in state.items() if "se_" not in k})


def test_pickles_are_refused_unless_allowed(tmp_path):
    original = _randomised_model()
    torch.save({"state_dict": to_authors_layout(original)}, tmp_path / "vd_authors.pth")
    with pytest.raises(ValueError, match="allow_pickle=True"):
        convert_authors_checkpoint(tmp_path / "vd_authors.pth", tmp_path / "refused", num_attention_heads=2)
    assert not (tmp_path / "refused").exists()
    model = convert_authors_checkpoint(
        tmp_path / "vd_authors.pth", tmp_path / "converted", allow_pickle=True, num_attention_heads=2, write_card=False
    )
    _assert_same_outputs(model, original)


def test_checkpoint_without_rgb_stream_takes_the_dinov2_it_was_trained_with(tmp_path):
    original = _randomised_model()
    save_file(to_authors_layout(original, rgb_prefix=None), str(tmp_path / "depth_only.safetensors"))
    with pytest.raises(ValueError, match="rgb_backbone"):
        convert_authors_checkpoint(tmp_path / "depth_only.safetensors", tmp_path / "out", num_attention_heads=2)
    original.rgb_encoder.save_pretrained(str(tmp_path / "dinov2"))
    model = convert_authors_checkpoint(
        tmp_path / "depth_only.safetensors",
        tmp_path / "out",
        rgb_backbone=str(tmp_path / "dinov2"),
        num_attention_heads=2,
        write_card=False,
    )
    _assert_same_outputs(model, original)
    assert model.config.rgb_backbone_name_or_path == str(tmp_path / "dinov2")


def test_official_vit_s_settings_are_inferred():
    """Width 384 is DINOv2 ViT-S: 6 heads from the width table, and the official ViT-S path fuses the CLS token."""
    original = VanishingDepthModel(
        tiny_config(rgb_overrides=dict(hidden_size=384, num_attention_heads=6, num_hidden_layers=1, image_size=28))
    )
    _, config = convert_authors_state_dict(to_authors_layout(original))
    assert config.rgb_config.num_attention_heads == 6
    assert config.fuse_cls_token is True
    assert config.rgb_config.image_size == 28 and config.se_reduction == 4


def test_cli_convert(tmp_path, capsys):
    original = _randomised_model()
    save_file(to_authors_layout(original), str(tmp_path / "ckpt.safetensors"))
    parser = argparse.ArgumentParser()
    add_convert_subcommand(parser.add_subparsers())
    args = parser.parse_args(
        [
            "convert",
            "--checkpoint",
            str(tmp_path / "ckpt.safetensors"),
            "--output-dir",
            str(tmp_path / "out"),
            "--num-attention-heads",
            "2",
            "--max-depth",
            "10",
            "--base-model",
            "facebook/dinov2-small",
        ]
    )
    assert args.func(args) == 0
    assert "PDE channels 16" in capsys.readouterr().out
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["max_depth"] == 10.0 and config["rgb_backbone_name_or_path"] == "facebook/dinov2-small"
    assert "base_model: facebook/dinov2-small" in (tmp_path / "out" / "README.md").read_text()
