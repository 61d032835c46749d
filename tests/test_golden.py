"""Golden values: a tiny committed checkpoint must keep giving the committed outputs.

A refactor that changes numbers (the PDE, the fusion, the decoder, the processor) fails here instead of relying on a
manual comparison. When a change of the numbers is intended, regenerate the fixture with `scripts/make_golden.py` and
say so in the commit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vanishing_depth  # noqa: F401  (registers the Auto classes)
from vanishing_depth import VanishingDepthForPretraining, VanishingDepthImageProcessor
from vanishing_depth.data import decode_rgbd_row, load_demo_corpus

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"
# The PDE resolves millimetres: its fastest pair turns ~275 rad per metre, so a one-ulp difference in a depth of a few
# metres (another CPU's kernels, another summation order) moves the depth features by up to ~2e-4 (measured). Golden
# values guard against refactors that change the numbers, which move them by orders of magnitude more.
FEATURE_TOL = dict(atol=1e-3, rtol=1e-3)
EXACT_TOL = dict(atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "expected.safetensors"))


@pytest.fixture(scope="module")
def model() -> VanishingDepthForPretraining:
    loaded = VanishingDepthForPretraining.from_pretrained(str(GOLDEN / "tiny-pretraining")).eval()
    assert loaded.weights_not_in_checkpoint == []  # every weight comes from the committed file
    return loaded


def test_encoder_features_match_the_golden_values(model, expected):
    with torch.no_grad():
        out = model.vanishing_depth(pixel_values=expected["input_rgb"], depth_values=expected["input_depth_m"])
    assert len(out.feature_maps) == 4
    for index, feature_map in enumerate(out.feature_maps):
        torch.testing.assert_close(feature_map, expected[f"feature_map_{index}"], **FEATURE_TOL)
    torch.testing.assert_close(out.last_hidden_state, expected["last_hidden_state"], **FEATURE_TOL)
    # The RGB stream sees no depth: it must match closely.
    torch.testing.assert_close(out.rgb_last_hidden_state, expected["rgb_last_hidden_state"], **EXACT_TOL)


def test_pretraining_prediction_matches_the_golden_values(model, expected):
    with torch.no_grad():
        out = model(pixel_values=expected["input_rgb"], depth_values=expected["input_depth_m"])
    for scale, predicted in enumerate(out.predicted_depth):
        torch.testing.assert_close(predicted, expected[f"predicted_depth_{scale}"], **FEATURE_TOL)


def test_processor_output_on_a_bundled_frame_matches_the_golden_values(expected):
    rgb, depth_m = decode_rgbd_row(load_demo_corpus("test")[0])
    inputs = VanishingDepthImageProcessor(size={"shortest_edge": 56})(images=rgb, depth=depth_m)
    keys = sorted(key.removeprefix("processor_") for key in expected if key.startswith("processor_"))
    assert sorted(inputs.keys()) == keys
    for key in keys:
        torch.testing.assert_close(inputs[key], expected[f"processor_{key}"], **EXACT_TOL)
