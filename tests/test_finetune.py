"""Collators, dataset adapters, Trainer fine-tuning, LoRA on the depth stream, and the completion sweep (CPU, tiny)."""

from __future__ import annotations

import argparse
import io
import json
import logging

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from PIL import Image
from transformers import AutoModelForSemanticSegmentation, Trainer, TrainingArguments

from conftest import tiny_config
from vanishing_depth import (
    VanishingDepthForDepthEstimation,
    VanishingDepthForSemanticSegmentation,
    VanishingDepthImageProcessor,
    VanishingDepthModel,
)
from vanishing_depth.cli.evaluate_completion import add_evaluate_completion_subcommand
from vanishing_depth.cli.finetune import add_finetune_subcommand
from vanishing_depth.data import (
    NYU40_CLASSES,
    NYU_SCENE_CLASSES,
    SUNRGBD37_CLASSES,
    RGBDCollator,
    get_adapter,
    nyu_scene_label,
    parse_depth_pattern,
    render_synthetic_scene,
    simulate_depth_input,
    synthetic_corpus,
)
from vanishing_depth.evaluation import (
    BASELINE_PREDICTORS,
    DEFAULT_COMPLETION_PATTERNS,
    SegmentationMetrics,
    evaluate_completion,
    model_predictor,
)
from vanishing_depth.hub import write_run_card
from vanishing_depth.training.finetune import depth_stream_lora_pattern, finetune, lora_config_for_depth_stream

SIZE = 56


# ---------------------------------------------------------------------------------------------------------------------
# Tiny datasets in public schemas, built from synthetic scenes
# ---------------------------------------------------------------------------------------------------------------------
def png(array: np.ndarray) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def scene(index: int) -> tuple[np.ndarray, np.ndarray]:
    return render_synthetic_scene(SIZE, SIZE, index)


def class_ids(depth_m: np.ndarray) -> np.ndarray:
    """1..3 by depth band, 0 (unlabelled) where there is no depth: the NYU/SUN convention before reduce_labels."""
    ids = np.digitize(depth_m, [2.5, 4.5]).astype(np.uint8) + 1
    ids[depth_m == 0] = 0
    return ids


def nyu_like(num: int, start: int = 0) -> Dataset:
    """`wyrx/NYUDepthv2_seg`-style rows: image, depth (16-bit mm PNG), label (1..40, 0 = unlabelled), scene name."""
    scenes = ["bedroom", "living_room_0001a", "basement", "Home Office"]
    rows = []
    for i in range(start, start + num):
        rgb, depth = scene(i)
        rows.append(
            {
                "image": png(rgb),
                "depth": png(np.round(depth * 1000).astype(np.uint16)),
                "label": png(class_ids(depth)),
                "scene": scenes[i % len(scenes)],
            }
        )
    features = Features({"image": ImageFeature(), "depth": ImageFeature(), "label": ImageFeature(), "scene": Value("string")})  # fmt: skip
    return Dataset.from_list(rows, features=features)


def void_like(num: int, points: int = 120) -> Dataset:
    """VOID-style rows: image, sparse_depth and ground_truth as 16-bit PNGs with value / 256 = metres."""
    rows = []
    for i in range(num):
        rgb, depth = scene(i)
        counts = np.round(depth * 256).astype(np.uint16)
        sparse = np.zeros_like(counts)
        valid = np.flatnonzero(counts)
        keep = np.random.default_rng(i).choice(valid, size=points, replace=False)
        sparse.flat[keep] = counts.flat[keep]
        rows.append({"image": png(rgb), "sparse_depth": png(sparse), "ground_truth": png(counts)})
    features = Features({"image": ImageFeature(), "sparse_depth": ImageFeature(), "ground_truth": ImageFeature()})
    return Dataset.from_list(rows, features=features)


def processor(size: int = SIZE) -> VanishingDepthImageProcessor:
    return VanishingDepthImageProcessor(size={"height": size, "width": size})


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("encoder")
    VanishingDepthModel(tiny_config()).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------------------------------
# Sensor patterns
# ---------------------------------------------------------------------------------------------------------------------
def test_depth_patterns_simulate_sensors_reproducibly():
    _, depth = scene(0)
    gt = torch.from_numpy(depth)[None, None]
    uniform = simulate_depth_input(gt, "uniform:50", torch.Generator().manual_seed(1))
    assert int(torch.count_nonzero(uniform)) == 50 and torch.equal(uniform[uniform > 0], gt[uniform > 0])
    assert torch.equal(uniform, simulate_depth_input(gt, "uniform:50", torch.Generator().manual_seed(1)))
    lines = simulate_depth_input(gt, "lidar:8", torch.Generator().manual_seed(1))
    assert int((lines[0, 0] > 0).any(dim=1).sum()) <= 8
    tof = simulate_depth_input(gt, "tof:8")
    assert len(torch.unique(tof[tof > 0])) <= 7 * 7
    holes = simulate_depth_input(gt, "holes")
    assert torch.equal(holes[holes > 0], gt[holes > 0]) and int(torch.count_nonzero(holes)) < int(
        torch.count_nonzero(gt)
    )
    assert torch.equal(simulate_depth_input(gt, "dense"), gt)
    assert int(torch.count_nonzero(simulate_depth_input(gt, "none"))) == 0
    assert parse_depth_pattern("fraction:0.25") == ("fraction", 0.25)
    for bad in ["uniform", "uniform:-3", "lidar:2.5", "tof:0.5", "fraction:2", "dense:3", "sonar:4"]:
        with pytest.raises(ValueError, match="pattern"):
            parse_depth_pattern(bad)


# ---------------------------------------------------------------------------------------------------------------------
# Collators and adapters
# ---------------------------------------------------------------------------------------------------------------------
def test_nyu_segmentation_collator_decodes_units_and_reduces_labels():
    rows = list(nyu_like(2))
    collator = get_adapter("nyu_depth_v2", task="segmentation").collator(processor())
    batch = collator(rows)
    assert set(batch) == {"pixel_values", "depth_values", "labels"}
    assert batch["pixel_values"].shape == (2, 3, SIZE, SIZE) and batch["depth_values"].shape == (2, 1, SIZE, SIZE)
    for i, row in enumerate(rows):
        millimetres = np.asarray(row["depth"]).astype(np.float32)
        np.testing.assert_allclose(batch["depth_values"][i, 0].numpy(), millimetres / 1000.0, rtol=1e-6)
        raw = torch.from_numpy(np.asarray(row["label"]).astype(np.int64))
        expected = torch.where(raw == 0, torch.tensor(255), raw - 1)  # reduce_labels: 0 -> ignored, k -> k - 1
        assert torch.equal(batch["labels"][i], expected)
    assert batch["labels"].dtype == torch.int64


def test_sunrgbd_adapter_decodes_bit_rotated_depth():
    rgb, depth = scene(1)
    millimetres = np.round(depth * 1000).astype(np.uint16)
    rotated = ((millimetres << np.uint16(3)) | (millimetres >> np.uint16(13))).astype(np.uint16)  # toolbox storage
    row = {"image": png(rgb), "depth": png(rotated), "label": png(class_ids(depth))}
    adapter = get_adapter("sunrgbd")
    assert adapter.num_labels == 37 and adapter.reduce_labels and adapter.depth_format == "sunrgbd"
    batch = adapter.collator(processor())([row])
    np.testing.assert_allclose(batch["depth_values"][0, 0].numpy(), millimetres / 1000.0, rtol=1e-6)
    labels = batch["labels"][0]
    raw = torch.from_numpy(class_ids(depth).astype(np.int64))
    assert torch.equal(labels, torch.where(raw == 0, torch.tensor(255), raw - 1))


def test_void_collator_reads_sparse_input_and_dense_ground_truth_in_metres(caplog):
    rows = list(void_like(2, points=120))
    batch = get_adapter("void").collator(processor())(rows)
    for i, row in enumerate(rows):
        gt = np.asarray(row["ground_truth"]).astype(np.float32) / 256.0
        np.testing.assert_allclose(batch["labels"][i].numpy(), gt, rtol=1e-6)
        assert int(torch.count_nonzero(batch["depth_values"][i])) == 120
    assert batch["labels"].shape == (2, SIZE, SIZE) and batch["labels"].dtype == torch.float32
    # Downsampling sparse points loses most of them: the collator says so instead of dropping them silently.
    with caplog.at_level(logging.WARNING, logger="vanishing_depth"):
        small = get_adapter("void").collator(processor(28))(rows)
    assert small["depth_values"].shape[-1] == 28
    assert any("keeps only" in record.getMessage() for record in caplog.records)


def test_corpus_rows_with_a_simulated_sensor_are_replayable():
    corpus = synthetic_corpus(2, SIZE, SIZE, seed=3, keep_in_memory=True)
    rows = [corpus[0], corpus[1]]
    adapter = get_adapter("corpus", input_depth_pattern="uniform:40")
    first = adapter.collator(processor(), seed=7)(rows)
    again = adapter.collator(processor(), seed=7)(rows)
    assert torch.equal(first["depth_values"], again["depth_values"])
    counts = torch.count_nonzero(first["depth_values"].flatten(1), dim=1)
    assert counts.tolist() == [40, 40]
    sparse = first["depth_values"][:, 0]
    assert torch.equal(sparse[sparse > 0], first["labels"][sparse > 0])
    metres = np.asarray(corpus[0]["depth"]).astype(np.float32) * float(corpus[0]["depth_scale"])
    np.testing.assert_allclose(first["labels"][0].numpy(), metres, rtol=1e-6)


def test_nyu_scene_classification_labels():
    assert len(NYU_SCENE_CLASSES) == 10 and NYU_SCENE_CLASSES[-1] == "others"
    assert nyu_scene_label("living_room_0001a") == NYU_SCENE_CLASSES.index("living_room")
    assert nyu_scene_label("Home Office") == NYU_SCENE_CLASSES.index("home_office")
    assert nyu_scene_label("basement") == nyu_scene_label("office_kitchen") == 9
    assert nyu_scene_label(3) == 3
    with pytest.raises(ValueError, match="scene"):
        nyu_scene_label(12)
    batch = get_adapter("nyu_depth_v2", task="classification").collator(processor())(list(nyu_like(4)))
    assert batch["labels"].tolist() == [0, 2, 9, 6]


def test_adapters_declare_classes_units_and_columns():
    nyu = get_adapter("nyu_depth_v2")
    assert nyu.num_labels == 40 == len(NYU40_CLASSES) and nyu.id2label[0] == "wall" and nyu.depth_format == "mm"
    assert SUNRGBD37_CLASSES == NYU40_CLASSES[:37]
    void = get_adapter("void")
    assert void.eval_range_m == (0.2, 5.0) and void.depth_format == void.input_depth_format == "kitti"
    with pytest.raises(ValueError, match="label"):
        nyu.check_columns(["image", "depth"])
    with pytest.raises(ValueError, match="task"):
        get_adapter("sunrgbd", task="depth")
    with pytest.raises(ValueError, match="name"):
        get_adapter("kitti")


def test_collator_errors_name_the_problem():
    rgb, depth = scene(0)
    eight_bit = {"image": png(rgb), "depth": png((depth * 20).astype(np.uint8)), "label": png(class_ids(depth))}
    with pytest.raises(ValueError, match="8-bit"):
        RGBDCollator(processor(), depth_scale=0.001)([eight_bit])
    counts = {"image": png(rgb), "depth": png((depth * 1000).astype(np.uint16)), "label": png(class_ids(depth))}
    with pytest.raises(ValueError, match="depth_scale"):
        RGBDCollator(processor())([counts])
    with pytest.raises(ValueError, match="'segmentation_map'"):
        RGBDCollator(processor(), column_map={"label": "segmentation_map"}, depth_scale=0.001)([counts])
    with pytest.raises(ValueError, match="twice"):
        RGBDCollator(VanishingDepthImageProcessor(do_reduce_labels=True), reduce_labels=True)
    with pytest.raises(ValueError, match="input_depth_pattern"):
        RGBDCollator(processor(), task="depth", depth_scale=0.001)([counts])
    with pytest.raises(ValueError, match="task"):
        RGBDCollator(processor(), task="detection")


# ---------------------------------------------------------------------------------------------------------------------
# LoRA on the depth stream
# ---------------------------------------------------------------------------------------------------------------------
def test_lora_targets_only_the_depth_vit_q_v_and_adapters_reload_to_the_same_outputs(tmp_path):
    from peft import PeftModel, get_peft_model

    torch.manual_seed(0)
    base = VanishingDepthForSemanticSegmentation(tiny_config(num_labels=3))
    base.save_pretrained(tmp_path / "base")
    config = lora_config_for_depth_stream(r=4, model=base)
    assert config.modules_to_save == ["decode_head"]
    model = get_peft_model(base, config)
    lora_modules = sorted({n.rsplit(".lora_", 1)[0] for n, _ in model.named_parameters() if ".lora_" in n})
    assert len(lora_modules) == 2 * 4  # q_proj and v_proj in each of the 4 depth blocks, nothing else
    assert all(".depth_encoder.encoder.layer." in n and n.endswith(("q_proj", "v_proj")) for n in lora_modules)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(".lora_" in n or "decode_head" in n for n in trainable)

    batch = get_adapter("nyu_depth_v2").collator(processor())(list(nyu_like(2)))
    batch["labels"] = batch["labels"].clamp(max=2).where(batch["labels"] != 255, torch.tensor(255))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    inputs = {"pixel_values": batch["pixel_values"], "depth_values": batch["depth_values"]}
    with torch.no_grad():
        expected = model(**inputs).logits
    model.save_pretrained(tmp_path / "adapters")
    assert (tmp_path / "adapters" / "adapter_config.json").is_file()
    assert (tmp_path / "adapters" / "adapter_model.safetensors").is_file()

    fresh = VanishingDepthForSemanticSegmentation.from_pretrained(tmp_path / "base").eval()
    with torch.no_grad():
        untouched = fresh(**inputs).logits
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapters").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**inputs).logits, expected, atol=1e-6)
    assert not torch.allclose(untouched, expected, atol=1e-4)  # the adapters and the head did change the output


def test_lora_pattern_never_matches_rgb_fusion_or_head():
    import re

    pattern = depth_stream_lora_pattern(("q_proj", "v_proj"))
    model = VanishingDepthForDepthEstimation(tiny_config(depth_decoder_hidden_size=8))
    matched = [name for name, _ in model.named_modules() if re.fullmatch(pattern, name)]
    assert matched and all(name.startswith("vanishing_depth.depth_encoder.") for name in matched)
    bare = [name for name, _ in model.vanishing_depth.named_modules() if re.fullmatch(pattern, name)]
    assert len(bare) == len(matched)  # also works on a bare encoder
    with pytest.raises(ValueError, match="modules_to_save"):
        lora_config_for_depth_stream()


# ---------------------------------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------------------------------
class CountingSegmentationMetrics(SegmentationMetrics):
    """Records how Trainer calls the metric, to check the batch-wise (streaming) protocol."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def __call__(self, eval_pred, compute_result=True):
        self.calls.append((tuple(eval_pred.predictions.shape), compute_result))
        return super().__call__(eval_pred, compute_result=compute_result)


def test_issue_snippet_trainer_train_and_evaluate_with_batch_eval_metrics(encoder_dir, tmp_path):
    model = AutoModelForSemanticSegmentation.from_pretrained(encoder_dir, num_labels=40)  # encoder frozen, head new
    encoder_before = {k: v.clone() for k, v in model.vanishing_depth.state_dict().items()}
    metrics = CountingSegmentationMetrics(num_labels=40, id2label=model.config.id2label)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        remove_unused_columns=False,
        batch_eval_metrics=True,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        max_steps=5,
        learning_rate=1e-2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=nyu_like(4),
        eval_dataset=nyu_like(5, start=4),
        data_collator=RGBDCollator(processor(), depth_scale=0.001, reduce_labels=True),
        compute_metrics=metrics,
    )
    trainer.train()
    result = trainer.evaluate()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 5 and all(np.isfinite(losses))
    assert 0.0 <= result["eval_mean_iou"] <= 1.0 and 0.0 <= result["eval_overall_accuracy"] <= 1.0
    assert f"eval_iou_{model.config.id2label[0]}" in result and np.isfinite(result["eval_loss"])
    # Streaming: one call per batch (3 batches of <= 2), logits at the decoder's stride, the result only at the end.
    assert [flag for _, flag in metrics.calls] == [False, False, True]
    assert all(shape[1:] == (40, 4, 4) for shape, _ in metrics.calls)
    for key, value in model.vanishing_depth.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key


def test_finetune_recipe_segmentation_saves_a_loadable_model(encoder_dir, tmp_path):
    data = DatasetDict({"train": nyu_like(4), "test": nyu_like(2, start=4)})
    result = finetune(
        "segmentation", data, encoder_dir, tmp_path / "out", adapter="nyu_depth_v2", image_size=(SIZE, SIZE),
        max_steps=3, batch_size=2, use_cpu=True, segmentation_head="multiscale",
        model_kwargs={"segmentation_decoder_hidden_size": 8},
    )  # fmt: skip
    assert result.trainer.args.remove_unused_columns is False and result.trainer.args.batch_eval_metrics is True
    assert "eval_mean_iou" in result.eval_metrics and np.isfinite(result.train_metrics["train_loss"])
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "finetune_results.json"):
        assert (tmp_path / "out" / name).is_file(), name
    summary = json.loads((tmp_path / "out" / "finetune_results.json").read_text())
    assert summary["task"] == "segmentation" and summary["adapter"] == "nyu_depth_v2" and summary.keys() == result.summary.keys()
    # The recipe writes its numbers (eval_results.json) but no card: the command does, from what the recipe returns.
    assert result.eval_results_path == tmp_path / "out" / "eval_results.json"
    entries = json.loads(result.eval_results_path.read_text())["results"]
    assert {entry["metric"]["type"] for entry in entries} == {"mean_iou", "accuracy"}
    assert not (tmp_path / "out" / "README.md").exists()
    card = write_run_card(result.output_dir, result.summary).read_text()
    assert "mean IoU" in card and "pixel accuracy" in card
    reloaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "out")
    assert reloaded.config.num_labels == 40 and reloaded.config.segmentation_head == "multiscale"
    assert reloaded.config.id2label[0] == "wall"


def test_finetune_classification_on_nyu_scenes(encoder_dir, tmp_path):
    result = finetune(
        "classification", nyu_like(4), encoder_dir, tmp_path, eval_dataset=nyu_like(4), adapter="nyu_depth_v2",
        image_size=(SIZE, SIZE), max_steps=2, batch_size=2, use_cpu=True, save=False,
    )  # fmt: skip
    assert result.model.config.num_labels == 10
    assert 0.0 <= result.eval_metrics["eval_accuracy"] <= 1.0 and result.eval_metrics["eval_num_samples"] == 4


def test_cli_finetune_depth_completion_with_lora_on_a_void_parquet_folder(encoder_dir, tmp_path):
    folder = tmp_path / "void"
    void_like(4).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    void_like(2).to_parquet(str(folder / "data" / "test-00000-of-00001.parquet"))
    parser = argparse.ArgumentParser(prog="vanishing-depth")
    add_finetune_subcommand(parser.add_subparsers(dest="command"))
    args_list = ["finetune", "--task", "depth", "--dataset", str(folder), "--encoder", str(encoder_dir),
                 "--output-dir", str(tmp_path / "out"), "--image-size", str(SIZE),
                 "--max-steps", "2", "--batch-size", "2", "--lora", "--lora-r", "2", "--use-cpu"]  # fmt: skip
    args = parser.parse_args(args_list)
    assert args.func(args) == 0
    assert (tmp_path / "out" / "adapter_config.json").is_file()
    summary = json.loads((tmp_path / "out" / "finetune_results.json").read_text())
    assert summary["adapter"] == "void" and summary["lora"] is True
    assert np.isfinite(summary["eval"]["eval_rmse_mm"])
    # A second run into the same folder is refused before training; --overwrite replaces the first one's files.
    before = (tmp_path / "out" / "finetune_results.json").read_text()
    with pytest.raises(ValueError, match="fine-tuning output folder .* is not empty"):
        args.func(args)
    assert (tmp_path / "out" / "finetune_results.json").read_text() == before
    again = parser.parse_args([*args_list, "--overwrite", "--seed", "1"])
    assert again.func(again) == 0 and json.loads((tmp_path / "out" / "finetune_results.json").read_text())
    inside = parser.parse_args([*args_list[:6], str(tmp_path / "out"), *args_list[7:], "--overwrite"])
    inside.encoder = str(tmp_path / "out")  # the encoder read from the folder --overwrite would delete
    with pytest.raises(ValueError, match="holds --encoder"):
        inside.func(inside)


# ---------------------------------------------------------------------------------------------------------------------
# Depth-completion sweep
# ---------------------------------------------------------------------------------------------------------------------
def test_completion_sweep_prints_a_table_and_writes_json_and_png(tmp_path, capsys):
    torch.manual_seed(0)
    model = VanishingDepthForDepthEstimation(tiny_config(depth_decoder_hidden_size=8))
    corpus = synthetic_corpus(3, SIZE, SIZE, seed=5, keep_in_memory=True)
    result = evaluate_completion(model, corpus, processor(), output_dir=tmp_path, batch_size=2, seed=0)
    printed = capsys.readouterr().out
    assert list(result.metrics) == list(DEFAULT_COMPLETION_PATTERNS)
    for pattern in DEFAULT_COMPLETION_PATTERNS:
        assert pattern in printed
        assert result.metrics[pattern]["num_images"] == 3 and np.isfinite(result.metrics[pattern]["rmse_mm"])
    assert result.metrics["uniform:150"]["input_points"] == 150
    assert result.metrics["uniform:1500"]["input_points"] == 1500
    assert result.metrics["holes"]["input_points"] > result.metrics["uniform:1500"]["input_points"]
    saved = json.loads((tmp_path / "completion_metrics.json").read_text())
    assert saved["metrics"]["lidar:16"]["rmse_mm"] == pytest.approx(result.metrics["lidar:16"]["rmse_mm"])
    with Image.open(tmp_path / "completion_sweep.png") as picture:
        assert picture.format == "PNG" and picture.width > 300
    again = evaluate_completion(model, corpus, processor(), batch_size=3, seed=0, print_table=False)
    for pattern in DEFAULT_COMPLETION_PATTERNS:  # same seed, other batching: the same inputs and scores
        assert again.metrics[pattern]["rmse_mm"] == pytest.approx(result.metrics[pattern]["rmse_mm"], rel=1e-5)


def test_completion_sweep_scores_other_methods_on_the_same_inputs(tmp_path):
    torch.manual_seed(0)
    model = VanishingDepthForDepthEstimation(tiny_config(depth_decoder_hidden_size=8)).eval()
    corpus = synthetic_corpus(2, SIZE, SIZE, seed=5, keep_in_memory=True)
    patterns = ["dense", "fraction:0.1"]
    result = evaluate_completion(
        model, corpus, processor(), patterns=patterns, output_dir=tmp_path, seed=0, print_table=False,
        predictors={"same_model": model_predictor(model), **BASELINE_PREDICTORS},
    )  # fmt: skip
    assert list(result.methods) == ["model", "same_model", "nearest_fill", "median_fill"]
    for pattern in patterns:  # the model as a predictor sees exactly the model's inputs
        assert result.methods["same_model"][pattern]["rmse_mm"] == pytest.approx(result.metrics[pattern]["rmse_mm"])
    assert result.methods["nearest_fill"]["dense"]["rmse_mm"] < 1e-3  # dense input: nearest fill copies it
    saved = json.loads((tmp_path / "completion_metrics.json").read_text())
    assert set(saved["methods"]) == set(result.methods) and (tmp_path / "rmse_by_method.png").is_file()
    assert "RMSE (m) by method" in result.table
    with pytest.raises(ValueError, match="must not reuse the model's name"):
        evaluate_completion(model, corpus, processor(), patterns=patterns, predictors={"model": model_predictor(model)})


def test_cli_evaluate_completion_on_the_demo_corpus(tmp_path, capsys):
    torch.manual_seed(0)
    VanishingDepthForDepthEstimation(tiny_config(depth_decoder_hidden_size=8)).save_pretrained(tmp_path / "model")
    parser = argparse.ArgumentParser(prog="vanishing-depth")
    add_evaluate_completion_subcommand(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["evaluate-completion", "--model", str(tmp_path / "model"), "--dataset", "redwood_demo", "--split", "test",
         "--max-samples", "2", "--image-size", str(SIZE), "--patterns", "uniform:500", "tof:8", "none",
         "--output-dir", str(tmp_path / "eval")]
    )  # fmt: skip
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "uniform:500" in out and "tof:8" in out and "none" in out
    saved = json.loads((tmp_path / "eval" / "completion_metrics.json").read_text())
    assert saved["settings"]["num_frames"] == 2 and saved["metrics"]["none"]["input_points"] == 0
    assert (tmp_path / "eval" / "completion_sweep.png").is_file()


def test_old_training_exports_are_deprecated_aliases_of_their_one_home():
    import importlib

    import vanishing_depth
    import vanishing_depth.training as training
    from vanishing_depth.data import RGBDCollator as collator_class

    with pytest.warns(FutureWarning, match="import it from `vanishing_depth.data`"):
        assert training.RGBDCollator is collator_class
    with pytest.warns(FutureWarning, match="vanishing_depth.loss_vanishing_depth"):
        from vanishing_depth.training import VanishingDepthLoss
    assert VanishingDepthLoss is vanishing_depth.VanishingDepthLoss
    with pytest.raises(AttributeError, match="no_such_name"):
        training.no_such_name  # noqa: B018
    for gone in ("losses", "metrics", "completion_eval", "completion", "demo"):  # moved: one home per job
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"vanishing_depth.training.{gone}")
