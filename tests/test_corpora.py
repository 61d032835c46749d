"""Tests for the RGB-D corpus schema, folder converters, mixing/sharding, robust decoding, synthetic scenes and the
bundled Redwood demo corpus. Images are tiny (48x64 or smaller) so the file runs in seconds on one core."""

from __future__ import annotations

import collections
import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Image, IterableDataset, Value
from PIL import Image as PILImage

from vanishing_depth import VanishingDepthImageProcessor
from vanishing_depth.data import (
    RGBD_CORPUS_FEATURES,
    RGBDCollator,
    RGBDCorpusFormatError,
    RGBDSampleDecoder,
    RGBDSkipStats,
    build_corpus_from_folder,
    decode_rgbd_row,
    load_corpus,
    load_demo_corpus,
    mix_corpora,
    prepare_pretraining_corpus,
    render_synthetic_scene,
    rgbd_corpus_features,
    save_corpus,
    save_depth,
    synthetic_corpus,
    to_corpus_schema,
)

H, W = 48, 64


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _row(frame_id: str, source: str = "toy", depth_mm: np.ndarray | None = None, size: int = 16) -> dict:
    depth_mm = np.full((size, size), 1500, np.uint16) if depth_mm is None else depth_mm
    return {
        "image": {"bytes": _png(np.full((size, size, 3), 128, np.uint8)), "path": None},
        "depth": {"bytes": _png(depth_mm), "path": None},
        "depth_scale": 0.001,
        "intrinsics": [20.0, 20.0, 7.5, 7.5],
        "source": source,
        "frame_id": frame_id,
    }


def _toy_corpus(num_rows: int, source: str) -> Dataset:
    return Dataset.from_list(
        [_row(f"{source}{i:03d}", source, size=12) for i in range(num_rows)], features=RGBD_CORPUS_FEATURES
    )


# ----------------------------------------------------------------------------------------------------------------------
# Synthetic scenes
# ----------------------------------------------------------------------------------------------------------------------


def test_synthetic_scene_is_deterministic_with_plausible_depth():
    rgb, depth = render_synthetic_scene(H, W, 3)
    rgb_again, depth_again = render_synthetic_scene(H, W, np.random.default_rng(3))
    assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
    assert depth.dtype == np.float32 and depth.shape == (H, W)
    np.testing.assert_array_equal(rgb, rgb_again)
    np.testing.assert_array_equal(depth, depth_again)
    # A torch.Generator replays too, and a different seed gives a different scene.
    a = render_synthetic_scene(H, W, torch.Generator().manual_seed(5))
    b = render_synthetic_scene(H, W, torch.Generator().manual_seed(5))
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(render_synthetic_scene(H, W, 4)[1], depth)

    for seed in range(6):
        _, depth = render_synthetic_scene(H, W, seed)
        valid = depth[depth > 0]
        assert valid.size > 0.5 * depth.size
        assert valid.min() > 0.3 and valid.max() <= 10.0
        assert valid.max() - valid.min() > 0.5  # a room, not a flat card
    # Sensor holes are optional: without them only out-of-range pixels are 0.
    holes = [
        np.count_nonzero(render_synthetic_scene(H, W, s, missing_pixels=m)[1] == 0)
        for s in range(6)
        for m in (True, False)
    ]
    assert sum(holes[0::2]) > sum(holes[1::2])


def test_synthetic_rgb_edges_coincide_with_depth_edges():
    at_edges, elsewhere = [], []
    for seed in range(5):
        rgb, depth = render_synthetic_scene(H, W, seed, missing_pixels=False)
        rgb = rgb.astype(np.float64)
        rgb_grad = np.abs(np.diff(rgb, axis=1)).sum(-1)[:-1, :] + np.abs(np.diff(rgb, axis=0)).sum(-1)[:, :-1]
        ddx = np.abs(np.diff(depth, axis=1))[:-1, :]
        ddy = np.abs(np.diff(depth, axis=0))[:, :-1]
        # Discontinuities: a jump well beyond the smooth change of a slanted plane between neighbours.
        edges = np.maximum(ddx, ddy) > 0.1 * depth[:-1, :-1]
        if not edges.any():  # a scene without occlusions (only room creases)
            continue
        at_edges.append(rgb_grad[edges])
        elsewhere.append(rgb_grad[~edges])
    assert len(at_edges) >= 3
    assert np.concatenate(at_edges).mean() > 2.0 * np.concatenate(elsewhere).mean()


def test_synthetic_corpus_matches_renderer(tmp_path):
    corpus = synthetic_corpus(3, H, W, seed=7, cache_dir=str(tmp_path))
    assert corpus.features == RGBD_CORPUS_FEATURES and len(corpus) == 3
    row = corpus[1]
    assert row["source"] == "synthetic" and row["depth"].mode == "I;16"
    rgb, depth = decode_rgbd_row(row)
    rgb_ref, depth_ref, intrinsics = render_synthetic_scene(H, W, np.random.default_rng([7, 1]), return_intrinsics=True)
    np.testing.assert_array_equal(rgb, rgb_ref)  # PNG is lossless
    assert np.abs(depth - depth_ref).max() <= 0.0005 + 1e-6  # 1 mm quantisation
    np.testing.assert_allclose(row["intrinsics"], intrinsics, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Folder conversion, saving and loading
# ----------------------------------------------------------------------------------------------------------------------


def _write_synthetic_folder(root, names_rgb, names_depth, depth_format="mm"):
    rgb_dir, depth_dir = root / "rgb", root / "depth"
    rgb_dir.mkdir(parents=True)
    depth_dir.mkdir(parents=True)
    depths = {}
    for seed, (name_rgb, name_depth) in enumerate(zip(names_rgb, names_depth)):
        rgb, depth = render_synthetic_scene(H, W, seed)
        PILImage.fromarray(rgb).save(rgb_dir / name_rgb, quality=95)
        save_depth(depth_dir / name_depth, depth, depth_format)
        depths[name_rgb.rsplit(".", 1)[0]] = depth
    return rgb_dir, depth_dir, depths


def test_folder_conversion_round_trips_metres(tmp_path):
    names = ["00002", "00000", "00001"]
    rgb_dir, depth_dir, depths = _write_synthetic_folder(
        tmp_path, [n + ".jpg" for n in names], [n + ".png" for n in names]
    )
    corpus = build_corpus_from_folder(
        rgb_dir, depth_dir, "mm", "toy", intrinsics=(50, 50, 31.5, 23.5), cache_dir=tmp_path / "cache"
    )
    assert corpus["frame_id"] == ["00000", "00001", "00002"]
    for row in corpus:
        assert row["depth_scale"] == pytest.approx(0.001) and row["depth"].mode == "I;16"
        assert row["intrinsics"] == [50.0, 50.0, 31.5, 23.5]
        rgb, depth = decode_rgbd_row(row)
        reference = depths[row["frame_id"]]
        np.testing.assert_array_equal(depth == 0, reference == 0)
        assert np.abs(depth - reference).max() <= 0.001
        np.testing.assert_array_equal(rgb, np.asarray(PILImage.open(rgb_dir / f"{row['frame_id']}.jpg")))

    # The original PNG bytes are kept, and the saved parquet reads back through load_corpus (map-style and stream).
    save_corpus(corpus, tmp_path / "out", splits={"train": [0, 1], "test": [2]})
    with pytest.raises(ValueError, match="overwrite"):
        save_corpus(corpus, tmp_path / "out")
    loaded = load_corpus(tmp_path / "out", split="test")
    assert loaded["frame_id"] == ["00002"]
    np.testing.assert_array_equal(decode_rgbd_row(loaded[0])[1], decode_rgbd_row(corpus[2])[1])
    streamed = list(load_corpus(tmp_path / "out", split="train", streaming=True))
    assert [r["frame_id"] for r in streamed] == ["00000", "00001"]
    with pytest.raises(ValueError, match="overlap"):
        save_corpus(corpus, tmp_path / "other", splits={"train": [0, 1], "test": [1, 2]})


def test_folder_matching_modes_and_errors(tmp_path):
    rgb_dir, depth_dir, _ = _write_synthetic_folder(
        tmp_path / "nyu", ["rgb_00007.jpg", "rgb_00011.jpg"], ["sync_depth_00007.png", "sync_depth_00011.png"]
    )
    by_number = build_corpus_from_folder(rgb_dir, depth_dir, "mm", "nyu", match="number", cache_dir=tmp_path / "c")
    assert by_number["frame_id"] == ["rgb_00007", "rgb_00011"]
    with pytest.raises(ValueError, match="sync_depth_00007.png"):  # unmatched stems are listed
        build_corpus_from_folder(rgb_dir, depth_dir, "mm", "nyu", match="stem")

    # A pairs file in Open3D's `rgbd.match` order (depth first) pairs crosswise on purpose.
    pairs = tmp_path / "rgbd.match"
    pairs.write_text(
        "depth/sync_depth_00011.png rgb/rgb_00007.jpg\n# comment\ndepth/sync_depth_00007.png rgb_00011.jpg\n"
    )
    crossed = build_corpus_from_folder(rgb_dir, depth_dir, "mm", "nyu", pairs_file=pairs, cache_dir=tmp_path / "c")
    reference = build_corpus_from_folder(rgb_dir, depth_dir, "mm", "nyu", match="sorted", cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(decode_rgbd_row(crossed[0])[1], decode_rgbd_row(reference[1])[1])

    (depth_dir / "sync_depth_00012.png").write_bytes((depth_dir / "sync_depth_00007.png").read_bytes())
    with pytest.raises(ValueError, match="as many RGB as depth"):
        build_corpus_from_folder(rgb_dir, depth_dir, "mm", "nyu", match="sorted")
    with pytest.raises(ValueError, match="depth_format"):
        build_corpus_from_folder(rgb_dir, depth_dir, "cm", "nyu")


def test_folder_conversion_skips_and_names_bad_files(tmp_path):
    names = ["00000", "00001", "00002", "00003", "00004"]
    rgb_dir, depth_dir, _ = _write_synthetic_folder(tmp_path, [n + ".jpg" for n in names], [n + ".png" for n in names])
    truncated = (depth_dir / "00001.png").read_bytes()
    (depth_dir / "00001.png").write_bytes(truncated[: len(truncated) // 2])
    (rgb_dir / "00002.jpg").write_bytes(b"not a jpeg")
    save_depth(depth_dir / "00003.png", render_synthetic_scene(H, W // 2, 3)[1], "mm")  # another aspect ratio
    save_depth(depth_dir / "00004.png", render_synthetic_scene(H // 2, W // 2, 4)[1], "mm")  # same view, half size
    bad = []
    corpus = build_corpus_from_folder(rgb_dir, depth_dir, "mm", "toy", cache_dir=tmp_path / "cache", bad_files=bad)
    assert corpus["frame_id"] == ["00000", "00004"]
    assert [Path(path).name for path, _ in bad] == ["00001.png", "00002.jpg", "00003.png"]
    assert "truncated" in bad[0][1] and "aspect" in bad[2][1]
    decoder = RGBDSampleDecoder(min_valid_pixels=10)
    samples = list(decoder.iterate(corpus))
    assert [s.depth_m.shape for s in samples] == [(H, W), (H, W)] and decoder.stats.resized_depth == 1
    with pytest.raises(ValueError, match="00001.png"):
        build_corpus_from_folder(rgb_dir, depth_dir, "mm", "toy", on_bad_file="raise")
    for name in ("00000", "00004"):
        (rgb_dir / f"{name}.jpg").write_bytes(b"broken")
    with pytest.raises(ValueError, match="no usable RGB-D pair"):
        build_corpus_from_folder(rgb_dir, depth_dir, "mm", "toy")


def test_folder_conversion_of_decoded_format_stores_float_metres(tmp_path):
    rgb_dir, depth_dir, depths = _write_synthetic_folder(tmp_path, ["a.png"], ["a.npy"], depth_format="float")
    corpus = build_corpus_from_folder(rgb_dir, depth_dir, "float", "toy", cache_dir=tmp_path / "cache")
    row = corpus[0]
    assert row["depth"].mode == "F" and row["depth_scale"] == 1.0 and row["intrinsics"] is None
    np.testing.assert_array_equal(decode_rgbd_row(row)[1], depths["a"])  # float32 TIFF is exact


def test_to_corpus_schema_renames_hub_style_columns():
    depth = np.full((4, 4), 2.5, np.float32)
    hub = Dataset.from_dict(
        {"rgb": [PILImage.new("RGB", (4, 4))], "depth_map": [PILImage.fromarray(depth)], "label": [3]},
        features=Features({"rgb": Image(), "depth_map": Image(), "label": Value("int64")}),
    )
    corpus = to_corpus_schema(hub, "nyu_hub", depth_scale=1.0)
    assert corpus.features == RGBD_CORPUS_FEATURES and corpus[0]["frame_id"] == "00000000"
    np.testing.assert_array_equal(decode_rgbd_row(corpus[0])[1], depth)


# ----------------------------------------------------------------------------------------------------------------------
# Row decoding
# ----------------------------------------------------------------------------------------------------------------------


def test_decode_rgbd_row_rejects_bad_depth_and_repairs_nan():
    row = _row("x")
    rgb, depth = decode_rgbd_row(row)
    assert rgb.shape == (16, 16, 3) and depth.dtype == np.float32 and np.all(depth == np.float32(1.5))

    eight_bit = dict(row, depth={"bytes": _png(np.full((16, 16), 15, np.uint8)), "path": None})
    with pytest.raises(ValueError, match="8-bit"):
        decode_rgbd_row(eight_bit)
    with pytest.raises(ValueError, match="depth_scale"):
        decode_rgbd_row(dict(row, depth_scale=0.0))

    float_depth = np.full((16, 16), 2.0, np.float32)
    float_depth[0, :3] = [np.nan, np.inf, -np.inf]
    with pytest.warns(RuntimeWarning, match="NaN"):
        _, repaired = decode_rgbd_row(dict(row, depth=PILImage.fromarray(float_depth), depth_scale=1.0))
    assert np.all(repaired[0, :3] == 0) and np.all(repaired[1:] == 2.0)
    float_depth[0, :3] = -1.0
    with pytest.raises(ValueError, match="negative"):
        decode_rgbd_row(dict(row, depth=PILImage.fromarray(float_depth), depth_scale=1.0))
    # KITTI-style scale on 16-bit counts.
    _, kitti = decode_rgbd_row(dict(row, depth_scale=1 / 256))
    assert np.allclose(kitti, 1500 / 256)


def test_decoder_skips_and_counts_corrupt_and_sparse_rows(caplog):
    sparse = np.zeros((16, 16), np.uint16)
    sparse[:5, :10] = 2000  # 50 valid pixels < 100
    rows = [
        _row("good0"),
        dict(_row("corrupt"), image={"bytes": b"\x89PNG\r\n\x1a\nnot really a png", "path": None}),
        _row("sparse", depth_mm=sparse),
        _row("good1"),
    ]
    dataset = Dataset.from_list(rows, features=RGBD_CORPUS_FEATURES)
    undecoded = mix_corpora([dataset], decode=False)  # keeps bytes, as prepare_pretraining_corpus does
    decoder = RGBDSampleDecoder(min_valid_pixels=100)
    loader = torch.utils.data.DataLoader(undecoded, batch_size=2, shuffle=False, collate_fn=decoder)
    run_stats = RGBDSkipStats()
    kept = []
    with caplog.at_level(logging.WARNING, logger="vanishing_depth.data.decoding"):
        for batch in loader:
            run_stats.merge(batch.stats)
            kept += [sample.frame_id for sample in batch.samples]
    assert kept == ["good0", "good1"]
    assert run_stats.as_dict() == {
        "decoded": 2,
        "skipped_unreadable_image": 1,
        "skipped_unreadable_depth": 0,
        "skipped_size_mismatch": 0,
        "skipped_too_few_valid": 1,
        "resized_depth": 0,
    }
    assert run_stats.skipped_by_cause() == {
        "unreadable_image": 1,
        "unreadable_depth": 0,
        "size_mismatch": 0,
        "too_few_valid": 1,
    }
    assert run_stats.rows_read == 4 and run_stats.skipped == 2
    assert decoder.skipped_unreadable == 1 and decoder.skipped_too_few_valid == 1
    assert decoder.skipped_ids["unreadable_image"] == ["toy/corrupt"]
    assert decoder.skipped_ids["too_few_valid"] == ["toy/sparse"]
    assert "toy/corrupt" in caplog.text and "toy/sparse" in caplog.text

    # A schema error (8-bit depth) concerns the whole corpus: raised, not skipped.
    eight_bit = dict(_row("bad"), depth={"bytes": _png(np.full((16, 16), 9, np.uint8)), "path": None})
    with pytest.raises(RGBDCorpusFormatError):
        decoder([eight_bit])
    # Depth of another aspect ratio is not the RGB's view: skipped and counted separately.
    mismatch = dict(_row("narrow"), depth={"bytes": _png(np.full((16, 8), 900, np.uint16)), "path": None})
    assert len(decoder([mismatch])) == 0 and decoder.stats.skipped_size_mismatch == 1
    # A truncated depth file is an unreadable depth, named by its file.
    truncated = _png(np.full((16, 16), 1500, np.uint16))
    broken = dict(_row("cut"), depth={"bytes": truncated[: len(truncated) // 2], "path": "cut_depth.png"})
    with caplog.at_level(logging.WARNING, logger="vanishing_depth.data.decoding"):
        assert len(decoder([broken])) == 0
    assert decoder.stats.skipped_unreadable_depth == 1 and "cut_depth.png" in caplog.text


def test_depth_of_the_same_view_at_another_resolution_is_resized_nearest():
    depth_mm = np.full((8, 8), 1000, np.uint16)
    depth_mm[:, 4:] = 3000  # two surfaces: a resize must not invent depths between them
    depth_mm[0, 0] = 0  # a hole stays a hole
    row = dict(_row("half"), depth={"bytes": _png(depth_mm), "path": None})  # RGB 16x16, depth 8x8
    decoder = RGBDSampleDecoder(min_valid_pixels=10)
    sample = decoder.decode(row)
    assert sample.depth_m.shape == (16, 16) and decoder.stats.resized_depth == 1 and decoder.stats.decoded == 1
    assert set(np.unique(sample.depth_m)) == {np.float32(0.0), np.float32(1.0), np.float32(3.0)}
    np.testing.assert_array_equal(sample.depth_m[:2, :2], [[0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(sample.depth_m, np.kron(depth_mm, np.ones((2, 2))).astype(np.float32) / 1000)
    assert not RGBDSampleDecoder(resize_depth=False).decode(row)  # opting out: a size mismatch


def _exif_rotated_jpeg(upright: np.ndarray) -> bytes:
    """A JPEG stored sideways with EXIF orientation 6 ("rotate 90 degrees clockwise to display"), as phones write."""
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # undone by the 90-degree clockwise turn of orientation 6
    exif = PILImage.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    PILImage.fromarray(stored).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def test_a_row_decodes_identically_for_pretraining_and_fine_tuning():
    """The pretraining decoder and the fine-tuning collator read a corpus row with the same opener and the same depth
    decoder: same RGB (EXIF orientation applied by both) and bit-identical metres (the float32 `depth_scale` column is
    read the same way, 0.001 and not 0.0010000000475)."""
    height, width = 28, 42  # multiples of the patch size: the processor below neither resizes nor pads
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    upright = np.stack([x * 6, y * 9, (x + y) * 3], axis=-1).astype(np.uint8)  # smooth: JPEG keeps it closely
    rows = [
        {  # an EXIF-rotated JPEG with a millimetre PNG
            "image": {"bytes": _exif_rotated_jpeg(upright), "path": "phone.jpg"},
            "depth": {"bytes": _png(rng.integers(300, 9000, (height, width), dtype=np.uint16)), "path": "phone.png"},
            "depth_scale": 0.001,
        },
        {  # a PNG frame with a TUM-style 16-bit PNG (1/5000 m per unit is not exact in float32 either)
            "image": {"bytes": _png(upright[::-1].copy()), "path": "tum.png"},
            "depth": {"bytes": _png(rng.integers(1000, 60000, (height, width), dtype=np.uint16)), "path": "tum_d.png"},
            "depth_scale": 1 / 5000,
        },
    ]
    for index, row in enumerate(rows):
        row.update(intrinsics=None, source="toy", frame_id=f"{index:02d}")
    undecoded = Dataset.from_list(rows, features=rgbd_corpus_features(decode=False))
    decoded = undecoded.cast(RGBD_CORPUS_FEATURES)  # what a Trainer hands the collator: PIL images from `datasets`

    samples = RGBDSampleDecoder(min_valid_pixels=1)(list(undecoded)).samples
    assert len(samples) == 2
    assert samples[0].rgb.shape == (height, width, 3)  # upright: the stored JPEG is width x height
    error = np.abs(samples[0].rgb.astype(int) - upright.astype(int)).mean()
    assert error < 4, error  # JPEG loss only: a frame turned the wrong way differs by tens of grey levels

    processor = VanishingDepthImageProcessor(
        do_resize=False, do_rescale=False, do_normalize=False, max_valid_depth=None, patch_size=14
    )
    collator = RGBDCollator(processor, task="depth", input_depth_pattern="dense")
    # Rows as a Trainer hands them over: PIL images, undecoded bytes, and the arrays / channel-first int64 tensors of
    # the numpy and torch formats of `datasets`.
    views = (decoded, undecoded, decoded.with_format("numpy"), decoded.with_format("torch"))
    for batch in (collator(list(view)) for view in views):
        assert batch["pixel_values"].shape == (2, 3, height, width)
        for index, sample in enumerate(samples):
            rgb = batch["pixel_values"][index].permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(rgb, sample.rgb.astype(np.float32))
            np.testing.assert_array_equal(batch["labels"][index].numpy(), sample.depth_m)
    # The depth is the stored counts times the row's scale, rounded once to float32.
    counts = np.asarray(PILImage.open(io.BytesIO(rows[1]["depth"]["bytes"]))).astype(np.float64)
    np.testing.assert_array_equal(samples[1].depth_m, (counts / 5000).astype(np.float32))


def test_iterate_survives_a_corrupt_row_of_a_decoding_dataset(tmp_path):
    rows = [_row("good0"), dict(_row("corrupt"), image={"bytes": b"garbage", "path": "corrupt.jpg"}), _row("good1")]
    save_corpus(Dataset.from_list(rows, features=RGBD_CORPUS_FEATURES), tmp_path / "corpus")
    corpus = load_corpus(tmp_path / "corpus")  # images decode on access: a bare iteration would raise
    decoder = RGBDSampleDecoder(min_valid_pixels=10)
    assert [sample.frame_id for sample in decoder.iterate(corpus)] == ["good0", "good1"]
    assert decoder.skipped_ids["unreadable_image"] == ["toy/corrupt (row 1)"]


# ----------------------------------------------------------------------------------------------------------------------
# Mixing, streaming, sharding
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
def test_mixing_draws_each_corpus_equally_often(streaming):
    small, large = _toy_corpus(10, "small"), _toy_corpus(100, "large")
    corpus = prepare_pretraining_corpus([small, large], streaming=streaming, seed=0)
    assert isinstance(corpus.dataset, IterableDataset if streaming else Dataset)
    rows = (
        list(corpus.dataset.take(200))
        if streaming
        else list(corpus.dataset.select(range(min(200, len(corpus.dataset)))))
    )
    counts = collections.Counter(row["source"] for row in rows)
    # Size-proportional sampling would give ~9 % small; equal probability gives ~50 % (binomial sd ~ 3.6 %).
    assert 0.35 <= counts["small"] / len(rows) <= 0.65
    # "all_exhausted": the large corpus is used up once, the small one repeated (every small frame appears).
    assert counts["large"] == 100 and len(rows) >= 150
    assert len({row["frame_id"] for row in rows if row["source"] == "small"}) == 10
    # Rows stay undecoded for the decoder, which turns them into samples.
    assert isinstance(rows[0]["image"], dict)
    samples = list(corpus.decoder.iterate(rows[:5]))
    assert len(samples) == 5 and samples[0].depth_m.shape == (12, 12) and corpus.decoder.stats.skipped == 0
    # Seeded: the same mix again.
    again = prepare_pretraining_corpus([small, large], streaming=streaming, seed=0).dataset
    rows_again = list(again.take(50)) if streaming else list(again.select(range(50)))
    assert [r["frame_id"] for r in rows_again] == [r["frame_id"] for r in rows[:50]]


@pytest.mark.parametrize("streaming", [False, True])
def test_split_by_node_gives_disjoint_shards(streaming):
    corpus = _toy_corpus(20, "toy")
    shards = [
        [
            row["frame_id"]
            for row in prepare_pretraining_corpus([corpus], streaming=streaming, rank=r, world_size=2).dataset
        ]
        for r in range(2)
    ]
    assert not set(shards[0]) & set(shards[1])
    assert set(shards[0]) | set(shards[1]) == {f"toy{i:03d}" for i in range(20)}
    assert all(len(shard) == 10 for shard in shards)
    with pytest.raises(ValueError, match="rank"):
        prepare_pretraining_corpus([corpus], rank=2, world_size=2)


# ----------------------------------------------------------------------------------------------------------------------
# The bundled demo corpus
# ----------------------------------------------------------------------------------------------------------------------


def test_demo_corpus_loads_with_fixed_split():
    train, test = load_demo_corpus("train"), load_demo_corpus("test")
    assert len(train) == 22 and len(test) == 4
    assert test["frame_id"] == ["00180", "00190", "00200", "00210"]
    assert train["frame_id"][:6] == ["00000", "00001", "00002", "00003", "00004", "00010"]
    assert train["frame_id"][-1] == "00170"
    for row in (train[0], test[3]):
        assert row["intrinsics"] == [525.0, 525.0, 319.5, 239.5]
        assert row["source"] == "redwood_livingroom1" and row["depth"].mode == "I;16"
        rgb, depth = decode_rgbd_row(row)
        assert rgb.shape == (480, 640, 3) and depth.shape == (480, 640)
        valid = depth[depth > 0]
        assert valid.size > 0.9 * depth.size
        assert 0.3 <= valid.min() and valid.max() <= 10.0
    # Map-style: a finished pass over a streamed parquet mix sleeps 5 s in `datasets` (pyarrow thread shutdown).
    corpus = prepare_pretraining_corpus(["redwood_demo"], split="test", streaming=False)
    assert sorted(sample.frame_id for sample in corpus) == ["00180", "00190", "00200", "00210"]
