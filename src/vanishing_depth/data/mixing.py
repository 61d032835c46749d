# Copyright 2026 The vanishing-depth authors. Apache-2.0.
"""Mixing and sharding corpora for pretraining.

`prepare_pretraining_corpus` loads several corpora, mixes them so that **every corpus is drawn with equal
probability regardless of its size** (the authors' representation_dataset.py picks a dataset by normalised weights,
all 1.0, then a uniform random frame; here ``interleave_datasets(probabilities=[1/n]*n, stopping_strategy=
"all_exhausted")``: small corpora are repeated until the largest is used up), works map-style or streaming, and gives
each process of a multi-process run its own shard (``split_dataset_by_node``). Images stay undecoded in the dataset;
`vanishing_depth.data.decoding.RGBDSampleDecoder` decodes rows (e.g. as a DataLoader ``collate_fn``), skipping and
counting by cause the rows it cannot use.

Example::

    pretraining = prepare_pretraining_corpus(
        ["corpora/nyu_v2", "redwood_demo"], streaming=True, seed=0, rank=rank, world_size=world_size
    )
    loader = DataLoader(pretraining.dataset, batch_size=8, collate_fn=pretraining.decoder)
    run_stats = RGBDSkipStats()
    for batch in loader:  # a DecodedRGBDBatch
        run_stats.merge(batch.stats)
        for sample in batch.samples:  # RGBDSample: rgb uint8 (H, W, 3), depth_m float32 (H, W)
            ...
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset, IterableDataset, interleave_datasets
from datasets.distributed import split_dataset_by_node

from .corpora import load_corpus
from .decoding import RGBDSample, RGBDSampleDecoder
from .schema import RGBD_CORPUS_COLUMNS, check_corpus_columns, rgbd_corpus_features

logger = logging.getLogger(__name__)

__all__ = ["PretrainingCorpus", "mix_corpora", "prepare_pretraining_corpus"]


def _standardise(dataset, decode: bool):
    """Same columns, order and features for every corpus, as `interleave_datasets` requires."""
    check_corpus_columns(dataset, "a corpus")
    columns = dataset.column_names
    if columns is not None and "intrinsics" not in columns:
        if isinstance(dataset, IterableDataset):
            dataset = dataset.map(lambda row: {"intrinsics": None})
        else:
            dataset = dataset.add_column("intrinsics", [None] * len(dataset))
    dataset = dataset.select_columns(list(RGBD_CORPUS_COLUMNS))
    target = rgbd_corpus_features(decode=decode)
    if dataset.features is None:
        return dataset.cast(target)
    # Switching the decode flag of an Image column is a schema change only; `cast` would rewrite every row.
    for name in ("image", "depth"):
        if dataset.features[name] != target[name]:
            dataset = dataset.cast_column(name, target[name])
    if dict(dataset.features) != dict(target):
        dataset = dataset.cast(target)
    return dataset


def mix_corpora(
    corpora: SequenceABC,
    seed: int = 0,
    probabilities: SequenceABC[float] | None = None,
    stopping_strategy: str = "all_exhausted",
    decode: bool = True,
):
    """Interleave corpora so that each draw picks a corpus with the given probability (default: equal, as the authors'
    representation_dataset.py weights its datasets).

    All corpora must be of one kind: `datasets.Dataset` (result: a `Dataset`) or `IterableDataset` (result: an
    `IterableDataset`). With ``"all_exhausted"`` the mix ends once every corpus has been used up at least once, so
    smaller corpora are repeated (oversampled) rather than the mix stopping at the smallest.

    Args:
        corpora: the corpus datasets (corpus schema; a missing ``intrinsics`` column is added as null).
        seed: seeds the choice of corpus at each draw.
        probabilities: one per corpus (normalised); default ``[1/n] * n``.
        stopping_strategy: passed to ``datasets.interleave_datasets``.
        decode: whether images decode to PIL (False keeps ``{"bytes", "path"}`` for `RGBDSampleDecoder`).
    """
    if not corpora:
        raise ValueError("`corpora` must hold at least one dataset, got an empty list.")
    kinds = {type(c).__name__ for c in corpora}
    if not (all(isinstance(c, Dataset) for c in corpora) or all(isinstance(c, IterableDataset) for c in corpora)):
        raise ValueError(f"`corpora` must be all Dataset or all IterableDataset, got {sorted(kinds)}.")
    n = len(corpora)
    if probabilities is None:
        probabilities = [1.0 / n] * n
    probabilities = [float(p) for p in probabilities]
    if len(probabilities) != n or any(not np.isfinite(p) or p < 0 for p in probabilities) or sum(probabilities) <= 0:
        raise ValueError(f"`probabilities` must be {n} non-negative numbers with a positive sum, got {probabilities}.")
    total = sum(probabilities)
    probabilities = [p / total for p in probabilities]
    standard = [_standardise(c, decode) for c in corpora]
    return interleave_datasets(standard, probabilities=probabilities, seed=seed, stopping_strategy=stopping_strategy)


@dataclass
class PretrainingCorpus:
    """The mixed, sharded pretraining stream of one process and the decoder that turns its rows into samples.

    ``dataset`` holds undecoded rows (``{"bytes", "path"}`` images); pass ``decoder`` as the DataLoader
    ``collate_fn`` or iterate ``corpus`` directly for decoded `RGBDSample` objects. Skip counts: ``decoder.stats``
    (in this process) or the ``stats`` of each `DecodedRGBDBatch`.
    """

    dataset: Any
    decoder: RGBDSampleDecoder
    source_names: list[str]
    probabilities: list[float]

    def __iter__(self) -> Iterator[RGBDSample]:
        return self.decoder.iterate(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle a streaming corpus for a new epoch (map-style datasets are shuffled once, by seed)."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def prepare_pretraining_corpus(
    sources: SequenceABC,
    split: str = "train",
    streaming: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    min_valid_pixels: int = 100,
    shuffle: bool = True,
    shuffle_buffer_size: int = 1000,
    num_shards: int | None = None,
) -> PretrainingCorpus:
    """Load, shuffle, mix (equal probability per corpus) and shard the pretraining corpora for one process.

    Args:
        sources: corpora as names for `load_corpus` (folder, parquet file, ``"redwood_demo"``, Hub repo id) or as
            `Dataset` / `IterableDataset` objects in the corpus schema.
        split: split to load for named sources.
        streaming: read lazily as an `IterableDataset` (in-memory `Dataset` sources are converted with
            ``to_iterable_dataset(num_shards)``); otherwise map-style (`IterableDataset` sources then raise).
        seed: seeds the per-corpus shuffles and the corpus choice at each draw; every process must use the same
            seed so that the shards are disjoint.
        rank, world_size: this process and the number of processes; each reads its own part of the mix via
            ``datasets.distributed.split_dataset_by_node``.
        min_valid_pixels: the decoder skips (and counts) frames with fewer valid depth pixels (the authors'
            representation_dataset.py redraws frames with fewer than 100).
        shuffle: shuffle each corpus before mixing (map-style: a full permutation; streaming: a buffer of
            ``shuffle_buffer_size`` rows), so a draw from a corpus is a random frame of it, as in the authors'
            representation_dataset.py.
        num_shards: shards for in-memory sources turned into streams (default ``max(world_size, 1)``).

    Returns:
        A `PretrainingCorpus` (dataset of undecoded rows, decoder, source names, probabilities).
    """
    if not sources:
        raise ValueError("`sources` must name at least one corpus, got an empty list.")
    if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(
            f"`rank` must be in [0, world_size) and `world_size` >= 1, got rank={rank}, world_size={world_size}."
        )
    corpora, names = [], []
    for index, source in enumerate(sources):
        if isinstance(source, (str, os.PathLike)):
            corpus = load_corpus(source, split=split, streaming=streaming)
            names.append(str(source))
        elif isinstance(source, (Dataset, IterableDataset)):
            corpus = source
            names.append(f"<{type(source).__name__} #{index}>")
        else:
            raise ValueError(
                f"`sources[{index}]` must be a corpus name/path or a datasets Dataset/IterableDataset, "
                f"got {type(source).__name__}."
            )
        if streaming and isinstance(corpus, Dataset):
            corpus = corpus.to_iterable_dataset(num_shards=num_shards or max(world_size, 1))
        elif not streaming and isinstance(corpus, IterableDataset):
            raise ValueError(f"`sources[{index}]` is an IterableDataset; pass streaming=True to mix it.")
        if shuffle:
            if streaming:
                corpus = corpus.shuffle(seed=seed + index, buffer_size=shuffle_buffer_size)
            else:
                corpus = corpus.shuffle(seed=seed + index)
        corpora.append(corpus)

    probabilities = [1.0 / len(corpora)] * len(corpora)
    mixed = mix_corpora(corpora, seed=seed, probabilities=probabilities, decode=False)
    if world_size > 1:
        mixed = split_dataset_by_node(mixed, rank=rank, world_size=world_size)
    logger.info(
        "Pretraining corpus: %s mixed with equal probability (streaming=%s), rank %d of %d.",
        names,
        streaming,
        rank,
        world_size,
    )
    return PretrainingCorpus(
        dataset=mixed,
        decoder=RGBDSampleDecoder(min_valid_pixels=min_valid_pixels),
        source_names=names,
        probabilities=probabilities,
    )
