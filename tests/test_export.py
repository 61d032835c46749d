"""Export: ONNX (checked with onnxruntime) and torch.export (.pt2) graphs that take depth in metres and match PyTorch."""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import sys

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
    _trace_size,
    add_export_subcommand,
    export_model,
    verify_onnx,
    verify_torch_export,
)
from vanishing_depth.modeling_vanishing_depth import VanishingDepthForPretraining

ENCODER_OUTPUTS = ["feature_maps_0", "feature_maps_1", "feature_maps_2", "feature_maps_3", "last_hidden_state"]
# (height, width) x batch sizes a dynamic graph is checked at: the 56 px export/pretraining size, and another one.
CHECK_SIZES = [(56, 56), (42, 70)]
CHECK_BATCHES = [1, 3]
ONNX_HINT = "pip install 'vanishing-depth[onnx]'"


@pytest.fixture(scope="module")
def saved_encoder(tmp_path_factory):
    """A tiny encoder (hidden 32, 4 blocks, 56 px grid) saved to a folder, and the model itself."""
    folder = tmp_path_factory.mktemp("export") / "vd-tiny"
    torch.manual_seed(0)
    model = VanishingDepthModel(tiny_config()).eval()
    model.save_pretrained(str(folder))
    return folder, model


@pytest.fixture(scope="module")
def encoder_onnx(saved_encoder, tmp_path_factory):
    """The tiny encoder exported to ONNX once, with the default (dynamic) shapes and a 56 x 56 example."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    folder, _ = saved_encoder
    return export_model(folder, tmp_path_factory.mktemp("onnx") / "vd.onnx", format="onnx", height=56, width=56)


def _sensor_frame(seed: int, batch: int = 1, height: int = 56, width: int = 56) -> dict[str, torch.Tensor]:
    """Frames as a robot has them: normalised RGB and raw depth in metres with 30 % holes (0)."""
    rgb, depth = random_rgbd(batch=batch, height=height, width=width, seed=seed)
    return {"pixel_values": rgb, "depth_values": depth}


def _run_onnx(path, pixel_values: torch.Tensor, depth_values: torch.Tensor) -> list[torch.Tensor]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"pixel_values": pixel_values.numpy(), "depth_values": depth_values.numpy()}
    return [torch.from_numpy(value) for value in session.run(None, feed)]


def test_onnx_is_dynamic_in_batch_height_width_and_matches_pytorch(encoder_onnx, saved_encoder):
    onnx = pytest.importorskip("onnx")
    _, model = saved_encoder
    result = encoder_onnx
    assert result.exporter == "torch.onnx (dynamo)" and result.output_names == ENCODER_OUTPUTS and result.dynamic

    proto = onnx.load(str(result.path))
    assert proto.opset_import[0].version >= 17
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    for name, channels in (("pixel_values", 3), ("depth_values", 1)):  # depth in metres, not PDE channels
        batch, fixed, height, width = dims[name]
        assert fixed == channels and all(isinstance(axis, str) for axis in (batch, height, width)), dims
        assert len({batch, height, width}) == 3, dims  # not merged with each other
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert "metres" in metadata["depth_values"] and "NaN" in metadata["depth_values"]
    assert json.loads(metadata["dynamic_axes"]) == {
        name: {"0": "batch", "2": "height", "3": "width"} for name in ("pixel_values", "depth_values")
    }

    # Another batch size and another H x W than the export example: the position embeddings are interpolated
    # (bicubic) inside the graph, and the result is still the PyTorch model's.
    frames = [
        _sensor_frame(seed=5, batch=batch, height=height, width=width)
        for (height, width), batch in itertools.product(CHECK_SIZES, CHECK_BATCHES)
    ]
    differences = verify_onnx(result.path, model, frames)
    assert list(differences) == ENCODER_OUTPUTS
    # Well inside the 1e-4 contract: the PDE frequency ladder is baked bit-identically (see _eager_pde_constants).
    assert max(differences.values()) < 2e-5, differences

    # The check can fail: a model with other weights does not match the exported graph.
    other = VanishingDepthModel(tiny_config()).eval()
    with pytest.raises(AssertionError, match="at batch 3, 42 x 70: .*max abs diff"):
        verify_onnx(result.path, other, _sensor_frame(seed=5, batch=3, height=42, width=70))


def test_onnx_counts_nan_inf_and_negative_depth_as_missing(encoder_onnx, saved_encoder):
    _, model = saved_encoder
    frame = _sensor_frame(seed=9, batch=2, height=42, width=70)
    rgb, depth = frame["pixel_values"], frame["depth_values"]
    corrupted = depth.clone()
    corrupted[0, 0, :5] = float("nan")  # ROS 32FC1 marks invalid depth with NaN
    corrupted[0, 0, 10, :7] = float("inf")
    corrupted[1, 0, 20:, 30:] = -float("inf")
    corrupted[1, 0, :3, :9] = -0.5
    missing = ~torch.isfinite(corrupted) | (corrupted < 0)
    assert int(missing.sum()) > 400
    zeroed = torch.where(missing, torch.zeros_like(depth), depth)

    with pytest.raises(ValueError, match="depth_values"):  # the eager model refuses such input ...
        model(pixel_values=rgb, depth_values=corrupted)
    # ... the export wrapper (and so the graph) reads it as missing: exactly the eager outputs for 0 at those pixels.
    wrapper = VanishingDepthExportWrapper(model, (rgb, zeroed))
    with torch.no_grad():
        eager = model(pixel_values=rgb, depth_values=zeroed)
        wrapped = wrapper(rgb, corrupted)
    for got, expected in zip(wrapped, (*eager.feature_maps, eager.last_hidden_state), strict=True):
        assert torch.equal(got, expected)

    from_corrupted = _run_onnx(encoder_onnx.path, rgb, corrupted)
    from_zeroed = _run_onnx(encoder_onnx.path, rgb, zeroed)
    for name, got, same, expected in zip(ENCODER_OUTPUTS, from_corrupted, from_zeroed, wrapped, strict=True):
        assert torch.isfinite(got).all(), name
        assert torch.equal(got, same), name  # identical to feeding 0 there
        assert (got - expected).abs().max() < 2e-5, name


def test_onnx_static_export_keeps_its_size(saved_encoder, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    _, model = saved_encoder
    result = export_model(model, tmp_path / "static.onnx", height=56, width=70, batch_size=2, dynamic=False)
    assert not result.dynamic
    proto = onnx.load(str(result.path))
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert dims == {"pixel_values": [2, 3, 56, 70], "depth_values": [2, 1, 56, 70]}
    assert json.loads({p.key: p.value for p in proto.metadata_props}["dynamic_axes"]) == {}
    assert max(verify_onnx(result.path, model, _sensor_frame(seed=2, batch=2, width=70)).values()) < 2e-5
    with pytest.raises(AssertionError, match="dynamic=False"):
        verify_onnx(result.path, model, _sensor_frame(seed=2, batch=1, width=70))


def test_trace_size_keeps_batch_height_width_apart():
    # torch.export fixes a size of 1 and merges equal sizes: the trace size avoids both, changing as little as it can.
    assert _trace_size(1, 224, 224, 14) == (2, 224, 238)
    assert _trace_size(4, 56, 70, 14) == (6, 56, 70)  # batch 4 = 56 / 14 and 5 = 70 / 14 would be merged
    assert _trace_size(8, 28, 98, 14) == (8, 42, 98)  # at least 3 patches


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
def test_completion_and_pretraining_models_export_their_own_outputs(
    tmp_path, capfd, caplog, model_class, format, outputs
):
    """A folder holding a completion (or pretraining) model exports that model: raw metres in, metric depth out, at
    any batch size and size; and the export says next to nothing."""
    if format == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    torch.manual_seed(1)
    model_class(tiny_config()).eval().save_pretrained(str(tmp_path / "model"))
    levels = {name: logging.getLogger(name).level for name in ("torch.onnx", "torch.export", "onnxscript")}
    capfd.readouterr()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        result = export_model(tmp_path / "model", tmp_path / f"model.{format}", format=format, height=56, width=56)
    printed = capfd.readouterr()
    lines = [line for line in (printed.out + printed.err).splitlines() if line.strip()]
    # No exporter progress ("[torch.onnx] Obtain model graph..."), registry warnings or reports: one INFO record.
    assert len(lines) <= 3, lines
    assert len(caplog.records) <= 3, [record.getMessage() for record in caplog.records]
    assert {name: logging.getLogger(name).level for name in levels} == levels  # restored after the export

    assert result.output_names == outputs and result.dynamic  # the loss and other training-only fields are not exported
    model = model_class.from_pretrained(str(tmp_path / "model")).eval()
    verify = verify_onnx if format == "onnx" else verify_torch_export
    # Batch 1 and 3 at the example size and another one; 112 x 84: an 8 x 6 token grid, where the decoders'
    # stride-16 maps (7 x 6) differ from the token grid and the equal-size shortcuts of the eager model are not taken.
    frames = [
        _sensor_frame(seed=7, batch=batch, height=height, width=width)
        for batch, height, width in [(1, 56, 56), (3, 42, 70), (1, 112, 84)]
    ]
    assert max(verify(result.path, model, frames).values()) < 2e-5


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
    with pytest.raises(ValueError, match="`dynamic` must be True .* got 'yes'"):
        export_model(model, tmp_path / "x.pt2", format="torch_export", dynamic="yes")
    with pytest.raises(ValueError, match="output_fields"):
        export_model(model, tmp_path / "x.pt2", format="torch_export", height=56, width=56, output_fields=["logits"])


def _export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_export_subcommand(parser.add_subparsers())
    return parser


@pytest.mark.parametrize("missing", ["onnx", "onnxscript"])
def test_missing_onnx_packages_give_one_line_naming_the_extra(saved_encoder, tmp_path, monkeypatch, capsys, missing):
    folder, model = saved_encoder
    monkeypatch.setitem(sys.modules, missing, None)  # what `import onnx` sees when it is not installed
    with pytest.raises(ImportError, match=re.escape(ONNX_HINT)) as error:
        # Raised before any work: the folder is not even read.
        export_model(tmp_path / "no-such-folder", tmp_path / "x.onnx", format="onnx")
    assert missing in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "x.onnx").exists()

    args = _export_parser().parse_args(["export", "--model", str(folder), "--output", str(tmp_path / "cli.onnx")])
    assert args.func(args) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err.count("\n") == 1 and printed.err.startswith("error: ")
    assert ONNX_HINT in printed.err and missing in printed.err
    assert not (tmp_path / "cli.onnx").exists()


def test_missing_onnxruntime_for_the_check_gives_one_line(saved_encoder, tmp_path, monkeypatch, capsys):
    folder, model = saved_encoder
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"verify_onnx needs onnxruntime.*" + re.escape(ONNX_HINT)):
        verify_onnx(tmp_path / "x.onnx", model, _sensor_frame(seed=1))
    args = _export_parser().parse_args(["export", "--model", str(folder), "--output", str(tmp_path / "cli.onnx")])
    assert args.func(args) == 2
    printed = capsys.readouterr().err
    assert printed.count("\n") == 1 and "onnxruntime" in printed and "--no-verify" in printed and ONNX_HINT in printed


def test_cli_torch_export_round_trip(saved_encoder, tmp_path, capsys):
    folder, model = saved_encoder
    output = tmp_path / "cli.pt2"
    args = _export_parser().parse_args(
        ["export", "--model", str(folder), "--format", "torch_export", "--height", "56", "--width", "70"]
        + ["--output", str(output)]
    )
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["path"] == str(output) and output.is_file() and summary["dynamic"] is True
    assert summary["inputs"] == ["pixel_values", "depth_values"] and summary["outputs"] == ENCODER_OUTPUTS
    assert summary["checked_sizes"] == [[1, 56, 70], [2, 70, 98]]  # the example, and one batch and size more
    assert max(summary["max_abs_diff"].values()) < 1e-5

    # A fresh load of the saved program, as a deployment would do, computes what the model computes, at any batch
    # size and size (multiples of 14), with NaN / inf / negative depth read as missing.
    program = torch.export.load(str(output))
    for batch, height, width in [(1, 56, 70), (3, 84, 42)]:
        rgb, depth = random_rgbd(batch=batch, height=height, width=width, seed=6)
        corrupted = depth.clone()
        corrupted[:, :, :4] = float("nan")
        corrupted[:, :, -1] = -1.0
        depth[:, :, :4] = 0.0
        depth[:, :, -1] = 0.0
        with torch.no_grad():
            exported = program.module()(rgb, corrupted)
            reference = model(pixel_values=rgb, depth_values=depth)
        assert len(exported) == 5
        for got, expected in zip(exported, (*reference.feature_maps, reference.last_hidden_state), strict=True):
            assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5, rtol=0)

    # --static: the program keeps the example size and refuses another.
    args = _export_parser().parse_args(
        ["export", "--model", str(folder), "--format", "torch_export", "--height", "56", "--width", "70"]
        + ["--static", "--no-verify", "--output", str(tmp_path / "static.pt2")]
    )
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["dynamic"] is False
    static = torch.export.load(str(tmp_path / "static.pt2")).module()
    rgb, depth = random_rgbd(batch=2, height=56, width=70, seed=6)
    with torch.no_grad():
        assert static(rgb[:1], depth[:1])[0].shape == (1, 64, 4, 5)
        with pytest.raises((AssertionError, RuntimeError), match="pixel_values"):
            static(rgb, depth)


def test_pde_at_full_width_exports_without_patching_the_model(tmp_path):
    """32 PDE channels and depth up to 15 m (angles of ~2e3 rad): the frequency ladder is a constant computed once in
    Python double precision, so the exported program gives the eager numbers without export-time patches."""
    from vanishing_depth.export import export_model, verify_torch_export

    torch.manual_seed(0)
    model = VanishingDepthModel(tiny_config(pde_channels=32)).eval()
    result = export_model(model, tmp_path / "pde32.pt2", format="torch_export", height=56, width=70)
    generator = torch.Generator().manual_seed(3)
    inputs = {
        "pixel_values": torch.randn(2, 3, 42, 56, generator=generator),
        "depth_values": 14.9 * torch.rand(2, 1, 42, 56, generator=generator),
    }
    differences = verify_torch_export(result.path, model, inputs)
    assert max(differences.values()) < 1e-5
