"""Tests for vanishing_depth.augment (the depth side of pretraining: authors' datasets/transforms.py, Depth2distance
to VanishingDepth) and the sensor simulators of vanishing_depth.data.sensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vanishing_depth.augment import (
    DepthNoise,
    MaskingCurriculum,
    PretrainingDepthTransform,
    RandomDepth,
    VanishingDepthMasker,
    augment_rgbd_pair,
    blocky_mask,
    blocky_noise,
    crop_and_resize_rgbd,
    perlin_mask,
    perlin_noise,
    pixel_mask,
    rescale_far_depth,
    select_by_rank,
)
from vanishing_depth.augment._common import _select_top_k
from vanishing_depth.augment.masking import _perlin_layer
from vanishing_depth.data import (
    keep_fraction,
    sample_uniform_points,
    simulate_edge_holes,
    simulate_lidar_lines,
    simulate_low_res_tof,
)

MASK_FUNCTIONS = {"perlin": perlin_mask, "blocky": blocky_mask, "pixel": pixel_mask}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _depth(batch: int = 3, height: int = 40, width: int = 48, seed: int = 0) -> torch.Tensor:
    """Depth in [0.5, 8] m with a different share of missing pixels per sample (0 %, 20 %, 40 %, 60 %, 0 %, ...)."""
    generator = _gen(seed)
    depth = 0.5 + 7.5 * torch.rand(batch, 1, height, width, generator=generator)
    for b in range(batch):
        holes = torch.rand(height, width, generator=generator) < 0.2 * (b % 4)
        depth[b, 0][holes] = 0.0
    return depth


def _valid_counts(depth: torch.Tensor) -> torch.Tensor:
    return (depth > 0).flatten(1).sum(1)


def _neighbour_agreement(mask: torch.Tensor) -> float:
    horizontal = (mask[..., :, 1:] == mask[..., :, :-1]).float().mean()
    vertical = (mask[..., 1:, :] == mask[..., :-1, :]).float().mean()
    return float((horizontal + vertical) / 2)


# ----------------------------------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MASK_FUNCTIONS))
def test_masks_remove_exactly_t_of_the_valid_pixels_and_never_a_missing_one(kind):
    depth = _depth()
    counts = _valid_counts(depth)
    assert len(set(counts.tolist())) == 3  # different valid counts per sample
    fraction = torch.tensor([0.1, 0.37, 0.9])
    mask = MASK_FUNCTIONS[kind](depth, fraction, generator=_gen(1))
    assert mask.dtype == torch.bool and mask.shape == depth.shape
    assert not (mask & (depth == 0)).any()
    removed = mask.flatten(1).sum(1)
    assert torch.equal(removed, torch.round(fraction * counts).long())
    assert ((removed / counts - fraction).abs() < 0.01).all()


@pytest.mark.parametrize("kind", list(MASK_FUNCTIONS))
def test_masks_replay_with_the_same_seed_and_differ_with_another(kind):
    depth = _depth()
    first = MASK_FUNCTIONS[kind](depth, 0.5, generator=_gen(7))
    again = MASK_FUNCTIONS[kind](depth, 0.5, generator=_gen(7))
    other = MASK_FUNCTIONS[kind](depth, 0.5, generator=_gen(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_perlin_mask_is_spatially_coherent_and_pixel_mask_is_not():
    depth = 1.0 + torch.rand(8, 1, 64, 64, generator=_gen(2))  # dense, so holes do not blur the comparison
    perlin = perlin_mask(depth, 0.5, generator=_gen(2))
    iid = pixel_mask(depth, 0.5, generator=_gen(2))
    # an i.i.d. mask at 50 % agrees with a neighbour half the time; Perlin blobs far more often
    assert _neighbour_agreement(iid) < 0.55
    assert _neighbour_agreement(perlin) > 0.8


def test_perlin_layer_matches_a_per_pixel_reference():
    height, width, lattice = 6, 10, 5
    generator = _gen(3)
    angles = torch.rand(2, lattice, lattice, generator=generator) * 2 * math.pi
    resolution = torch.tensor([[2, 4], [4, 3]])
    fast = _perlin_layer(resolution, height, width, angles)

    def fade(t: float) -> float:
        return 6 * t**5 - 15 * t**4 + 10 * t**3

    reference = torch.zeros(2, height, width)
    for b in range(2):
        for y in range(height):
            for x in range(width):
                u = (y + 0.5) * int(resolution[b, 0]) / height
                v = (x + 0.5) * int(resolution[b, 1]) / width
                cy, cx = math.floor(u), math.floor(v)
                fy, fx = u - cy, v - cx

                def dot(dy: int, dx: int, b=b, cy=cy, cx=cx, fy=fy, fx=fx) -> float:
                    angle = float(angles[b, cy + dy, cx + dx])
                    return math.sin(angle) * (fy - dy) + math.cos(angle) * (fx - dx)

                top = dot(0, 0) + fade(fx) * (dot(0, 1) - dot(0, 0))
                bottom = dot(1, 0) + fade(fx) * (dot(1, 1) - dot(1, 0))
                reference[b, y, x] = (top + fade(fy) * (bottom - top)) * math.sqrt(2)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)


def test_perlin_noise_is_smooth_and_bounded():
    noise = perlin_noise(4, 32, 32, generator=_gen(4), resolutions=(2,))
    assert noise.shape == (4, 32, 32) and noise.dtype == torch.float32
    assert noise.abs().max() <= 1.5
    # 2 cells over 32 px: neighbouring pixels differ by a small fraction of the range
    assert (noise[:, :, 1:] - noise[:, :, :-1]).abs().max() < 0.25
    octaves = perlin_noise(4, 32, 32, generator=_gen(4), resolutions=(2,), octaves=3)
    assert not torch.equal(octaves, noise)
    with pytest.raises(ValueError, match="octaves"):
        perlin_noise(1, 8, 8, octaves=0)


def test_blocky_noise_uses_a_low_resolution_and_clamps_small_images():
    noise = blocky_noise(6, 64, 48, generator=_gen(5))
    for sample in noise:
        rows = torch.unique_consecutive(sample[:, 0]).numel()
        cols = torch.unique_consecutive(sample[0, :]).numel()
        assert 10 <= rows <= int(0.75 * 64) and 10 <= cols <= int(0.75 * 48)
        # nearest upsampling: every row equals a row of the low-res grid, so rows repeat in runs
        assert torch.unique(sample, dim=0).shape[0] == rows
    tiny = blocky_noise(2, 6, 7, generator=_gen(5))  # smaller than the 10 px minimum: per-pixel blocks
    assert all(torch.unique(sample).numel() == 42 for sample in tiny)


@pytest.mark.parametrize("scores", ["continuous", "blocky"])
def test_sort_and_kthvalue_selection_agree_including_ties(scores):
    generator = _gen(6)
    if scores == "blocky":
        values = blocky_noise(3, 30, 30, generator=generator).flatten(1)  # many exact ties
    else:
        values = torch.rand(3, 900, generator=generator)
    valid = torch.rand(3, 900, generator=generator) > torch.tensor([[0.0], [0.3], [0.6]])
    k = torch.tensor([0, 250, int(valid[2].sum())])
    by_sort = _select_top_k(values, valid, k, method="sort")
    by_kth = _select_top_k(values, valid, k, method="kthvalue")
    assert torch.equal(by_sort, by_kth)
    assert torch.equal(by_sort.sum(1), k)


def test_select_by_rank_validates_its_inputs():
    scores = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="same shape"):
        select_by_rank(scores, torch.ones(2, 1, 4, 5, dtype=torch.bool), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        select_by_rank(scores, scores > 0, 1.5)
    with pytest.raises(ValueError, match=r"\(2,\) tensor"):
        select_by_rank(scores, scores > 0, torch.tensor([0.1, 0.2, 0.3]))


# ----------------------------------------------------------------------------------------------------------------------
# Curriculum and masker
# ----------------------------------------------------------------------------------------------------------------------


def test_curriculum_warm_up_then_linear_ramp():
    curriculum = MaskingCurriculum()
    expected = {0: (0.3, 0.1), 10: (0.3, 0.1), 15: (0.4, 0.2), 20: (0.5, 0.3), 30: (0.5, 0.3)}
    for epoch, (mean, std) in expected.items():
        assert curriculum(epoch) == pytest.approx((mean, std))
    assert curriculum(12.5) == pytest.approx((0.35, 0.15))
    custom = MaskingCurriculum(mean_start=0.2, mean_end=0.6, std_start=0.0, std_end=0.2, warmup_epochs=2, ramp_epochs=4)
    assert custom(4.0) == pytest.approx((0.4, 0.1))
    step = MaskingCurriculum(ramp_epochs=0)
    assert step(9.9) == pytest.approx((0.3, 0.1)) and step(10) == pytest.approx((0.5, 0.3))
    with pytest.raises(ValueError, match="epoch"):
        curriculum(-1)


def test_masker_fraction_is_clipped_to_the_method_range():
    masker = VanishingDepthMasker()
    t = masker.sample_fraction(2000, mean=0.5, std=1.0, generator=_gen(0))
    assert t.min() == pytest.approx(0.10) and t.max() == pytest.approx(0.99)
    assert ((t > 0.10) & (t < 0.99)).any()
    near = masker.sample_fraction(4000, generator=_gen(1))
    assert near.mean() == pytest.approx(0.3, abs=0.01) and near.std() == pytest.approx(0.1, abs=0.01)


def test_masker_output_contract_and_exact_fractions():
    depth = _depth()
    masker = VanishingDepthMasker(p_pixel=0.3)
    masked, removed, t = masker(depth, mean=0.5, std=0.3, generator=_gen(9))
    assert masked.shape == depth.shape and removed.dtype == torch.bool and t.shape == (3,)
    assert ((t >= 0.10) & (t <= 0.99)).all()
    assert torch.equal(masked, torch.where(removed, torch.zeros_like(depth), depth))
    assert not (removed & (depth == 0)).any()
    counts = _valid_counts(depth)
    assert torch.equal(removed.flatten(1).sum(1), torch.round(t * counts).long())
    again = masker(depth, mean=0.5, std=0.3, generator=_gen(9))
    assert all(torch.equal(a, b) for a, b in zip((masked, removed, t), again))


def test_masker_kind_probabilities_pick_the_mask_shape():
    depth = 1.0 + torch.rand(8, 1, 64, 64, generator=_gen(0))
    perlin_only = VanishingDepthMasker(p_perlin=1.0)(depth, fraction=0.5, generator=_gen(0))[1]
    pixel_only = VanishingDepthMasker(p_pixel=1.0)(depth, fraction=0.5, generator=_gen(0))[1]
    assert _neighbour_agreement(perlin_only) > 0.8
    assert _neighbour_agreement(pixel_only) < 0.55
    forced = VanishingDepthMasker(p_pixel=1.0)(depth, fraction=0.5, kind="perlin", generator=_gen(0))[1]
    assert _neighbour_agreement(forced) > 0.8
    with pytest.raises(ValueError, match="`kind`"):
        VanishingDepthMasker()(depth, kind="checkerboard")
    with pytest.raises(ValueError, match="p_perlin"):
        VanishingDepthMasker(p_perlin=1.5)


# ----------------------------------------------------------------------------------------------------------------------
# Depth2distance, RandomDepth, DepthNoise
# ----------------------------------------------------------------------------------------------------------------------


def test_rescale_far_depth_fits_far_scenes_and_counts_drops():
    depth = _depth(batch=3)
    depth[0] *= 20.0 / depth[0].max()  # far: max 20 m
    near = depth[1].clone()  # max 8 m: untouched
    scaled, dropped = rescale_far_depth(depth, generator=_gen(0))
    assert 13.5 <= scaled[0].max() <= 15.0
    ratio = scaled[0][depth[0] > 0] / depth[0][depth[0] > 0]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio))
    assert torch.equal(scaled[1], near)
    assert dropped.tolist() == [0, 0, 0]
    evaluated, _ = rescale_far_depth(depth, training=False)
    assert evaluated[0].max() == pytest.approx(15.0 * 0.95)
    stretched, dropped = rescale_far_depth(depth, generator=_gen(0), target_range=(1.2, 1.2))
    assert dropped[0] == int((depth[0] * (18.0 / depth[0].max()) > 15.0).sum()) > 0
    assert stretched.max() <= 15.0


@pytest.mark.parametrize("branch", ["offset", "range", "scale", "none"])
def test_random_depth_branches_keep_the_valid_range_and_the_holes(branch):
    depth = _depth(batch=16, height=16, width=20)
    depth[0, 0, 0, 0] = 16.0  # outside [0.05, 15]: unchanged branch must drop it, the others may move it inside
    out = RandomDepth()(depth, generator=_gen(1), branch=branch)
    assert out.shape == depth.shape
    assert ((out == 0) | ((out >= 0.05) & (out <= 15.0))).all()
    assert (out[depth == 0] == 0).all()
    if branch == "none":
        assert out[0, 0, 0, 0] == 0
    valid = (depth > 0) & (out > 0)
    for b in range(1, 16):
        x, y = depth[b][valid[b]], out[b][valid[b]]
        if branch == "none":
            assert torch.equal(x, y)
        elif branch == "scale":
            ratio = y / x
            assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-5)
            assert 0.8 <= ratio[0] <= 1.2
        elif branch == "offset":
            shift = y - x
            assert torch.allclose(shift, shift[0].expand_as(shift), atol=1e-5)
            assert y.min() >= 0.05 - 1e-6
            lifted = y.min() <= 0.05 + 1e-5
            assert lifted or shift[0].abs() <= x.std(unbiased=False) + 1e-5
        else:  # affine min-max remap onto [a, b] inside one jittered bin
            slope = (y.max() - y.min()) / (x.max() - x.min())
            torch.testing.assert_close(y, y.min() + slope * (x - x.min()), atol=1e-4, rtol=1e-4)
            bins = RandomDepth().active_bins()
            assert any(0.9 * low - 1e-5 <= y.min() and y.max() <= 1.1 * high + 1e-5 for low, high in bins)


def test_random_depth_jitter_is_symmetric():
    depth = torch.full((400, 1, 2, 2), 2.0)
    scaled = RandomDepth()(depth, generator=_gen(2), branch="scale")[:, 0, 0, 0] / 2.0
    assert scaled.min() < 0.85 and scaled.max() > 1.15  # [0.8, 1.2], not the official [1, 1.2]
    ramp = torch.linspace(1.0, 2.0, 4).view(1, 1, 2, 2).repeat(400, 1, 1, 1)
    remapped = RandomDepth(range_bins=((2.0, 2.0 + 1e-6),))(ramp, generator=_gen(3), branch="range")
    low = remapped.flatten(1).amin(1)
    assert low.min() < 1.85 and low.max() > 2.15  # jitter in [0.9, 1.1] around the single 2 m value


def test_random_depth_authors_jitter_is_one_sided():
    depth = torch.full((400, 1, 2, 2), 2.0)
    scaled = RandomDepth(jitter="authors")(depth, generator=_gen(2), branch="scale")[:, 0, 0, 0] / 2.0
    assert scaled.min() >= 1.0 and scaled.max() < 1.2 and scaled.max() > 1.15  # [1, 1.2): 1 + U * ((2 j) - j)
    ramp = torch.linspace(1.0, 2.0, 4).view(1, 1, 2, 2).repeat(400, 1, 1, 1)
    bins = ((2.0, 2.0 + 1e-6),)
    remapped = RandomDepth(range_bins=bins, jitter="authors")(ramp, generator=_gen(3), branch="range")
    low = remapped.flatten(1).amin(1)
    assert low.min() >= 2.0 - 1e-5 and low.max() > 2.15  # [2, 2.2): never below the drawn value
    with pytest.raises(ValueError, match="`jitter`"):
        RandomDepth(jitter="both")


@pytest.mark.parametrize("value_m", [0.3, 2.0, 14.0])
def test_random_depth_range_branch_keeps_a_constant_map_valid(value_m):
    # One distinct depth (a wall filling the crop): the min-max remap has no spread to map; before the fix its
    # 1e-12-clamped slope threw every pixel out of range, and the whole map became "missing".
    depth = torch.full((64, 1, 6, 6), value_m)
    depth[:, :, 0, 0] = 0.0  # a hole stays a hole
    out = RandomDepth()(depth, generator=_gen(7), branch="range")
    valid = depth > 0
    assert (out[valid] >= 0.05).all() and (out[valid] <= 15.0).all()
    assert (out[~valid] == 0).all()
    per_sample = out.flatten(1)[:, 1:]
    assert (per_sample == per_sample[:, :1]).all()  # still constant: every pixel at the range's lower end `a`
    # A nearly constant map (0.1 mm spread) keeps its order and stays inside the drawn [a, b].
    nearly = depth.clone()
    nearly[:, :, 3:] += 1e-4
    out = RandomDepth()(nearly, generator=_gen(7), branch="range")
    assert (out[valid] > 0).all()
    assert (out[:, :, 3:, 1:] >= out[:, :, :3, 1:].amax(dim=(2, 3), keepdim=True)).all()


def test_pretraining_transform_without_randomisation_or_noise():
    depth = _depth(batch=3, height=32, width=32)
    plain = PretrainingDepthTransform(random_depth=None, noise=None)
    out = plain(depth, generator=_gen(1), fraction=0.4)
    assert torch.equal(out["target_depth"], depth)  # max 8 m: no rescale; nothing else touches the depth
    kept = ~out["removed_mask"]
    assert torch.equal(out["depth_values"][kept], depth[kept])


def test_random_depth_probabilities_select_the_branch():
    depth = _depth(batch=8)
    settings = {"offset": (1, 0, 0), "range": (0, 1, 0), "scale": (0, 0, 1), "none": (0, 0, 0)}
    for branch, (p_offset, p_range, p_scale) in settings.items():
        random = RandomDepth(p_offset=p_offset, p_range=p_range, p_scale=p_scale)
        drawn = random(depth, generator=_gen(4))
        forced = RandomDepth()(depth, generator=_gen(4), branch=branch)
        assert torch.equal(drawn, forced), branch
    # default: each of offset / range / scale / unchanged with p = 0.25; classify 200 samples by what happened
    dense = 1.0 + torch.rand(200, 1, 4, 4, generator=_gen(5))
    out = RandomDepth()(dense, generator=_gen(6))
    shift, ratio = (out - dense).flatten(1), (out / dense).flatten(1)
    unchanged = (shift == 0).all(1)
    shifted = ~unchanged & ((shift - shift[:, :1]).abs() < 1e-5).all(1)
    scaled = ~unchanged & ((ratio - ratio[:, :1]).abs() < 1e-5).all(1)
    remapped = ~(unchanged | shifted | scaled)
    for picked in (unchanged, shifted, scaled, remapped):
        assert 25 <= int(picked.sum()) <= 75  # 50 expected


def test_random_depth_far_bin_and_validation():
    assert len(RandomDepth().active_bins()) == 4  # the far bin [50, 11.25] is empty for 15 m
    assert RandomDepth(max_depth=100.0).active_bins()[-1] == (50.0, 75.0)
    with pytest.raises(ValueError, match="p_offset"):
        RandomDepth(p_offset=0.5, p_range=0.5, p_scale=0.5)
    with pytest.raises(ValueError, match="`branch`"):
        RandomDepth()(_depth(), branch="flip")


def test_depth_noise_is_bounded_by_3_mm_without_chaos():
    depth = _depth(batch=3)
    original = depth.clone()
    noisy = DepthNoise()(depth, generator=_gen(0), chaos=False)
    assert torch.equal(depth, original)  # out of place
    valid = depth > 0
    assert (noisy[~valid] == 0).all()
    difference = (noisy - depth)[valid].abs()
    assert difference.max() <= 0.003 + 1e-6
    assert difference.mean() > 0.001  # it is really noise, uniform in ±3 mm


def test_depth_noise_chaos_and_range_rules():
    depth = _depth(batch=3, height=200, width=200)
    depth[:, :, :5] = 0.051  # may fall below 0.05 m under noise -> 0
    noise = DepthNoise()
    noisy = noise(depth, generator=_gen(1), chaos=True)
    count = round(1e-4 * 200 * 200)
    changed = ((noisy - depth).abs() > 0.003 + 1e-6) & (depth != 0.051)
    assert (changed.flatten(1).sum(1) <= count).all() and changed.any()
    assert ((noisy == 0) | ((noisy >= 0.05) & (noisy <= 14.25))).all()
    assert (noisy[:, :, :5] == 0).any()
    clamped = noise(torch.full((1, 1, 4, 4), 14.9), generator=_gen(2), chaos=False)
    assert (clamped == 14.25).all()
    assert torch.equal(noise(depth, generator=_gen(3)), noise(depth, generator=_gen(3)))


# ----------------------------------------------------------------------------------------------------------------------
# Whole transform
# ----------------------------------------------------------------------------------------------------------------------


def test_pretraining_transform_batch_contract():
    depth = _depth(batch=3, height=32, width=32)
    depth[0] *= 2.5  # up to 20 m: exercises the far rescale
    transform = PretrainingDepthTransform()
    out = transform(depth, generator=_gen(0), epoch=15.0)
    assert set(out) == {"depth_values", "target_depth", "removed_mask", "removed_fraction"}
    target, masked, removed = out["target_depth"], out["depth_values"], out["removed_mask"]
    assert target.shape == masked.shape == removed.shape == depth.shape and removed.dtype == torch.bool
    assert out["removed_fraction"].shape == (3,)
    assert ((target == 0) | ((target >= 0.05) & (target <= 15.0))).all()
    assert (masked[removed] == 0).all()
    kept = (masked > 0) & (target > 0)
    assert ((masked - target)[kept].abs() <= 0.003 + 1e-5).float().mean() > 0.99  # noise, bar a few chaos pixels
    assert ((out["removed_fraction"] >= 0.10 - 0.01) & (out["removed_fraction"] <= 0.99 + 0.01)).all()
    again = transform(depth, generator=_gen(0), epoch=15.0)
    assert all(torch.equal(out[key], again[key]) for key in out)


def test_pretraining_transform_fixed_fraction_and_eval_mode():
    depth = _depth(batch=3, height=32, width=32)
    out = PretrainingDepthTransform()(depth, generator=_gen(1), fraction=0.4, training=False)
    assert torch.equal(out["target_depth"], depth)  # max 8 m: no rescale; no randomisation or noise in eval
    counts = _valid_counts(depth)
    assert torch.equal(out["removed_mask"].flatten(1).sum(1), torch.round(0.4 * counts).long())
    assert ((out["removed_fraction"] - 0.4).abs() < 0.01).all()


# ----------------------------------------------------------------------------------------------------------------------
# Sensor simulators
# ----------------------------------------------------------------------------------------------------------------------


def test_sample_uniform_points_keeps_exactly_n_measured_pixels():
    depth = _depth(batch=3, height=48, width=64)
    sparse = sample_uniform_points(depth, 500, generator=_gen(0))
    assert (sparse > 0).flatten(1).sum(1).tolist() == [500, 500, 500]
    kept = sparse > 0
    assert torch.equal(sparse[kept], depth[kept])
    assert torch.equal(sparse, sample_uniform_points(depth, 500, generator=_gen(0)))
    assert not torch.equal(sparse, sample_uniform_points(depth, 500, generator=_gen(1)))
    few = depth.clone()
    few[1, 0, 5:] = 0  # 5 rows x 64 = at most 320 valid pixels
    with pytest.warns(RuntimeWarning, match=r"sample\(s\) \[1\]"):
        sparse = sample_uniform_points(few, 500, generator=_gen(0))
    assert (sparse[1] > 0).sum() == (few[1] > 0).sum()


def test_keep_fraction_is_exact_per_sample():
    depth = _depth(batch=3)
    fraction = torch.tensor([0.01, 0.2, 0.9])
    sparse = keep_fraction(depth, fraction, generator=_gen(0))
    assert torch.equal((sparse > 0).flatten(1).sum(1), torch.round(fraction * _valid_counts(depth)).long())
    assert torch.equal(sparse[sparse > 0], depth[sparse > 0])


def test_simulate_lidar_lines_keeps_evenly_spaced_rows():
    depth = 1.0 + torch.rand(3, 1, 64, 40, generator=_gen(0))
    lines = simulate_lidar_lines(depth, 8, generator=_gen(1))
    offsets = set()
    for sample, source in zip(lines, depth):
        rows = (sample[0] > 0).any(1).nonzero().squeeze(1)
        assert rows.numel() == 8
        assert torch.equal(sample[0, rows], source[0, rows])
        assert set(torch.diff(rows).tolist()) == {8}
        offsets.add(int(rows[0]) - 4)  # centres are at 4, 12, ..., offset within ±2
    assert all(abs(offset) <= 2 for offset in offsets) and len(offsets) > 1
    exact = simulate_lidar_lines(depth, 4, generator=_gen(1), max_offset=0)
    assert (exact[:, 0] > 0).any(2).nonzero()[:, 1].unique().tolist() == [8, 24, 40, 56]
    with pytest.raises(ValueError, match="num_lines"):
        simulate_lidar_lines(depth, 65)
    with pytest.raises(ValueError, match="max_offset"):
        simulate_lidar_lines(depth, 4, max_offset=9)


def test_simulate_low_res_tof_carries_only_low_res_information():
    height, width = 96, 128
    depth = (
        (1.0 + torch.arange(height * width, dtype=torch.float32) / 1000.0).view(1, 1, height, width).repeat(2, 1, 1, 1)
    )
    depth[1, 0, :48] = 0.0  # missing top half stays missing
    full, low = simulate_low_res_tof(depth, size=(24, 32), return_low_res=True)
    assert full.shape == depth.shape and low.shape == (2, 1, 24, 32)
    assert torch.unique(full[0]).numel() == 24 * 32
    assert torch.isin(low[0], depth[0]).all()  # nearest samples, never interpolated values
    assert torch.equal(full, F.interpolate(low, size=(height, width), mode="nearest-exact"))
    assert (full[1, 0, :48] == 0).all() and (full[1, 0, 48:] > 0).all()
    same = simulate_low_res_tof(torch.rand(1, 1, 192, 256) + 1)
    assert same.shape == (1, 1, 192, 256)
    with pytest.raises(ValueError, match="size"):
        simulate_low_res_tof(depth)  # 192x256 is larger than 96x128


def test_simulate_edge_holes_cuts_along_discontinuities_only():
    depth = torch.ones(2, 1, 20, 30)
    depth[:, :, :, 15:] = 3.0  # a 1 m -> 3 m step between columns 14 and 15
    depth[1, 0, 0, 0] = 0.0
    holes = simulate_edge_holes(depth, dilation=2)
    removed = (holes == 0) & (depth > 0)
    assert removed[0, 0].all(0).nonzero().squeeze(1).tolist() == [12, 13, 14, 15, 16, 17]
    assert removed[0].sum() == 6 * 20
    assert (simulate_edge_holes(depth, dilation=0)[0, 0] == 0).all(0).nonzero().squeeze(1).tolist() == [14, 15]
    assert holes[1, 0, 0, 0] == 0
    ramp = torch.linspace(2.0, 2.5, 30).view(1, 1, 1, 30).repeat(1, 1, 20, 1)  # a slanted wall: < 1 % per pixel
    assert torch.equal(simulate_edge_holes(ramp), ramp)


# ----------------------------------------------------------------------------------------------------------------------
# Devices and batch handling
# ----------------------------------------------------------------------------------------------------------------------


def test_cpu_runs_are_deterministic_for_every_randomised_op():
    depth = _depth()

    def run(seed: int) -> list[torch.Tensor]:
        generator = _gen(seed)
        out = PretrainingDepthTransform()(depth, generator=generator, epoch=12.0)
        return [
            *out.values(),
            sample_uniform_points(depth, 150, generator=generator),
            simulate_lidar_lines(depth, 16, generator=generator),
            keep_fraction(depth, 0.3, generator=generator),
            blocky_mask(depth, 0.6, generator=generator),
        ]

    first, second = run(11), run(11)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not all(torch.equal(a, b) for a, b in zip(first, run(12)))


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"`depth` must be a float tensor of shape \(B, 1, H, W\)"):
        perlin_mask(torch.rand(1, 3, 8, 8), 0.5)
    with pytest.raises(ValueError, match="`depth`"):
        RandomDepth()(torch.ones(4, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_generator_gives_the_same_masks_on_gpu():
    depth = _depth()
    cpu = VanishingDepthMasker(p_pixel=0.2)(depth, mean=0.5, std=0.2, generator=_gen(0))
    gpu = VanishingDepthMasker(p_pixel=0.2)(depth.cuda(), mean=0.5, std=0.2, generator=_gen(0))
    torch.testing.assert_close(cpu[2], gpu[2].cpu())  # same fractions: drawn on the CPU generator either way
    assert torch.equal(cpu[1].flatten(1).sum(1), gpu[1].cpu().flatten(1).sum(1))
    # GPU float arithmetic may reorder a tie-close pixel or two at the threshold, nothing more
    assert (cpu[1] != gpu[1].cpu()).float().mean() < 1e-3
    out = PretrainingDepthTransform()(depth.cuda(), generator=torch.Generator("cuda").manual_seed(0), epoch=5.0)
    assert out["depth_values"].is_cuda and out["removed_mask"].is_cuda


# ----------------------------------------------------------------------------------------------------------------------
# RGB-D crops
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("box", [(2, 5, 30, 20), (4, 0, 12, 40), (0, 0, 24, 24)])
def test_crop_and_pad_keeps_the_aspect_and_pads_with_black_and_missing(box):
    rgb = torch.full((3, 40, 48), 200, dtype=torch.uint8)
    depth = torch.full((1, 40, 48), 3.0)
    top, left, crop_h, crop_w = box
    padded_rgb, padded_depth = crop_and_resize_rgbd(rgb, depth, box, (48, 48), crop_mode="pad")
    stretched_rgb, stretched_depth = crop_and_resize_rgbd(rgb, depth, box, (48, 48))
    assert padded_rgb.shape == stretched_rgb.shape == (3, 48, 48)
    assert padded_depth.shape == stretched_depth.shape == (1, 48, 48)
    assert (stretched_depth == 3.0).all()
    measured = padded_depth[0] > 0
    assert torch.equal(padded_depth[0][measured], torch.full((int(measured.sum()),), 3.0))  # nothing invented
    side = max(crop_h, crop_w)
    if crop_h == crop_w:
        assert torch.equal(padded_depth, stretched_depth) and torch.equal(padded_rgb, stretched_rgb)
        return
    # The crop fills a centred crop_h x crop_w window of the side x side square, scaled by 48 / side.
    rows, cols = measured.any(1).nonzero().squeeze(1), measured.any(0).nonzero().squeeze(1)
    assert abs(len(rows) - 48 * crop_h / side) <= 1 and abs(len(cols) - 48 * crop_w / side) <= 1
    assert abs(int(rows[0]) - (47 - int(rows[-1]))) <= 1 and abs(int(cols[0]) - (47 - int(cols[-1]))) <= 1
    # Outside the window: depth missing (0) and RGB black (beyond the bicubic kernel's 2-px reach); inside: the
    # frame's colour.
    window = torch.zeros(48, 48, dtype=torch.bool)
    window[max(int(rows[0]) - 2, 0) : int(rows[-1]) + 3, max(int(cols[0]) - 2, 0) : int(cols[-1]) + 3] = True
    assert (padded_rgb[:, ~window] == 0).all() and (~window).any()
    inner = padded_rgb[:, rows[2] : rows[-2], cols[2] : cols[-2]]
    assert torch.allclose(inner, torch.full_like(inner, 200 / 255), atol=1e-3)
    with pytest.raises(ValueError, match="`crop_mode`"):
        crop_and_resize_rgbd(rgb, depth, box, (48, 48), crop_mode="letterbox")


def test_augment_rgbd_pair_crop_mode_pad_replays_and_pads():
    rgb = (torch.rand(3, 60, 90, generator=_gen(0)) * 255).to(torch.uint8)
    depth = 1.0 + torch.rand(1, 60, 90, generator=_gen(1))
    outs = [augment_rgbd_pair(rgb, depth, (56, 56), generator=_gen(seed), crop_mode="pad") for seed in range(12)]
    again = augment_rgbd_pair(rgb, depth, (56, 56), generator=_gen(3), crop_mode="pad")
    assert torch.equal(outs[3][0], again[0]) and torch.equal(outs[3][1], again[1])
    assert all(o[0].shape == (3, 56, 56) and o[1].shape == (1, 56, 56) for o in outs)
    # Non-square crops (aspect 3/4 to 4/3) leave a missing border; a dense frame has no other holes.
    assert any(bool((o[1] == 0).any()) for o in outs)
    stretched = [augment_rgbd_pair(rgb, depth, (56, 56), generator=_gen(seed)) for seed in range(12)]
    assert all(bool((o[1] > 0).all()) for o in stretched)
