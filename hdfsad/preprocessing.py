"""From variable-length event sequences to the model's fixed-shape input, vectorized with numpy.

The study's encoding: every event id is shifted by +1 so that 0 is the padding value; a sequence is
cut to its **last** ``max_len`` events ("pre" truncation) and left-padded with 0 ("pre" padding).

Sequences may be given as a list (or object array) of integer sequences, or as a pyarrow
``list<int>`` array / chunked array (the ``events`` column of the ``sequences`` table). Event ids
must lie in ``0 .. NUM_EVENT_IDS - 1``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from hdfsad.templates import NUM_EVENT_IDS

#: The padding id of the model input (real events are ``event_id + 1``).
PAD = 0
#: Extra windows per long sequence in the study's augmentation (variants 7 and 8).
STUDY_EXTRA_WINDOWS = 3


def flatten(sequences: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(values, lengths)``: all events of all sequences back to back (int64), and each length.

    A null list (pyarrow) counts as an empty sequence.
    """
    if type(sequences).__module__.startswith("pyarrow"):
        return _flatten_arrow(sequences)
    seqs = list(sequences)
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    if not seqs or lengths.sum() == 0:
        return np.zeros(0, dtype=np.int64), lengths
    values = np.concatenate([np.asarray(s, dtype=np.int64).reshape(-1) for s in seqs])
    return values, lengths


def _flatten_arrow(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], type=arr.type)
    flat = arr.flatten()  # respects slicing, skips null lists
    if flat.null_count:
        raise ValueError("events: a sequence holds a null event id")
    lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False)
    return flat.to_numpy(zero_copy_only=False).astype(np.int64), lengths.astype(np.int64)


def _check_ids(values: np.ndarray) -> None:
    if values.size and (values.min() < 0 or values.max() >= NUM_EVENT_IDS):
        bad = values.min() if values.min() < 0 else values.max()
        raise ValueError(f"event id {int(bad)} out of range: ids must be 0..{NUM_EVENT_IDS - 1} "
                         f"(hdfsad.templates); were the sequences built with another event encoding?")


def encode_flat(values: np.ndarray, lengths: np.ndarray, max_len: int) -> np.ndarray:
    """Encode flattened sequences (see :func:`flatten`) → (n, max_len) int64, shifted and padded."""
    if max_len < 1:
        raise ValueError(f"max_len: expected an integer >= 1, got {max_len!r}")
    values = np.asarray(values, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    _check_ids(values)
    n = len(lengths)
    ends = np.cumsum(lengths)
    kept = np.minimum(lengths, max_len)
    total = int(kept.sum())
    rows = np.repeat(np.arange(n), kept)
    j = np.arange(total) - np.repeat(np.cumsum(kept) - kept, kept)  # index inside the kept part
    out = np.zeros((n, max_len), dtype=np.int64)
    out[rows, np.repeat(max_len - kept, kept) + j] = values[np.repeat(ends - kept, kept) + j] + 1
    return out


def encode(sequences: Any, max_len: int) -> np.ndarray:
    """Shift ids by +1, keep the last ``max_len`` events, left-pad with 0 → (n, max_len) int64."""
    return encode_flat(*flatten(sequences), max_len)


def extra_window_counts(lengths: np.ndarray, max_len: int, extra_windows: int) -> np.ndarray:
    """How many extra windows :func:`augment_windows` adds per sequence: ``min(extra, len - max_len)``
    for sequences longer than ``max_len``, else 0."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.clip(lengths - max_len, 0, max(extra_windows, 0))


def augment_windows(sequences: Any, labels: Sequence[int] | np.ndarray, max_len: int,
                    extra_windows: int = STUDY_EXTRA_WINDOWS) -> tuple[np.ndarray, np.ndarray]:
    """The study's windowing augmentation, for the training set only.

    Returns the encoded originals (in input order) followed by, for every sequence of length
    ``L > max_len``, the full windows of ``max_len`` events that end ``1, 2, … k`` events before its
    end, ``k = min(extra_windows, L - max_len)`` (in row order, then ``k`` order), each with the
    label of its sequence. Only full windows are added, so none of them is padded.
    """
    values, lengths = flatten(sequences)
    labels = np.asarray(labels)
    if len(labels) != len(lengths):
        raise ValueError(f"labels: expected {len(lengths)} labels (one per sequence), got {len(labels)}")
    base = encode_flat(values, lengths, max_len)
    counts = extra_window_counts(lengths, max_len, extra_windows)
    rows = np.repeat(np.arange(len(lengths)), counts)
    back = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    window_end = np.cumsum(lengths)[rows] - back  # exclusive end of each extra window in `values`
    extra = values[(window_end - max_len)[:, None] + np.arange(max_len)] + 1
    return np.concatenate([base, extra.reshape(-1, max_len)]), np.concatenate([labels, labels[rows]])


def distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(uniq, inverse)`` of the rows of a 2-D int array: ``uniq[inverse] == x``.

    Rows are compared as raw bytes (several times faster than ``np.unique(axis=0)``); for
    non-negative values below 256, as event ids and labels are, that is numeric lexicographic order.
    """
    x = np.ascontiguousarray(x, dtype=np.int64)
    if x.ndim != 2:
        raise ValueError(f"distinct_rows: expected a 2-D array, got shape {x.shape}")
    if not x.shape[1]:
        return x[:min(len(x), 1)], np.zeros(len(x), dtype=np.int64)
    rows = x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    return x[first], inverse.reshape(-1).astype(np.int64)


def dedup_weighted(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Collapse identical ``(row of x, label)`` pairs → ``(x_distinct, y_distinct, counts)``.

    ``counts`` (float64) is how many input rows each distinct pair stands for (the sum of ``w`` when
    given). Training on the distinct pairs with ``counts`` as sample weights has the same objective
    as training on all rows (see :func:`hdfsad.training.weighted_loss`). Output is sorted, so it does
    not depend on the input order.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"dedup_weighted: x has {len(x)} rows but y has {len(y)} labels")
    xy = np.concatenate([x.astype(np.int64), y.astype(np.int64)[:, None]], axis=1)
    uniq, inverse = distinct_rows(xy)
    weights = np.ones(len(x)) if w is None else np.asarray(w, dtype=np.float64)
    counts = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(uniq))
    return uniq[:, :-1].copy(), uniq[:, -1].copy(), counts


def training_arrays(sequences: Any, labels: Sequence[int] | np.ndarray, max_len: int,
                    extra_windows: int = 0, dedup: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The training-set pipeline in memory: encode (+ augment) (+ dedup) → ``(x, y, weights)``.

    ``weights`` is ``None`` unless ``dedup``.
    """
    x, y = augment_windows(sequences, labels, max_len, extra_windows)
    if not dedup:
        return x, y.astype(np.int64), None
    return dedup_weighted(x, y)
