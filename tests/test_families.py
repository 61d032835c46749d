"""Every supported RGB ViT family (stream adapters in `streams_vanishing_depth`), with one tiny config each.

Invariants per family: the RGB stream equals the plain transformers model bit for bit; only the depth side and the
fusion train; save / `AutoModel.from_pretrained` is bit-exact; `torch.export` and `torch.compile(fullgraph=True)` work;
the pretraining model and a depth head run; `from_rgb_backbone`, the image processor and LoRA follow the adapter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
import torch
from transformers import (
    AutoModel,
    Dinov2Config,
    Dinov2WithRegistersConfig,
    DINOv3ViTConfig,
    SiglipConfig,
    SiglipModel,
    SiglipVisionConfig,
)

from conftest import HIDE_PACKAGE
from vanishing_depth import (
    VanishingDepthBackbone,
    VanishingDepthConfig,
    VanishingDepthForDepthEstimation,
    VanishingDepthForPretraining,
    VanishingDepthImageProcessor,
    VanishingDepthModel,
    default_fusion_layers,
)
from vanishing_depth.streams_vanishing_depth import stream_adapter, supported_model_types


@dataclass
class FamilyTester:
    """One tiny config per family (hidden <= 64, <= 4 blocks, images <= 64 px and multiples of the patch)."""

    family: str
    config_class: type
    config_kwargs: dict
    image_size: int
    patch_size: int
    num_prefix_tokens: int
    has_cls_token: bool
    image_mean: tuple = (0.485, 0.456, 0.406)
    extra: dict = field(default_factory=dict)

    def rgb_config(self, **overrides):
        return self.config_class(**{**self.config_kwargs, **overrides})

    def config(self, **overrides) -> VanishingDepthConfig:
        kwargs = dict(rgb_config=self.rgb_config(), pde_channels=8, se_reduction=4, decoder_channels=[16, 8, 8, 8])
        kwargs.update(overrides)
        return VanishingDepthConfig(**kwargs)

    def model(self, seed: int = 0, **overrides) -> VanishingDepthModel:
        torch.manual_seed(seed)
        return VanishingDepthModel(self.config(**overrides)).eval()

    def inputs(self, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        size = self.image_size
        rgb = torch.randn(batch, 3, size, size, generator=generator)
        depth = 0.3 + 6.0 * torch.rand(batch, 1, size, size, generator=generator)
        depth[torch.rand(batch, 1, size, size, generator=generator) < 0.4] = 0.0
        return {"pixel_values": rgb, "depth_values": depth}


_COMMON = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2)
FAMILIES = {
    "dinov2": FamilyTester(
        "dinov2", Dinov2Config, dict(_COMMON, image_size=56, patch_size=14), 56, 14, num_prefix_tokens=1,
        has_cls_token=True,
    ),
    "dinov2_with_registers": FamilyTester(
        "dinov2_with_registers", Dinov2WithRegistersConfig,
        dict(_COMMON, image_size=56, patch_size=14, num_register_tokens=2), 56, 14, num_prefix_tokens=3,
        has_cls_token=True,
    ),
    "dinov3_vit": FamilyTester(
        "dinov3_vit", DINOv3ViTConfig,
        dict(_COMMON, intermediate_size=64, image_size=64, patch_size=16, num_register_tokens=2), 64, 16,
        num_prefix_tokens=3, has_cls_token=True,
    ),
    "siglip": FamilyTester(
        "siglip", SiglipVisionConfig, dict(_COMMON, intermediate_size=64, image_size=64, patch_size=16), 64, 16,
        num_prefix_tokens=0, has_cls_token=False, image_mean=(0.5, 0.5, 0.5),
    ),
}  # fmt: skip


@pytest.fixture(params=sorted(FAMILIES), ids=sorted(FAMILIES))
def tester(request) -> FamilyTester:
    return FAMILIES[request.param]


@pytest.fixture
def model_and_inputs(tester):
    return tester.model(), tester.inputs()


def _first_nonzero_difference(a: torch.Tensor, b: torch.Tensor) -> str:
    return f"max |diff| {float((a.float() - b.float()).abs().max()):.3e}"


# ---------------------------------------------------------------------------------------------------------------------
# Config and adapter
# ---------------------------------------------------------------------------------------------------------------------
def test_every_family_is_supported_and_builds_a_config(tester):
    config = tester.config()
    assert config.rgb_config.model_type in supported_model_types()
    assert config.stream_adapter.family == tester.family
    assert config.patch_size == tester.patch_size
    assert config.num_prefix_tokens == tester.num_prefix_tokens
    assert config.stream_adapter.has_cls_token is tester.has_cls_token
    assert config.fusion_layers == default_fusion_layers(4)
    # A dict with model_type (what config.json holds) gives the same family.
    again = VanishingDepthConfig(rgb_config=config.rgb_config.to_dict(), pde_channels=8, se_reduction=4)
    assert type(again.rgb_config) is type(config.rgb_config)


def test_config_round_trip_keeps_the_family(tester, tmp_path):
    config = tester.config()
    config.save_pretrained(tmp_path)
    loaded = VanishingDepthConfig.from_pretrained(tmp_path)
    assert type(loaded.rgb_config) is tester.config_class
    assert loaded.rgb_config.to_dict() == config.rgb_config.to_dict()
    assert loaded.fusion_layers == config.fusion_layers


def test_image_processor_takes_mean_std_and_patch_from_the_adapter(tester):
    processor = VanishingDepthImageProcessor.from_model_config(tester.config())
    assert processor.patch_size == tester.patch_size
    assert tuple(processor.image_mean) == tester.image_mean
    assert tuple(processor.image_std) == tuple(stream_adapter(tester.config().rgb_config).image_std)
    override = VanishingDepthImageProcessor.from_model_config(tester.config(), image_mean=[0.1, 0.2, 0.3])
    assert override.image_mean == [0.1, 0.2, 0.3]


# ---------------------------------------------------------------------------------------------------------------------
# Forward invariants
# ---------------------------------------------------------------------------------------------------------------------
def test_rgb_stream_is_bit_identical_to_the_plain_transformers_model(tester, model_and_inputs):
    model, inputs = model_and_inputs
    plain = AutoModel.from_config(model.config.rgb_config).eval()
    plain.load_state_dict(model.rgb_encoder.state_dict())
    with torch.no_grad():
        ours = model(**inputs).rgb_last_hidden_state
        reference = plain(pixel_values=inputs["pixel_values"]).last_hidden_state
    assert torch.equal(ours, reference), _first_nonzero_difference(ours, reference)


def test_output_shapes_and_pooler_rule(tester, model_and_inputs):
    model, inputs = model_and_inputs
    with torch.no_grad():
        out = model(**inputs)
    grid = tester.image_size // tester.patch_size
    tokens = tester.num_prefix_tokens + grid * grid
    assert out.last_hidden_state.shape == (2, tokens, 32)
    assert out.rgb_last_hidden_state.shape == (2, tokens, 32)
    assert [tuple(f.shape) for f in out.feature_maps] == [(2, 64, grid, grid)] * 4
    if tester.has_cls_token:
        expected = torch.cat((out.rgb_last_hidden_state[:, 0], out.last_hidden_state[:, 0]), dim=-1)
    else:  # no CLS token: the mean of the final layer-normed patch tokens, per stream
        expected = torch.cat((out.rgb_last_hidden_state.mean(1), out.last_hidden_state.mean(1)), dim=-1)
    assert torch.equal(out.pooler_output, expected)


def test_fusion_leaves_prefix_tokens_alone(tester):
    model = tester.model()
    prefix = tester.num_prefix_tokens
    assert all(fusion.skip_tokens == prefix for fusion in model.fusions)
    fused_all = tester.model(fuse_cls_token=True)
    assert all(fusion.skip_tokens == 0 for fusion in fused_all.fusions)


def test_depth_changes_only_the_depth_stream(tester, model_and_inputs):
    model, inputs = model_and_inputs
    with torch.no_grad():
        with_depth = model(**inputs)
        without = model(pixel_values=inputs["pixel_values"])
    assert torch.equal(with_depth.rgb_last_hidden_state, without.rgb_last_hidden_state)
    assert not torch.allclose(with_depth.last_hidden_state, without.last_hidden_state)


def test_only_the_depth_stream_and_fusion_train(tester, model_and_inputs):
    model, inputs = model_and_inputs
    model.train()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith(("depth_encoder.", "fusions.")) for name in trainable)
    assert not any(p.requires_grad for p in model.rgb_encoder.parameters())
    assert not model.rgb_encoder.training  # a frozen RGB stream stays in eval mode across .train()
    out = model(**inputs)
    (sum(f.float().pow(2).mean() for f in out.feature_maps) + out.pooler_output.pow(2).mean()).backward()
    assert all(p.grad is None for p in model.rgb_encoder.parameters())
    projection = model.stream_adapter.patch_projection(model.depth_encoder)
    assert projection.weight.grad is not None and projection.weight.grad.abs().sum() > 0
    assert all(fusion.se_rgb.squeeze.weight.grad is not None for fusion in model.fusions)


def test_save_and_auto_model_round_trip_is_bit_exact(tester, model_and_inputs, tmp_path):
    model, inputs = model_and_inputs
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is VanishingDepthModel and type(loaded.config.rgb_config) is tester.config_class
    assert not loaded.weights_not_in_checkpoint
    with torch.no_grad():
        expected, got = model(**inputs), loaded(**inputs)
    for name in ("last_hidden_state", "pooler_output", "rgb_last_hidden_state"):
        assert torch.equal(getattr(expected, name), getattr(got, name)), name
    assert all(torch.equal(a, b) for a, b in zip(expected.feature_maps, got.feature_maps))
    assert not any(p.requires_grad for p in loaded.rgb_encoder.parameters())


def test_torch_export(tester, model_and_inputs):
    model, inputs = model_and_inputs
    inputs = {key: value[:1] for key, value in inputs.items()}
    exported = torch.export.export(model, args=(), kwargs=inputs)
    out = exported.module()(**inputs)
    reference = model(**inputs)
    got = out.feature_maps[-1] if hasattr(out, "feature_maps") else out[3][-1]
    torch.testing.assert_close(got, reference.feature_maps[-1], atol=1e-5, rtol=1e-5)


def test_torch_compile_fullgraph(tester, model_and_inputs):
    model, inputs = model_and_inputs
    inputs = {key: value[:1] for key, value in inputs.items()}
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(**inputs).last_hidden_state, model(**inputs).last_hidden_state)


def test_pretraining_model_and_depth_head_run(tester):
    inputs = tester.inputs(batch=1)
    torch.manual_seed(0)
    pretraining = VanishingDepthForPretraining(tester.config())
    target = inputs["depth_values"].clone()
    sparse = target * (torch.rand_like(target) < 0.3)
    out = pretraining(pixel_values=inputs["pixel_values"], depth_values=sparse, target_depth=target)
    assert out.predicted_depth[0].shape == (1, 1, tester.image_size, tester.image_size)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert not any(p.grad is not None for p in pretraining.vanishing_depth.rgb_encoder.parameters())

    head = VanishingDepthForDepthEstimation(tester.config(depth_decoder_hidden_size=8))
    result = head(**inputs, labels=target[:, 0])
    assert result.predicted_depth.shape == (1, tester.image_size, tester.image_size)
    assert torch.isfinite(result.loss)
    result.loss.backward()
    trainable = [name for name, p in head.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith("depth_head.") for name in trainable)


def test_backbone_token_sequences_start_with_cls_or_the_mean_patch_token(tester):
    torch.manual_seed(0)
    backbone = VanishingDepthBackbone(tester.config(reshape_hidden_states=False)).eval()
    inputs = tester.inputs(batch=1)
    grid = tester.image_size // tester.patch_size
    with torch.no_grad():
        tokens = backbone(**inputs).feature_maps[-1]
        backbone.config.reshape_hidden_states = True
        maps = backbone(**inputs).feature_maps[-1]
    assert tokens.shape == (1, 1 + grid * grid, 64)
    torch.testing.assert_close(tokens[:, 1:].unflatten(1, (grid, grid)).permute(0, 3, 1, 2), maps)
    if not tester.has_cls_token:
        torch.testing.assert_close(tokens[:, 0], tokens[:, 1:].mean(1))


# ---------------------------------------------------------------------------------------------------------------------
# from_rgb_backbone
# ---------------------------------------------------------------------------------------------------------------------
def test_from_rgb_backbone_instance_and_folder(tester, tmp_path):
    torch.manual_seed(3)
    rgb_model = AutoModel.from_config(tester.rgb_config()).eval()
    rgb_model.save_pretrained(tmp_path / "rgb")
    adapter = stream_adapter(rgb_model.config)
    projection_key = adapter.patch_projection_path + ".weight"
    for source in (rgb_model, tmp_path / "rgb"):
        model = VanishingDepthModel.from_rgb_backbone(source, pde_channels=8, se_reduction=4).eval()
        reference = rgb_model.state_dict()
        for key, value in model.rgb_encoder.state_dict().items():
            assert torch.equal(value, reference[key]), key
        for key, value in model.depth_encoder.state_dict().items():
            if key == projection_key:
                assert value.shape[1] == 8
            else:
                assert torch.equal(value, reference[key]), key
        inputs = tester.inputs(batch=1)
        with torch.no_grad():
            ours = model(**inputs).rgb_last_hidden_state
            plain = rgb_model(pixel_values=inputs["pixel_values"]).last_hidden_state
        assert torch.equal(ours, plain)


def test_siglip_text_and_vision_model_gives_its_vision_tower(tmp_path):
    tester = FAMILIES["siglip"]
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=99)
    torch.manual_seed(0)
    both = SiglipModel(SiglipConfig(vision_config=tester.rgb_config().to_dict(), text_config=text)).eval()
    model = VanishingDepthModel.from_rgb_backbone(both, pde_channels=8, se_reduction=4)
    assert model.config.rgb_config.model_type == "siglip_vision_model"
    for key, value in model.rgb_encoder.state_dict().items():
        assert torch.equal(value, both.vision_model.state_dict()[key]), key
    with pytest.raises(ValueError, match="vision_config"):
        VanishingDepthConfig(rgb_config=both.config)


def test_from_rgb_backbone_interpolates_siglip_position_table():
    tester = FAMILIES["siglip"]
    torch.manual_seed(0)
    rgb_model = AutoModel.from_config(tester.rgb_config(image_size=32)).eval()
    model = VanishingDepthModel.from_rgb_backbone(rgb_model, image_size=64, pde_channels=8, se_reduction=4)
    assert model.rgb_encoder.embeddings.position_embedding.weight.shape == (16, 32)
    inputs = tester.inputs(batch=1)
    with torch.no_grad():
        ours = model(**inputs).rgb_last_hidden_state
        plain = rgb_model(pixel_values=inputs["pixel_values"], interpolate_pos_encoding=True).last_hidden_state
    torch.testing.assert_close(ours, plain, atol=1e-4, rtol=1e-4)


def test_from_rgb_backbone_refuses_a_foreign_model():
    from transformers import ViTConfig, ViTModel

    vit = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    with pytest.raises(ValueError, match="supported ViT family"):
        VanishingDepthModel.from_rgb_backbone(vit)


# ---------------------------------------------------------------------------------------------------------------------
# Family rules
# ---------------------------------------------------------------------------------------------------------------------
def test_dynamic_depth_normalisation_needs_a_cls_token(tester):
    if tester.has_cls_token:
        for add in (True, False):
            model = tester.model(depth_normalization="dynamic", add_depth_scale_to_cls_token=add)
            inputs = tester.inputs(batch=1)
            with torch.no_grad():
                near = model(**inputs).last_hidden_state
                far = model(inputs["pixel_values"], depth_values=inputs["depth_values"] * 3).last_hidden_state
            assert not torch.allclose(near[:, 0], far[:, 0])
    else:
        with pytest.raises(ValueError, match=f"{tester.family}.*no CLS token"):
            tester.config(depth_normalization="dynamic")


def test_lora_targets_the_depth_blocks_attention_of_every_family(tester):
    pytest.importorskip("peft")
    from peft import get_peft_model

    from vanishing_depth.training.finetune import lora_config_for_depth_stream

    torch.manual_seed(0)
    head = VanishingDepthForDepthEstimation(tester.config(depth_decoder_hidden_size=8))
    adapter = head.config.stream_adapter
    config = lora_config_for_depth_stream(r=2, model=head)
    peft_model = get_peft_model(head, config)
    lora = sorted({n.rsplit(".lora_", 1)[0] for n, _ in peft_model.named_parameters() if ".lora_" in n})
    assert len(lora) == 2 * 4  # q_proj and v_proj in each of the 4 depth blocks
    block = re.escape(adapter.blocks_path)
    assert all(re.search(rf"\.depth_encoder\.{block}\.\d+\.", n) and n.endswith(("q_proj", "v_proj")) for n in lora)
    # Every attention projection the adapter names is reachable.
    everything = lora_config_for_depth_stream(r=2, model=head, target_modules=adapter.attention_projections)
    assert isinstance(everything.target_modules, str)


@pytest.mark.parametrize("family", ["dinov2", "dinov3_vit"])
def test_trust_remote_code_loads_without_the_package(family, tmp_path):
    tester = FAMILIES[family]
    model = tester.model()
    model.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "streams_vanishing_depth.py").is_file()
    inputs = tester.inputs(batch=1)
    expected = model(**inputs).feature_maps[-1]
    torch.save({**inputs, "expected": expected}, tmp_path / "io.pt")
    script = f"""
{HIDE_PACKAGE}
import torch
from transformers import AutoModel
model = AutoModel.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True).eval()
io = torch.load({str(tmp_path / "io.pt")!r})
out = model(pixel_values=io['pixel_values'], depth_values=io['depth_values']).feature_maps[-1]
assert 'transformers_modules' in type(model).__module__, type(model).__module__
assert torch.equal(out, io['expected'])
print('REMOTE-CODE-OK')
"""
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REMOTE-CODE-OK" in result.stdout


@pytest.mark.parametrize("family", ["dinov3_vit", "siglip"])
def test_dynamic_export_through_export_model(family, tmp_path):
    """`export_model` keeps batch, height and width free for the patch-16 families too (the position-embedding
    shortcut of each family is traced in its general branch)."""
    from vanishing_depth.export import export_model, verify_torch_export

    tester = FAMILIES[family]
    model = tester.model()
    size = tester.image_size
    result = export_model(model, tmp_path / f"{family}.pt2", format="torch_export", height=size, width=size)
    generator = torch.Generator().manual_seed(1)
    inputs = [
        {
            "pixel_values": torch.randn(batch, 3, height, width, generator=generator),
            "depth_values": 5.0 * torch.rand(batch, 1, height, width, generator=generator),
        }
        for batch, height, width in ((1, size, size), (2, size - tester.patch_size, size + tester.patch_size))
    ]
    assert result.dynamic and max(verify_torch_export(result.path, model, inputs).values()) < 1e-5
