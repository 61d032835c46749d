import math

import numpy as np
import pytest
import torch

from conftest import tiny_config
from vanishing_depth import VanishingDepthForPretraining
from vanishing_depth.loss_vanishing_depth import (
    VanishingDepthLoss,
    masked_silog_l1_loss,
    scale_invariant_log_loss,
)

ALPHA, LAMBDA = 10.0, 0.85


def si_numpy(pred, target, mask, alpha=ALPHA, lam=LAMBDA):
    """SI(P) of one sample written out in numpy; None when the pixel set is empty."""
    pixel_set = mask & (target >= 1e-3) & (pred >= 1e-3)
    if not pixel_set.any():
        return None
    g = np.log(pred[pixel_set]) - np.log(target[pixel_set])
    return alpha * math.sqrt(np.mean(g**2) - lam * np.mean(g) ** 2)


def balanced_scale_numpy(pred, target, removed):
    """L_s of METHOD §2.6 for a (B, H, W) batch: per sample 1/2 (SI(removed) + SI(visible)) or the set present,
    then the mean over samples that have any pixel; None if none has."""
    per_sample = []
    for b in range(pred.shape[0]):
        parts = [si_numpy(pred[b], target[b], removed[b]), si_numpy(pred[b], target[b], ~removed[b])]
        parts = [p for p in parts if p is not None]
        if parts:
            per_sample.append(sum(parts) / len(parts))
    return float(np.mean(per_sample)) if per_sample else None


def random_batch(shape, seed, invalid_fraction=0.2):
    rng = np.random.default_rng(seed)
    target = rng.uniform(0.3, 8.0, size=shape)
    target[rng.random(shape) < invalid_fraction] = 0.0
    pred = target * rng.uniform(0.6, 1.5, size=shape)
    removed = rng.random(shape) < 0.5
    return pred, target, removed


def t(array, requires_grad=False):
    return torch.tensor(array, dtype=torch.float64, requires_grad=requires_grad)


def test_si_closed_form_two_pixels():
    # g = [ln 2, 0]: mean g^2 = ln(2)^2 / 2, mean g = ln(2) / 2 -> SI = 10 ln 2 sqrt(1/2 - 0.85/4)
    pred = t([[[2.0, 1.0]]])
    target = t([[[1.0, 1.0]]])
    loss, has = scale_invariant_log_loss(pred, target, torch.ones(1, 1, 2, dtype=torch.bool))
    assert bool(has)
    assert loss.item() == pytest.approx(10 * math.log(2) * math.sqrt(0.5 - 0.85 / 4), rel=1e-12)


def test_si_per_sample_mean_excludes_invalid_and_tiny_predictions():
    pred, target, _ = random_batch((3, 5, 6), seed=0)
    pred[0, 0, 0] = 5e-4  # prediction below 1 mm: left out
    target[1, 0, 0] = 5e-4  # target below 1 mm: left out
    mask = np.ones_like(target, dtype=bool)
    mask[2, :, :3] = False
    expected = [si_numpy(pred[b], target[b], mask[b]) for b in range(3)]
    per_sample, has = scale_invariant_log_loss(t(pred), t(target), torch.from_numpy(mask), reduction="none")
    assert has.tolist() == [True, True, True]
    np.testing.assert_allclose(per_sample.numpy(), expected, rtol=1e-12)
    loss, _ = scale_invariant_log_loss(t(pred), t(target), torch.from_numpy(mask))
    assert loss.item() == pytest.approx(np.mean(expected), rel=1e-12)


def test_si_empty_sample_is_skipped_and_all_empty_is_zero_with_backward():
    pred, target, _ = random_batch((2, 4, 4), seed=1)
    target[1] = 0.0  # sample 1 has no pixel
    per_sample, has = scale_invariant_log_loss(t(pred), t(target), reduction="none")
    assert has.tolist() == [True, False]
    assert per_sample[1].item() == 0.0
    loss, _ = scale_invariant_log_loss(t(pred), t(target))
    assert loss.item() == pytest.approx(si_numpy(pred[0], target[0], np.ones((4, 4), bool)), rel=1e-12)

    pred_t = t(pred, requires_grad=True)
    loss, has = scale_invariant_log_loss(pred_t, torch.zeros_like(pred_t))
    assert not bool(has) and loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(pred_t.grad == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_si_finite_gradients_at_zero_variance(dtype):
    target = torch.rand(2, 1, 6, 6, dtype=dtype, generator=torch.Generator().manual_seed(0)) * 5 + 0.5
    pred = target.clone().requires_grad_(True)
    loss, _ = scale_invariant_log_loss(pred, target)
    assert loss.item() == 0.0  # exact value, no epsilon bias
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    # variance_focus 1 with a pure scale error: the sqrt argument is 0 up to rounding (possibly negative)
    pred = (2.0 * target).requires_grad_(True)
    loss, _ = scale_invariant_log_loss(pred, target, variance_focus=1.0)
    assert abs(loss.item()) < 1e-3
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_si_gradient_matches_finite_differences():
    pred, target, _ = random_batch((1, 3, 3), seed=2, invalid_fraction=0.0)
    pred_t = t(pred, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: scale_invariant_log_loss(p, t(target))[0], (pred_t,))


def test_balanced_loss_both_sets_matches_numpy():
    pred, target, removed = random_batch((2, 6, 5), seed=3)
    out = VanishingDepthLoss()([t(pred)[:, None]], [t(target)[:, None]], [torch.from_numpy(removed)[:, None]])
    expected = balanced_scale_numpy(pred, target, removed)
    assert out.loss.item() == pytest.approx(expected, rel=1e-12)
    removed_mean = np.mean([si_numpy(pred[b], target[b], removed[b]) for b in range(2)])
    visible_mean = np.mean([si_numpy(pred[b], target[b], ~removed[b]) for b in range(2)])
    assert out.removed[0].item() == pytest.approx(removed_mean, rel=1e-12)
    assert out.visible[0].item() == pytest.approx(visible_mean, rel=1e-12)
    logged = out.to_dict()
    assert logged["loss"] == pytest.approx(expected, rel=1e-12)
    assert set(logged) == {
        "loss",
        "loss_scale0",
        "loss_removed_scale0",
        "loss_visible_scale0",
        "loss_removed",
        "loss_visible",
    }


def test_balanced_loss_one_empty_set_uses_the_other():
    pred, target, removed = random_batch((2, 6, 5), seed=4)
    removed[1] = False  # sample 1: nothing removed, only the visible set
    removed[0] = True  # sample 0: everything removed, only the removed set
    out = VanishingDepthLoss()([t(pred)], [t(target)], [torch.from_numpy(removed)])
    expected = 0.5 * (
        si_numpy(pred[0], target[0], np.ones((6, 5), bool)) + si_numpy(pred[1], target[1], np.ones((6, 5), bool))
    )
    assert out.loss.item() == pytest.approx(expected, rel=1e-12)
    assert out.loss.item() == pytest.approx(balanced_scale_numpy(pred, target, removed), rel=1e-12)


def test_balanced_loss_ignores_invalid_targets():
    pred, target, removed = random_batch((1, 4, 4), seed=5, invalid_fraction=0.0)
    target[0, 1, 2] = 0.0
    pred_t = t(pred, requires_grad=True)
    out = VanishingDepthLoss()([pred_t], [t(target)], [torch.from_numpy(removed)])
    assert out.loss.item() == pytest.approx(balanced_scale_numpy(pred, target, removed), rel=1e-12)
    out.loss.backward()
    assert pred_t.grad[0, 1, 2].item() == 0.0
    changed = pred.copy()
    changed[0, 1, 2] = 123.0  # the prediction at an invalid pixel does not matter
    other = VanishingDepthLoss()([t(changed)], [t(target)], [torch.from_numpy(removed)])
    assert other.loss.item() == pytest.approx(out.loss.item(), rel=1e-12)


def test_balanced_loss_all_empty_is_zero_and_backward_works():
    preds = [t(np.ones((2, 1, 4, 4)), requires_grad=True), t(np.ones((2, 1, 2, 2)), requires_grad=True)]
    targets = [torch.zeros(2, 1, 4, 4, dtype=torch.float64), torch.zeros(2, 1, 2, 2, dtype=torch.float64)]
    masks = [torch.rand(2, 1, 4, 4) > 0.5, torch.rand(2, 1, 2, 2) > 0.5]
    out = VanishingDepthLoss()(preds, targets, masks)
    assert out.loss.item() == 0.0 and out.loss.requires_grad
    assert not torch.isnan(out.loss)
    out.loss.backward()
    assert all(torch.all(p.grad == 0) for p in preds)
    assert out.scale_has_pixels.tolist() == [False, False]
    assert out.to_dict() == {"loss": 0.0}


def test_multi_scale_mean_weights_and_empty_scale():
    sizes = [(8, 8), (4, 4), (2, 2), (1, 1)]  # full resolution first
    batches = [random_batch((2, *size), seed=10 + i) for i, size in enumerate(sizes)]
    batches[3][1][:] = 1.0  # make sure the 1x1 scale has valid targets
    preds = [t(p)[:, None] for p, _, _ in batches]
    targets = [t(d)[:, None] for _, d, _ in batches]
    masks = [torch.from_numpy(m)[:, None] for _, _, m in batches]
    per_scale = [balanced_scale_numpy(p, d, m) for p, d, m in batches]

    out = VanishingDepthLoss()(preds, targets, masks)
    assert out.loss.item() == pytest.approx(np.mean(per_scale), rel=1e-12)
    np.testing.assert_allclose(out.per_scale.numpy(), per_scale, rtol=1e-12)

    weights = [1.0, 2.0, 0.0, 0.5]
    out = VanishingDepthLoss(scale_weights=weights)(preds, targets, masks)
    assert out.loss.item() == pytest.approx(np.dot(weights, per_scale) / sum(weights), rel=1e-12)

    # a scale without any valid pixel contributes nothing (it is not averaged in as a 0)
    targets[1] = torch.zeros_like(targets[1])
    out = VanishingDepthLoss()(preds, targets, masks)
    assert out.loss.item() == pytest.approx(np.mean([per_scale[0], per_scale[2], per_scale[3]]), rel=1e-12)
    assert out.scale_has_pixels.tolist() == [True, False, True, True]
    assert math.isnan(out.per_scale[1].item()) and "loss_scale1" not in out.to_dict()


def test_multi_scale_gradients_finite_when_prediction_equals_target():
    gen = torch.Generator().manual_seed(0)
    targets = [torch.rand(2, 1, s, s, generator=gen) * 4 + 0.5 for s in (8, 4, 2, 1)]
    preds = [d.clone().requires_grad_(True) for d in targets]
    masks = [torch.rand(2, 1, s, s, generator=gen) > 0.5 for s in (8, 4, 2, 1)]
    out = VanishingDepthLoss()(preds, targets, masks)
    assert out.loss.item() == 0.0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in preds)


def test_balanced_loss_rejects_bad_input():
    loss = VanishingDepthLoss()
    pred = torch.ones(1, 1, 4, 4)
    with pytest.raises(ValueError, match="one entry per scale"):
        loss([pred, pred], [pred], [pred > 0])
    with pytest.raises(ValueError, match="same"):
        loss([pred], [torch.ones(1, 1, 2, 2)], [torch.ones(1, 1, 2, 2, dtype=torch.bool)])
    with pytest.raises(ValueError, match="bool"):
        loss([pred], [pred], [pred])
    with pytest.raises(ValueError, match="list of tensors"):
        loss(pred, pred, pred > 0)
    with pytest.raises(ValueError, match="scale_weights"):
        VanishingDepthLoss(scale_weights=[1.0, 1.0])([pred], [pred], [pred > 0])
    with pytest.raises(ValueError, match="variance_focus"):
        VanishingDepthLoss(variance_focus=1.5)


def test_masked_silog_l1_matches_numpy():
    pred, target, _ = random_batch((2, 5, 5), seed=20)
    extra = np.ones_like(target, dtype=bool)
    extra[0, 0] = False
    valid = (target > 0) & extra
    silog = np.mean([si_numpy(pred[b], target[b], valid[b]) for b in range(2)])
    l1 = np.abs(pred - target)[valid].mean()
    got = masked_silog_l1_loss(t(pred)[:, None], t(target), torch.from_numpy(extra), silog_weight=0.5, l1_weight=2.0)
    assert got.item() == pytest.approx(0.5 * silog + 2.0 * l1, rel=1e-12)


def test_masked_silog_l1_no_valid_pixel_and_nan_prediction_on_invalid_pixel():
    pred = t(np.full((1, 3, 3), 2.0), requires_grad=True)
    loss = masked_silog_l1_loss(pred, torch.zeros(1, 3, 3, dtype=torch.float64))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(pred.grad == 0)

    values = np.full((1, 3, 3), 2.0)
    values[0, 0, 0] = np.nan
    target = np.ones((1, 3, 3))
    target[0, 0, 0] = 0.0
    pred = t(values, requires_grad=True)
    loss = masked_silog_l1_loss(pred, t(target))
    assert math.isfinite(loss.item())
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_si_half_precision_inputs_are_computed_in_float32():
    pred, target, _ = random_batch((2, 4, 4), seed=30, invalid_fraction=0.0)
    pred_bf16 = torch.tensor(pred, dtype=torch.bfloat16)
    target_bf16 = torch.tensor(target, dtype=torch.bfloat16)
    loss, _ = scale_invariant_log_loss(pred_bf16, target_bf16)
    assert loss.dtype == torch.float32
    # reference on the bf16-rounded values, in float64
    rounded_pred, rounded_target = pred_bf16.double().numpy(), target_bf16.double().numpy()
    expected = np.mean([si_numpy(rounded_pred[b], rounded_target[b], np.ones((4, 4), bool)) for b in range(2)])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def si_pooled_numpy(pred, target, mask, alpha=ALPHA, lam=LAMBDA):
    """The authors' form: one SI over the pixels of the whole batch, alpha sqrt(sum g^2 / t - lam (sum g)^2 / t^2)."""
    pixel_set = mask & (target >= 1e-3) & (pred >= 1e-3)
    g = np.log(pred[pixel_set]) - np.log(target[pixel_set])
    t = g.size
    return alpha * math.sqrt(np.sum(g**2) / t - lam * np.sum(g) ** 2 / t**2)


def test_batch_pooling_equals_the_pooled_formula_on_images_of_different_scale():
    """Two images whose predictions are right up to a per-image scale (x2 and x0.5): per sample each is almost
    scale-invariant, pooled over the batch the scales disagree and the loss sees it."""
    rng = np.random.default_rng(11)
    target = rng.uniform(0.5, 6.0, size=(2, 5, 6))
    pred = target * rng.uniform(0.95, 1.05, size=target.shape)
    pred[0] *= 2.0
    pred[1] *= 0.5
    removed = rng.random(target.shape) < 0.4
    expected = 0.5 * (si_pooled_numpy(pred, target, removed) + si_pooled_numpy(pred, target, ~removed))
    out = VanishingDepthLoss(pooling="batch")([t(pred)[:, None]], [t(target)[:, None]], [torch.from_numpy(removed)])
    assert out.loss.item() == pytest.approx(expected, rel=1e-12)
    assert out.removed[0].item() == pytest.approx(si_pooled_numpy(pred, target, removed), rel=1e-12)
    per_sample = VanishingDepthLoss(pooling="sample")([t(pred)], [t(target)], [torch.from_numpy(removed)])
    assert per_sample.loss.item() == pytest.approx(balanced_scale_numpy(pred, target, removed), rel=1e-12)
    assert out.loss.item() > 2 * per_sample.loss.item()  # the per-sample form cannot see the scale disagreement


def test_batch_pooling_of_one_image_is_the_per_sample_loss_and_the_config_carries_it():
    pred, target, removed = random_batch((1, 6, 5), seed=12)
    args = ([t(pred)], [t(target)], [torch.from_numpy(removed)])
    assert VanishingDepthLoss(pooling="batch")(*args).loss.item() == pytest.approx(
        VanishingDepthLoss(pooling="sample")(*args).loss.item(), rel=1e-12
    )
    with pytest.raises(ValueError, match="pooling"):
        VanishingDepthLoss(pooling="pixels")

    assert VanishingDepthForPretraining(tiny_config()).pretraining_loss.pooling == "sample"
    assert VanishingDepthForPretraining(tiny_config(loss_pooling="batch")).pretraining_loss.pooling == "batch"
    with pytest.raises(ValueError, match="loss_pooling"):
        tiny_config(loss_pooling="pixels")
