"""The studies (`vanishing-depth study encoding | density | features`) on tiny runs, and the log-depth + validity
encoding they compare."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import tiny_config

TINY_MODEL = {
    "rgb_config": {"hidden_size": 32, "num_attention_heads": 2},
    "pde_channels": 16,
    "se_reduction": 4,
    "decoder_channels": [16, 16, 8, 8],
}
# Few patterns and one frame keep each sweep to seconds on 2 cores.
TINY_STUDY = dict(
    encodings=["pde", "log_validity"],
    seeds=[0],
    max_steps=2,
    image_size=56,
    batch_size=2,
    eval_frames=1,
    densities=(0.5, 0.01),
    sensor_patterns=("perlin:0.5", "lidar:4", "holes"),
    config_overrides=TINY_MODEL,
    print_table=False,
)


@pytest.fixture(scope="module")
def encoding_run(tmp_path_factory):
    from vanishing_depth.evaluation.studies import encoding_study

    output = tmp_path_factory.mktemp("study") / "encoding"
    return output, encoding_study(output, **TINY_STUDY)


# ----------------------------------------------------------------------------------------------------------------------
# The log-depth + validity encoding
# ----------------------------------------------------------------------------------------------------------------------


def test_log_validity_encoding_on_a_hand_example():
    from vanishing_depth.depth_encoding_vanishing_depth import encode_depth_input, log_validity_depth_encoding

    # 0.1 m -> -1, max_depth -> +1, sqrt(0.1 * 15) m -> 0 (the geometric middle), missing -> (0, 0).
    depth = torch.tensor([[[[0.1, 15.0], [math.sqrt(1.5), 0.0]]]])
    code = log_validity_depth_encoding(depth, max_depth=15.0)
    assert code.shape == (1, 2, 2, 2) and code.dtype == torch.float32
    expected_log = torch.tensor([[-1.0, 1.0], [0.0, 0.0]])
    assert torch.allclose(code[0, 0], expected_log, atol=1e-6)
    assert code[0, 1].tolist() == [[1.0, 1.0], [1.0, 0.0]]
    # 1 m: 2 * ln(10) / ln(150) - 1.
    one_metre = log_validity_depth_encoding(torch.ones(1, 1, 1, 1), max_depth=15.0)
    assert one_metre[0, 0, 0, 0].item() == pytest.approx(2 * math.log(10) / math.log(150) - 1, abs=1e-6)
    # float32 under bf16 input as well, and the dispatcher gives the same channels.
    assert log_validity_depth_encoding(depth.bfloat16()).dtype == torch.float32
    assert torch.equal(encode_depth_input(depth, "log_validity", max_depth=15.0), code)
    with pytest.raises(ValueError, match="encoding"):
        encode_depth_input(depth, "sinusoidal")
    with pytest.raises(ValueError, match="max_depth"):
        log_validity_depth_encoding(depth, max_depth=0.05)


def test_log_validity_model_and_processor_agree():
    from vanishing_depth import VanishingDepthModel
    from vanishing_depth.image_processing_vanishing_depth import VanishingDepthImageProcessor

    config = tiny_config(depth_encoding="log_validity")
    assert config.depth_input_channels == 2
    torch.manual_seed(0)
    model = VanishingDepthModel(config).eval()
    assert model.depth_encoder.get_input_embeddings().projection.in_channels == 2
    processor = VanishingDepthImageProcessor.from_model_config(config, size={"height": 56, "width": 56})
    assert processor.depth_encoding == "log_validity"
    generator = torch.Generator().manual_seed(0)
    image = (torch.rand(56, 56, 3, generator=generator) * 255).to(torch.uint8).numpy()
    depth = (0.3 + 8 * torch.rand(56, 56, generator=generator)).numpy()
    depth[:10] = 0.0
    from_metres = processor(images=image, depth=depth, return_tensors="pt")
    encoded = processor(images=image, depth=depth, return_tensors="pt", do_depth_encoding=True)
    assert encoded["depth_encoding"].shape == (1, 2, 56, 56)
    assert torch.equal(encoded["depth_encoding"], model.encode_depth(from_metres["depth_values"]))
    with torch.inference_mode():
        a = model(pixel_values=from_metres["pixel_values"], depth_values=from_metres["depth_values"])
        b = model(pixel_values=encoded["pixel_values"], depth_encoding=encoded["depth_encoding"])
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)
    with pytest.raises(ValueError, match="dynamic"):
        tiny_config(depth_encoding="log_validity", depth_normalization="dynamic")


def test_perlin_sensor_pattern_removes_the_share_asked_for():
    from vanishing_depth.data import parse_depth_pattern, simulate_depth_input

    assert parse_depth_pattern("perlin:0.25") == ("perlin", 0.25)
    with pytest.raises(ValueError, match="share"):
        parse_depth_pattern("perlin:2")
    depth = 0.5 + torch.rand(2, 1, 56, 56, generator=torch.Generator().manual_seed(0))
    out = simulate_depth_input(depth, "perlin:0.25", torch.Generator().manual_seed(1))
    kept = (out > 0).flatten(1).sum(1)
    assert kept.tolist() == [round(0.75 * 56 * 56)] * 2
    assert torch.equal(out[out > 0], depth[out > 0])
    again = simulate_depth_input(depth, "perlin:0.25", torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


# ----------------------------------------------------------------------------------------------------------------------
# The studies
# ----------------------------------------------------------------------------------------------------------------------


def test_encoding_study_writes_json_table_and_plot(encoding_run):
    from vanishing_depth.evaluation.studies import STUDY_METRICS

    output, record = encoding_run
    assert (output / "encoding_study.png").stat().st_size > 0
    written = json.loads((output / "encoding_study.json").read_text())
    assert written["study"] == "encoding"
    patterns = ["fraction:0.5", "fraction:0.01", "perlin:0.5", "lidar:4", "holes"]
    assert written["settings"]["patterns"] == patterns
    assert sorted(written["runs"]) == ["log_validity", "pde"] and list(written["runs"]["pde"]) == ["0"]
    for encoding in ("pde", "log_validity"):
        assert list(written["summary"][encoding]) == patterns
        for pattern in patterns:
            entry = written["summary"][encoding][pattern]
            assert set(STUDY_METRICS) <= set(entry)
            rmse = entry["rmse_m"]
            assert rmse["std"] == 0.0 and rmse["values"] == [written["runs"][encoding]["0"][pattern]["rmse_m"]]
            assert rmse["mean"] > 0
        assert (output / "runs" / f"{encoding}-seed0" / "pretraining" / "config.json").is_file()
    # The two encodings trained different models on the same inputs.
    assert written["runs"]["pde"]["0"]["holes"]["rmse_m"] != written["runs"]["log_validity"]["0"]["holes"]["rmse_m"]
    assert "pde" in record["table"] and "±" in record["table"]
    config = json.loads((output / "runs" / "log_validity-seed0" / "pretraining" / "config.json").read_text())
    assert config["depth_encoding"] == "log_validity"


def test_encoding_study_reruns_to_the_same_json(encoding_run, tmp_path):
    from vanishing_depth.evaluation.studies import encoding_study

    output, _ = encoding_run
    encoding_study(tmp_path / "again", **TINY_STUDY)
    assert (tmp_path / "again" / "encoding_study.json").read_text() == (output / "encoding_study.json").read_text()


def test_encoding_study_refuses_a_used_folder_and_bad_arguments(encoding_run, tmp_path):
    from vanishing_depth.evaluation.studies import encoding_study
    from vanishing_depth.output_paths import OutputExistsError

    output, _ = encoding_run
    with pytest.raises(OutputExistsError, match="not empty"):
        encoding_study(output, **TINY_STUDY)
    with pytest.raises(ValueError, match="encodings"):
        encoding_study(tmp_path / "x", **{**TINY_STUDY, "encodings": ["pde", "pde"]})
    with pytest.raises(ValueError, match="max_steps"):
        encoding_study(tmp_path / "y", **{**TINY_STUDY, "max_steps": 0})


def test_density_study_with_saved_models_on_another_corpus(encoding_run, tmp_path):
    from vanishing_depth.data import save_corpus, synthetic_corpus
    from vanishing_depth.evaluation.studies import density_study

    output, _ = encoding_run
    corpus = tmp_path / "corpus"  # any corpus in the library's schema, here procedural rooms
    save_corpus(synthetic_corpus(2, 60, 80, seed=1, keep_in_memory=True), corpus, splits={"test": [0, 1]})
    models = [output / "runs" / "pde-seed0" / "pretraining", output / "runs" / "log_validity-seed0" / "pretraining"]
    record = density_study(
        models,
        tmp_path / "density",
        dataset=str(corpus),
        max_samples=1,
        removals=(0.0, 0.9, 0.999),
        sensor_patterns=("lidar:4",),
        print_table=False,
    )
    written = json.loads((tmp_path / "density" / "density_study.json").read_text())
    assert (tmp_path / "density" / "density_study.png").stat().st_size > 0
    assert list(written["methods"]) == ["pde-seed0", "log_validity-seed0", "nearest_fill", "median_fill"]
    assert written["settings"]["patterns"] == ["fraction:1", "fraction:0.1", "fraction:0.001", "lidar:4"]
    assert written["settings"]["dataset"] == str(corpus)
    for method in written["methods"].values():
        assert method["fraction:0.001"]["rmse_m"] > 0
    # The dense input: nearest-neighbour filling copies the ground truth.
    assert written["methods"]["nearest_fill"]["fraction:1"]["rmse_m"] == pytest.approx(0.0, abs=1e-6)
    assert "nearest_fill" in record["table"]


def test_density_and_feature_studies_refuse_untrained_weights(tmp_path):
    from vanishing_depth import VanishingDepthModel
    from vanishing_depth.evaluation.studies import density_study, feature_study

    encoder = tmp_path / "encoder"
    VanishingDepthModel(tiny_config()).save_pretrained(encoder)
    with pytest.raises(ValueError, match="depth decoder"):
        density_study([encoder], tmp_path / "density", print_table=False)
    with pytest.raises(ValueError, match="depth decoder"):
        feature_study(encoder, tmp_path / "features", print_table=False)
    assert not (tmp_path / "density").exists() and not (tmp_path / "features").exists()


def test_feature_study_draws_the_grid_and_depth_shares(encoding_run, tmp_path):
    from vanishing_depth.evaluation.studies import feature_study, pca_rgb

    output, _ = encoding_run
    model = output / "runs" / "pde-seed0" / "pretraining"
    record = feature_study(model, tmp_path / "features", num_frames=2, print_table=False)
    assert (tmp_path / "features" / "feature_pca.png").stat().st_size > 0
    written = json.loads((tmp_path / "features" / "feature_study.json").read_text())
    layers = json.loads((model / "config.json").read_text())["fusion_layers"]
    assert written["layers"] == layers and len(written["frames"]) == 2
    assert sorted(written["depth_share"], key=int) == [str(layer) for layer in layers]
    for share in written["depth_share"].values():
        assert 0.0 < share < 1.0
    for ratios in written["explained_variance"].values():
        assert len(ratios["rgb"]) == 3 and 0.0 < sum(ratios["depth"]) <= 1.0 + 1e-9
    again = feature_study(model, tmp_path / "features", num_frames=2, print_table=False, overwrite=True)
    assert again["depth_share"] == record["depth_share"]

    # PCA on a hand example: tokens varying along one direction give one component with all the variance.
    direction = torch.tensor([1.0, 2.0, 0.0, -1.0])
    maps = (torch.linspace(-1, 1, 12)[:, None] * direction).T.reshape(1, 4, 3, 4)
    colours, explained = pca_rgb(maps)
    assert colours.shape == (1, 3, 4, 3) and colours.min() >= 0.0 and colours.max() <= 1.0
    assert explained[0] == pytest.approx(1.0)


def test_study_command_line(encoding_run, tmp_path, capsys):
    from vanishing_depth.cli import main

    output, _ = encoding_run
    assert main(["study", "encoding", "--output-dir", str(output), "--max-steps", "1"]) == 2  # used folder refused
    assert "not empty" in capsys.readouterr().err
    model = str(output / "runs" / "pde-seed0" / "pretraining")
    code = main(
        ["study", "features", "--model", model, "--output-dir", str(tmp_path / "f"), "--frames", "1", "--pattern",
         "fraction:0.1"]
    )  # fmt: skip
    assert code == 0 and (tmp_path / "f" / "feature_pca.png").is_file()
    assert "depth share" in capsys.readouterr().out
