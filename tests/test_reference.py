"""The importer of the reference CSV format, and the round trip on the real data when present."""
from __future__ import annotations

import gzip
import os

import pytest
from pyspark.sql import functions as F

from hdfsad import synth
from hdfsad.ingest import run_ingest
from hdfsad.reference import check_reference, read_reference
from hdfsad.schemas import SEQUENCES_SCHEMA


def test_import_reference_csv_into_the_sequences_schema(spark, tmp_path):
    path = tmp_path / "ref.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write('id,sequence,class\n0,"(4, 4, 21)",normal\n1,"(7,)",abnormal\n2,"(21, 4, 30)",Normal\n')
    df = read_reference(spark, str(path), "2008-11-09")
    assert df.schema.simpleString() == SEQUENCES_SCHEMA.simpleString()
    rows = {r.block_id: r for r in df.collect()}
    assert rows["seq-0"].events == [4, 4, 21] and rows["seq-0"].label == 0 and rows["seq-0"].length == 3
    assert rows["seq-1"].events == [7] and rows["seq-1"].label == 1
    assert rows["seq-2"].label == 0 and str(rows["seq-2"].ingest_date) == "2008-11-09"


def test_unlabelled_reference_csv_and_wrong_columns(spark, tmp_path):
    (tmp_path / "t.csv").write_text('id,sequence\n5,"(1, 2)"\n')
    [row] = read_reference(spark, str(tmp_path / "t.csv")).collect()
    assert (row.block_id, row.events, row.label) == ("seq-5", [1, 2], None)
    (tmp_path / "junk.csv").write_text('id,sequence\n5,"(1, 2)"\n6,"(1, x)"\n')
    with pytest.raises(ValueError, match='row 6 has a sequence that is not a tuple of integers'):
        check_reference(read_reference(spark, str(tmp_path / "junk.csv")), "junk.csv")
    (tmp_path / "bad.csv").write_text("BlockId,Label\nblk_1,Normal\n")
    with pytest.raises(ValueError, match="expected columns id,sequence\\[,class\\]; found BlockId,Label"):
        read_reference(spark, str(tmp_path / "bad.csv"))


def test_real_reference_rows_round_trip_through_raw_logs(spark, cfg, tmp_path, reference_dir):
    csv_path = os.path.join(reference_dir, "hdfs_v1", "log_classification_train.csv.gz")
    res = synth.render(csv_path, str(tmp_path / "logs"), n_files=3, limit=3000)
    s = run_ingest(spark, cfg, res.log_files, "2008-11-09", labels=res.labels_csv, tables=str(tmp_path / "t"))
    got = {r.block_id: (r.events, r.label) for r in
           spark.read.parquet(s.tables["sequences"]).select("block_id", "events", "label").collect()}
    want = {}
    for k, events, label in synth.read_reference_csv(csv_path):
        if k >= 3000:
            break
        want[synth.reference_block_id(k)] = (events, label)
    assert s.rejected == 0 and got == want
    imported = read_reference(spark, csv_path).where(F.col("block_id").isin([f"seq-{k}" for k in range(3000)]))
    assert {int(r.block_id[4:]): r.events for r in imported.collect()} == \
        {k: want[synth.reference_block_id(k)][0] for k in range(3000)}
