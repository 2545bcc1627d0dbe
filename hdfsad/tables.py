"""The stage tables on storage: Parquet directories partitioned by ``ingest_date``.

Writing a date replaces that date's partition only (dynamic partition overwrite); other dates are
never touched.
"""
from __future__ import annotations

from pyspark.sql import DataFrame

from hdfsad import schemas as S


def table_path(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


def write_partition(df: DataFrame, path: str) -> None:
    """Write the ``ingest_date`` partition(s) present in ``df``, replacing them if they exist."""
    (df.write.mode("overwrite").option("partitionOverwriteMode", "dynamic")
     .partitionBy(S.INGEST_DATE).parquet(path))


def drop_partition(spark, path: str, ingest_date: str) -> bool:
    """Delete one date's partition (when a run produced no rows for it); True if it existed."""
    jvm = spark._jvm
    part = jvm.org.apache.hadoop.fs.Path(f"{path.rstrip('/')}/{S.INGEST_DATE}={ingest_date}")
    fs = part.getFileSystem(spark._jsc.hadoopConfiguration())
    return bool(fs.exists(part) and fs.delete(part, True))


def replace_partition(spark, df: DataFrame, path: str, ingest_date: str, rows: int) -> None:
    """Make ``df`` (``rows`` rows, all of ``ingest_date``) the content of that date's partition."""
    if rows:
        write_partition(df, path)
    else:
        drop_partition(spark, path, ingest_date)
