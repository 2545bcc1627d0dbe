"""The one place that builds a SparkSession from configuration."""
from __future__ import annotations

import os
from typing import Mapping


def launched_by_spark_submit() -> bool:
    """True when this Python driver was started by spark-submit (the JVM exists already)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(cfg: Mapping, app_suffix: str = ""):
    """A SparkSession configured by ``cfg['spark']``.

    Under spark-submit the master and driver settings come from the command line (spark-submit.sh
    defaults to ``local[*]``); started from plain Python, ``spark.master`` of the config is used.
    """
    from pyspark.sql import SparkSession

    spark_cfg = cfg["spark"]
    name = spark_cfg["app_name"] + (f"-{app_suffix}" if app_suffix else "")
    builder = SparkSession.builder.appName(name)
    if not launched_by_spark_submit():
        builder = builder.master(spark_cfg["master"])
    for key, value in spark_cfg["conf"].items():
        builder = builder.config(key, str(value).lower() if isinstance(value, bool) else str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("HDFSAD_SPARK_LOG_LEVEL", "WARN"))
    return spark
