# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Initialisation of random-init backbones (runs without reachable pretrained weights: tests, the demo).

`mimetic_attention_init_` is the "mimetic" initialisation of self-attention (Trockman and Kolter, "Mimetic
Initialization of Self-Attention Layers", ICML 2023): each head's query-key product starts as
``W_q^T W_k ~ alpha_qk * Z + beta_qk * I`` and the value-output product as ``W_o W_v ~ alpha_vo * Z - beta_vo * I``
(Z Gaussian with variance 1/width), the pattern that pretrained ViTs show. A token then attends most to tokens like
itself; with rotary position embeddings (DINOv3) "like itself" includes "near itself", so attention starts local
instead of uniform, and a random-init ViT learns spatial tasks in far fewer steps (benchmarks/README.md, stop 20).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MIMETIC_DEFAULTS", "mimetic_attention_init_"]

#: (alpha_qk, beta_qk, alpha_vo, beta_vo): the paper's values for ViTs.
MIMETIC_DEFAULTS = (0.7, 0.7, 0.4, 0.4)


def _projections(block: nn.Module, names: tuple[str, ...]) -> list[nn.Linear]:
    found = {}
    for module_name, module in block.named_modules():
        leaf = module_name.rsplit(".", 1)[-1]
        if leaf in names and isinstance(module, nn.Linear):
            found[leaf] = module
    missing = [name for name in names if name not in found]
    if missing:
        raise ValueError(f"mimetic init: block {type(block).__name__} has no attention projection(s) {missing}.")
    return [found[name] for name in names]


@torch.no_grad()
def _factor(target: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) of shape (rank, d) with A^T B the best rank-`rank` approximation of `target` (d, d)."""
    u, s, vh = torch.linalg.svd(target)
    root = s[:rank].sqrt()
    return root[:, None] * u[:, :rank].T, root[:, None] * vh[:rank]


@torch.no_grad()
def mimetic_attention_init_(
    model: nn.Module, generator: torch.Generator | None = None, constants: tuple[float, ...] = MIMETIC_DEFAULTS
) -> None:
    """Re-initialise, in place, the query, key, value and output projections of every block of both streams of a
    `VanishingDepthModel` (`model`) mimetically (module docstring); biases keep their values. `generator` draws Z
    (seed it for a reproducible init); `constants` = (alpha_qk, beta_qk, alpha_vo, beta_vo)."""
    alpha_qk, beta_qk, alpha_vo, beta_vo = constants
    adapter = model.stream_adapter
    for encoder in (model.rgb_encoder, model.depth_encoder):
        heads = encoder.config.num_attention_heads
        for block in adapter.blocks(encoder):
            query, key, value, output = _projections(block, adapter.attention_projections)
            width = query.in_features
            if query.out_features != width or width % heads:
                raise ValueError(
                    f"mimetic init needs square attention projections split evenly over {heads} heads, got "
                    f"{tuple(query.weight.shape)}."
                )
            head_dim = width // heads
            identity = torch.eye(width)
            for head in range(heads):
                z = torch.randn(width, width, generator=generator) / width**0.5
                q, k = _factor(alpha_qk * z + beta_qk * identity, head_dim)
                rows = slice(head * head_dim, (head + 1) * head_dim)
                query.weight[rows] = q.to(query.weight.dtype)
                key.weight[rows] = k.to(key.weight.dtype)
            z = torch.randn(width, width, generator=generator) / width**0.5
            # out = v-rows mixed by W_o: W_o W_v (d, d) = A^T B with W_o = A^T, W_v = B.
            a, b = _factor(alpha_vo * z - beta_vo * identity, width)
            output.weight.copy_(a.T.to(output.weight.dtype))
            value.weight.copy_(b.to(value.weight.dtype))
