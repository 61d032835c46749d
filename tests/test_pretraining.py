"""Pretraining: the model and decoder, the Accelerate loop, exact resume, the 2-process launch, saved folders."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoImageProcessor, AutoModel

import vanishing_depth  # noqa: F401  (registers the Auto classes)
from conftest import random_rgbd, tiny_config, tiny_pretraining_args
from vanishing_depth import VanishingDepthModel
from vanishing_depth.cli.pretrain import parse_arguments
from vanishing_depth.modeling_vanishing_depth import VanishingDepthForPretraining
from vanishing_depth.training.pretrain import PretrainingArguments, pretrain


@pytest.fixture(scope="module")
def synthetic_corpus_dir(tmp_path_factory):
    from vanishing_depth.data import save_corpus, synthetic_corpus

    folder = tmp_path_factory.mktemp("corpus")
    dataset = synthetic_corpus(num_frames=12, height=60, width=80, seed=3, keep_in_memory=True)
    save_corpus(dataset, folder, splits={"train": list(range(10)), "test": [10, 11]})
    return folder


def _args(tmp_path, corpus, **overrides) -> PretrainingArguments:
    return tiny_pretraining_args(tmp_path / "run", corpus, **overrides)


def test_pretraining_model_shapes_and_loss():
    model = VanishingDepthForPretraining(tiny_config(decoder_channels=[16, 16, 8, 8])).train()
    rgb, depth = random_rgbd(batch=2, height=56, width=70)
    sparse = depth.clone()
    sparse[..., :28, :] = 0
    out = model(pixel_values=rgb, depth_values=sparse, target_depth=depth)
    assert [tuple(p.shape) for p in out.predicted_depth] == [
        (2, 1, 56, 70),
        (2, 1, 28, 35),
        (2, 1, 14, 18),
        (2, 1, 7, 9),
    ]
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is None for p in model.vanishing_depth.rgb_encoder.parameters())
    assert model.decoder.heads[0].weight.grad is not None


def test_decode_dist_output_is_metric_and_starts_at_plausible_depth():
    model = VanishingDepthForPretraining(tiny_config(decoder_channels=[16, 16, 8, 8])).eval()
    rgb, depth = random_rgbd(batch=1)
    prediction = model(pixel_values=rgb, depth_values=depth).predicted_depth[0]
    assert (prediction >= 0).all() and prediction.dtype == torch.float32
    # A new head predicts metres inside the loss's > 1 mm range (no dead ReLU), around 2.5 m.
    assert 0.5 < prediction.median().item() < 10.0


def test_pretraining_model_needs_four_fusion_layers():
    with pytest.raises(ValueError, match="fusion_layers"):
        VanishingDepthForPretraining(tiny_config(fusion_layers=[1, 3]))


def test_save_encoder_loads_with_auto_model(tmp_path):
    model = VanishingDepthForPretraining(tiny_config(decoder_channels=[16, 16, 8, 8])).eval()
    model.save_encoder(tmp_path / "encoder")
    model.save_pretrained(tmp_path / "full")
    encoder = AutoModel.from_pretrained(tmp_path / "encoder")
    assert isinstance(encoder, VanishingDepthModel)
    rgb, depth = random_rgbd()
    expected = model.vanishing_depth(pixel_values=rgb, depth_values=depth).last_hidden_state
    assert torch.equal(encoder(pixel_values=rgb, depth_values=depth).last_hidden_state, expected)
    full = VanishingDepthForPretraining.from_pretrained(tmp_path / "full")
    assert torch.equal(
        full(pixel_values=rgb, depth_values=depth).predicted_depth[0],
        model(pixel_values=rgb, depth_values=depth).predicted_depth[0],
    )


def test_a_few_steps_lower_the_loss_and_save_loadable_folders(tmp_path, synthetic_corpus_dir):
    args = _args(
        tmp_path,
        synthetic_corpus_dir,
        max_steps=30,
        checkpointing_steps=30,
        validation_steps=30,
        validation_dataset=str(synthetic_corpus_dir),
        validation_frames=2,
    )
    summary = pretrain(args)
    losses = [entry["loss"] for entry in summary["history"]]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert "val/si_auc" in summary["validation"] and "val/mae_m_auc" in summary["validation"]
    run = tmp_path / "run"
    encoder = AutoModel.from_pretrained(run)
    processor = AutoImageProcessor.from_pretrained(run)
    assert isinstance(encoder, VanishingDepthModel) and processor.patch_size == 14
    assert isinstance(VanishingDepthForPretraining.from_pretrained(run / "pretraining"), VanishingDepthForPretraining)
    log = [json.loads(line) for line in (run / "training_log.jsonl").read_text().splitlines()]
    assert any("val/si_auc" in entry for entry in log) and any("loss" in entry for entry in log)
    assert (run / "validation_set.safetensors").is_file()
    # The loss and validation curves beside the log, a valid PNG (matplotlib's own reader decodes it)
    from matplotlib.image import imread

    assert (run / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(run / "training_curves.png").ndim == 3
    # The depth share of every fusion layer at every logging step, a share in (0, 1)
    fusion_layers = encoder.config.fusion_layers
    steps_logged = [entry for entry in log if "loss" in entry]
    for entry in steps_logged:
        shares = [entry[f"depth_share/block_{layer}"] for layer in fusion_layers]
        assert all(0.0 < share < 1.0 for share in shares), entry
    # The last validation in the model-card metrics format, and in the run's card (numbers and curves)
    from vanishing_depth.hub import read_metrics_file, write_run_card

    entries = read_metrics_file(run / "validation_results.json")
    auc = next(e for e in entries if e.metric_type == "si" and e.metric_config == "auc")
    assert auc.metric_value == summary["validation"]["val/si_auc"]
    card = write_run_card(run, dataclasses.asdict(args)).read_text()
    assert "Depth completion (pretraining validation)" in card and "![" in card and "(training_curves.png)" in card
    assert repr(auc.metric_value) in card or f"{auc.metric_value}" in card
    # The fraction clock (library recipe): warm-up over the first 10 % of the run, the ramp over the next 10 %, so
    # this 30-step run (120 samples; 7.5 "epochs" of 16) trains most of its steps at the curriculum's end.
    curriculum = [(entry["mask_mean"], entry["mask_std"]) for entry in log if "mask_mean" in entry]
    assert len(curriculum) == 30 and curriculum[0] == (0.3, 0.1)
    assert curriculum[-1] == pytest.approx((0.5, 0.3)) and curriculum[6] == pytest.approx((0.5, 0.3))


def test_depth_share_probe_records_only_inside_recording():
    from accelerate import Accelerator

    from vanishing_depth.training.pretrain import _DepthShareProbe

    model = VanishingDepthForPretraining(tiny_config(decoder_channels=[16, 16, 8, 8])).eval()
    encoder = model.vanishing_depth
    rgb, depth = random_rgbd(batch=2)
    probe = _DepthShareProbe(encoder)
    model(pixel_values=rgb, depth_values=depth)  # outside `recording`: nothing recorded, no hook left behind
    assert probe.take(Accelerator(cpu=True)) == {}
    with probe.recording():
        model(pixel_values=rgb, depth_values=depth)
    assert all(not fusion._forward_hooks for fusion in encoder.fusions)
    shares = probe.take(Accelerator(cpu=True))
    # The same share from the tokens each fusion received (`VanishingDepthFusion.depth_share`)
    layers = encoder.config.fusion_layers
    with torch.no_grad():
        streams = encoder.forward_streams(pixel_values=rgb, depth_values=depth, feature_layers=layers)
    assert list(shares) == [f"depth_share/block_{layer}" for layer in layers]
    for index, layer in enumerate(layers):
        expected = encoder.fusions[index].depth_share(streams.depth_pre_fusion[layer], streams.rgb[layer])
        assert 0.0 < shares[f"depth_share/block_{layer}"] < 1.0
        assert shares[f"depth_share/block_{layer}"] == pytest.approx(float(expected), rel=1e-5)
    assert probe.take(Accelerator(cpu=True)) == {}  # taken: the next logging step starts afresh


def test_resume_equals_uninterrupted_run(tmp_path, synthetic_corpus_dir):
    full = pretrain(_args(tmp_path / "a", synthetic_corpus_dir, max_steps=6, checkpointing_steps=3))
    checkpoint = tmp_path / "a" / "run" / "checkpoints" / "step-3"
    assert checkpoint.is_dir() and (tmp_path / "a" / "run" / "checkpoints" / "latest").exists()
    resumed = pretrain(
        _args(tmp_path / "b", synthetic_corpus_dir, max_steps=6, checkpointing_steps=3, resume=str(checkpoint))
    )
    assert [e["step"] for e in resumed["history"]] == [1, 2, 3, 4, 5, 6]
    assert [e["loss"] for e in resumed["history"]] == [e["loss"] for e in full["history"]]
    # The weights too, bit for bit (model, and the optimizer state the last checkpoint holds).
    from safetensors.torch import load_file

    for name in ("pretraining/model.safetensors", "checkpoints/step-6/optimizer.safetensors"):
        expected, got = load_file(tmp_path / "a" / "run" / name), load_file(tmp_path / "b" / "run" / name)
        assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected), name


def test_curriculum_clocks_and_the_warning_of_a_curriculum_that_never_starts(tmp_path, synthetic_corpus_dir, caplog):
    from vanishing_depth.training.pretrain import PretrainingBatchAssembler, curriculum_warning

    # fraction clock: 10 steps x 4 frames = 40 samples; warm-up the first 4, the ramp the next 4, whatever the epoch.
    args = _args(tmp_path, synthetic_corpus_dir, max_steps=10, samples_per_epoch=200_000)
    one = PretrainingBatchAssembler(args, world_size=1)
    assert one.curriculum_at(0) == (0.3, 0.1) and one.curriculum_at(1) == pytest.approx((0.3, 0.1))
    assert one.curriculum_at(2) == pytest.approx((0.5, 0.3)) and one.curriculum_at(9) == pytest.approx((0.5, 0.3))
    assert curriculum_warning(args, world_size=1) is None
    # Shares of the run are shares of its steps: two processes (twice the samples per step) follow the same steps.
    two = PretrainingBatchAssembler(args, world_size=2)
    for step in range(10):
        assert two.curriculum_at(step) == pytest.approx(one.curriculum_at(step))

    # epochs clock: 40 samples never leave a warm-up of 10 epochs x 200,000 samples.
    epochs = _args(tmp_path, synthetic_corpus_dir, max_steps=10, samples_per_epoch=200_000, curriculum_clock="epochs")
    assert PretrainingBatchAssembler(epochs, world_size=1).curriculum_at(9) == (0.3, 0.1)
    warning = curriculum_warning(epochs, world_size=1)
    assert "never starts" in warning and "2,000,000 samples" in warning and "draws 40" in warning
    assert "--curriculum-clock fraction" in warning
    # ... and the run says so at start-up.
    short = _args(tmp_path, synthetic_corpus_dir, max_steps=1, samples_per_epoch=200_000, curriculum_clock="epochs")
    with caplog.at_level(logging.WARNING, logger="vanishing_depth.training.pretrain"):
        pretrain(short)
    assert any("never starts" in record.getMessage() for record in caplog.records)
    # An epochs clock short enough to start gives no warning.
    assert curriculum_warning(dataclasses.replace(epochs, mask_warmup_epochs=2.0, samples_per_epoch=16), 1) is None
    with pytest.raises(ValueError, match="mask_warmup_fraction"):
        _args(tmp_path, synthetic_corpus_dir, mask_warmup_fraction=0.6, mask_ramp_fraction=0.6)
    with pytest.raises(ValueError, match="curriculum_clock"):
        _args(tmp_path, synthetic_corpus_dir, curriculum_clock="steps")


def test_decoder_skip_and_patch_embedding_options(tmp_path):
    import math

    rgb, depth = random_rgbd(batch=2, height=56, width=42)
    raw = VanishingDepthForPretraining(tiny_config(decoder_skips="raw", decoder_channels=[16, 16, 8, 8])).train()
    out = raw(pixel_values=rgb, depth_values=depth, target_depth=depth)
    assert [tuple(p.shape) for p in out.predicted_depth] == [
        (2, 1, 56, 42),
        (2, 1, 28, 21),
        (2, 1, 14, 11),
        (2, 1, 7, 6),
    ]
    out.loss.backward()
    hidden = raw.config.hidden_size  # the raw D-channel maps enter the U-Net as they are (authors' model/decoder.py)
    assert raw.decoder.blocks[0].conv1[0].in_channels == hidden + hidden
    assert raw.decoder.blocks[3].conv1[0].in_channels == 8
    assert not any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) for m in raw.decoder.modules())
    lateral = VanishingDepthForPretraining(tiny_config(decoder_channels=[16, 16, 8, 8]))
    assert lateral.decoder.blocks[0].conv1[0].in_channels == 16 + 16
    with pytest.raises(ValueError, match="decoder_skips"):
        tiny_config(decoder_skips="dense")

    def projection(model):
        return model.vanishing_depth.depth_encoder.embeddings.patch_embeddings.projection

    torch.manual_seed(0)
    default = projection(VanishingDepthForPretraining(tiny_config()))
    torch.manual_seed(0)
    model = VanishingDepthForPretraining(tiny_config(depth_patch_embedding_init="pytorch_default"))
    authors = projection(model)
    fan_in = authors.weight[0].numel()  # 16 PDE channels x 14 x 14
    assert default.weight.std().item() == pytest.approx(0.02, rel=0.05) and bool((default.bias == 0).all())
    # nn.Conv2d's own init: U(+-1/sqrt(fan_in)) for the weight (std 1/sqrt(3 fan_in)) and the bias
    assert authors.weight.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.05)
    assert authors.weight.abs().max().item() <= 1 / math.sqrt(fan_in)
    assert 0 < authors.bias.abs().max().item() <= 1 / math.sqrt(fan_in)
    # Saved and loaded, the weights are the saved ones (the init does not run over loaded tensors).
    model.save_pretrained(tmp_path / "authors-init")
    loaded = projection(VanishingDepthForPretraining.from_pretrained(tmp_path / "authors-init"))
    assert torch.equal(loaded.weight, authors.weight) and torch.equal(loaded.bias, authors.bias)
    with pytest.raises(ValueError, match="depth_patch_embedding_init"):
        tiny_config(depth_patch_embedding_init="xavier")


def test_fresh_pretraining_fuses_the_cls_token_as_the_converter_does(tmp_path, synthetic_corpus_dir):
    from vanishing_depth.configuration_vanishing_depth import authors_fuse_cls_token
    from vanishing_depth.training.pretrain import build_model, resolve_fuse_cls_token

    # "auto" (both recipes) is the authors' rule, the one the converter applies to their checkpoints: ViT-S fuses the
    # CLS token (main.py builds V2-small with fuse_cls_tolken=True), ViT-B does not.
    assert resolve_fuse_cls_token("auto", 384) is True and resolve_fuse_cls_token("auto", 768) is False
    assert resolve_fuse_cls_token("auto", 384) == authors_fuse_cls_token(384)
    assert resolve_fuse_cls_token("true", 768) is True and resolve_fuse_cls_token("false", 384) is False
    assert build_model(_args(tmp_path, synthetic_corpus_dir)).config.fuse_cls_token is False  # width 32
    assert build_model(_args(tmp_path, synthetic_corpus_dir, fuse_cls_token="true")).config.fuse_cls_token is True
    with pytest.raises(ValueError, match="--fuse-cls-token"):
        build_model(_args(tmp_path, synthetic_corpus_dir, config_overrides=json.dumps({"fuse_cls_token": True})))


def test_arguments_from_yaml_with_flag_override(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("output_dir: from-yaml\nmax_steps: 77\nimage_size: 112\ndataset:\n  - a\n  - b\n")
    args = parse_arguments(["--config", str(config), "--max_steps", "5"])
    assert args.output_dir == "from-yaml" and args.max_steps == 5 and args.image_size == 112
    assert args.dataset == ["a", "b"]
    with pytest.raises(ValueError, match="image_size"):
        PretrainingArguments(image_size=0)


def test_image_size_must_fit_the_models_patch_size(tmp_path, synthetic_corpus_dir):
    from vanishing_depth.training.pretrain import build_model

    # The crop is checked against the patch size of the model actually built, not a fixed 14 px.
    with pytest.raises(ValueError, match="patch size 14 px, got 100"):
        build_model(_args(tmp_path, synthetic_corpus_dir, image_size=100))
    sixteen = json.dumps(
        {
            "rgb_config": {"hidden_size": 32, "num_attention_heads": 2, "patch_size": 16},
            "decoder_channels": [8, 8, 8, 8],
        }
    )
    assert (
        build_model(_args(tmp_path, synthetic_corpus_dir, image_size=64, config_overrides=sixteen)).config.patch_size
        == 16
    )


def test_random_init_backbone_of_another_family(tmp_path, synthetic_corpus_dir):
    from vanishing_depth.training.pretrain import build_model, random_init_rgb_config

    narrow = {"hidden_size": 32, "num_attention_heads": 2}
    assert random_init_rgb_config("tiny", 56).model_type == "dinov2"
    assert random_init_rgb_config("tiny", 56).patch_size == 14
    rope = random_init_rgb_config("tiny", 64, {"model_type": "dinov3_vit", **narrow})
    assert rope.model_type == "dinov3_vit" and rope.patch_size == 16  # the family's own patch
    assert rope.intermediate_size == 128 and rope.num_hidden_layers == 4  # the shape, MLP 4x as in DINOv2
    with pytest.raises(ValueError, match="model_type"):
        random_init_rgb_config("tiny", 56, {"model_type": "bert"})
    overrides = {
        "rgb_config": {"model_type": "dinov3_vit", "patch_size": 8, "pos_embed_rescale": None, **narrow},
        "pde_channels": 16,
        "decoder_channels": [8, 8, 8, 8],
        "depth_patch_normalization": "valid_mean",
    }
    model = build_model(_args(tmp_path, synthetic_corpus_dir, config_overrides=json.dumps(overrides))).train()
    assert type(model.vanishing_depth.rgb_encoder).__name__ == "DINOv3ViTModel"
    rgb, depth = random_rgbd(batch=2, height=56, width=64)
    out = model(pixel_values=rgb, depth_values=depth * (torch.rand_like(depth) < 0.05), target_depth=depth)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert model.vanishing_depth.depth_encoder.embeddings.patch_embeddings.weight.grad.abs().sum() > 0


def test_mimetic_attention_init(tmp_path, synthetic_corpus_dir):
    from vanishing_depth.training.pretrain import build_model

    for bad in ({"random_init_attention": "orthogonal"}, {"random_init_attention": "mimetic", "rgb_backbone": "x"}):
        with pytest.raises(ValueError, match="random_init_attention"):
            _args(tmp_path, synthetic_corpus_dir, **bad)
    plain = build_model(_args(tmp_path, synthetic_corpus_dir))
    mimetic = build_model(_args(tmp_path, synthetic_corpus_dir, random_init_attention="mimetic"))
    again = build_model(_args(tmp_path, synthetic_corpus_dir, random_init_attention="mimetic"))
    for model in (plain, mimetic):
        block = model.vanishing_depth.depth_encoder.encoder.layer[0].attention
        head = slice(0, 16)  # width 32, 2 heads
        qk = block.q_proj.weight[head].T @ block.k_proj.weight[head]  # (32, 32): x^T (W_q^T W_k) y per head
        vo = block.o_proj.weight @ block.v_proj.weight
        if model is plain:  # transformers' init: no structure
            assert qk.diagonal().mean().abs() < 0.01
        else:  # a token attends to tokens like itself, and its value path starts as a negative identity
            assert qk.diagonal().mean() > 0.3 and qk.diagonal().mean() > 5 * qk.fill_diagonal_(0).abs().mean()
            assert vo.diagonal().mean() < -0.3
    same = [torch.equal(a, b) for a, b in zip(mimetic.state_dict().values(), again.state_dict().values())]
    assert all(same)  # seeded
    assert not torch.equal(
        plain.state_dict()[next(k for k in plain.state_dict() if "q_proj.weight" in k)],
        mimetic.state_dict()[next(k for k in mimetic.state_dict() if "q_proj.weight" in k)],
    )
    rgb, depth = random_rgbd(batch=2, height=56, width=56)
    assert torch.isfinite(mimetic(pixel_values=rgb, depth_values=depth, target_depth=depth).loss)


def test_corrupt_and_sparse_rows_are_skipped_and_counted(tmp_path, synthetic_corpus_dir):
    from datasets import Image as ImageFeature

    from vanishing_depth.data import load_corpus, save_corpus

    dataset = load_corpus(synthetic_corpus_dir, split="train")
    dataset = dataset.cast_column("image", ImageFeature(decode=False)).cast_column("depth", ImageFeature(decode=False))
    rows = [dataset[i] for i in range(len(dataset))]
    rows[0]["image"] = {"bytes": b"not an image", "path": None}
    empty = rows[1]["depth"]
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((60, 80), dtype=np.uint16)).save(buffer, format="PNG")
    rows[1]["depth"] = {"bytes": buffer.getvalue(), "path": empty.get("path")}
    from datasets import Dataset

    broken = Dataset.from_list(rows, features=dataset.features)
    folder = tmp_path / "broken"
    save_corpus(broken, folder, splits={"train": list(range(len(broken)))})
    summary = pretrain(_args(tmp_path, folder, max_steps=6, per_device_batch_size=6))
    log = [json.loads(line) for line in (tmp_path / "run" / "training_log.jsonl").read_text().splitlines()]
    assert summary["steps"] == 6
    steps = [record for record in log if "loss" in record]
    assert steps[-1]["skipped"]["unreadable_image"] == 1 and steps[-1]["skipped"]["too_few_valid"] == 1
    assert summary["rows"]["training"]["skipped"] == steps[-1]["skipped"] == log[-1]["skipped"]


def test_two_process_cpu_launch(tmp_path, synthetic_corpus_dir):
    args = _args(tmp_path, synthetic_corpus_dir, max_steps=3, checkpointing_steps=3, debug=True)  # fingerprints
    flags = []
    for key, value in vars(args).items():
        if value is None:
            continue
        if isinstance(value, list):
            flags += [f"--{key}", *map(str, value)]
        else:
            flags += [f"--{key}", str(value)]
    # DDP over gloo on CPU: `accelerate launch --cpu` alone needs MPI for several processes, so the torchrun-based
    # launcher is used with ACCELERATE_USE_CPU=1 (the README documents this command).
    env = dict(os.environ, OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "vanishing_depth.cli",
        "pretrain",
        *flags,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "run"
    records = [json.loads((run / f"process_{rank}_of_2.json").read_text()) for rank in (0, 1)]
    assert records[0]["data_fingerprints"] != records[1]["data_fingerprints"]  # each process reads its own data
    assert records[0]["weights_checksum"] == records[1]["weights_checksum"]  # DDP keeps the replicas identical
    assert isinstance(AutoModel.from_pretrained(run), VanishingDepthModel)


def test_streaming_corpora_train_and_resume(tmp_path, synthetic_corpus_dir):
    full = pretrain(
        _args(
            tmp_path / "a",
            synthetic_corpus_dir,
            streaming=True,
            max_steps=4,
            checkpointing_steps=2,
            per_device_batch_size=2,
        )
    )
    assert full["steps"] == 4 and all(torch.isfinite(torch.tensor(e["loss"])) for e in full["history"])
    resumed = pretrain(
        _args(
            tmp_path / "b",
            synthetic_corpus_dir,
            streaming=True,
            max_steps=4,
            checkpointing_steps=2,
            per_device_batch_size=2,
            resume=str(tmp_path / "a" / "run" / "checkpoints" / "step-2"),
        )
    )
    # The stream is re-read and the consumed rows skipped, so the continuation matches the uninterrupted run.
    assert [e["loss"] for e in resumed["history"]] == [e["loss"] for e in full["history"]]


FSDP_SCRIPT = """
import sys
import torch
import torch.distributed as dist
from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel as FSDP, StateDictType
from torch.distributed.fsdp.wrap import ModuleWrapPolicy
from transformers.models.dinov2.modeling_dinov2 import Dinov2Layer

sys.path.insert(0, sys.argv[1])
from conftest import random_rgbd, tiny_config
from vanishing_depth.modeling_vanishing_depth import VanishingDepthForPretraining

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = VanishingDepthForPretraining(tiny_config(decoder_channels=[16, 16, 8, 8]))
before = {k: v.clone() for k, v in model.state_dict().items()}
# The README's FSDP set-up: every ViT block (RGB and depth streams) its own unit, use_orig_params for the mixed
# frozen (RGB) and trainable (depth, fusion, decoder) parameters of the root unit.
sharded = FSDP(
    model, auto_wrap_policy=ModuleWrapPolicy({Dinov2Layer}), use_orig_params=True, device_id=torch.device("cpu")
)
optimizer = torch.optim.AdamW([p for p in sharded.parameters() if p.requires_grad], lr=1e-3)
rgb, depth = random_rgbd(batch=2)
generator = torch.Generator().manual_seed(rank)  # each process its own masks
for _ in range(2):
    sparse = depth * (torch.rand(depth.shape, generator=generator) > 0.5)
    loss = sharded(pixel_values=rgb, depth_values=sparse, target_depth=depth).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
with FSDP.state_dict_type(sharded, StateDictType.FULL_STATE_DICT, FullStateDictConfig(rank0_only=True)):
    after = sharded.state_dict()
if rank == 0:
    rgb_keys = [k for k in before if k.startswith("vanishing_depth.rgb_encoder.")]
    depth_keys = [k for k in before if k.startswith("vanishing_depth.depth_encoder.encoder.")]
    assert rgb_keys and depth_keys and set(after) == set(before)
    assert all(torch.equal(after[k], before[k]) for k in rgb_keys), "the frozen RGB stream changed"
    assert any(not torch.equal(after[k], before[k]) for k in depth_keys), "the depth stream did not train"
    print("fsdp ok", float(loss))
dist.destroy_process_group()
"""


def test_fsdp_wrapping_of_the_readme_trains_the_depth_stream_on_two_cpu_processes(tmp_path):
    """The FSDP set-up the README documents (ViT blocks as units, use_orig_params), two processes over gloo."""
    script = tmp_path / "fsdp_step.py"
    script.write_text(FSDP_SCRIPT)
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        tests,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0 and "fsdp ok" in result.stdout, result.stderr[-4000:]
