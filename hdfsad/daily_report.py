"""The daily HTML report of a scoring run: counts, a score histogram (PNG), the top-N blocks.

Written to ``<paths.work_dir>/reports/<date>/report.html`` (a rerun of the date replaces it). It is
computed from the ``scores`` partition just written (a histogram of 50 bins and the top N rows, both
aggregated by Spark), so its cost does not grow with the driver's memory.
"""
from __future__ import annotations

import html
import os
from typing import Mapping, Sequence

import numpy as np
from pyspark.sql import functions as F

from hdfsad import schemas as S

BINS = 50
HISTOGRAM_FILE = "score_histogram.png"


def score_histogram(spark, scores_partition: str, bins: int = BINS) -> np.ndarray:
    """Counts of scores in ``bins`` equal bins over [0, 1] (1.0 falls in the last)."""
    b = F.least(F.floor(F.col(S.SCORE) * bins), F.lit(bins - 1)).cast("int")
    counts = np.zeros(bins, dtype=np.int64)
    for row in spark.read.parquet(scores_partition).groupBy(b.alias("b")).count().collect():
        counts[row["b"]] = row["count"]
    return counts


def plot_histogram(counts: np.ndarray, threshold: float, path: str) -> str:
    from hdfsad.reports import _figure

    fig = _figure(7, 3.5)
    ax = fig.subplots()
    edges = np.linspace(0, 1, len(counts) + 1)
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4c72b0", edgecolor="white")
    ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold:.3g}")
    if counts.max(initial=0) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("score = P(anomaly)")
    ax.set_ylabel("blocks (log scale)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path


def top_blocks(spark, scores_partition: str, sequences_source, n: int) -> list[dict]:
    """The ``n`` highest scores with their event sequences (``sequences_source``: a DataFrame)."""
    top = spark.read.parquet(scores_partition).orderBy(F.desc(S.SCORE), S.BLOCK_ID).limit(n).collect()
    ids = [r[S.BLOCK_ID] for r in top]
    events = {}
    if ids:
        for r in sequences_source.where(F.col(S.BLOCK_ID).isin(ids)).select(S.BLOCK_ID, S.EVENTS).collect():
            events[r[S.BLOCK_ID]] = list(r[S.EVENTS])
    return [{**r.asDict(), S.EVENTS: events.get(r[S.BLOCK_ID], [])} for r in top]


def render_html(summary, counts: np.ndarray, top: Sequence[dict], histogram_file: str | None) -> str:
    from hdfsad.templates import template_text

    esc = html.escape
    m = summary.model
    rows = [("date", summary.ingest_date), ("run id", summary.run_id), ("model", f"{m.name} {m.version}"),
            ("threshold", f"{m.threshold:.6g}"), ("blocks scored", f"{summary.blocks:,}"),
            ("distinct sequences scored", f"{summary.distinct_sequences:,}"),
            ("anomalies", f"{summary.anomalies:,}"), ("anomaly rate", f"{100 * summary.anomaly_rate:.3f} %")]
    if summary.lines is not None:
        rows += [("lines read", f"{summary.lines:,}"), ("rejected lines/files", f"{summary.rejects:,}")]
    body = [f"<h1>hdfsad daily report — {esc(summary.ingest_date)}</h1>", "<table>"]
    body += [f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows]
    body.append("</table>")
    if histogram_file:
        body.append(f'<h2>Scores</h2><img src="{esc(histogram_file)}" alt="score histogram">')
    body.append(f"<h2>Top {len(top)} blocks</h2>")
    if not top:
        body.append("<p>No block was scored on this date.</p>")
    for r in top:
        flag = "anomaly" if r[S.IS_ANOMALY] else "normal"
        events = "".join(f"<li><code>E{e + 1}</code> {esc(template_text(e))}</li>" for e in r[S.EVENTS])
        body.append(f"<h3><code>{esc(r[S.BLOCK_ID])}</code> — score {r[S.SCORE]:.6f} ({flag}), "
                    f"{r[S.LENGTH]} events, {esc(str(r[S.FIRST_TS]))} → {esc(str(r[S.LAST_TS]))}</h3>"
                    f"<ol>{events}</ol>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}th{text-align:left;padding-right:1em}"
             "li{font-size:90%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>hdfsad {esc(summary.ingest_date)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_daily_report(spark, cfg: Mapping, summary, sequences_table: str) -> str | None:
    """Write the report of ``summary``'s date; returns the HTML path (None when nothing was scored)."""
    from hdfsad.nightly import date_sequences, partition_path, path_exists

    out = os.path.abspath(os.path.join(cfg["paths"]["work_dir"], "reports", summary.ingest_date))
    os.makedirs(out, exist_ok=True)
    part = partition_path(summary.tables["scores"], summary.ingest_date)
    counts, top, png = np.zeros(BINS, dtype=np.int64), [], None
    if path_exists(spark, part):
        counts = score_histogram(spark, part)
        seqs = date_sequences(spark, sequences_table, summary.ingest_date, cfg["score"]["lookback_days"],
                              cfg["ingest"]["max_events_per_block"])
        top = top_blocks(spark, part, seqs, cfg["score"]["report_top"])
        png = os.path.basename(plot_histogram(counts, summary.model.threshold, os.path.join(out, HISTOGRAM_FILE)))
    path = os.path.join(out, "report.html")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render_html(summary, counts, top, png))
    return path
