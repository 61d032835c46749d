# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Export a Vanishing Depth model to ONNX or a `torch.export` program (``.pt2``) at a fixed input size.

The exported graph takes exactly what a robot's pipeline has: ``pixel_values`` `(B, 3, H, W)` ImageNet-normalised RGB
and ``depth_values`` `(B, 1, H, W)` raw sensor depth in **metres** (0 = missing). The positional depth encoding is
computed inside the graph, as in the PyTorch model, so no preprocessing of depth beyond unit conversion is needed.

Outputs are the model's output tensors, flattened in a fixed order: for the encoder (`VanishingDepthModel`)
``feature_maps_0 .. feature_maps_{n-1}`` (one `(B, 2D, H/14, W/14)` map per fusion layer) and ``last_hidden_state``
`(B, P + N, D)`; for a task or pretraining model every tensor field of its output except ``loss`` and hidden states
(e.g. ``predicted_depth``), tuples numbered ``name_0, name_1, ...``.

`verify_onnx` runs an exported file with onnxruntime (``pip install vanishing-depth[onnx]``) against PyTorch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import ModelOutput

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "torch_export")
DEFAULT_OPSET = 18
INPUT_NAMES = ("pixel_values", "depth_values")
# Never exported: training-only or memory-heavy fields.
SKIPPED_OUTPUT_FIELDS = ("loss", "hidden_states", "rgb_hidden_states", "attentions")
ENCODER_OUTPUT_FIELDS = ("feature_maps", "last_hidden_state")
_AUTO_CLASS_NAMES = (
    "AutoModel",
    "AutoBackbone",
    "AutoModelForDepthEstimation",
    "AutoModelForSemanticSegmentation",
    "AutoModelForImageClassification",
    "AutoModelForPreTraining",
)


# ----------------------------------------------------------------------------------------------------------------------
# Loading a saved folder with the class it was saved from
# ----------------------------------------------------------------------------------------------------------------------
def resolve_model_class(architecture: str) -> type[PreTrainedModel]:
    """The class named in ``config.json``'s ``architectures``: from the package (its modeling module included), or
    from any transformers Auto class it is registered with."""
    import transformers

    import vanishing_depth
    from vanishing_depth import VanishingDepthConfig, modeling_vanishing_depth

    for module in (vanishing_depth, modeling_vanishing_depth):
        found = getattr(module, architecture, None)
        if isinstance(found, type) and issubclass(found, PreTrainedModel):
            return found
    for auto_name in _AUTO_CLASS_NAMES:
        auto_class = getattr(transformers, auto_name, None)
        mapping = getattr(auto_class, "_model_mapping", None)
        if mapping is None:
            continue
        try:
            candidate = mapping[VanishingDepthConfig]
        except KeyError:
            continue
        candidates = candidate if isinstance(candidate, (list, tuple)) else [candidate]
        for candidate in candidates:
            if getattr(candidate, "__name__", None) == architecture:
                return candidate
    raise ValueError(
        f"Architecture {architecture!r} (config.json `architectures`) is not a class of vanishing_depth nor registered "
        "with a transformers Auto class; import the module that defines it first, or pass the model instance."
    )


def load_model_from_folder(model_dir: str | os.PathLike, encoder_only: bool = False) -> PreTrainedModel:
    """Load a saved folder with its own class (``architectures[0]``), or the encoder alone with ``encoder_only``."""
    from transformers import AutoModel

    import vanishing_depth  # noqa: F401  (registers the Auto classes)

    model_dir = Path(model_dir)
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"`model_dir` must be a saved model folder with a config.json; got {str(model_dir)!r}.")
    if encoder_only:
        return AutoModel.from_pretrained(str(model_dir)).eval()
    architectures = json.loads(config_file.read_text(encoding="utf-8")).get("architectures") or ["VanishingDepthModel"]
    return resolve_model_class(architectures[0]).from_pretrained(str(model_dir)).eval()


# ----------------------------------------------------------------------------------------------------------------------
# The exported module
# ----------------------------------------------------------------------------------------------------------------------
def _flatten(output: ModelOutput, fields: Sequence[str]) -> tuple[list[str], list[torch.Tensor]]:
    names, tensors = [], []
    for name in fields:
        value = output[name]
        if isinstance(value, torch.Tensor):
            names.append(name)
            tensors.append(value)
        else:
            for index, item in enumerate(value):
                names.append(f"{name}_{index}")
                tensors.append(item)
    return names, tensors


class VanishingDepthExportWrapper(nn.Module):
    """`(pixel_values, depth_values)` -> a flat tuple of output tensors, the form exporters need.

    Args:
        model: a Vanishing Depth model whose forward takes ``pixel_values`` and ``depth_values`` (metres) and returns a
            `ModelOutput`.
        output_fields: output fields to export, in order; default: ``feature_maps`` and ``last_hidden_state`` for the
            encoder, every tensor field except `SKIPPED_OUTPUT_FIELDS` for other models (found by one probe forward).
        example_inputs: `(pixel_values, depth_values)` for the probe forward that fixes the output names.
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: tuple[torch.Tensor, torch.Tensor],
        output_fields: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        with torch.no_grad():
            output = model(pixel_values=example_inputs[0], depth_values=example_inputs[1])
        if not isinstance(output, ModelOutput):
            raise ValueError(
                f"`model` must return a transformers ModelOutput to be exported, got {type(output).__name__}."
            )
        available = [key for key, value in output.items() if value is not None]
        if output_fields is None:
            # By name, so that a remote-code copy of the encoder class (trust_remote_code=True) counts too.
            if type(model).__name__ == "VanishingDepthModel":
                output_fields = ENCODER_OUTPUT_FIELDS
            else:
                output_fields = [key for key in available if key not in SKIPPED_OUTPUT_FIELDS]
        missing = [name for name in output_fields if name not in available]
        if missing or not output_fields:
            raise ValueError(
                f"`output_fields` {list(output_fields)} must name outputs of the model; it has {available}."
            )
        self.output_fields = tuple(output_fields)
        self.output_names, _ = _flatten(output, self.output_fields)

    def forward(self, pixel_values: torch.Tensor, depth_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.model(pixel_values=pixel_values, depth_values=depth_values)
        return tuple(_flatten(output, self.output_fields)[1])


def _find_config(model: nn.Module):
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "rgb_config"):
        raise ValueError(
            f"`model` must be a Vanishing Depth model (a config with `rgb_config`), got {type(model).__name__}."
        )
    return config


def example_inputs(
    config, height: int = 224, width: int = 224, batch_size: int = 1, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random `(pixel_values (B, 3, H, W), depth_values (B, 1, H, W) metres)` with 30 % missing depth, for tracing
    and checks; `generator` makes them replayable (default: seed 0)."""
    patch = config.patch_size
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, int) or value < patch or value % patch:
            raise ValueError(f"`{name}` must be a positive multiple of the patch size {patch} px, got {value!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    pixel_values = torch.randn(batch_size, 3, height, width, generator=generator)
    max_depth = float(getattr(config, "max_depth", 10.0))
    depth = 0.2 + (0.9 * max_depth - 0.2) * torch.rand(batch_size, 1, height, width, generator=generator)
    depth[torch.rand(batch_size, 1, height, width, generator=generator) < 0.3] = 0.0
    return pixel_values, depth


@contextlib.contextmanager
def _eager_pde_constants(model: nn.Module) -> Iterator[None]:
    """Bake the PDE frequency ladder computed in eager PyTorch into the exported graph.

    Traced for export, ``T ** (-2k/C)`` is computed through a different float64 path and can round one float32 ulp
    away from eager mode; at the top frequencies (angles of ~1e3 rad) that is ~1e-4 in sin/cos and breaks the 1e-4
    parity with PyTorch. Precomputing the ladder eagerly makes the exported constant bit-identical.
    """
    from . import modeling_vanishing_depth

    config = _find_config(model)
    key = (int(config.pde_channels), float(config.pde_temperature))
    # Our modeling module, and remote-code copies of it if the model came from one.
    owners = {modeling_vanishing_depth} | {sys.modules.get(type(module).__module__) for module in model.modules()}
    originals = {
        owner: owner.pde_inverse_periods
        for owner in owners
        if owner is not None and callable(getattr(owner, "pde_inverse_periods", None))
    }
    for module, original in originals.items():
        ladder = original(*key)

        def fixed(channels: int, temperature: float, _original=original, _ladder=ladder) -> torch.Tensor:
            if (int(channels), float(temperature)) == key:
                return _ladder
            return _original(channels, temperature)

        module.pde_inverse_periods = fixed
    try:
        yield
    finally:
        for module, original in originals.items():
            module.pde_inverse_periods = original


# ----------------------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class ExportResult:
    """What `export_model` wrote: the file, its format and exporter, and the graph's input and output names."""

    path: Path
    format: str
    exporter: str
    height: int
    width: int
    batch_size: int
    input_names: list[str] = field(default_factory=lambda: list(INPUT_NAMES))
    output_names: list[str] = field(default_factory=list)


def _default_output_path(model_dir: Path | None, format: str) -> Path:
    folder = (model_dir or Path.cwd()) / "export"
    return folder / ("model.onnx" if format == "onnx" else "model.pt2")


def _add_onnx_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    import onnx

    # External weight files (large models) stay where the exporter put them; only the graph proto is rewritten.
    proto = onnx.load(str(path), load_external_data=False)
    existing = {prop.key: prop for prop in proto.metadata_props}
    for key, value in metadata.items():
        entry = existing.get(key) or proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def export_model(
    model_dir_or_model: str | os.PathLike | nn.Module,
    output_path: str | os.PathLike | None = None,
    format: str = "onnx",
    height: int = 224,
    width: int = 224,
    batch_size: int = 1,
    opset_version: int = DEFAULT_OPSET,
    dynamo: bool | None = None,
    encoder_only: bool = False,
    output_fields: Sequence[str] | None = None,
) -> ExportResult:
    """Export a model at a fixed input size.

    Args:
        model_dir_or_model: a saved folder (loaded with the class in its ``architectures``) or a model instance.
        output_path: target file; default ``<model_dir>/export/model.onnx`` or ``.../model.pt2``.
        format: ``"onnx"`` or ``"torch_export"`` (a `torch.export.ExportedProgram` saved with `torch.export.save`).
        height, width: input size in pixels, multiples of the patch size (14).
        batch_size: fixed batch size of the graph.
        opset_version: ONNX opset (>= 17).
        dynamo: ONNX only. None: the `torch.export`-based exporter, falling back to the TorchScript exporter with a
            warning if it fails; True/False: force one.
        encoder_only: for a folder holding a task or pretraining model, export just its encoder.
        output_fields: model output fields to export (default: see `VanishingDepthExportWrapper`).

    Returns:
        `ExportResult` with the path and the graph's input/output names. Inputs: ``pixel_values`` `(B, 3, H, W)`
        ImageNet-normalised RGB and ``depth_values`` `(B, 1, H, W)` depth in metres, 0 = missing.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"`format` must be one of {EXPORT_FORMATS}, got {format!r}.")
    if format == "onnx" and (not isinstance(opset_version, int) or opset_version < 17):
        raise ValueError(f"`opset_version` must be an integer >= 17, got {opset_version!r}.")
    model_dir = None
    if isinstance(model_dir_or_model, nn.Module):
        model = model_dir_or_model
    elif isinstance(model_dir_or_model, (str, os.PathLike)):
        model_dir = Path(model_dir_or_model)
        model = load_model_from_folder(model_dir, encoder_only=encoder_only)
    else:
        raise ValueError(
            f"`model_dir_or_model` must be a saved folder or a model instance, got {type(model_dir_or_model).__name__}."
        )
    if model.training:
        logger.warning("Exporting a model in training mode: switching it to eval() (dropout off, frozen statistics).")
        model.eval()
    config = _find_config(model)
    inputs = example_inputs(config, height, width, batch_size)
    wrapper = VanishingDepthExportWrapper(model, inputs, output_fields=output_fields).eval()
    output_path = Path(output_path) if output_path is not None else _default_output_path(model_dir, format)
    output_path.parent.mkdir(parents=True, exist_ok=True)

    # Inference graphs: no autograd state (grad-mode switches inside forward would otherwise be traced as ops).
    with torch.no_grad(), _eager_pde_constants(model):
        if format == "torch_export":
            program = torch.export.export(wrapper, inputs, strict=False)
            torch.export.save(program, str(output_path))
            exporter = "torch.export"
        else:
            exporter = _export_onnx(wrapper, inputs, output_path, opset_version, dynamo)
    if format == "onnx":
        _add_onnx_metadata(
            output_path,
            {
                "producer": "vanishing-depth",
                "pixel_values": f"(B, 3, H, W) = {tuple(inputs[0].shape)} float32 RGB, ImageNet mean/std normalised",
                "depth_values": f"(B, 1, H, W) = {tuple(inputs[1].shape)} float32 depth in metres, 0 = missing",
                "outputs": ", ".join(wrapper.output_names),
                "model_config": config.to_json_string(use_diff=False),
            },
        )
    logger.info(
        "Exported %s (%s) to %s; outputs: %s", type(model).__name__, exporter, output_path, wrapper.output_names
    )
    return ExportResult(
        path=output_path,
        format=format,
        exporter=exporter,
        height=height,
        width=width,
        batch_size=batch_size,
        output_names=list(wrapper.output_names),
    )


def _export_onnx(
    wrapper: VanishingDepthExportWrapper,
    inputs: tuple[torch.Tensor, torch.Tensor],
    output_path: Path,
    opset_version: int,
    dynamo: bool | None,
) -> str:
    kwargs = dict(input_names=list(INPUT_NAMES), output_names=list(wrapper.output_names), opset_version=opset_version)
    if dynamo is None or dynamo:
        try:
            torch.onnx.export(wrapper, inputs, str(output_path), dynamo=True, verbose=False, **kwargs)
            return "torch.onnx (dynamo)"
        except Exception as error:  # the fallback below is the documented behaviour, the cause is logged
            if dynamo:
                raise
            logger.warning("torch.export-based ONNX export failed (%s); using the TorchScript exporter.", error)
    torch.onnx.export(wrapper, inputs, str(output_path), dynamo=False, **kwargs)
    return "torch.onnx (torchscript)"


# ----------------------------------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------------------------------
def _reference_outputs(model, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """PyTorch outputs of `model` (instance, wrapper or saved folder) by exported name."""
    if isinstance(model, (str, os.PathLike)):
        model = load_model_from_folder(model)
    args = (inputs["pixel_values"], inputs["depth_values"])
    if not isinstance(model, VanishingDepthExportWrapper):
        model = VanishingDepthExportWrapper(model.eval(), args)
    with torch.no_grad():
        return dict(zip(model.output_names, model(*args)))


def _compare(actual: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], atol: float) -> dict:
    if list(actual) != list(reference):
        raise AssertionError(f"exported outputs {list(actual)} differ from the model's outputs {list(reference)}.")
    differences, failures = {}, []
    for name, expected in reference.items():
        got = actual[name]
        if tuple(got.shape) != tuple(expected.shape):
            failures.append(f"{name}: shape {tuple(got.shape)} != {tuple(expected.shape)}")
            continue
        differences[name] = float((got.float() - expected.float()).abs().max()) if expected.numel() else 0.0
        if not differences[name] < atol:
            failures.append(f"{name}: max abs diff {differences[name]:.3g} >= {atol:g}")
    if failures:
        raise AssertionError("exported graph does not match PyTorch: " + "; ".join(failures))
    return differences


def _as_inputs(inputs) -> dict[str, torch.Tensor]:
    if isinstance(inputs, Mapping):
        missing = [name for name in INPUT_NAMES if name not in inputs]
        if missing:
            raise ValueError(f"`inputs` must hold {list(INPUT_NAMES)}; missing {missing}.")
        return {name: torch.as_tensor(inputs[name]).float() for name in INPUT_NAMES}
    if isinstance(inputs, (tuple, list)) and len(inputs) == 2:
        return {name: torch.as_tensor(value).float() for name, value in zip(INPUT_NAMES, inputs)}
    raise ValueError(
        f"`inputs` must be {{'pixel_values', 'depth_values'}} or a (pixel_values, depth_values) pair, got {type(inputs)}."
    )


def verify_onnx(onnx_path: str | os.PathLike, model, inputs, atol: float = 1e-4) -> dict[str, float]:
    """Run an exported ONNX file with onnxruntime (CPU) and compare every output with PyTorch.

    Args:
        onnx_path: the exported file.
        model: the PyTorch model (instance or saved folder) it was exported from.
        inputs: ``{"pixel_values": (B, 3, H, W), "depth_values": (B, 1, H, W) metres}`` at the exported size.
        atol: largest accepted absolute difference.

    Returns:
        ``{output name: max abs difference}``.

    Raises:
        AssertionError: names, shapes or values differ (max abs diff >= `atol`).
    """
    try:
        import onnxruntime
    except ImportError as error:  # pragma: no cover - the test extra installs it
        raise ImportError("verify_onnx needs onnxruntime: pip install 'vanishing-depth[onnx]'.") from error
    inputs = _as_inputs(inputs)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed_names = [item.name for item in session.get_inputs()]
    if sorted(feed_names) != sorted(INPUT_NAMES):
        raise AssertionError(f"ONNX inputs are {feed_names}, expected {list(INPUT_NAMES)}.")
    names = [item.name for item in session.get_outputs()]
    results = session.run(names, {name: inputs[name].numpy() for name in feed_names})
    actual = {name: torch.from_numpy(value) for name, value in zip(names, results)}
    return _compare(actual, _reference_outputs(model, inputs), atol)


def verify_torch_export(pt2_path: str | os.PathLike, model, inputs, atol: float = 1e-4) -> dict[str, float]:
    """Load a ``.pt2`` written by `export_model` and compare its outputs with PyTorch (see `verify_onnx`)."""
    inputs = _as_inputs(inputs)
    program = torch.export.load(str(pt2_path))
    with torch.no_grad():
        outputs = program.module()(inputs["pixel_values"], inputs["depth_values"])
    reference = _reference_outputs(model, inputs)
    if len(outputs) != len(reference):
        raise AssertionError(f"the program returns {len(outputs)} outputs, the model {len(reference)}.")
    return _compare(dict(zip(reference, outputs)), reference, atol)


# ----------------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------------
def add_export_subcommand(subparsers) -> argparse.ArgumentParser:
    """``vanishing-depth export --model DIR --format onnx --height 224 --width 224 [--output FILE]``."""
    parser = subparsers.add_parser(
        "export",
        help="Export a saved model to ONNX or torch.export (.pt2) at a fixed size.",
        description="Export a saved model at a fixed input size. The graph takes ImageNet-normalised RGB "
        "(B, 3, H, W) and raw depth in metres (B, 1, H, W), 0 = missing, and computes the depth encoding inside.",
    )
    parser.add_argument("--model", required=True, help="Saved model folder.")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="onnx or torch_export (.pt2).")
    parser.add_argument("--height", type=int, default=224, help="Input height in pixels (multiple of 14).")
    parser.add_argument("--width", type=int, default=224, help="Input width in pixels (multiple of 14).")
    parser.add_argument("--batch-size", type=int, default=1, help="Fixed batch size of the graph.")
    parser.add_argument("--output", help="Output file (default: DIR/export/model.onnx or model.pt2).")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17).")
    parser.add_argument("--encoder-only", action="store_true", help="Export only the encoder of a head model.")
    parser.add_argument(
        "--no-verify", action="store_true", help="Skip the check against PyTorch (onnxruntime / .pt2 reload)."
    )
    parser.set_defaults(func=run_export)
    return parser


def run_export(args: argparse.Namespace) -> int:
    model = load_model_from_folder(args.model, encoder_only=args.encoder_only)
    result = export_model(
        model,
        args.output or _default_output_path(Path(args.model), args.format),
        format=args.format,
        height=args.height,
        width=args.width,
        batch_size=args.batch_size,
        opset_version=args.opset,
    )
    summary = {
        "path": str(result.path),
        "exporter": result.exporter,
        "inputs": result.input_names,
        "outputs": result.output_names,
    }
    if not args.no_verify:
        inputs = example_inputs(
            model.config, args.height, args.width, args.batch_size, torch.Generator().manual_seed(1)
        )
        inputs = dict(zip(INPUT_NAMES, inputs))
        if args.format == "onnx":
            try:
                summary["max_abs_diff"] = verify_onnx(result.path, model, inputs)
            except ImportError:
                logger.warning("onnxruntime is not installed: the ONNX file was not checked against PyTorch.")
        else:
            summary["max_abs_diff"] = verify_torch_export(result.path, model, inputs)
    print(json.dumps(summary, indent=2))
    return 0


__all__ = [
    "EXPORT_FORMATS",
    "ExportResult",
    "VanishingDepthExportWrapper",
    "add_export_subcommand",
    "example_inputs",
    "export_model",
    "load_model_from_folder",
    "resolve_model_class",
    "run_export",
    "verify_onnx",
    "verify_torch_export",
]
