"""Export: ONNX (checked with onnxruntime) and torch.export (.pt2) graphs that take depth in metres and match PyTorch."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from torch import nn
from transformers.modeling_outputs import DepthEstimatorOutput

from conftest import random_rgbd, tiny_config
from vanishing_depth import (
    VanishingDepthConfig,
    VanishingDepthForDepthEstimation,
    VanishingDepthModel,
    VanishingDepthPreTrainedModel,
)
from vanishing_depth.export import (
    VanishingDepthExportWrapper,
    add_export_subcommand,
    export_model,
    verify_onnx,
    verify_torch_export,
)
from vanishing_depth.modeling_vanishing_depth import VanishingDepthForPretraining

ENCODER_OUTPUTS = ["feature_maps_0", "feature_maps_1", "feature_maps_2", "feature_maps_3", "last_hidden_state"]


@pytest.fixture(scope="module")
def saved_encoder(tmp_path_factory):
    """A tiny encoder (hidden 32, 4 blocks, 56 px grid) saved to a folder, and the model itself."""
    folder = tmp_path_factory.mktemp("export") / "vd-tiny"
    torch.manual_seed(0)
    model = VanishingDepthModel(tiny_config()).eval()
    model.save_pretrained(str(folder))
    return folder, model


def _sensor_frame(seed: int) -> dict[str, torch.Tensor]:
    """One frame as a robot has it: normalised RGB and raw depth in metres with 30 % holes (0)."""
    rgb, depth = random_rgbd(batch=1, seed=seed)
    return {"pixel_values": rgb, "depth_values": depth}


def test_onnx_matches_pytorch_through_onnxruntime(saved_encoder, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    folder, model = saved_encoder
    result = export_model(folder, tmp_path / "vd.onnx", format="onnx", height=56, width=56)
    assert result.exporter == "torch.onnx (dynamo)" and result.output_names == ENCODER_OUTPUTS

    proto = onnx.load(str(result.path))
    assert proto.opset_import[0].version >= 17
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert shapes == {"pixel_values": [1, 3, 56, 56], "depth_values": [1, 1, 56, 56]}  # depth in metres, not PDE
    assert "metres" in {p.key: p.value for p in proto.metadata_props}["depth_values"]

    differences = verify_onnx(result.path, model, _sensor_frame(seed=5))
    assert list(differences) == ENCODER_OUTPUTS
    # Well inside the 1e-4 contract: the PDE frequency ladder is baked bit-identically (see _eager_pde_constants).
    assert max(differences.values()) < 2e-5

    # The check can fail: a model with other weights does not match the exported graph.
    other = VanishingDepthModel(tiny_config()).eval()
    with pytest.raises(AssertionError, match="max abs diff"):
        verify_onnx(result.path, other, _sensor_frame(seed=5))


class UnknownCompletionModel(VanishingDepthPreTrainedModel):
    """A completion model of a class the package does not know: the encoder plus a 1x1 conv depth head."""

    def __init__(self, config: VanishingDepthConfig) -> None:
        super().__init__(config)
        self.vanishing_depth = VanishingDepthModel(config)
        self.head = nn.Conv2d(config.feature_channels, 1, kernel_size=1)
        self.post_init()

    def forward(self, pixel_values, depth_values=None, **kwargs):
        features = self.vanishing_depth(pixel_values=pixel_values, depth_values=depth_values).feature_maps[-1]
        return DepthEstimatorOutput(predicted_depth=nn.functional.softplus(self.head(features))[:, 0])


@pytest.mark.parametrize(
    "model_class, format, outputs",
    [
        (VanishingDepthForDepthEstimation, "onnx", ["predicted_depth"]),
        (
            VanishingDepthForPretraining,
            "torch_export",
            [f"predicted_depth_{k}" for k in range(4)] + ["last_hidden_state"],
        ),
    ],
)
def test_completion_and_pretraining_models_export_their_own_outputs(tmp_path, model_class, format, outputs):
    """A folder holding a completion (or pretraining) model exports that model: raw metres in, metric depth out."""
    if format == "onnx":
        pytest.importorskip("onnxruntime")
    torch.manual_seed(1)
    model_class(tiny_config()).eval().save_pretrained(str(tmp_path / "model"))
    result = export_model(tmp_path / "model", tmp_path / f"model.{format}", format=format, height=56, width=56)
    assert result.output_names == outputs  # the loss and other training-only fields are not exported
    model = model_class.from_pretrained(str(tmp_path / "model")).eval()
    verify = verify_onnx if format == "onnx" else verify_torch_export
    assert max(verify(result.path, model, _sensor_frame(seed=7)).values()) < 2e-5


def test_unknown_architecture_is_refused_with_its_name(tmp_path):
    model = UnknownCompletionModel(tiny_config()).eval()
    frame = _sensor_frame(seed=8)
    wrapper = VanishingDepthExportWrapper(model, (frame["pixel_values"], frame["depth_values"]))
    assert wrapper.output_names == ["predicted_depth"]  # any model's own tensor outputs, found by a probe forward
    model.save_pretrained(str(tmp_path / "unknown"))
    with pytest.raises(ValueError, match="UnknownCompletionModel"):
        export_model(tmp_path / "unknown", format="torch_export", height=56, width=56)


def test_bad_arguments_are_refused(saved_encoder, tmp_path):
    _, model = saved_encoder
    with pytest.raises(ValueError, match="multiple of the patch size 14"):
        export_model(model, tmp_path / "x.onnx", height=50, width=56)
    with pytest.raises(ValueError, match="format"):
        export_model(model, tmp_path / "x.tflite", format="tflite")
    with pytest.raises(ValueError, match="opset_version"):
        export_model(model, tmp_path / "x.onnx", opset_version=13)
    with pytest.raises(ValueError, match="output_fields"):
        export_model(model, tmp_path / "x.pt2", format="torch_export", height=56, width=56, output_fields=["logits"])


def test_cli_torch_export_round_trip(saved_encoder, tmp_path, capsys):
    folder, model = saved_encoder
    parser = argparse.ArgumentParser()
    add_export_subcommand(parser.add_subparsers())
    output = tmp_path / "cli.pt2"
    args = parser.parse_args(
        ["export", "--model", str(folder), "--format", "torch_export", "--height", "56", "--width", "70"]
        + ["--output", str(output)]
    )
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["path"] == str(output) and output.is_file()
    assert summary["inputs"] == ["pixel_values", "depth_values"] and summary["outputs"] == ENCODER_OUTPUTS
    assert max(summary["max_abs_diff"].values()) < 1e-5

    # A fresh load of the saved program, as a deployment would do, computes what the model computes.
    rgb, depth = random_rgbd(batch=1, width=70, seed=6)
    program = torch.export.load(str(output))
    with torch.no_grad():
        exported = program.module()(rgb, depth)
        reference = model(pixel_values=rgb, depth_values=depth)
    assert len(exported) == 5
    for got, expected in zip(exported, (*reference.feature_maps, reference.last_hidden_state), strict=True):
        assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5, rtol=0)
