"""Sharing never publishes what the user did not ask for, and runs never clobber each other.

`push` uploads an allow-list only (no validation frames, optimizer / scheduler / RNG state, checkpoints or logs), with
every local path rewritten and the card's snippet on the repository pushed to; `--dry-run` shows that plan and sends
nothing (the loopback Hub's request log stays empty). `convert`, `card` and `export` refuse to write over existing
output unless `--overwrite`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import hub_server
from conftest import tiny_config
from test_convert_authors import _randomised_model, to_authors_layout
from vanishing_depth import VanishingDepthImageProcessor, VanishingDepthModel
from vanishing_depth.cli import main as cli_main
from vanishing_depth.export import export_model
from vanishing_depth.hub import model_card, publish
from vanishing_depth.hub.model_card import card_is_ours, write_model_card
from vanishing_depth.hub.publish import plan_model_upload, push_model
from vanishing_depth.output_paths import OutputExistsError

loopback_hub = hub_server.loopback_hub
REPO = "test-user/vd-run"
PRIVATE = {
    "validation_set.safetensors",
    "optimizer.bin",
    "scheduler.bin",
    "training_log.jsonl",
    "checkpoints/step-2/model.safetensors",
    "checkpoints/step-2/optimizer.bin",
    "checkpoints/step-2/random_states_0.pkl",
    "checkpoints/latest",
    "pretraining_summary.json",
}


def _training_run(tmp_path: Path) -> Path:
    """A pretraining output folder as a run leaves it: model, processor, card written without a repo id, the run's
    arguments and metrics, and the private rest; absolute local paths in the configs, arguments, metrics and card."""
    folder = tmp_path / "runs" / "vd-run"
    torch.manual_seed(0)
    model = VanishingDepthModel(tiny_config(rgb_backbone_name_or_path=str(tmp_path / "backbones" / "dinov2")))
    model.save_pretrained(str(folder))
    VanishingDepthImageProcessor.from_model_config(model.config, size={"shortest_edge": 56}).save_pretrained(
        str(folder)
    )
    config = json.loads((folder / "config.json").read_text())
    config["_name_or_path"] = str(folder)
    config["rgb_config"]["_name_or_path"] = str(tmp_path / "backbones" / "dinov2")
    config["converted_from"] = {"file": "vd.safetensors", "rgb_prefix": f"from {tmp_path}/backbones/dinov2"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "training_args.json").write_text(
        json.dumps(
            {
                "output_dir": str(folder),
                "dataset": [str(tmp_path / "corpora" / "kitchen"), "redwood_demo"],
                "validation_dataset": str(tmp_path / "corpora" / "held-out"),
                "resume": None,
                "learning_rate": 1e-05,
            }
        )
    )
    metrics = {
        "results": [
            {
                "task": {"type": "depth-completion"},
                "dataset": {"name": str(tmp_path / "corpora" / "held-out"), "type": "held-out"},
                "metric": {"type": "rmse", "value": 0.25, "unit": "m"},
            }
        ]
    }
    (folder / "eval_results.json").write_text(json.dumps(metrics))
    (folder / "completion_metrics.json").write_text(json.dumps({"model": str(folder), "table": {"0.1": 0.25}}))
    # The card the run wrote at its end (no repo id), in which a local path survived (as in cards of earlier
    # versions): still a card of this library, so the push may rewrite it.
    write_model_card(folder, metrics_files=[folder / "eval_results.json"])
    card = (
        (folder / "README.md")
        .read_text()
        .replace("## Limitations\n", f"## Limitations\n\n- Frames were read from `{tmp_path}/corpora/kitchen`.\n")
    )
    (folder / "README.md").write_text(model_card._mark_card(card))
    # The private rest.
    save_file(
        {"pixel_values": torch.rand(2, 3, 56, 56), "depth": torch.rand(2, 1, 56, 56)},
        folder / "validation_set.safetensors",
    )
    torch.save({"state": {}}, folder / "optimizer.bin")
    torch.save({"last_epoch": 2}, folder / "scheduler.bin")
    (folder / "training_log.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0, "dir": str(folder)}) + "\n")
    (folder / "pretraining_summary.json").write_text(json.dumps({"steps": 2}))
    step = folder / "checkpoints" / "step-2"
    step.mkdir(parents=True)
    (step / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    torch.save({"state": {}}, step / "optimizer.bin")
    (step / "random_states_0.pkl").write_bytes(b"rng")
    os.symlink("step-2", folder / "checkpoints" / "latest")
    return folder


def _cli(hub, home: Path, *argv: str) -> subprocess.CompletedProcess:
    """`vanishing-depth ARGV` in a fresh process pointed at the loopback Hub (huggingface_hub reads HF_ENDPOINT at
    import)."""
    code = "import sys; from vanishing_depth.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], env=hub.client_env(home), capture_output=True, text=True, timeout=300
    )


def test_push_uploads_the_allow_list_without_local_paths(loopback_hub, tmp_path):
    folder = _training_run(tmp_path)
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}

    # Dry run: the plan, and not one request to the Hub.
    dry = _cli(loopback_hub, tmp_path / "dry", "push", "--model", str(folder), "--repo-id", REPO, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-4000:]
    plan = json.loads(dry.stdout)
    assert loopback_hub.request_log == [] and loopback_hub.repos == {}
    assert plan["dry_run"] is True and plan["repo_id"] == REPO
    assert set(plan["left_out"]) == PRIVATE
    reasons = plan["left_out"]
    assert "validation frames" in reasons["validation_set.safetensors"]
    assert "optimizer" in reasons["optimizer.bin"] and "optimizer" in reasons["scheduler.bin"]
    assert "checkpoint" in reasons["checkpoints/step-2/optimizer.bin"] and "checkpoint" in reasons["checkpoints/latest"]
    assert reasons["training_log.jsonl"] == "training log"
    assert sorted(plan["rewritten"]["config.json"]) == [
        "_name_or_path",
        "converted_from.rgb_prefix",
        "rgb_backbone_name_or_path",
        "rgb_config._name_or_path",
    ]
    assert set(plan["rewritten"]["training_args.json"]) == {"output_dir", "dataset[0]", "validation_dataset"}

    # The push: exactly the planned files arrive, none private, none naming the local disk.
    pushed = _cli(loopback_hub, tmp_path / "push", "push", "--model", str(folder), "--repo-id", REPO)
    assert pushed.returncode == 0, pushed.stderr[-4000:]
    files = loopback_hub.files(REPO)
    assert set(files) - {".gitattributes"} == set(plan["upload"])
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "training_args.json"} <= set(
        files
    )
    assert {"eval_results.json", "completion_metrics.json", "pipeline_vanishing_depth.py"} <= set(files)
    assert not set(files) & {name.split("/")[0] for name in PRIVATE} and not any("/" in name for name in files)
    for name, data in files.items():
        assert str(tmp_path).encode() not in data, f"{name} names the local folder"
    assert not [name for name, data in files.items() if name.endswith((".json", ".md")) and b'"/' in data]

    config = json.loads(files["config.json"])
    assert config["_name_or_path"] == REPO and config["rgb_backbone_name_or_path"] == "[local]/dinov2"
    assert config["converted_from"]["rgb_prefix"] == "from [local]/dinov2"
    assert config["auto_map"]["AutoModel"] == "modeling_vanishing_depth.VanishingDepthModel"
    args = json.loads(files["training_args.json"])
    assert args["output_dir"] == "[local]/vd-run" and args["dataset"] == ["[local]/kitchen", "redwood_demo"]
    assert args["learning_rate"] == 1e-05 and args["resume"] is None
    assert json.loads(files["eval_results.json"])["results"][0]["dataset"]["name"] == "[local]/held-out"

    # The card: the run's card, its snippet on the repository, the surviving path rewritten, still ours.
    card = files["README.md"].decode()
    snippet = re.search(r"```python\n(.*?)```", card, flags=re.S).group(1)
    assert (
        f'AutoModel.from_pretrained("{REPO}")' in snippet and f'AutoImageProcessor.from_pretrained("{REPO}")' in snippet
    )
    assert "<your-org>" not in card and "is a placeholder" not in card
    assert "Frames were read from `[local]/kitchen`" in card and "| rmse |" in card
    assert card_is_ours(card)

    # The user's folder is as it was.
    assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before


def _own_readme_folder(tmp_path: Path, readme: str) -> Path:
    folder = tmp_path / "model"
    torch.manual_seed(0)
    model = VanishingDepthModel(tiny_config())
    model.save_pretrained(str(folder))
    VanishingDepthImageProcessor.from_model_config(model.config).save_pretrained(str(folder))
    (folder / "README.md").write_text(readme)
    return folder


def test_a_readme_of_the_users_own_is_published_unchanged_or_refused(tmp_path, monkeypatch):
    own = "# My depth model\n\nTrained on our robot; load it with `AutoModel.from_pretrained`.\n"
    folder = _own_readme_folder(tmp_path / "clean", own)
    plan = plan_model_upload(folder, tmp_path / "staging", repo_id=REPO)
    assert plan.files["README.md"] == folder / "README.md" and "README.md" not in plan.rewritten

    # An edited card of this library is the user's too: unchanged, the placeholder snippet included.
    generated = str(model_card.build_model_card(folder))
    edited = generated.replace("## Licence\n", "## Licence\n\n- Ask me first.\n")
    (folder / "README.md").write_text(edited)
    plan = plan_model_upload(folder, tmp_path / "staging-edited", repo_id=REPO)
    assert plan.files["README.md"] == folder / "README.md"

    # Local paths in the user's own README: refused before anything is sent, naming the file, the path and the ways out.
    folder = _own_readme_folder(tmp_path / "paths", own + f"\nData: {tmp_path}/data/kitchen\n")

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was contacted")

    monkeypatch.setattr(publish, "HfApi", no_hub)
    for dry_run in (True, False):
        with pytest.raises(ValueError, match="local paths") as refused:
            push_model(folder, REPO, dry_run=dry_run)
        message = str(refused.value)
        assert str(folder / "README.md") in message and f"{tmp_path}/data/kitchen" in message
        assert "--overwrite" in message and f"--repo-id {REPO}" in message


def test_only_the_weights_the_index_names_are_published(tmp_path):
    folder = tmp_path / "sharded"
    torch.manual_seed(0)
    model = VanishingDepthModel(tiny_config())
    model.save_pretrained(str(folder), max_shard_size="100KB")
    shards = sorted(path.name for path in folder.glob("model-*.safetensors"))
    assert len(shards) > 1
    save_file({"depth": torch.rand(1, 1, 14, 14)}, folder / "validation_set.safetensors")
    save_file({"x": torch.zeros(1)}, folder / "adapter_model.safetensors")
    plan = plan_model_upload(folder, tmp_path / "staging", repo_id=REPO)
    assert {name for name in plan.files if "safetensors" in name} == {*shards, "model.safetensors.index.json"}
    assert plan.left_out == ["adapter_model.safetensors", "validation_set.safetensors"]
    assert "not model weights" in plan.left_out_reasons["adapter_model.safetensors"]

    # Validation frames are never counted as model weights, not even in the card's parameter count.
    card = str(model_card.build_model_card(folder))
    count = sum(parameter.numel() for parameter in model.state_dict().values())
    assert model_card._format_count(count) in card

    (folder / shards[0]).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(shards[0])):
        plan_model_upload(folder, tmp_path / "staging2")


# ----------------------------------------------------------------------------------------------------------------------
# No clobbering: convert, card, export
# ----------------------------------------------------------------------------------------------------------------------
def test_convert_refuses_a_non_empty_output_folder_unless_overwrite(tmp_path, capsys):
    checkpoint = tmp_path / "vd_authors.safetensors"
    save_file(to_authors_layout(_randomised_model()), str(checkpoint))
    output = tmp_path / "converted"
    output.mkdir()
    (output / "notes.txt").write_text("my notes")
    argv = ["convert", "--checkpoint", str(checkpoint), "--output-dir", str(output), "--num-attention-heads", "2"]

    assert cli_main(argv) == 2
    error = capsys.readouterr().err
    assert str(output) in error and "--overwrite" in error and "notes.txt" in error
    assert sorted(path.name for path in output.iterdir()) == ["notes.txt"]

    assert cli_main([*argv, "--overwrite"]) == 0
    assert not (output / "notes.txt").exists() and (output / "model.safetensors").is_file()
    assert card_is_ours((output / "README.md").read_text())


def test_card_refuses_to_replace_a_readme_of_the_users_own(tmp_path, capsys):
    folder = _own_readme_folder(tmp_path, "# placeholder\n")
    (folder / "README.md").unlink()

    # A card this library wrote (and nobody edited) is replaced freely: a second run is no clobbering.
    assert cli_main(["card", "--model", str(folder)]) == 0
    assert card_is_ours((folder / "README.md").read_text())
    assert cli_main(["card", "--model", str(folder), "--repo-id", "o/vd"]) == 0
    assert 'from_pretrained("o/vd")' in (folder / "README.md").read_text()
    capsys.readouterr()

    # Edited by hand it is the user's, and so is a README without the marker: refused, untouched.
    edited = (folder / "README.md").read_text().replace("## Limitations\n", "## Limitations\n\n- My own note.\n")
    for own in (edited, "# My model\n\nMy own words.\n"):
        (folder / "README.md").write_text(own)
        assert cli_main(["card", "--model", str(folder), "--repo-id", "o/vd"]) == 2
        error = capsys.readouterr().err
        assert str(folder / "README.md") in error and "--overwrite" in error
        assert (folder / "README.md").read_text() == own
    with pytest.raises(OutputExistsError, match="README"):
        write_model_card(folder, repo_id="o/vd")

    assert cli_main(["card", "--model", str(folder), "--repo-id", "o/vd", "--overwrite"]) == 0
    text = (folder / "README.md").read_text()
    assert card_is_ours(text) and "My own words" not in text


def test_export_refuses_an_existing_file_unless_overwrite(tmp_path, capsys):
    folder = tmp_path / "model"
    torch.manual_seed(0)
    VanishingDepthModel(tiny_config()).save_pretrained(str(folder))

    # An explicit --output: refused before the model is even read (the folder given does not exist).
    target = tmp_path / "mine.pt2"
    target.write_bytes(b"my earlier export")
    argv = ["export", "--format", "torch_export", "--static", "--no-verify", "--height", "56", "--width", "56"]
    assert cli_main([*argv, "--model", str(tmp_path / "no-such-model"), "--output", str(target)]) == 2
    error = capsys.readouterr().err
    assert str(target) in error and "--overwrite" in error and target.read_bytes() == b"my earlier export"

    # The default DIR/export/model.onnx (and .pt2) too.
    default = folder / "export" / "model.onnx"
    default.parent.mkdir()
    default.write_bytes(b"earlier onnx")
    assert cli_main(["export", "--model", str(folder), "--no-verify", "--height", "56", "--width", "56"]) == 2
    assert str(default) in capsys.readouterr().err and default.read_bytes() == b"earlier onnx"
    with pytest.raises(OutputExistsError, match=re.escape(str(default))):
        export_model(folder, format="onnx", height=56, width=56)

    assert cli_main([*argv, "--model", str(folder), "--output", str(target), "--overwrite"]) == 0
    assert target.read_bytes() != b"my earlier export"
    torch.export.load(str(target))  # a real program now
