"""The nightly scoring run: (ingest →) sequences of a date → scores → catalog → report, and its summary.

:func:`run_score` composes the stages. Semantics of a date ``D``:

* the ``scores`` partition ``ingest_date=D`` is replaced as a whole (Spark's dynamic partition
  overwrite: the new files are written aside and swapped in when the job commits), so a rerun leaves
  no duplicate, a run that fails midway leaves the previous partition as it was, and other dates are
  never touched. A run that finds no sequence drops the partition and says so;
* every run, failed ones included, appends one row to ``runs`` (``status`` ok/failed, ``error``);
* **midnight**: a block of ``D`` that also has rows in the ``sequences`` partitions of the
  ``score.lookback_days`` days before ``D`` is scored on all its events, earlier days first (its
  row of ``D-1`` keeps the score of what was known that night; ``D``'s row is the later verdict).
"""
from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hdfsad import schemas as S
from hdfsad.observations import metrics
from hdfsad.scoring import ScoringModel, score_sequences, to_table
from hdfsad.tables import drop_partition, table_path, write_partition


@dataclass
class RunSummary:
    """One scoring run, as printed and as kept in the ``runs`` table."""

    run_id: str
    ingest_date: str
    input: str
    model: ScoringModel
    started_at: dt.datetime
    status: str = "ok"
    error: str | None = None
    finished_at: dt.datetime | None = None
    lines: int | None = None
    rejects: int | None = None
    blocks: int = 0
    distinct_sequences: int = 0
    anomalies: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    registered: list[str] = field(default_factory=list)
    report: str | None = None
    message: str | None = None

    @property
    def anomaly_rate(self) -> float:
        return self.anomalies / self.blocks if self.blocks else 0.0

    def render(self) -> str:
        rows = [("run id", self.run_id), ("status", self.status), ("date", self.ingest_date),
                ("input", self.input), ("model", f"{self.model.name} {self.model.version} ({self.model.path})"),
                ("threshold", f"{self.model.threshold:.6g}")]
        if self.lines is not None:
            rows += [("lines read", self.lines), ("rejects", self.rejects)]
        rows += [("blocks scored", self.blocks), ("distinct sequences scored", self.distinct_sequences),
                 ("anomalies", f"{self.anomalies} ({100 * self.anomaly_rate:.2f} %)")]
        rows += [(f"time: {stage}", f"{sec:.1f} s") for stage, sec in self.seconds.items()]
        rows += [(f"table: {name}", path) for name, path in self.tables.items()]
        if self.registered:
            rows.append(("catalog tables", ", ".join(self.registered)))
        if self.report:
            rows.append(("report", self.report))
        if self.error:
            rows.append(("error", self.error))
        width = max(len(k) for k, _ in rows)
        lines = ["score summary"] + [f"  {k:<{width}}  {v}" for k, v in rows]
        return "\n".join(lines + ([self.message] if self.message else []))

    def to_row(self) -> tuple:
        m = self.model
        return (self.run_id, self.status, self.error, self.started_at, self.finished_at, self.input, m.path,
                m.name, m.version, m.threshold, self.lines, self.rejects, self.blocks,
                self.distinct_sequences, self.anomalies, {k: float(v) for k, v in self.seconds.items()},
                dt.date.fromisoformat(self.ingest_date))


def partition_path(table: str, ingest_date: str) -> str:
    return f"{table.rstrip('/')}/{S.INGEST_DATE}={ingest_date}"


def path_exists(spark, path: str) -> bool:
    jpath = spark._jvm.org.apache.hadoop.fs.Path(path)
    return bool(jpath.getFileSystem(spark._jsc.hadoopConfiguration()).exists(jpath))


def read_partition(spark, table: str, ingest_date: str, schema: T.StructType = S.SEQUENCES_SCHEMA) -> DataFrame:
    """One date's rows of a partitioned table (empty when the partition does not exist)."""
    data = T.StructType([f for f in schema.fields if f.name != S.INGEST_DATE])
    path = partition_path(table, ingest_date)
    df = (spark.read.schema(data).parquet(path) if path_exists(spark, path)
          else spark.createDataFrame([], data))
    return df.withColumn(S.INGEST_DATE, F.lit(ingest_date).cast("date"))


def merge_earlier(current: DataFrame, earlier: DataFrame, max_events: int) -> DataFrame:
    """Blocks of ``current`` with their rows of ``earlier`` dates: events concatenated oldest date
    first (each date's array is in order already), capped to the last ``max_events``; first/last
    timestamps over all dates; the label of the latest date."""
    both = current.unionByName(earlier.join(current.select(S.BLOCK_ID), S.BLOCK_ID, "left_semi"))
    parts = F.sort_array(F.collect_list(F.struct(S.INGEST_DATE, S.EVENTS)))
    grouped = both.groupBy(S.BLOCK_ID).agg(
        F.flatten(F.transform(parts, lambda p: p[S.EVENTS])).alias("_all"),
        F.min(S.FIRST_TS).alias(S.FIRST_TS), F.max(S.LAST_TS).alias(S.LAST_TS),
        F.max_by(S.LABEL, S.INGEST_DATE).alias(S.LABEL), F.max(S.INGEST_DATE).alias(S.INGEST_DATE))
    size = F.size("_all")
    events = F.when(size > max_events, F.slice("_all", -max_events, max_events)).otherwise(F.col("_all"))
    return grouped.select(S.BLOCK_ID, events.alias(S.EVENTS), F.least(size, F.lit(max_events)).alias(S.LENGTH),
                          S.FIRST_TS, S.LAST_TS, S.LABEL, S.INGEST_DATE)


def date_sequences(spark, table: str, ingest_date: str, lookback_days: int, max_events: int) -> DataFrame:
    """The sequences to score for ``ingest_date``, merged with earlier dates (see module doc)."""
    current = read_partition(spark, table, ingest_date)
    day = dt.date.fromisoformat(ingest_date)
    earlier_dates = [(day - dt.timedelta(days=k)).isoformat() for k in range(1, lookback_days + 1)]
    earlier = [read_partition(spark, table, d) for d in earlier_dates
               if path_exists(spark, partition_path(table, d))]
    if not earlier:
        return current
    union = earlier[0]
    for df in earlier[1:]:
        union = union.unionByName(df)
    return merge_earlier(current, union, max_events)


def is_sequences_table(spark, inputs: Sequence[str]) -> bool:
    """True when ``inputs`` is one directory holding ``ingest_date=`` partitions (not raw logs)."""
    if len(inputs) != 1 or any(c in inputs[0] for c in "*?[{"):
        return False
    jpath = spark._jvm.org.apache.hadoop.fs.Path(inputs[0])
    fs = jpath.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(jpath) or not fs.getFileStatus(jpath).isDirectory():
        return False
    return any(s.getPath().getName().startswith(f"{S.INGEST_DATE}=") for s in fs.listStatus(jpath))


def append_run(spark, summary: RunSummary, path: str) -> None:
    row = spark.createDataFrame([summary.to_row()], S.RUNS_SCHEMA)
    row.coalesce(1).write.mode("append").partitionBy(S.INGEST_DATE).parquet(path)


def _score_and_write(spark, cfg: Mapping, summary: RunSummary, source: str, out: str) -> None:
    scfg = cfg["score"]
    seqs = date_sequences(spark, source, summary.ingest_date, scfg["lookback_days"],
                          cfg["ingest"]["max_events_per_block"])
    distinct, written = Observation("distinct"), Observation("scores")
    scored = score_sequences(spark, seqs, summary.model, dedup=scfg["dedup"],
                             batch_size=scfg["batch_size"], distinct=distinct)
    table = to_table(scored, summary.model, summary.run_id, summary.started_at, summary.ingest_date).observe(
        written, F.count(F.lit(1)).alias("blocks"), F.sum(F.col(S.IS_ANOMALY).cast("long")).alias("anomalies"))
    if not path_exists(spark, partition_path(source, summary.ingest_date)):
        drop_partition(spark, out, summary.ingest_date)
        summary.message = (f"no sequences for {summary.ingest_date} in {source}: nothing to score; the "
                           f"scores partition of that date is empty")
        return
    write_partition(table, out)
    stats = metrics(written)
    summary.blocks = int(stats.get("blocks") or 0)
    summary.anomalies = int(stats.get("anomalies") or 0)
    summary.distinct_sequences = int(metrics(distinct).get("distinct") or 0) if scfg["dedup"] else summary.blocks


def run_score(spark, cfg: Mapping, model: ScoringModel, ingest_date: str, inputs: Sequence[str] = (),
              labels: str | None = None, tables: str | None = None,
              log: Callable[[str], None] | None = print) -> RunSummary:
    """Score ``ingest_date``: from raw logs ``inputs`` (ingested first, same code path), from a
    sequences table given as the only input, or (no inputs) from ``<tables>/sequences``."""
    from hdfsad.catalog import register
    from hdfsad.ingest import run_ingest

    root = tables or cfg["paths"]["tables"]
    started = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    summary = RunSummary(uuid.uuid4().hex[:16], ingest_date, " ".join(inputs) or table_path(root, "sequences"),
                         model, started)
    summary.tables = {name: table_path(root, name) for name in ("scores", "runs")}
    t0 = time.time()
    try:
        source = table_path(root, "sequences")
        if inputs and is_sequences_table(spark, inputs):
            source = inputs[0]
        elif inputs:
            ingested = run_ingest(spark, cfg, inputs, ingest_date, labels=labels, tables=root)
            summary.lines, summary.rejects = ingested.lines, ingested.rejected
            summary.seconds["ingest"] = time.time() - t0
            if log:
                log(ingested.render())
        t1 = time.time()
        _score_and_write(spark, cfg, summary, source, summary.tables["scores"])
        summary.seconds["score + write"] = time.time() - t1
        if cfg["score"]["report"]:
            from hdfsad.daily_report import write_daily_report

            t2 = time.time()
            summary.report = write_daily_report(spark, cfg, summary, source)
            summary.seconds["report"] = time.time() - t2
    except Exception as exc:
        text = str(exc).strip().splitlines()
        summary.status, summary.error = "failed", f"{type(exc).__name__}: {text[0][:500] if text else ''}"
        _finish(spark, summary)
        raise
    summary.seconds["total"] = time.time() - t0
    _finish(spark, summary)
    t3 = time.time()
    summary.registered = register(spark, cfg, root)
    summary.seconds["catalog"] = time.time() - t3
    return summary


def _finish(spark, summary: RunSummary) -> None:
    summary.finished_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    try:
        append_run(spark, summary, summary.tables["runs"])
    except Exception:  # noqa: BLE001 - a failed run's record must not hide the run's own error
        if summary.status == "ok":
            raise
