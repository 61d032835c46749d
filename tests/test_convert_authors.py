"""Converting the authors' RGB-D encoder checkpoints (two original-layout DINOv2 ViTs + ESANet SE fusions).

No authors' checkpoint is reachable here. The tests build the file layout from the documented facts: a random tiny
`VanishingDepthModel` written into their key layout (`to_authors_layout`, the inverse mapping, with their gate names:
their `se_rgb` gates the depth tokens), or a state dict built key by key from their layout (`authors_encoder_state`),
saved as their code saves it (`{'state_dict': ...}` in a `.plt`, or a main.py training checkpoint).
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
    AUTHORS_CONVENTIONS,
    _fusion_ordinals,
    add_convert_subcommand,
    convert_authors_checkpoint,
    convert_authors_state_dict,
    detect_authors_layout,
)
from vanishing_depth.modeling_vanishing_depth import VanishingDepthFusion

# Our gate -> their name for it: their `SqueezeAndExciteFusionAdd.forward(rgb, depth)` is called with
# (depth_tokens, rgb_tokens), so their `se_rgb` is the gate applied to the depth tokens.
THEIR_GATE_NAME = {"depth": "rgb", "rgb": "depth"}


def _randomised_model(**config_overrides) -> VanishingDepthModel:
    """A tiny model whose every tensor is random, so any key mixed up in the conversion changes the outputs. It follows
    the authors' numerical conventions, which a converted config takes, unless overridden."""
    config_overrides = {**AUTHORS_CONVENTIONS, **config_overrides}
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
            ours, theirs = f"fusions.{ordinal}.se_{side}.", f"{fusion_prefix}{index}.se_{THEIR_GATE_NAME[side]}.fc."
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


# ----------------------------------------------------------------------------------------------------------------------
# Their files, built key by key from the documented layout
# ----------------------------------------------------------------------------------------------------------------------
def authors_vit_state(prefix: str, hidden: int, layers: int, in_channels: int, grid: int, generator, device="cpu"):
    """One DINOv2 of their model/dinov2 copy (`block_chunks=0`, LayerScale): `blocks.N.*`, `pos_embed` for a
    `grid` x `grid` table plus the CLS row, `mask_token` (1, D)."""

    def rand(*shape):
        if device == "meta":
            return torch.empty(shape, device="meta")
        return 0.2 * torch.randn(shape, generator=generator)

    state = {
        "cls_token": rand(1, 1, hidden),
        "pos_embed": rand(1, 1 + grid * grid, hidden),
        "mask_token": rand(1, hidden),
        "patch_embed.proj.weight": rand(hidden, in_channels, 14, 14),
        "patch_embed.proj.bias": rand(hidden),
        "norm.weight": 1 + rand(hidden),
        "norm.bias": rand(hidden),
    }
    for i in range(layers):
        block = {
            "norm1.weight": 1 + rand(hidden),
            "norm1.bias": rand(hidden),
            "attn.qkv.weight": rand(3 * hidden, hidden),
            "attn.qkv.bias": rand(3 * hidden),
            "attn.proj.weight": rand(hidden, hidden),
            "attn.proj.bias": rand(hidden),
            "ls1.gamma": rand(hidden),
            "norm2.weight": 1 + rand(hidden),
            "norm2.bias": rand(hidden),
            "mlp.fc1.weight": rand(4 * hidden, hidden),
            "mlp.fc1.bias": rand(4 * hidden),
            "mlp.fc2.weight": rand(hidden, 4 * hidden),
            "mlp.fc2.bias": rand(hidden),
            "ls2.gamma": rand(hidden),
        }
        state.update({f"blocks.{i}.{key}": value for key, value in block.items()})
    return {prefix + key: value for key, value in state.items()}


def authors_encoder_state(
    hidden: int = 32,
    layers: int = 4,
    pde_channels: int = 16,
    grid: int = 4,
    fusions: int = 4,
    seed: int = 0,
    device="cpu",
) -> dict[str, torch.Tensor]:
    """`DinoRGBDWrapper.state_dict()` of their model/dino.py: `color_encoder.*`, `depth_encoder.*` and the SE gates
    `depth_encoder.fusion_layers.{j}.se_{rgb,depth}.fc.{0,2}.*` as 1x1 convolutions with reduction 16."""
    generator = torch.Generator().manual_seed(seed)
    state = authors_vit_state("color_encoder.", hidden, layers, 3, grid, generator, device)
    state.update(authors_vit_state("depth_encoder.", hidden, layers, pde_channels, grid, generator, device))
    squeezed = hidden // 16
    for j in range(fusions):
        for gate in ("se_rgb", "se_depth"):
            for layer, shape in (("0", (squeezed, hidden, 1, 1)), ("2", (hidden, squeezed, 1, 1))):
                key = f"depth_encoder.fusion_layers.{j}.{gate}.fc.{layer}."
                if device == "meta":
                    state[key + "weight"] = torch.empty(shape, device="meta")
                    state[key + "bias"] = torch.empty(shape[0], device="meta")
                else:
                    state[key + "weight"] = torch.randn(shape, generator=generator)
                    state[key + "bias"] = torch.randn(shape[0], generator=generator)
    return state


def _their_se_gate(tokens: torch.Tensor, state: dict, key: str) -> torch.Tensor:
    """ESANet's `SqueezeAndExcitation` on their (N, D, 1, 1) token maps: x * sigmoid(fc2(relu(fc0(avgpool(x)))))."""
    x = tokens.reshape(-1, tokens.shape[-1], 1, 1)
    weighting = torch.nn.functional.adaptive_avg_pool2d(x, 1)
    weighting = torch.relu(torch.nn.functional.conv2d(weighting, state[key + "fc.0.weight"], state[key + "fc.0.bias"]))
    weighting = torch.sigmoid(
        torch.nn.functional.conv2d(weighting, state[key + "fc.2.weight"], state[key + "fc.2.bias"])
    )
    return (x * weighting).reshape(tokens.shape)


def _their_fusion(depth_tokens, rgb_tokens, state, j):
    """Their depth ViT calls `fusion_layers[j](depth_tokens, rgb_tokens)` and `forward(rgb, depth)` returns
    `se_rgb(rgb) + se_depth(depth)`: the module's `se_rgb` runs on the depth tokens."""
    prefix = f"depth_encoder.fusion_layers.{j}."
    return _their_se_gate(depth_tokens, state, prefix + "se_rgb.") + _their_se_gate(
        rgb_tokens, state, prefix + "se_depth."
    )


def test_their_encoder_file_layout_has_the_documented_size():
    state = authors_encoder_state(hidden=384, layers=12, pde_channels=32, grid=37, device="meta")
    assert len(state) == 382  # a ViT-S *_encoder.plt
    assert state["depth_encoder.patch_embed.proj.weight"].shape == (384, 32, 14, 14)
    assert state["depth_encoder.fusion_layers.3.se_depth.fc.0.weight"].shape == (24, 384, 1, 1)


def test_plt_encoder_file_converts_and_the_gates_land_where_their_forward_uses_them(tmp_path):
    state = authors_encoder_state()
    torch.save({"state_dict": state}, tmp_path / "run_encoder.plt")  # as their code saves it
    with pytest.raises(ValueError, match="run_encoder.plt.*allow_pickle=True"):
        convert_authors_checkpoint(tmp_path / "run_encoder.plt", tmp_path / "refused")
    model = convert_authors_checkpoint(tmp_path / "run_encoder.plt", tmp_path / "out", allow_pickle=True)
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.pde_channels, config.se_reduction) == (32, 4, 16, 16)
    assert config.fusion_layers == [0, 1, 2, 3] and config.fuse_cls_token is False
    assert {name: getattr(config, name) for name in AUTHORS_CONVENTIONS} == AUTHORS_CONVENTIONS

    generator = torch.Generator().manual_seed(1)
    depth_tokens, rgb_tokens = torch.randn(2, 17, 32, generator=generator), torch.randn(2, 17, 32, generator=generator)
    for j, fusion in enumerate(model.fusions):
        expected = _their_fusion(depth_tokens, rgb_tokens, state, j)
        with torch.no_grad():
            torch.testing.assert_close(fusion(depth_tokens, rgb_tokens)[:, 1:], expected[:, 1:], rtol=1e-5, atol=1e-6)
        # Their `se_rgb` (applied to the depth tokens) is our `se_depth`, and the other way round.
        squeeze = state[f"depth_encoder.fusion_layers.{j}.se_rgb.fc.0.weight"]
        assert torch.equal(fusion.se_depth.squeeze.weight, squeeze[:, :, 0, 0])
        excite = state[f"depth_encoder.fusion_layers.{j}.se_depth.fc.2.bias"]
        assert torch.equal(fusion.se_rgb.excite.bias, excite)


def test_a_recognisable_depth_gate_arrives_as_our_depth_gate():
    """Their `se_rgb` set to pass its input through (sigmoid(+30) = 1) and `se_depth` to block it (sigmoid(-30) = 0):
    by their forward the fusion then returns the depth tokens unchanged, and so must ours."""
    state = authors_encoder_state()
    for j in range(4):
        for gate, bias in (("se_rgb", 30.0), ("se_depth", -30.0)):
            key = f"depth_encoder.fusion_layers.{j}.{gate}.fc.2."
            state[key + "weight"] = torch.zeros_like(state[key + "weight"])
            state[key + "bias"] = torch.full_like(state[key + "bias"], bias)
    converted, config = convert_authors_state_dict(state, fuse_cls_token=True)
    fusion = VanishingDepthFusion(config.hidden_size, config.se_reduction, config.num_prefix_tokens, True)
    fusion.load_state_dict({k[len("fusions.0.") :]: v for k, v in converted.items() if k.startswith("fusions.0.")})
    depth_tokens, rgb_tokens = torch.randn(1, 5, 32), 100 + torch.randn(1, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(fusion(depth_tokens, rgb_tokens), depth_tokens, rtol=0, atol=1e-6)


def test_main_py_training_checkpoint_converts_its_encoder(tmp_path, caplog):
    np = pytest.importorskip("numpy")
    state = {f"encoder.{key}": value for key, value in authors_encoder_state().items()}
    state["decoder.blocks.0.conv1.0.weight"] = torch.randn(8, 64, 3, 3)  # their U-Net decoder: reported, left out
    state.update({f"depth_estimator.{i}.0.weight": torch.randn(4, 8, 3, 3) for i in range(4)})
    checkpoint = {
        "state_dict": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "params": [0, 1]}]},
        "logs": {"epoch": 3, "best_auc": np.float64(0.21), "args": {"lr": 1e-5, "model_version": "V2-small"}},
        "scheduler": {"total_steps": 100, "_step_count": 4},
    }
    torch.save(checkpoint, tmp_path / "best_auc_checkpoint.ckpt")
    model = convert_authors_checkpoint(
        tmp_path / "best_auc_checkpoint.ckpt", tmp_path / "out", allow_pickle=True, write_card=False
    )
    assert model.config.converted_from["depth_prefix"] == "encoder.depth_encoder."
    assert "decoder.blocks.0.conv1.0.weight" in caplog.text and "depth_estimator.0.0.weight" in caplog.text
    reference = convert_authors_checkpoint(
        _save_safetensors(authors_encoder_state(), tmp_path / "enc.safetensors"), tmp_path / "ref", write_card=False
    )
    rgb, depth = random_rgbd(seed=3)
    with torch.no_grad():
        got, expected = model(rgb, depth_values=depth), reference(rgb, depth_values=depth)
    assert torch.equal(got.last_hidden_state, expected.last_hidden_state)


def _save_safetensors(state, path):
    save_file(state, str(path))
    return path


def test_fuse_cls_token_choices(tmp_path, capsys):
    state = authors_encoder_state()
    for choice, expected in (("auto", False), ("true", True), ("false", False), (True, True), (False, False)):
        assert convert_authors_state_dict(state, fuse_cls_token=choice)[1].fuse_cls_token is expected
    with pytest.raises(ValueError, match="fuse_cls_token"):
        convert_authors_state_dict(state, fuse_cls_token="sometimes")
    # ViT-S width: "auto" follows main.py's pretraining (CLS fused), "false" their mmseg backbone.
    small = authors_encoder_state(hidden=384, layers=1, grid=2, fusions=1)
    assert convert_authors_state_dict(small, fusion_layers=[0])[1].fuse_cls_token is True
    assert convert_authors_state_dict(small, fusion_layers=[0], fuse_cls_token="false")[1].fuse_cls_token is False

    torch.save({"state_dict": state}, tmp_path / "run_encoder.plt")
    parser = argparse.ArgumentParser()
    add_convert_subcommand(parser.add_subparsers())
    argv = ["convert", "--checkpoint", str(tmp_path / "run_encoder.plt"), "--output-dir", str(tmp_path / "out")]
    argv += ["--allow-pickle", "--fuse-cls-token", "true", "--feature-layernorm", "false"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert "CLS fusion True" in capsys.readouterr().out
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["fuse_cls_token"] is True and config["feature_layernorm"] is False
    assert config["position_interpolation"] == "dinov2" and config["pde_missing_depth_m"] == 1e-6


def test_conventions_can_be_overridden():
    _, config = convert_authors_state_dict(
        authors_encoder_state(), position_interpolation="transformers", pde_missing_depth_m=0.0
    )
    assert (config.position_interpolation, config.pde_missing_depth_m, config.pde_float_order) == (
        "transformers",
        0.0,
        "authors",
    )


def test_their_vit_l_fusion_table_drops_the_module_that_never_runs(caplog):
    """`get_dinov2_encoder` fuses a ViT-L after blocks [5, 12, 18, 24]; a 24-block ViT has no block 24."""
    blocks, ordinal = _fusion_ordinals([0, 1, 2, 3], 24, None)
    assert blocks == [5, 12, 18] and ordinal == {0: 0, 1: 1, 2: 2}
    assert "never run" in caplog.text
    assert _fusion_ordinals([0, 1, 2, 3], 12, None) == ([2, 5, 8, 11], {0: 0, 1: 1, 2: 2, 3: 3})
    assert _fusion_ordinals([2, 5, 8, 11], 12, None)[0] == [2, 5, 8, 11]  # numbered by block
    with pytest.raises(ValueError, match="fusion_layers"):
        _fusion_ordinals([0, 1, 2], 12, [2, 5])


def test_unreadable_files_are_named(tmp_path):
    (tmp_path / "broken_encoder.plt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="broken_encoder.plt"):
        convert_authors_checkpoint(tmp_path / "broken_encoder.plt", tmp_path / "out", allow_pickle=True)
    torch.save({"state_dict": {"x": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="other.ckpt"):
        convert_authors_checkpoint(tmp_path / "other.ckpt", tmp_path / "out", allow_pickle=True)
