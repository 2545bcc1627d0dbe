"""Labelled sequences in memory, in a fixed row order: what the split protocols and training start from.

Two sources:

* a Parquet ``sequences`` table (``hdfsad ingest --labels`` or ``hdfsad import-reference``), read with
  pyarrow (:func:`hdfsad.reader.read_all`, no Spark session); rows with a null label are left out;
* a reference CSV (``id,sequence,class``), read in pure Python (:func:`hdfsad.synth.read_reference_csv`):
  a few seconds for the 385,289 labelled rows, where a Spark read would first start a JVM and then
  collect the same rows to the driver, which trains in one process anyway.

Row order decides the ``seed`` split, so it is fixed: the CSV's row order, or, for a table, block id
order — numeric when every block id is ``seq-<n>`` (an imported reference CSV, which then gives the
same order, hence the same split, as the CSV itself), else lexicographic.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

_REFERENCE_ID = re.compile(r"seq-(\d+)")


@dataclass(frozen=True)
class Labelled:
    """``sequences``: object array of int64 event-id arrays; ``labels``: int64, 1 = anomaly."""

    sequences: np.ndarray
    labels: np.ndarray
    source: str

    def __post_init__(self) -> None:
        if len(self.sequences) != len(self.labels):
            raise ValueError(f"{self.source}: {len(self.sequences)} sequences but {len(self.labels)} labels")
        if not len(self.labels):
            raise ValueError(f"{self.source}: no labelled sequence to train on")
        bad = ~np.isin(self.labels, (0, 1))
        if bad.any():
            raise ValueError(f"{self.source}: labels must be 0 (normal) or 1 (anomaly), found "
                             f"{self.labels[bad][0].item()!r}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: np.ndarray) -> "Labelled":
        return Labelled(self.sequences[rows], self.labels[rows], self.source)

    def summary(self) -> str:
        return f"{len(self):,} labelled sequences ({int(self.labels.sum()):,} anomalies) from {self.source}"


def _object_array(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def from_arrays(sequences: Any, labels: Any, source: str = "arrays") -> Labelled:
    """From in-memory sequences (lists or arrays of event ids) and 0/1 labels."""
    seqs = _object_array([np.asarray(s, dtype=np.int64) for s in sequences])
    return Labelled(seqs, np.asarray(labels, dtype=np.int64).reshape(-1), source)


def from_reference_csv(path: str) -> Labelled:
    """The rows of a labelled reference CSV, in file order."""
    from hdfsad.synth import read_reference_csv

    if not os.path.isfile(path):
        raise FileNotFoundError(f"reference CSV {path} does not exist")
    seqs, labels = [], []
    for _, events, label in read_reference_csv(path):
        if label is None:
            raise ValueError(f"{path} has no 'class' column: training needs labelled sequences "
                             f"(log_classification_train.csv, not the unlabelled test file)")
        seqs.append(np.asarray(events, dtype=np.int64))
        labels.append(label)
    return Labelled(_object_array(seqs), np.asarray(labels, dtype=np.int64), path)


def table_order(block_ids: np.ndarray) -> np.ndarray:
    """Row order of a table: numeric for ``seq-<n>`` block ids, lexicographic otherwise."""
    ids = [str(b) for b in block_ids]
    matches = [_REFERENCE_ID.fullmatch(b) for b in ids]
    if ids and all(matches):
        return np.argsort(np.array([int(m.group(1)) for m in matches]), kind="stable")
    return np.argsort(np.array(ids, dtype=object), kind="stable")


def from_table(path: str) -> Labelled:
    """The labelled rows of a ``sequences`` table (all ``ingest_date`` partitions)."""
    import pyarrow.dataset as ds

    from hdfsad import schemas
    from hdfsad.reader import read_all

    if "://" not in str(path) and not os.path.exists(path):
        raise FileNotFoundError(f"sequences table {path} does not exist (write it with `hdfsad ingest` "
                                f"or `hdfsad import-reference`; the table is <tables>/sequences)")
    cols = read_all(path, columns=[schemas.BLOCK_ID, schemas.EVENTS, schemas.LABEL],
                    filter=ds.field(schemas.LABEL).is_valid())
    if not len(cols[schemas.LABEL]):
        raise ValueError(f"sequences table {path} holds no labelled row (ingest with --labels, or "
                         f"import a reference CSV with a class column)")
    order = table_order(cols[schemas.BLOCK_ID])
    seqs = _object_array([np.asarray(s, dtype=np.int64) for s in cols[schemas.EVENTS][order]])
    return Labelled(seqs, cols[schemas.LABEL][order].astype(np.int64), path)
