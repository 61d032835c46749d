"""The demo (`vanishing_depth.demo`): scoring on the removed pixels, determinism of its pretraining, its procedural
rooms and the end-to-end run (tiny: a few steps, a handful of frames)."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from vanishing_depth.data import encode_depth, load_corpus, render_synthetic_scene
from vanishing_depth.demo import (
    DEMO_DENSITIES,
    DEMO_SYNTHETIC_SCENE_OPTIONS,
    build_demo_synthetic_corpus,
    demo_arguments,
    demo_patterns,
    deterministic_algorithms,
    run_demo,
)
from vanishing_depth.evaluation import BASELINE_PREDICTORS, evaluate_completion, model_predictor
from vanishing_depth.image_processing_vanishing_depth import VanishingDepthImageProcessor
from vanishing_depth.training.pretrain import pretrain

SIDE = 28  # pixels: two 14 px patches


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _constant_frame(depth_m: float, index: int) -> dict:
    rgb = np.full((SIDE, SIDE, 3), 100 + index, dtype=np.uint8)
    depth = encode_depth(np.full((SIDE, SIDE), depth_m, dtype=np.float32), "mm")
    return {
        "image": {"bytes": _png(rgb), "path": f"{index}.png"},
        "depth": {"bytes": _png(depth), "path": f"{index}_depth.png"},
        "depth_scale": 0.001,
        "intrinsics": None,
        "source": "test",
        "frame_id": str(index),
    }


class ConstantFill(torch.nn.Module):
    """A 'model' that keeps the measured depth and predicts `fill_m` metres everywhere else."""

    def __init__(self, fill_m: float) -> None:
        super().__init__()
        self.fill = torch.nn.Parameter(torch.tensor(fill_m))

    def forward(self, pixel_values, depth_values):
        return SimpleNamespace(predicted_depth=torch.where(depth_values > 0, depth_values, self.fill))


def test_removed_pixel_metrics_by_hand():
    # Ground truth 3 m everywhere; the model copies its input and says 2 m elsewhere. On the removed pixels every error
    # is 1 m, so RMSE = MAE = 1 m; over all N valid pixels, of which k were given, RMSE = sqrt((N - k) / N) m and
    # MAE = (N - k) / N m. Nearest-neighbour and median filling are exact (0 m) on a constant map.
    frames = [_constant_frame(3.0, index) for index in range(2)]
    processor = VanishingDepthImageProcessor(size={"shortest_edge": SIDE}, do_normalize=False)
    result = evaluate_completion(
        ConstantFill(2.0),
        frames,
        processor,
        patterns=["fraction:0.25", "fraction:0.5"],
        predictors=dict(BASELINE_PREDICTORS),
        print_table=False,
    )
    valid = SIDE * SIDE
    for pattern, metrics in result.metrics.items():
        given = metrics["input_points"]  # per frame; the fraction is exact per frame, so the same in both frames
        assert given == round(valid * float(pattern.split(":")[1]))
        assert metrics["removed_rmse_m"] == pytest.approx(1.0, abs=1e-6)
        assert metrics["removed_mae_m"] == pytest.approx(1.0, abs=1e-6)
        assert metrics["removed_num_valid_pixels"] == 2 * (valid - given)
        assert metrics["rmse_m"] == pytest.approx(math.sqrt((valid - given) / valid), abs=1e-6)
        assert metrics["mae_m"] == pytest.approx((valid - given) / valid, abs=1e-6)
        for baseline in BASELINE_PREDICTORS:
            assert result.methods[baseline][pattern]["removed_rmse_m"] == pytest.approx(0.0, abs=1e-6)
    assert "RMSE (m) on the removed pixels" in result.table


def test_keep_measured_predictor_passes_the_measured_pixels_through():
    model = ConstantFill(0.0)
    model.forward = lambda pixel_values, depth_values: SimpleNamespace(  # ignores its input: 5 m everywhere
        predicted_depth=torch.full_like(depth_values, 5.0)
    )
    sparse = torch.zeros(1, 1, 4, 4)
    sparse[0, 0, 1, 2] = 1.5
    kept = model_predictor(model, keep_measured=True)(torch.zeros(1, 3, 4, 4), sparse)
    plain = model_predictor(model)(torch.zeros(1, 3, 4, 4), sparse)
    assert kept[0, 1, 2] == 1.5 and plain[0, 1, 2] == 5.0
    assert torch.equal(kept[0][sparse[0, 0] == 0], plain[0][sparse[0, 0] == 0])


def test_demo_pretraining_is_deterministic(tmp_path):
    synthetic = build_demo_synthetic_corpus(tmp_path / "rooms", seed=1, train_frames=4, test_frames=1, size=(60, 80))

    def losses(name: str, workers: int = 0) -> list[float]:
        args = demo_arguments(tmp_path / name, max_steps=3, seed=0, synthetic_corpus_dir=synthetic)
        args = dataclasses.replace(
            args,
            image_size=56,  # a multiple of the demo model's 8 px patches and of 14
            per_device_batch_size=2,
            logging_steps=1,
            validation_dataset=None,
            dataloader_num_workers=workers,
        )
        with deterministic_algorithms():
            pretrain(args)
        records = [json.loads(line) for line in (tmp_path / name / "training_log.jsonl").read_text().splitlines()]
        return [record["loss"] for record in records if "loss" in record]

    first, second = losses("a"), losses("b")
    assert len(first) == 3 and first == second  # bit-identical, not approximately equal
    # Batches are drawn from generators seeded per step, not from a worker's global state: a worker process builds
    # the same batches as the main process.
    assert losses("c", workers=1) == first
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the block


def test_demo_rooms_span_an_indoor_range_and_keep_the_default_scenes():
    depths = [render_synthetic_scene(60, 80, seed, **DEMO_SYNTHETIC_SCENE_OPTIONS)[1] for seed in range(12)]
    valid = np.concatenate([d[d > 0] for d in depths])
    assert valid.max() <= 12.0 and valid.max() > 9.0  # rooms up to 12 m long, a 12 m sensor range
    assert valid.min() < 1.0  # objects close to the camera
    # The options are opt-in: without them a seed renders the scene it always rendered.
    default = render_synthetic_scene(60, 80, 3)
    again = render_synthetic_scene(60, 80, 3, near_object_probability=0.0, shared_material_probability=0.0)
    np.testing.assert_array_equal(default[1], again[1])
    np.testing.assert_array_equal(default[0], again[0])
    for bad in ({"near_object_probability": 1.5}, {"room_length_m": (1.0, 4.0)}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            render_synthetic_scene(60, 80, 0, **bad)


@pytest.mark.slow
def test_demo_runs_the_sweeps_and_writes_results_and_card(tmp_path, capsys):
    from vanishing_depth.hub.model_card import card_is_ours

    results = run_demo(tmp_path, max_steps=2, synthetic_frames=(4, 2))
    printed = capsys.readouterr().out
    assert "RMSE (m) on the removed pixels of the 4 held-out Redwood frames" in printed
    assert "RMSE (m) on all valid pixels of 4 held-out procedural rooms" in printed
    assert "0.1%" in printed and "nearest_fill" in printed and "trained_keep_measured" in printed
    folder = tmp_path / "vanishing-depth-demo"
    assert len(load_corpus(tmp_path / "vanishing-depth-demo-synthetic", split="test")) == 2
    for corpus, frames in (("redwood", 4), ("synthetic", 2)):
        sweep = folder if corpus == "redwood" else folder / f"eval_{corpus}"
        record = json.loads((sweep / "completion_metrics.json").read_text())
        assert record["settings"]["steps"] == 2 and record["settings"]["densities"] == list(DEMO_DENSITIES)
        assert record["settings"]["num_frames"] == frames
        assert list(record["methods"]) == [
            "trained",
            "trained_keep_measured",
            "untrained",
            "nearest_fill",
            "median_fill",
        ]
        for pattern in demo_patterns():  # the model's own numbers, as returned
            assert record["metrics"][pattern]["rmse_m"] == pytest.approx(results[corpus].metrics[pattern]["rmse_m"])
            assert record["metrics"][pattern]["removed_rmse_m"] > 0
        for name in ("completion_sweep.png", "rmse_by_method.png"):
            assert (sweep / name).is_file(), name
    entries = json.loads((folder / "eval_results.json").read_text())["results"]
    assert len(entries) == 2 * 2 * 2 * len(DEMO_DENSITIES)  # corpora x (all, removed) x (RMSE, MAE) x densities
    assert entries[0]["metric"]["value"] == round(
        results["redwood"].methods["trained"][demo_patterns()[0]]["rmse_m"], 4
    )
    card = (folder / "README.md").read_text()
    assert card_is_ours(card) and "RMSE at 0.1% input density" in card
    for name in ("config.json", "pretraining/config.json"):
        assert (folder / name).is_file(), name
