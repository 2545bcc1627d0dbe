"""The sharded Parquet reader and the in-memory batch source."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch

from hdfsad import schemas
from hdfsad.preprocessing import encode
from hdfsad.reader import ArrayBatches, ShardedParquetReader, TableTransform, read_all

torch.set_num_threads(1)
SCHEMA = schemas.arrow_schema(schemas.SEQUENCES_SCHEMA)
BASE = 29  # row id i is written as events [i // 29**2 % 29, i // 29 % 29, i % 29]


def events_of(i: int) -> list[int]:
    return [i // BASE ** 2 % BASE, i // BASE % BASE, i % BASE]


def row_ids(x: torch.Tensor) -> list[int]:
    """Decode the row ids written by :func:`events_of` from encoded (shifted, padded) rows."""
    d = x[:, -3:].numpy() - 1
    return (d[:, 0] * BASE ** 2 + d[:, 1] * BASE + d[:, 2]).tolist()


def table(ids: range, date: str = "2024-01-01") -> pa.Table:
    ts = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    rows = {
        schemas.BLOCK_ID: [f"blk_{i}" for i in ids],
        schemas.EVENTS: [events_of(i) for i in ids],
        schemas.LENGTH: [3] * len(ids),
        schemas.FIRST_TS: [ts] * len(ids),
        schemas.LAST_TS: [ts] * len(ids),
        schemas.LABEL: [None if i % 7 == 6 else int(i % 3 == 0) for i in ids],
        schemas.INGEST_DATE: [dt.date.fromisoformat(date)] * len(ids),
    }
    return pa.table(rows, schema=SCHEMA)


@pytest.fixture()
def plain(tmp_path):
    """130 rows in three files with row groups of 10 (one file has a short last group)."""
    for k, ids in enumerate([range(0, 50), range(50, 95), range(95, 130)]):
        pq.write_table(table(ids), tmp_path / f"part-{k}.parquet", row_group_size=10)
    return tmp_path


@pytest.fixture()
def hive(tmp_path):
    """Hive-partitioned by ingest_date (the column lives in the directory names only)."""
    for date, ids in [("2024-01-01", range(0, 40)), ("2024-01-02", range(40, 75))]:
        part = tmp_path / f"{schemas.INGEST_DATE}={date}"
        part.mkdir()
        pq.write_table(table(ids, date).drop_columns([schemas.INGEST_DATE]), part / "p.parquet",
                       row_group_size=8)
    return tmp_path


def epoch_ids(path, world_size, epoch, **kw):
    shards = []
    for rank in range(world_size):
        reader = ShardedParquetReader(path, batch_size=7, rank=rank, world_size=world_size, seed=5, **kw)
        shards.append([i for b in reader.batches(epoch) for i in row_ids(b.x)])
    return shards


@pytest.mark.parametrize("fixture, total", [("plain", 130), ("hive", 75)])
def test_two_shards_cover_every_row_once_per_epoch(request, fixture, total):
    path = request.getfixturevalue(fixture)
    orders = []
    for epoch in range(4):
        a, b = epoch_ids(path, 2, epoch, shuffle_rows=16)
        assert not set(a) & set(b)
        assert sorted(a + b) == list(range(total))
        assert abs(len(a) - len(b)) <= 10  # balanced by row-group size
        orders.append(a + b)
    assert len({tuple(o) for o in orders}) == 4  # every epoch has its own order
    assert epoch_ids(path, 2, 1, shuffle_rows=16) == epoch_ids(path, 2, 1, shuffle_rows=16)


def test_three_shards_and_sliced_row_groups(plain):
    shards = epoch_ids(plain, 3, 0, unit_rows=4)
    assert sorted(sum(shards, [])) == list(range(130))
    assert all(len(set(s)) == len(s) for s in shards)
    one_group = plain / "one"
    one_group.mkdir()
    pq.write_table(table(range(9)), one_group / "x.parquet")
    a, b = epoch_ids(one_group, 2, 0, unit_rows=3)
    assert a and b and sorted(a + b) == list(range(9))


def test_batches_labels_and_filters(plain):
    reader = ShardedParquetReader(plain, batch_size=16, labelled_only=True, seed=1)
    batches = list(reader.batches(0))
    assert all(b.x.dtype == torch.int64 and b.x.shape[1] == 19 for b in batches)
    assert [len(b.y) for b in batches[:-1]] == [16] * (len(batches) - 1)
    ids = [i for b in batches for i in row_ids(b.x)]
    labels = [int(v) for b in batches for v in b.y]
    assert sorted(ids) == [i for i in range(130) if i % 7 != 6]
    assert labels == [int(i % 3 == 0) for i in ids]
    unl = ShardedParquetReader(plain, batch_size=200, shuffle=False)
    (only,) = list(unl.batches(0))
    assert row_ids(only.x) == list(range(130))
    assert only.y.tolist() == [-1 if i % 7 == 6 else int(i % 3 == 0) for i in range(130)]
    assert ShardedParquetReader(plain, batch_size=4, filter=ds.field(schemas.LABEL) == 1).num_rows() == \
        sum(1 for i in range(130) if i % 7 != 6 and i % 3 == 0)


def test_partition_filter_and_label_counts(hive):
    day2 = ShardedParquetReader(hive, batch_size=5, filter=ds.field(schemas.INGEST_DATE) == dt.date(2024, 1, 2))
    assert sorted(i for b in day2.batches(0) for i in row_ids(b.x)) == list(range(40, 75))
    sliced = [ShardedParquetReader(hive, batch_size=4, rank=r, world_size=2, unit_rows=3, labelled_only=True,
                                   filter=ds.field(schemas.INGEST_DATE) == dt.date(2024, 1, 2)) for r in range(2)]
    got = [i for reader in sliced for b in reader.batches(1) for i in row_ids(b.x)]
    assert sorted(got) == [i for i in range(40, 75) if i % 7 != 6]
    reader = ShardedParquetReader(hive, batch_size=5, labelled_only=True)
    anomalies = sum(1 for i in range(75) if i % 7 != 6 and i % 3 == 0)
    normals = sum(1 for i in range(75) if i % 7 != 6) - anomalies
    assert reader.label_counts().tolist() == [normals, anomalies]


def test_augmenting_transform_counts_its_windows(tmp_path):
    seqs = [list(range(25)), list(range(19)), list(range(21))]
    t = pa.table({schemas.BLOCK_ID: ["a", "b", "c"], schemas.EVENTS: seqs, schemas.LENGTH: [25, 19, 21],
                  schemas.FIRST_TS: [None] * 3, schemas.LAST_TS: [None] * 3, schemas.LABEL: [1, 0, 0],
                  schemas.INGEST_DATE: [dt.date(2024, 1, 1)] * 3}, schema=SCHEMA)
    pq.write_table(t, tmp_path / "a.parquet")
    reader = ShardedParquetReader(tmp_path, batch_size=50, transform=TableTransform(19, extra_windows=3))
    (batch,) = list(reader.batches(0))
    assert len(batch.y) == 3 + 3 + 0 + 2
    assert sorted(batch.y.tolist()) == [0] * 4 + [1] * 4
    assert reader.label_counts().tolist() == [4.0, 4.0]  # a: 1 + 3 anomalies; b: 1, c: 1 + 2 normal


def test_read_all_returns_numpy(hive):
    got = read_all(hive, columns=[schemas.EVENTS, schemas.LABEL, schemas.INGEST_DATE],
                   filter=ds.field(schemas.INGEST_DATE) == dt.date(2024, 1, 1))
    assert set(got) == {schemas.EVENTS, schemas.LABEL, schemas.INGEST_DATE}
    assert len(got[schemas.EVENTS]) == 40 and set(got[schemas.INGEST_DATE].tolist()) == {dt.date(2024, 1, 1)}
    assert np.array_equal(np.sort(row_ids(torch.from_numpy(encode(got[schemas.EVENTS], 19)))), np.arange(40))


def test_array_batches_shard_shuffle_and_fold_singleton():
    x = np.arange(21)[:, None].repeat(19, axis=1)
    y = np.arange(21) % 2
    src = ArrayBatches(x, y, batch_size=4, seed=2, rank=0, world_size=1)
    sizes = [len(b.y) for b in src.batches(0)]
    assert sizes == [4, 4, 4, 4, 5]  # a last batch of one row joins the one before it
    rows = [int(v) for b in src.batches(0) for v in b.x[:, 0]]
    assert sorted(rows) == list(range(21)) and rows != [int(v) for b in src.batches(1) for v in b.x[:, 0]]
    parts = [[int(v) for b in ArrayBatches(x, y, batch_size=3, rank=r, world_size=2).batches(3)
              for v in b.x[:, 0]] for r in range(2)]
    assert sorted(parts[0] + parts[1]) == list(range(21)) and not set(parts[0]) & set(parts[1])
    w = np.arange(21, dtype=float)
    assert ArrayBatches(x, y, w, batch_size=4).label_counts().tolist() == [w[0::2].sum(), w[1::2].sum()]


def test_bad_shard_arguments():
    with pytest.raises(ValueError) as err:
        ArrayBatches(np.zeros((2, 3)), np.zeros(2), batch_size=1, rank=2, world_size=2)
    assert "expected 0 <= rank < world_size, got rank=2, world_size=2" in str(err.value)
