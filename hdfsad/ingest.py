"""The ingest stage: raw log files → parsed events → block sequences (+ labels) → Parquet tables.

:func:`run_ingest` wires the pure pieces together (``inputs`` → ``parsing`` → ``sequences``) and
writes ``sequences``, ``rejects`` and optionally ``events`` under ``paths.tables``, partitioned by
``ingest_date`` (re-running a date replaces that date's partition only).
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from hdfsad import inputs as I
from hdfsad import schemas as S
from hdfsad.observations import metrics
from hdfsad.parsing import parse_lines
from hdfsad.sequences import build_sequences, events_of, read_labels, to_table, with_labels
from hdfsad.tables import drop_partition, replace_partition, table_path, write_partition
from hdfsad.templates import UNKNOWN_EVENT_ID

LINE_REASONS = ("binary", "too_long", "bad_header", "bad_timestamp", "no_block_id")


@dataclass
class IngestSummary:
    ingest_date: str
    files: int = 0
    lines: int = 0
    events: int = 0
    blocks: int = 0
    unknown_lines: int = 0
    capped_blocks: int = 0
    labelled_blocks: int = 0
    bad_labels: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())

    def render(self) -> str:
        rows = [
            ("ingest date", self.ingest_date), ("input files", self.files), ("lines read", self.lines),
            ("events", self.events), ("blocks", self.blocks),
            ("unknown-template lines", self.unknown_lines),
            ("blocks capped at ingest.max_events_per_block", self.capped_blocks),
            ("labelled blocks", self.labelled_blocks), ("label rows not Normal/Anomaly", self.bad_labels),
            ("rejects", self.rejected),
        ]
        rows += [(f"  rejects: {r}", n) for r, n in sorted(self.rejects.items()) if n]
        rows += [(f"time: {stage}", f"{sec:.1f} s") for stage, sec in self.seconds.items()]
        rows += [(f"table: {name}", path) for name, path in self.tables.items()]
        width = max(len(k) for k, _ in rows)
        return "\n".join(["ingest summary"] + [f"  {k:<{width}}  {v}" for k, v in rows])


def validate_date(text: str | None) -> str:
    """``YYYY-MM-DD`` (today, UTC, when None); anything else fails with the expected format."""
    if text is None:
        return dt.datetime.now(dt.timezone.utc).date().isoformat()
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"--date '{text}' is not a date; expected YYYY-MM-DD, e.g. 2008-11-09") from None


def read_lines(spark, files: Sequence[I.InputFile]) -> DataFrame:
    """One row per line: value, source file, file number, split start, row number within the split.

    The file number (position in the sorted input list) orders files in the sequence key; it is
    joined from a small broadcast table so the shuffle carries an int, not the path, per event.
    """
    numbers = spark.createDataFrame([(f.uri, i) for i, f in enumerate(files)], f"{S.SOURCE} string, file_no int")
    lines = spark.read.option("ignoreCorruptFiles", "true").text([f.path for f in files]).select(
        "value",
        F.col("_metadata.file_path").alias(S.SOURCE),
        F.col("_metadata.file_block_start").alias("split_start"),
        F.monotonically_increasing_id().alias("row_in_split"),
    )
    return lines.join(F.broadcast(numbers), S.SOURCE, "left")


def rejects_of(parsed: DataFrame, raw_chars: int) -> DataFrame:
    return parsed.where(F.col("reason").isNotNull()).select(
        S.SOURCE, F.substring("value", 1, raw_chars).alias(S.RAW), F.col("reason").alias(S.REASON))


def file_rejects(spark, problems: Sequence[I.InputFile]) -> DataFrame:
    rows = [(f.path, f.detail, f.problem) for f in problems]
    return spark.createDataFrame(rows, f"{S.SOURCE} string, {S.RAW} string, {S.REASON} string")


def line_metrics() -> list:
    """Per-line counters gathered while the sequences are built (no extra pass)."""
    reason = F.col("reason")
    return [F.count(F.lit(1)).alias("lines"),
            F.sum(F.when(reason.isNull() & (F.col(S.EVENT_ID) == UNKNOWN_EVENT_ID), 1).otherwise(0))
            .alias("unknown_lines")] + [
        F.sum(F.when(reason == r, 1).otherwise(0)).alias(r) for r in LINE_REASONS]


def _sequences_pass(parsed: DataFrame, label_df: DataFrame | None, cap: int, ingest_date: str,
                    path: str, summary: IngestSummary) -> None:
    """Build and write the sequences; fill the summary's counters from observations of the same job."""
    obs_lines, obs_events, obs_seqs = Observation("lines"), Observation("events"), Observation("sequences")
    events = events_of(parsed.observe(obs_lines, *line_metrics())).observe(
        obs_events, F.count(F.lit(1)).alias("events"))
    seqs = with_labels(build_sequences(events, cap), label_df).observe(
        obs_seqs, F.count(F.lit(1)).alias("blocks"),
        F.sum(F.when(F.col("full_length") > cap, 1).otherwise(0)).alias("capped"),
        F.sum(F.when(F.col(S.LABEL).isNotNull(), 1).otherwise(0)).alias("labelled"))
    write_partition(to_table(seqs, ingest_date), path)
    lines, seq_stats = metrics(obs_lines), metrics(obs_seqs)
    summary.lines = int(lines.get("lines") or 0)
    summary.unknown_lines = int(lines.get("unknown_lines") or 0)
    summary.rejects = {r: int(lines.get(r) or 0) for r in LINE_REASONS}
    summary.events = int(metrics(obs_events).get("events") or 0)
    summary.blocks = int(seq_stats.get("blocks") or 0)
    summary.capped_blocks = int(seq_stats.get("capped") or 0)
    summary.labelled_blocks = int(seq_stats.get("labelled") or 0)


def run_ingest(spark, cfg: Mapping, inputs: Sequence[str], ingest_date: str,
               labels: str | None = None, tables: str | None = None) -> IngestSummary:
    """Ingest ``inputs`` into the ``ingest_date`` partitions of the stage tables under ``tables``.

    One pass over the input builds the sequences and counts lines, events, unknown templates and
    rejects by reason (Spark observations, no extra job). Only when that pass saw rejected lines is
    the input read again to keep them; clean input is read once.
    """
    icfg = cfg["ingest"]
    root = tables or cfg["paths"]["tables"]
    summary = IngestSummary(ingest_date=ingest_date)
    summary.tables = {name: table_path(root, name) for name in ("sequences", "rejects")}
    t0 = time.time()

    checked = I.inspect_all(spark, I.resolve(spark, inputs), icfg["verify_compressed"])
    summary.files = len(checked)
    readable = [f for f in checked if f.problem != "empty_file"]
    problems = [f for f in checked if f.problem]
    summary.seconds["inspect inputs"] = time.time() - t0

    t1 = time.time()
    label_df = read_labels(spark, labels) if labels else None
    parsed = parse_lines(read_lines(spark, readable), icfg["max_line_chars"]) if readable else None
    if parsed is not None:
        _sequences_pass(parsed, label_df, icfg["max_events_per_block"], ingest_date,
                        summary.tables["sequences"], summary)
    else:
        summary.rejects = {r: 0 for r in LINE_REASONS}
    if summary.blocks == 0:
        drop_partition(spark, summary.tables["sequences"], ingest_date)
    summary.seconds["parse + sequences"] = time.time() - t1

    t2 = time.time()
    for f in problems:
        summary.rejects[f.problem] = summary.rejects.get(f.problem, 0) + 1
    rejects = file_rejects(spark, problems)
    if parsed is not None and any(summary.rejects[r] for r in LINE_REASONS):
        rejects = rejects_of(parsed, icfg["reject_raw_chars"]).unionByName(rejects)
    replace_partition(spark, rejects.withColumn(S.INGEST_DATE, F.lit(ingest_date).cast("date")),
                      summary.tables["rejects"], ingest_date, summary.rejected)
    summary.seconds["rejects"] = time.time() - t2

    if icfg["keep_events"] and parsed is not None:
        t3 = time.time()
        summary.tables["events"] = table_path(root, "events")
        replace_partition(spark, events_of(parsed).withColumn(S.INGEST_DATE, F.lit(ingest_date).cast("date")),
                          summary.tables["events"], ingest_date, summary.events)
        summary.seconds["events"] = time.time() - t3

    if label_df is not None:
        summary.bad_labels = label_df.where(F.col(S.LABEL).isNull()).count()
    summary.seconds["total"] = time.time() - t0
    return summary
