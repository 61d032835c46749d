"""Pretraining recipes: the official recipe holds the authors' values, the README table is the generated one, recipe
values fill unset arguments and explicit flags (or YAML keys) win, and a tiny `--recipe official` run works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT
from vanishing_depth.configuration_vanishing_depth import authors_fuse_cls_token
from vanishing_depth.training.recipes import (
    LIBRARY,
    OFFICIAL,
    README_TABLE_END,
    README_TABLE_START,
    RECIPES,
    get_recipe,
    recipe_field_names,
    recipe_table,
)

TINY_MODEL = json.dumps(
    {
        "rgb_config": {"hidden_size": 32, "num_attention_heads": 2},
        "pde_channels": 16,
        "se_reduction": 4,
        "decoder_channels": [16, 16, 8, 8],
    }
)


def test_official_recipe_holds_the_values_of_the_authors_code():
    # main.py defaults (epochs 100, samples_per_epoch 200k, batch 128, train_size 224, lr = lr_decoder = 1e-5,
    # AdamW without weight decay, OneCycle 0.2 / 5 / 100, no clipping, float32), the curriculum of main.py and
    # datasets/representation_dataset.py (0.3 -> 0.5, sigma 0.1 -> 0.5 at runtime, 10 + 10 epochs, t in [0.1, 0.99]).
    assert OFFICIAL.values() == {
        "image_size": 224,
        "crop_mode": "pad",
        "crop_scale_min": 0.08,
        "color_augmentation": True,
        "flip_probability": 0.5,
        "depth_randomization": True,
        "random_depth_jitter": "authors",
        "depth_noise": True,
        "mask_mean_start": 0.3,
        "mask_mean_end": 0.5,
        "mask_std_start": 0.1,
        "mask_std_end": 0.5,
        "mask_min_fraction": 0.1,
        "mask_max_fraction": 0.99,
        "curriculum_clock": "epochs",
        "mask_warmup_epochs": 10.0,
        "mask_curriculum_epochs": 10.0,
        "mask_warmup_fraction": 0.1,
        "mask_ramp_fraction": 0.1,
        "fuse_cls_token": "auto",
        "decoder_skips": "raw",
        "depth_patch_embedding_init": "pytorch_default",
        "loss_pooling": "batch",
        "position_interpolation": "dinov2",
        "pde_missing_depth_m": 1e-6,
        "pde_float_order": "authors",
        "per_device_batch_size": 128,
        "max_steps": 100 * 1563,  # ceil(200,000 / 128) = 1,563 steps per epoch (drop_last=False)
        "samples_per_epoch": 200_000,
        "learning_rate": 1e-5,
        "decoder_learning_rate": 1e-5,
        "weight_decay": 0.0,
        "pct_start": 0.2,
        "div_factor": 5.0,
        "final_div_factor": 100.0,
        "max_grad_norm": 0.0,
        "mixed_precision": "no",
    }
    # The two clocks agree on the official run: 10 + 10 of its 100 epochs.
    epochs = OFFICIAL.max_steps * OFFICIAL.per_device_batch_size / OFFICIAL.samples_per_epoch
    assert OFFICIAL.mask_warmup_fraction * epochs == pytest.approx(OFFICIAL.mask_warmup_epochs, rel=1e-3)
    assert OFFICIAL.mask_ramp_fraction * epochs == pytest.approx(OFFICIAL.mask_curriculum_epochs, rel=1e-3)


def test_authors_fuse_the_cls_token_for_vit_s_only():
    assert authors_fuse_cls_token(384) is True  # V2-small: fuse_cls_tolken=True
    assert authors_fuse_cls_token(768) is False  # V2-base: the default False
    assert authors_fuse_cls_token(1024) is False


def test_every_library_departure_has_a_reason_and_no_equal_value_has_one():
    differing = {name for name in recipe_field_names() if getattr(OFFICIAL, name) != getattr(LIBRARY, name)}
    assert differing == set(LIBRARY.reasons)
    assert {"crop_mode", "decoder_skips", "depth_patch_embedding_init", "loss_pooling", "max_grad_norm"} <= differing
    assert all(reason.strip() and "\n" not in reason for reason in LIBRARY.reasons.values())
    assert set(RECIPES) == {"official", "library"}
    with pytest.raises(ValueError, match="`recipe` must be one of"):
        get_recipe("paper")


def test_readme_holds_the_generated_recipe_table():
    readme = (REPO_ROOT / "README.md").read_text()
    assert readme.count(README_TABLE_START) == 1 and readme.count(README_TABLE_END) == 1
    between = readme.split(README_TABLE_START)[1].split(README_TABLE_END)[0]
    assert between.strip() == recipe_table(), (
        "README recipe table is stale: regenerate it with `python -m vanishing_depth.training.recipes`"
    )
    # every choice is a row, with its flag
    for name in recipe_field_names():
        assert f"`--{name.replace('_', '-')}`" in between


def test_recipe_fills_unset_arguments_and_explicit_flags_win(tmp_path):
    from vanishing_depth.cli.pretrain import parse_arguments
    from vanishing_depth.training.pretrain import PretrainingArguments

    library = parse_arguments(["--output-dir", str(tmp_path / "a")])
    assert library.recipe == "library"
    assert {name: getattr(library, name) for name in recipe_field_names()} == LIBRARY.values()

    official = parse_arguments(["--recipe", "official", "--output-dir", str(tmp_path / "b")])
    assert {name: getattr(official, name) for name in recipe_field_names()} == OFFICIAL.values()

    overridden = parse_arguments(
        ["--recipe", "official", "--decoder-learning-rate", "3e-4", "--crop-mode", "stretch", "--mask-std-end", "0.3"]
    )
    assert (overridden.decoder_learning_rate, overridden.crop_mode, overridden.mask_std_end) == (3e-4, "stretch", 0.3)
    assert overridden.decoder_skips == "raw" and overridden.max_grad_norm == 0.0  # the rest stays official

    # A flag equal to the other recipe's value still counts as given.
    explicit = parse_arguments(["--recipe", "official", "--max-grad-norm", "1.0", "--color-augmentation", "false"])
    assert explicit.max_grad_norm == 1.0 and explicit.color_augmentation is False

    # YAML: its keys beat the recipe, flags beat the YAML (the recipe too may come from either).
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"recipe": "official", "max_steps": 7, "crop_mode": "stretch"}))
    from_file = parse_arguments(["--config", str(config)])
    assert (from_file.recipe, from_file.max_steps, from_file.crop_mode, from_file.decoder_skips) == (
        "official",
        7,
        "stretch",
        "raw",
    )
    switched = parse_arguments(["--config", str(config), "--recipe", "library", "--max-steps", "9"])
    assert (switched.recipe, switched.max_steps, switched.crop_mode, switched.decoder_skips) == (
        "library",
        9,
        "stretch",
        "lateral",
    )

    # The dataclass resolves the same way in code.
    assert PretrainingArguments(recipe="official", max_steps=3).per_device_batch_size == 128
    with pytest.raises(ValueError, match="`recipe` must be one of"):
        PretrainingArguments(recipe="paper")
    with pytest.raises(ValueError, match="`crop_mode`"):
        PretrainingArguments(crop_mode="letterbox")


def test_a_two_step_official_run_on_the_demo_corpus(tmp_path):
    from vanishing_depth.modeling_vanishing_depth import VanishingDepthForPretraining
    from vanishing_depth.training.pretrain import PretrainingArguments, pretrain

    args = PretrainingArguments(
        recipe="official",
        output_dir=str(tmp_path / "run"),
        model_shape="tiny",
        config_overrides=TINY_MODEL,
        dataset=["redwood_demo"],
        image_size=56,
        per_device_batch_size=2,
        max_steps=2,
        checkpointing_steps=2,
        logging_steps=1,
        report_to="none",
        write_model_card=False,
    )
    summary = pretrain(args)
    assert summary["steps"] == 2 and all(entry["loss"] == entry["loss"] for entry in summary["history"])
    saved = json.loads((Path(args.output_dir) / "training_args.json").read_text())
    assert saved["recipe"] == "official" and saved["crop_mode"] == "pad" and saved["max_grad_norm"] == 0.0
    model = VanishingDepthForPretraining.from_pretrained(Path(args.output_dir) / "pretraining")
    config = model.config
    assert (config.decoder_skips, config.depth_patch_embedding_init, config.loss_pooling) == (
        "raw",
        "pytorch_default",
        "batch",
    )
    assert (config.position_interpolation, config.pde_missing_depth_m, config.pde_float_order) == (
        "dinov2",
        1e-6,
        "authors",
    )
    assert config.fuse_cls_token is False  # "auto" at width 32 (the authors fuse it for ViT-S only)
    records = [json.loads(line) for line in (Path(args.output_dir) / "training_log.jsonl").read_text().splitlines()]
    steps = [record for record in records if "loss" in record and "step" in record]
    # The epochs clock of the official recipe: 4 samples are far inside the 10-epoch warm-up.
    assert [(record["mask_mean"], record["mask_std"]) for record in steps] == [(0.3, 0.1), (0.3, 0.1)]
