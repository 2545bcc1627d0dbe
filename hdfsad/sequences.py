"""Events → block sequences: explode parsed lines per block, order, aggregate, join labels.

Order of events inside a block: timestamp, then position in the input (file, then line). The
position of a line is (file number in the sorted input list, start offset of the split that read it, row number within the
task); rows of one split are read by one task in file order, so this is the line order.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hdfsad import schemas as S


def events_of(parsed: DataFrame) -> DataFrame:
    """One row per (block, event) from the good records of :func:`hdfsad.parsing.parse_lines`."""
    return (
        parsed.where(F.col("reason").isNull())
        .select(
            # explode_outer: with plain explode the optimizer infers a `size(block_ids) > 0` filter
            # and pushes it below the parse, extracting the block ids twice. Good records always
            # have at least one block id, so the result is the same.
            F.explode_outer("block_ids").alias(S.BLOCK_ID),
            S.TS, S.EVENT_ID, S.SOURCE, "file_no", "split_start", "row_in_split",
        )
    )


def build_sequences(events: DataFrame, max_events: int) -> DataFrame:
    """Group events by block into ordered ``events`` arrays.

    A block keeps its last ``max_events`` events; ``full_length`` keeps the uncapped count so the
    caller can report how many blocks were capped.
    """
    key = F.struct(S.TS, "file_no", "split_start", "row_in_split", S.EVENT_ID)
    grouped = events.groupBy(S.BLOCK_ID).agg(
        F.array_sort(F.collect_list(key)).alias("_ordered"),
        F.min(S.TS).alias(S.FIRST_TS),
        F.max(S.TS).alias(S.LAST_TS),
    )
    full = F.size("_ordered")
    kept = F.when(full > max_events, F.slice("_ordered", -max_events, max_events)).otherwise(F.col("_ordered"))
    return grouped.select(
        S.BLOCK_ID,
        F.transform(kept, lambda e: e[S.EVENT_ID]).alias(S.EVENTS),
        F.least(full, F.lit(max_events)).alias(S.LENGTH),
        S.FIRST_TS,
        S.LAST_TS,
        full.alias("full_length"),
    )


def read_labels(spark, path: str) -> DataFrame:
    """Loghub's ``anomaly_label.csv`` (``BlockId,Label`` with Normal/Anomaly) → block_id, label.

    A label other than Normal/Anomaly becomes null (counted by the ingest summary as bad labels).
    """
    raw = spark.read.option("header", True).schema("BlockId string, Label string").csv(path)
    label = F.lower(F.trim("Label"))
    return raw.select(
        F.trim("BlockId").alias(S.BLOCK_ID),
        F.when(label == "anomaly", 1).when(label == "normal", 0).cast("int").alias(S.LABEL),
    ).where(F.col(S.BLOCK_ID).isNotNull()).dropDuplicates([S.BLOCK_ID])


def with_labels(sequences: DataFrame, labels: DataFrame | None) -> DataFrame:
    if labels is None:
        return sequences.withColumn(S.LABEL, F.lit(None).cast("int"))
    return sequences.join(F.broadcast(labels), S.BLOCK_ID, "left")


def to_table(sequences: DataFrame, ingest_date: str) -> DataFrame:
    """Select and cast to the :data:`hdfsad.schemas.SEQUENCES_SCHEMA` contract."""
    cols = {
        S.BLOCK_ID: F.col(S.BLOCK_ID),
        S.EVENTS: F.col(S.EVENTS).cast("array<int>"),
        S.LENGTH: F.col(S.LENGTH).cast("int"),
        S.FIRST_TS: F.col(S.FIRST_TS),
        S.LAST_TS: F.col(S.LAST_TS),
        S.LABEL: F.col(S.LABEL).cast("int"),
        S.INGEST_DATE: F.lit(ingest_date).cast("date"),
    }
    return sequences.select(*[cols[f.name].alias(f.name) for f in S.SEQUENCES_SCHEMA.fields])
