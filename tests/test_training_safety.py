"""Pretraining must not lose, leak or hide data: a second run in a folder, pickled checkpoints, resume with changed
arguments, bad rows (training and validation), damaged checkpoint files, and strict JSON in every file a run writes.
Each test first reproduces what went wrong before (see the issue) and then checks the fix. Tiny runs: 28 px, batch 2."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image as PILImage

import vanishing_depth  # noqa: F401  (registers the Auto classes)
from conftest import tiny_pretraining_args
from vanishing_depth.data import (
    RGBD_CORPUS_FEATURES,
    RGBDSampleDecoder,
    load_corpus,
    render_synthetic_scene,
    save_corpus,
    synthetic_corpus,
)
from vanishing_depth.output_paths import OutputExistsError
from vanishing_depth.training import pretrain as pretrain_module
from vanishing_depth.training.checkpoints import pickle_files
from vanishing_depth.training.pretrain import PretrainingArguments, pretrain

H, W = 42, 56


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    dataset = synthetic_corpus(num_frames=8, height=H, width=W, seed=5, keep_in_memory=True)
    save_corpus(dataset, folder, splits={"train": list(range(6)), "test": [6, 7]})
    return folder


def _args(folder: Path, corpus, **overrides) -> PretrainingArguments:
    settings = dict(image_size=28, per_device_batch_size=2, max_steps=2, min_valid_pixels=50, checkpointing_steps=1)
    return tiny_pretraining_args(folder / "run", corpus, **{**settings, **overrides})


def _reject_constant(token):
    raise ValueError(f"not strict JSON: bare {token}")


def _strict_loads(text: str):
    return json.loads(text, parse_constant=_reject_constant)


def _log(run: Path) -> list[dict]:
    return [_strict_loads(line) for line in (run / "training_log.jsonl").read_text().splitlines()]


def _assert_strict_json_tree(folder: Path) -> int:
    """Every .json / .jsonl file under `folder` parses with a parser that rejects NaN / Infinity."""
    count = 0
    for path in sorted(folder.rglob("*.json*")):
        if path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                _strict_loads(line)
        elif path.suffix == ".json":
            _strict_loads(path.read_text())
        count += 1
    return count


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


class _Payload:
    """Unpickling this writes a marker file: proof that pickled code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


# ----------------------------------------------------------------------------------------------------------------------
# 1. A second run in an existing folder; pruning only this run's checkpoints; no duplicate log lines on resume
# ----------------------------------------------------------------------------------------------------------------------
def test_second_run_in_a_used_folder_is_refused_overwrite_replaces_it_and_pruning_keeps_other_runs(
    tmp_path, corpus_dir
):
    run = tmp_path / "run"
    pretrain(_args(tmp_path, corpus_dir, max_steps=3, checkpointing_steps=2, checkpoints_total_limit=2))
    (run / "notes.txt").write_text("the user's own file")
    before = _snapshot(run)
    # Before: the second run pruned its own new checkpoints and overwrote README, config, weights and the log.
    with pytest.raises(OutputExistsError) as refused:
        pretrain(_args(tmp_path, corpus_dir, max_steps=2))
    assert str(run) in str(refused.value) and "--overwrite" in str(refused.value)
    assert f"--resume {run / 'checkpoints' / 'latest'}" in str(refused.value)
    assert _snapshot(run) == before  # nothing written, nothing deleted

    # --overwrite replaces the folder wholly.
    pretrain(_args(tmp_path, corpus_dir, max_steps=3, checkpointing_steps=2, checkpoints_total_limit=2, overwrite=True))
    assert not (run / "notes.txt").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-2", "step-3"]
    assert [r["step"] for r in _log(run) if "loss" in r] == [1, 2, 3]

    # A kill after step 3 was logged but before its checkpoint: latest is step-2, the log already holds step 3.
    shutil.rmtree(run / "checkpoints" / "step-3")
    (run / "checkpoints" / "latest").unlink()
    (run / "checkpoints" / "latest").symlink_to("step-2", target_is_directory=True)
    # A checkpoint of another run with a higher step number (as the old folder-reuse left behind).
    foreign = run / "checkpoints" / "step-50"
    shutil.copytree(run / "checkpoints" / "step-2", foreign)
    state = json.loads((foreign / "training_state.json").read_text())
    (foreign / "training_state.json").write_text(json.dumps({**state, "run_id": "another-run", "step": 50}))

    summary = pretrain(
        _args(
            tmp_path,
            corpus_dir,
            max_steps=6,
            checkpointing_steps=1,
            checkpoints_total_limit=2,
            resume=str(run / "checkpoints" / "latest"),  # in place
        )
    )
    assert summary["steps"] == 6
    # Only this run's older checkpoints were pruned (step-2 ... step-4); the other run's step-50 is untouched.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-5", "step-50", "step-6"]
    assert (run / "checkpoints" / "latest").resolve() == (run / "checkpoints" / "step-6").resolve()
    assert (run / "checkpoints" / "latest" / "training_state.json").is_file()
    log = _log(run)
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5, 6]  # step 3 once, not twice
    assert [r.get("event") for r in log if "event" in r] == ["resume", "end"]

    # In place from an older checkpoint would overwrite this run's newer ones; --overwrite would delete the
    # checkpoint it resumes from. Both refused before anything is written.
    before = _snapshot(run)
    with pytest.raises(ValueError, match="newer checkpoint"):
        pretrain(_args(tmp_path, corpus_dir, max_steps=7, resume=str(run / "checkpoints" / "step-5")))
    with pytest.raises(ValueError, match="would delete"):
        pretrain(_args(tmp_path, corpus_dir, max_steps=7, overwrite=True, resume=str(run / "checkpoints" / "latest")))
    with pytest.raises(ValueError, match=r"step-50'\], which belong to another run"):  # would be written at step 50
        pretrain(_args(tmp_path, corpus_dir, max_steps=50, resume=str(run / "checkpoints" / "latest")))
    assert _snapshot(run) == before
    assert _assert_strict_json_tree(run) >= 8


# ----------------------------------------------------------------------------------------------------------------------
# 3. No pickle is unpickled without --allow-pickle, and then only with weights_only=True
# ----------------------------------------------------------------------------------------------------------------------
def test_resume_never_runs_a_planted_pickle(tmp_path, corpus_dir, monkeypatch):
    pretrain(_args(tmp_path / "a", corpus_dir, max_steps=2, checkpointing_steps=2))
    checkpoint = tmp_path / "a" / "run" / "checkpoints" / "step-2"
    assert pickle_files(checkpoint) == []
    assert {p.suffix for p in checkpoint.iterdir()} == {".safetensors", ".json"}
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(_Payload(marker), protocol=2)
    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(payload)  # what Accelerate's load_state unpickled fully

    with pytest.raises(ValueError, match=r"custom_checkpoint_0\.pkl.*--allow-pickle"):
        pretrain(_args(tmp_path / "b", corpus_dir, max_steps=3, resume=str(checkpoint)))
    assert not marker.exists() and not (tmp_path / "b").exists()

    loads = []
    real_load = torch.load

    def spy_load(*args, **kwargs):
        loads.append((Path(args[0]).name, kwargs.get("weights_only")))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy_load)
    # Opted in: a pickle the checkpoint does not need is never read; the run resumes.
    summary = pretrain(_args(tmp_path / "c", corpus_dir, max_steps=3, resume=str(checkpoint), allow_pickle=True))
    assert summary["steps"] == 3 and loads == [] and not marker.exists()

    # A pickle the loader does need (an Accelerate optimizer.bin) is read with weights_only=True: refused, not run.
    (checkpoint / "optimizer.safetensors").unlink()
    (checkpoint / "optimizer.bin").write_bytes(payload)
    with pytest.raises(ValueError, match=r"optimizer\.bin.*weights_only=True"):
        pretrain(_args(tmp_path / "d", corpus_dir, max_steps=3, resume=str(checkpoint), allow_pickle=True))
    assert loads == [("optimizer.bin", True)] and not marker.exists()


def test_accelerate_checkpoint_resumes_only_with_allow_pickle_and_weights_only(tmp_path, corpus_dir, monkeypatch):
    from accelerate import Accelerator

    from vanishing_depth.training.pretrain import build_model, build_optimizer

    args = _args(tmp_path / "old", corpus_dir, max_steps=2)
    model = build_model(args)
    optimizer, scheduler = build_optimizer(model, args)
    accelerator = Accelerator()
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    checkpoint = tmp_path / "old" / "run" / "checkpoints" / "step-0"
    accelerator.save_state(str(checkpoint), safe_serialization=True)  # the previous checkpoint format
    (checkpoint / "training_state.json").write_text(json.dumps({"step": 0, "history": [], "arguments": asdict(args)}))
    assert {"optimizer.bin", "random_states_0.pkl", "custom_checkpoint_0.pkl"} <= {
        p.name for p in pickle_files(checkpoint)
    }

    with pytest.raises(ValueError, match="--allow-pickle"):
        pretrain(_args(tmp_path / "new", corpus_dir, max_steps=2, resume=str(checkpoint)))
    loads = []
    real_load = torch.load
    monkeypatch.setattr(
        torch, "load", lambda *a, **k: loads.append((Path(a[0]).name, k.get("weights_only"))) or real_load(*a, **k)
    )
    summary = pretrain(_args(tmp_path / "new", corpus_dir, max_steps=2, resume=str(checkpoint), allow_pickle=True))
    assert summary["steps"] == 2
    assert sorted(loads) == [("optimizer.bin", True), ("random_states_0.pkl", True)]  # the scheduler is rebuilt


# ----------------------------------------------------------------------------------------------------------------------
# 4. Resume with changed arguments: applied from the resumed step, or refused before the first step
# ----------------------------------------------------------------------------------------------------------------------
def _one_cycle(args: PretrainingArguments, steps: int) -> list[list[float]]:
    """The learning rates (both groups) after each of `steps` steps of the OneCycle schedule of `args`."""
    parameters = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.AdamW([{"params": [parameters[0]]}, {"params": [parameters[1]]}])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[args.learning_rate, args.decoder_learning_rate],
        total_steps=args.max_steps,
        pct_start=args.pct_start,
        div_factor=args.div_factor,
        final_div_factor=args.final_div_factor,
    )
    rates = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr())
    return rates


def test_resume_with_a_longer_schedule_and_a_new_learning_rate(tmp_path, corpus_dir):
    first = _args(tmp_path / "a", corpus_dir, max_steps=2, checkpointing_steps=2)
    pretrain(first)
    checkpoint = tmp_path / "a" / "run" / "checkpoints" / "step-2"
    # Before: the old 2-step OneCycle was restored and stepping it a third time crashed ("Tried to step 3 times"),
    # and a new learning rate was warned about and ignored.
    longer = _args(
        tmp_path / "b", corpus_dir, max_steps=4, checkpointing_steps=2, learning_rate=3e-3, resume=str(checkpoint)
    )
    summary = pretrain(longer)
    run = tmp_path / "b" / "run"
    assert summary["steps"] == 4 and [e["step"] for e in summary["history"]] == [1, 2, 3, 4]
    assert (run / "model.safetensors").is_file() and (run / "pretraining" / "model.safetensors").is_file()
    records = {r["step"]: r for r in _log(run) if "loss" in r}
    assert sorted(records) == [1, 2, 3, 4]  # steps 1-2 carried over from the first run's log
    old, new = _one_cycle(first, 2), _one_cycle(longer, 4)
    assert records[2]["lr"] == pytest.approx(old[1][0], rel=1e-12)
    # The rule: the OneCycle schedule of the new arguments (total 4 steps, peak 3e-3), continued at step 2.
    for step in (3, 4):
        assert records[step]["lr"] == pytest.approx(new[step - 1][0], rel=1e-12)
        assert records[step]["decoder_lr"] == pytest.approx(new[step - 1][1], rel=1e-12)
    assert records[3]["lr"] != pytest.approx(_one_cycle(_args(tmp_path, corpus_dir, max_steps=4), 3)[2][0])
    (resume,) = [r for r in _log(run) if r.get("event") == "resume"]
    assert set(resume["changed_arguments"]) == {"max_steps", "learning_rate"}
    assert (run / "checkpoints" / "step-4" / "training_state.json").is_file()

    # What cannot be honoured is refused before anything runs or is written.
    with pytest.raises(ValueError, match=r"model_shape 'tiny' -> 'small'"):
        pretrain(_args(tmp_path / "c", corpus_dir, model_shape="small", max_steps=4, resume=str(checkpoint)))
    with pytest.raises(ValueError, match="max_steps 1 is below the checkpoint's step 2"):
        pretrain(_args(tmp_path / "c", corpus_dir, max_steps=1, resume=str(checkpoint)))
    assert not (tmp_path / "c").exists()
    _assert_strict_json_tree(tmp_path / "b")


# ----------------------------------------------------------------------------------------------------------------------
# 5. Bad rows: counted by cause for training and validation, the run completes; too many bad rows fail it
# ----------------------------------------------------------------------------------------------------------------------
def _bad_rows_corpus(folder: Path, good: int) -> Path:
    """`good` good rows, one row of each skip cause, and one same-view half-resolution depth (resized)."""
    rows = []
    for index in range(good + 5):
        rgb, depth = render_synthetic_scene(H, W, index)
        rows.append(
            {
                "image": {"bytes": _png(rgb), "path": f"{index:03d}.png"},
                "depth": {"bytes": _png(np.round(depth * 1000).astype(np.uint16)), "path": f"{index:03d}_depth.png"},
                "depth_scale": 0.001,
                "intrinsics": None,
                "source": "bad-rows",
                "frame_id": f"{index:03d}",
            }
        )
    rows[good]["image"] = {"bytes": b"\xff\xd8 not a jpeg", "path": "corrupt.jpg"}
    rows[good + 1]["depth"] = {"bytes": rows[good + 1]["depth"]["bytes"][:300], "path": "truncated_depth.png"}
    narrow = np.round(render_synthetic_scene(H, W // 2, 1)[1] * 1000).astype(np.uint16)
    rows[good + 2]["depth"] = {"bytes": _png(narrow), "path": "narrow_depth.png"}
    rows[good + 3]["depth"] = {"bytes": _png(np.zeros((H, W), np.uint16)), "path": "empty_depth.png"}
    half = np.round(render_synthetic_scene(H // 2, W // 2, 2)[1] * 1000).astype(np.uint16)
    rows[good + 4]["depth"] = {"bytes": _png(half), "path": "half_depth.png"}
    save_corpus(Dataset.from_list(rows, features=RGBD_CORPUS_FEATURES), folder)
    return folder


CAUSES_ONCE = {"unreadable_image": 1, "unreadable_depth": 1, "size_mismatch": 1, "too_few_valid": 1}


def test_bad_rows_are_counted_by_cause_for_training_and_validation(tmp_path, caplog):
    corpus = _bad_rows_corpus(tmp_path / "bad", good=4)  # 4 bad of 9 rows
    # Before: iterating a loaded corpus raised inside `datasets` on the corrupt row.
    decoder = RGBDSampleDecoder(min_valid_pixels=50)
    assert len(list(decoder.iterate(load_corpus(corpus)))) == 5
    assert decoder.stats.skipped_by_cause() == CAUSES_ONCE and decoder.stats.resized_depth == 1
    assert "truncated_depth.png" in caplog.text and "corrupt.jpg" in caplog.text

    # Before: the corrupt validation row killed the run at start, and size mismatches were never reported.
    args = _args(
        tmp_path,
        corpus,
        max_steps=4,
        per_device_batch_size=8,  # ~60 draws of 9 rows: every row is read
        checkpointing_steps=4,
        validation_dataset=str(corpus),
        validation_split="train",
        validation_frames=9,
        validation_steps=4,
    )
    summary = pretrain(args)
    assert summary["steps"] == 4
    rows = summary["rows"]
    assert rows["validation"] == {"rows_read": 9, "skipped": CAUSES_ONCE, "resized_depth": 1}
    assert rows["training"]["skipped"] == CAUSES_ONCE and rows["training"]["rows_read"] == 9
    assert rows["training"]["resized_depth"] == 1
    assert rows["training"]["by_corpus"][str(corpus)]["decoded"] == 5
    log = _log(tmp_path / "run")
    steps = [r for r in log if "loss" in r]
    assert steps[-1]["skipped"] == CAUSES_ONCE and all(set(r["skipped"]) == set(CAUSES_ONCE) for r in steps)
    (validation,) = [r for r in log if "val/si_auc" in r]
    assert validation["validation_skipped"] == CAUSES_ONCE and validation["validation_rows_read"] == 9
    end = log[-1]
    assert end["event"] == "end" and end["skipped"] == CAUSES_ONCE and end["validation_skipped"] == CAUSES_ONCE
    saved = _strict_loads((tmp_path / "run" / "pretraining_summary.json").read_text())
    assert saved["rows"]["training"]["skipped"] == saved["rows"]["validation"]["skipped"] == CAUSES_ONCE

    # More than max_bad_row_share of the rows bad fails the run, saying so.
    mostly_bad = _bad_rows_corpus(tmp_path / "mostly-bad", good=1)  # 4 bad of 6 rows
    with pytest.raises(ValueError, match=r"validation_dataset .*4 of the 6 rows read are bad.*max_bad_row_share=0.5"):
        pretrain(_args(tmp_path / "v", corpus, validation_dataset=str(mostly_bad), validation_split="train"))
    assert not (tmp_path / "v").exists()  # refused before anything was written
    with pytest.raises(ValueError, match=r"training corpus .*mostly-bad.*rows read are bad.*max_bad_row_share"):
        pretrain(_args(tmp_path / "t", mostly_bad, max_steps=3))
    assert pretrain(_args(tmp_path / "ok", mostly_bad, max_steps=2, max_bad_row_share=0.9))["steps"] == 2
    with pytest.raises(ValueError, match=r"max_bad_row_share.*\[0, 1\].*got 1.5"):
        _args(tmp_path, corpus, max_bad_row_share=1.5)


def test_build_corpus_names_bad_files_skips_them_and_refuses_a_used_folder(tmp_path, capsys):
    from vanishing_depth.cli import main as cli
    from vanishing_depth.data import save_depth

    rgb_dir, depth_dir = tmp_path / "rgb", tmp_path / "depth"
    rgb_dir.mkdir()
    depth_dir.mkdir()
    for index in range(3):
        rgb, depth = render_synthetic_scene(H, W, index)
        PILImage.fromarray(rgb).save(rgb_dir / f"{index:05d}.jpg")
        save_depth(depth_dir / f"{index:05d}.png", depth, "mm")
    data = (depth_dir / "00001.png").read_bytes()
    (depth_dir / "00001.png").write_bytes(data[: len(data) // 2])  # truncated
    (rgb_dir / "00002.jpg").write_bytes(b"\xff\xd8 broken")
    command = ["build-corpus", "--rgb-dir", str(rgb_dir), "--depth-dir", str(depth_dir), "--depth-format", "mm"]
    command += ["--source-name", "toy", "--output-dir", str(tmp_path / "corpus")]
    # Before: a 40-line traceback that did not name the truncated depth file.
    assert cli(command) == 0
    out = capsys.readouterr().out
    assert str(depth_dir / "00001.png") in out and "truncated" in out and str(rgb_dir / "00002.jpg") in out
    assert "1 frames" in out and "2 bad file(s) skipped" in out
    assert load_corpus(tmp_path / "corpus")["frame_id"] == ["00000"]

    before = _snapshot(tmp_path / "corpus")
    assert cli(command) == 2
    assert "not empty" in capsys.readouterr().err and _snapshot(tmp_path / "corpus") == before
    (tmp_path / "corpus" / "stale.txt").write_text("old")
    assert cli([*command, "--overwrite"]) == 0
    assert not (tmp_path / "corpus" / "stale.txt").exists() and len(load_corpus(tmp_path / "corpus")) == 1


# ----------------------------------------------------------------------------------------------------------------------
# 7. Damaged checkpoint files are named; every JSON a run writes is strict
# ----------------------------------------------------------------------------------------------------------------------
def test_damaged_checkpoint_files_are_named(tmp_path, corpus_dir):
    pretrain(_args(tmp_path / "a", corpus_dir, max_steps=1))
    checkpoints = tmp_path / "a" / "run" / "checkpoints"
    state_file = checkpoints / "step-1" / "training_state.json"
    state_file.write_text(state_file.read_text()[:40])
    with pytest.raises(ValueError, match=rf"{state_file}: cannot be read"):
        pretrain(_args(tmp_path / "b", corpus_dir, resume=str(checkpoints / "latest")))
    shutil.rmtree(checkpoints / "step-1")
    with pytest.raises(ValueError, match=r"latest.* points at 'step-1', which does not exist"):
        pretrain(_args(tmp_path / "b", corpus_dir, resume=str(checkpoints / "latest")))
    assert not (tmp_path / "b").exists()


def test_every_json_file_a_run_writes_is_strict_even_with_nan(tmp_path, corpus_dir, monkeypatch):
    # Before: a NaN metric or loss was written as a bare NaN token, which no strict JSON parser reads.
    monkeypatch.setattr(
        pretrain_module, "validate", lambda *a, **k: {"val/si_auc": float("nan"), "val/mae_m_auc": float("inf")}
    )
    args = _args(
        tmp_path, corpus_dir, max_steps=2, validation_dataset=str(corpus_dir), validation_frames=2, validation_steps=1
    )
    summary = pretrain(args)
    run = tmp_path / "run"
    assert np.isnan(summary["validation"]["val/si_auc"])
    assert _assert_strict_json_tree(run) >= 8
    names = {p.name for p in run.rglob("*.json*")}
    assert {"training_log.jsonl", "training_args.json", "pretraining_summary.json", "process_0_of_1.json"} <= names
    assert {"training_state.json", "optimizer.json"} <= names
    assert _strict_loads((run / "pretraining_summary.json").read_text())["validation"]["val/si_auc"] is None
    assert [r["val/mae_m_auc"] for r in _log(run) if "val/mae_m_auc" in r] == [None, None]
    assert os.path.getsize(run / "training_log.jsonl") > 0
