"""benchmarks/bench_real_frames.py: a saved completion model scored on the real frames of ../shared/data against the
classical baselines, and the refusal of folders that cannot complete depth."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pytest
import torch

from conftest import REPO_ROOT, shared_data_dir, tiny_config

SCRIPT = REPO_ROOT / "benchmarks" / "bench_real_frames.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_real_frames", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def tiny_completion_model(tmp_path_factory):
    from vanishing_depth import VanishingDepthForPretraining

    folder = tmp_path_factory.mktemp("tiny-completion")
    torch.manual_seed(0)
    VanishingDepthForPretraining(tiny_config(decoder_channels=[16, 16, 8, 8])).save_pretrained(folder)
    return folder


def test_real_frames_against_baselines(bench, tiny_completion_model, tmp_path, capsys):
    data = shared_data_dir()
    if data is None:
        pytest.skip("the real frames in ../shared/data (or $VANISHING_DEPTH_SHARED_DATA) are not available")
    output = tmp_path / "real_frames"
    argv = ["--model", str(tiny_completion_model), "--data-dir", str(data), "--output-dir", str(output)]
    record = bench.main([*argv, "--short-edge", "56", "--max-frames", "1"])

    written = json.loads((output / bench.JSON_FILE).read_text(), parse_constant=pytest.fail)  # strict: no NaN
    assert written["settings"]["short_edge_px"] == 56 and written["settings"]["model"] == str(tiny_completion_model)
    assert written["corpora"]["nyu"]["methods"] == json.loads(json.dumps(record["corpora"]["nyu"]["methods"]))
    assert set(written["corpora"]) == {"nyu", "redwood_noisy", "arkit"}
    methods = {"model", "model_keep_measured", "nearest_fill", "median_fill"}
    for name, corpus in written["corpora"].items():
        assert corpus["num_frames"] == 1
        assert min(corpus["input_size"]) <= 56 + 13  # short edge 56 px, padded to the patch size
        assert set(corpus["methods"]) == methods
        assert corpus["patterns"][:3] == ["fraction:0.1", "fraction:0.01", "fraction:0.001"]
        assert len(corpus["patterns"]) > 3  # and sensor patterns
        assert "tof:8" in corpus["patterns"]  # scored on the pixels whose input is not their own depth
        for method in methods:
            assert list(corpus["methods"][method]) == corpus["patterns"]
            for pattern, metrics in corpus["methods"][method].items():
                for key in ("rmse_m", "mae_m", "removed_rmse_m", "removed_mae_m"):
                    assert math.isfinite(metrics[key]) and metrics[key] >= 0, (name, method, pattern, key)
        fraction = corpus["methods"]["model_keep_measured"]["fraction:0.1"]
        # Passing the 10 % measured pixels through changes nothing on the removed ones, only on the measured ones.
        plain = corpus["methods"]["model"]["fraction:0.1"]
        assert fraction["removed_rmse_m"] == pytest.approx(plain["removed_rmse_m"], rel=1e-5)
    assert "holes" not in written["corpora"]["arkit"]["patterns"]  # a structured-light artefact, not a LiDAR's

    printed = capsys.readouterr().out
    assert printed.count("```text") == 3 and "RMSE (m) on the removed pixels" in printed
    assert (output / bench.MARKDOWN_FILE).read_text().count("#### ") == 3
    with pytest.raises(ValueError, match="not empty"):  # a used output folder is refused
        bench.main([*argv, "--short-edge", "56", "--max-frames", "1", "--corpora", "arkit"])


def test_folder_without_decoder_is_refused(bench, tmp_path):
    from vanishing_depth import VanishingDepthModel

    encoder = tmp_path / "encoder"
    VanishingDepthModel(tiny_config()).save_pretrained(encoder)
    with pytest.raises(SystemExit, match="make demo") as refused:
        bench.main(["--model", str(encoder), "--output-dir", str(tmp_path / "out")])
    assert str(encoder) in str(refused.value) and "VanishingDepthModel" in str(refused.value)
    missing = tmp_path / "no-such-model"
    with pytest.raises(SystemExit, match="make demo") as refused:
        bench.main(["--model", str(missing), "--output-dir", str(tmp_path / "out")])
    assert str(missing) in str(refused.value)
    assert not (tmp_path / "out").exists()  # nothing written


def test_missing_data_dir_is_named(bench, tiny_completion_model, tmp_path):
    missing = tmp_path / "no-frames"
    with pytest.raises(SystemExit, match="does not exist") as refused:
        bench.main(["--model", str(tiny_completion_model), "--data-dir", str(missing), "--output-dir", str(tmp_path)])
    assert str(missing) in str(refused.value)
