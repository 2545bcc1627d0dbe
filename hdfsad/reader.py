"""Batches for training: from numpy arrays in memory, or streamed from the Parquet ``sequences`` table.

Both sources have the same interface, ``batches(epoch) -> Iterator[Batch]`` and ``label_counts()``,
so the loop in :mod:`hdfsad.training` does not care where the rows come from.

Sharding (the Parquet reader): the unit of work is a Parquet row group (or a slice of one, see
``unit_rows``). For each epoch, every rank lists the units from the file metadata in the same order,
shuffles them with the same ``(seed, epoch)`` RNG and deals them out greedily to the least-loaded
rank (by metadata row count, ties to the lowest rank). So every rank computes the same assignment
without talking to the others, the ranks' subsets are disjoint and together cover every row exactly
once per epoch, and the assignment changes from epoch to epoch. Rows are then shuffled inside a
buffer of about ``shuffle_rows`` rows with a ``(seed, epoch, rank)`` RNG.

Ranks may get a few batches more or fewer than each other (row groups differ in size, and a row
filter is applied after the assignment); a DDP loop must tolerate uneven inputs (see
:func:`hdfsad.training.train_epoch`).

pyarrow and :mod:`hdfsad.schemas` (which imports pyspark) are imported inside the functions that
need them, so importing this module (and the training loop) needs neither.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import numpy as np
import torch

from hdfsad.models import DEFAULT_MAX_LEN
from hdfsad.preprocessing import augment_windows, extra_window_counts

#: Label given to rows whose ``label`` is null (unlabelled data); never fed to the loss.
UNLABELLED = -1


class Batch(NamedTuple):
    """One training batch: ``x`` (B, max_len) int64, ``y`` (B,) int64, ``w`` (B,) float32 or None."""

    x: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor | None = None


def _to_batch(x: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> Batch:
    return Batch(torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64)),
                 torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
                 None if w is None else torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))


def _fold_last_singleton(chunks: Iterable[tuple], batch_size: int) -> Iterator[tuple]:
    """Yield the chunks, merging a final chunk of one row into the one before it.

    A batch of one row cannot train a model with batch normalization; only the last chunk of a stream
    can be that short, so the last batch may hold ``batch_size + 1`` rows instead.
    """
    prev = None
    for chunk in chunks:
        if prev is not None and len(chunk[0]) == 1 and batch_size > 1:
            prev = tuple(None if a is None else np.concatenate([a, b]) for a, b in zip(prev, chunk))
            continue
        if prev is not None:
            yield prev
        prev = chunk
    if prev is not None:
        yield prev


def _slices(arrays: tuple, batch_size: int, drop_last: bool) -> Iterator[tuple]:
    n = len(arrays[0])
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        yield tuple(None if a is None else a[i:i + batch_size] for a in arrays)


class ArrayBatches:
    """Batches from in-memory arrays (``x`` encoded, ``y`` labels, ``w`` optional sample weights).

    Each epoch shuffles the rows with a ``(seed, epoch)`` RNG (when ``shuffle``; with ``passes`` > 1
    an epoch is that many passes, each shuffled anew), then rank ``r`` of ``world_size`` takes every
    ``world_size``-th row starting at ``r``. Batches carry ``w`` rescaled to
    mean 1 over all rows (all ranks), as :func:`hdfsad.training.weighted_loss` expects.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, *,
                 batch_size: int, shuffle: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False, passes: int = 1):
        if len(x) != len(y) or (w is not None and len(w) != len(y)):
            raise ValueError(f"ArrayBatches: x, y and w must have the same length, got {len(x)}, "
                             f"{len(y)}, {None if w is None else len(w)}")
        _check_shard(rank, world_size)
        self.x, self.y, self.w = np.asarray(x), np.asarray(y), None if w is None else np.asarray(w)
        total = 0.0 if w is None else float(self.w.sum())
        self._w_scale = len(self.w) / total if total > 0 else 1.0
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        if not (isinstance(passes, int) and passes >= 1):
            raise ValueError(f"passes: expected an integer >= 1, got {passes!r}")
        self.passes = passes

    def __len__(self) -> int:
        """Rows of this rank per epoch."""
        return len(range(self.rank, len(self.y) * self.passes, self.world_size))

    def label_counts(self) -> np.ndarray:
        """(normal, anomaly) totals over all ranks, weighted by ``w`` when given."""
        return _label_counts(self.y, self.w)

    def batches(self, epoch: int) -> Iterator[Batch]:
        n = len(self.y)
        if self.shuffle:
            order = np.concatenate([np.random.default_rng([self.seed, epoch, *([p] if p else [])])
                                    .permutation(n) for p in range(self.passes)])
        else:
            order = np.tile(np.arange(n), self.passes)
        idx = order[self.rank::self.world_size]
        arrays = (self.x[idx], self.y[idx], None if self.w is None else self.w[idx] * self._w_scale)
        for chunk in _fold_last_singleton(_slices(arrays, self.batch_size, self.drop_last),
                                          self.batch_size):
            yield _to_batch(*chunk)


def _label_counts(y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    y = np.asarray(y)
    keep = (y == 0) | (y == 1)
    weights = None if w is None else np.asarray(w, dtype=np.float64)[keep]
    return np.bincount(y[keep].astype(np.int64), weights=weights, minlength=2).astype(np.float64)


def _check_shard(rank: int, world_size: int) -> None:
    if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int)
            and 0 <= rank < world_size):
        raise ValueError(f"rank/world_size: expected 0 <= rank < world_size, got rank={rank!r}, "
                         f"world_size={world_size!r}")


@dataclass(frozen=True)
class TableTransform:
    """A ``sequences`` table chunk → ``(x, y)``: encode (and augment with ``extra_windows``).

    Null labels become :data:`UNLABELLED`.
    """

    max_len: int = DEFAULT_MAX_LEN
    extra_windows: int = 0

    def __call__(self, table: Any) -> tuple[np.ndarray, np.ndarray]:
        from hdfsad import schemas

        labels = _labels(table.column(schemas.LABEL))
        return augment_windows(table.column(schemas.EVENTS), labels, self.max_len, self.extra_windows)

    def rows_per_input(self, lengths: np.ndarray) -> np.ndarray:
        """How many output rows each input row becomes."""
        return 1 + extra_window_counts(lengths, self.max_len, self.extra_windows)


def _labels(column: Any) -> np.ndarray:
    return column.fill_null(UNLABELLED).to_numpy(zero_copy_only=False).astype(np.int64)


class Unit(NamedTuple):
    """A piece of work: rows ``[start, stop)`` of row group ``row_group`` of fragment ``fragment``."""

    fragment: int
    row_group: int
    start: int
    stop: int

    @property
    def num_rows(self) -> int:
        return self.stop - self.start


def _dataset(path: Any) -> Any:
    from hdfsad import schemas
    import pyarrow as pa
    import pyarrow.dataset as ds

    partitioning = ds.partitioning(pa.schema([(schemas.INGEST_DATE, pa.date32())]), flavor="hive")
    return ds.dataset(path, format="parquet", partitioning=partitioning)


class ShardedParquetReader:
    """Sharded, shuffled batches from a directory of Parquet files of the ``sequences`` schema.

    Args:
        path: a Parquet file, a directory (possibly hive-partitioned by ``ingest_date``) or a list of files.
        batch_size: rows per batch (the last batch may be shorter, or one longer; see
            ``_fold_last_singleton``), unless ``drop_last``.
        rank, world_size: this process's shard.
        seed: the same on every rank; with the epoch it fixes the assignment and the order.
        shuffle: shuffle units and rows each epoch (off: file order, for scoring-like passes).
        transform: table chunk → ``(x, y)``; default :class:`TableTransform` with ``max_len``.
        filter: a ``pyarrow.dataset`` expression rows must satisfy (partition pruning included).
        labelled_only: add ``label IS NOT NULL`` to the filter (what training wants).
        shuffle_rows: rows buffered before shuffling and batching.
        unit_rows: cut row groups into slices of at most this many rows (finer shards when there are
            few row groups for many ranks; each slice still reads its row group).
    """

    def __init__(self, path: Any, *, batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle: bool = True, max_len: int = DEFAULT_MAX_LEN,
                 transform: Callable[[Any], tuple[np.ndarray, np.ndarray]] | None = None,
                 filter: Any = None, labelled_only: bool = False, shuffle_rows: int = 65536,
                 unit_rows: int | None = None, drop_last: bool = False):
        from hdfsad import schemas

        _check_shard(rank, world_size)
        if batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        import pyarrow.dataset as ds

        if labelled_only:
            valid = ds.field(schemas.LABEL).is_valid()
            filter = valid if filter is None else filter & valid
        self.path, self.batch_size, self.rank, self.world_size = path, batch_size, rank, world_size
        self.seed, self.shuffle, self.filter, self.drop_last = seed, shuffle, filter, drop_last
        self.transform = transform if transform is not None else TableTransform(max_len)
        self.shuffle_rows, self.unit_rows = max(shuffle_rows, batch_size), unit_rows
        self._dataset = _dataset(path)
        self._fragments = sorted(self._dataset.get_fragments(filter=filter), key=lambda f: f.path)
        self._units = self._list_units()

    def _list_units(self) -> list[Unit]:
        units = []
        for i, frag in enumerate(self._fragments):
            frag.ensure_complete_metadata()
            for rg in frag.row_groups:
                step = self.unit_rows or max(rg.num_rows, 1)
                units += [Unit(i, rg.id, s, min(s + step, rg.num_rows))
                          for s in range(0, rg.num_rows, step)]
        return units

    def assignment(self, epoch: int) -> list[list[Unit]]:
        """The units of every rank for ``epoch``, each list in reading order."""
        order = np.arange(len(self._units))
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self._units))
        load = [0] * self.world_size
        shards: list[list[Unit]] = [[] for _ in range(self.world_size)]
        for k in order:
            unit = self._units[k]
            r = min(range(self.world_size), key=lambda j: (load[j], j))
            shards[r].append(unit)
            load[r] += unit.num_rows
        return shards

    def _read(self, unit: Unit, columns: list[str]) -> Any:
        frag = self._fragments[unit.fragment].subset(row_group_ids=[unit.row_group])
        if unit.start or unit.stop < frag.row_groups[0].num_rows:
            # slice by position first (units are defined on the stored rows), then filter; read every
            # column so that the filter finds the ones it names
            table = frag.to_table(schema=self._dataset.schema).slice(unit.start, unit.num_rows)
            if self.filter is not None:
                table = table.filter(self.filter)
            return table.select(columns)
        return frag.to_table(schema=self._dataset.schema, columns=columns, filter=self.filter)

    def _chunks(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray, None]]:
        from hdfsad import schemas

        rng = np.random.default_rng([self.seed, epoch, self.rank])
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        buffered = 0
        units = self.assignment(epoch)[self.rank]
        for i, unit in enumerate(units):
            x, y = self.transform(self._read(unit, [schemas.EVENTS, schemas.LABEL]))
            xs.append(x)
            ys.append(y)
            buffered += len(y)
            last = i == len(units) - 1
            if buffered < self.shuffle_rows and not last:
                continue
            x, y = np.concatenate(xs), np.concatenate(ys)
            if self.shuffle:
                perm = rng.permutation(len(y))
                x, y = x[perm], y[perm]
            full = len(y) - len(y) % self.batch_size
            yield from _slices((x[:full], y[:full], None), self.batch_size, False)
            xs, ys, buffered = [x[full:]], [y[full:]], len(y) - full
        if buffered and not self.drop_last:
            yield np.concatenate(xs), np.concatenate(ys), None

    def batches(self, epoch: int) -> Iterator[Batch]:
        """This rank's batches for ``epoch``."""
        for chunk in _fold_last_singleton(self._chunks(epoch), self.batch_size):
            yield _to_batch(*chunk)

    def label_counts(self) -> np.ndarray:
        """(normal, anomaly) rows over the whole dataset (all ranks), after the transform's
        augmentation when it declares ``rows_per_input``."""
        from hdfsad import schemas

        table = self._dataset.to_table(columns=[schemas.LABEL, schemas.LENGTH], filter=self.filter)
        labels = _labels(table.column(schemas.LABEL))
        per_row = getattr(self.transform, "rows_per_input", None)
        weights = None if per_row is None else per_row(
            table.column(schemas.LENGTH).to_numpy(zero_copy_only=False))
        return _label_counts(labels, weights)

    def shard_label_counts(self, epoch: int = 0) -> np.ndarray:
        """(normal, anomaly) rows of this rank's units for ``epoch``, counted as :meth:`label_counts`
        counts them; summed over the ranks (an all-reduce) they give :meth:`label_counts`, while each
        rank reads only its own shard."""
        from hdfsad import schemas

        per_row = getattr(self.transform, "rows_per_input", None)
        counts = np.zeros(2, dtype=np.float64)
        for unit in self.assignment(epoch)[self.rank]:
            table = self._read(unit, [schemas.LABEL, schemas.LENGTH])
            weights = None if per_row is None else per_row(
                table.column(schemas.LENGTH).to_numpy(zero_copy_only=False))
            counts += _label_counts(_labels(table.column(schemas.LABEL)), weights)
        return counts

    def shard_arrays(self, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """This rank's whole shard for ``epoch``, transformed, in reading order: ``(x, y)``."""
        from hdfsad import schemas

        parts = [self.transform(self._read(unit, [schemas.EVENTS, schemas.LABEL]))
                 for unit in self.assignment(epoch)[self.rank]]
        if not parts:
            return self.transform(self._dataset.head(0, columns=[schemas.EVENTS, schemas.LABEL]))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def num_rows(self) -> int:
        """Rows of the dataset (all ranks) that match the filter, before any augmentation."""
        return self._dataset.count_rows(filter=self.filter)


def read_all(path: Any, columns: list[str] | None = None, filter: Any = None) -> dict[str, np.ndarray]:
    """A small table in memory, one numpy array per column (for validation/test sets, tests).

    Conversion is pyarrow's ``to_numpy``: a list column becomes an object array of integer arrays
    (which :func:`hdfsad.preprocessing.encode` accepts), an integer column with nulls becomes float
    with NaN, timestamps become ``datetime64``.
    """
    table = _dataset(path).to_table(columns=columns, filter=filter)
    return {name: table.column(name).to_numpy() for name in table.column_names}
