"""Shared fixtures: tiny configs of real structure (hidden <= 64, <= 4 layers, images <= 112 px)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import datasets.config
import huggingface_hub.constants
import pytest
import torch

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
sys.path.insert(0, str(TESTS_DIR))  # helper modules such as hub_server

# Two cores: keep torch from oversubscribing them; an explicit OMP_NUM_THREADS wins.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or max(1, min(2, os.cpu_count() or 1))))


# Prelude of subprocess scripts that must run as a user without the package: importing it fails, as on a machine where
# only transformers is installed, so a saved folder can only load through its remote code (trust_remote_code=True).
HIDE_PACKAGE = """
import sys
class HidePackage:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'vanishing_depth':
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, HidePackage())
try:
    import vanishing_depth
    raise SystemExit('the package is still importable')
except ModuleNotFoundError:
    pass
"""


def shared_data_dir() -> Path | None:
    """The read-only real RGB-D frames (../shared/data), or $VANISHING_DEPTH_SHARED_DATA."""
    candidates = [os.environ.get("VANISHING_DEPTH_SHARED_DATA"), REPO_ROOT.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def tiny_rgb_config(**overrides):
    from transformers import Dinov2Config

    kwargs = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, image_size=56, patch_size=14)
    kwargs.update(overrides)
    return Dinov2Config(**kwargs)


def tiny_config(rgb_overrides: dict | None = None, **overrides):
    from vanishing_depth import VanishingDepthConfig

    kwargs = dict(rgb_config=tiny_rgb_config(**(rgb_overrides or {})), pde_channels=16, se_reduction=4)
    kwargs.update(overrides)
    return VanishingDepthConfig(**kwargs)


def random_rgbd(batch: int = 2, height: int = 56, width: int = 56, seed: int = 0, missing_fraction: float = 0.3):
    generator = torch.Generator().manual_seed(seed)
    rgb = torch.randn(batch, 3, height, width, generator=generator)
    depth = 0.3 + 8.0 * torch.rand(batch, 1, height, width, generator=generator)
    depth[torch.rand(batch, 1, height, width, generator=generator) < missing_fraction] = 0.0
    return rgb, depth


@pytest.fixture
def tiny_model():
    from vanishing_depth import VanishingDepthModel

    torch.manual_seed(0)
    return VanishingDepthModel(tiny_config()).eval()


def tiny_pretraining_args(output_dir, corpus, **overrides):
    """`PretrainingArguments` of a tiny run (hidden 32, 4 blocks, 56 px, 6 steps, checkpoints every 3) on `corpus`."""
    import json

    from vanishing_depth.training.pretrain import PretrainingArguments

    kwargs = dict(
        output_dir=str(output_dir),
        model_shape="tiny",
        config_overrides=json.dumps(
            {
                "rgb_config": {"hidden_size": 32, "num_attention_heads": 2},
                "pde_channels": 16,
                "se_reduction": 4,
                "decoder_channels": [16, 16, 8, 8],
            }
        ),
        dataset=[str(corpus)],
        image_size=56,
        per_device_batch_size=4,
        max_steps=6,
        samples_per_epoch=16,
        learning_rate=1e-3,
        decoder_learning_rate=1e-3,
        checkpointing_steps=3,
        validation_steps=1000,
        logging_steps=1,
        report_to="none",
        write_model_card=False,
    )
    kwargs.update(overrides)
    return PretrainingArguments(**kwargs)


@contextlib.contextmanager
def hub_offline():
    """Tests that talk to 127.0.0.1 only: no Hub telemetry or agent lookups (huggingface_hub, under gradio_client) and
    no download counts (datasets, under the bundled corpus)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        patch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_TELEMETRY", True)
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        yield
