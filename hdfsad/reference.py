"""Importer of the reference CSV format (``id,sequence[,class]``) into the ``sequences`` schema."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hdfsad import schemas as S
from hdfsad.sequences import to_table

REFERENCE_PREFIX = "seq-"


def parse_sequence_column(text):
    """``"(4, 4, 21)"`` (a Python tuple, ``"(4,)"`` for one event) → array<int>."""
    digits = F.regexp_replace(text, r"[()\s]", "")
    items = F.filter(F.split(digits, ","), lambda x: x != "")
    return F.transform(items, lambda x: x.try_cast("int"))


def read_reference(spark, path: str, ingest_date: str = "1970-01-01") -> DataFrame:
    """The reference CSV (gz or plain) as a ``sequences`` table: block_id ``seq-<id>``.

    ``class`` ``abnormal`` → label 1, ``normal`` → 0, absent → null. A sequence item that is not an
    integer becomes null; :func:`check_reference` turns that into an error before anything is written.
    """
    raw = spark.read.option("header", True).option("mode", "FAILFAST").csv(path)
    if "id" not in raw.columns or "sequence" not in raw.columns:
        raise ValueError(f"{path}: expected columns id,sequence[,class]; found {','.join(raw.columns)}")
    events = parse_sequence_column(F.col("sequence"))
    label = (
        F.when(F.lower("class") == "abnormal", 1).when(F.lower("class") == "normal", 0)
        if "class" in raw.columns else F.lit(None)
    )
    seqs = raw.select(
        F.concat(F.lit(REFERENCE_PREFIX), F.trim("id")).alias(S.BLOCK_ID),
        events.alias(S.EVENTS),
        F.size(events).alias(S.LENGTH),
        F.lit(None).cast("timestamp").alias(S.FIRST_TS),
        F.lit(None).cast("timestamp").alias(S.LAST_TS),
        label.cast("int").alias(S.LABEL),
    )
    return to_table(seqs, ingest_date)


def check_reference(table: DataFrame, path: str) -> int:
    """Row count of an imported table; fails naming the first row whose sequence is not integers."""
    bad = table.where(F.exists(S.EVENTS, lambda x: x.isNull()) | (F.col(S.LENGTH) == 0)).select(S.BLOCK_ID).limit(1).collect()
    if bad:
        raise ValueError(f"{path}: row {bad[0][0][len(REFERENCE_PREFIX):]} has a sequence that is not a "
                         f"tuple of integers like \"(4, 4, 21)\"")
    return table.count()
