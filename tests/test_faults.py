"""Hostile input and resource bounds: the ingest never crashes and accounts for every line read.

* a property-based test (hypothesis) feeds the parser random and adversarial lines: random bytes,
  invalid UTF-8, NUL bytes, over-long lines, lines naming hundreds of block ids, templates with missing
  parts, tabs for spaces, CRLF line ends; every line read is a good record (with an event per distinct
  block it names, its template's id or the unknown id) or one row of ``rejects``, exactly once;
* a single block with a million events is capped at ``ingest.max_events_per_block`` (its last events
  kept, the cap counted in the summary) without exhausting the driver's 2 GB.
"""
from __future__ import annotations

import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from hdfsad.config import load_config
from hdfsad.ingest import run_ingest
from hdfsad.templates import UNKNOWN_EVENT_ID, load_templates

from conftest import TEST_OVERRIDES

DATE = "2008-11-09"
MAX_LINE = 2000
BLOCK = re.compile(rb"blk_-?[0-9]+")


def _template_texts() -> list[str]:
    return [t.template for t in load_templates()]


def _fill(template: str, draw) -> str:
    """A template with its variable parts replaced: block ids, numbers, or nothing at all."""
    parts = template.split("<*>")
    out = [parts[0]]
    for part in parts[1:]:
        out.append(draw(st.sampled_from(["blk_-42", "blk_7", " blk_123456789012345678 ", "10.0.0.1:50010",
                                         "", "/a/b", "x", "blk_"])))
        out.append(part)
    text = "".join(out)
    if draw(st.booleans()):  # a template with a missing part: cut somewhere
        text = text[: draw(st.integers(0, len(text)))]
    return text


HEADERS = ["081109 203615 148 INFO dfs.DataNode: ", "081109 203615 148 INFO dfs.FSNamesystem: ",
           "081109\t203615\t148\tINFO\tdfs.DataNode:\t", "081309 203615 148 INFO dfs.DataNode: ",
           "081109 253615 148 WARN dfs.DataNode$PacketResponder: ", "081109 203615 148 INFO ", ""]


@st.composite
def hostile_line(draw) -> bytes:
    kind = draw(st.sampled_from(["template", "template", "bytes", "utf8_garbage", "huge", "many_blocks", "nul"]))
    header = draw(st.sampled_from(HEADERS)).encode()
    if kind == "template":
        body = _fill(draw(st.sampled_from(_template_texts())), draw).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=120))
    elif kind == "utf8_garbage":
        body = b"Receiving block blk_5 \xff\xfe\xc3(" + draw(st.binary(max_size=20))
    elif kind == "huge":
        body = b"Receiving block blk_9 " + b"x" * draw(st.integers(MAX_LINE - 60, MAX_LINE + 200))
    elif kind == "many_blocks":
        n = draw(st.integers(100, 400))
        body = ("Deleting block " + " ".join(f"blk_{draw(st.integers(-50, 50))}" for _ in range(n))).encode()
    else:
        body = b"Reopen Block blk_3\x00 blk_4"
    # one record per line: line breaks inside a generated line would make it several lines
    return (header + body).replace(b"\r", b" ").replace(b"\n", b" ")


@pytest.fixture(scope="module")
def events_cfg():
    return load_config(overrides=[*TEST_OVERRIDES, "ingest.keep_events=true", f"ingest.max_line_chars={MAX_LINE}"])


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(lines=st.lists(hostile_line(), min_size=1, max_size=40), crlf=st.booleans())
def test_fuzzed_lines_never_crash_the_ingest_and_are_each_accounted_for_once(spark, events_cfg, tmp_path_factory,
                                                                            lines, crlf):
    base = tmp_path_factory.mktemp("fuzz")
    os.makedirs(base / "in")
    with open(base / "in" / "hostile.log", "wb") as fh:
        fh.write((b"\r\n" if crlf else b"\n").join(lines) + b"\n")

    s = run_ingest(spark, events_cfg, [str(base / "in")], DATE, tables=str(base / "t"))

    assert s.lines == len(lines)
    rejects = spark.read.parquet(s.tables["rejects"]).collect() if s.rejected else []
    assert len(rejects) == s.rejected == sum(s.rejects.values())
    events = spark.read.parquet(s.tables["events"]) if s.events else None
    good_lines = events.select("file_no", "split_start", "row_in_split").distinct().count() if events else 0
    assert good_lines + s.rejected == s.lines  # every line exactly once: a good record or a reject
    assert s.events == (events.count() if events else 0)
    if events is not None:
        ids = {r.event_id for r in events.select("event_id").distinct().collect()}
        assert ids <= set(range(UNKNOWN_EVENT_ID + 1))
        # a good record yields one event per distinct block id it names
        per_line = events.groupBy("file_no", "split_start", "row_in_split").count().collect()
        assert sum(r["count"] for r in per_line) == s.events
    # rejected lines name their reason; a line over the bound is always rejected as too_long
    reasons = {r.reason for r in rejects}
    assert reasons <= {"binary", "too_long", "bad_header", "bad_timestamp", "no_block_id"}
    huge = sum(len(l) > MAX_LINE for l in lines)
    assert s.rejects["too_long"] == huge
    # a line with no block id at all is never a good record
    assert good_lines <= sum(bool(BLOCK.search(l)) for l in lines)


@pytest.mark.slow
def test_a_block_with_a_million_events_is_capped_and_counted(spark, tmp_path):
    n, cap = 1_000_000, 1000
    line = "081109 203615 148 INFO dfs.DataNode: Receiving block blk_1 src: /10.0.0.1:1 dest: /10.0.0.2:50010\n"
    last = "081109 203616 148 INFO dfs.DataNode: Verification succeeded for blk_1\n"
    os.makedirs(tmp_path / "in")
    with open(tmp_path / "in" / "big.log", "w") as fh:
        fh.write(line * (n - 1) + last)
        fh.write("081109 203616 148 INFO dfs.DataNode: Verification succeeded for blk_2\n")
    cfg = load_config(overrides=[*TEST_OVERRIDES, f"ingest.max_events_per_block={cap}"])

    s = run_ingest(spark, cfg, [str(tmp_path / "in")], DATE, tables=str(tmp_path / "t"))

    assert (s.lines, s.events, s.blocks, s.capped_blocks, s.rejected) == (n + 1, n + 1, 2, 1, 0)
    assert "blocks capped at ingest.max_events_per_block  1" in s.render()
    rows = {r.block_id: r for r in spark.read.parquet(s.tables["sequences"]).where(F.col("ingest_date") == DATE)
            .collect()}
    assert rows["blk_1"].length == cap and len(rows["blk_1"].events) == cap
    assert rows["blk_1"].events[-1] == 1 and rows["blk_1"].events[:-1] == [4] * (cap - 1)  # the last events kept
    assert rows["blk_2"].events == [1]


def test_an_input_whose_every_line_is_rejected_is_still_counted(spark, cfg, tmp_path):
    # Regression: adaptive execution used to prune the (empty) grouping stage and the job's
    # observations with it, so the summary read 0 lines and 0 rejects for this input.
    os.makedirs(tmp_path / "in")
    (tmp_path / "in" / "bad.log").write_bytes(b"081109 203615 148 INFO dfs.DataNode: Reopen Block blk_3\x00\n"
                                              b"not a log line\n")
    s = run_ingest(spark, cfg, [str(tmp_path / "in")], DATE, tables=str(tmp_path / "t"))
    assert (s.lines, s.events, s.blocks, s.rejected) == (2, 0, 0, 2)
    assert {k: v for k, v in s.rejects.items() if v} == {"binary": 1, "bad_header": 1}
    assert sorted(r.reason for r in spark.read.parquet(s.tables["rejects"]).collect()) == ["bad_header", "binary"]
