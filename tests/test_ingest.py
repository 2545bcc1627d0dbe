"""The ingest stage end to end on files it writes itself: ordering, labels, bad input, round trip."""
from __future__ import annotations

import gzip
import os
import random

import pytest
from pyspark.sql import functions as F

from hdfsad import synth
from hdfsad.ingest import run_ingest, validate_date
from hdfsad.inputs import InputError
from hdfsad.schemas import SEQUENCES_SCHEMA

DATE = "2008-11-09"


def write(path, lines, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(lines, bytes):
        with open(path, "wb") as fh:
            fh.write(lines)
        return path
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as fh:
        fh.write("".join(l + "\n" for l in lines))
    return path


def rec(time, content, blk="blk_7"):
    return f"081109 {time} 148 INFO dfs.DataNode: {content.format(blk=blk)}"


def sequences(spark, summary, date=DATE):
    df = spark.read.parquet(summary.tables["sequences"]).where(F.col("ingest_date") == date)
    return {r.block_id: r for r in df.collect()}


def rejects(spark, summary, date=DATE):
    return spark.read.parquet(summary.tables["rejects"]).where(F.col("ingest_date") == date).collect()


def test_event_order_is_timestamp_then_file_then_line(spark, cfg, tmp_path):
    # Same second in two files, and an earlier timestamp that comes later in a file.
    write(str(tmp_path / "in/a.log"), [
        rec("203616", "Reopen Block {blk}"),                       # 18, t=16, a:0
        rec("203615", "Receiving empty packet for block {blk}"),   # 12, t=15, a:1
        rec("203616", "Verification succeeded for {blk}"),         # 1,  t=16, a:2
    ])
    write(str(tmp_path / "in/b.log"), [
        rec("203615", "Deleting block {blk} file /x/{blk}"),       # 20, t=15, b:0
        rec("203616", "Adding an already existing block {blk}"),   # 0,  t=16, b:1
    ])
    s = run_ingest(spark, cfg, [str(tmp_path / "in")], DATE, tables=str(tmp_path / "t"))
    seq = sequences(spark, s)["blk_7"]
    assert seq.events == [12, 20, 18, 1, 0]
    assert seq.length == 5
    assert (str(seq.first_ts), str(seq.last_ts)) == ("2008-11-09 20:36:15", "2008-11-09 20:36:16")
    assert seq.label is None


def test_labels_are_joined(spark, cfg, tmp_path):
    write(str(tmp_path / "in/x.log"), [rec("203615", "Reopen Block {blk}", b) for b in ("blk_1", "blk_-2", "blk_3")])
    labels = write(str(tmp_path / "labels.csv"), ["BlockId,Label", "blk_1,Normal", "blk_-2,Anomaly", "blk_9,Anomaly",
                                                   "blk_3,Weird"])
    s = run_ingest(spark, cfg, [str(tmp_path / "in/x.log")], DATE, labels=labels, tables=str(tmp_path / "t"))
    seqs = sequences(spark, s)
    assert {b: r.label for b, r in seqs.items()} == {"blk_1": 0, "blk_-2": 1, "blk_3": None}
    assert s.labelled_blocks == 2 and s.bad_labels == 1


def test_bad_input_is_counted_and_kept_with_reasons(spark, cfg, tmp_path):
    d = tmp_path / "in"
    good = [rec("203615", "Receiving block {blk} src: /1.2.3.4:5 dest: /1.2.3.4:50010", f"blk_{i}") for i in range(50)]
    write(str(d / "good.log"), good + [rec("203615", "An unheard-of message about {blk}")])
    write(str(d / "bad.log"), [
        "this is not a log record",
        rec("203615", "Reopen Block without any id"),
        rec("203615", "x" * (1 << 20) + " {blk}"),
    ])
    write(str(d / "binary.log"), b"\x00\x01\x02\xff\xfe junk\n081109 203615 1 INFO c: \xc3\x28 blk_5\n")
    write(str(d / "empty.log"), b"")
    whole = "".join(l + "\n" for l in good).encode()
    gz = gzip.compress(whole * 20)
    write(str(d / "truncated.log.gz"), gz[: len(gz) * 2 // 3])
    s = run_ingest(spark, cfg, [str(d)], DATE, tables=str(tmp_path / "t"))

    assert s.files == 5
    assert s.rejects["bad_header"] == 1
    assert s.rejects["no_block_id"] == 1
    assert s.rejects["too_long"] == 1
    assert s.rejects["binary"] == 2
    assert s.rejects["empty_file"] == 1
    assert s.rejects["truncated_file"] == 1
    assert s.unknown_lines == 1
    kept = rejects(spark, s)
    by_reason = {}
    for r in kept:
        by_reason.setdefault(r.reason, []).append(r)
    assert {k: len(v) for k, v in by_reason.items()} == {k: v for k, v in s.rejects.items() if v}
    assert by_reason["empty_file"][0].source.endswith("empty.log")
    assert by_reason["truncated_file"][0].source.endswith("truncated.log.gz")
    assert "EOF" in by_reason["truncated_file"][0].raw or "end of" in by_reason["truncated_file"][0].raw.lower()
    assert len(by_reason["too_long"][0].raw) == cfg["ingest"]["reject_raw_chars"]
    assert by_reason["bad_header"][0].raw == "this is not a log record"
    # Every line read is accounted for: events of good lines + rejected lines.
    good_lines = s.lines - sum(s.rejects[r] for r in ("bad_header", "no_block_id", "too_long", "binary"))
    assert s.events == good_lines
    # The readable part of the truncated file was kept (some, not all, of its 20 x 50 lines).
    assert 51 + 5 < s.lines < 51 + 5 + 1000
    assert "rejects" in s.render() and "truncated_file" in s.render()


def test_rerun_of_a_date_replaces_its_partition_only(spark, cfg, tmp_path):
    tables = str(tmp_path / "t")
    write(str(tmp_path / "a.log"), [rec("203615", "Reopen Block {blk}", "blk_1"), "junk"])
    write(str(tmp_path / "b.log"), [rec("203615", "Reopen Block {blk}", "blk_2")])
    run_ingest(spark, cfg, [str(tmp_path / "a.log")], "2008-11-09", tables=tables)
    run_ingest(spark, cfg, [str(tmp_path / "a.log")], "2008-11-10", tables=tables)
    s = run_ingest(spark, cfg, [str(tmp_path / "b.log")], "2008-11-10", tables=tables)
    rows = spark.read.parquet(s.tables["sequences"]).select("ingest_date", "block_id").collect()
    assert sorted((str(r.ingest_date), r.block_id) for r in rows) == [("2008-11-09", "blk_1"), ("2008-11-10", "blk_2")]
    rej = spark.read.parquet(s.tables["rejects"]).select("ingest_date").collect()
    assert [str(r.ingest_date) for r in rej] == ["2008-11-09"]


def test_missing_input_and_bad_date_fail_with_a_clear_message(spark, cfg, tmp_path):
    with pytest.raises(InputError, match="matches no file or directory"):
        run_ingest(spark, cfg, [str(tmp_path / "nothing-*.log")], DATE, tables=str(tmp_path / "t"))
    with pytest.raises(ValueError, match="expected YYYY-MM-DD"):
        validate_date("09/11/2008")


def test_empty_input_gives_a_clean_run_with_zero_rows(spark, cfg, tmp_path):
    write(str(tmp_path / "empty.log"), b"")
    s = run_ingest(spark, cfg, [str(tmp_path / "empty.log")], DATE, tables=str(tmp_path / "t"))
    assert (s.lines, s.events, s.blocks) == (0, 0, 0)
    assert s.rejects["empty_file"] == 1


def _random_sequences(n, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        length = rng.choice([1, 2, 5, 19, 19, 23, 40, 120])
        events = [rng.randrange(31) for _ in range(length)]
        rows.append((synth.reference_block_id(i), events, rng.choice([0, 1, None])))
    return rows


@pytest.mark.parametrize("compress", [None, "gz", "bz2"])
def test_round_trip_render_then_ingest_gives_back_every_sequence(spark, cfg, tmp_path, compress):
    rows = _random_sequences(3000 if compress is None else 600, seed=11)
    res = synth.render_sequences(rows, str(tmp_path / "logs"), n_files=3, seed=5, compress=compress)
    s = run_ingest(spark, cfg, res.log_files, DATE, labels=res.labels_csv, tables=str(tmp_path / "t"))
    got = sequences(spark, s)
    assert s.rejected == 0
    assert len(got) == len(rows)
    for blk, events, label in rows:
        assert got[blk].events == events, blk
        assert got[blk].label == label


def test_generated_logs_ingest_cleanly_with_labels(spark, cfg, tmp_path):
    res = synth.generate(str(tmp_path / "logs"), 400, anomaly_rate=0.1, seed=4, n_files=3, compress="gz")
    s = run_ingest(spark, cfg, [str(tmp_path / "logs/*.log.gz")], DATE, labels=res.labels_csv,
                   tables=str(tmp_path / "t"))
    assert (s.lines, s.blocks, s.rejected, s.unknown_lines) == (res.lines, 400, 0, 0)
    assert spark.read.parquet(s.tables["sequences"]).schema.simpleString() == SEQUENCES_SCHEMA.simpleString()
    seqs = sequences(spark, s)
    assert sum(r.label for r in seqs.values()) == res.anomalies
    assert all(r.events[0] == 21 for r in seqs.values() if r.label == 0)
