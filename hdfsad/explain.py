"""``hdfsad explain <block_id> [--date]``: a block's score, its events with template text, raw lines.

Reads the Parquet tables under ``paths.tables`` directly (no catalog needed). Without ``--date`` the
block's latest scored date is shown. Raw lines are shown when the ``events`` table was kept
(``ingest.keep_events: true``): it names the files the block's lines came from, which are read
again and filtered on the block id.
"""
from __future__ import annotations

from typing import Mapping

from pyspark.sql import functions as F

from hdfsad import schemas as S
from hdfsad.tables import table_path

MAX_RAW_LINES = 200


class BlockNotFound(ValueError):
    """The block has no score (on that date); the message says where it looked."""


def explain(spark, cfg: Mapping, block_id: str, ingest_date: str | None = None,
            tables: str | None = None) -> str:
    from hdfsad.nightly import date_sequences, path_exists
    from hdfsad.templates import template_text

    root = tables or cfg["paths"]["tables"]
    scores_path = table_path(root, "scores")
    if not path_exists(spark, scores_path):
        raise BlockNotFound(f"no scores table at {scores_path}: run `hdfsad score` first")
    scores = spark.read.parquet(scores_path).where(F.col(S.BLOCK_ID) == block_id)
    if ingest_date:
        scores = scores.where(F.col(S.INGEST_DATE) == F.lit(ingest_date).cast("date"))
    rows = scores.orderBy(F.desc(S.INGEST_DATE)).limit(1).collect()
    if not rows:
        where = f" on {ingest_date}" if ingest_date else ""
        raise BlockNotFound(f"block {block_id} has no score{where} in {scores_path}")
    s = rows[0]
    date = s[S.INGEST_DATE].isoformat()
    lines = [f"block {block_id}  date {date}",
             f"  score {s[S.SCORE]:.6f}  threshold {s[S.THRESHOLD]:.6g}  -> "
             f"{'ANOMALY' if s[S.IS_ANOMALY] else 'normal'}",
             f"  model {s[S.MODEL_NAME]} {s[S.MODEL_VERSION]}  run {s[S.RUN_ID]}  scored at {s[S.SCORED_AT]}",
             f"  {s[S.LENGTH]} events, {s[S.FIRST_TS]} -> {s[S.LAST_TS]}"]
    seqs = date_sequences(spark, table_path(root, "sequences"), date, cfg["score"]["lookback_days"],
                          cfg["ingest"]["max_events_per_block"]).where(F.col(S.BLOCK_ID) == block_id).collect()
    if seqs:
        lines.append("events (in order):")
        lines += [f"  {i:>4}  E{e + 1:<3} {template_text(e)}" for i, e in enumerate(seqs[0][S.EVENTS], 1)]
    else:
        lines.append("events: the sequences partition of that date is gone")
    lines += _raw_lines(spark, root, block_id, date, cfg["score"]["lookback_days"])
    return "\n".join(lines)


def _raw_lines(spark, root: str, block_id: str, date: str, lookback_days: int) -> list[str]:
    import datetime as dt

    from hdfsad.nightly import path_exists

    events_path = table_path(root, "events")
    if not path_exists(spark, events_path):
        return ["raw lines: not kept (ingest with --set ingest.keep_events=true to keep them)"]
    first = (dt.date.fromisoformat(date) - dt.timedelta(days=lookback_days)).isoformat()
    sources = [r[S.SOURCE] for r in spark.read.parquet(events_path)
               .where((F.col(S.BLOCK_ID) == block_id) & F.col(S.INGEST_DATE).between(first, date))
               .select(S.SOURCE).distinct().orderBy(S.SOURCE).collect()]
    if not sources:
        return ["raw lines: none in the events table"]
    found = []
    pattern = f"{block_id}(?![0-9])"
    for src in sources:
        if not path_exists(spark, src):
            found.append(f"  ({src} no longer exists)")
            continue
        rows = (spark.read.text(src).where(F.col("value").rlike(pattern))
                .limit(MAX_RAW_LINES - len(found)).collect())
        found += [f"  {r['value']}" for r in rows]
        if len(found) >= MAX_RAW_LINES:
            break
    return [f"raw lines ({', '.join(sources)}):"] + found
