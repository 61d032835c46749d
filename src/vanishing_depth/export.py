# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Export a Vanishing Depth model to ONNX or a `torch.export` program (``.pt2``).

The exported graph takes exactly what a robot's pipeline has: ``pixel_values`` `(B, 3, H, W)` ImageNet-normalised RGB
and ``depth_values`` `(B, 1, H, W)` raw sensor depth in **metres** (0 = missing). The positional depth encoding is
computed inside the graph, as in the PyTorch model, so no preprocessing of depth beyond unit conversion is needed.

By default the batch size, height and width are dynamic (any H, W that are multiples of the patch size, 14 px, from 3
patches = 42 px up; the DINOv2 position embeddings are interpolated bicubically inside the graph), for ONNX and ``.pt2``
alike; ``dynamic=False`` fixes them to the example size. Depth that a graph cannot refuse counts as missing inside it: NaN (the invalid marker of float sensor depth,
e.g. ROS ``32FC1``), +/-inf and negative values are set to 0 before the depth encoding. (The eager PyTorch model raises
a ValueError on them instead.)

Outputs are the model's output tensors, flattened in a fixed order: for the encoder (`VanishingDepthModel`)
``feature_maps_0 .. feature_maps_{n-1}`` (one `(B, 2D, H/14, W/14)` map per fusion layer) and ``last_hidden_state``
`(B, P + N, D)`; for a task or pretraining model every tensor field of its output except ``loss`` and hidden states
(e.g. ``predicted_depth``), tuples numbered ``name_0, name_1, ...``.

`verify_onnx` runs an exported file with onnxruntime (``pip install 'vanishing-depth[onnx]'``) against PyTorch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import ModelOutput

from .modeling_vanishing_depth import AUTO_CLASS_NAMES
from .output_paths import prepare_output_file

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "torch_export")
DEFAULT_OPSET = 18
INPUT_NAMES = ("pixel_values", "depth_values")
# Never exported: training-only or memory-heavy fields.
SKIPPED_OUTPUT_FIELDS = ("loss", "hidden_states", "rgb_hidden_states", "attentions")
ENCODER_OUTPUT_FIELDS = ("feature_maps", "last_hidden_state")
# Axes of the inputs that a dynamic export leaves free (height and width: multiples of the patch size).
DYNAMIC_AXES = {name: {0: "batch", 2: "height", 3: "width"} for name in INPUT_NAMES}
# Smallest height / width of a dynamic graph, in patches: a smaller input gives 1-pixel maps at the coarsest decoder
# strides, which `torch.export` would otherwise treat as a special case (and the .pt2 program refuse).
MIN_DYNAMIC_PATCHES = 3
ONNX_EXTRA_HINT = "pip install 'vanishing-depth[onnx]'"
# Loggers that print progress, registry notes or reports during an export; held at ERROR while it runs.
_NOISY_LOGGERS = (
    "torch.onnx",
    "torch.export",
    "torch._export",
    "torch._dynamo",
    "torch._functorch",
    "torch._subclasses",
    "torch.fx",
    "torch.utils._sympy",
    "onnxscript",
    "onnx_ir",
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
    for auto_name in AUTO_CLASS_NAMES:
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


def _require(modules: Sequence[str], purpose: str) -> None:
    """Raise one ImportError line naming the extra when any of `modules` cannot be imported."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"{purpose} needs {', '.join(missing)}, which is not installed: {ONNX_EXTRA_HINT}")


def sanitize_depth(depth_values: torch.Tensor) -> torch.Tensor:
    """Depth in metres with every value a graph cannot refuse set to 0 (missing): NaN, +/-inf and negatives.

    Written with comparisons only (NaN compares false), so that every exporter and runtime gives the same result.
    """
    valid = (depth_values > 0) & (depth_values < math.inf)
    return torch.where(valid, depth_values, torch.zeros_like(depth_values))


class VanishingDepthExportWrapper(nn.Module):
    """`(pixel_values, depth_values)` -> a flat tuple of output tensors, the form exporters need.

    Depth goes through `sanitize_depth` first: NaN, +/-inf and negative depth count as missing (0) in the exported
    graph, which cannot raise as the eager model does.

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
            output = model(pixel_values=example_inputs[0], depth_values=sanitize_depth(example_inputs[1]))
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
        self.output_names, tensors = _flatten(output, self.output_fields)
        self.output_ndims = [tensor.ndim for tensor in tensors]

    def forward(self, pixel_values: torch.Tensor, depth_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.model(pixel_values=pixel_values, depth_values=sanitize_depth(depth_values))
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
def _without_size_shortcuts(model: nn.Module) -> Iterator[None]:
    """Trace the general branch of transformers' position-embedding interpolation.

    ``Dinov2Embeddings.interpolate_pos_encoding`` returns the position table unchanged at the pretraining grid with
    H == W, unless ``torch.jit.is_tracing()``. A test on symbolic sizes becomes part of a dynamic graph: `torch.export`
    records it as a guard (the ``.pt2`` program then refuses every other size) and the ONNX graph keeps only the branch
    seen at the example size. Both branches compute the same numbers (a bicubic resize to the same size is the
    identity), so the method is called with that flag set while the export runs. (The model's own resize helpers skip
    equal-size resizes only outside `torch.compiler.is_exporting()`.)
    """
    patched_modules = []
    for module in model.modules():
        method = getattr(type(module), "interpolate_pos_encoding", None)
        if not callable(method) or not (hasattr(module, "position_embeddings") or hasattr(module, "position_embedding")):
            continue

        def interpolate(embeddings, height, width, _method=method, _module=module):
            original = torch.jit.is_tracing
            torch.jit.is_tracing = lambda: True
            try:
                return _method(_module, embeddings, height, width)
            finally:
                torch.jit.is_tracing = original

        module.interpolate_pos_encoding = interpolate  # instance attribute: shadows the class method
        patched_modules.append(module)
    try:
        yield
    finally:
        for module in patched_modules:
            vars(module).pop("interpolate_pos_encoding", None)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Hold the exporters' progress prints, warnings and INFO/WARNING logs for the duration of an export.

    Logger levels are restored afterwards; what the exporter printed is logged at DEBUG level.
    """
    levels = {}
    for name in _NOISY_LOGGERS:
        noisy = logging.getLogger(name)
        levels[name] = noisy.level
        noisy.setLevel(logging.ERROR)
    printed = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if printed.getvalue().strip():
            logger.debug("Exporter output:\n%s", printed.getvalue().rstrip())


# ----------------------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class ExportResult:
    """What `export_model` wrote: the file, its format and exporter, the example size, whether batch/height/width are
    dynamic, and the graph's input and output names."""

    path: Path
    format: str
    exporter: str
    height: int
    width: int
    batch_size: int
    input_names: list[str] = field(default_factory=lambda: list(INPUT_NAMES))
    output_names: list[str] = field(default_factory=list)
    dynamic: bool = False


def _trace_size(batch_size: int, height: int, width: int, patch: int) -> tuple[int, int, int]:
    """The size a dynamic export traces at: `torch.export` fixes a size of 1 and merges sizes that are equal in the
    example, so batch >= 2, H/patch and W/patch >= `MIN_DYNAMIC_PATCHES`, all pairwise distinct (the smallest change)."""
    rows = max(height // patch, MIN_DYNAMIC_PATCHES)
    cols = max(width // patch, MIN_DYNAMIC_PATCHES)
    if cols == rows:
        cols += 1
    batch = max(batch_size, 2)
    while batch in (rows, cols, rows * patch, cols * patch):
        batch += 1
    return batch, rows * patch, cols * patch


def _dynamic_shapes(patch: int) -> dict[str, dict[int, object]]:
    """`torch.export` dynamic shapes of the two inputs: a shared batch, height and width multiples of `patch`."""
    from torch.export import Dim

    batch, rows, cols = (
        Dim("batch", min=1),
        Dim("height_patches", min=MIN_DYNAMIC_PATCHES),
        Dim("width_patches", min=MIN_DYNAMIC_PATCHES),
    )
    return {name: {0: batch, 2: patch * rows, 3: patch * cols} for name in INPUT_NAMES}


def _check_dynamic_onnx(path: Path) -> None:
    """Raise RuntimeError unless the ONNX inputs have free, distinct batch / height / width dimensions."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    for item in graph.input:
        dims = item.type.tensor_type.shape.dim
        free = [dims[axis].dim_param if dims[axis].HasField("dim_param") else None for axis in (0, 2, 3)]
        if None in free or len(set(free)) != 3:
            fixed = [dim.dim_param or dim.dim_value for dim in dims]
            raise RuntimeError(f"the exporter fixed input sizes it was asked to keep dynamic: {item.name} {fixed}.")


def _check_dynamic_program(program) -> None:
    """Raise RuntimeError unless the program's inputs have symbolic, distinct batch / height / width sizes."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        shape = node.meta["val"].shape
        free = [shape[axis] for axis in (0, 2, 3)]
        if not all(isinstance(size, torch.SymInt) for size in free) or len({str(size) for size in free}) != 3:
            raise RuntimeError(f"torch.export fixed input sizes it was asked to keep dynamic: {node.name} {shape}.")


def _default_output_path(model_dir: Path | None, format: str) -> Path:
    folder = (model_dir or Path.cwd()) / "export"
    return folder / ("model.onnx" if format == "onnx" else "model.pt2")


def _refuse_existing_output(path: Path, overwrite: bool) -> None:
    """Refuse an existing target before loading and tracing (creates nothing; `prepare_output_file` does at write)."""
    if path.exists() or path.is_symlink():
        prepare_output_file(path, overwrite=overwrite, what="export file")


def _add_onnx_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    """Write `metadata` into the file's ``metadata_props`` (keys present are overwritten)."""
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
    dynamic: bool = True,
    overwrite: bool = False,
) -> ExportResult:
    """Export a model with dynamic batch size, height and width (default) or at a fixed input size.

    Args:
        model_dir_or_model: a saved folder (loaded with the class in its ``architectures``) or a model instance.
        output_path: target file; default ``<model_dir>/export/model.onnx`` or ``.../model.pt2`` (``./export/...``
            for a model instance). An existing file is refused, before any work, unless `overwrite`.
        format: ``"onnx"`` or ``"torch_export"`` (a `torch.export.ExportedProgram` saved with `torch.export.save`).
        height, width: example input size in pixels, multiples of the patch size (14); with ``dynamic=False`` the
            graph's fixed size.
        batch_size: example batch size; with ``dynamic=False`` the graph's fixed batch size.
        opset_version: ONNX opset (>= 17).
        dynamo: ONNX only. None: the `torch.export`-based exporter (``dynamic_shapes``), falling back to the
            TorchScript exporter (``dynamic_axes``) with a warning if it fails; True/False: force one.
        encoder_only: for a folder holding a task or pretraining model, export just its encoder.
        output_fields: model output fields to export (default: see `VanishingDepthExportWrapper`).
        dynamic: True: the graph takes any batch size and any height and width that are multiples of the patch
            size (at least `MIN_DYNAMIC_PATCHES` = 3 patches, 42 px), for both formats (ONNX and ``.pt2``).
            `torch.export` fixes sizes of 1 and merges sizes that are equal in the example, so the trace runs at
            batch >= 2 and distinct H/W patch counts (e.g. 224 x 238 for 224 x 224); the graph is checked to have
            kept the three axes free, and the model's equal-size shortcuts are traced in their general form (see
            `_without_size_shortcuts`). The ONNX metadata records it (``dynamic_axes``). False: fixed to
            `batch_size` x `height` x `width`.
        overwrite: replace an existing file at the output path.

    Returns:
        `ExportResult` with the path and the graph's input/output names. Inputs: ``pixel_values`` `(B, 3, H, W)`
        ImageNet-normalised RGB and ``depth_values`` `(B, 1, H, W)` depth in metres, 0 = missing; NaN, +/-inf and
        negative depth also count as missing inside the graph (see `sanitize_depth`).

    Raises:
        ImportError: ONNX export without onnx / onnxscript (one line naming ``pip install 'vanishing-depth[onnx]'``),
            raised before any work.
        OutputExistsError: the output path exists (and `overwrite` is False) or is a folder; raised before any work.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"`format` must be one of {EXPORT_FORMATS}, got {format!r}.")
    if format == "onnx" and (not isinstance(opset_version, int) or opset_version < 17):
        raise ValueError(f"`opset_version` must be an integer >= 17, got {opset_version!r}.")
    if not isinstance(dynamic, bool):
        raise ValueError(f"`dynamic` must be True (dynamic batch/height/width) or False (fixed), got {dynamic!r}.")
    if not isinstance(overwrite, bool):
        raise ValueError(f"`overwrite` must be True or False, got {overwrite!r}.")
    if format == "onnx":
        _require(("onnx", "onnxscript") if dynamo is not False else ("onnx",), "ONNX export")
    model_dir = Path(model_dir_or_model) if isinstance(model_dir_or_model, (str, os.PathLike)) else None
    output_path = Path(output_path) if output_path is not None else _default_output_path(model_dir, format)
    _refuse_existing_output(output_path, overwrite)
    if isinstance(model_dir_or_model, nn.Module):
        model = model_dir_or_model
    elif model_dir is not None:
        model = load_model_from_folder(model_dir, encoder_only=encoder_only)
    else:
        raise ValueError(
            f"`model_dir_or_model` must be a saved folder or a model instance, got {type(model_dir_or_model).__name__}."
        )
    if model.training:
        logger.warning("Exporting a model in training mode: switching it to eval() (dropout off, frozen statistics).")
        model.eval()
    config = _find_config(model)
    patch = config.patch_size
    inputs = example_inputs(config, height, width, batch_size)  # also checks the size arguments
    if dynamic:
        trace_batch, trace_height, trace_width = _trace_size(batch_size, height, width, patch)
        inputs = example_inputs(config, trace_height, trace_width, trace_batch)
    wrapper = VanishingDepthExportWrapper(model, inputs, output_fields=output_fields).eval()
    prepare_output_file(output_path, overwrite=overwrite, what="export file")
    dynamic_shapes = _dynamic_shapes(patch) if dynamic else None

    # Inference graphs: no autograd state (grad-mode switches inside forward would otherwise be traced as ops).
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        if dynamic:
            stack.enter_context(_without_size_shortcuts(model))
        if format == "torch_export":
            with _quiet_export():
                program = torch.export.export(wrapper, inputs, dynamic_shapes=dynamic_shapes, strict=False)
            if dynamic:
                _check_dynamic_program(program)
            torch.export.save(program, str(output_path))
            exporter = "torch.export"
        else:
            exporter = _export_onnx(wrapper, inputs, output_path, opset_version, dynamo, dynamic_shapes)
    if format == "onnx":
        batch_text = "B dynamic" if dynamic else f"B = {batch_size}"
        size_text = (
            f"H, W dynamic multiples of {patch} (>= {MIN_DYNAMIC_PATCHES * patch})"
            if dynamic
            else f"H = {height}, W = {width}"
        )
        _add_onnx_metadata(
            output_path,
            {
                "producer": "vanishing-depth",
                "pixel_values": f"(B, 3, H, W) float32 RGB, ImageNet mean/std normalised; {batch_text}, {size_text}",
                "depth_values": f"(B, 1, H, W) float32 depth in metres, 0 = missing (NaN, +/-inf and negative values "
                f"count as missing); {batch_text}, {size_text}",
                "dynamic_axes": json.dumps(DYNAMIC_AXES if dynamic else {}),
                "patch_size": str(patch),
                "example_size": json.dumps({"batch_size": batch_size, "height": height, "width": width}),
                "outputs": ", ".join(wrapper.output_names),
                "model_config": config.to_json_string(use_diff=False),
            },
        )
    logger.info(
        "Exported %s (%s, %s) to %s; outputs: %s",
        type(model).__name__,
        exporter,
        "dynamic batch/height/width" if dynamic else f"fixed {batch_size}x{height}x{width}",
        output_path,
        wrapper.output_names,
    )
    return ExportResult(
        path=output_path,
        format=format,
        exporter=exporter,
        height=height,
        width=width,
        batch_size=batch_size,
        output_names=list(wrapper.output_names),
        dynamic=dynamic,
    )


def _export_onnx(
    wrapper: VanishingDepthExportWrapper,
    inputs: tuple[torch.Tensor, torch.Tensor],
    output_path: Path,
    opset_version: int,
    dynamo: bool | None,
    dynamic_shapes: dict | None,
) -> str:
    kwargs = dict(input_names=list(INPUT_NAMES), output_names=list(wrapper.output_names), opset_version=opset_version)
    if dynamo is None or dynamo:
        try:
            with _quiet_export():
                torch.onnx.export(
                    wrapper,
                    inputs,
                    str(output_path),
                    dynamo=True,
                    dynamic_shapes=dynamic_shapes,
                    verbose=False,
                    report=False,
                    **kwargs,
                )
            if dynamic_shapes is not None:
                _check_dynamic_onnx(output_path)
            return "torch.onnx (dynamo)"
        except Exception as error:  # the fallback below is the documented behaviour, the cause is logged
            if dynamo:
                raise
            logger.warning("torch.export-based ONNX export failed (%s); using the TorchScript exporter.", error)
    dynamic_axes = None
    if dynamic_shapes is not None:
        # Every output axis is left free too (its size follows the input size), the batch axis named as the inputs'.
        dynamic_axes = dict(DYNAMIC_AXES)
        for name, ndim in zip(wrapper.output_names, wrapper.output_ndims):
            dynamic_axes[name] = {axis: "batch" if axis == 0 else f"{name}_dim{axis}" for axis in range(ndim)}
    with _quiet_export():
        torch.onnx.export(wrapper, inputs, str(output_path), dynamo=False, dynamic_axes=dynamic_axes, **kwargs)
    return "torch.onnx (torchscript)"


# ----------------------------------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------------------------------
def _reference_model(model, inputs: Mapping[str, torch.Tensor]) -> VanishingDepthExportWrapper:
    """`model` (instance, wrapper or saved folder) as the export wrapper, whose outputs carry the exported names."""
    if isinstance(model, VanishingDepthExportWrapper):
        return model
    if isinstance(model, (str, os.PathLike)):
        model = load_model_from_folder(model)
    return VanishingDepthExportWrapper(model.eval(), (inputs["pixel_values"], inputs["depth_values"]))


def _reference_outputs(wrapper: VanishingDepthExportWrapper, inputs: Mapping[str, torch.Tensor]) -> dict:
    with torch.no_grad():
        return dict(zip(wrapper.output_names, wrapper(inputs["pixel_values"], inputs["depth_values"])))


def _compare(
    actual: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], atol: float, label: str
) -> dict:
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
        raise AssertionError(f"exported graph does not match PyTorch at {label}: " + "; ".join(failures))
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
        "`inputs` must be {'pixel_values', 'depth_values'}, a (pixel_values, depth_values) pair, or a list of them, "
        f"got {type(inputs).__name__}."
    )


def _input_sets(inputs) -> list[dict[str, torch.Tensor]]:
    """One input set, or a list of them (e.g. several batch sizes and sizes for a dynamic graph)."""
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], (Mapping, tuple, list)):
        return [_as_inputs(item) for item in inputs]
    return [_as_inputs(inputs)]


def _size_label(inputs: Mapping[str, torch.Tensor]) -> str:
    batch, _, height, width = inputs["pixel_values"].shape
    return f"batch {batch}, {height} x {width}"


def _merge_differences(total: dict[str, float], differences: Mapping[str, float]) -> dict[str, float]:
    for name, difference in differences.items():
        total[name] = max(total.get(name, 0.0), difference)
    return total


def verify_onnx(onnx_path: str | os.PathLike, model, inputs, atol: float = 1e-4) -> dict[str, float]:
    """Run an exported ONNX file with onnxruntime (CPU) and compare every output with PyTorch.

    Args:
        onnx_path: the exported file.
        model: the PyTorch model (instance or saved folder) it was exported from.
        inputs: ``{"pixel_values": (B, 3, H, W), "depth_values": (B, 1, H, W) metres}`` (or the pair), or a list of
            them: any batch sizes and multiple-of-14 sizes for a dynamic export, the exported size for a static one.
            The PyTorch reference is computed at the size of each input set, so a list of sizes checks a dynamic
            graph (one session, one model load).
        atol: largest accepted absolute difference.

    Returns:
        ``{output name: max abs difference}`` (the largest over the input sets).

    Raises:
        AssertionError: names, shapes or values differ (max abs diff >= `atol`; the message names the size), or
            inputs do not fit the sizes the graph fixes (a static export checked at another size).
        ImportError: onnxruntime is missing (one line naming ``pip install 'vanishing-depth[onnx]'``).
    """
    _require(("onnxruntime",), "verify_onnx")
    import onnxruntime

    input_sets = _input_sets(inputs)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no per-run shape notes on stderr
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed_names = [item.name for item in session.get_inputs()]
    if sorted(feed_names) != sorted(INPUT_NAMES):
        raise AssertionError(f"ONNX inputs are {feed_names}, expected {list(INPUT_NAMES)}.")
    names = [item.name for item in session.get_outputs()]
    reference_model = _reference_model(model, input_sets[0])
    total: dict[str, float] = {}
    for feed in input_sets:
        for item in session.get_inputs():
            given = tuple(feed[item.name].shape)
            fixed = [size if isinstance(size, int) else None for size in item.shape]
            if len(fixed) != len(given) or any(size is not None and size != got for size, got in zip(fixed, given)):
                shown = tuple(size if size is not None else "*" for size in fixed)
                raise AssertionError(
                    f"`inputs`[{item.name!r}] has shape {given} but the graph takes {shown} (* = dynamic); a graph "
                    "exported with dynamic=False only runs at its export size."
                )
        results = session.run(names, {name: feed[name].numpy() for name in feed_names})
        actual = {name: torch.from_numpy(value) for name, value in zip(names, results)}
        reference = _reference_outputs(reference_model, feed)
        _merge_differences(total, _compare(actual, reference, atol, _size_label(feed)))
    return total


def verify_torch_export(pt2_path: str | os.PathLike, model, inputs, atol: float = 1e-4) -> dict[str, float]:
    """Load a ``.pt2`` written by `export_model` and compare its outputs with PyTorch (see `verify_onnx`; `inputs`
    may be a list of input sets too)."""
    input_sets = _input_sets(inputs)
    program = torch.export.load(str(pt2_path)).module()
    reference_model = _reference_model(model, input_sets[0])
    total: dict[str, float] = {}
    for feed in input_sets:
        with torch.no_grad():
            outputs = program(feed["pixel_values"], feed["depth_values"])
        reference = _reference_outputs(reference_model, feed)
        if len(outputs) != len(reference):
            raise AssertionError(f"the program returns {len(outputs)} outputs, the model {len(reference)}.")
        _merge_differences(total, _compare(dict(zip(reference, outputs)), reference, atol, _size_label(feed)))
    return total


# ----------------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------------
def add_export_subcommand(subparsers) -> argparse.ArgumentParser:
    """``vanishing-depth export --model DIR --format onnx [--height 224 --width 224] [--static] [--output FILE]``."""
    parser = subparsers.add_parser(
        "export",
        help="Export a saved model to ONNX or torch.export (.pt2), dynamic batch/height/width by default.",
        description="Export a saved model. The graph takes ImageNet-normalised RGB (B, 3, H, W) and raw depth in "
        "metres (B, 1, H, W), 0 = missing (NaN, +/-inf and negative depth count as missing too), and computes the "
        "depth encoding inside. Batch size, height and width are dynamic (H and W any multiples of 14 from 42) unless "
        "--static; --height/--width/--batch-size give the example size the model is traced and checked at. "
        "ONNX needs the onnx extra: pip install 'vanishing-depth[onnx]'.",
    )
    parser.add_argument("--model", required=True, help="Saved model folder.")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="onnx or torch_export (.pt2).")
    parser.add_argument(
        "--height", type=int, default=224, help="Example (trace/check) height in pixels, multiple of 14."
    )
    parser.add_argument("--width", type=int, default=224, help="Example (trace/check) width in pixels, multiple of 14.")
    parser.add_argument("--batch-size", type=int, default=1, help="Example batch size (the fixed one with --static).")
    parser.add_argument("--static", action="store_true", help="Fix batch size, height and width to the example size.")
    parser.add_argument(
        "--output", help="Output file (default: DIR/export/model.onnx or model.pt2); an existing one needs --overwrite."
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing output file.")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17).")
    parser.add_argument("--encoder-only", action="store_true", help="Export only the encoder of a head model.")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="Skip the check against PyTorch (onnxruntime / .pt2 reload; a dynamic graph is checked at the example "
        "size and at one batch and size more).",
    )
    parser.set_defaults(func=run_export)
    return parser


def run_export(args: argparse.Namespace) -> int:
    """The ``export`` subcommand: export, check against PyTorch, print a JSON summary. A missing optional dependency
    prints one ``error: ...`` line naming the extra and returns 2."""
    try:
        if args.format == "onnx":
            _require(("onnx", "onnxscript"), "ONNX export")
            if not args.no_verify:
                _require(("onnxruntime",), "Checking the ONNX file (skip it with --no-verify)")
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    dynamic = not getattr(args, "static", False)
    overwrite = getattr(args, "overwrite", False)
    output = Path(args.output) if args.output else _default_output_path(Path(args.model), args.format)
    _refuse_existing_output(output, overwrite)  # before loading the model
    model = load_model_from_folder(args.model, encoder_only=args.encoder_only)
    result = export_model(
        model,
        output,
        format=args.format,
        height=args.height,
        width=args.width,
        batch_size=args.batch_size,
        opset_version=args.opset,
        dynamic=dynamic,
        overwrite=overwrite,
    )
    summary = {
        "path": str(result.path),
        "exporter": result.exporter,
        "dynamic": result.dynamic,
        "inputs": result.input_names,
        "outputs": result.output_names,
    }
    if not args.no_verify:
        patch = model.config.patch_size
        sizes = [(args.batch_size, args.height, args.width)]
        if dynamic:
            sizes.append((args.batch_size + 1, args.height + patch, args.width + 2 * patch))
        verify = verify_onnx if args.format == "onnx" else verify_torch_export
        generator = torch.Generator().manual_seed(1)
        input_sets = [example_inputs(model.config, height, width, batch, generator) for batch, height, width in sizes]
        summary["checked_sizes"] = [list(size) for size in sizes]
        summary["max_abs_diff"] = verify(result.path, model, input_sets)
    print(json.dumps(summary, indent=2))
    return 0


__all__ = [
    "EXPORT_FORMATS",
    "DYNAMIC_AXES",
    "ExportResult",
    "VanishingDepthExportWrapper",
    "add_export_subcommand",
    "example_inputs",
    "export_model",
    "load_model_from_folder",
    "resolve_model_class",
    "run_export",
    "sanitize_depth",
    "verify_onnx",
    "verify_torch_export",
]
