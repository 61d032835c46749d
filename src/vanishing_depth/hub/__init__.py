# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Sharing saved models: model cards (`build_model_card`, `write_model_card`, `write_run_card`) and Hub publishing
(`push_model`, `push_corpus`).

This is the top of the package's import order: training, data and evaluation never import it; they return their
results and write their results files, and the commands that run them (`vanishing_depth.cli`, the demo) write the
cards.

`huggingface_hub` reads ``HF_ENDPOINT`` when it is first imported, so set the variable before importing this package
if you publish to a Hub other than huggingface.co.
"""

from .model_card import (
    AUTO_CLASSES,
    PIPELINE_TAGS,
    MetricEntry,
    add_card_subcommand,
    build_model_card,
    card_is_ours,
    has_remote_code,
    read_metrics_file,
    write_model_card,
    write_run_card,
)
from .publish import UploadPlan, add_push_subcommand, plan_model_upload, push_corpus, push_model

__all__ = [
    "AUTO_CLASSES",
    "PIPELINE_TAGS",
    "MetricEntry",
    "UploadPlan",
    "add_card_subcommand",
    "add_push_subcommand",
    "build_model_card",
    "card_is_ours",
    "has_remote_code",
    "plan_model_upload",
    "push_corpus",
    "push_model",
    "read_metrics_file",
    "write_model_card",
    "write_run_card",
]
