"""Model cards: metadata, model-index from metrics files, a body read from the folder, and a usage snippet that runs."""

from __future__ import annotations

import argparse
import json
import re
import shutil

import pytest
import torch
from huggingface_hub import ModelCard

from conftest import tiny_config
from vanishing_depth import VanishingDepthForDepthEstimation, VanishingDepthImageProcessor, VanishingDepthModel
from vanishing_depth.hub import build_model_card, read_metrics_file
from vanishing_depth.hub.model_card import (
    add_card_subcommand,
    card_is_ours,
    find_local_paths,
    is_hub_id,
    redact_local_paths,
    retarget_card,
    usage_snippet,
)

COMPLETE = [
    {
        "task": {"type": "depth-completion", "name": "Depth completion"},
        "dataset": {"name": "Redwood living room 1 (demo, held-out)", "type": "redwood-livingroom1", "split": "test"},
        "metric": {
            "type": "rmse",
            "name": "RMSE at 10% input density",
            "value": 0.1537,
            "unit": "m",
            "config": "density_0.1",
        },
        "protocol": "4 held-out frames; 10% of valid pixels kept; evaluated on 0.05-15 m",
    },
    {
        "task": {"type": "depth-completion", "name": "Depth completion"},
        "dataset": {"name": "Redwood living room 1 (demo, held-out)", "type": "redwood-livingroom1", "split": "test"},
        "metric": {
            "type": "mae",
            "name": "MAE at 1% input density",
            "value": 0.4821,
            "unit": "m",
            "config": "density_0.01",
        },
        "protocol": "4 held-out frames; 1% of valid pixels kept; evaluated on 0.05-15 m",
    },
]
PARTIAL = [
    {"task": {"type": "depth-completion"}, "dataset": {"name": "no type"}, "metric": {"type": "rmse", "value": 9.876}},
    {"task": {"type": "depth-completion"}, "dataset": {"name": "d", "type": "d"}, "metric": {"type": "rmse"}},
    {"task": {}, "dataset": {"name": "d", "type": "d"}, "metric": {"type": "rmse", "value": 7.654}},
    {"task": {"type": "t"}, "dataset": {"name": "d", "type": "d"}, "metric": {"type": "rmse", "value": float("nan")}},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("card") / "vd-tiny"
    torch.manual_seed(0)
    model = VanishingDepthModel(tiny_config(max_depth=12.0, rgb_backbone_name_or_path="facebook/dinov2-small"))
    model.save_pretrained(str(folder))
    VanishingDepthImageProcessor.from_model_config(model.config, size={"shortest_edge": 56}).save_pretrained(
        str(folder)
    )
    (folder / "training_args.json").write_text(
        json.dumps({"corpora": ["redwood_demo", "my-org/rgbd-corpus"], "learning_rate": 1.5e-05, "max_steps": 321})
    )
    return folder


@pytest.fixture
def metrics_file(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"results": COMPLETE + PARTIAL}))
    return path


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_metadata_and_model_index(model_dir, metrics_file, caplog):
    card = build_model_card(model_dir, metrics_files=[metrics_file], repo_id="my-org/vd-tiny")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["license"] == "apache-2.0"
    assert data["pipeline_tag"] == "image-feature-extraction"
    assert data["base_model"] == "facebook/dinov2-small"
    assert data["datasets"] == ["my-org/rgbd-corpus"]  # the Hub id among the training corpora
    assert set(data["tags"]) == {"rgbd", "depth", "vanishing-depth", "dinov2", "custom_code"}
    assert data["metrics"] == ["rmse", "mae"]
    # Only the complete entries become the model-index; each dropped one is reported.
    results = data["model-index"][0]["results"]
    assert data["model-index"][0]["name"] == "vd-tiny"
    assert [m["value"] for r in results for m in r["metrics"]] == [0.1537, 0.4821]
    assert len(results) == 1 and results[0]["dataset"] == COMPLETE[0]["dataset"]  # same task and dataset: grouped
    assert results[0]["metrics"][0] == {
        "type": "rmse",
        "value": 0.1537,
        "name": "RMSE at 10% input density",
        "config": "density_0.1",
    }
    assert caplog.text.count("left out of the card") == len(PARTIAL)
    assert len(read_metrics_file(metrics_file)) == len(COMPLETE)

    # The card survives a save/load round trip with the same metadata (what the Hub parses).
    card.save(model_dir.parent / "README.md")
    assert ModelCard.load(model_dir.parent / "README.md").data.to_dict() == data


def test_body_states_the_folder_and_nothing_else(model_dir, metrics_file):
    text = build_model_card(model_dir, metrics_files=[metrics_file], repo_id="my-org/vd-tiny").text
    contract = _section(text, "Input contract")
    assert "metres" in contract and "0 = missing" in contract and "multiples of the patch size **14**" in contract
    assert "channels C: 16 (8 sin/cos pairs)" in contract and "temperature T: 0.0003" in contract
    assert "max depth: 12 m" in contract and "`global`" in contract
    assert "[0.485, 0.456, 0.406]" in contract
    training = _section(text, "Training")
    assert "| `learning_rate` | `1.5e-05` |" in training and "| `max_steps` | `321` |" in training
    assert "`redwood_demo`" in training and "facebook/dinov2-small" in training
    evaluation = _section(text, "Evaluation")
    assert "Protocol: 4 held-out frames; 10% of valid pixels kept" in evaluation and "(test split)" in evaluation
    # Every number in the evaluation tables is a value of a complete entry; dropped entries' numbers never appear.
    rows = [line for line in evaluation.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert sorted(float(row.split("|")[3]) for row in rows) == sorted(e["metric"]["value"] for e in COMPLETE)
    for dropped in ("9.876", "7.654"):
        assert dropped not in text
    limitations = _section(text, "Limitations")
    assert "12 m" in limitations and "Sensors" in limitations
    licence = _section(text, "Licence")
    assert "Apache-2.0" in licence and "CC BY 3.0" in licence and "my-org/rgbd-corpus" in licence
    assert "arXiv 2503.19947" in text and "Koch" in _section(text, "Citation")


def test_without_metrics_no_result_is_claimed(model_dir, tmp_path):
    folder = tmp_path / "plain"
    shutil.copytree(model_dir, folder)
    (folder / "training_args.json").unlink()
    config = json.loads((folder / "config.json").read_text())
    config["rgb_backbone_name_or_path"] = str(tmp_path)  # a local path is not a Hub id: no base_model
    (folder / "config.json").write_text(json.dumps(config))
    card = build_model_card(folder)
    data = card.data.to_dict()
    assert "model-index" not in data and "metrics" not in data and "base_model" not in data
    # The local backbone path is named by its last component only, in every section that mentions it.
    assert str(tmp_path) not in str(card) and f"`[local]/{tmp_path.name}`" in _section(card.text, "Licence")
    evaluation = _section(card.text, "Evaluation")
    assert "No evaluation results" in evaluation and not re.search(r"\d", evaluation)
    assert "no `training_args.json`" in _section(card.text, "Training")


@pytest.mark.parametrize(
    "architecture, pipeline_tag, auto_class",
    [
        ("VanishingDepthBackbone", "image-feature-extraction", "AutoBackbone"),
        ("VanishingDepthForPretraining", "image-feature-extraction", "AutoModel"),
        ("VanishingDepthForDepthEstimation", "depth-estimation", "AutoModelForDepthEstimation"),
        ("VanishingDepthForSemanticSegmentation", "image-segmentation", "AutoModelForSemanticSegmentation"),
        ("VanishingDepthForImageClassification", "image-classification", "AutoModelForImageClassification"),
    ],
)
def test_pipeline_tag_follows_the_architecture(model_dir, tmp_path, architecture, pipeline_tag, auto_class):
    folder = tmp_path / "head"
    folder.mkdir()
    config = json.loads((model_dir / "config.json").read_text())
    config["architectures"] = [architecture]
    config.pop("auto_map")  # no remote code in this folder: no custom_code tag
    (folder / "config.json").write_text(json.dumps(config))
    card = build_model_card(folder, repo_id="o/n")
    assert card.data.pipeline_tag == pipeline_tag
    assert "custom_code" not in card.data.tags
    assert f'{auto_class}.from_pretrained("o/n")' in card.text


def test_usage_snippet_runs(model_dir):
    text = build_model_card(model_dir).text
    snippet = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    # Without a repo id the snippet names a placeholder (never the folder's local path) and the card says so.
    assert snippet == usage_snippet("<your-org>/vd-tiny", "VanishingDepthModel") + "\n"
    assert "`<your-org>/vd-tiny` is a placeholder" in text and str(model_dir.parent) not in text
    snippet = snippet.replace("<your-org>/vd-tiny", str(model_dir))  # what the note tells a local user to do
    namespace: dict = {}
    exec(compile(snippet, "card-snippet", "exec"), namespace)
    assert len(namespace["outputs"].feature_maps) == 4
    assert namespace["inputs"]["depth_values"].shape[-2:] == namespace["inputs"]["pixel_values"].shape[-2:]


def test_usage_snippet_of_a_completion_model_runs(tmp_path):
    torch.manual_seed(0)
    model = VanishingDepthForDepthEstimation(tiny_config())
    model.save_pretrained(str(tmp_path))
    VanishingDepthImageProcessor.from_model_config(model.config, size={"shortest_edge": 56}).save_pretrained(
        str(tmp_path)
    )
    card = build_model_card(tmp_path)
    assert card.data.pipeline_tag == "depth-estimation"
    snippet = re.search(r"```python\n(.*?)```", card.text, flags=re.S).group(1)
    snippet = snippet.replace(f"<your-org>/{tmp_path.name}", str(tmp_path))
    namespace: dict = {}
    exec(compile(snippet, "card-snippet", "exec"), namespace)
    assert type(namespace["model"]) is VanishingDepthForDepthEstimation
    assert namespace["outputs"].predicted_depth.shape[-2:] == namespace["inputs"]["pixel_values"].shape[-2:]
    assert namespace["completed"].shape == (480, 640)


def test_bad_metrics_files_raise(tmp_path, model_dir):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"metric": 1}]))
    with pytest.raises(ValueError, match="results"):
        build_model_card(model_dir, metrics_files=[bad])
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_metrics_file(bad)
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_model_card(tmp_path)


def test_hub_id_rule(tmp_path):
    assert is_hub_id("facebook/dinov2-small")
    assert not is_hub_id("dinov2_vits14_pretrain.pth") and not is_hub_id("runs/x.safetensors")
    (tmp_path / "owner" / "name").mkdir(parents=True)
    assert not is_hub_id(str(tmp_path)) and not is_hub_id(None)


def test_cli_card_writes_readme(model_dir, metrics_file, tmp_path, capsys):
    folder = tmp_path / "cli"
    shutil.copytree(model_dir, folder)
    parser = argparse.ArgumentParser()
    add_card_subcommand(parser.add_subparsers())
    args = parser.parse_args(["card", "--model", str(folder), "--metrics", str(metrics_file), "--repo-id", "o/vd"])
    assert args.func(args) == 0
    assert "README.md" in capsys.readouterr().out
    card = ModelCard.load(folder / "README.md")
    assert len(card.data.eval_results) == len(COMPLETE) and 'from_pretrained("o/vd")' in card.text


def test_retargeted_card_is_the_card_built_for_the_repo(model_dir):
    """A card written at training time (no repo id) pointed at a repo equals the card built for that repo."""
    written = str(build_model_card(model_dir))
    assert card_is_ours(written) and not card_is_ours(written.replace("vd-tiny", "vd-small"))
    for repo_id in ("my-org/vd-tiny", "my-org/vd-renamed"):
        assert retarget_card(written, repo_id) == str(build_model_card(model_dir, repo_id=repo_id))
    with pytest.raises(ValueError, match="build_model_card"):
        retarget_card("# not ours\n", "my-org/vd-tiny")
    with pytest.raises(ValueError, match="repo_id"):
        build_model_card(model_dir, repo_id=str(model_dir))


def test_local_paths_are_found_and_redacted():
    text = "Trained on `/home/alice/data/nyu` and ~/runs/vd; see https://huggingface.co/facebook/dinov2-small, H/14."
    assert find_local_paths(text) == ["/home/alice/data/nyu", "~/runs/vd"]
    assert redact_local_paths(text) == (
        "Trained on `[local]/nyu` and [local]/vd; see https://huggingface.co/facebook/dinov2-small, H/14."
    )
    data = {"output_dir": "/tmp/x/run", "rgb": {"_name_or_path": "C:\\models\\dinov2"}, "note": "from /a/b/c.", "n": 3}
    assert redact_local_paths(data) == {
        "output_dir": "[local]/run",
        "rgb": {"_name_or_path": "[local]/dinov2"},
        "note": "from [local]/c.",
        "n": 3,
    }
    assert not find_local_paths("owner/name, (d − 5 m) / 5 m, http://127.0.0.1:8000/api/models, [local]/x")


def test_old_hub_cards_path_is_a_deprecated_alias_of_hub():
    import vanishing_depth.hub_cards as old
    from vanishing_depth import hub
    from vanishing_depth.hub import model_card, publish

    for name in ("build_model_card", "write_model_card", "push_model", "MetricEntry"):
        with pytest.warns(FutureWarning, match=f"hub_cards.{name}.*vanishing_depth.hub"):
            assert getattr(old, name) is getattr(hub, name)
    with pytest.warns(FutureWarning, match="vanishing_depth.hub.model_card"):
        from vanishing_depth.hub_cards import model_card as old_model_card
    assert old_model_card is model_card
    with pytest.warns(FutureWarning):
        assert old.publish is publish
    with pytest.raises(AttributeError, match="no_such_name"):
        old.no_such_name  # noqa: B018


def test_pretrain_command_writes_the_card_and_the_training_code_does_not(tmp_path, capsys):
    from conftest import tiny_pretraining_args
    from vanishing_depth.cli import main
    from vanishing_depth.data import save_corpus, synthetic_corpus
    from vanishing_depth.hub.model_card import card_is_ours
    from vanishing_depth.training.pretrain import pretrain

    corpus = tmp_path / "corpus"
    save_corpus(synthetic_corpus(6, 60, 80, seed=3, keep_in_memory=True), corpus, splits={"train": list(range(6))})
    steps = {"max_steps": 2, "checkpointing_steps": 2, "write_model_card": True}
    library = tiny_pretraining_args(tmp_path / "library", corpus, **steps)
    pretrain(library)
    assert (tmp_path / "library" / "config.json").is_file() and not (tmp_path / "library" / "README.md").exists()

    command = tiny_pretraining_args(tmp_path / "command", corpus, **steps)
    flags = []
    for key, value in vars(command).items():
        if value is not None:
            flags += [f"--{key.replace('_', '-')}", *map(str, value if isinstance(value, list) else [value])]
    assert main(["pretrain", *flags]) == 0
    assert "done: 2 steps" in capsys.readouterr().out
    card = (tmp_path / "command" / "README.md").read_text()
    assert card_is_ours(card) and "learning_rate" in card
    again = tiny_pretraining_args(tmp_path / "no-card", corpus, max_steps=2, checkpointing_steps=2)
    flags = [
        f"--{key}={value}" for key, value in vars(again).items() if value is not None and not isinstance(value, list)
    ]
    assert main(["pretrain", *flags, "--dataset", str(corpus)]) == 0
    assert not (tmp_path / "no-card" / "README.md").exists()  # --write_model_card False


def test_run_card_shows_the_pretraining_validation_and_curves_and_push_carries_them(model_dir, tmp_path):
    from vanishing_depth.evaluation.plots import plot_training_curves
    from vanishing_depth.hub import plan_model_upload, write_run_card
    from vanishing_depth.output_paths import write_json
    from vanishing_depth.training.pretrain import PretrainingArguments, validation_result_entries

    folder = tmp_path / "run"
    shutil.copytree(model_dir, folder)
    args = PretrainingArguments(
        output_dir=str(folder), validation_dataset="/data/me/held-out", image_size=56, max_steps=8
    )
    metrics = {f"val/{kind}_{suffix}": 0.25 for kind in ("si", "mae_m") for suffix in ("d0.1", "d0.5", "d0.9")}
    metrics.update({"val/si_auc": 0.2468, "val/mae_m_auc": 0.1357, "val/mae_m_d0.3": float("nan")})
    write_json(folder / "validation_results.json", {"results": validation_result_entries(args, metrics, frames=2)})
    plot_training_curves(
        [(step, 1.0 / step) for step in range(1, 9)],
        {"val/si_auc": [(4, 0.3), (8, 0.2468)]},
        folder / "training_curves.png",
    )
    card = write_run_card(folder, {"max_steps": 8}).read_text()
    assert "![Training loss per step and validation metrics over steps](training_curves.png)" in card
    data = ModelCard(card).data.to_dict()
    results = data["model-index"][0]["results"]
    values = {(m["type"], m.get("config")): m["value"] for result in results for m in result["metrics"]}
    assert values[("si", "auc")] == 0.2468 and values[("mae", "auc")] == 0.1357
    assert ("mae", "density_0.3") not in values and (
        "mae",
        "density_0.5",
    ) in values  # NaN (a density without data) is not reported
    validation = _section(card, "Evaluation")
    assert "Depth completion (pretraining validation): [local]/held-out (test split)" in validation
    assert "| MAE AUC over density | auc | 0.1357 | m |" in validation
    assert "/data/me" not in card
    plan = plan_model_upload(folder, tmp_path / "staging", repo_id="my-org/vd-tiny")
    assert "training_curves.png" in plan.files and "validation_results.json" in plan.files
