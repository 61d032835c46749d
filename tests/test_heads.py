"""Task heads on the encoder: segmentation, depth completion, classification (tiny configs, CPU, synthetic data)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForDepthEstimation,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
)
from transformers.modeling_outputs import DepthEstimatorOutput, ImageClassifierOutput, SemanticSegmenterOutput

import vanishing_depth
from conftest import HIDE_PACKAGE, random_rgbd, tiny_config
from vanishing_depth import (
    VanishingDepthConfig,
    VanishingDepthForDepthEstimation,
    VanishingDepthForImageClassification,
    VanishingDepthForSemanticSegmentation,
    VanishingDepthImageProcessor,
    VanishingDepthModel,
)
from vanishing_depth.data import render_synthetic_scene
from vanishing_depth.loss_vanishing_depth import masked_silog_l1_loss

HEAD_CASES = {
    "seg-linear": (VanishingDepthForSemanticSegmentation, {"num_labels": 3}),
    "seg-multiscale": (
        VanishingDepthForSemanticSegmentation,
        {"num_labels": 3, "segmentation_head": "multiscale", "segmentation_decoder_hidden_size": 16},
    ),
    "depth": (VanishingDepthForDepthEstimation, {"depth_decoder_hidden_size": 16}),
    "classification": (VanishingDepthForImageClassification, {"num_labels": 2}),
}


def make_head(name: str, **overrides):
    cls, kwargs = HEAD_CASES[name]
    torch.manual_seed(0)
    return cls(tiny_config(**{**kwargs, **overrides}))


@pytest.fixture(scope="module")
def scenes():
    """4 synthetic room frames at 56x56 as model inputs, with labels for every task."""
    processor = VanishingDepthImageProcessor(size={"height": 56, "width": 56})
    frames = [render_synthetic_scene(56, 56, seed) for seed in range(4)]
    inputs = processor(images=[rgb for rgb, _ in frames], depth=[depth for _, depth in frames])
    depth = inputs["depth_values"]
    # Segmentation: three depth bands (a task the depth features make learnable); no depth -> ignored (255).
    bands = torch.bucketize(depth[:, 0], torch.tensor([2.5, 4.5]))
    seg = torch.where(depth[:, 0] > 0, bands, torch.full_like(bands, 255))
    mean_depth = torch.stack([d[d > 0].mean() for d in depth[:, 0]])
    return {
        "pixel_values": inputs["pixel_values"],
        "depth_values": depth,
        "seg": seg,
        "depth_gt": depth[:, 0],
        "cls": (mean_depth > mean_depth.median()).long(),
    }


def labels_for(name: str, scenes) -> torch.Tensor:
    key = {"seg-linear": "seg", "seg-multiscale": "seg", "depth": "depth_gt", "classification": "cls"}[name]
    return scenes[key]


# ---------------------------------------------------------------------------------------------------------------------
# Shapes, outputs, config
# ---------------------------------------------------------------------------------------------------------------------
def test_head_outputs_and_shapes():
    rgb, depth = random_rgbd()
    seg = make_head("seg-linear").eval()
    out = seg(pixel_values=rgb, depth_values=depth)
    assert isinstance(out, SemanticSegmenterOutput) and out.loss is None
    assert out.logits.shape == (2, 3, 4, 4)  # stride 14
    assert seg(pixel_values=rgb, depth_values=depth, upsample_logits=True).logits.shape == (2, 3, 56, 56)
    multi = make_head("seg-multiscale").eval()
    assert multi(pixel_values=rgb, depth_values=depth).logits.shape == (2, 3, 14, 14)  # stride 4

    completion = make_head("depth").eval()
    out = completion(pixel_values=rgb, depth_values=depth)
    assert isinstance(out, DepthEstimatorOutput)
    assert out.predicted_depth.shape == (2, 56, 56) and out.predicted_depth.dtype == torch.float32
    # A fresh head starts at a plausible metric depth with every decode-dist term alive (METHOD §2.5 output).
    assert 1.0 < float(out.predicted_depth.detach().mean()) < 5.0
    assert completion(pixel_values=rgb).predicted_depth.shape == (2, 56, 56)  # no depth at all: RGB only

    classifier = make_head("classification").eval()
    out = classifier(pixel_values=rgb, depth_values=depth)
    assert isinstance(out, ImageClassifierOutput) and out.logits.shape == (2, 2)
    assert classifier(pixel_values=rgb, depth_values=depth, return_dict=False)[0].shape == (2, 2)


def test_heads_work_with_two_fusion_layers():
    rgb, depth = random_rgbd(batch=1)
    config = tiny_config(rgb_overrides={"num_hidden_layers": 2}, num_labels=3, segmentation_head="multiscale",
                         segmentation_decoder_hidden_size=8, depth_decoder_hidden_size=8)  # fmt: skip
    assert config.fusion_layers == [0, 1]
    assert VanishingDepthForSemanticSegmentation(config).eval()(pixel_values=rgb).logits.shape == (1, 3, 14, 14)
    assert VanishingDepthForDepthEstimation(config).eval()(pixel_values=rgb).predicted_depth.shape == (1, 56, 56)


def test_head_config_fields_round_trip_and_validate(tmp_path):
    config = tiny_config(segmentation_head="multiscale", semantic_loss_ignore_index=0, freeze_encoder=False)
    config.save_pretrained(tmp_path)
    loaded = VanishingDepthConfig.from_pretrained(tmp_path)
    assert (loaded.segmentation_head, loaded.semantic_loss_ignore_index, loaded.freeze_encoder) == (
        "multiscale",
        0,
        False,
    )
    defaults = VanishingDepthConfig()
    assert defaults.freeze_encoder is True and defaults.segmentation_head == "linear"
    assert defaults.semantic_loss_ignore_index == 255 and defaults.depth_decoder_hidden_size == 128
    for kwargs, field in [
        ({"segmentation_head": "upernet"}, "segmentation_head"),
        ({"freeze_encoder": "yes"}, "freeze_encoder"),
        ({"depth_decoder_hidden_size": 0}, "depth_decoder_hidden_size"),
        ({"depth_loss_silog_weight": 0.0, "depth_loss_l1_weight": 0.0}, "depth_loss_silog_weight"),
    ]:
        with pytest.raises(ValueError, match=field):
            tiny_config(**kwargs)
    with pytest.raises(ValueError, match="num_labels"):
        VanishingDepthForSemanticSegmentation(tiny_config(num_labels=1))


# ---------------------------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------------------------
def test_segmentation_loss_is_cross_entropy_on_upsampled_logits_with_ignore_index():
    rgb, depth = random_rgbd()
    model = make_head("seg-linear").eval()
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (2, 56, 56), generator=generator)
    labels[:, :10] = 255
    out = model(pixel_values=rgb, depth_values=depth, labels=labels)
    upsampled = torch.nn.functional.interpolate(out.logits, size=(56, 56), mode="bilinear", align_corners=False)
    expected = torch.nn.functional.cross_entropy(upsampled, labels, ignore_index=255)
    torch.testing.assert_close(out.loss, expected)
    # Labels of another size than the input: the logits follow the labels.
    small = labels[:, ::2, ::2].contiguous()
    assert torch.isfinite(model(pixel_values=rgb, depth_values=depth, labels=small).loss)
    # Every pixel ignored: a zero loss that still back-propagates, never NaN.
    model.train()
    loss = model(pixel_values=rgb, depth_values=depth, labels=torch.full_like(labels, 255)).loss
    assert float(loss) == 0.0
    loss.backward()


def test_depth_loss_is_masked_silog_plus_l1_on_valid_pixels():
    rgb, depth = random_rgbd()
    model = make_head("depth").eval()
    gt = depth[:, 0].clone()
    out = model(pixel_values=rgb, depth_values=depth * (torch.rand_like(depth) < 0.05), labels=gt)
    torch.testing.assert_close(out.loss, masked_silog_l1_loss(out.predicted_depth, gt))
    # (B, 1, H, W) labels are accepted; invalid pixels (0 or NaN) do not count.
    with_nan = torch.where(gt > 0, gt, torch.full_like(gt, float("nan")))
    reference = model(pixel_values=rgb, labels=gt).loss
    assert torch.equal(model(pixel_values=rgb, labels=gt[:, None]).loss, reference)
    assert torch.equal(model(pixel_values=rgb, labels=with_nan).loss, reference)
    no_gt = model(pixel_values=rgb, labels=torch.zeros_like(gt))
    assert float(no_gt.loss) == 0.0


def test_labels_are_validated_with_clear_errors():
    rgb, depth = random_rgbd()
    seg = make_head("seg-linear").eval()
    with pytest.raises(ValueError, match="labels"):
        seg(pixel_values=rgb, labels=torch.full((2, 56, 56), 7))
    with pytest.raises(ValueError, match="int64"):
        seg(pixel_values=rgb, labels=torch.zeros(2, 56, 56))
    with pytest.raises(ValueError, match="metres"):
        make_head("depth").eval()(pixel_values=rgb, labels=torch.zeros(2, 56, 56, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        make_head("classification").eval()(pixel_values=rgb, labels=torch.tensor([0, 5]))


# ---------------------------------------------------------------------------------------------------------------------
# Training on synthetic data
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, lr", [("seg-linear", 3e-2), ("seg-multiscale", 1e-2), ("depth", 3e-3), ("classification", 3e-2)]
)
def test_head_trains_loss_falls_and_frozen_encoder_is_untouched(name, lr, scenes):
    model = make_head(name).train()
    encoder_before = {k: v.clone() for k, v in model.vanishing_depth.state_dict().items()}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(model.head_module_names) for n in trainable)
    assert not model.vanishing_depth.training  # frozen encoder stays in eval mode under .train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    labels = labels_for(name, scenes)
    losses = []
    for _ in range(8):
        loss = model(pixel_values=scenes["pixel_values"], depth_values=scenes["depth_values"], labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert all(np.isfinite(losses))
    assert min(losses[-3:]) < 0.8 * losses[0], losses
    for key, value in model.vanishing_depth.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key


def test_unfrozen_encoder_trains_depth_stream_and_fusion_but_not_rgb(scenes):
    model = make_head("depth", freeze_encoder=False).train()
    assert model.vanishing_depth.training and model.vanishing_depth.depth_encoder.training
    assert not model.vanishing_depth.rgb_encoder.training
    before = {k: v.clone() for k, v in model.vanishing_depth.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(
        pixel_values=scenes["pixel_values"], depth_values=scenes["depth_values"], labels=scenes["depth_gt"]
    ).loss
    loss.backward()
    optimizer.step()
    after = model.vanishing_depth.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("depth_encoder.") for k in changed)
    assert any(k.startswith("fusions.") for k in changed)
    assert not any(k.startswith("rgb_encoder.") for k in changed)


# ---------------------------------------------------------------------------------------------------------------------
# Loading through the Auto classes
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    torch.manual_seed(0)
    encoder = VanishingDepthModel(tiny_config())
    folder = tmp_path_factory.mktemp("encoder")
    encoder.save_pretrained(folder)
    return folder, encoder


@pytest.mark.parametrize(
    "auto, cls, kwargs, head",
    [
        (AutoModelForSemanticSegmentation, VanishingDepthForSemanticSegmentation, {"num_labels": 5}, "decode_head"),
        (AutoModelForDepthEstimation, VanishingDepthForDepthEstimation, {"depth_decoder_hidden_size": 8}, "depth_head"),
        (AutoModelForImageClassification, VanishingDepthForImageClassification, {"num_labels": 4}, "classifier"),
    ],
)
def test_auto_class_loads_encoder_and_initialises_only_the_head(auto, cls, kwargs, head, encoder_dir, caplog):
    folder, encoder = encoder_dir
    with caplog.at_level(logging.WARNING, logger="vanishing_depth"):
        model, info = auto.from_pretrained(folder, output_loading_info=True, **kwargs)
    assert type(model) is cls
    assert info["missing_keys"] and all(key.startswith(head + ".") for key in info["missing_keys"])
    assert not info["unexpected_keys"]
    message = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "newly initialised task head" in message and head in message and str(folder) in message
    expected = encoder.state_dict()
    for key, value in model.vanishing_depth.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert not any(p.requires_grad for p in model.vanishing_depth.parameters())
    assert all(p.requires_grad for p in getattr(model, head).parameters())
    model.train()
    assert not model.vanishing_depth.training


def test_saved_head_round_trips_and_its_encoder_loads_alone(tmp_path):
    model = make_head("seg-multiscale").eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    rgb, depth = random_rgbd()
    assert torch.equal(
        model(pixel_values=rgb, depth_values=depth).logits, loaded(pixel_values=rgb, depth_values=depth).logits
    )
    encoder = AutoModel.from_pretrained(tmp_path)
    assert isinstance(encoder, VanishingDepthModel)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, model.vanishing_depth.state_dict()[key]), key


def test_readme_snippet_semantic_segmentation_from_an_encoder(encoder_dir):
    folder, _ = encoder_dir
    model = AutoModelForSemanticSegmentation.from_pretrained(folder, num_labels=37)  # encoder frozen, head new
    assert model.config.num_labels == 37 and len(model.config.id2label) == 37
    assert model.config.freeze_encoder and not any(p.requires_grad for p in model.vanishing_depth.parameters())
    rgb, depth = random_rgbd(batch=1)
    assert model.eval()(pixel_values=rgb, depth_values=depth).logits.shape == (1, 37, 4, 4)


def test_depth_head_loads_as_remote_code_without_the_package(tmp_path):
    model = make_head("depth").eval()
    model.save_pretrained(tmp_path / "model")
    rgb, depth = random_rgbd(batch=1)
    expected = model(pixel_values=rgb, depth_values=depth).predicted_depth
    torch.save({"rgb": rgb, "depth": depth, "expected": expected}, tmp_path / "io.pt")
    script = f"""
{HIDE_PACKAGE}
import torch
from transformers import AutoModelForDepthEstimation
model = AutoModelForDepthEstimation.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True).eval()
assert 'transformers_modules' in type(model).__module__, type(model).__module__
io = torch.load({str(tmp_path / "io.pt")!r})
assert torch.equal(model(pixel_values=io['rgb'], depth_values=io['depth']).predicted_depth, io['expected'])
print('REMOTE-HEAD-OK')
"""
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REMOTE-HEAD-OK" in result.stdout


def test_package_exports_the_heads():
    assert {
        "VanishingDepthForSemanticSegmentation",
        "VanishingDepthForDepthEstimation",
        "VanishingDepthForImageClassification",
    } <= set(vanishing_depth.__all__)
