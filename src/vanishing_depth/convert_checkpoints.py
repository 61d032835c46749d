# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Loading RGB DINOv2 weights from every layout users have, as one named converter per foreign format.

Layouts understood by `convert_dinov2_state_dict`:

- ``"original"``: facebookresearch/dinov2 ``dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth`` (``blocks.N.attn.qkv``,
  ``patch_embed.proj``, ``pos_embed``, ``ls1.gamma``, SwiGLU ``mlp.w12``/``mlp.w3``; chunked ``blocks.C.N`` too).
- ``"transformers_v4"``: ``attention.attention.query/key/value``, ``attention.output.dense``, ``mlp.weights_in/out``.
- ``"transformers_v5"``: ``attention.q_proj/k_proj/v_proj/o_proj``, ``mlp.gate_proj/up_proj/down_proj``.

All become transformers v5 `Dinov2Model` keys. Pickled files (``.pth``/``.pt``/``.bin``/``.ckpt``/``.plt``) are refused
unless the caller opts in, because unpickling can run arbitrary code; even then they are read with
``weights_only=True`` (tensors, containers and numbers only; NumPy scalars and arrays, which training logs inside
checkpoints often hold, are allowed too).
"""

from __future__ import annotations

import importlib
import math
import os
import pickle
import re
from pathlib import Path

import torch
from transformers import MODEL_MAPPING, AutoModel, Dinov2Config, Dinov2WithRegistersConfig, PreTrainedModel
from transformers.utils import logging

from .streams_vanishing_depth import supported_model_types

logger = logging.get_logger(__name__)

# DINOv2 widths -> attention heads (S, B, L, g); head count cannot be read off the weights.
DINOV2_HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1536: 24}
#: Pickled checkpoint suffixes (`torch.save` files); ``.plt`` is what the authors' code names its encoder files.
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".plt")
#: Globals a weights-only load may additionally rebuild: NumPy scalars, arrays and dtypes (e.g. the logs inside the
#: authors' main.py checkpoints). Reconstructing them runs no code beyond NumPy's own constructors.
_NUMPY_GLOBALS = (
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
)
_STRIP_PREFIXES = (
    "module.",
    "model.",
    "backbone.",
    "dinov2.",
    "encoder.rgb.",
    "teacher.backbone.",
    "student.backbone.",
)


def detect_dinov2_layout(state_dict: dict[str, torch.Tensor]) -> str:
    """Return "original", "transformers_v4" or "transformers_v5" for a DINOv2 state dict (prefixes stripped)."""
    keys = list(state_dict)
    if any(key.startswith("blocks.") or key.startswith("patch_embed.") for key in keys):
        return "original"
    if any(".attention.attention.query." in key or ".mlp.weights_in." in key for key in keys):
        return "transformers_v4"
    if any(key.startswith("encoder.layer.") for key in keys):
        return "transformers_v5"
    raise ValueError(
        "`state_dict` does not look like a DINOv2 checkpoint: expected keys like 'blocks.0.attn.qkv.weight' (original) "
        f"or 'encoder.layer.0.attention.q_proj.weight' (transformers); first keys: {keys[:5]}."
    )


def _strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _STRIP_PREFIXES:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix) :]: value for key, value in state_dict.items()}
    return state_dict


def _convert_original(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    converted: dict[str, torch.Tensor] = {}
    top_level = {
        "cls_token": "embeddings.cls_token",
        "pos_embed": "embeddings.position_embeddings",
        "register_tokens": "embeddings.register_tokens",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
        "norm.weight": "layernorm.weight",
        "norm.bias": "layernorm.bias",
    }
    block_renames = {
        "norm1": "norm1",
        "norm2": "norm2",
        "attn.proj": "attention.o_proj",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
        "mlp.w3": "mlp.down_proj",
    }
    block_pattern = re.compile(r"^blocks\.(?:\d+\.)?(\d+)\.(.+)\.(weight|bias|gamma)$")
    for key, value in state_dict.items():
        if key in top_level:
            converted[top_level[key]] = value
            continue
        if key == "mask_token":
            converted["embeddings.mask_token"] = value.reshape(1, -1)
            continue
        match = block_pattern.match(key)
        if match is None:
            logger.warning("Ignoring unknown key %r in an original DINOv2 checkpoint.", key)
            continue
        index, module, kind = match.groups()
        prefix = f"encoder.layer.{index}."
        if module in ("ls1", "ls2"):
            converted[prefix + f"layer_scale{module[-1]}.lambda1"] = value
        elif module == "attn.qkv":
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                converted[prefix + f"attention.{name}.{kind}"] = part.clone()
        elif module == "mlp.w12":
            for name, part in zip(("gate_proj", "up_proj"), value.chunk(2, dim=0)):
                converted[prefix + f"mlp.{name}.{kind}"] = part.clone()
        elif module in block_renames:
            converted[prefix + f"{block_renames[module]}.{kind}"] = value
        else:
            logger.warning("Ignoring unknown key %r in an original DINOv2 checkpoint.", key)
    return converted


def _convert_transformers_v4(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renames = (
        (".attention.attention.query.", ".attention.q_proj."),
        (".attention.attention.key.", ".attention.k_proj."),
        (".attention.attention.value.", ".attention.v_proj."),
        (".attention.output.dense.", ".attention.o_proj."),
        (".mlp.weights_out.", ".mlp.down_proj."),
    )
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if ".mlp.weights_in." in key:
            for name, part in zip(("gate_proj", "up_proj"), value.chunk(2, dim=0)):
                converted[key.replace(".mlp.weights_in.", f".mlp.{name}.")] = part.clone()
            continue
        for old, new in renames:
            key = key.replace(old, new)
        converted[key] = value
    return converted


def convert_dinov2_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Any known DINOv2 layout (module prefixes such as ``module.``/``dinov2.`` stripped) -> transformers v5 keys."""
    state_dict = _strip_prefixes(dict(state_dict))
    layout = detect_dinov2_layout(state_dict)
    logger.info("Converting a DINOv2 state dict in the %r layout.", layout)
    if layout == "original":
        return _convert_original(state_dict)
    if layout == "transformers_v4":
        return _convert_transformers_v4(state_dict)
    return state_dict


def dinov2_config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> Dinov2Config:
    """Infer the DINOv2 config (width, depth, heads, patch, grid, registers, SwiGLU) from v5-layout weights."""
    hidden = state_dict["embeddings.cls_token"].shape[-1]
    num_layers = 1 + max(int(key.split(".")[2]) for key in state_dict if key.startswith("encoder.layer."))
    patch_size = state_dict["embeddings.patch_embeddings.projection.weight"].shape[-1]
    num_patches = state_dict["embeddings.position_embeddings"].shape[1] - 1
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f"position embeddings must lie on a square grid, got {num_patches} patches.")
    use_swiglu = "encoder.layer.0.mlp.gate_proj.weight" in state_dict
    if use_swiglu:
        mlp_ratio = 4  # the SwiGLU hidden width is derived from ratio 4 (two thirds, rounded to 8)
    else:
        mlp_ratio = state_dict["encoder.layer.0.mlp.fc1.weight"].shape[0] / hidden
        mlp_ratio = int(mlp_ratio) if float(mlp_ratio).is_integer() else mlp_ratio
    kwargs = dict(
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=DINOV2_HEADS_BY_WIDTH.get(hidden, max(1, hidden // 64)),
        patch_size=patch_size,
        image_size=side * patch_size,
        mlp_ratio=mlp_ratio,
        use_swiglu_ffn=use_swiglu,
        qkv_bias="encoder.layer.0.attention.q_proj.bias" in state_dict,
        layer_norm_eps=1e-6,
    )
    if "embeddings.register_tokens" in state_dict:
        return Dinov2WithRegistersConfig(
            num_register_tokens=state_dict["embeddings.register_tokens"].shape[1], **kwargs
        )
    return Dinov2Config(**kwargs)


def _resolve_global(name: str):
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def _load_weights_only(path: Path):
    """`torch.load(weights_only=True)`, also allowing NumPy scalars/arrays/dtypes; other globals raise naming the file."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refusal = error
    except Exception as error:  # a truncated or foreign file fails anywhere inside the unpickler
        raise ValueError(f"{path.name} is not a readable torch.save file: {type(error).__name__}: {error}") from error
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # legacy (non-zip) torch.save files cannot be listed
        unsafe = []
    refused = [name for name in unsafe if name not in _NUMPY_GLOBALS and not name.startswith("numpy.dtypes.")]
    if refused or not unsafe:
        raise ValueError(
            f"{path.name} cannot be read as tensors only (torch.load(weights_only=True)): it pickles "
            f"{refused or 'objects'} that a weights-only load refuses to rebuild. Where you trust the file, extract "
            "its state dict yourself, e.g. torch.save(torch.load(path, weights_only=False)['state_dict'], "
            "'encoder.pth'), and convert that."
        ) from refusal
    try:
        allowed = [_resolve_global(name) for name in unsafe]
    except (ImportError, AttributeError) as missing:
        raise ValueError(f"{path.name} pickles {unsafe}, which this NumPy cannot rebuild: {missing}.") from refusal
    # The dtype classes (numpy.dtypes.Float64DType, ...) a pickled dtype is rebuilt through are not listed above.
    dtypes = importlib.import_module("numpy.dtypes")
    allowed += [value for value in vars(dtypes).values() if isinstance(value, type) and "DType" in value.__name__]
    with torch.serialization.safe_globals(allowed):
        return torch.load(str(path), map_location="cpu", weights_only=True)


def read_state_dict(path: str | os.PathLike, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a `.safetensors` file, or (with ``allow_pickle=True``) a pickled `.pth`/`.pt`/`.bin`/`.ckpt`/`.plt` with
    weights_only. A ``state_dict`` / ``model`` / ``teacher`` entry of a pickled dict is unwrapped (a training
    checkpoint ``{'state_dict', 'optimizer', ...}`` gives its state dict). Every error names the file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as error:
            raise ValueError(f"{path.name} is not a readable safetensors file: {error}") from error
    if path.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ValueError(
                f"{path.name} is a pickle file: loading one can execute arbitrary code. Convert it to safetensors, or "
                "pass allow_pickle=True (--allow-pickle on the CLI) if you trust its source; it is then read with "
                "torch.load(weights_only=True)."
            )
        state = _load_weights_only(path)
        for key in ("state_dict", "model", "teacher"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        return state
    raise ValueError(
        f"Unknown checkpoint file type {path.suffix!r} for {path.name}; expected .safetensors or "
        f"{'/'.join(PICKLE_SUFFIXES)} (pickles, with allow_pickle=True)."
    )


def _vision_tower(source: PreTrainedModel) -> PreTrainedModel:
    """The supported RGB ViT inside `source`: `source` itself when it is the plain model of a supported family
    (`Dinov2Model`, `DINOv3ViTModel`, `SiglipVisionModel`, ...), else the one direct child that is (e.g.
    `Dinov2ForImageClassification.dinov2`, the `vision_model` of a text+vision `SiglipModel`)."""
    def is_plain_model(module) -> bool:
        config = getattr(module, "config", None)
        model_type = getattr(config, "model_type", None)
        if not isinstance(module, PreTrainedModel) or model_type not in supported_model_types():
            return False
        try:
            return isinstance(module, MODEL_MAPPING[type(config)])
        except KeyError:
            return False

    if is_plain_model(source):
        return source
    towers = [child for child in source.children() if is_plain_model(child)]
    if len(towers) == 1:
        return towers[0]
    raise ValueError(
        f"`rgb_backbone` must be (or wrap) the vision model of a supported ViT family (model_type in "
        f"{supported_model_types()}), e.g. Dinov2Model, DINOv3ViTModel or SiglipVisionModel; got "
        f"{type(source).__name__} (model_type {getattr(source.config, 'model_type', None)!r})."
    )


def load_rgb_backbone(source, allow_pickle: bool = False) -> PreTrainedModel:
    """An RGB ViT of a supported family from an instance, a Hub id or a saved folder, or a DINOv2 from a state-dict
    file in any known layout. A model wrapping the vision model (an image classifier, a text+vision `SiglipModel`)
    gives its vision tower."""
    if isinstance(source, PreTrainedModel):
        return _vision_tower(source)
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(
            "`rgb_backbone` must be a model instance (Dinov2Model, DINOv3ViTModel, SiglipVisionModel, ...), a Hub id, "
            f"a folder or a DINOv2 checkpoint file; got {type(source).__name__}."
        )
    path = Path(source)
    if path.is_file():
        state_dict = convert_dinov2_state_dict(read_state_dict(path, allow_pickle=allow_pickle))
        config = dinov2_config_from_state_dict(state_dict)
        config._name_or_path = str(path)
        model = AutoModel.from_config(config)
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        missing = [key for key in missing if key != "embeddings.mask_token"]
        if missing or unexpected:
            raise ValueError(
                f"{path.name} does not fit a DINOv2 of the inferred shape: missing {missing}, unexpected {unexpected}."
            )
        return model.eval()
    # A local folder saved with save_pretrained, or a Hub id (transformers renames v4 keys on load).
    model = AutoModel.from_pretrained(str(source))
    return load_rgb_backbone(model)


__all__ = [
    "convert_dinov2_state_dict",
    "detect_dinov2_layout",
    "dinov2_config_from_state_dict",
    "load_rgb_backbone",
    "read_state_dict",
]
