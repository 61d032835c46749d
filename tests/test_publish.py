"""Hub publishing against the loopback Hub (tests/hub_server.py): push, then load in fresh processes with empty caches,
with the package and with ``trust_remote_code=True`` and the package hidden; cards, branches, tags and corpora.

Client code runs in subprocesses because huggingface_hub reads ``HF_ENDPOINT`` when it is imported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import hub_server
import vanishing_depth
from conftest import HIDE_PACKAGE, tiny_config
from vanishing_depth import VanishingDepthImageProcessor, VanishingDepthModel
from vanishing_depth.hub.publish import code_files, plan_model_upload

loopback_hub = hub_server.loopback_hub
REPO = "test-user/vd-tiny"
# The remote-code files a repository needs: the modeling, configuration and image-processing modules and every module
# they import relatively (read from the installed package, so the list follows the code).
CODE_FILES = code_files(
    Path(vanishing_depth.__file__).parent,
    {"configuration_vanishing_depth", "modeling_vanishing_depth", "image_processing_vanishing_depth", "pipeline_vanishing_depth"},
)[0]
REPO_FILES = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "training_args.json"}
REPO_FILES |= CODE_FILES
METRICS = {
    "results": [
        {
            "task": {"type": "depth-completion", "name": "Depth completion"},
            "dataset": {
                "name": "Redwood living room 1 (demo, held-out)",
                "type": "redwood-livingroom1",
                "split": "test",
            },
            "metric": {"type": "rmse", "name": "RMSE at 10% density", "value": 0.2468, "unit": "m", "config": "d0.1"},
            "protocol": "4 held-out frames, 10% of valid pixels",
        },
        {"task": {"type": "depth-completion"}, "dataset": {"name": "partial"}, "metric": {"type": "mae", "value": 1}},
    ]
}


def run_client(hub, home: Path, code: str, *args: str, cwd: Path | None = None) -> dict:
    """Run `code` in a fresh Python against the loopback Hub with its own empty cache; return its last stdout line
    parsed as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=hub.client_env(home),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    assert result.returncode == 0, f"client failed\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr[-6000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def _save(folder: Path, seed: int, strip_remote_code: bool = False) -> VanishingDepthModel:
    torch.manual_seed(seed)
    model = VanishingDepthModel(tiny_config(rgb_backbone_name_or_path="facebook/dinov2-small")).eval()
    model.save_pretrained(str(folder))
    VanishingDepthImageProcessor.from_model_config(model.config, size={"shortest_edge": 56}).save_pretrained(
        str(folder)
    )
    (folder / "training_args.json").write_text(json.dumps({"corpora": ["redwood_demo"], "seed": seed}))
    if strip_remote_code:  # a folder saved before the classes were registered for remote code
        for path in folder.glob("*.py"):
            path.unlink()
        for name in ("config.json", "preprocessor_config.json"):
            data = json.loads((folder / name).read_text())
            data.pop("auto_map")
            (folder / name).write_text(json.dumps(data))
    return model


def _frame() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    depth = rng.uniform(0.3, 6.0, (60, 80)).astype(np.float32)
    depth[rng.random((60, 80)) < 0.4] = 0.0
    return rgb, depth


def _reference(folder: Path, model: VanishingDepthModel) -> list[torch.Tensor]:
    rgb, depth = _frame()
    inputs = VanishingDepthImageProcessor.from_pretrained(str(folder))(images=rgb, depth=depth, return_tensors="pt")
    with torch.no_grad():
        return list(model(pixel_values=inputs["pixel_values"], depth_values=inputs["depth_values"]).feature_maps)


PUSH = """
import argparse, json, sys
from vanishing_depth.hub.publish import add_push_subcommand, push_model
repo, folder_a, folder_b, metrics = sys.argv[1:5]
parser = argparse.ArgumentParser()
add_push_subcommand(parser.add_subparsers())
args = parser.parse_args(["push", "--model", folder_a, "--repo-id", repo, "--tag", "v1"])
assert args.func(args) == 0
dev = push_model(folder_b, repo, revision="dev", commit_message="B on dev")
main = push_model(folder_b, repo, metrics_files=[metrics])
print(json.dumps({"dev": dev.oid, "main": main.oid}))
"""

LOAD = """
import json, sys, torch
{prelude}
from transformers import AutoImageProcessor, AutoModel
repo, io_path = sys.argv[1:3]
io = torch.load(io_path, weights_only=False)
out = {{}}
for revision in ("v1", "main", "dev"):
    model = AutoModel.from_pretrained(repo, revision=revision, {kwargs}).eval()
    processor = AutoImageProcessor.from_pretrained(repo, revision=revision, {kwargs})
    inputs = processor(images=io["rgb"], depth=io["depth"], return_tensors="pt")
    with torch.no_grad():
        maps = model(pixel_values=inputs["pixel_values"], depth_values=inputs["depth_values"]).feature_maps
    out[revision] = [name for name in ("A", "B") if all(torch.equal(a, b) for a, b in zip(maps, io[name]))]
    out["modules"] = [type(model).__module__, type(processor).__module__]
{epilogue}
print(json.dumps(out))
"""

CARD = """
import re
from huggingface_hub import ModelCard
card = ModelCard.load(repo)
out["model_index"] = card.data.to_dict()["model-index"]
out["tags"] = card.data.tags
snippet = re.search(r"```python\\n(.*?)```", card.text, flags=re.S).group(1)
namespace = {}
exec(snippet, namespace)
out["snippet_maps"] = len(namespace["outputs"].feature_maps)
"""


def test_push_then_load_with_and_without_the_package(loopback_hub, tmp_path):
    folder_a, folder_b = tmp_path / "model_a", tmp_path / "model_b"
    model_a = _save(folder_a, seed=0, strip_remote_code=True)
    (folder_a / "checkpoint-10").mkdir()
    (folder_a / "checkpoint-10" / "optimizer.pt").write_bytes(b"not published")
    model_b = _save(folder_b, seed=1)
    rgb, depth = _frame()
    io_path = tmp_path / "io.pt"
    torch.save(
        {"rgb": rgb, "depth": depth, "A": _reference(folder_a, model_a), "B": _reference(folder_b, model_b)}, io_path
    )
    metrics = tmp_path / "eval.json"
    metrics.write_text(json.dumps(METRICS))

    pushed = run_client(loopback_hub, tmp_path / "pusher", PUSH, REPO, str(folder_a), str(folder_b), str(metrics))

    # One commit per push; the branch and the tag exist; the stripped folder was completed, its checkpoint left out.
    commits = [p for m, p in loopback_hub.request_log if m == "POST" and "/commit/" in p]
    assert commits == [f"/api/models/{REPO}/commit/main", f"/api/models/{REPO}/commit/dev"] + [
        f"/api/models/{REPO}/commit/main"
    ]
    repo = loopback_hub.repos[("model", REPO)]
    assert repo.tags == {"v1": repo.history(repo.resolve("main"))[1].sha}
    assert repo.branches == {"main": pushed["main"], "dev": pushed["dev"]}
    at_v1 = loopback_hub.files(REPO, revision="v1")
    assert set(at_v1) == {".gitattributes"} | REPO_FILES
    assert json.loads(at_v1["config.json"])["auto_map"]["AutoModel"] == "modeling_vanishing_depth.VanishingDepthModel"
    assert "AutoImageProcessor" in json.loads(at_v1["preprocessor_config.json"])["auto_map"]
    assert at_v1["model.safetensors"] != loopback_hub.files(REPO)["model.safetensors"]

    # With the package, from a fresh cache: each revision gives its own weights, bit for bit; the card is the one
    # pushed last to main (its model-index holds only the complete metrics entry) and its usage snippet runs.
    loopback_hub.request_log.clear()
    out = run_client(
        loopback_hub,
        tmp_path / "user",
        LOAD.format(prelude="import vanishing_depth", kwargs="", epilogue=textwrap.indent(CARD, "")),
        REPO,
        str(io_path),
        cwd=tmp_path,
    )
    assert (out["v1"], out["main"], out["dev"]) == (["A"], ["B"], ["B"])
    assert out["modules"][0] == "vanishing_depth.modeling_vanishing_depth"
    assert out["model_index"][0]["results"] == [
        {
            "task": {"type": "depth-completion", "name": "Depth completion"},
            "dataset": {
                "name": "Redwood living room 1 (demo, held-out)",
                "type": "redwood-livingroom1",
                "split": "test",
            },
            "metrics": [{"type": "rmse", "value": 0.2468, "name": "RMSE at 10% density", "config": "d0.1"}],
        }
    ]
    assert "custom_code" in out["tags"] and out["snippet_maps"] == 4
    downloaded = {p for m, p in loopback_hub.request_log if m == "GET" and p.endswith("/model.safetensors")}
    assert f"/{REPO}/resolve/{repo.tags['v1']}/model.safetensors" in downloaded  # the tag's commit, not main's
    assert downloaded & {f"/{REPO}/resolve/{sha}/model.safetensors" for sha in pushed.values()}  # dev = main: one blob

    # Without the package: the repository's own code (model and image processor) gives the same outputs.
    out = run_client(
        loopback_hub,
        tmp_path / "no_package",
        LOAD.format(prelude=HIDE_PACKAGE, kwargs="trust_remote_code=True", epilogue=""),
        REPO,
        str(io_path),
        cwd=tmp_path,
    )
    assert (out["v1"], out["main"], out["dev"]) == (["A"], ["B"], ["B"])
    assert all("transformers_modules" in module for module in out["modules"])


def test_upload_plan_completes_and_reports(tmp_path, caplog):
    folder = tmp_path / "model"
    _save(folder, seed=0, strip_remote_code=True)
    (folder / "preprocessor_config.json").unlink()  # no processor at all: built from the model config
    (folder / "logs.txt").write_text("training log")
    caplog.set_level(logging.WARNING)
    plan = plan_model_upload(folder, tmp_path / "staging", repo_id=REPO)
    assert set(plan.files) == REPO_FILES
    assert {"modeling_vanishing_depth.py", "preprocessor_config.json", "README.md"} <= set(plan.completed)
    assert plan.left_out == ["logs.txt"] and "logs.txt" in caplog.text
    assert "from_model_config" in caplog.text
    processor = json.loads(plan.files["preprocessor_config.json"].read_text())
    assert processor["pde_channels"] == 16 and "AutoImageProcessor" in processor["auto_map"]
    assert f'from_pretrained("{REPO}")' in plan.files["README.md"].read_text()
    # The user's folder is never modified.
    assert not list(folder.glob("*.py")) and not (folder / "README.md").exists()

    (folder / "model.safetensors").unlink()
    torch.save({}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickled"):
        plan_model_upload(folder, tmp_path / "staging2")


PRETRAINING_LOAD = """
import sys, torch
{hide}
from transformers import AutoModel, AutoModelForPreTraining
folder, io_path = sys.argv[1:3]
io = torch.load(io_path)
full = AutoModelForPreTraining.from_pretrained(folder, trust_remote_code=True).eval()
encoder = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
with torch.no_grad():
    depth = full(pixel_values=io["rgb"], depth_values=io["depth"]).predicted_depth[0]
    maps = encoder(pixel_values=io["rgb"], depth_values=io["depth"]).feature_maps
assert torch.equal(depth, io["depth_out"]), "completed depth differs"
assert all(torch.equal(a, b) for a, b in zip(maps, io["maps"], strict=True)), "encoder features differ"
print("{{}}")
"""


def test_pretraining_folder_gets_the_auto_map_remote_code_users_need(tmp_path):
    """A VanishingDepthForPretraining save names every Auto class (AutoModel = the encoder) and the depth-completion
    pipeline; the published config keeps them, and both load with the package hidden."""
    from vanishing_depth.modeling_vanishing_depth import VanishingDepthForPretraining

    torch.manual_seed(0)
    model = VanishingDepthForPretraining(tiny_config()).eval()
    model.save_pretrained(str(tmp_path / "pretraining"))
    saved_config = (tmp_path / "pretraining" / "config.json").read_text()
    saved = json.loads(saved_config)
    assert set(saved["auto_map"]) == {
        "AutoConfig",
        "AutoModel",
        "AutoBackbone",
        "AutoModelForPreTraining",
        "AutoModelForDepthEstimation",
        "AutoModelForSemanticSegmentation",
        "AutoModelForImageClassification",
    }
    assert saved["custom_pipelines"]["depth-completion"]["pt"] == ["AutoModelForPreTraining"]
    assert (tmp_path / "pretraining" / "pipeline_vanishing_depth.py").is_file()
    plan = plan_model_upload(tmp_path / "pretraining", tmp_path / "staging")
    auto_map = json.loads(plan.files["config.json"].read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_vanishing_depth.VanishingDepthModel"
    assert auto_map["AutoModelForPreTraining"] == "modeling_vanishing_depth.VanishingDepthForPretraining"
    assert (tmp_path / "pretraining" / "config.json").read_text() == saved_config  # the user's folder is untouched

    rgb, depth = torch.randn(1, 3, 56, 56), 4.0 * torch.rand(1, 1, 56, 56)
    with torch.no_grad():
        outputs = model(pixel_values=rgb, depth_values=depth)
        maps = model.vanishing_depth(pixel_values=rgb, depth_values=depth).feature_maps
    torch.save(
        {"rgb": rgb, "depth": depth, "depth_out": outputs.predicted_depth[0], "maps": list(maps)}, tmp_path / "io.pt"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    code = PRETRAINING_LOAD.format(hide=HIDE_PACKAGE)
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "staging"), str(tmp_path / "io.pt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]


CORPUS_PUSH = """
import json, sys
from vanishing_depth.hub.publish import push_corpus
info = push_corpus("redwood_demo", sys.argv[1], split="test", private=True)
print(json.dumps({"oid": getattr(info, "oid", None)}))
"""

CORPUS_LOAD = """
import hashlib, json, sys
from datasets import Image, load_dataset
dataset = load_dataset(sys.argv[1], split="test")  # plain `datasets`: what a user without the package runs
raw = dataset.cast_column("image", Image(decode=False)).cast_column("depth", Image(decode=False))
rows = [{k: (hashlib.sha256(v["bytes"]).hexdigest() if isinstance(v, dict) else v) for k, v in row.items()} for row in raw]
print(json.dumps({"rows": rows, "depth_mode": dataset[0]["depth"].mode}))
"""


def test_corpus_round_trips_through_the_hub(loopback_hub, tmp_path):
    from datasets import Image

    from vanishing_depth.data import RGBD_CORPUS_COLUMNS, load_demo_corpus

    run_client(loopback_hub, tmp_path / "pusher", CORPUS_PUSH, "test-user/redwood-demo")
    repo = loopback_hub.repos[("dataset", "test-user/redwood-demo")]
    assert repo.private and any(
        p.startswith("data/test-") for p in loopback_hub.files(repo.repo_id, repo_type="dataset")
    )
    out = run_client(loopback_hub, tmp_path / "user", CORPUS_LOAD, "test-user/redwood-demo")

    local = load_demo_corpus("test").cast_column("image", Image(decode=False)).cast_column("depth", Image(decode=False))
    expected = [
        {k: (hashlib.sha256(v["bytes"]).hexdigest() if isinstance(v, dict) else v) for k, v in row.items()}
        for row in local
    ]
    assert out["rows"] == json.loads(json.dumps(expected))  # bytes of every image and depth map, and every field
    assert set(out["rows"][0]) == set(RGBD_CORPUS_COLUMNS)
    assert out["depth_mode"] in ("I;16", "I", "F")  # 16-bit / float depth survives, never 8-bit
