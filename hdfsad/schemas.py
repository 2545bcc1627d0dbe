"""Stage contracts: the Parquet schemas every stage writes and reads, defined once.

Spark code uses the ``*_SCHEMA`` StructTypes; pure-Python readers (the sharded PyTorch reader) use
:func:`arrow_schema`. Column names are also exported as constants so no stage spells them twice.
"""
from __future__ import annotations

from pyspark.sql import types as T

# sequences ---------------------------------------------------------------------------------------
BLOCK_ID = "block_id"
EVENTS = "events"
LENGTH = "length"
FIRST_TS = "first_ts"
LAST_TS = "last_ts"
LABEL = "label"              # 1 = anomaly, 0 = normal, null = unlabelled
INGEST_DATE = "ingest_date"  # partition column of nightly runs (a date; directories ingest_date=YYYY-MM-DD)

SEQUENCES_SCHEMA = T.StructType([
    T.StructField(BLOCK_ID, T.StringType(), False),
    T.StructField(EVENTS, T.ArrayType(T.IntegerType(), False), False),
    T.StructField(LENGTH, T.IntegerType(), False),
    T.StructField(FIRST_TS, T.TimestampType(), True),
    T.StructField(LAST_TS, T.TimestampType(), True),
    T.StructField(LABEL, T.IntegerType(), True),
    T.StructField(INGEST_DATE, T.DateType(), False),
])

# events (optional output) ------------------------------------------------------------------------
TS = "ts"
EVENT_ID = "event_id"
SOURCE = "source"            # file URI the line was read from
POSITION = "position"        # struct(split_start, row) that orders lines of one file

EVENTS_SCHEMA = T.StructType([
    T.StructField(BLOCK_ID, T.StringType(), False),
    T.StructField(TS, T.TimestampType(), True),
    T.StructField(EVENT_ID, T.IntegerType(), False),
    T.StructField(SOURCE, T.StringType(), False),
    T.StructField("split_start", T.LongType(), False),
    T.StructField("row_in_split", T.LongType(), False),
    T.StructField(INGEST_DATE, T.DateType(), False),
])

# rejects -----------------------------------------------------------------------------------------
RAW = "raw"
REASON = "reason"

REJECTS_SCHEMA = T.StructType([
    T.StructField(SOURCE, T.StringType(), False),
    T.StructField(RAW, T.StringType(), True),
    T.StructField(REASON, T.StringType(), False),
    T.StructField(INGEST_DATE, T.DateType(), False),
])

# scores (one row per block and scored date) ------------------------------------------------------
SCORE = "score"              # P(anomaly) given by the model
IS_ANOMALY = "is_anomaly"    # score >= threshold
THRESHOLD = "threshold"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
RUN_ID = "run_id"
SCORED_AT = "scored_at"

SCORES_SCHEMA = T.StructType([
    T.StructField(BLOCK_ID, T.StringType(), False),
    T.StructField(SCORE, T.DoubleType(), False),
    T.StructField(IS_ANOMALY, T.BooleanType(), False),
    T.StructField(THRESHOLD, T.DoubleType(), False),
    T.StructField(MODEL_NAME, T.StringType(), False),
    T.StructField(MODEL_VERSION, T.StringType(), False),
    T.StructField(LENGTH, T.IntegerType(), False),
    T.StructField(FIRST_TS, T.TimestampType(), True),
    T.StructField(LAST_TS, T.TimestampType(), True),
    T.StructField(RUN_ID, T.StringType(), False),
    T.StructField(SCORED_AT, T.TimestampType(), False),
    T.StructField(INGEST_DATE, T.DateType(), False),
])

# runs (one row per scoring run, failed ones included; appended) ---------------------------------
RUNS_SCHEMA = T.StructType([
    T.StructField(RUN_ID, T.StringType(), False),
    T.StructField("status", T.StringType(), False),          # ok | failed
    T.StructField("error", T.StringType(), True),
    T.StructField("started_at", T.TimestampType(), False),
    T.StructField("finished_at", T.TimestampType(), False),
    T.StructField("input", T.StringType(), False),
    T.StructField("model_path", T.StringType(), False),
    T.StructField(MODEL_NAME, T.StringType(), False),
    T.StructField(MODEL_VERSION, T.StringType(), False),
    T.StructField(THRESHOLD, T.DoubleType(), False),
    T.StructField("lines", T.LongType(), True),               # null when the input was a sequences table
    T.StructField("rejects", T.LongType(), True),
    T.StructField("blocks", T.LongType(), False),
    T.StructField("distinct_sequences", T.LongType(), False),
    T.StructField("anomalies", T.LongType(), False),
    T.StructField("seconds", T.MapType(T.StringType(), T.DoubleType(), False), False),
    T.StructField(INGEST_DATE, T.DateType(), False),
])

#: The tables :mod:`hdfsad.catalog` registers, each a directory of that name under ``paths.tables``.
TABLES = ("sequences", "rejects", "events", "scores", "runs")

#: Every reason a line or a file can be rejected for. Documented in the README.
REJECT_REASONS = {
    "binary": "the line holds control characters or bytes that are not valid UTF-8",
    "too_long": "the line is longer than ingest.max_line_chars",
    "bad_header": "the line does not start with 'yyMMdd HHmmss pid LEVEL component: '",
    "bad_timestamp": "the header's date/time is not a valid calendar time",
    "no_block_id": "a well-formed record that names no blk_<id>",
    "empty_file": "an input file with no lines",
    "truncated_file": "a compressed input file that ends early or is corrupt (lines before the damage are kept)",
}


def arrow_schema(spark_schema: T.StructType):
    """The pyarrow schema of a stage table, for readers outside Spark."""
    import pyarrow as pa

    mapping = {
        T.StringType: pa.string(), T.IntegerType: pa.int32(), T.LongType: pa.int64(),
        T.DoubleType: pa.float64(), T.BooleanType: pa.bool_(),
        T.TimestampType: pa.timestamp("us", tz="UTC"), T.DateType: pa.date32(),
    }

    def conv(dt):
        if isinstance(dt, T.ArrayType):
            return pa.list_(conv(dt.elementType))
        return mapping[type(dt)]

    return pa.schema([pa.field(f.name, conv(f.dataType), f.nullable) for f in spark_schema.fields])
