import inspect
import math

import evaluate
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers.trainer_utils import EvalPrediction

from vanishing_depth.evaluation import (
    DEPTH_METRIC_KEYS,
    Accuracy,
    ClassificationMetrics,
    DepthErrors,
    DepthMetrics,
    MeanIoU,
    PretrainingValidationMetrics,
    SegmentationMetrics,
    class_key_names,
    compute_depth_metrics,
)

# The example of evaluate's `metrics/mean_iou/mean_iou.py` docstring (three images) and its published result.
DOC_PREDICTIONS = [
    np.array([[1, 2], [3, 4], [5, 255]]),
    np.array([[2, 7], [9, 2], [3, 6]]),
    np.array([[2, 2, 3], [8, 2, 4], [3, 255, 2]]),
]
DOC_REFERENCES = [
    np.array([[0, 3], [5, 4], [6, 255]]),
    np.array([[1, 7], [9, 2], [3, 6]]),
    np.array([[1, 2, 2], [8, 2, 1], [3, 255, 1]]),
]
DOC_RESULT = {
    "mean_iou": 0.47750000000000004,
    "mean_accuracy": 0.5916666666666666,
    "overall_accuracy": 0.5263157894736842,
    "per_category_iou": np.array([0.0, 0.0, 0.375, 0.4, 0.5, 0.0, 0.5, 1.0, 1.0, 1.0]),
    "per_category_accuracy": np.array([0.0, 0.0, 0.75, 0.66666667, 1.0, 0.0, 0.5, 1.0, 1.0, 1.0]),
}


def assert_doc_result(result):
    assert set(result) == set(DOC_RESULT)
    for key in ("mean_iou", "mean_accuracy", "overall_accuracy"):
        assert result[key] == DOC_RESULT[key], key
    np.testing.assert_allclose(result["per_category_iou"], DOC_RESULT["per_category_iou"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(result["per_category_accuracy"], DOC_RESULT["per_category_accuracy"], atol=1e-8)


def reference_mean_iou(predictions, references, num_labels, ignore_index, label_map=None, reduce_labels=False):
    """evaluate's mean_iou algorithm (per-image histograms over [0, num_labels - 1], summed), as the oracle."""
    totals = np.zeros((3, num_labels))
    for pred, label in zip(predictions, references):
        label = label.copy()
        if label_map:
            original = label.copy()
            for old, new in label_map.items():
                label[original == old] = new
        if reduce_labels:
            label[label == 0] = 255
            label = label - 1
            label[label == 254] = 255
        keep = label != ignore_index
        pred, label = pred[keep], label[keep]
        for row, values in enumerate((pred[pred == label], pred, label)):
            totals[row] += np.histogram(values, bins=num_labels, range=(0, num_labels - 1))[0]
    intersect, area_pred, area_label = totals
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersect / (area_pred + area_label - intersect)
        acc = intersect / area_label
    return {
        "mean_iou": np.nanmean(iou),
        "mean_accuracy": np.nanmean(acc),
        "overall_accuracy": intersect.sum() / area_label.sum(),
        "per_category_iou": iou,
        "per_category_accuracy": acc,
    }


def assert_same_segmentation(a, b):
    for key in ("mean_iou", "mean_accuracy", "overall_accuracy"):
        assert a[key] == pytest.approx(b[key], rel=1e-12, nan_ok=True), key
    for key in ("per_category_iou", "per_category_accuracy"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12)


def random_segmentation(seed, batch=4, size=(6, 7), num_labels=5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_labels, size=(batch, *size))
    labels[rng.random(labels.shape) < 0.15] = 255
    preds = np.where(rng.random(labels.shape) < 0.6, labels, rng.integers(0, num_labels, size=labels.shape))
    preds[preds == 255] = 0
    return preds, labels


# ---------------------------------------------------------------------------------------------------------------------
# segmentation
# ---------------------------------------------------------------------------------------------------------------------


def test_mean_iou_docstring_example_segmentation_metrics():
    metric = SegmentationMetrics(num_labels=10, ignore_index=255, reduce_labels=False)
    metric.update(DOC_PREDICTIONS, DOC_REFERENCES)
    assert_doc_result(metric.compute())


def test_mean_iou_docstring_example_evaluate_metric(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    metric = MeanIoU(keep_in_memory=True, cache_dir=str(tmp_path))
    metric.add_batch(predictions=DOC_PREDICTIONS[:2], references=DOC_REFERENCES[:2])
    metric.add(predictions=DOC_PREDICTIONS[2], references=DOC_REFERENCES[2])
    assert_doc_result(metric.compute(num_labels=10, ignore_index=255, reduce_labels=False))
    # settings given once to the constructor instead
    metric = MeanIoU(num_labels=10, keep_in_memory=True, cache_dir=str(tmp_path))
    assert_doc_result(metric.compute(predictions=DOC_PREDICTIONS, references=DOC_REFERENCES))
    with pytest.raises(ValueError, match="unknown"):
        MeanIoU(num_label=10)


@pytest.mark.parametrize(
    "options",
    [{}, {"reduce_labels": True}, {"label_map": {1: 3, 3: 1, 7: 0}}, {"label_map": {2: 0}, "reduce_labels": True}],
)
def test_segmentation_matches_evaluate_semantics_with_out_of_range_values(options):
    rng = np.random.default_rng(7)
    num_labels = 6
    labels = [rng.integers(-1, num_labels + 3, size=(5, 4)) for _ in range(3)]
    preds = [rng.integers(-1, num_labels + 2, size=(5, 4)) for _ in range(3)]
    labels[0][0, :2] = 255
    labels[1][1, 1] = 0
    metric = SegmentationMetrics(num_labels=num_labels, ignore_index=255, pad_index=None, **options)
    metric.update(preds, labels)
    expected = reference_mean_iou(preds, labels, num_labels, 255, **options)
    assert_same_segmentation(metric.compute(), expected)


def test_segmentation_absent_class_is_nan_and_nan_to_num():
    preds = np.array([[[0, 0], [1, 1]]])
    labels = np.array([[[0, 1], [1, 1]]])
    metric = SegmentationMetrics(num_labels=3)
    metric.update(preds, labels)
    result = metric.compute()
    assert math.isnan(result["per_category_iou"][2])
    assert result["mean_iou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    metric = SegmentationMetrics(num_labels=3, nan_to_num=0)
    metric.update(preds, labels)
    assert metric.compute()["per_category_iou"][2] == 0.0


def test_segmentation_streaming_and_merge_equal_one_shot():
    preds, labels = random_segmentation(seed=1)
    one_shot = SegmentationMetrics(num_labels=5)
    one_shot.update(torch.from_numpy(preds), torch.from_numpy(labels))

    streamed = SegmentationMetrics(num_labels=5)
    streamed.update(preds[:2], labels[:2])
    streamed.update(torch.from_numpy(preds[2:]), torch.from_numpy(labels[2:]))
    assert torch.equal(streamed.confusion_matrix, one_shot.confusion_matrix)
    assert_same_segmentation(streamed.compute(), one_shot.compute())
    assert_same_segmentation(one_shot.compute(), reference_mean_iou(list(preds), list(labels), 5, 255))

    part_a, part_b = SegmentationMetrics(num_labels=5), SegmentationMetrics(num_labels=5)
    part_a.update(preds[:3], labels[:3])
    part_b.update(preds[3:], labels[3:])
    merged = part_a.merge(part_b)
    assert torch.equal(merged.confusion_matrix, one_shot.confusion_matrix)
    assert_same_segmentation(merged.compute(), one_shot.compute())

    with pytest.raises(ValueError, match="settings"):
        part_a.merge(SegmentationMetrics(num_labels=5, reduce_labels=True))

    one_shot.reset()
    assert int(one_shot.confusion_matrix.sum()) == 0


def test_segmentation_logits_are_upsampled_then_argmaxed():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, 4, generator=gen)
    labels = torch.randint(0, 4, (2, 6, 8), generator=gen)
    expected_maps = F.interpolate(logits, size=(6, 8), mode="bilinear", align_corners=False).argmax(dim=1)
    from_logits = SegmentationMetrics(num_labels=4)
    from_logits.update(logits, labels)
    from_maps = SegmentationMetrics(num_labels=4)
    from_maps.update(expected_maps, labels)
    assert torch.equal(from_logits.confusion_matrix, from_maps.confusion_matrix)
    with pytest.raises(ValueError, match="num_labels"):
        from_logits.update(torch.randn(2, 3, 3, 4), labels)
    with pytest.raises(ValueError, match="never resized"):
        from_logits.update(torch.zeros(2, 3, 4, dtype=torch.long), labels)


def test_segmentation_trainer_batch_eval_convention():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 3, 4, 4, generator=gen)
    labels = torch.randint(0, 3, (5, 8, 8), generator=gen)
    labels[0, 0, :4] = 255
    labels[4, :, 6:] = -100  # Trainer's padding when it gathers different sizes across processes
    metric = SegmentationMetrics(num_labels=3, id2label={0: "wall", 1: "floor", 2: "chair"})
    assert "compute_result" in inspect.signature(metric).parameters  # what Trainer checks

    assert metric(EvalPrediction(predictions=logits[:2], label_ids=labels[:2]), compute_result=False) == {}
    # a tuple of model outputs (logits, hidden states): the first one is the logits
    result = metric(
        EvalPrediction(predictions=(logits[2:], torch.zeros(3, 1)), label_ids=labels[2:]), compute_result=True
    )

    one_shot = SegmentationMetrics(num_labels=3, pad_index=None)
    keep = (labels != -100).numpy()
    maps = F.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False).argmax(1).numpy()
    one_shot.update([m[k][None] for m, k in zip(maps, keep)], [lab[k][None] for lab, k in zip(labels.numpy(), keep)])
    expected = one_shot.compute()
    assert set(result) == {"mean_iou", "mean_accuracy", "overall_accuracy"} | {
        f"{kind}_{name}" for kind in ("iou", "accuracy") for name in ("wall", "floor", "chair")
    }
    assert all(isinstance(value, float) for value in result.values())
    assert result["mean_iou"] == pytest.approx(expected["mean_iou"], rel=1e-12)
    assert result["iou_floor"] == pytest.approx(expected["per_category_iou"][1], rel=1e-12)
    assert result["accuracy_chair"] == pytest.approx(expected["per_category_accuracy"][2], rel=1e-12)
    assert int(metric.confusion_matrix.sum()) == 0  # reset after compute_result=True

    # Trainer without batch_eval_metrics: one call with everything
    assert metric(EvalPrediction(predictions=logits.numpy(), label_ids=labels.numpy())) == result


def test_segmentation_per_class_results_are_named_from_id2label():
    from transformers import PretrainedConfig

    # As a model config has it (config.json keys are strings; the config turns them into ints), with names that are
    # not usable as metric keys as they are, and class 4 unnamed.
    config = PretrainedConfig(id2label={"0": "wall", "1": "night stand", "2": "TV/monitor", "3": " (other) "})
    preds = np.array([[[0, 1], [1, 2]]])
    labels = np.array([[[0, 1], [2, 2]]])
    named = SegmentationMetrics(num_labels=5, id2label=config.id2label)
    named.update(preds, labels)
    result = named.compute()
    keys = ["wall", "night_stand", "TV_monitor", "other", "4"]
    assert named.class_keys == keys
    # evaluate's keys are all still there, and one float per class and kind under its name
    assert set(result) == {
        "mean_iou",
        "mean_accuracy",
        "overall_accuracy",
        "per_category_iou",
        "per_category_accuracy",
    } | {f"{kind}_{key}" for kind in ("iou", "accuracy") for key in keys}
    # by hand: class 0 I=1 U=1; class 1 I=1 U=2 (predicted twice, labelled once); class 2 I=1 U=2; 3 and 4 absent
    assert (result["iou_wall"], result["iou_night_stand"], result["iou_TV_monitor"]) == (1.0, 0.5, 0.5)
    assert (result["accuracy_wall"], result["accuracy_night_stand"], result["accuracy_TV_monitor"]) == (1.0, 1.0, 0.5)
    assert math.isnan(result["iou_other"]) and math.isnan(result["accuracy_4"])
    for index, key in enumerate(keys):
        assert result[f"iou_{key}"] == pytest.approx(result["per_category_iou"][index], nan_ok=True)
    assert named.id2label[1] == "night stand"  # the names as given stay available

    # The Trainer output: the same named floats, no arrays.
    trainer_result = SegmentationMetrics(num_labels=5, id2label=config.id2label)(
        EvalPrediction(predictions=preds, label_ids=labels)
    )
    assert trainer_result == pytest.approx(
        {key: value for key, value in result.items() if not key.startswith("per_category")}, nan_ok=True
    )
    zeroed = SegmentationMetrics(num_labels=5, id2label=config.id2label, nan_to_num=0)
    zeroed.update(preds, labels)
    assert zeroed.compute()["iou_other"] == 0.0

    # Without id2label: evaluate's dict from compute(), ids in the Trainer keys, as before.
    plain = SegmentationMetrics(num_labels=5)
    plain.update(preds, labels)
    assert set(plain.compute()) == set(DOC_RESULT)
    plain_trainer = SegmentationMetrics(num_labels=5)(EvalPrediction(predictions=preds, label_ids=labels))
    assert {key for key in plain_trainer if key.startswith("iou_")} == {f"iou_{index}" for index in range(5)}


def test_class_key_names_are_unique_and_id2label_is_checked():
    # Names that coincide once cleaned get their id; a name equal to another class's id does not take it over.
    assert class_key_names(4, {0: "floor mat", 1: "floor_mat", 2: "3"}) == ["floor_mat_0", "floor_mat_1", "3_2", "3"]
    assert class_key_names(2, ["a b", "c"]) == ["a_b", "c"]
    assert class_key_names(2, None) == ["0", "1"]
    with pytest.raises(ValueError, match=r"`id2label` keys must be class ids in \[0, 2\).* got 2"):
        SegmentationMetrics(num_labels=2, id2label={0: "a", 2: "b"})
    with pytest.raises(ValueError, match="`id2label` keys .* got 'wall'"):
        SegmentationMetrics(num_labels=2, id2label={"wall": 0})
    with pytest.raises(ValueError, match="`id2label` must be a dict .* got int"):
        ClassificationMetrics(num_labels=2, id2label=5)


def test_segmentation_with_real_trainer(tmp_path):
    from torch import nn
    from transformers import Trainer, TrainingArguments

    class TinySegmenter(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, kernel_size=1)

        def forward(self, pixel_values, labels=None):
            logits = self.conv(pixel_values)[:, :, ::2, ::2]  # half resolution, like real segmentation heads
            return {"loss": logits.mean(), "logits": logits}

    gen = torch.Generator().manual_seed(0)
    model = TinySegmenter()
    data = [
        {"pixel_values": torch.randn(3, 8, 8, generator=gen), "labels": torch.randint(0, 4, (8, 8), generator=gen)}
        for _ in range(5)
    ]
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=2, batch_eval_metrics=True, report_to="none", use_cpu=True
    )
    trainer = Trainer(model=model, args=args, eval_dataset=data, compute_metrics=SegmentationMetrics(num_labels=4))
    metrics = trainer.evaluate()

    expected = SegmentationMetrics(num_labels=4)
    with torch.no_grad():
        logits = model(torch.stack([d["pixel_values"] for d in data]))["logits"]
    expected.update(logits, torch.stack([d["labels"] for d in data]))
    assert metrics["eval_mean_iou"] == pytest.approx(expected.compute()["mean_iou"], rel=1e-9)
    assert "eval_iou_3" in metrics


def test_synchronize_with_accelerator_and_torch_distributed(tmp_path):
    preds, labels = random_segmentation(seed=2)

    class TwoIdenticalProcesses:
        """Stands in for an Accelerator on 2 processes that saw the same data: reduce(sum) doubles."""

        device = torch.device("cpu")

        def reduce(self, tensor, reduction="sum"):
            assert reduction == "sum"
            return tensor * 2

    metric = SegmentationMetrics(num_labels=5)
    metric.update(preds, labels)
    doubled = SegmentationMetrics(num_labels=5)
    doubled.update(preds, labels)
    doubled.update(preds, labels)
    metric.synchronize(TwoIdenticalProcesses())
    assert torch.equal(metric.confusion_matrix, doubled.confusion_matrix)
    with pytest.raises(RuntimeError, match="reset"):
        metric.update(preds, labels)
    with pytest.raises(RuntimeError, match="already"):
        metric.synchronize(TwoIdenticalProcesses())

    depth = DepthMetrics()
    depth.update(np.full((1, 2, 2), 2.0), np.array([[[1.0, 2.0], [3.0, 0.0]]]))
    before = depth.compute()
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        depth.synchronize()
    finally:
        torch.distributed.destroy_process_group()
    assert depth.compute() == before


# ---------------------------------------------------------------------------------------------------------------------
# depth
# ---------------------------------------------------------------------------------------------------------------------

# Two images where per-image averaging and pixel pooling differ (3 and 4 valid pixels, different errors).
DEPTH_GT = np.array([[[1.0, 2.0], [4.0, 0.0]], [[2.0, 2.0], [2.0, 2.0]]])
DEPTH_PRED = np.array([[[1.5, 2.0], [3.0, 9.0]], [[2.0, 2.0], [2.0, 2.5]]])


def depth_metrics_numpy(pred, gt):
    """Every metric of one image, written out in numpy."""
    err = pred - gt
    d = np.log(pred) - np.log(gt)
    ratio = np.maximum(pred / gt, gt / pred)
    inv = 1000.0 / pred - 1000.0 / gt
    rmse = np.sqrt(np.mean(err**2))
    mae = np.mean(np.abs(err))
    return {
        "abs_rel": np.mean(np.abs(err) / gt),
        "sq_rel": np.mean(err**2 / gt),
        "rmse_m": rmse,
        "rmse_mm": 1000 * rmse,
        "rmse_log": np.sqrt(np.mean(d**2)),
        "mae_m": mae,
        "mae_mm": 1000 * mae,
        "irmse_inv_km": np.sqrt(np.mean(inv**2)),
        "imae_inv_km": np.mean(np.abs(inv)),
        "delta1": np.mean(ratio < 1.25),
        "delta2": np.mean(ratio < 1.25**2),
        "delta3": np.mean(ratio < 1.25**3),
        "silog": 100 * np.sqrt(np.mean(d**2) - np.mean(d) ** 2),
        "log10": np.mean(np.abs(np.log10(pred) - np.log10(gt))),
    }


def test_depth_metrics_per_image_average_by_hand():
    valid = DEPTH_GT > 0
    per_image = [depth_metrics_numpy(DEPTH_PRED[i][valid[i]], DEPTH_GT[i][valid[i]]) for i in range(2)]
    expected = {key: (per_image[0][key] + per_image[1][key]) / 2 for key in DEPTH_METRIC_KEYS}
    result = compute_depth_metrics(torch.from_numpy(DEPTH_PRED)[:, None], torch.from_numpy(DEPTH_GT))
    for key in DEPTH_METRIC_KEYS:
        assert result[key] == pytest.approx(expected[key], rel=1e-12), key
    # literal arithmetic: image 1 AbsRel (0.5/1 + 0/2 + 1/4)/3 = 0.25, image 2 (0.5/2)/4 = 0.0625
    assert result["abs_rel"] == pytest.approx((0.25 + 0.0625) / 2)
    assert result["rmse_m"] == pytest.approx((math.sqrt(1.25 / 3) + math.sqrt(0.25 / 4)) / 2)
    assert result["num_images"] == 2 and result["num_valid_pixels"] == 7

    pooled = compute_depth_metrics(DEPTH_PRED, DEPTH_GT, per_image=False)
    expected_pooled = depth_metrics_numpy(DEPTH_PRED[valid], DEPTH_GT[valid])
    for key in DEPTH_METRIC_KEYS:
        assert pooled[key] == pytest.approx(expected_pooled[key], rel=1e-12), key
    assert pooled["abs_rel"] == pytest.approx(1.0 / 7)  # (0.5 + 0.25 + 0.25) / 7, not 0.15625
    assert pooled["rmse_m"] != pytest.approx(result["rmse_m"], rel=1e-3)


def test_depth_range_clamp_and_validity_mask():
    gt = np.array([[[1.0, 2.0, 2.5], [4.0, 0.0, np.nan]], [[0.5, 0.0, 5.0], [6.0, 0.0, 0.0]]])
    pred = np.array([[[1.5, 9.0, 1.0], [3.0, 2.0, 2.0]], [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])
    result = compute_depth_metrics(pred, gt, min_depth_m=1.5, max_depth_m=3.0)
    # only image 1 has GT in (1.5, 3]: pixels 2.0 and 2.5; the prediction 9 is clamped to 3 and 1 to 1.5
    expected = depth_metrics_numpy(np.array([3.0, 1.5]), np.array([2.0, 2.5]))
    for key in DEPTH_METRIC_KEYS:
        assert result[key] == pytest.approx(expected[key], rel=1e-12), key
    assert result["num_images"] == 1 and result["num_skipped_images"] == 1 and result["num_valid_pixels"] == 2

    unclamped = compute_depth_metrics(pred, gt, min_depth_m=1.5, max_depth_m=3.0, clamp_predictions=False)
    expected = depth_metrics_numpy(np.array([9.0, 1.0]), np.array([2.0, 2.5]))
    assert unclamped["rmse_m"] == pytest.approx(expected["rmse_m"], rel=1e-12)

    mask = np.ones_like(gt, dtype=bool)
    mask[0, 0, 1] = False
    masked = compute_depth_metrics(pred, gt, valid_mask=mask, min_depth_m=1.5, max_depth_m=3.0)
    assert masked["mae_m"] == pytest.approx(1.0) and masked["num_valid_pixels"] == 1

    nothing = compute_depth_metrics(pred, np.zeros_like(gt))
    assert math.isnan(nothing["rmse_m"]) and nothing["num_images"] == 0


def test_depth_streaming_merge_and_prediction_resize():
    rng = np.random.default_rng(3)
    gt = rng.uniform(0.5, 5.0, size=(4, 6, 6))
    gt[rng.random(gt.shape) < 0.3] = 0.0
    pred = gt * rng.uniform(0.8, 1.3, size=gt.shape)
    one_shot = compute_depth_metrics(pred, gt, max_depth_m=4.0)

    streamed = DepthMetrics(max_depth_m=4.0)
    streamed.update(pred[:1], gt[:1])
    streamed.update(torch.from_numpy(pred[1:]), torch.from_numpy(gt[1:]))
    a, b = DepthMetrics(max_depth_m=4.0), DepthMetrics(max_depth_m=4.0)
    a.update(pred[:3], gt[:3])
    b.update(pred[3:], gt[3:])
    for result in (streamed.compute(), a.merge(b).compute()):
        for key in one_shot:
            assert result[key] == pytest.approx(one_shot[key], rel=1e-12), key
    with pytest.raises(ValueError, match="settings"):
        a.merge(DepthMetrics())

    small = torch.from_numpy(pred[:, ::2, ::2].copy())
    resized = F.interpolate(small[:, None], size=(6, 6), mode="bilinear", align_corners=False)[:, 0]
    assert compute_depth_metrics(small, gt) == compute_depth_metrics(resized, gt)


def test_depth_trainer_batch_eval_convention():
    pred = torch.from_numpy(DEPTH_PRED)[:, None].float()  # predicted_depth (B, 1, H, W)
    gt = torch.from_numpy(DEPTH_GT).float()
    metric = DepthMetrics()
    assert metric(EvalPrediction(predictions=pred[:1], label_ids=gt[:1]), compute_result=False) == {}
    result = metric(EvalPrediction(predictions=(pred[1:],), label_ids=gt[1:]), compute_result=True)
    expected = compute_depth_metrics(DEPTH_PRED, DEPTH_GT)
    assert set(result) == set(expected)
    for key in expected:
        assert result[key] == pytest.approx(expected[key], rel=1e-6), key
    assert metric.compute()["num_images"] == 0  # reset


def test_depth_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_depth_m"):
        DepthMetrics(min_depth_m=2.0, max_depth_m=1.0)
    with pytest.raises(ValueError, match="unit"):
        DepthMetrics(unit="mm")
    with pytest.raises(ValueError, match="batch size"):
        DepthMetrics().update(np.ones((2, 3, 3)), np.ones((3, 3, 3)))


# ---------------------------------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------------------------------


def test_classification_accuracy_top_k_and_per_class():
    logits = torch.tensor(
        [[0.1, 0.7, 0.2], [0.8, 0.15, 0.05], [0.3, 0.3, 0.4], [0.5, 0.1, 0.4], [0.0, 0.0, 1.0]], dtype=torch.float32
    )
    labels = torch.tensor([1, 2, 0, 2, -100])  # last one ignored
    # top-1 ids [1, 0, 2, 0]: correct 1 of 4; top-2 sets {1,2} {0,1} {2,0} {0,2}: correct for samples 0, 2, 3
    metric = ClassificationMetrics(num_labels=3, top_k=(1, 2))
    metric.update(logits, labels)
    result = metric.compute()
    assert result["accuracy"] == pytest.approx(1 / 4)
    assert result["top2_accuracy"] == pytest.approx(3 / 4)
    assert result["num_samples"] == 4
    # per class: class 0 -> 0/1, class 1 -> 1/1, class 2 -> 0/2
    assert result["mean_per_class_accuracy"] == pytest.approx((0 + 1 + 0) / 3)

    streamed = ClassificationMetrics(num_labels=3, top_k=(1, 2))
    assert streamed(EvalPrediction(predictions=logits[:2].numpy(), label_ids=labels[:2].numpy()), False) == {}
    assert streamed(EvalPrediction(predictions=logits[2:], label_ids=labels[2:]), compute_result=True) == result

    # Per-class accuracy by name with id2label (num_labels taken from it); a class without samples is NaN.
    named = ClassificationMetrics(id2label={0: "cat", 1: "dog house", 2: "bird", 3: "fish"})
    named.update(torch.cat((logits, torch.full((5, 1), -1e9)), dim=1), labels)  # "fish" never predicted
    by_name = named.compute()
    assert by_name["accuracy_cat"] == 0.0 and by_name["accuracy_dog_house"] == 1.0 and by_name["accuracy_bird"] == 0.0
    assert math.isnan(by_name["accuracy_fish"])
    for key in ("accuracy", "mean_per_class_accuracy", "num_samples"):
        assert by_name[key] == pytest.approx(result[key]), key
    assert not any(key.startswith("accuracy_") for key in result)  # no names, no per-class keys (as before)

    ids = ClassificationMetrics()
    ids.update(np.array([0, 1, 1]), [0, 1, 2])
    other = ClassificationMetrics()
    other.update([2], [2])
    assert ids.merge(other).compute() == {"accuracy": 0.75, "num_samples": 4.0}
    with pytest.raises(ValueError, match="scores"):
        ClassificationMetrics(top_k=(1, 3)).update(np.array([0, 1]), np.array([0, 1]))


# ---------------------------------------------------------------------------------------------------------------------
# evaluate.Metric wrappers, offline
# ---------------------------------------------------------------------------------------------------------------------


def test_evaluate_combine_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    options = {"keep_in_memory": True, "cache_dir": str(tmp_path)}
    combined = evaluate.combine(
        {"all": DepthErrors(**options), "near": DepthErrors(max_depth_m=2.0, **options)}, force_prefix=True
    )
    combined.add_batch(predictions=list(DEPTH_PRED[:1]), references=list(DEPTH_GT[:1]))
    combined.add_batch(predictions=list(DEPTH_PRED[1:]), references=list(DEPTH_GT[1:]))
    result = combined.compute()
    expected_all = compute_depth_metrics(DEPTH_PRED, DEPTH_GT)
    expected_near = compute_depth_metrics(DEPTH_PRED, DEPTH_GT, max_depth_m=2.0)
    for key in DEPTH_METRIC_KEYS:
        assert result[f"all_{key}"] == pytest.approx(expected_all[key], rel=1e-6), key
        assert result[f"near_{key}"] == pytest.approx(expected_near[key], rel=1e-6), key

    # two unnamed modules with the same name get numbered prefixes
    combined = evaluate.combine([DepthErrors(**options), DepthErrors(per_image=False, **options)])
    result = combined.compute(predictions=list(DEPTH_PRED), references=list(DEPTH_GT))
    assert result["depth_errors_1_abs_rel"] == pytest.approx(1 / 7, rel=1e-6)

    accuracy = Accuracy(num_labels=3, **options)
    accuracy.add_batch(predictions=[0, 1], references=[0, 2])
    accuracy.add(predictions=2, references=2)
    # references [0, 2, 2], predictions [0, 1, 2]: 2/3 correct; per class 0 -> 1/1, 2 -> 1/2, class 1 absent
    assert accuracy.compute() == {
        "accuracy": pytest.approx(2 / 3),
        "mean_per_class_accuracy": pytest.approx(0.75),
        "num_samples": 3.0,
    }


# ---------------------------------------------------------------------------------------------------------------------
# pretraining validation (METHOD §2.9)
# ---------------------------------------------------------------------------------------------------------------------


def test_pretraining_validation_metrics_by_hand():
    gt = np.array([[[0.5, 1.0, 2.0], [5.0, 12.0, 0.0]]])
    pred_a = np.array([[[0.7, 1.0, 2.5], [4.0, 10.0, 3.0]]])
    pred_b = gt + 0.1
    metric = PretrainingValidationMetrics(densities=(0.1, 0.2, 0.5))
    metric.update(pred_a, gt, density=0.1)
    metric.update(torch.from_numpy(pred_b)[:, None], torch.from_numpy(gt), density=0.5)
    result = metric.compute()

    valid = gt > 0
    g = np.log(pred_a[valid]) - np.log(gt[valid])
    si_a = 10 * math.sqrt(np.mean(g**2) - 0.85 * np.mean(g) ** 2)
    assert result["si_d0.1"] == pytest.approx(si_a, rel=1e-12)
    # |errors| of pred_a on valid pixels: 0.2, 0, 0.5, 1, 2 -> all 3.7 / 5; (0, 0.6]: 0.2; (0.6, 3]: 0.25; (3, 10]: 1
    assert result["mae_m_d0.1"] == pytest.approx(3.7 / 5)
    assert result["mae_m_0-0.6m_d0.1"] == pytest.approx(0.2)
    assert result["mae_m_0.6-3m_d0.1"] == pytest.approx(0.25)
    assert result["mae_m_3-10m_d0.1"] == pytest.approx(1.0)
    assert result["mae_m_d0.5"] == pytest.approx(0.1)
    assert math.isnan(result["si_d0.2"])  # no data: left out of the AUC
    # normalised trapezoid over the densities with data (0.1 and 0.5): the mean of the two end values
    assert result["mae_m_auc"] == pytest.approx((3.7 / 5 + 0.1) / 2)

    metric.update(pred_b, gt, density=0.2)
    result = metric.compute()
    area = 0.1 * (3.7 / 5 + 0.1) / 2 + 0.3 * (0.1 + 0.1) / 2
    assert result["mae_m_auc"] == pytest.approx(area / 0.4)

    other = PretrainingValidationMetrics(densities=(0.1, 0.2, 0.5))
    other.update(pred_a, gt, density=0.1)
    merged = PretrainingValidationMetrics(densities=(0.1, 0.2, 0.5)).merge(other)
    assert merged.compute()["mae_m_d0.1"] == pytest.approx(3.7 / 5)
    with pytest.raises(ValueError, match="density"):
        metric.update(pred_a, gt, density=0.3)
